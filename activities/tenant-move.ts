import { permanentFailure } from '../common/errors';
import { PRIMARY_VAULT_ID } from '../common/vaults';
import { zero } from './crypto/tenant-key';
import { appendAudit } from './db/audit';
import { inTransaction } from './db/pool';
import { ownVaultId, vaultsOf, type ActivityDeps } from './deps';
import { KekUnwrapError, KekVersionNotFoundError } from './kek/provider';
import { tenantOnOtherVault } from './tenant-vault';

export interface MoveTenantInput {
  tenantId: string;
  toVault: string;
  /** Unique per move request: the audit record's key. */
  operationId: string;
  actor: string;
  workflowId: string;
  nowMs: number;
}

export interface MoveTenantResult {
  fromVault: string;
  toVault: string;
  /** Tenant keys re-wrapped for the new vault (0: the tenant was there already). */
  tenantKeys: number;
}

/** The vault a tenant is on now (read only), for the move workflow to pick the HSM queue. */
export async function findTenantVault(deps: ActivityDeps, input: { tenantId: string }): Promise<string> {
  const { rows } = await deps.pool.query<{ vault_id: string | null; state: string }>(
    'SELECT vault_id, state FROM tenants WHERE tenant_id = $1',
    [input.tenantId],
  );
  const row = rows[0];
  if (!row) throw permanentFailure('TenantNotFound', `tenant ${input.tenantId} does not exist`);
  return row.vault_id ?? vaultsOf(deps).first.id;
}

/**
 * Moves a tenant to another vault: a re-wrap. Runs on the HSM queue of the vault the tenant is on:
 * each tenant key is unwrapped there (one HSM call each) and wrapped locally with the new vault's
 * current public KEK; the key rows and `tenants.vault_id` change in one transaction under the tenant
 * row lock (which credential stores and tenant key replacement take too; a re-wrap racing with it
 * finds the key no longer wrapped by the version it read and leaves it). The tenant's cached keys are
 * dropped. Idempotent: a retry after the commit finds the tenant on the new vault and does nothing.
 */
export async function moveTenantKeys(deps: ActivityDeps, input: MoveTenantInput): Promise<MoveTenantResult> {
  const vaults = vaultsOf(deps);
  const target = vaults.get(input.toVault);
  const own = ownVaultId(deps);
  const result = await inTransaction(deps.pool, async (client) => {
    const { rows } = await client.query<{ vault_id: string | null; state: string }>(
      'SELECT vault_id, state FROM tenants WHERE tenant_id = $1 FOR UPDATE',
      [input.tenantId],
    );
    const tenant = rows[0];
    if (!tenant) throw permanentFailure('TenantNotFound', `tenant ${input.tenantId} does not exist`);
    if (tenant.state === 'purged') throw permanentFailure('TenantPurged', `tenant ${input.tenantId} was purged`);
    const from = tenant.vault_id ?? PRIMARY_VAULT_ID;
    if (from === target.id) return { fromVault: from, toVault: target.id, tenantKeys: 0 };
    // Moved meanwhile by someone else: the workflow follows to the vault named.
    if (from !== own) throw tenantOnOtherVault(from);
    const targetKek = await target.kek.current();
    const keys = await client.query<{ version: number; wrapped_key: Buffer; kek_version: string }>(
      'SELECT version, wrapped_key, kek_version FROM tenant_keys WHERE tenant_id = $1 ORDER BY version FOR UPDATE',
      [input.tenantId],
    );
    for (const row of keys.rows) {
      let key: Buffer | undefined;
      try {
        key = await deps.kek.provider.unwrap(row.wrapped_key, row.kek_version);
        const wrapped = await target.kek.provider.wrap(key, targetKek);
        await client.query(
          'UPDATE tenant_keys SET wrapped_key = $3, kek_id = $4, kek_version = $5 WHERE tenant_id = $1 AND version = $2',
          [input.tenantId, row.version, wrapped, targetKek.kekId, targetKek.version],
        );
      } catch (err) {
        if (err instanceof KekUnwrapError || err instanceof KekVersionNotFoundError)
          throw permanentFailure('CredentialUnavailable', `tenant key version ${row.version} could not be unwrapped`);
        throw err;
      } finally {
        zero(key);
      }
    }
    await client.query('UPDATE tenants SET vault_id = $2 WHERE tenant_id = $1', [input.tenantId, target.id]);
    await appendAudit(client, deps.config.auditMacKey, {
      eventKey: input.operationId,
      event: 'tenant.moved',
      tenantId: input.tenantId,
      actor: input.actor,
      workflowId: input.workflowId,
      at: new Date(input.nowMs),
      outcome: 'success',
      details: { fromVault: from, toVault: target.id, tenantKeys: keys.rows.length, kekVersion: targetKek.version },
    });
    return { fromVault: from, toVault: target.id, tenantKeys: keys.rows.length };
  });
  if (result.tenantKeys > 0) deps.tenantKeyCache?.invalidateTenant(input.tenantId);
  return result;
}
