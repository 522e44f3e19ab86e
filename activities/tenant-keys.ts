import { appendAudit, type AuditEntry } from './db/audit';
import type { PoolClient } from './db/pool';
import { generateTenantKey, tenantKeyExpiry, zero } from './crypto/tenant-key';
import { KekUnwrapError, KekVersionNotFoundError } from './kek/provider';
import type { KekDirectory } from './kek/directory';
import { permanentFailure } from '../common/errors';

export interface TenantKeyRow {
  tenant_id: string;
  version: number;
  state: 'active' | 'retiring';
  wrapped_key: Buffer;
  kek_id: string;
  kek_version: string;
  created_at: Date;
  expires_at: Date;
}

/** A tenant key in the clear, held only for the duration of one activity. */
export interface OpenTenantKey {
  version: number;
  key: Buffer;
  generated: boolean;
}

/** The active, unexpired key of a tenant, if any. Caller holds the tenant row lock (or re-checks under it). */
export async function findUsableTenantKey(
  client: Pick<PoolClient, 'query'>,
  tenantId: string,
  now: Date,
): Promise<TenantKeyRow | undefined> {
  const { rows } = await client.query<TenantKeyRow>(
    `SELECT * FROM tenant_keys WHERE tenant_id = $1 AND state = 'active' AND expires_at > $2`,
    [tenantId, now],
  );
  return rows[0];
}

export async function unwrapTenantKey(
  kek: KekDirectory,
  row: Pick<TenantKeyRow, 'wrapped_key' | 'kek_version'>,
): Promise<Buffer> {
  try {
    return await kek.provider.unwrap(row.wrapped_key, row.kek_version);
  } catch (err) {
    if (err instanceof KekUnwrapError || err instanceof KekVersionNotFoundError) {
      throw permanentFailure('CredentialUnavailable', 'the tenant key could not be unwrapped by its KEK version');
    }
    throw err;
  }
}

/**
 * Generates a new tenant key version from the CSPRNG, wraps it locally with the current KEK's
 * public key and stores it as the tenant's active key; a previous active key becomes 'retiring'
 * (it still opens the credentials sealed under it until rotation re-seals them).
 * Caller holds the tenant row lock, so two generations for one tenant cannot interleave.
 */
export async function generateTenantKeyVersion(
  client: PoolClient,
  kek: KekDirectory,
  macKey: Buffer,
  args: { tenantId: string; now: Date; audit: Omit<AuditEntry, 'event' | 'details' | 'tenantId' | 'at' | 'outcome'> },
): Promise<OpenTenantKey> {
  const key = generateTenantKey();
  try {
    const kekVersion = await kek.current();
    const wrapped = await kek.provider.wrap(key, kekVersion);
    const { rows } = await client.query<{ next: number }>(
      'SELECT COALESCE(MAX(version), 0) + 1 AS next FROM tenant_keys WHERE tenant_id = $1',
      [args.tenantId],
    );
    const version = rows[0]?.next ?? 1;
    await client.query(`UPDATE tenant_keys SET state = 'retiring' WHERE tenant_id = $1 AND state = 'active'`, [
      args.tenantId,
    ]);
    await client.query(
      `INSERT INTO tenant_keys (tenant_id, version, state, wrapped_key, kek_id, kek_version, created_at, expires_at)
       VALUES ($1, $2, 'active', $3, $4, $5, $6, $7)`,
      [args.tenantId, version, wrapped, kekVersion.kekId, kekVersion.version, args.now, tenantKeyExpiry(args.now)],
    );
    await appendAudit(client, macKey, {
      ...args.audit,
      event: 'tenant_key.generated',
      tenantId: args.tenantId,
      at: args.now,
      outcome: 'success',
      details: { tenantKeyVersion: version, kekVersion: kekVersion.version },
    });
    return { version, key, generated: true };
  } catch (err) {
    zero(key);
    throw err;
  }
}

/**
 * The tenant's usable key in the clear: the active one, or a newly generated one. `early` is the
 * same tenant's key unwrapped before the lock was taken; it is used (and owned) here when it is
 * still the active key, and zeroed otherwise.
 */
export async function obtainTenantKey(
  client: PoolClient,
  kek: KekDirectory,
  macKey: Buffer,
  args: {
    tenantId: string;
    now: Date;
    audit: Omit<AuditEntry, 'event' | 'details' | 'tenantId' | 'at' | 'outcome'>;
    early?: { row: TenantKeyRow; key: Buffer };
  },
): Promise<OpenTenantKey> {
  const row = await findUsableTenantKey(client, args.tenantId, args.now);
  const early = args.early;
  if (early && row && sameKeyRow(early.row, row)) return { version: row.version, key: early.key, generated: false };
  if (early) zero(early.key);
  if (row) return { version: row.version, key: await unwrapTenantKey(kek, row), generated: false };
  return generateTenantKeyVersion(client, kek, macKey, args);
}

function sameKeyRow(a: TenantKeyRow, b: TenantKeyRow): boolean {
  return (
    a.version === b.version &&
    a.kek_id === b.kek_id &&
    a.kek_version === b.kek_version &&
    Buffer.compare(a.wrapped_key, b.wrapped_key) === 0
  );
}

/**
 * Unwraps the tenant's active key without holding any lock, so the Key Vault call can overlap
 * another one (the envelope's) and stays out of the transaction. Undefined when the tenant has no
 * usable key or the unwrap fails: the caller then takes the locked path, which reports the error.
 */
export async function unwrapActiveTenantKeyEarly(
  pool: Pick<PoolClient, 'query'>,
  kek: KekDirectory,
  tenantId: string,
  now: Date,
): Promise<{ row: TenantKeyRow; key: Buffer } | undefined> {
  try {
    const row = await findUsableTenantKey(pool, tenantId, now);
    return row && { row, key: await unwrapTenantKey(kek, row) };
  } catch {
    return undefined;
  }
}
