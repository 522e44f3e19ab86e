import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Parsed once at start; every problem is reported together, with the variable's name. */
export interface Config {
  databaseUrl: string;
  temporal: {
    address: string;
    namespace: string;
    taskQueue: string;
    apiKey?: string;
    tls?: { certPath?: string; keyPath?: string; serverCaPath?: string; serverName?: string };
  };
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
        // Certificate-mode KEK (KEYVAULT_KEK_MODE, KEYVAULT_CERT_ISSUER, KEYVAULT_CERT_SUBJECT)
        /** A Key Vault certificate renewed by Key Vault (default), or a bare key the service renews. */
        mode: 'certificate' | 'key';
        /** Certificate issuer: `Self` (local runs) or a CA issuer configured in the vault (production). */
        certIssuer: string;
        /** Certificate subject clients check, e.g. CN=anc-credential-kek. */
        certSubject: string;
      }
    | { kind: 'local-dev'; dir: string; keySize: 2048 | 3072 | 4096 };
  auditMacKey: Buffer;
  maxAncsPerTenant: number;
  retentionDays: number;
  envelopeMaxAgeSeconds: number;
  healthCheckIntervalMinutes: number;
  rotationIntervalHours: number;
  /** Disable a KEK version in Key Vault once no tenant key refers to it. */
  disableUnreferencedKekVersions: boolean;
  // Audit anchors (AUDIT_ANCHOR_INTERVAL_MINUTES, AUDIT_ANCHOR_KEY_NAME)
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
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * For local development, `.stack/env` (written by stack/up.sh) fills in what the environment does
 * not set. Production sets everything explicitly and has no such file.
 */
