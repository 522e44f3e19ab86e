import { userInfo } from 'node:os';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { checkAuditAnchor, type AnchorCheck } from '../activities/audit-anchor-check';
import { listAudit, verifyAuditChain, type AuditRecord, type AuditVerification } from '../activities/db/audit';
import { AUDIT_ANCHOR_WORKFLOW_ID } from '../common/ids';
import type { AuditAnchor } from '../common/types';
import { getAuditAnchorsQuery } from '../workflows/definitions';
import type { AncSpec, AncView, CredentialStored, HealthCheckResult } from '../common/types';
import { ConfigError } from '../common/config-error';
import type * as Validation from '../common/validation';
import type { AuditStore } from './cli-env';
import { CliError, EXIT, EXIT_CODES_HELP, keyValues, table, type TextSink } from './cli-io';
import type { AncClient, AncSummary } from './sdk';
import { AncServiceError, MAX_PASSWORD_LENGTH } from './service-error';

/**
 * The operators' CLI (`anc`), built over the same SDK other services use. client/cli.ts is the
 * thin entry that wires it to the process; tests drive `runCli` in-process with injected streams.
 *
 * Adding a subcommand group is one `CommandGroup` function (see `healthCommands` for the shape)
 * appended to COMMAND_GROUPS: it receives the root command and a `CliContext` with the SDK,
 * output (`ctx.print` handles --json), the actor and password input. Throw AncServiceError or
 * CliError; `runCli` prints "error: <Type>: <message>" and picks the exit code.
 */

export interface CliDeps {
  /** The SDK, connected on first use. The caller owns (and closes) the connection. */
  sdk: () => Promise<AncClient>;
  out: TextSink;
  err: TextSink;
  /** Asks once for a secret on the terminal without echo (client/cli-io.ts `promptHidden`). */
  readPassword: (prompt: string) => Promise<string>;
  /** The first line of stdin, without its line ending, for --password-stdin. */
  readStdinLine: () => Promise<string>;
  /** The audit commands' database; default: DATABASE_URL and AUDIT_MAC_KEY from `env`. */
  audit?: () => Promise<AuditStore>;
  /** Default: process.env. Read by the default `audit` and for ANC_CLI_DEBUG. */
  env?: NodeJS.ProcessEnv;
  /** Default: the operating-system user name. */
  username?: () => string;
}

export interface GlobalOptions {
  json: boolean;
  actor: string;
  /** Seconds a command may wait for the service, counted from its first call (not the prompt). */
  timeout: number;
}

export interface CliContext {
  readonly deps: CliDeps;
  globals(): GlobalOptions;
  sdk(): Promise<AncClient>;
  /** Writes `value` as one JSON document with --json, else `human(value)`, on stdout. */
  print<T>(value: T, human: (value: T) => string): void;
  /** A note for the operator on stderr (never with secrets); stdout stays one JSON document. */
  note(message: string): void;
  /**
   * A new password: with `fromStdin` the first line of stdin, else asked twice on the terminal
   * without echo; different answers are refused (PasswordMismatch, exit 2). Never argv or env.
   */
  newPassword(fromStdin: boolean): Promise<string>;
  /** Runs `fn` with the audit database, closing it afterwards. */
  withAudit<T>(fn: (store: AuditStore) => Promise<T>): Promise<T>;
}

export type CommandGroup = (program: Command, ctx: CliContext) => void;

// ------------------------------------------------------------------------------- option helpers

export function nonEmpty(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('must not be empty');
  return value;
}

export function intInRange(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`must be an integer from ${min} to ${max}`);
    }
    return n;
  };
}

/** Adds the required --tenant option. */
export function withTenant(cmd: Command): Command {
  return cmd.requiredOption('--tenant <tenantId>', 'tenant id', nonEmpty);
}

/** Adds the required --tenant and --anc options. */
export function withAnc(cmd: Command): Command {
  return withTenant(cmd).requiredOption('--anc <ancId>', 'ANC (Azure network connection) id', nonEmpty);
}

export interface AncTarget {
  tenant: string;
  anc: string;
}

