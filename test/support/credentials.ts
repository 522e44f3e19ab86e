import { openCredential } from '../../activities/crypto/seal';
import type { ActivityDeps } from '../../activities/deps';
import { unwrapTenantKey } from '../../activities/tenant-keys';
import type { TestDatabase } from './db';

/** Opens a stored credential version with the tenant's key, the way a health check does. */
export async function openStoredCredential(
  h: { db: Pick<TestDatabase, 'pool'>; deps: Pick<ActivityDeps, 'kek'> },
  tenantId: string,
  ancId: string,
  version: number,
): Promise<string> {
  const { rows } = await h.db.pool.query(
    `SELECT c.sealed, c.tenant_key_version, k.wrapped_key, k.kek_version
       FROM anc_credentials c JOIN tenant_keys k ON k.tenant_id = c.tenant_id AND k.version = c.tenant_key_version
      WHERE c.tenant_id = $1 AND c.anc_id = $2 AND c.version = $3`,
    [tenantId, ancId, version],
  );
  const row = rows[0];
  if (!row) throw new Error(`no credential version ${version}`);
  const key = await unwrapTenantKey(h.deps.kek, row);
  return openCredential({ tenantKey: key, keyVersion: row.tenant_key_version, tenantId, ancId, sealed: row.sealed });
}
