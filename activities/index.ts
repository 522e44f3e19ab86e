import { anchorAuditHead } from './audit-anchor';
import { deleteAncData, provideCredential, type DeleteAncInput, type ProvideCredentialInput } from './credentials';
import type { ActivityDeps } from './deps';
import { checkAncHealth, type CheckAncHealthInput } from './health/check';
import { describeCurrentKek, describeVaultKeks } from './keyring';
import { resealFormat1Credentials, type ResealBatchInput } from './reseal';
import { createRotationActivities } from './rotation';
import { createTenantActivities } from './tenant';
import { restartIdleTenantWorkflows, type TenantSweepPageInput } from './tenant-sweep';
import { findTenantVault, moveTenantKeys, type MoveTenantInput } from './tenant-move';

/** Builds the activities from their dependencies; the worker passes real ones, tests may pass their own. */
export function createActivities(deps: ActivityDeps) {
  return {
    provideCredential: (input: ProvideCredentialInput) => provideCredential(deps, input),
    deleteAncData: (input: DeleteAncInput) => deleteAncData(deps, input),
    describeCurrentKek: () => describeCurrentKek(deps),
    describeVaultKeks: () => describeVaultKeks(deps),
    anchorAuditHead: () => anchorAuditHead(deps),
    checkAncHealth: (input: CheckAncHealthInput) => checkAncHealth(deps, input),
    // Does nothing: dispatched on the HSM task queue just before an activity that may make two HSM
    // calls, so the queue's rate limit counts both.
    reserveHsmCall: async (): Promise<void> => undefined,
    ...createRotationActivities(deps),
    resealFormat1Credentials: (input: ResealBatchInput) => resealFormat1Credentials(deps, input),
    ...createTenantActivities(deps),
    restartIdleTenantWorkflows: (input: TenantSweepPageInput) => restartIdleTenantWorkflows(deps, input),
    findTenantVault: (input: { tenantId: string }) => findTenantVault(deps, input),
    moveTenantKeys: (input: MoveTenantInput) => moveTenantKeys(deps, input),
  };
}

export type Activities = ReturnType<typeof createActivities>;