/**
 * Checks ids locally, so a typo is reported before a password is asked for or anything is sent.
 * The validation and the Temporal SDK load here, on first use: `anc --help` never loads them.
 */
export async function preflight(check: (validation: typeof Validation) => void): Promise<void> {
  const [validation, errors] = await Promise.all([import('../common/validation'), import('./errors')]);
  try {
    check(validation);
  } catch (err) {
    throw errors.toServiceError(err);
  }
}

// ---------------------------------------------------------------------------- human formatters

export function formatHealth(h: HealthCheckResult, prefix = ''): Array<[string, unknown]> {
  return [
    [`${prefix}status`, h.status],
    [`${prefix}error`, h.errorType],
    [`${prefix}message`, h.message],
    [`${prefix}started`, h.startedAt],
    [`${prefix}finished`, h.finishedAt],
    [`${prefix}duration`, h.durationMs === undefined ? undefined : `${h.durationMs} ms`],
    [`${prefix}credential version`, h.credentialVersion],
  ];
}

export function formatAnc(v: AncView): string {
  return keyValues([
    ['tenant', v.tenantId],
    ['anc', v.ancId],
    ['display name', v.displayName],
    ['domain', v.adDomainName],
    ['organizational unit', v.organizationalUnit],
    ['username', v.adDomainUsername],
    ['state', v.state],
    ['credential version', v.credentialVersion],
    ['tenant key version', v.tenantKeyVersion],
    ['created', v.createdAt],
    ['updated', v.updatedAt],
    ...formatHealth(v.healthCheck, 'health '),
  ]);
}

export function formatAncList(rows: AncSummary[]): string {
  if (rows.length === 0) return 'no ANCs\n';
  return table(rows, [
    ['anc', (r) => r.ancId],
    ['state', (r) => r.state],
    ['health', (r) => r.healthStatus ?? ''],
  ]);
}

function formatDetails(details: AuditRecord['details']): string {
  return Object.entries(details)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(' ');
}

export function formatAuditList(rows: AuditRecord[]): string {
  if (rows.length === 0) return 'no audit records\n';
  return table(rows, [
    ['seq', (r) => r.seq],
    ['at', (r) => r.at.toISOString()],
    ['event', (r) => r.event],
    ['tenant', (r) => r.tenantId ?? '-'],
    ['anc', (r) => r.ancId ?? '-'],
    ['actor', (r) => r.actor],
    ['outcome', (r) => r.outcome],
    ['details', (r) => formatDetails(r.details)],
  ]);
}

export function formatVerification(r: AuditVerification & { anchor?: AnchorCheck | null }): string {
  const chain = r.ok
    ? `OK: audit chain verified, ${r.records} records\n`
    : `BROKEN: record ${r.brokenAt} does not verify (${r.reason}); ${r.records} records before it verified\n`;
  if (!r.anchor) return chain;
  return r.anchor.ok
    ? `${chain}OK: last anchor (record ${r.anchor.anchoredSeq}, ${r.anchor.anchoredAt}, signing key ${r.anchor.keyThumbprint}) matches\n`
    : `${chain}BROKEN: ${anchorProblem(r.anchor)}\n`;
}

function anchorProblem(a: Extract<AnchorCheck, { ok: false }>): string {
  if (a.reason === 'shorter-than-anchor')
    return `the chain ends at record ${a.headSeq}, shorter than its last anchor at record ${a.anchoredSeq} (${a.anchoredAt}): newest records were deleted`;
  if (a.reason === 'anchor-mismatch')
    return `record ${a.anchoredSeq} is not the one anchored at ${a.anchoredAt}: the chain was rewritten`;
  return `the last anchor's signature does not verify`;
}

