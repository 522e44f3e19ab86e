import {
  allHandlersFinished,
  condition,
  continueAsNew,
  currentUpdateInfo,
  log,
  patched,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { UpdateDefinition } from '@temporalio/common';
import type { Activities } from '../activities';
import { permanentFailure } from '../common/errors';
import { AncStateKey, HealthStatusKey } from '../common/search-attributes';
import type { AncView, HealthCheckResult } from '../common/types';
import {
  validateActor,
  validateAncId,
  validateAncSpec,
  validateEnvelopeShape,
  validateRequest,
  validateTenantId,
} from '../common/validation';
import {
  createAncUpdate,
  deleteAncUpdate,
  getAncQuery,
  runHealthChecksUpdate,
  tenantStateSignal,
  updateAncPasswordUpdate,
} from './definitions';
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
  carried?: { view: AncView };
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

  const operationId = () => `${workflowId}/${currentUpdateInfo()?.id ?? uuid4()}`;
  const setState = (state: AncView['state']) => {
    view.state = state;
    upsertSearchAttributes([{ key: AncStateKey, value: state }]);
  };

  const runHealthCheck = async (actor: string): Promise<HealthCheckResult> => {
    view.healthCheck = { status: 'running' };
    upsertSearchAttributes([{ key: HealthStatusKey, value: 'running' }]);
    let result: HealthCheckResult;
    try {
      result = await checkAncHealth({
        tenantId,
        ancId,
        checkId: `${workflowId}/health/${uuid4()}`,
        nowMs: Date.now(),
        actor,
        workflowId,
      });
    } catch {
      result = { status: 'failed', errorType: 'Unknown', message: 'the health check could not be run' };
    }
    view.healthCheck = result;
    upsertSearchAttributes([{ key: HealthStatusKey, value: result.status }]);
    return result;
  };
  const scheduleHealthCheck = () => {
    if (view.state === 'active') void queue.run(() => runHealthCheck('system:after-change')).catch(() => undefined);
  };

  const requireActive = () => {
    if (view.state === 'creating' || view.state === 'deleted')
      throw permanentFailure('AncNotFound', `ANC ${ancId} does not exist`);
    if (view.state === 'deactivated') throw permanentFailure('TenantDeactivated', `tenant ${tenantId} is deactivated`);
  };

  setHandler(getAncQuery, () => view);

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
          const stored = await provideCredential({
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
          });
          Object.assign(view, spec, {
            credentialVersion: stored.credentialVersion,
            tenantKeyVersion: stored.tenantKeyVersion,
            createdAt: stored.storedAt,
            updatedAt: stored.storedAt,
          });
          setState('active');
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
        const stored = await provideCredential({
          mode: 'update',
          tenantId,
          ancId,
          passwordEnvelope: req.passwordEnvelope,
          receivedAtMs,
          nowMs: Date.now(),
          operationId: operation,
          actor: req.actor,
          workflowId,
        });
        view.credentialVersion = stored.credentialVersion;
        view.tenantKeyVersion = stored.tenantKeyVersion;
        view.updatedAt = stored.storedAt;
        scheduleHealthCheck();
        return stored;
      });
    },
    {
      validator: (req) => {
        validateRequest(req);
        validateActor(req.actor);
        validateEnvelopeShape(req.passwordEnvelope);
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
        const result = await deleteAncData({
          tenantId,
          ancId,
          operationId: operation,
          actor: req.actor,
          workflowId,
          nowMs: Date.now(),
        });
        setState('deleted');
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
  for (;;) {
    if (view.state === 'active') {
      const woke = await condition(() => finished() || suggested() || view.state !== 'active', healthInterval);
      if (!woke) scheduleHealthCheck();
    } else {
      await condition(() => finished() || suggested() || view.state === 'active');
    }
    if (finished()) break;
    if (suggested()) {
      await condition(drained);
      await continueAsNew<typeof ancWorkflow>({ ...args, carried: { view } });
    }
  }
  await condition(() => queue.idle && allHandlersFinished());
  return { finalState: view.state };
}
