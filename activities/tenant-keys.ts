import { appendAudit, type AuditEntry } from './db/audit';
import type { PoolClient } from './db/pool';
import { generateTenantKey, tenantKeyExpiry, zero } from './crypto/tenant-key';
import { KekUnwrapError, KekVersionNotFoundError } from './kek/provider';
import type { KekDirectory } from './kek/directory';
import type { TenantKeyCache } from './kek/tenant-key-cache';
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
  /** For a newly generated key: the wrapped bytes and KEK version stored with it (what the cache is keyed by). */
  wrapped?: { wrappedKey: Buffer; kekVersion: string };
}

/**
 * The usable key row's columns for a query that joins tenant_keys as `k` (null when there is none),
 * and the row they make.
 */
export const USABLE_KEY_COLUMNS =
  'k.version AS key_version, k.state AS key_state, k.wrapped_key AS key_wrapped, k.kek_id AS key_kek_id, ' +
  'k.kek_version AS key_kek_version, k.created_at AS key_created_at, k.expires_at AS key_expires_at';

export interface UsableKeyColumns {
  key_version: number | null;
  key_state: TenantKeyRow['state'] | null;
  key_wrapped: Buffer | null;
  key_kek_id: string | null;
  key_kek_version: string | null;
  key_created_at: Date | null;
  key_expires_at: Date | null;
}

export function usableKeyFrom(tenantId: string, r: UsableKeyColumns): TenantKeyRow | undefined {
  if (r.key_version === null || r.key_wrapped === null || r.key_kek_version === null) return undefined;
  return {
    tenant_id: tenantId,
    version: r.key_version,
    state: r.key_state ?? 'active',
    wrapped_key: r.key_wrapped,
    kek_id: r.key_kek_id ?? '',
    kek_version: r.key_kek_version,
    created_at: r.key_created_at ?? new Date(0),
    expires_at: r.key_expires_at ?? new Date(0),
  };
}

/** The active, unexpired key of a tenant, if any. Caller holds the tenant row lock. */
export async function findUsableTenantKey(
  client: PoolClient,
  tenantId: string,
  now: Date,
): Promise<TenantKeyRow | undefined> {
  const { rows } = await client.query<TenantKeyRow>(
    `SELECT * FROM tenant_keys WHERE tenant_id = $1 AND state = 'active' AND expires_at > $2`,
    [tenantId, now],
  );
  return rows[0];
}

/**
 * The tenant key in the clear (a buffer the caller owns and zeroes): from the cache when it holds
 * this exact wrapped key, otherwise one Key Vault unwrap (whose result the cache keeps a copy of).
 */
export async function unwrapTenantKey(
  kek: KekDirectory,
  row: Pick<TenantKeyRow, 'tenant_id' | 'version' | 'wrapped_key' | 'kek_version'>,
  cache?: TenantKeyCache,
  vaultId?: string,
): Promise<Buffer> {
  const unwrap = async () => {
    try {
      return await kek.provider.unwrap(row.wrapped_key, row.kek_version);
    } catch (err) {
      if (err instanceof KekUnwrapError || err instanceof KekVersionNotFoundError) {
        throw permanentFailure('CredentialUnavailable', 'the tenant key could not be unwrapped by its KEK version');
      }
      throw err;
    }
  };
  if (!cache) return unwrap();
  return cache.getOrUnwrap(
    {
      vaultId,
      tenantId: row.tenant_id,
      tenantKeyVersion: row.version,
      kekVersion: row.kek_version,
      wrappedKey: row.wrapped_key,
    },
    unwrap,
  );
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
    return { version, key, generated: true, wrapped: { wrappedKey: wrapped, kekVersion: kekVersion.version } };
  } catch (err) {
    zero(key);
    throw err;
  }
}

/**
 * The tenant's usable key in the clear: the active one, or a newly generated one. A caller that has
 * already read the usable key row under the tenant lock passes it as `known` (its row, or undefined
 * when there is none), which saves the read here.
 */
export async function obtainTenantKey(
  client: PoolClient,
  kek: KekDirectory,
  macKey: Buffer,
  args: { tenantId: string; now: Date; audit: Omit<AuditEntry, 'event' | 'details' | 'tenantId' | 'at' | 'outcome'> },
  cache?: TenantKeyCache,
  known?: { row: TenantKeyRow | undefined },
  vaultId?: string,
): Promise<OpenTenantKey> {
  const row = known ? known.row : await findUsableTenantKey(client, args.tenantId, args.now);
  if (row) return { version: row.version, key: await unwrapTenantKey(kek, row, cache, vaultId), generated: false };
  // A new version replaces the tenant's key: nothing cached for the tenant may be used again.
  cache?.invalidateTenant(args.tenantId);
  return generateTenantKeyVersion(client, kek, macKey, args);
}