/** The newest anchor from the audit-anchor workflow in Temporal, or why there is none. */
async function latestAnchor(ctx: CliContext): Promise<{ anchor?: AuditAnchor; problem?: string }> {
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error('Temporal did not answer within 10 s')), 10_000).unref(),
  );
  try {
    const anchors = await Promise.race([
      ctx.sdk().then((sdk) => sdk.temporal.workflow.getHandle(AUDIT_ANCHOR_WORKFLOW_ID).query(getAuditAnchorsQuery)),
      timeout,
    ]);
    const anchor = anchors.at(-1);
    return anchor ? { anchor } : { problem: 'the audit-anchor workflow has no anchor yet' };
  } catch (err) {
    return { problem: `no audit anchor could be read from Temporal (${(err as Error).message})` };
  }
}

// ---------------------------------------------------------------------------------- the groups

interface CreateOptions extends AncTarget {
  name: string;
  domain: string;
  ou?: string;
  user: string;
  passwordStdin?: boolean;
  requestId?: string;
}

const PASSWORD_HELP = `
The password is asked for twice on the terminal, without echo, and both answers must match.
With --password-stdin it is the first line of stdin instead (line ending removed), e.g.
  printf '%s\\n' "$PW" | anc ... --password-stdin
It is never accepted as an argument or from an environment variable.
`;

/** ANCs: create, update-password, delete, get, list. */
export const ancCommands: CommandGroup = (program, ctx) => {
  withAnc(program.command('create').description('create an ANC with its domain-join credential; prints the ANC'))
    .requiredOption('--name <displayName>', 'display name', nonEmpty)
    .requiredOption('--domain <adDomainName>', 'AD domain, fully qualified (corp.contoso.com)', nonEmpty)
    .option('--ou <dn>', 'OU for computer accounts (OU=CloudPCs,DC=corp,DC=contoso,DC=com)')
    .requiredOption('--user <upn>', 'domain-join account, as a UPN (svcDomainJoin@corp.contoso.com)', nonEmpty)
    .option('--password-stdin', 'read the password from the first line of stdin')
    .option('--request-id <id>', 'idempotency key: repeat a create safely with the same id', nonEmpty)
    .addHelpText('after', PASSWORD_HELP)
    .action(async (o: CreateOptions) => {
      const spec: AncSpec = {
        displayName: o.name,
        adDomainName: o.domain,
        organizationalUnit: o.ou,
        adDomainUsername: o.user,
      };
      await preflight((v: typeof Validation) => {
        v.validateTenantId(o.tenant);
        v.validateAncId(o.anc);
        v.validateAncSpec(spec);
      });
      const password = await ctx.newPassword(o.passwordStdin === true);
      const sdk = await ctx.sdk();
      const view = await sdk.createAnc({
        tenantId: o.tenant,
        ancId: o.anc,
        ...spec,
        password,
        actor: ctx.globals().actor,
        requestId: o.requestId,
      });
      ctx.print(view, formatAnc);
    });

  withAnc(program.command('update-password').description("replace the ANC's stored credential"))
    .option('--password-stdin', 'read the new password from the first line of stdin')
    .option('--request-id <id>', 'idempotency key: repeat an update safely with the same id', nonEmpty)
    .addHelpText('after', PASSWORD_HELP)
    .action(async (o: AncTarget & { passwordStdin?: boolean; requestId?: string }) => {
      await preflight((v: typeof Validation) => {
        v.validateTenantId(o.tenant);
        v.validateAncId(o.anc);
      });
      const password = await ctx.newPassword(o.passwordStdin === true);
      const sdk = await ctx.sdk();
      const stored = await sdk.updateAncPassword(o.tenant, o.anc, password, {
        actor: ctx.globals().actor,
        requestId: o.requestId,
      });
      ctx.print(stored, (s: CredentialStored) =>
        keyValues([
          ['tenant', o.tenant],
          ['anc', o.anc],
          ['credential version', s.credentialVersion],
          ['tenant key version', s.tenantKeyVersion],
          ['stored', s.storedAt],
        ]),
      );
    });

  withAnc(program.command('delete').description('delete the ANC and all its data (not an error if it is gone already)'))
    .option('--request-id <id>', 'idempotency key', nonEmpty)
    .action(async (o: AncTarget & { requestId?: string }) => {
      const sdk = await ctx.sdk();
      const result = await sdk.deleteAnc(o.tenant, o.anc, { actor: ctx.globals().actor, requestId: o.requestId });
      ctx.print(result, (r) =>
        keyValues([
          ['tenant', o.tenant],
          ['anc', o.anc],
          ['deleted', r.deleted ? 'yes' : 'no (it did not exist)'],
        ]),
      );
    });

  withAnc(program.command('get').description("show the ANC's state, versions and last health check")).action(
    async (o: AncTarget) => {
      const sdk = await ctx.sdk();
      ctx.print(await sdk.getAnc(o.tenant, o.anc), formatAnc);
    },
  );

  withTenant(
    program.command('list').description("list the tenant's ANCs (from Temporal visibility: may lag a second)"),
  ).action(async (o: { tenant: string }) => {
    const sdk = await ctx.sdk();
    ctx.print(await sdk.listAncs(o.tenant), formatAncList);
  });
};

