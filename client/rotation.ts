import { ScheduleNotFoundError, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import { ROTATION_SCHEDULE_ID } from '../common/ids';
import { rotationProgressQuery, type RotationProgress } from '../workflows/rotation-definitions';
import { AncServiceError } from './errors';

export type { RotationProgress } from '../workflows/rotation-definitions';

export interface RotationTriggered {
  /** False when a rotation was already running (the schedule's overlap policy is SKIP). */
  started: boolean;
  /** The rotation now running, when the schedule reported it in time. */
  workflowId?: string;
}

export interface RotationStatus {
  workflowId: string;
  /** Temporal's status of the rotation's latest run: RUNNING, COMPLETED, FAILED, ... */
  status: string;
  progress: RotationProgress;
}

function noSchedule(): AncServiceError {
  return new AncServiceError(
    'ServiceUnavailable',
    `the rotation schedule ${ROTATION_SCHEDULE_ID} does not exist yet: is a worker running?`,
  );
}

/**
 * Starts a rotation now through the rotation schedule, with its overlap policy (SKIP): when one is
 * running already, nothing new starts and the running one is named.
 */
export async function triggerRotation(client: Client, waitMs = 10_000): Promise<RotationTriggered> {
  const handle = client.schedule.getHandle(ROTATION_SCHEDULE_ID);
  let before;
  try {
    before = await handle.describe();
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) throw noSchedule();
    throw err;
  }
  const running = before.info.runningActions[0];
  if (running) return { started: false, workflowId: running.workflow.workflowId };
  const seen = new Set(before.info.recentActions.map((a) => a.action.workflow.workflowId));
  // The SDK's default for a trigger is ALLOW_ALL; the rotation must never overlap itself.
  await handle.trigger(ScheduleOverlapPolicy.SKIP);
  // The schedule starts the workflow asynchronously; wait a little to name it.
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline) {
    const info = (await handle.describe()).info;
    const fresh =
      info.runningActions.find((a) => !seen.has(a.workflow.workflowId)) ??
      info.recentActions.find((a) => !seen.has(a.action.workflow.workflowId))?.action;
    if (fresh) return { started: true, workflowId: fresh.workflow.workflowId };
    if (info.runningActions[0]) return { started: false, workflowId: info.runningActions[0].workflow.workflowId };
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return { started: true };
}

/**
 * Progress of a rotation: the given one, else the running one, else the latest the schedule
 * started. Undefined when the schedule has not started any yet.
 */
export async function getRotationProgress(client: Client, workflowId?: string): Promise<RotationStatus | undefined> {
  let id = workflowId;
  if (!id) {
    let info;
    try {
      info = (await client.schedule.getHandle(ROTATION_SCHEDULE_ID).describe()).info;
    } catch (err) {
      if (err instanceof ScheduleNotFoundError) throw noSchedule();
      throw err;
    }
    id =
      info.runningActions[0]?.workflow.workflowId ??
      [...info.recentActions].sort((a, b) => b.takenAt.getTime() - a.takenAt.getTime())[0]?.action.workflow.workflowId;
    if (!id) return undefined;
  }
  // Without a run id the handle follows continue-as-new to the latest run.
  const handle = client.workflow.getHandle(id);
  const description = await handle.describe();
  const progress = await handle.query(rotationProgressQuery);
  return { workflowId: id, status: description.status.name, progress };
}
