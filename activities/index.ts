import { deleteAncData, provideCredential, type DeleteAncInput, type ProvideCredentialInput } from './credentials';
import type { ActivityDeps } from './deps';
import { checkAncHealth, type CheckAncHealthInput } from './health/check';
import { describeCurrentKek } from './keyring';
import { createRotationActivities } from './rotation';
import { createTenantActivities } from './tenant';
import { restartIdleTenantWorkflows, type TenantSweepPageInput } from './tenant-sweep';

/** Builds the activities from their dependencies; the worker passes real ones, tests may pass their own. */
export function createActivities(deps: ActivityDeps) {
  return {
    provideCredential: (input: ProvideCredentialInput) => provideCredential(deps, input),
    deleteAncData: (input: DeleteAncInput) => deleteAncData(deps, input),
    describeCurrentKek: () => describeCurrentKek(deps),
    checkAncHealth: (input: CheckAncHealthInput) => checkAncHealth(deps, input),
    ...createRotationActivities(deps),
    ...createTenantActivities(deps),
    restartIdleTenantWorkflows: (input: TenantSweepPageInput) => restartIdleTenantWorkflows(deps, input),
  };
}

export type Activities = ReturnType<typeof createActivities>;
