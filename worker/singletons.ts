import {
  ScheduleAlreadyRunning,
  ScheduleOverlapPolicy,
  WorkflowIdConflictPolicy,
  type Client,
  type ScheduleOptions,
} from '@temporalio/client';
import {
  AUDIT_ANCHOR_WORKFLOW_ID,
  KEYRING_WORKFLOW_ID,
  ROTATION_SCHEDULE_ID,
  TENANT_SWEEP_SCHEDULE_ID,
} from '../common/ids';
import { anchorAuditSignal, refreshKekSignal } from '../workflows/definitions';
import {
  ROTATION_WORKFLOW_ID_PREFIX,
  ROTATION_WORKFLOW_TYPE,
  type RotationWorkflowArgs,
} from '../workflows/rotation-definitions';

/** Starts the service's long-lived singletons if they are not running yet. Idempotent. */
export async function startSingletons(client: Client, taskQueue: string): Promise<void> {
  await client.workflow.signalWithStart('keyringWorkflow', {
    workflowId: KEYRING_WORKFLOW_ID,
    taskQueue,
    args: [{}],
    signal: refreshKekSignal,
    signalArgs: [],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
  });
}

/**
 * Creates the key-rotation schedule (every `intervalHours`, overlap SKIP so two rotations never run
 * at once) or, when it exists already, brings its interval, task queue and arguments up to date.
 * Idempotent; every worker calls it at start. A paused schedule stays paused.
 */
export async function ensureRotationSchedule(
  client: Client,
  taskQueue: string,
  intervalHours: number,
  workflowArgs: RotationWorkflowArgs = {},
): Promise<'created' | 'updated'> {
  if (!Number.isInteger(intervalHours) || intervalHours < 1)
    throw new RangeError('intervalHours must be a positive integer');
  const spec = { intervals: [{ every: `${intervalHours} hours` }] };
  const action = {
    type: 'startWorkflow' as const,
    workflowType: ROTATION_WORKFLOW_TYPE,
    workflowId: ROTATION_WORKFLOW_ID_PREFIX,
    taskQueue,
    args: [workflowArgs],
    staticSummary: 'Key rotation: renew the KEK, re-wrap and replace tenant keys',
  };
  const policies = { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 day', pauseOnFailure: false };
  return createOrUpdateSchedule(client, ROTATION_SCHEDULE_ID, { spec, action, policies });
}

/** Starts the audit-anchor singleton if it is not running yet. Idempotent. */
export async function startAuditAnchor(client: Client, taskQueue: string, intervalMinutes: number): Promise<void> {
  await client.workflow.signalWithStart('auditAnchorWorkflow', {
    workflowId: AUDIT_ANCHOR_WORKFLOW_ID,
    taskQueue,
    args: [{ intervalMinutes }],
    signal: anchorAuditSignal,
    signalArgs: [],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
  });
}

/**
 * Creates the tenant-sweep schedule (every `intervalMs`, overlap SKIP) or brings an existing one up
 * to date. Idempotent; every worker calls it at start. A paused schedule stays paused.
 */
export async function ensureTenantSweepSchedule(
  client: Client,
  taskQueue: string,
  intervalMs: number,
): Promise<'created' | 'updated'> {
  if (!Number.isInteger(intervalMs) || intervalMs < 1000) throw new RangeError('intervalMs must be at least 1000');
  const spec = { intervals: [{ every: intervalMs }] };
  const action = {
    type: 'startWorkflow' as const,
    workflowType: 'tenantSweepWorkflow',
    workflowId: TENANT_SWEEP_SCHEDULE_ID,
    taskQueue,
    args: [{}],
    staticSummary: 'Tenant sweep: restart the workflow of deactivated tenants whose workflow is gone',
  };
  const policies = { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 hour', pauseOnFailure: false };
  return createOrUpdateSchedule(client, TENANT_SWEEP_SCHEDULE_ID, { spec, action, policies });
}

/** Creates a schedule, or brings an existing one's spec, action and policies up to date; a paused one stays paused. */
async function createOrUpdateSchedule(
  client: Client,
  scheduleId: string,
  desired: Pick<ScheduleOptions, 'spec' | 'action' | 'policies'>,
): Promise<'created' | 'updated'> {
  try {
    await client.schedule.create({ scheduleId, ...desired });
    return 'created';
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
  }
  await client.schedule.getHandle(scheduleId).update((previous) => ({
    ...desired,
    state: { paused: previous.state.paused, note: previous.state.note },
  }));
  return 'updated';
}
