import { continueAsNew, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';

export interface TenantSweepArgs {
  /** Deactivated tenants per activity call. Default 200. */
  pageSize?: number;
  /** Carried across continue-as-new. */
  carried?: TenantSweepResult & { after: string | null };
}

export interface TenantSweepResult {
  checked: number;
  restarted: number;
}

const { restartIdleTenantWorkflows } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/**
 * Started by the tenant-sweep schedule: pages through the tenants the database holds as
 * deactivated and gives back a workflow to each one whose workflow is not running, so its purge
 * still happens on the stored date.
 */
export async function tenantSweepWorkflow(args: TenantSweepArgs = {}): Promise<TenantSweepResult> {
  const pageSize = Math.max(1, Math.min(args.pageSize ?? 200, 1000));
  let after = args.carried?.after ?? null;
  const total: TenantSweepResult = { checked: args.carried?.checked ?? 0, restarted: args.carried?.restarted ?? 0 };
  for (;;) {
    const page = await restartIdleTenantWorkflows({ afterTenantId: after ?? undefined, limit: pageSize });
    total.checked += page.checked;
    total.restarted += page.restarted.length;
    after = page.next;
    if (after === null) return total;
    if (workflowInfo().continueAsNewSuggested) {
      return continueAsNew<typeof tenantSweepWorkflow>({ pageSize, carried: { ...total, after } });
    }
  }
}
