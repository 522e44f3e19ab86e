import { z } from 'zod';
import { ConfigError, readTemporalSettings, type TemporalSettings } from '../common/temporal-config';
import { PRIMARY_VAULT_ID, VAULT_ID_PATTERN } from '../common/vaults';
import { projectRoot } from './local-stack-env';

export { ConfigError } from '../common/temporal-config';
export { loadLocalStackEnv } from './local-stack-env';

/** Parsed once at start; every problem is reported together, one line each, naming the variable. */
export interface Config {
  databaseUrl: string;
  temporal: TemporalSettings;
  kek:
    | {
        kind: 'azure-key-vault';
        vaultUrl: string;
        keyName: string;
        keySize: 2048 | 3072 | 4096;
        /** HSM operations allowed per second (Key Vault counts per 10 s window per vault). */
        hsmOpsPerSecond: number;
        /** Local emulator: a static token instead of DefaultAzureCredential, no challenge resource check. */
        emulator: boolean;
        /** PEM file of an extra CA to trust for the vault's TLS certificate (the emulator's). */
        caPath?: string;
        /** A Key Vault certificate renewed by Key Vault (default), or a bare key the service renews. */
        mode: 'certificate' | 'key';
        /** Certificate issuer: `Self` (local runs) or a CA issuer configured in the vault (production). */
        certIssuer: string;
        /** Certificate subject clients check, e.g. CN=anc-credential-kek. */
        certSubject: string;
      }
    | { kind: 'local-dev'; dir: string; keySize: 2048 | 3072 | 4096 };
  /**
   * Every vault the worker serves, the first one first (`kek` above is the first's). Each has its
   * own KEK (same key name and certificate settings), HSM budget and HSM task queue.
   */
  vaults: VaultConfig[];
  auditMacKey: Buffer;
  maxAncsPerTenant: number;
  envelopeMaxAgeSeconds: number;
  healthCheckIntervalMinutes: number;
  rotationIntervalHours: number;
  /** Disable a KEK version in Key Vault once no tenant key refers to it. */
  disableUnreferencedKekVersions: boolean;
  auditAnchor: {
    /** How often the audit chain's head is anchored (besides every rotation run). */
    intervalMinutes: number;
    /** The Key Vault key that signs anchors (sign/verify only). */
    keyName: string;
  };
  ldap: {
    /** ldap:// or ldaps:// URL template; `{domain}` is replaced with the AD domain name. */
    urlTemplate: string;
    startTls: boolean;
    timeoutMs: number;
    caPath?: string;
    /** Static DNS answers (domain=ip,...), for tests and air-gapped sites. */
    dnsOverrides: Record<string, string>;
    /** How the UPN binds: AD accepts it directly; other directories need a DN lookup first. */
    upnBind: 'auto' | 'direct' | 'lookup';
    /** A passed check turns into a warning when the password expires within this many days. */
    passwordExpiryWarningDays: number;
  };
  logLevel: string;
  /** Port of the HTTP health endpoint (GET /healthz); none when unset. */
  healthPort?: number;
  /** Port of the Prometheus endpoint (GET /metrics); none when unset. */
  metricsPort?: number;
  /** How long a stopping worker lets running activities finish. */
  shutdownGraceSeconds: number;
  // HSM budget for the fleet and the tenant-key cache
  /** Activities per second on the HSM task queue, for all workers together (one HSM call each). */
  hsmQueueActivitiesPerSecond: number;
  /**
   * HSM-bound activities one worker process runs at once, per vault. It also bounds what a process
   * can release at once after a pause (a stall, a long GC): the tasks it holds, not the seconds missed.
   */
  hsmWorkerSlots: number;
  /** Unwrapped tenant keys kept in memory; maxEntries 0 turns the cache off. */
  tenantKeyCache: { maxEntries: number; maxAgeSeconds: number; maxUses: number };
  // Tenant retention and the sweep of tenant workflows.
  /** How long a deactivated tenant's data is kept before it is purged. */
  tenantRetentionMs: number;
  /** How often the sweep restarts tenant workflows lost mid-window (terminated by an operator). */
  tenantSweepIntervalMs: number;
}

/** One configured vault: its id, its KEK settings, whether new tenants may be placed on it. */
export interface VaultConfig {
  id: string;
  kek: Config['kek'];
  /** Closed: keeps serving its tenants but gets no new ones (KEYVAULT_CLOSED_VAULTS). */
  closed: boolean;
}

const ROOT = projectRoot();

// ------------------------------------------------------------------ value kinds
// Every variable is text (or absent: empty counts as absent). Each kind turns it into a value or
// adds one issue whose message reads after the variable's name.

