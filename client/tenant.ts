import { randomUUID } from 'node:crypto';
import { WithStartWorkflowOperation, WorkflowIdConflictPolicy, type Client } from '@temporalio/client';
import { tenantWorkflowId } from '../common/ids';
import { PurgeAtKey, TenantIdKey, TenantStateKey } from '../common/search-attributes';
import { tenantSummary } from '../common/summaries';
import { validateTenantId } from '../common/validation';
import type { tenantWorkflow } from '../workflows/tenant';
import {
  deactivateTenantUpdate,
  getTenantQuery,
  reactivateTenantUpdate,
  type TenantLifecycleRequest,
  type TenantState,
  type TenantView,
} from '../workflows/tenant-definitions';
import { AncServiceError, isGone } from './errors';

export type { TenantState, TenantView } from '../workflows/tenant-definitions';

export interface TenantLifecycleOptions {
  /** Who asks (operator or billing service id), for the audit log. */
  actor: string;
  /** Free-text reason for the audit log; never put secrets here. */
  reason?: string;
  /** Reuse to retry the same request safely; a new one is made otherwise. */
  requestId?: string;
}

export interface TenantSummary {
  tenantId: string;
  state: TenantState;
  /** When a deactivated tenant's data will be purged (ISO). */
  purgeAt?: string;
}

const TENANT_STATES: readonly TenantState[] = ['active', 'deactivated', 'purged'];

function checkRequest(tenantId: string, opts: TenantLifecycleOptions): TenantLifecycleRequest {
  validateTenantId(tenantId);
  if (typeof opts?.actor !== 'string' || opts.actor.trim() === '') {
    throw new TypeError('actor is required: the user or service principal asking, for the audit log');
  }
  return { actor: opts.actor, ...(opts.reason !== undefined ? { reason: opts.reason } : {}) };
}

/**
 * Sends a deactivate or reactivate request to the tenant's workflow, starting the workflow if it
 * does not run (update-with-start), and waits for the answer.
 */
export async function changeTenantState(
  client: Client,
  taskQueue: string,
  change: 'deactivate' | 'reactivate',
  tenantId: string,
  opts: TenantLifecycleOptions,
): Promise<TenantView> {
  const request = checkRequest(tenantId, opts);
  const startWorkflowOperation = new WithStartWorkflowOperation<typeof tenantWorkflow>('tenantWorkflow', {
    workflowId: tenantWorkflowId(tenantId),
    taskQueue,
    args: [{ tenantId }],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
    staticSummary: tenantSummary(tenantId),
    typedSearchAttributes: [{ key: TenantIdKey, value: tenantId }],
  });
  return client.workflow.executeUpdateWithStart(
    change === 'deactivate' ? deactivateTenantUpdate : reactivateTenantUpdate,
    { args: [request], updateId: opts.requestId ?? randomUUID(), startWorkflowOperation },
  );
}

/**
 * The tenant's lifecycle state from its workflow (a purged tenant's closed workflow still answers).
 * A tenant that was never deactivated has no workflow: TenantNotFound says so.
 */
export async function getTenant(client: Client, tenantId: string): Promise<TenantView> {
  validateTenantId(tenantId);
  const handle = client.workflow.getHandle(tenantWorkflowId(tenantId));
  const deadline = Date.now() + 10_000;
  for (;;) {
    let result;
    try {
      result = await handle.query(getTenantQuery);
    } catch (err) {
      if (isGone(err)) {
        throw new AncServiceError(
          'TenantNotFound',
          `tenant ${tenantId} has no lifecycle record: it was never deactivated, or does not exist`,
        );
      }
      throw err;
    }
    if (result.state === 'not-found') throw new AncServiceError('TenantNotFound', `tenant ${tenantId} does not exist`);
    if (result.state !== 'loading') {
      // The query answers as of the workflow's latest event, which may be days old while its timer
      // sleeps; the time left is counted from the purge date instead (never more than it said).
      const view: TenantView = { ...result, state: result.state };
      if (view.purgeAt !== undefined && view.timeLeftMs !== undefined) {
        view.timeLeftMs = Math.max(0, Math.min(view.timeLeftMs, Date.parse(view.purgeAt) - Date.now()));
      }
      return view;
    }
    // A new run is reading the tenant's row; that takes one activity.
    if (Date.now() > deadline)
      throw new AncServiceError('Timeout', 'the tenant workflow has not loaded the tenant yet');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * Tenants with a lifecycle workflow, from Temporal's visibility store (eventually consistent).
 * Active and deactivated tenants are the running workflows; purged tenants are closed ones.
 */
export async function listTenants(client: Client, filter: { state?: TenantState } = {}): Promise<TenantSummary[]> {
  const { state } = filter;
  if (state !== undefined && !TENANT_STATES.includes(state)) {
    throw new TypeError(`state must be one of ${TENANT_STATES.join(', ')}`);
  }
  const clauses = [`WorkflowType = 'tenantWorkflow'`];
  if (state === 'purged') clauses.push(`TenantState = 'purged'`, `ExecutionStatus = 'Completed'`);
  else if (state) clauses.push(`TenantState = '${state}'`, `ExecutionStatus = 'Running'`);
  else clauses.push(`(ExecutionStatus = 'Running' OR (ExecutionStatus = 'Completed' AND TenantState = 'purged'))`);
  const byTenant = new Map<string, TenantSummary & { startedAt: number }>();
  for await (const wf of client.workflow.list({ query: clauses.join(' AND ') })) {
    const sa = wf.typedSearchAttributes;
    const tenantId = sa.get(TenantIdKey) ?? wf.workflowId.replace(/^tenant\//, '');
    const tenantState = sa.get(TenantStateKey);
    if (!tenantState || !TENANT_STATES.includes(tenantState as TenantState)) continue; // still loading
    const startedAt = wf.startTime.getTime();
    const seen = byTenant.get(tenantId);
    if (seen && seen.startedAt >= startedAt) continue;
    const purgeAt = sa.get(PurgeAtKey);
    byTenant.set(tenantId, {
      tenantId,
      state: tenantState as TenantState,
      ...(purgeAt ? { purgeAt: purgeAt.toISOString() } : {}),
      startedAt,
    });
  }
  return [...byTenant.values()]
    .map(({ startedAt: _startedAt, ...summary }) => summary)
    .sort((a, b) => a.tenantId.localeCompare(b.tenantId));
}
