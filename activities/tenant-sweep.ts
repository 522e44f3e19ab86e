import { Context } from '@temporalio/activity';
import { WorkflowIdConflictPolicy, WorkflowNotFoundError } from '@temporalio/client';
import { tenantWorkflowId } from '../common/ids';
import { TenantIdKey } from '../common/search-attributes';
import type { ActivityDeps } from './deps';

export interface TenantSweepPageInput {
  /** The last tenant id of the previous page. */
  afterTenantId?: string;
  limit: number;
}

export interface TenantSweepPageResult {
  /** Deactivated tenants looked at. */
  checked: number;
  /** Of those, tenants whose workflow was not running and was started again. */
  restarted: string[];
  /** Where the next page starts; null after the last page. */
  next: string | null;
}

const PARALLEL = 8;

/**
 * One page of the sweep: every tenant the database holds as deactivated must have a running tenant
 * workflow, or nothing would purge it when its window passes. A workflow terminated (for example
 * from the Web UI) is started again; the new run reads `purge_at` from the row and waits for it, so
 * the purge happens on the date already recorded, never earlier. A running workflow (including one
 * an operator reset) is left alone. Idempotent: a retry finds the workflows it started running.
 */
export async function restartIdleTenantWorkflows(
  deps: ActivityDeps,
  input: TenantSweepPageInput,
): Promise<TenantSweepPageResult> {
  const limit = Math.max(1, Math.min(Math.floor(input.limit), 1000));
  const { rows } = await deps.pool.query<{ tenant_id: string }>(
    `SELECT tenant_id FROM tenants WHERE state = 'deactivated' AND ($1::text IS NULL OR tenant_id > $1)
      ORDER BY tenant_id LIMIT $2`,
    [input.afterTenantId ?? null, limit],
  );
  const ctx = Context.current();
  const client = ctx.client;
  const taskQueue = ctx.info.taskQueue;
  const restarted: string[] = [];
  const ids = rows.map((r) => r.tenant_id);
  let cursor = 0;
  const lane = async () => {
    for (let i = cursor++; i < ids.length; i = cursor++) {
      const tenantId = ids[i] as string;
      const workflowId = tenantWorkflowId(tenantId);
      let running = false;
      try {
        running = (await client.workflow.getHandle(workflowId).describe()).status.name === 'RUNNING';
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError)) throw err;
      }
      if (running) continue;
      // USE_EXISTING: if another sweep or a caller started it meanwhile, that run is kept.
      await client.workflow.start('tenantWorkflow', {
        workflowId,
        taskQueue,
        args: [{ tenantId }],
        workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
        typedSearchAttributes: [{ key: TenantIdKey, value: tenantId }],
      });
      restarted.push(tenantId);
      deps.logger.warn({ tenantId }, 'tenant workflow was not running: started again from the stored purge date');
      ctx.heartbeat(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, ids.length) }, lane));
  return {
    checked: ids.length,
    restarted: restarted.sort(),
    next: ids.length < limit ? null : (ids[ids.length - 1] ?? null),
  };
}