/** Health checks: `anc health run`. */
export const healthCommands: CommandGroup = (program, ctx) => {
  const health = program.command('health').description('ANC health checks');
  withAnc(health.command('run').description("run the ANC's health checks now with the stored credential")).action(
    async (o: AncTarget) => {
      const sdk = await ctx.sdk();
      const result = await sdk.runHealthChecks(o.tenant, o.anc, { actor: ctx.globals().actor });
      ctx.print(result, (r) => keyValues([['tenant', o.tenant], ['anc', o.anc], ...formatHealth(r)]));
    },
  );
};

/** The audit log, read from PostgreSQL directly: `anc audit verify|list`. */
export const auditCommands: CommandGroup = (program, ctx) => {
  const audit = program
    .command('audit')
    .description('the tamper-evident audit log (reads PostgreSQL: DATABASE_URL, AUDIT_MAC_KEY)');
  audit
    .command('verify')
    .description(
      'verify the whole MAC chain and that it is not shorter than its last anchor in Temporal; exit code 4 when not',
    )
    .option('--require-anchor', 'also fail (exit 4) when no anchor can be read from Temporal')
    .action(async (o: { requireAnchor?: boolean }) => {
      const { anchor, problem } = await latestAnchor(ctx);
      if (problem) ctx.note(`note: ${problem}: deletions of the newest records cannot be detected`);
      const result = await ctx.withAudit(async (store) => {
        if (store.devKey) ctx.note('note: AUDIT_MAC_KEY is not set: verifying with the development key');
        const chain = await verifyAuditChain(store.pool, store.macKey);
        return { ...chain, anchor: anchor ? await checkAuditAnchor(store.pool, anchor) : null };
      });
      ctx.print(result, formatVerification);
      if (!result.ok) {
        throw new CliError(
          'AuditChainBroken',
          `record ${result.brokenAt} does not verify (${result.reason})`,
          EXIT.AUDIT_BROKEN,
        );
      }
      if (result.anchor && !result.anchor.ok)
        throw new CliError('AuditChainBroken', anchorProblem(result.anchor), EXIT.AUDIT_BROKEN);
      if (!result.anchor && o.requireAnchor)
        throw new CliError('AuditAnchorMissing', problem ?? 'no audit anchor', EXIT.AUDIT_BROKEN);
    });
  audit
    .command('list')
    .description('the newest audit records first')
    .option('--tenant <tenantId>', 'only this tenant', nonEmpty)
    .option('--anc <ancId>', 'only this ANC', nonEmpty)
    .option('--limit <n>', 'at most this many records (1-10000)', intInRange(1, 10_000), 100)
    .action(async (o: { tenant?: string; anc?: string; limit: number }) => {
      const records = await ctx.withAudit((store) =>
        listAudit(store.pool, { tenantId: o.tenant, ancId: o.anc, limit: o.limit }),
      );
      ctx.print(records, formatAuditList);
    });
};

/** Every group, in help order. Colleagues: append tenant and rotation groups here. */
export const COMMAND_GROUPS: CommandGroup[] = [ancCommands, healthCommands, auditCommands];

// ------------------------------------------------------------------------------------ program

