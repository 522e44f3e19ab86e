import { ActivityFailure, ApplicationFailure } from '@temporalio/common';
import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { MoveTenantResult } from '../activities/tenant-move';
import { HSM_PRIORITY, hsmTaskQueue } from '../common/hsm';
import { isVaultId } from '../common/vaults';
import { validateActor, validateRequest, validateTenantId, validateVaultId } from '../common/validation';

export interface MoveTenantWorkflowArgs {
  tenantId: string;
  toVault: string;
  actor: string;
}

const { findTenantVault } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds', maximumAttempts: 10 },
});

/** The move activity on one vault's HSM queue (the unwraps count against that vault's budget). */
function onVault(vaultId: string) {
  return proxyActivities<Activities>({
    taskQueue: hsmTaskQueue(workflowInfo().taskQueue, vaultId),
    priority: { priorityKey: HSM_PRIORITY.rotation },
    startToCloseTimeout: '2 minutes',
    scheduleToCloseTimeout: '30 minutes',
    retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
  }).moveTenantKeys;
}

/**
 * Moves a tenant to another vault: its tenant keys are unwrapped in the vault it is on (on that
 * vault's HSM queue) and wrapped for the new vault's current KEK, with `tenants.vault_id`, in one
 * transaction (activities/tenant-move.ts). The ANC workflows learn the new vault from their next
 * health check or credential change, which the old vault answers with its name without an HSM call.
 */
export async function moveTenantWorkflow(args: MoveTenantWorkflowArgs): Promise<MoveTenantResult> {
  validateRequest(args);
  validateTenantId(args.tenantId);
  validateActor(args.actor);
  validateVaultId(args.toVault);
  if (args.toVault === undefined) throw ApplicationFailure.nonRetryable('toVault is required', 'InvalidVaultId');
  let from = await findTenantVault({ tenantId: args.tenantId });
  const { workflowId } = workflowInfo();
  for (let hops = 0; ; hops++) {
    try {
      return await onVault(from)({
        tenantId: args.tenantId,
        toVault: args.toVault,
        operationId: `${workflowId}/move`,
        actor: args.actor,
        workflowId,
        nowMs: Date.now(),
      });
    } catch (err) {
      // Moved by someone else in between: follow it to the vault it is on now.
      const cause = err instanceof ActivityFailure ? err.cause : undefined;
      const named =
        cause instanceof ApplicationFailure && cause.type === 'TenantOnOtherVault' ? cause.details?.[0] : undefined;
      const vaultId = (named as { vaultId?: unknown } | undefined)?.vaultId;
      if (!isVaultId(vaultId) || hops >= 3) throw err;
      from = vaultId;
    }
  }
}