const optionalText = () => z.string().optional();
const text = (fallback: string) => z.string().default(fallback);
const required = () => z.string({ error: 'is required' });

const integer = (min: number, max: number, fallback: number) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined) return fallback;
      const n = Number(raw);
      if (!Number.isInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `must be an integer from ${min} to ${max} (got "${raw}")` });
        return z.NEVER;
      }
      return n;
    });

const optionalPort = () =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined) return undefined;
      const n = Number(raw);
      if (!Number.isInteger(n) || n < 1 || n > 65535) {
        ctx.addIssue({ code: 'custom', message: `must be a port from 1 to 65535 (got "${raw}")` });
        return z.NEVER;
      }
      return n;
    });

const boolean = (fallback: boolean) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined) return fallback;
      const v = raw.toLowerCase();
      if (['1', 'true', 'yes'].includes(v)) return true;
      if (['0', 'false', 'no'].includes(v)) return false;
      ctx.addIssue({ code: 'custom', message: `must be true or false (got "${raw}")` });
      return z.NEVER;
    });

const oneOf = <T extends string>(allowed: readonly [T, ...T[]], fallback: T) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined) return fallback;
      if ((allowed as readonly string[]).includes(raw)) return raw as T;
      ctx.addIssue({ code: 'custom', message: `must be one of ${allowed.join(', ')} (got "${raw}")` });
      return z.NEVER;
    });

const keySize = () =>
  z
    .string()
    .optional()
    .transform((raw, ctx): 2048 | 3072 | 4096 => {
      if (raw === undefined) return 3072;
      if (raw === '2048' || raw === '3072' || raw === '4096') return Number(raw) as 2048 | 3072 | 4096;
      ctx.addIssue({ code: 'custom', message: `must be 2048, 3072 or 4096 (got "${raw}")` });
      return z.NEVER;
    });

const url = (pattern: RegExp, what: string) =>
  z.string().refine((v) => pattern.test(v), { message: `must be ${what}` });

const dnsOverrides = () =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      const out: Record<string, string> = {};
      for (const pair of (raw ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)) {
        const [domain, ip] = pair.split('=');
        if (!domain || !ip) ctx.addIssue({ code: 'custom', message: `entry "${pair}" must look like domain=ip` });
        else out[domain.toLowerCase()] = ip;
      }
      return out;
    });

/** `id=https://...` pairs, comma-separated, ids unique and of the vault id format. */
const vaultList = () =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined) return undefined;
      const out: Array<{ id: string; url: string }> = [];
      for (const pair of raw
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)) {
        const eq = pair.indexOf('=');
        const id = pair.slice(0, eq);
        const vaultUrl = pair.slice(eq + 1).trim();
        if (eq <= 0 || !VAULT_ID_PATTERN.test(id) || !/^https:\/\//.test(vaultUrl))
          ctx.addIssue({
            code: 'custom',
            message: `entry "${pair}" must look like id=https://... (id: a-z, 0-9, -; 1 to 20)`,
          });
        else if (out.some((v) => v.id === id)) ctx.addIssue({ code: 'custom', message: `names vault "${id}" twice` });
        else out.push({ id, url: vaultUrl });
      }
      if (out.length > 0 && out[0]?.id !== PRIMARY_VAULT_ID)
        ctx.addIssue({
          code: 'custom',
          message: `must list "${PRIMARY_VAULT_ID}" first (the vault existing tenants and the <queue>-hsm queue belong to)`,
        });
      return out;
    });

const idList = () =>
  z
    .string()
    .optional()
    .transform((raw) =>
      (raw ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    );

const DURATION_UNITS_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DAY_MS = DURATION_UNITS_MS.d;

/** A duration like `29d`, `12h`, `90m` or `20s` in milliseconds; undefined when it does not parse. */
export function parseDuration(raw: string): number | undefined {
  const m = /^(\d+)\s*([smhd])$/.exec(raw.trim());
  if (!m?.[1] || !m[2]) return undefined;
  return Number(m[1]) * DURATION_UNITS_MS[m[2] as keyof typeof DURATION_UNITS_MS];
}

const duration = (minMs: number, maxMs: number, fallbackMs: number) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined) return fallbackMs;
      const ms = parseDuration(raw);
      if (ms === undefined || ms < minMs || ms > maxMs) {
        ctx.addIssue({
          code: 'custom',
          message: `must be a duration like 29d, 12h, 90m or 20s, from ${minMs / 1000}s to ${maxMs / DAY_MS}d (got "${raw}")`,
        });
        return z.NEVER;
      }
      return ms;
    });

