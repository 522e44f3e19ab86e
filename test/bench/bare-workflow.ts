/**
 * The end-to-end benchmark's baseline: a workflow started the same way as the ANC workflow
 * (update-with-start), whose update runs a given number of no-op activities before it returns and a
 * given number after (as the ANC workflow's health check runs after a change), then waits for more.
 * No-ops the ANC workflow schedules in one workflow task run together here too.
 */
import { condition, defineUpdate, proxyActivities, setHandler } from '@temporalio/workflow';

export interface BareOpRequest {
  /** Carried, never read: the size of a real request (settings and password envelope). */
  payload: string;
  /** No-ops before the answer, in waves run one after the other; a wave's no-ops run together. */
  before: number[];
  after: number;
}

export const bareOpUpdate = defineUpdate<{ done: number }, [BareOpRequest]>('bareOp');

const { noop } = proxyActivities<{ noop(): Promise<void> }>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

export async function bareWorkflow(): Promise<void> {
  let ops = 0;
  setHandler(bareOpUpdate, async (req) => {
    for (const wave of req.before) await Promise.all(Array.from({ length: wave }, () => noop()));
    ops += 1;
    for (let i = 0; i < req.after; i++) void noop();
    return { done: ops };
  });
  await condition(() => false);
}
