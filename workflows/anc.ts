import {
  allHandlersFinished,
  condition,
  continueAsNew,
  currentUpdateInfo,
  log,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import { ActivityFailure, ApplicationFailure, type UpdateDefinition } from '@temporalio/common';
import { isVaultId, PRIMARY_VAULT_ID } from '../common/vaults';
import type { Activities } from '../activities';
import { permanentFailure } from '../common/errors';
import { HSM_PRIORITY, hsmTaskQueue } from '../common/hsm';
import { AncStateKey, HealthStatusKey } from '../common/search-attributes';
import { ancDetails } from '../common/summaries';
import type { AncView, CredentialStored, HealthCheckResult } from '../common/types';
import {
  validateActor,
  validateAncId,
  validateAncSpec,
  validateEnvelopeShape,
  validateRequest,
  validateTenantId,
  validateVaultId,
} from '../common/validation';
import {
  createAncUpdate,
  deleteAncUpdate,
  getAncQuery,
  runHealthChecksUpdate,
  tenantStateSignal,
  updateAncPasswordUpdate,
} from './definitions';
import { nextHealthCheckSlot } from './health-slot';
import {
  checkAncWorkflowArgs,
  isTenantStateChange,
  SIGNAL_CHECKS_PATCH,
  START_CHECKS_PATCH,
  startArgsProblem,
} from './input-checks';
import { SerialQueue } from './serial-queue';

export interface AncWorkflowArgs {
  tenantId: string;
  ancId: string;
  /** Health check interval while the tenant is active. */
  healthCheckIntervalMinutes?: number;
  /** State carried across continue-as-new. */
  carried?: { view: AncView; vaultId?: string };
}

// Credential work retries through outages (a database or Key Vault away for a while) but gives the
// caller an answer within ten minutes; permanent failures are non-retryable ApplicationFailures.
const { provideCredential, deleteAncData } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  scheduleToCloseTimeout: '10 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});
const { checkAncHealth } = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 5 },
});

/** Key Vault-bound activities go to the HSM task queue, where the fleet-wide rate and priorities apply. */
export const HSM_QUEUE_PATCH = 'hsm-task-queue';
/** The second HSM dispatch of a credential store is reserved alongside the store, not before it. */
export const RESERVE_ALONGSIDE_PATCH = 'hsm-reserve-alongside';
/** Tenants spread over several vaults: credential work on the envelope's, then the tenant's, vault's HSM queue. */
export const VAULTS_PATCH = 'multi-vault';
/** Periodic health checks at the ANC's hashed slot (with jitter and a catch-up window), not interval after interval. */
export const HEALTH_SLOTS_PATCH = 'health-check-slots';

type HealthKind = keyof typeof HSM_PRIORITY;

/** The credential and health activities on the HSM task queue, one proxy per priority. */
function hsmActivities(taskQueue: string) {
  const byPriority = (kind: HealthKind) => {
    const credential = proxyActivities<Activities>({
      taskQueue,
      priority: { priorityKey: HSM_PRIORITY[kind] },
      startToCloseTimeout: '1 minute',
      scheduleToCloseTimeout: '10 minutes',
      retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
    });
    const health = proxyActivities<Activities>({
      taskQueue,
      priority: { priorityKey: HSM_PRIORITY[kind] },
      // Waiting for the budget counts against schedule-to-start, not the check's own two minutes.
      startToCloseTimeout: '2 minutes',
      retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 5 },
    });
    return {
      reserveHsmCall: credential.reserveHsmCall,
      provideCredential: credential.provideCredential,
      health: health.checkAncHealth,
    };
  };
  return { user: byPriority('user'), afterChange: byPriority('afterChange'), periodic: byPriority('periodic') };
}

/**
 * The details of a `TenantOnOtherVault` activity failure (activities/tenant-vault.ts), if that is
 * what `err` is: the tenant's vault and, from provideCredential, the password sealed for it.
 */