/**
 * The worker's environment, one entry per variable. Other areas add their variables with
 * `envSchema.extend({...})`. Temporal's connection variables (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
 * TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE) are read by the SDK's
 * environment configuration (common/temporal-config.ts), not here.
 */
export const envSchema = z.object({
  NODE_ENV: optionalText(),
  DATABASE_URL: required().pipe(url(/^postgres(ql)?:\/\//, 'a postgres:// URL')),
  TEMPORAL_TASK_QUEUE: text('anc-credentials'),

  // Key Vault (unset KEYVAULT_URL: the local development KEK)
  KEYVAULT_URL: url(/^https:\/\//, 'an https:// URL').optional(),
  // Several vaults: primary=https://...,eu2=https://... (absent: one vault "primary" at KEYVAULT_URL)
  KEYVAULT_VAULTS: vaultList(),
  KEYVAULT_CLOSED_VAULTS: idList(),
  KEYVAULT_KEY_NAME: text('anc-credential-kek'),
  KEYVAULT_KEY_SIZE: keySize(),
  KEYVAULT_HSM_OPS_PER_SECOND: integer(1, 200, 0),
  KEYVAULT_EMULATOR: boolean(false),
  KEYVAULT_CA: optionalText(),
  LOCAL_KEK_DIR: text(`${ROOT}.stack/local-kek`),
  LOCAL_KEK_KEY_SIZE: keySize(),

  AUDIT_MAC_KEY: z
    .string()
    .optional()
    .refine((v) => v === undefined || Buffer.from(v, 'base64').length === 32, {
      message: 'must be 32 bytes, base64-encoded',
    }),
  MAX_ANCS_PER_TENANT: integer(1, 10_000, 10),
  ENVELOPE_MAX_AGE_SECONDS: integer(10, 3600, 300),
  HEALTH_CHECK_INTERVAL_MINUTES: integer(1, 7 * 24 * 60, 360),
  ROTATION_INTERVAL_HOURS: integer(1, 24 * 31, 24),
  DISABLE_UNREFERENCED_KEK_VERSIONS: boolean(false),

  // Certificate-mode KEK and audit anchors
  KEYVAULT_KEK_MODE: oneOf(['certificate', 'key'], 'certificate'),
  KEYVAULT_CERT_ISSUER: text('Self'),
  KEYVAULT_CERT_SUBJECT: optionalText(),
  AUDIT_ANCHOR_INTERVAL_MINUTES: integer(1, 24 * 60, 60),
  AUDIT_ANCHOR_KEY_NAME: text('anc-audit-anchor'),

  // LDAP health checks
  LDAP_URL: text('ldaps://{domain}:636'),
  LDAP_STARTTLS: boolean(false),
  LDAP_TIMEOUT_MS: integer(100, 120_000, 5000),
  LDAP_CA: optionalText(),
  DNS_OVERRIDES: dnsOverrides(),
  LDAP_UPN_BIND: oneOf(['auto', 'direct', 'lookup'], 'auto'),
  LDAP_PASSWORD_EXPIRY_WARNING_DAYS: integer(0, 365, 14),

  // Operations: logs, health endpoint, metrics, shutdown
  LOG_LEVEL: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info'),
  HEALTH_PORT: optionalPort(),
  METRICS_PORT: optionalPort(),
  SHUTDOWN_GRACE_SECONDS: integer(1, 3600, 30),

  // HSM budget for the fleet (0: 0.4 of KEYVAULT_HSM_OPS_PER_SECOND) and the tenant-key cache
  HSM_QUEUE_ACTIVITIES_PER_SECOND: integer(1, 10_000, 0),
  // HSM-bound activities in flight per worker process and vault (0: half a second of the queue's rate, at least 2)
  HSM_WORKER_SLOTS: integer(1, 10_000, 0),
  TENANT_KEY_CACHE_MAX_ENTRIES: integer(0, 10_000_000, 10_000),
  TENANT_KEY_CACHE_MAX_AGE_SECONDS: integer(1, 24 * 3600, 300),
  TENANT_KEY_CACHE_MAX_USES: integer(1, 1_000_000_000, 1_000),
  // Tenant retention and the sweep of tenant workflows. TENANT_RETENTION_DAYS (0: unset) is read
  // only when TENANT_RETENTION is not set, for existing deployments.
  TENANT_RETENTION: duration(1000, 365 * DAY_MS, 29 * DAY_MS),
  TENANT_RETENTION_DAYS: integer(1, 365, 0),
  TENANT_SWEEP_INTERVAL: duration(1000, DAY_MS, 3_600_000),
});

export type Env = z.output<typeof envSchema>;

/** The environment as the schema reads it: values trimmed, empty ones absent. */
export function cleanEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    const v = value?.trim();
    if (v) out[name] = v;
  }
  return out;
}

/** One line per issue: the variable's name, then what is wrong with it. */
export function describeIssues(issues: readonly z.core.$ZodIssue[], variable?: string): string[] {
  return issues.map((issue) => `${variable ?? issue.path.join('.')} ${issue.message}`);
}

/** Rules that involve more than one variable, checked on the raw environment so they add to the schema's. */
function crossChecks(env: Record<string, string>): string[] {
  const problems: string[] = [];
  const production = env.NODE_ENV === 'production';
  if (production && !env.AUDIT_MAC_KEY)
    problems.push('AUDIT_MAC_KEY is required in production (32 random bytes, base64)');
  if (production && !env.KEYVAULT_URL && !env.KEYVAULT_VAULTS)
    problems.push('KEYVAULT_URL is required in production (the local development KEK is not for production)');
  if (production && (env.KEYVAULT_URL || env.KEYVAULT_VAULTS) && /^(1|true|yes)$/i.test(env.KEYVAULT_EMULATOR ?? ''))
    problems.push('KEYVAULT_EMULATOR must not be set in production');
  // Several vaults: KEYVAULT_URL, when also set, must be the first one's.
  const firstListed = /^\s*primary=([^,\s]+)/.exec(env.KEYVAULT_VAULTS ?? '')?.[1];
  if (env.KEYVAULT_VAULTS && env.KEYVAULT_URL && firstListed && firstListed !== env.KEYVAULT_URL)
    problems.push('KEYVAULT_URL must be unset or equal to the primary vault of KEYVAULT_VAULTS');
  // A worker may use at most the whole vault's budget for its key size (per second).
  const size = env.KEYVAULT_KEY_SIZE ?? '3072';
  const max = size === '2048' ? 200 : size === '3072' ? 50 : size === '4096' ? 25 : undefined;
  const ops = Number(env.KEYVAULT_HSM_OPS_PER_SECOND);
  if (max !== undefined && Number.isInteger(ops) && ops > max && ops <= 200)
    problems.push(`KEYVAULT_HSM_OPS_PER_SECOND must be at most ${max} for ${size}-bit keys (got "${ops}")`);
  // Tenant retention: seconds are for tests; production keeps data at least a day.
  if (env.TENANT_RETENTION && env.TENANT_RETENTION_DAYS)
    problems.push('set TENANT_RETENTION or TENANT_RETENTION_DAYS, not both');
  const retentionMs = env.TENANT_RETENTION ? parseDuration(env.TENANT_RETENTION) : undefined;
  if (production && retentionMs !== undefined && retentionMs < DAY_MS)
    problems.push('TENANT_RETENTION must be at least 1d in production');
  return problems;
}

export function loadConfig(rawEnv: NodeJS.ProcessEnv = process.env): Config {
  const env = cleanEnv(rawEnv);
  const problems: string[] = [];
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) problems.push(...describeIssues(parsed.error.issues));
  problems.push(...crossChecks(env));
  const temporal = readTemporalSettings(env, problems);
  if (!parsed.success || problems.length > 0) throw new ConfigError(problems);
  const e = parsed.data;

  const listed = e.KEYVAULT_VAULTS && e.KEYVAULT_VAULTS.length > 0 ? e.KEYVAULT_VAULTS : undefined;
  const vaultProblems: string[] = [];
  for (const id of e.KEYVAULT_CLOSED_VAULTS) {
    if (!(listed ?? [{ id: PRIMARY_VAULT_ID }]).some((v) => v.id === id))
      vaultProblems.push(`KEYVAULT_CLOSED_VAULTS names "${id}", which is not a configured vault`);
  }
  if ((listed?.length ?? 1) <= e.KEYVAULT_CLOSED_VAULTS.length && e.KEYVAULT_CLOSED_VAULTS.length > 0)
    vaultProblems.push('KEYVAULT_CLOSED_VAULTS must leave at least one vault open to new tenants');
  if (vaultProblems.length > 0) throw new ConfigError(vaultProblems);
  // Azure Key Vault's per-vault budget for HSM key operations, per 10 seconds (see README).
  const vaultLimitPer10s = e.KEYVAULT_KEY_SIZE === 2048 ? 2000 : e.KEYVAULT_KEY_SIZE === 3072 ? 500 : 250;
  // Key name, certificate settings and the HSM budget apply to each vault: Key Vault limits per vault.
  const keyVaultKek = (vaultUrl: string): Config['kek'] => ({
    kind: 'azure-key-vault',
    vaultUrl,
    keyName: e.KEYVAULT_KEY_NAME,
    keySize: e.KEYVAULT_KEY_SIZE,
    // Default: half the vault's limit, leaving room for other clients of the same vault.
    hsmOpsPerSecond: e.KEYVAULT_HSM_OPS_PER_SECOND || vaultLimitPer10s / 20,
    emulator: e.KEYVAULT_EMULATOR,
    caPath: e.KEYVAULT_CA,
    mode: e.KEYVAULT_KEK_MODE,
    certIssuer: e.KEYVAULT_CERT_ISSUER,
    certSubject: e.KEYVAULT_CERT_SUBJECT ?? `CN=${e.KEYVAULT_KEY_NAME}`,
  });
  const firstUrl = listed?.[0]?.url ?? e.KEYVAULT_URL;
  const kek: Config['kek'] = firstUrl
    ? keyVaultKek(firstUrl)
    : { kind: 'local-dev', dir: e.LOCAL_KEK_DIR, keySize: e.LOCAL_KEK_KEY_SIZE };
  const closed = new Set(e.KEYVAULT_CLOSED_VAULTS);
  const vaults: VaultConfig[] = listed
    ? listed.map((v, i) => ({ id: v.id, kek: i === 0 ? kek : keyVaultKek(v.url), closed: closed.has(v.id) }))
    : [{ id: PRIMARY_VAULT_ID, kek, closed: false }];
  // Temporal's task-queue rate is a token bucket whose burst about equals its rate, so the default is
  // 0.4 of the vault budget: a full burst plus the steady rate stays inside the budget in any one second.
  const hsmQueueActivitiesPerSecond =
    e.HSM_QUEUE_ACTIVITIES_PER_SECOND ||
    (kek.kind === 'azure-key-vault' ? Math.max(1, Math.floor(kek.hsmOpsPerSecond * 0.4)) : 100);

  return {
    databaseUrl: e.DATABASE_URL,
    temporal: { ...temporal, taskQueue: e.TEMPORAL_TASK_QUEUE },
    kek,
    vaults,
    // Development only: a fixed, public key. The chain still detects accidental edits.
    auditMacKey: e.AUDIT_MAC_KEY ? Buffer.from(e.AUDIT_MAC_KEY, 'base64') : Buffer.alloc(32, 0x41),
    maxAncsPerTenant: e.MAX_ANCS_PER_TENANT,
    envelopeMaxAgeSeconds: e.ENVELOPE_MAX_AGE_SECONDS,
    healthCheckIntervalMinutes: e.HEALTH_CHECK_INTERVAL_MINUTES,
    rotationIntervalHours: e.ROTATION_INTERVAL_HOURS,
    disableUnreferencedKekVersions: e.DISABLE_UNREFERENCED_KEK_VERSIONS,
    auditAnchor: { intervalMinutes: e.AUDIT_ANCHOR_INTERVAL_MINUTES, keyName: e.AUDIT_ANCHOR_KEY_NAME },
    ldap: {
      urlTemplate: e.LDAP_URL,
      startTls: e.LDAP_STARTTLS,
      timeoutMs: e.LDAP_TIMEOUT_MS,
      caPath: e.LDAP_CA,
      dnsOverrides: e.DNS_OVERRIDES,
      upnBind: e.LDAP_UPN_BIND,
      passwordExpiryWarningDays: e.LDAP_PASSWORD_EXPIRY_WARNING_DAYS,
    },
    logLevel: e.LOG_LEVEL,
    healthPort: e.HEALTH_PORT,
    metricsPort: e.METRICS_PORT,
    shutdownGraceSeconds: e.SHUTDOWN_GRACE_SECONDS,
    // HSM budget for the fleet (per vault: each vault's HSM queue gets this rate) and the tenant-key cache.
    hsmQueueActivitiesPerSecond,
    hsmWorkerSlots: e.HSM_WORKER_SLOTS || Math.max(2, Math.ceil(hsmQueueActivitiesPerSecond / 2)),
    tenantKeyCache: {
      maxEntries: e.TENANT_KEY_CACHE_MAX_ENTRIES,
      maxAgeSeconds: e.TENANT_KEY_CACHE_MAX_AGE_SECONDS,
      maxUses: e.TENANT_KEY_CACHE_MAX_USES,
    },
    tenantRetentionMs:
      !env.TENANT_RETENTION && e.TENANT_RETENTION_DAYS ? e.TENANT_RETENTION_DAYS * DAY_MS : e.TENANT_RETENTION,
    tenantSweepIntervalMs: e.TENANT_SWEEP_INTERVAL,
  };
}