const ENV_HELP = `
Environment:
  TEMPORAL_ADDRESS (127.0.0.1:7233), TEMPORAL_NAMESPACE (default), TEMPORAL_API_KEY,
  TEMPORAL_TLS_*, TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE (Temporal's environment configuration),
  TEMPORAL_TASK_QUEUE (anc-credentials): as for the worker.
  DATABASE_URL, AUDIT_MAC_KEY (base64; development key when unset outside production): audit only.
  Unset variables are taken from .stack/env when it exists (the local stack).
  ANC_CLI_DEBUG=1 adds stack traces to unexpected errors.
`;

function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? process.env.LOGNAME ?? 'unknown';
  }
}

/**
 * Rejects `timeout` seconds after the first call to the service. The clock starts there, so
 * typing a password at the prompt does not count. Unarmed, it never settles.
 */
class Deadline {
  private timer: NodeJS.Timeout | undefined;
  private fail: (err: Error) => void = () => undefined;
  readonly expired = new Promise<never>((_, reject) => (this.fail = reject));

  constructor(private readonly seconds: () => number) {
    this.expired.catch(() => undefined);
  }

  arm(): void {
    if (this.timer) return;
    const s = this.seconds();
    this.timer = setTimeout(
      () =>
        this.fail(
          new AncServiceError('Timeout', `the service did not answer within ${s} s; a change may still complete`),
        ),
      s * 1000,
    );
  }

  clear(): void {
    clearTimeout(this.timer);
  }
}

function makeContext(program: Command, deps: CliDeps, deadline: Deadline): CliContext {
  const ctx: CliContext = {
    deps,
    globals() {
      const o = program.opts<{ json?: boolean; actor?: string; timeout: number }>();
      return { json: o.json === true, actor: o.actor ?? `cli:${(deps.username ?? osUser)()}`, timeout: o.timeout };
    },
    sdk() {
      deadline.arm();
      return deps.sdk();
    },
    print(value, human) {
      deps.out.write(ctx.globals().json ? `${JSON.stringify(value, null, 2)}\n` : human(value));
    },
    note(message) {
      deps.err.write(`${message}\n`);
    },
    async newPassword(fromStdin) {
      let password: string;
      if (fromStdin) {
        password = await deps.readStdinLine();
      } else {
        password = await deps.readPassword('Password: ');
        checkPassword(password);
        const again = await deps.readPassword('Confirm password: ');
        if (again !== password) {
          throw new CliError('PasswordMismatch', 'the passwords do not match; nothing was sent', EXIT.USAGE);
        }
      }
      checkPassword(password);
      return password;
    },
    async withAudit(fn) {
      deadline.arm();
      const store = await (
        deps.audit ?? (async () => (await import('./cli-env')).auditStoreFromEnv(deps.env ?? process.env))
      )();
      try {
        return await fn(store);
      } finally {
        await store.close();
      }
    },
  };
  return ctx;
}

/** The service's own password rules (the SDK checks them too), before anything is sent. */
function checkPassword(password: string): void {
  if (password.length === 0) throw new AncServiceError('PasswordEmpty', 'password must not be empty');
  if (password.length > MAX_PASSWORD_LENGTH) {
    throw new AncServiceError('PasswordTooLong', `password must be at most ${MAX_PASSWORD_LENGTH} characters`);
  }
}

export function buildProgram(deps: CliDeps, groups: CommandGroup[] = COMMAND_GROUPS): Command {
  return build(deps, groups).program;
}

function build(deps: CliDeps, groups: CommandGroup[]): { program: Command; deadline: Deadline } {
  const program = new Command('anc')
    .description('Operate the ANC credential service: ANCs, their health checks and the audit log.')
    .option('--json', 'print one machine-readable JSON document on stdout')
    .option('--actor <id>', 'who you are, for the audit log (default: cli:<os user name>)', nonEmpty)
    .option('--timeout <seconds>', 'give up waiting for the service after this long (exit 3)', intInRange(1, 3600), 120)
    // Set before any subcommand is added: subcommands inherit them.
    .exitOverride()
    .configureOutput({
      writeOut: (s) => deps.out.write(s),
      writeErr: (s) => deps.err.write(s),
    })
    .showHelpAfterError('(add --help for usage)')
    .addHelpText('after', ENV_HELP + EXIT_CODES_HELP);
  const deadline = new Deadline(() => program.opts<{ timeout: number }>().timeout);
  const ctx = makeContext(program, deps, deadline);
  for (const group of groups) group(program, ctx);
  return { program, deadline };
}