export function loadLocalStackEnv(env: NodeJS.ProcessEnv = process.env): void {
  const file = env.ANC_STACK_ENV ?? `${ROOT}.stack/env`;
  if (!existsSync(file)) return;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m && m[1] && env[m[1]] === undefined) env[m[1]] = m[2];
  }
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  const str = (name: string, fallback?: string): string => {
    const v = env[name]?.trim();
    if (v) return v;
    if (fallback !== undefined) return fallback;
    problems.push(`${name} is required`);
    return '';
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name]?.trim();
    if (!raw) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${name} must be an integer from ${min} to ${max} (got "${raw}")`);
      return fallback;
    }
    return n;
  };
  const bool = (name: string, fallback: boolean): boolean => {
    const raw = env[name]?.trim().toLowerCase();
    if (!raw) return fallback;
    if (['1', 'true', 'yes'].includes(raw)) return true;
    if (['0', 'false', 'no'].includes(raw)) return false;
    problems.push(`${name} must be true or false (got "${raw}")`);
    return fallback;
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[], fallback: T): T => {
    const raw = env[name]?.trim();
    if (!raw) return fallback;
    if ((allowed as readonly string[]).includes(raw)) return raw as T;
    problems.push(`${name} must be one of ${allowed.join(', ')} (got "${raw}")`);
    return fallback;
  };
  const keySize = (name: string): 2048 | 3072 | 4096 => {
    const n = int(name, 3072, 2048, 4096);
    if (n !== 2048 && n !== 3072 && n !== 4096) {
      problems.push(`${name} must be 2048, 3072 or 4096`);
      return 3072;
    }
    return n;
  };

  const databaseUrl = str('DATABASE_URL');
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) problems.push('DATABASE_URL must be a postgres:// URL');

  const vaultUrl = env.KEYVAULT_URL?.trim();
  let kek: Config['kek'];
  if (vaultUrl) {
    if (!/^https:\/\//.test(vaultUrl)) problems.push('KEYVAULT_URL must be an https:// URL');
    const size = keySize('KEYVAULT_KEY_SIZE');
    // Azure Key Vault's per-vault budget for HSM key operations, per 10 seconds (see README).
    const vaultLimitPer10s = size === 2048 ? 2000 : size === 3072 ? 500 : 250;
    kek = {
      kind: 'azure-key-vault',
      vaultUrl,
      keyName: str('KEYVAULT_KEY_NAME', 'anc-credential-kek'),
      keySize: size,
      // Default: half the vault's limit, leaving room for other clients of the same vault.
      hsmOpsPerSecond: int('KEYVAULT_HSM_OPS_PER_SECOND', vaultLimitPer10s / 20, 1, vaultLimitPer10s / 10),
      emulator: bool('KEYVAULT_EMULATOR', false),
      caPath: env.KEYVAULT_CA?.trim() || undefined,
      // Certificate-mode KEK
      mode: oneOf('KEYVAULT_KEK_MODE', ['certificate', 'key'] as const, 'certificate'),
      certIssuer: str('KEYVAULT_CERT_ISSUER', 'Self'),
      certSubject: str('KEYVAULT_CERT_SUBJECT', `CN=${env.KEYVAULT_KEY_NAME?.trim() || 'anc-credential-kek'}`),
    };
  } else {
    kek = {
      kind: 'local-dev',
      dir: str('LOCAL_KEK_DIR', `${ROOT}.stack/local-kek`),
      keySize: keySize('LOCAL_KEK_KEY_SIZE'),
    };
  }

  let auditMacKey = Buffer.alloc(0);
  const auditRaw = env.AUDIT_MAC_KEY?.trim();
  if (auditRaw) {
    auditMacKey = Buffer.from(auditRaw, 'base64');
    if (auditMacKey.length !== 32) problems.push('AUDIT_MAC_KEY must be 32 bytes, base64-encoded');
  } else if (env.NODE_ENV === 'production') {
    problems.push('AUDIT_MAC_KEY is required in production (32 random bytes, base64)');
  } else {
    // Development only: a fixed, public key. The chain still detects accidental edits.
    auditMacKey = Buffer.alloc(32, 0x41);
  }

  const dnsOverrides: Record<string, string> = {};
  for (const pair of (env.DNS_OVERRIDES ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [domain, ip] = pair.split('=');
    if (!domain || !ip) problems.push(`DNS_OVERRIDES entry "${pair}" must look like domain=ip`);
    else dnsOverrides[domain.toLowerCase()] = ip;
  }

  const config: Config = {
    databaseUrl,
    temporal: {
      address: str('TEMPORAL_ADDRESS', '127.0.0.1:7233'),
      namespace: str('TEMPORAL_NAMESPACE', 'default'),
      taskQueue: str('TEMPORAL_TASK_QUEUE', 'anc-credentials'),
      apiKey: env.TEMPORAL_API_KEY?.trim() || undefined,
      tls:
        env.TEMPORAL_TLS_CERT || env.TEMPORAL_TLS_CA || env.TEMPORAL_API_KEY
          ? {
              certPath: env.TEMPORAL_TLS_CERT?.trim() || undefined,
              keyPath: env.TEMPORAL_TLS_KEY?.trim() || undefined,
              serverCaPath: env.TEMPORAL_TLS_CA?.trim() || undefined,
              serverName: env.TEMPORAL_TLS_SERVER_NAME?.trim() || undefined,
            }
          : undefined,
    },
    kek,
    auditMacKey,
    maxAncsPerTenant: int('MAX_ANCS_PER_TENANT', 10, 1, 10_000),
    retentionDays: int('TENANT_RETENTION_DAYS', 29, 1, 365),
    envelopeMaxAgeSeconds: int('ENVELOPE_MAX_AGE_SECONDS', 300, 10, 3600),
    healthCheckIntervalMinutes: int('HEALTH_CHECK_INTERVAL_MINUTES', 360, 1, 7 * 24 * 60),
    rotationIntervalHours: int('ROTATION_INTERVAL_HOURS', 24, 1, 24 * 31),
    disableUnreferencedKekVersions: bool('DISABLE_UNREFERENCED_KEK_VERSIONS', false),
    // Audit anchors
    auditAnchor: {
      intervalMinutes: int('AUDIT_ANCHOR_INTERVAL_MINUTES', 60, 1, 24 * 60),
      keyName: str('AUDIT_ANCHOR_KEY_NAME', 'anc-audit-anchor'),
    },
    ldap: {
      urlTemplate: str('LDAP_URL', 'ldaps://{domain}:636'),
      startTls: bool('LDAP_STARTTLS', false),
      timeoutMs: int('LDAP_TIMEOUT_MS', 5000, 100, 120_000),
      caPath: env.LDAP_CA?.trim() || undefined,
      dnsOverrides,
      upnBind: oneOf('LDAP_UPN_BIND', ['auto', 'direct', 'lookup'] as const, 'auto'),
      passwordExpiryWarningDays: int('LDAP_PASSWORD_EXPIRY_WARNING_DAYS', 14, 0, 365),
    },
    logLevel: str('LOG_LEVEL', 'info'),
  };
  if (config.kek.kind === 'azure-key-vault' && config.kek.emulator && env.NODE_ENV === 'production') {
    problems.push('KEYVAULT_EMULATOR must not be set in production');
  }
  if (config.temporal.tls?.certPath && !config.temporal.tls.keyPath)
    problems.push('TEMPORAL_TLS_KEY is required with TEMPORAL_TLS_CERT');
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
