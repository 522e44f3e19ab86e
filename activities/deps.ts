import type { Logger } from 'pino';
import type { Config } from '../worker/config';
import type { AuditAnchorSigner } from './audit-anchor';
import type { Pool } from './db/pool';
import type { KekDirectory } from './kek/directory';
import type { TenantKeyCache } from './kek/tenant-key-cache';
import { VaultSet } from './kek/vaults';
import { PRIMARY_VAULT_ID } from '../common/vaults';

/** What activities need from the outside world; the worker builds it once, tests build their own. */
export interface ActivityDeps {
  pool: Pool;
  /** The KEK of the vault these activities serve (`vaultId`): the one they unwrap and wrap with. */
  kek: KekDirectory;
  /** The vault these activities serve; absent: the first ("primary"). */
  vaultId?: string;
  /** Every vault the worker serves (absent: only `kek`, as "primary"). */
  vaults?: VaultSet;
  config: Pick<
    Config,
    | 'auditMacKey'
    | 'maxAncsPerTenant'
    | 'envelopeMaxAgeSeconds'
    | 'tenantRetentionMs'
    | 'disableUnreferencedKekVersions'
    | 'ldap'
  >;
  logger: Logger;
  /** Unwrapped tenant keys kept for a short while (absent or disabled: every use unwraps). */
  tenantKeyCache?: TenantKeyCache;
  /** Signs the audit chain's head (audit anchors); absent: anchoring fails and retries. */
  auditAnchor?: AuditAnchorSigner;
}

/** The vaults the activities know: the configured set, or the one KEK they were given as "primary". */
export function vaultsOf(deps: Pick<ActivityDeps, 'kek' | 'vaults'>): VaultSet {
  return deps.vaults ?? VaultSet.single(deps.kek);
}

/** The vault these activities serve. */
export function ownVaultId(deps: Pick<ActivityDeps, 'vaultId'>): string {
  return deps.vaultId ?? PRIMARY_VAULT_ID;
}

/** The same dependencies, serving vault `vaultId` (its KEK); unchanged when it is absent. */
export function forVault<D extends ActivityDeps>(deps: D, vaultId: string | undefined): D {
  if (vaultId === undefined || vaultId === ownVaultId(deps)) return deps;
  return { ...deps, kek: vaultsOf(deps).get(vaultId).kek, vaultId };
}

/**
 * SQL: the tenant (column `tenantColumn`) is on vault `$param` (a tenant with no recorded vault is
 * on the first, "primary").
 */
export function onVaultSql(tenantColumn: string, param: string): string {
  return `EXISTS (SELECT 1 FROM tenants tv WHERE tv.tenant_id = ${tenantColumn} AND COALESCE(tv.vault_id, '${PRIMARY_VAULT_ID}') = ${param})`;
}