// ----------------------------------------------------------------------------- errors, exit codes

const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  '57P01', // PostgreSQL: admin shutdown
  '57P02', // crash shutdown
  '57P03', // cannot connect now
  '53300', // too many connections
]);
// gRPC status codes: DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNAVAILABLE.
const UNAVAILABLE_GRPC = new Set([4, 8, 14]);
const UNAVAILABLE_MESSAGE =
  /failed to connect before the deadline|timeout exceeded when trying to connect|connection terminated|connection refused/i;

/** Walks cause chains (and AggregateError members) looking for a transport failure. */
function isUnavailable(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 10) return false;
  const e = err as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
  if (typeof e.code === 'string' && (UNAVAILABLE_CODES.has(e.code) || /^08[0-9A-Z]{3}$/.test(e.code))) return true;
  if (typeof e.code === 'number' && UNAVAILABLE_GRPC.has(e.code)) return true;
  if (typeof e.message === 'string' && UNAVAILABLE_MESSAGE.test(e.message)) return true;
  if (Array.isArray(e.errors) && e.errors.some((x) => isUnavailable(x, depth + 1))) return true;
  return isUnavailable(e.cause, depth + 1);
}

export interface DescribedError {
  type: string;
  message: string;
  exitCode: number;
}

/**
 * The type, message and exit code an error ends the CLI with. `toServiceError` (client/errors.ts)
 * maps Temporal's errors; it is passed in so this module does not load the Temporal SDK.
 */
export function describeError(err: unknown, toServiceError: (err: unknown) => unknown = (e) => e): DescribedError {
  if (err instanceof CliError) return { type: err.type, message: err.message, exitCode: err.exitCode };
  if (err instanceof ConfigError) {
    return { type: 'ConfigError', message: err.problems.join('; '), exitCode: EXIT.USAGE };
  }
  const mapped = toServiceError(err);
  if (mapped instanceof AncServiceError) {
    return {
      type: mapped.type,
      message: mapped.message,
      exitCode: mapped.permanent ? EXIT.REFUSED : EXIT.UNAVAILABLE,
    };
  }
  const message = err instanceof Error ? err.message : String(err);
  if (isUnavailable(err)) return { type: 'ServiceUnavailable', message, exitCode: EXIT.UNAVAILABLE };
  const sqlState = (err as { code?: unknown; severity?: unknown } | null)?.severity
    ? (err as { code?: unknown }).code
    : undefined;
  if (typeof sqlState === 'string')
    return { type: 'DatabaseError', message: `${message} (${sqlState})`, exitCode: EXIT.REFUSED };
  const name = err instanceof Error && err.name !== 'Error' ? err.name : 'UnexpectedError';
  return { type: name, message, exitCode: EXIT.REFUSED };
}

/** Parses `argv` (without node and script), runs the command and returns the exit code. */
export async function runCli(argv: string[], deps: CliDeps, groups: CommandGroup[] = COMMAND_GROUPS): Promise<number> {
  const { program, deadline } = build(deps, groups);
  try {
    await Promise.race([program.parseAsync(argv, { from: 'user' }), deadline.expired]);
    return EXIT.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander printed its message already; --help and --version are not errors.
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? EXIT.OK : EXIT.USAGE;
    }
    const described = describeError(err, (await import('./errors')).toServiceError);
    deps.err.write(`error: ${described.type}: ${described.message.replace(/\s*\n\s*/g, ' ')}\n`);
    if ((deps.env ?? process.env).ANC_CLI_DEBUG && err instanceof Error && err.stack) deps.err.write(`${err.stack}\n`);
    return described.exitCode;
  } finally {
    deadline.clear();
  }
}
