import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TemporalConnectionError } from '../client/cli-env';
import { CliError, EXIT, promptHidden, type PasswordInput } from '../client/cli-io';
import { runCli, type CliDeps } from '../client/cli-program';
import type { AncClient } from '../client/sdk';
import { openStoredCredential } from './support/credentials';
import { dumpAllTables } from './support/db';
import { createHarness, startDevServer, type Harness } from './support/harness';
import { ROOT } from './support/stack';

/**
 * The operators' CLI against a dev server and a worker. The main paths spawn the real entry
 * (client/cli.ts through the project's tsx, what `npx tsx client/cli.ts` runs; the `anc` bin
 * through its shebang once); output formats, the password prompt (it needs a terminal: scripted
 * answers and a fake TTY) and timeouts are driven in-process through `runCli`, which is faster.
 *
 * Passwords reach the spawned CLI only on stdin (--password-stdin). While it runs, every
 * process's argv and environment are scanned for the canary password.
 */

const TSX = join(ROOT, 'node_modules/.bin/tsx');
const CLI = join(ROOT, 'client/cli.ts');
const CANARY = 'Canary#Pw-7f3a9c1e';
const CANARY2 = 'Canary#Pw2-b84d02aa';
const OPERATOR = 'ops@contoso.test';

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Processes whose argv or environment held the secret while the CLI ran. */
  leaks: string[];
}

/** Every readable /proc/<pid>/cmdline and environ that contains `secret`. */
function scanProcesses(secret: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    for (const file of ['cmdline', 'environ']) {
      try {
        if (readFileSync(`/proc/${pid}/${file}`).includes(secret)) found.push(`${pid}/${file}`);
      } catch {
        // gone already, or not ours to read
      }
    }
  }
  return found;
}

