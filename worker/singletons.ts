import { WorkflowIdConflictPolicy, type Client } from '@temporalio/client';
import { KEYRING_WORKFLOW_ID } from '../common/ids';
import { refreshKekSignal } from '../workflows/definitions';

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
