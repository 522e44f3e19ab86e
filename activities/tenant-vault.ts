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

/** What the credential transaction's tenant lock reads: the recorded vault, and whether keys exist. */
export interface LockedTenant {
  vault_id: string | null;
  has_keys: boolean;
}

/**
 * The vault a tenant's keys are wrapped by, from its locked row. A new tenant was inserted already
 * placed by the rule (rendezvous hashing over the open vaults). A row without a recorded vault (written
 * before the column existed, by a worker of that version) is on the first vault when it has keys, and
 * is placed by the rule now otherwise; the choice is recorded in the caller's transaction, which holds
 * the row lock and generates the tenant's first key: placement happens at the first key.
 */
export async function settleTenantVault(
  client: Pick<PoolClient, 'query'>,
  vaults: VaultSet,
  tenantId: string,
  locked: LockedTenant,
): Promise<string> {
  if (locked.vault_id) return locked.vault_id;
  const chosen = locked.has_keys ? vaults.first.id : vaults.place(tenantId);
  await client.query('UPDATE tenants SET vault_id = $2 WHERE tenant_id = $1 AND vault_id IS NULL', [tenantId, chosen]);
  return chosen;
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
