import { PRIMARY_VAULT_ID } from './vaults';

/**
 * The fleet-wide Key Vault (HSM) budget: every activity that calls the vault's private-key
 * operations runs on its own task queue, whose dispatch rate Temporal limits for all workers together
 * (`maxTaskQueueActivitiesPerSecond`), and each such activity makes at most one HSM call per
 * dispatch it is given. Task priorities on that queue decide who waits when the budget is short.
 */

/**
 * The HSM task queue of one vault: `<queue>-hsm` for the first vault (the one queue there was before
 * several vaults, so running workflows keep it), `<queue>-hsm-<vaultId>` for the others. Each has its
 * own rate limit, since Key Vault's limits are per vault.
 */
export function hsmTaskQueue(taskQueue: string, vaultId: string = PRIMARY_VAULT_ID): string {
  return vaultId === PRIMARY_VAULT_ID ? `${taskQueue}-hsm` : `${taskQueue}-hsm-${vaultId}`;
}

/**
 * Temporal priority keys on the HSM task queue (1 is served first). User operations keep their
 * latency while a rotation and periodic checks wait for what is left of the budget.
 */
export const HSM_PRIORITY = {
  /** Create, update, on-demand health check: a caller is waiting. */
  user: 1,
  /** The health check that follows a change: a consequence of a user operation. */
  afterChange: 2,
  /** Rotation: re-wrap and replacement, one tenant key or tenant per activity. */
  rotation: 3,
  /** Periodic health checks: the bulk of the load, and the one that can wait. */
  periodic: 5,
} as const;

/** Activities registered only on the HSM worker (the others run on the main one). */
export const HSM_ACTIVITY_NAMES = [
  'provideCredential',
  'reserveHsmCall',
  'checkAncHealth',
  'rewrapTenantKeys',
  'replaceExpiredTenantKeys',
  'moveTenantKeys',
] as const;
