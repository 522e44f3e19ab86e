/**
 * The baseline worker for the end-to-end benchmark, with the service worker's settings
 * (worker/main.ts): default slots and cache, one task queue. Arguments: address task-queue, and
 * optionally the task-queue-wide activity rate (the one the service's HSM task queue has).
 * SIGTERM shuts it down (the SDK's runtime handles the signal).
 */
import { NativeConnection, Worker } from '@temporalio/worker';
import { fileURLToPath } from 'node:url';

const [address, taskQueue, activityRate] = process.argv.slice(2);
if (!address || !taskQueue) throw new Error('usage: bare-worker.ts <address> <task-queue> [activities-per-second]');

const worker = await Worker.create({
  connection: await NativeConnection.connect({ address }),
  namespace: 'default',
  taskQueue,
  workflowsPath: fileURLToPath(new URL('./bare-workflow.ts', import.meta.url)),
  activities: { noop: async () => undefined },
  // The task-queue-wide activity rate the service's HSM queue runs with, when given.
  ...(activityRate ? { maxTaskQueueActivitiesPerSecond: Number(activityRate) } : {}),
  shutdownGraceTime: '30 seconds',
});
console.log(JSON.stringify({ msg: 'Worker started', taskQueue }));
await worker.run();
