import { condition, continueAsNew, patched, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { PublicKek, VaultKeyring } from '../common/types';
import { getPublicKekQuery, getVaultKeksQuery, refreshKekSignal } from './definitions';
import { checkKeyringWorkflowArgs, START_CHECKS_PATCH } from './input-checks';

const { describeCurrentKek, describeVaultKeks } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
});

/** The keyring publishes every vault's KEK (one activity for all), not only the first vault's. */
export const KEYRING_VAULTS_PATCH = 'keyring-vaults';

/**
 * A singleton that publishes the current KEK public key, so client SDKs can seal passwords
 * without access to Key Vault. Rotation signals it after creating a version; it also refreshes
 * hourly.
 */
export async function keyringWorkflow(args: { carried?: PublicKek; carriedVaults?: VaultKeyring } = {}): Promise<void> {
  if (patched(START_CHECKS_PATCH)) checkKeyringWorkflowArgs(args);
  let current = args.carried;
  let ring = args.carriedVaults;
  let refreshRequested = current === undefined || (ring === undefined && patched(KEYRING_VAULTS_PATCH));
  setHandler(getPublicKekQuery, () => current);
  setHandler(getVaultKeksQuery, () => ring);
  setHandler(refreshKekSignal, () => {
    refreshRequested = true;
  });
  while (!workflowInfo().continueAsNewSuggested) {
    if (refreshRequested) {
      refreshRequested = false;
      if (patched(KEYRING_VAULTS_PATCH)) {
        // Every vault's KEK; the old query keeps answering with the first vault's, for older clients.
        ring = await describeVaultKeks();
        current = ring.vaults[0]?.kek;
      } else current = await describeCurrentKek();
    }
    if (!(await condition(() => refreshRequested || workflowInfo().continueAsNewSuggested, '1 hour')))
      refreshRequested = true;
  }
  await continueAsNew<typeof keyringWorkflow>({ carried: current, ...(ring ? { carriedVaults: ring } : {}) });
}
