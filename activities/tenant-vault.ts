import { ApplicationFailure } from '@temporalio/common';
import type { PoolClient } from './db/pool';
import type { VaultSet } from './kek/vaults';

/** Thrown inside a credential transaction when the tenant is on another vault than the activity's. */
export class TenantOnOtherVault extends Error {
  constructor(readonly vaultId: string) {
    super(`the tenant is on vault ${vaultId}`);
    this.name = 'TenantOnOtherVault';
  }
}

/**
 * The vault a tenant's keys are wrapped by. A tenant not placed yet (no row, or no vault recorded)
 * is placed here by the rule (rendezvous hashing over the open vaults); a tenant without a recorded
 * vault that already has keys (written before the column existed) is on the first vault. The choice
 * is recorded when the tenant has a row; the caller holds that row's lock and generates the tenant's
 * first key in the same transaction, so placement happens at the first key.
 */
export async function tenantVaultForKey(
  client: Pick<PoolClient, 'query'>,
  vaults: VaultSet,
  tenantId: string,
): Promise<string> {
  const { rows } = await client.query<{ vault_id: string | null; has_keys: boolean }>(
    `SELECT vault_id, EXISTS (SELECT 1 FROM tenant_keys k WHERE k.tenant_id = t.tenant_id) AS has_keys
       FROM tenants t WHERE t.tenant_id = $1`,
    [tenantId],
  );
  const row = rows[0];
  if (!row) return vaults.place(tenantId);
  if (row.vault_id) return row.vault_id;
  const chosen = row.has_keys ? vaults.first.id : vaults.place(tenantId);
  await client.query('UPDATE tenants SET vault_id = $2 WHERE tenant_id = $1 AND vault_id IS NULL', [tenantId, chosen]);
  return chosen;
}

/** The vault a tenant is on, read only (no placement): the first vault when none is recorded. */
export async function readTenantVault(
  client: Pick<PoolClient, 'query'>,
  vaults: VaultSet,
  tenantId: string,
): Promise<string> {
  const { rows } = await client.query<{ vault_id: string | null }>(
    'SELECT vault_id FROM tenants WHERE tenant_id = $1',
    [tenantId],
  );
  return rows[0]?.vault_id ?? vaults.first.id;
}

/**
 * The typed answer of an activity sent to a vault the tenant is not on (it moved, or the client
 * sealed for another vault): non-retryable, its details name the tenant's vault (and, for a
 * credential, carry the password sealed again for that vault). The workflow reruns it there.
 */
export function tenantOnOtherVault(vaultId: string, passwordEnvelope?: string): ApplicationFailure {
  return ApplicationFailure.create({
    type: 'TenantOnOtherVault',
    message: `the tenant is on vault ${vaultId}`,
    nonRetryable: true,
    details: [passwordEnvelope === undefined ? { vaultId } : { vaultId, passwordEnvelope }],
  });
}
