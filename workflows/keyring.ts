import { condition, continueAsNew, patched, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { PublicKek } from '../common/types';
import { getPublicKekQuery, refreshKekSignal } from './definitions';
import { checkKeyringWorkflowArgs, START_CHECKS_PATCH } from './input-checks';

const { describeCurrentKek } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
});

/**
 * A singleton that publishes the current KEK public key, so client SDKs can seal passwords
 * without access to Key Vault. Rotation signals it after creating a version; it also refreshes
 * hourly.
 */
export async function keyringWorkflow(args: { carried?: PublicKek } = {}): Promise<void> {
  if (patched(START_CHECKS_PATCH)) checkKeyringWorkflowArgs(args);
  let current = args.carried;
  let refreshRequested = current === undefined;
  setHandler(getPublicKekQuery, () => current);
  setHandler(refreshKekSignal, () => {
    refreshRequested = true;
  });
  while (!workflowInfo().continueAsNewSuggested) {
    if (refreshRequested) {
      refreshRequested = false;
      current = await describeCurrentKek();
    }
    if (!(await condition(() => refreshRequested || workflowInfo().continueAsNewSuggested, '1 hour')))
      refreshRequested = true;
  }
  await continueAsNew<typeof keyringWorkflow>({ carried: current });
}