describe('anc CLI (dev server, worker, PostgreSQL)', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  const outputs: string[] = [];
  const leaks: string[] = [];
  const tenantId = `cli-${Date.now().toString(36)}`;
  const ancId = 'anc-1';

  beforeAll(async () => {
    env = await startDevServer();
    h = await createHarness({ env });
    await h.startWorker();
  });

  afterAll(async () => {
    await h?.close();
    await env?.teardown();
  });

  /** The harness database and MAC key, as the audit commands read them. */
  const auditEnv = () => ({ DATABASE_URL: h.db.url, AUDIT_MAC_KEY: h.deps.config.auditMacKey.toString('base64') });

  /** Runs the real CLI entry; `secret` turns on the process scan for it. */
  function cli(
    args: string[],
    opts: { stdin?: string; env?: NodeJS.ProcessEnv; secret?: string } = {},
  ): Promise<CliRun> {
    const child = spawn(TSX, [CLI, ...args], {
      cwd: ROOT,
      env: {
        ...process.env,
        TEMPORAL_ADDRESS: env.address,
        TEMPORAL_NAMESPACE: env.namespace ?? 'default',
        TEMPORAL_TASK_QUEUE: h.taskQueue,
        // The harness's local KEK has no certificate (certificate trust: test/kek-trust.test.ts).
        ANC_KEK_TRUST: 'unverified',
        ...opts.env,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const found = new Set<string>();
    const scan = opts.secret
      ? setInterval(() => scanProcesses(opts.secret as string).forEach((p) => found.add(p)), 40)
      : undefined;
    child.stdin.end(opts.stdin ?? '');
    return new Promise((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code) => {
        if (scan) clearInterval(scan);
        outputs.push(stdout, stderr);
        leaks.push(...found);
        resolve({ code, stdout, stderr, leaks: [...found] });
      });
    });
  }

  class Sink {
    text = '';
    write(s: string) {
      this.text += s;
      return true;
    }
  }
  /** In-process: `runCli` with buffers for stdout/stderr and scripted prompt answers. */
  function deps(answers: string[], sdk: () => Promise<AncClient> = async () => h.sdk, cliEnv?: NodeJS.ProcessEnv) {
    const prompts: string[] = [];
    const out = new Sink();
    const err = new Sink();
    const d: CliDeps = {
      sdk,
      out,
      err,
      readPassword: async (prompt) => {
        prompts.push(prompt);
        return answers.shift() ?? '';
      },
      readStdinLine: () => Promise.reject(new Error('stdin must not be read')),
      username: () => 'tester',
      env: cliEnv,
    };
    return { d, prompts, out, err };
  }

  async function inProcess(args: string[], cliEnv?: NodeJS.ProcessEnv) {
    const { d, out, err } = deps([], undefined, cliEnv);
    const code = await runCli(args, d);
    outputs.push(out.text, err.text);
    return { code, stdout: out.text, stderr: err.text };
  }

  const createArgs = (anc: string, user = 'svcDomainJoin@corp.contoso.test') => [
    'create',
    '--tenant',
    tenantId,
    '--anc',
    anc,
    '--name',
    'Contoso HQ',
    '--domain',
    'corp.contoso.test',
    '--ou',
    'OU=CloudPCs,DC=corp,DC=contoso,DC=test',
    '--user',
    user,
  ];

  // Spawned: create, get, update-password, list, delete; the human formats in-process.
  it('create, get, update-password, list, health run and delete through the real entry', async () => {
    // The password is the first line of stdin; its line ending is not part of it.
    const created = await cli(['--json', '--actor', OPERATOR, ...createArgs(ancId), '--password-stdin'], {
      stdin: `${CANARY}\n`,
      secret: CANARY,
    });
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({
      tenantId,
      ancId,
      state: 'active',
      credentialVersion: 1,
      adDomainUsername: 'svcDomainJoin@corp.contoso.test',
    });
    expect(await openStoredCredential(h, tenantId, ancId, 1)).toBe(CANARY);

    const got = await cli(['get', '--tenant', tenantId, '--anc', ancId, '--json']);
    expect(got.code).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({ state: 'active', credentialVersion: 1 });
    const human = await inProcess(['get', '--tenant', tenantId, '--anc', ancId]);
    expect(human.code).toBe(0);
    // Aligned "key: value" lines: every value starts in the same column.
    const lines = human.stdout.trimEnd().split('\n');
    expect(new Set(lines.map((l) => /^[a-z ]+: +/.exec(l)?.[0].length)).size).toBe(1);
    expect(human.stdout).toMatch(/^state: +active$/m);
    expect(human.stdout).toMatch(/^credential version: +1$/m);

    const updated = await cli(['update-password', '--tenant', tenantId, '--anc', ancId, '--password-stdin', '--json'], {
      stdin: `${CANARY2}\r\nthe rest of stdin is ignored\n`,
      secret: CANARY2,
    });
    expect(updated.code).toBe(0);
    expect(JSON.parse(updated.stdout)).toMatchObject({ credentialVersion: 2, tenantKeyVersion: 1 });
    expect(await openStoredCredential(h, tenantId, ancId, 2)).toBe(CANARY2);

    // Listing reads Temporal's visibility store, which lags: wait for it, then list once.
    await expect
      .poll(async () => (await h.sdk.listAncs(tenantId)).map((a) => a.ancId), { timeout: 10_000 })
      .toEqual([ancId]);
    const listed = await cli(['list', '--tenant', tenantId, '--json']);
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual([expect.objectContaining({ tenantId, ancId, state: 'active' })]);
    const table = await inProcess(['list', '--tenant', tenantId]);
    expect(table.stdout.split('\n')[0]).toMatch(/^ANC\s+STATE\s+HEALTH$/);
    expect(table.stdout.split('\n')[1]).toMatch(new RegExp(`^${ancId}\\s+active\\b`));

    const health = await inProcess(['health', 'run', '--tenant', tenantId, '--anc', ancId, '--json']);
    expect(health.code).toBe(0);
    expect(['passed', 'failed', 'warning']).toContain(JSON.parse(health.stdout).status);

    const deleted = await cli(['delete', '--tenant', tenantId, '--anc', ancId, '--json']);
    expect(deleted.code).toBe(0);
    expect(JSON.parse(deleted.stdout)).toEqual({ deleted: true });
    const gone = await inProcess(['get', '--tenant', tenantId, '--anc', ancId]);
    expect(gone.code).toBe(EXIT.REFUSED);
    expect(gone.stdout).toBe('');
    expect(gone.stderr).toMatch(/^error: AncNotFound: /m);

    // The audit log names the operator given with --actor.
    const audit = await inProcess(['audit', 'list', '--tenant', tenantId, '--json'], auditEnv());
    expect(audit.code).toBe(0);
    const events = JSON.parse(audit.stdout) as Array<{ event: string; actor: string }>;
    expect(events.find((e) => e.event === 'anc.created')?.actor).toBe(OPERATOR);
    expect(events.map((e) => e.event)).toEqual(expect.arrayContaining(['anc.credential_updated', 'anc.deleted']));
  });

  it('refuses bad input (1), usage errors and a missing terminal (2), and sends nothing', async () => {
    const before = await dumpAllTables(h.db.pool);
    const [badUpn, missing, noTty] = await Promise.all([
      cli([...createArgs('anc-bad', 'svcDomainJoin'), '--password-stdin'], { stdin: `${CANARY}\n`, secret: CANARY }),
      cli(['create', '--tenant', tenantId, '--anc', 'anc-x', '--name', 'X', '--domain', 'corp.contoso.test']),
      // Without --password-stdin the password is asked on a terminal; a pipe is refused, not read.
      cli(createArgs('anc-nottya'), { stdin: `${CANARY}\n${CANARY}\n` }),
    ]);
    expect(badUpn.code).toBe(EXIT.REFUSED);
    expect(badUpn.stderr).toMatch(/^error: InvalidUpn: /m);
    expect(badUpn.stdout).toBe('');
    expect(badUpn.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(missing.code).toBe(EXIT.USAGE);
    expect(missing.stderr).toMatch(/^error: required option '--user <upn>' not specified/m);
    const unknown = await inProcess(['get', '--tenant', tenantId, '--anc', ancId, '--frobnicate']);
    expect(unknown.code).toBe(EXIT.USAGE);
    expect(unknown.stderr).toMatch(/unknown option '--frobnicate'/);
    expect(noTty.code).toBe(EXIT.USAGE);
    expect(noTty.stderr).toMatch(/^error: NoTerminal: .*--password-stdin/m);
    expect(await dumpAllTables(h.db.pool)).toBe(before);
  });

  it('the bin entry runs through its shebang and documents the exit codes', async () => {
    const child = spawn(CLI, ['--help'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    const code = await new Promise((resolve) => child.on('close', resolve));
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Exit codes:$/m);
    for (const c of ['0', '1', '2', '3', '4']) expect(stdout).toMatch(new RegExp(`^  ${c} +\\S`, 'm'));
    for (const cmd of ['create', 'update-password', 'delete', 'get', 'list', 'health', 'audit']) {
      expect(stdout).toMatch(new RegExp(`^  ${cmd} `, 'm'));
    }
  });

  describe('in-process: the password prompt, timeouts', () => {
    it('asks twice; different answers are refused with exit 2 before anything is sent', async () => {
      let connected = 0;
      const { d, prompts, out, err } = deps([CANARY, `${CANARY}x`], async () => {
        connected++;
        return h.sdk;
      });
      expect(await runCli(createArgs('anc-prompt'), d)).toBe(EXIT.USAGE);
      expect(prompts).toEqual(['Password: ', 'Confirm password: ']);
      expect(err.text).toBe('error: PasswordMismatch: the passwords do not match; nothing was sent\n');
      expect(out.text).toBe('');
      expect(connected).toBe(0);
    });

    it('matching answers create the ANC; the actor defaults to cli:<os user>', async () => {
      const { d, out, err } = deps([CANARY, CANARY], async () => h.sdk);
      expect(await runCli(createArgs('anc-prompt'), d)).toBe(EXIT.OK);
      expect(err.text).toBe('');
      expect(out.text).toMatch(/^anc: +anc-prompt$/m);
      const { rows } = await h.db.pool.query(
        `SELECT actor FROM audit_log WHERE tenant_id = $1 AND anc_id = 'anc-prompt' AND event = 'anc.created'`,
        [tenantId],
      );
      expect(rows).toEqual([{ actor: 'cli:tester' }]);
    });

    it('an empty first answer is refused at once (exit 1, PasswordEmpty)', async () => {
      const { d, prompts, err } = deps([''], () => Promise.reject(new Error('must not connect')));
      expect(await runCli(createArgs('anc-empty'), d)).toBe(EXIT.REFUSED);
      expect(prompts).toEqual(['Password: ']);
      expect(err.text).toMatch(/^error: PasswordEmpty: /);
    });

    it('a service that does not answer, or cannot be reached, ends with exit 3', async () => {
      const hung = deps([], () => new Promise<AncClient>(() => undefined));
      expect(await runCli(['--timeout', '1', 'get', '--tenant', tenantId, '--anc', ancId], hung.d)).toBe(
        EXIT.UNAVAILABLE,
      );
      expect(hung.err.text).toMatch(/^error: Timeout: the service did not answer within 1 s/);

      const down = deps([], () =>
        Promise.reject(
          new TemporalConnectionError(
            'cannot connect to Temporal at 127.0.0.1:1 (namespace default): Failed to connect before the deadline',
            new Error('Failed to connect before the deadline'),
          ),
        ),
      );
      expect(await runCli(['list', '--tenant', tenantId], down.d)).toBe(EXIT.UNAVAILABLE);
      expect(down.err.text).toBe(
        'error: ServiceUnavailable: cannot connect to Temporal at 127.0.0.1:1 (namespace default): Failed to connect before the deadline\n',
      );
    });

    it('the hidden prompt reads keystrokes in raw mode without echoing them', async () => {
      const tty = Object.assign(new PassThrough(), {
        isTTY: true,
        isRaw: false,
        setRawMode(mode: boolean) {
          tty.isRaw = mode;
          modes.push(mode);
          return tty;
        },
      });
      const modes: boolean[] = [];
      const screen = new Sink();
      const answer = promptHidden('Password: ', tty as unknown as PasswordInput, screen);
      // Typing, a Backspace, an arrow key (ignored), then Enter.
      tty.write('Se\u007fecr');
      tty.write('\u001b[Det!\r');
      expect(await answer).toBe('Secret!');
      expect(screen.text).toBe('Password: \n');
      expect(modes).toEqual([true, false]);

      const cancelled = promptHidden('Password: ', tty as unknown as PasswordInput, screen);
      tty.write('abc\u0003');
      const err = await cancelled.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CliError);
      expect((err as CliError).exitCode).toBe(EXIT.INTERRUPTED);
    });
  });

  it('audit verify: OK with the record count, then exit 4 naming the first tampered record', async () => {
    const ok = await cli(['audit', 'verify'], { env: auditEnv() });
    // No audit-anchor workflow runs here (anchors: test/audit-anchor.test.ts): the CLI says so.
    const noAnchor = /^note: the audit-anchor workflow .*|^note: no audit anchor could be read .*/;
    expect(ok.stderr).toMatch(noAnchor);
    expect(ok.stderr.trim().split('\n')).toHaveLength(1);
    expect(ok.code).toBe(0);
    const { rows } = await h.db.pool.query<{ n: number; seq: string }>(
      `SELECT (SELECT count(*)::int FROM audit_log) AS n,
              (SELECT min(seq) FROM audit_log WHERE event = 'anc.created') AS seq`,
    );
    const { n, seq } = rows[0] as { n: number; seq: string };
    expect(n).toBeGreaterThan(3);
    expect(Number(seq)).toBeGreaterThan(1);
    expect(ok.stdout).toBe(`OK: audit chain verified, ${n} records\n`);

    // The wrong key breaks the chain at its first record.
    const wrongKey = await inProcess(['audit', 'verify', '--json'], {
      ...auditEnv(),
      AUDIT_MAC_KEY: Buffer.alloc(32, 9).toString('base64'),
    });
    expect(wrongKey.code).toBe(EXIT.AUDIT_BROKEN);
    expect(JSON.parse(wrongKey.stdout)).toEqual({
      ok: false,
      records: 0,
      brokenAt: 1,
      reason: 'mac-mismatch',
      anchor: null,
    });

    await h.db.pool.query(
      `ALTER TABLE audit_log DISABLE TRIGGER USER;
       UPDATE audit_log SET actor = 'mallory@contoso.test' WHERE seq = ${Number(seq)};
       ALTER TABLE audit_log ENABLE TRIGGER USER;`,
    );
    const broken = await cli(['audit', 'verify'], { env: auditEnv() });
    expect(broken.code).toBe(EXIT.AUDIT_BROKEN);
    expect(broken.stdout).toBe(
      `BROKEN: record ${seq} does not verify (mac-mismatch); ${Number(seq) - 1} records before it verified\n`,
    );
    expect(broken.stderr).toMatch(noAnchor);
    expect(broken.stderr).toContain(`\nerror: AuditChainBroken: record ${seq} does not verify (mac-mismatch)\n`);
  });

  it('the canary password never showed in any output, argv or environment', () => {
    expect(outputs.length).toBeGreaterThan(10);
    for (const text of outputs) {
      expect(text).not.toContain(CANARY);
      expect(text).not.toContain(CANARY2);
    }
    expect(leaks).toEqual([]);
  });
});