function tenantVaultRedirect(err: unknown): { vaultId: string; passwordEnvelope?: string } | undefined {
  if (!(err instanceof ActivityFailure) || !(err.cause instanceof ApplicationFailure)) return undefined;
  if (err.cause.type !== 'TenantOnOtherVault') return undefined;
  const details = err.cause.details?.[0] as { vaultId?: unknown; passwordEnvelope?: unknown } | undefined;
  if (!isVaultId(details?.vaultId)) return undefined;
  const envelope = typeof details.passwordEnvelope === 'string' ? details.passwordEnvelope : undefined;
  return { vaultId: details.vaultId, ...(envelope === undefined ? {} : { passwordEnvelope: envelope }) };
}

function initialView(tenantId: string, ancId: string): AncView {
  return {
    tenantId,
    ancId,
    state: 'creating',
    displayName: '',
    adDomainName: '',
    adDomainUsername: '',
    credentialVersion: 0,
    tenantKeyVersion: 0,
    healthCheck: { status: 'pending' },
  };
}

/**
 * One long-lived workflow per ANC: provide (create), update the credential, run health checks,
 * follow the tenant's state, delete. Requests are applied one at a time in the order accepted.
 */
export async function ancWorkflow(args: AncWorkflowArgs): Promise<{ finalState: AncView['state'] }> {
  if (patched(START_CHECKS_PATCH)) {
    const problem = startArgsProblem(() => checkAncWorkflowArgs(args, workflowInfo().workflowId));
    if (problem) {
      // An Update sent with the start (update-with-start) is refused with the same typed failure.
      const refuse = (_req: unknown): never => {
        throw problem;
      };
      for (const u of [createAncUpdate, updateAncPasswordUpdate, deleteAncUpdate, runHealthChecksUpdate]) {
        setHandler(u as UpdateDefinition<unknown, [unknown]>, refuse, { validator: refuse });
      }
      await Promise.resolve();
      throw problem;
    }
  }
  const { tenantId, ancId } = args;
  const view: AncView = args.carried?.view ?? initialView(tenantId, ancId);
  const queue = new SerialQueue();
  const workflowId = workflowInfo().workflowId;
  const healthInterval = `${args.healthCheckIntervalMinutes ?? 360} minutes`;
  let createFailed = false;
  let createAccepted = false;
  const hsm = hsmActivities(hsmTaskQueue(workflowInfo().taskQueue));
  // One HSM task queue per vault (the first vault's is `hsm` above).
  const hsmByVault = new Map<string, ReturnType<typeof hsmActivities>>([[PRIMARY_VAULT_ID, hsm]]);
  // The vault the tenant is on, as last learned (a credential result, or a check that found the
  // tenant elsewhere); undefined: not learned yet (runs from before several vaults), the first.
  let tenantVault: string | undefined = args.carried?.vaultId;
  const learnVault = (vaultId: string | undefined) => {
    if (vaultId !== undefined && vaultId !== tenantVault && patched(VAULTS_PATCH)) view.vaultId = tenantVault = vaultId;
  };
  const hsmOn = (vaultId: string) => {
    let proxies = hsmByVault.get(vaultId);
    if (!proxies) hsmByVault.set(vaultId, (proxies = hsmActivities(hsmTaskQueue(workflowInfo().taskQueue, vaultId))));
    return proxies;
  };
  const intervalMs = (args.healthCheckIntervalMinutes ?? 360) * 60_000;
  let lastCheckMs: number | undefined;

  /**
   * Stores a credential. On the HSM queue it also takes a second dispatch slot: opening the envelope
   * and unwrapping an existing tenant key are two HSM calls, and each dispatch pays for one. The
   * reservation is scheduled together with the store (both dispatches still count against the
   * queue's rate), so it adds no round trip to the caller's wait; runs from before that patch
   * reserve first.
   */
  const storeCredential = async (input: Parameters<typeof provideCredential>[0], summary: string, vaultId?: string) => {
    if (!patched(HSM_QUEUE_PATCH)) return provideCredential.executeWithOptions(step(summary), [input]);
    // The envelope's vault (the first one unless the request names another).
    const first = vaultId !== undefined && patched(VAULTS_PATCH) ? hsmOn(vaultId) : hsm;
    const reserve = () =>
      first.user.reserveHsmCall.executeWithOptions(step('Reserve a second HSM call for the envelope'), []);
    if (!patched(RESERVE_ALONGSIDE_PATCH)) {
      await reserve();
      return followTenantVault(first.user.provideCredential.executeWithOptions(step(summary), [input]), input, summary);
    }
    // The reservation's outcome never decides the operation's: a stored credential is reported.
    const reserved = reserve().catch(() => undefined);
    const stored = followTenantVault(
      first.user.provideCredential.executeWithOptions(step(summary), [input]),
      input,
      summary,
    );
    try {
      return await stored;
    } finally {
      await reserved;
    }
  };
  /**
   * The envelope's vault is not the tenant's: provideCredential there re-sealed the password for the
   * tenant's vault (ciphertext only) and named it; run it on that vault's HSM queue.
   */
  const followTenantVault = async (
    attempt: Promise<CredentialStored>,
    input: Parameters<typeof provideCredential>[0],
    summary: string,
  ): Promise<CredentialStored> => {
    for (let hops = 0; ; hops++) {
      try {
        return await attempt;
      } catch (err) {
        const redirect = tenantVaultRedirect(err);
        if (!redirect?.passwordEnvelope || hops >= 3 || !patched(VAULTS_PATCH)) throw err;
        const there = hsmOn(redirect.vaultId).user;
        await there.reserveHsmCall.executeWithOptions(step('Reserve a second HSM call for the envelope'), []);
        attempt = there.provideCredential.executeWithOptions(step(`${summary} (tenant's vault ${redirect.vaultId})`), [
          { ...input, passwordEnvelope: redirect.passwordEnvelope },
        ]);
      }
    }
  };

  // Activity summaries make the event history read as the lifecycle steps in the Web UI. They
  // are part of the scheduling command, so runs that began without them keep going without them.
  const summaries = patched('activity-summaries');
  const step = (summary: string) => (summaries ? { summary } : {});
  const ids = { tenantId, ancId };
  // "Current details" in the Web UI: state, credential version, last health check. No secrets.
  const publish = () => setCurrentDetails(ancDetails(view));

  const operationId = () => `${workflowId}/${currentUpdateInfo()?.id ?? uuid4()}`;
  const setState = (state: AncView['state']) => {
    view.state = state;
    upsertSearchAttributes([{ key: AncStateKey, value: state }]);
    publish();
  };

  const runHealthCheck = async (actor: string, kind: HealthKind = 'user'): Promise<HealthCheckResult> => {
    view.healthCheck = { status: 'running' };
    upsertSearchAttributes([{ key: HealthStatusKey, value: 'running' }]);
    lastCheckMs = Date.now();
    publish();
    let result: HealthCheckResult;
    try {
      const input = {
        tenantId,
        ancId,
        checkId: `${workflowId}/health/${uuid4()}`,
        nowMs: Date.now(),
        actor,
        workflowId,
      };
      const checkOn = (vault: string | undefined) => {
        if (kind === 'rotation' || !patched(HSM_QUEUE_PATCH))
          return vault === undefined ? checkAncHealth : hsmOn(vault).user.health;
        return hsmOn(vault ?? PRIMARY_VAULT_ID)[kind].health;
      };
      // On the tenant's vault's HSM queue; a check that finds the tenant moved names the new vault,
      // and runs again there.
      for (let hops = 0; ; hops++) {
        try {
          result = await checkOn(tenantVault).executeWithOptions(
            step('Health check: DNS and LDAP bind with the stored credential'),
            [input],
          );
          break;
        } catch (err) {
          const moved = tenantVaultRedirect(err);
          if (!moved || hops >= 3) throw err;
          learnVault(moved.vaultId);
        }
      }
    } catch {
      result = { status: 'failed', errorType: 'Unknown', message: 'the health check could not be run' };
    }
    view.healthCheck = result;
    upsertSearchAttributes([{ key: HealthStatusKey, value: result.status }]);
    publish();
    if (result.status === 'failed') log.warn('Health check failed', { ...ids, errorType: result.errorType });
    else log.info('Health check finished', { ...ids, status: result.status, errorType: result.errorType });
    return result;
  };
  const scheduleHealthCheck = (kind: 'afterChange' | 'periodic' = 'afterChange') => {
    const actor = kind === 'periodic' ? 'system:periodic' : 'system:after-change';
    // Before the patch every check was recorded as after-change; keep that for replays.
    const recorded = patched(HSM_QUEUE_PATCH) ? actor : 'system:after-change';
    if (view.state === 'active') void queue.run(() => runHealthCheck(recorded, kind)).catch(() => undefined);
  };

  const requireActive = () => {
    if (view.state === 'creating' || view.state === 'deleted')
      throw permanentFailure('AncNotFound', `ANC ${ancId} does not exist`);
    if (view.state === 'deactivated') throw permanentFailure('TenantDeactivated', `tenant ${tenantId} is deactivated`);
  };

  setHandler(getAncQuery, () => view);
  publish();

  setHandler(
    createAncUpdate,
    async (req) => {
      createAccepted = true;
      const operation = operationId();
      const receivedAtMs = Date.now();
      return queue.run(async () => {
        if (view.state !== 'creating') throw permanentFailure('AncAlreadyExists', `ANC ${ancId} already exists`);
        const spec = {
          displayName: req.displayName,
          adDomainName: req.adDomainName,
          organizationalUnit: req.organizationalUnit,
          adDomainUsername: req.adDomainUsername,
        };
        try {
          const stored = await storeCredential(
            {
              mode: 'create',
              tenantId,
              ancId,
              spec,
              passwordEnvelope: req.passwordEnvelope,
              receivedAtMs,
              nowMs: Date.now(),
              operationId: operation,
              actor: req.actor,
              workflowId,
            },
            'Provide: seal and store the credential',
            req.vaultId,
          );
          learnVault(stored.vaultId);
          Object.assign(view, spec, {
            credentialVersion: stored.credentialVersion,
            tenantKeyVersion: stored.tenantKeyVersion,
            createdAt: stored.storedAt,
            updatedAt: stored.storedAt,
          });
          setState('active');
          log.info('ANC created', { ...ids, credentialVersion: stored.credentialVersion });
          if (pendingTenantState) applyTenantState(pendingTenantState);
          scheduleHealthCheck();
          return { ...view };
        } catch (err) {
          createFailed = true;
          throw err;
        }
      });
    },
    {
      validator: (req) => {
        validateRequest(req);
        validateActor(req.actor);
        validateTenantId(tenantId);
        validateAncId(ancId);
        validateAncSpec(req);
        validateEnvelopeShape(req.passwordEnvelope);
        validateVaultId(req.vaultId);
        if (view.state !== 'creating') throw permanentFailure('AncAlreadyExists', `ANC ${ancId} already exists`);
      },
    },
  );

  setHandler(
    updateAncPasswordUpdate,
    async (req) => {
      const operation = operationId();
      const receivedAtMs = Date.now();
      return queue.run(async () => {
        requireActive();
        const stored = await storeCredential(
          {
            mode: 'update',
            tenantId,
            ancId,
            passwordEnvelope: req.passwordEnvelope,
            receivedAtMs,
            nowMs: Date.now(),
            operationId: operation,
            actor: req.actor,
            workflowId,
          },
          'Update: seal and store the new credential',
          req.vaultId,
        );
        learnVault(stored.vaultId);
        view.credentialVersion = stored.credentialVersion;
        view.tenantKeyVersion = stored.tenantKeyVersion;
        view.updatedAt = stored.storedAt;
        publish();
        log.info('Credential updated', { ...ids, credentialVersion: stored.credentialVersion });
        scheduleHealthCheck();
        return stored;
      });
    },
    {
      validator: (req) => {
        validateRequest(req);
        validateActor(req.actor);
        validateEnvelopeShape(req.passwordEnvelope);
        validateVaultId(req.vaultId);
        requireActive();
      },
    },
  );

  setHandler(
    deleteAncUpdate,
    async (req) => {
      const operation = operationId();
      return queue.run(async () => {
        if (view.state === 'deleted' || view.state === 'creating') return { deleted: false };
        const result = await deleteAncData.executeWithOptions(step('Delete: remove the ANC and all its data'), [
          {
            tenantId,
            ancId,
            operationId: operation,
            actor: req.actor,
            workflowId,
            nowMs: Date.now(),
          },
        ]);
        setState('deleted');
        log.info('ANC deleted', ids);
        return result;
      });
    },
    {
      validator: (req) => {
        validateRequest(req);
        validateActor(req.actor);
      },
    },
  );

  setHandler(
    runHealthChecksUpdate,
    async (req) =>
      queue.run(async () => {
        requireActive();
        return runHealthCheck(req.actor);
      }),
    {
      validator: (req) => {
        validateRequest(req);
        validateActor(req.actor);
        requireActive();
      },
    },
  );

  // A tenant change that arrives while the create is still running is applied once it finishes.
  let pendingTenantState: 'active' | 'deactivated' | 'purged' | undefined;
  const applyTenantState = (state: 'active' | 'deactivated' | 'purged') => {
    log.info('Tenant state changed', { ...ids, tenantState: state });
    if (state === 'purged') setState('deleted');
    else setState(state);
  };
  setHandler(tenantStateSignal, (payload) => {
    if (patched(SIGNAL_CHECKS_PATCH) && !isTenantStateChange(payload)) {
      log.warn('tenantStateChanged signal dropped: not a tenant state', { tenantId, ancId });
      return;
    }
    const { state } = payload;
    if (view.state === 'deleted') return;
    if (view.state === 'creating') pendingTenantState = state;
    else applyTenantState(state);
  });

  // Main loop: wait for work, the periodic health check, the end, or a history long enough to
  // continue as new.
  const drained = () => queue.idle && allHandlersFinished();
  const finished = () => view.state === 'deleted' || (view.state === 'creating' && createFailed && drained());
  const suggested = () => workflowInfo().continueAsNewSuggested;
  if (view.state === 'creating') {
    // Started by update-with-start: if the create was rejected before being accepted, nothing
    // will ever arrive, so do not linger.
    await condition(() => createAccepted, '1 minute');
    if (!createAccepted) return { finalState: view.state };
  }
  let planned: { atMs: number; catchUp: boolean } | undefined;
  for (;;) {
    if (view.state === 'active' && patched(HEALTH_SLOTS_PATCH)) {
      const now = Date.now();
      const last = lastCheckMs ?? (view.healthCheck.startedAt ? Date.parse(view.healthCheck.startedAt) : undefined);
      if (!planned?.catchUp)
        planned = nextHealthCheckSlot({ id: workflowId, intervalMs, nowMs: now, lastCheckMs: last });
      const woke = await condition(
        () => finished() || suggested() || view.state !== 'active',
        Math.max(1, planned.atMs - now),
      );
      if (!woke) {
        const late = nextHealthCheckSlot({ id: workflowId, intervalMs, nowMs: Date.now(), dueMs: planned.atMs });
        if (!planned.catchUp && late.catchUp) {
          // Woken long after the slot (a worker outage): move to a point in the catch-up window
          // rather than firing together with every other late ANC.
          planned = late;
        } else {
          planned = undefined;
          scheduleHealthCheck('periodic');
        }
      }
    } else if (view.state === 'active') {
      const woke = await condition(() => finished() || suggested() || view.state !== 'active', healthInterval);
      if (!woke) scheduleHealthCheck();
    } else {
      // Not active: whatever was planned is void; on reactivation the ANC takes its next slot.
      planned = undefined;
      await condition(() => finished() || suggested() || view.state === 'active');
    }
    if (finished()) break;
    if (suggested()) {
      await condition(drained);
      await continueAsNew<typeof ancWorkflow>({
        ...args,
        carried: { view, ...(tenantVault === undefined ? {} : { vaultId: tenantVault }) },
      });
    }
  }
  await condition(() => queue.idle && allHandlersFinished());
  return { finalState: view.state };
}
