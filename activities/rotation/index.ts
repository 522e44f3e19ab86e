/**
 * Activities of the scheduled rotation (workflows/rotation.ts), one file per step:
 *
 *  - renewKekIfDue (renew.ts): three months before the current KEK version expires, create a new version valid
 *    one year.
 *  - replaceExpiredTenantKeys (replace.ts): a tenant key older than twelve months gets a new version; every
 *    credential sealed under a retiring version is opened and sealed again under the new one, and the
 *    retiring rows are deleted (crypto-shredding), all in one transaction under the tenant row lock.
 *  - rewrapTenantKeys (rewrap.ts): every tenant key not wrapped by the current KEK version is unwrapped by its
 *    version (one HSM call) and wrapped again locally with the current public key (no remote wrap).
 *  - retireKekVersions (retire.ts): report (and optionally disable) KEK versions no tenant key refers to.
 *
 * Every decision about "now" uses the workflow time the caller passes. Tenant keys exist in the
 * clear only inside these functions, are zeroed after use and are never stored or returned.
 * Per-item problems retrying cannot fix are reported and skipped; anything else (throttling, network,
 * database) is thrown so Temporal retries the activity, and finished items are never redone: each
 * re-wrap commits on its own, guarded by `kek_version = <old>`.
 */
import type {
  ListReplaceableInput,
  ListStaleKeysInput,
  RenewKekInput,
  ReplaceBatchInput,
  RetireKekInput,
  RewrapBatchInput,
} from '../../common/rotation';
import { forVault, vaultsOf, type ActivityDeps } from '../deps';
import { renewKekIfDue } from './renew';
import { listTenantsToReplace, replaceExpiredTenantKeys } from './replace';
import { retireKekVersions } from './retire';
import { listStaleTenantKeys, rewrapTenantKeys } from './rewrap';

export type * from '../../common/rotation';
export { renewKekIfDue } from './renew';
export { replaceExpiredTenantKeys } from './replace';
export { retireKekVersions } from './retire';
export { rewrapTenantKeys } from './rewrap';
export { addUtcMonths, KEK_RENEW_BEFORE_EXPIRY_MONTHS, KEK_VALIDITY_MONTHS, kekRenewalDue } from './shared';

/** The rotation's activities, bound to their dependencies (spread into createActivities). */
export function createRotationActivities(deps: ActivityDeps) {
  return {
    // Each step works on the vault its input names (its KEK, its tenants); absent: these deps' own.
    renewKekIfDue: (input: RenewKekInput) => renewKekIfDue(forVault(deps, input.vaultId), input),
    rewrapTenantKeys: (input: RewrapBatchInput) => rewrapTenantKeys(forVault(deps, input.vaultId), input),
    replaceExpiredTenantKeys: (input: ReplaceBatchInput) =>
      replaceExpiredTenantKeys(forVault(deps, input.vaultId), input),
    retireKekVersions: (input: RetireKekInput) => retireKekVersions(forVault(deps, input.vaultId), input),
    listStaleTenantKeys: (input: ListStaleKeysInput) => listStaleTenantKeys(forVault(deps, input.vaultId), input),
    listTenantsToReplace: (input: ListReplaceableInput) => listTenantsToReplace(forVault(deps, input.vaultId), input),
    /** The vaults to rotate: every configured vault's id, the first first. */
    listVaults: async (): Promise<string[]> => vaultsOf(deps).ids,
  };
}

export type RotationActivities = ReturnType<typeof createRotationActivities>;
