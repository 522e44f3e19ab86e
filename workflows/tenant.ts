import {
  ActivityFailure,
  type ActivityFunctionWithOptions,
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  metricMeter,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { PurgeCounts } from '../activities/tenant';
import { permanentFailure } from '../common/errors';
import { ancWorkflowId } from '../common/ids';
import { addCounter } from '../common/metrics';
import { PurgeAtKey, TenantIdKey, TenantStateKey } from '../common/search-attributes';
import { tenantDetails } from '../common/summaries';
import { validateTenantId } from '../common/validation';
import { tenantStateSignal } from './definitions';
import {
  checkLifecycleRequest,
  checkTenantWorkflowArgs,
  SIGNAL_CHECKS_PATCH,
  START_CHECKS_PATCH,
} from './input-checks';
import { SerialQueue } from './serial-queue';
import {
  deactivateTenantSignal,
  deactivateTenantUpdate,
  getTenantQuery,
  reactivateTenantSignal,
  reactivateTenantUpdate,
  type TenantLifecycleRequest,
  type TenantQueryResult,
  type TenantView,
} from './tenant-definitions';

export interface TenantWorkflowArgs {
  tenantId: string;
  /** Retention window in days after deactivation; the worker's TENANT_RETENTION (default 29d) when absent. */
  retentionDays?: number;
  /** ANCs (and used-envelope records) deleted per purge activity. */
  purgeBatchSize?: number;
  /** State carried across continue-as-new. */
  carried?: TenantCarried;
}

interface TenantCarried {
  phase: 'active' | 'deactivated';
  deactivatedAtMs?: number;
  purgeAtMs?: number;
  cycles: number;
}

type Phase = 'loading' | 'active' | 'deactivated' | 'purging' | 'purged' | 'not-found';

// Tenant lifecycle work must happen however long the database is away: no overall deadline.
// Permanent refusals (TenantNotFound, TenantPurged) are non-retryable failures.
const proxied = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/** What each step is called in the Web UI's event history. */
const STEPS = {
  loadTenant: "Read the tenant's record",
  deactivateTenantData: 'Deactivate: start the retention window',
  reactivateTenantData: 'Reactivate: restore the tenant and its ANCs',
  listTenantAncIds: "List the tenant's ANCs",
  planTenantPurge: 'Purge: check the retention window has passed',
  purgeTenantAncs: "Purge: delete a batch of the tenant's ANCs",
  purgeTenantEnvelopes: 'Purge: delete used-envelope records',
  finishTenantPurge: "Purge: destroy the tenant's keys, leave a tombstone",
} as const;
type Step = keyof typeof STEPS;

/**
 * The tenant activities, with their step summary when `summaries` is on. Summaries are part of the
 * scheduling command, so runs that began without them keep going without them.
 */
function tenantActivities(summaries: boolean): Pick<Activities, Step> {
  if (!summaries) return proxied;
  const withSummary = <K extends Step>(name: K) =>
    ((...args: Parameters<Activities[K]>) =>
      (proxied[name] as ActivityFunctionWithOptions<Activities[K]>).executeWithOptions(
        { summary: STEPS[name] },
        args,
      )) as unknown as Activities[K];
  return Object.fromEntries(Object.keys(STEPS).map((name) => [name, withSummary(name as Step)])) as unknown as Pick<
    Activities,
    Step
  >;
}

const ANC_PAGE = 500;
const PURGE_ACTOR = 'system:retention';

function failureType(err: unknown): string | undefined {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  return cause instanceof ApplicationFailure ? (cause.type ?? undefined) : undefined;
}

/**
 * One workflow per tenant (id `tenant/<tenantId>`): deactivation starts a durable retention timer
 * (29 days by default); reactivation within the window restores the tenant and its ANCs; when the
 * window passes, the tenant's data is purged in resumable batches, its keys destroyed, its row left
 * as a tombstone, its ANC workflows closed, and this workflow ends. Requests apply one at a time
 * in the order accepted. Continues as new after each reactivation and when history grows long.
 */
export async function tenantWorkflow(args: TenantWorkflowArgs): Promise<{ finalState: Phase }> {
  if (patched(START_CHECKS_PATCH)) checkTenantWorkflowArgs(args, workflowInfo().workflowId);
  const { tenantId } = args;
  validateTenantId(tenantId);
  const workflowId = workflowInfo().workflowId;
  const batchSize = Math.max(1, Math.floor(args.purgeBatchSize ?? 100));
  const acts = tenantActivities(patched('activity-summaries'));
  const queue = new SerialQueue();

  let phase: Phase = args.carried?.phase ?? 'loading';
  let deactivatedAtMs = args.carried?.deactivatedAtMs;
  let purgeAtMs = args.carried?.purgeAtMs;
  let purgedAtMs: number | undefined;
  let cycles = args.carried?.cycles ?? 0;
  let rollOver = false;

  const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
  const snapshot = (): TenantQueryResult => ({
    tenantId,
    state: phase === 'purging' ? 'deactivated' : phase,
    deactivatedAt: iso(deactivatedAtMs),
    purgeAt: iso(purgeAtMs),
    timeLeftMs:
      (phase === 'deactivated' || phase === 'purging') && purgeAtMs !== undefined
        ? Math.max(0, purgeAtMs - Date.now())
        : undefined,
    purgedAt: iso(purgedAtMs),
    asOf: new Date(Date.now()).toISOString(),
    cycles,
  });
  const view = (): TenantView => {
    const s = snapshot();
    if (s.state === 'loading' || s.state === 'not-found') throw notFound();
    return { ...s, state: s.state };
  };
  const notFound = () => permanentFailure('TenantNotFound', `tenant ${tenantId} does not exist`);
  const purged = () => permanentFailure('TenantPurged', `tenant ${tenantId} was purged`);

  const publish = () => {
    // "Current details" in the Web UI: state, deactivated at, purge at and time left. No secrets.
    setCurrentDetails(
      tenantDetails({ tenantId, state: phase, deactivatedAtMs, purgeAtMs, purgedAtMs, cycles, nowMs: Date.now() }),
    );
    const state = phase === 'purging' ? 'deactivated' : phase;
    if (state === 'loading') return;
    upsertSearchAttributes([
      { key: TenantIdKey, value: tenantId },
      { key: TenantStateKey, value: state },
      // A deactivated tenant shows when it will be purged; otherwise the attribute is removed.
      { key: PurgeAtKey, value: state === 'deactivated' && purgeAtMs !== undefined ? new Date(purgeAtMs) : null },
    ]);
  };

  const adopt = (record: { state: string; deactivatedAt?: string; purgeAt?: string; purgedAt?: string }) => {
    const ms = (s: string | undefined) => (s === undefined ? undefined : Date.parse(s));
    switch (record.state) {
      case 'active':
        phase = 'active';
        deactivatedAtMs = undefined;
        purgeAtMs = undefined;
        break;
      case 'deactivated':
        phase = 'deactivated';
        deactivatedAtMs = ms(record.deactivatedAt);
        purgeAtMs = ms(record.purgeAt);
        break;
      case 'purged':
        phase = 'purged';
        deactivatedAtMs = ms(record.deactivatedAt);
        purgeAtMs = ms(record.purgeAt);
        purgedAtMs = ms(record.purgedAt);
        break;
      default:
        phase = 'not-found';
    }
    publish();
  };

  /** Tells every ANC workflow of the tenant its new state. A workflow that is gone is skipped. */
  const notifyAncs = async (state: 'active' | 'deactivated' | 'purged', ancIds?: string[]) => {
    const ids = ancIds ?? (await listAncIds());
    await Promise.all(
      ids.map(async (ancId) => {
        try {
          await getExternalWorkflowHandle(ancWorkflowId(tenantId, ancId)).signal(tenantStateSignal, { state });
        } catch (err) {
          if (!/not found/i.test(String((err as Error)?.message))) {
            log.warn('could not signal ANC workflow', { ancId, state, error: String(err) });
          }
        }
      }),
    );
  };
  const listAncIds = async (): Promise<string[]> => {
    const all: string[] = [];
    for (;;) {
      const page = await acts.listTenantAncIds({ tenantId, afterAncId: all[all.length - 1], limit: ANC_PAGE });
      all.push(...page);
      if (page.length < ANC_PAGE) return all;
    }
  };

  /** Records what the activity's permanent refusal says about the tenant, and rethrows it. */
  const refused = (err: unknown): never => {
    const type = failureType(err);
    if (type === 'TenantNotFound') {
      phase = 'not-found';
      throw notFound();
    }
    if (type === 'TenantPurged') {
      // The row is (or is about to be) a tombstone; let the loop finish any purge still due.
      if (phase !== 'deactivated') phase = 'purged';
      throw purged();
    }
    throw err;
  };

  const checkActor = (req: TenantLifecycleRequest) => {
    if (typeof req?.actor !== 'string' || req.actor.trim() === '') {
      throw ApplicationFailure.create({
        type: 'InvalidActor',
        message: 'actor must be a non-empty string',
        nonRetryable: true,
      });
    }
  };

  const load = async () => adopt(await acts.loadTenant({ tenantId }));

  const deactivate = async (req: TenantLifecycleRequest): Promise<TenantView> => {
    checkActor(req);
    switch (phase) {
      case 'not-found':
        throw notFound();
      case 'purging':
      case 'purged':
        throw purged();
      case 'deactivated':
        return view(); // Not an error, and the clock keeps running from the first deactivation.
      default:
    }
    const nowMs = Date.now();
    try {
      const result = await acts.deactivateTenantData({
        tenantId,
        nowMs,
        retentionDays: args.retentionDays,
        actor: req.actor,
        reason: req.reason,
        workflowId,
      });
      adopt({ state: 'deactivated', deactivatedAt: result.deactivatedAt, purgeAt: result.purgeAt });
      log.info('Tenant deactivated', { tenantId, purgeAt: result.purgeAt, actor: req.actor });
    } catch (err) {
      refused(err);
    }
    await notifyAncs('deactivated');
    return view();
  };

  const reactivate = async (req: TenantLifecycleRequest): Promise<TenantView> => {
    checkActor(req);
    switch (phase) {
      case 'not-found':
        throw notFound();
      case 'purging':
      case 'purged':
        throw purged();
      case 'active':
        return view();
      default:
    }
    if (purgeAtMs !== undefined && Date.now() >= purgeAtMs) throw purged(); // The window has passed.
    try {
      await acts.reactivateTenantData({
        tenantId,
        nowMs: Date.now(),
        actor: req.actor,
        reason: req.reason,
        workflowId,
      });
    } catch (err) {
      refused(err);
    }
    cycles += 1;
    adopt({ state: 'active' });
    log.info('Tenant reactivated', { tenantId, actor: req.actor });
    await notifyAncs('active');
    rollOver = true; // Start the next cycle with a fresh history.
    return view();
  };

  /**
   * Removes everything stored for the tenant. Each step is idempotent, so a worker lost at any
   * point resumes where the history says it was; the tombstone is written only when nothing else
   * remains.
   */
  const purge = async () => {
    if (phase !== 'deactivated' || purgeAtMs === undefined || Date.now() < purgeAtMs) return;
    const plan = await acts.planTenantPurge({ tenantId, nowMs: Date.now() });
    if (plan.status === 'not-due') {
      purgeAtMs = Date.parse(plan.purgeAt);
      publish();
      return;
    }
    if (plan.status === 'active' || plan.status === 'not-found') {
      adopt({ state: plan.status }); // Changed outside this workflow: follow the row.
      return;
    }
    phase = 'purging';
    publish();
    log.info('Tenant purge started', { tenantId });
    // The ANC ids are read before anything is deleted and kept in history, so every ANC workflow
    // is told to close even if the worker is lost between a batch and its result.
    const ancIds = await listAncIds();
    const counts: PurgeCounts =
      plan.status === 'due'
        ? plan.counts
        : { ancs: 0, credentials: 0, healthChecks: 0, usedEnvelopes: 0, tenantKeys: 0 };
    if (plan.status === 'due') {
      while ((await acts.purgeTenantAncs({ tenantId, nowMs: Date.now(), batchSize })).deleted >= batchSize);
      while ((await acts.purgeTenantEnvelopes({ tenantId, nowMs: Date.now(), batchSize })).deleted >= batchSize);
    }
    const done = await acts.finishTenantPurge({ tenantId, nowMs: Date.now(), counts, actor: PURGE_ACTOR, workflowId });
    if (!done.purged) {
      // Reactivated or removed outside this workflow between plan and finish: follow the row.
      await load();
      return;
    }
    await notifyAncs('purged', ancIds);
    log.info('Tenant purged', { tenantId, ancs: ancIds.length });
    addCounter(metricMeter, 'purges', 1);
    adopt({ state: 'purged', deactivatedAt: iso(deactivatedAtMs), purgeAt: iso(purgeAtMs), purgedAt: done.purgedAt });
  };

  // The row is read before any request is applied; requests queue behind it.
  if (phase === 'loading') void queue.run(load);
  else publish();

  const guard = (req: TenantLifecycleRequest) => {
    checkLifecycleRequest(req);
    checkActor(req);
    if (phase === 'not-found') throw notFound();
    if (phase === 'purged' || phase === 'purging') throw purged();
  };
  const fromSignal = (name: string, req: unknown, job: () => Promise<TenantView>) => {
    if (patched(SIGNAL_CHECKS_PATCH)) {
      try {
        checkLifecycleRequest(req);
      } catch (err) {
        log.warn(`${name} signal dropped`, { tenantId, error: String((err as Error)?.message ?? err) });
        return;
      }
    }
    void queue.run(job).catch((err: unknown) => {
      log.warn(`${name} signal refused`, { tenantId, error: String((err as Error)?.message ?? err) });
    });
  };

  setHandler(getTenantQuery, snapshot);
  setHandler(deactivateTenantSignal, (req) => fromSignal('deactivateTenant', req, () => deactivate(req)));
  setHandler(reactivateTenantSignal, (req) => fromSignal('reactivateTenant', req, () => reactivate(req)));
  setHandler(deactivateTenantUpdate, (req) => queue.run(() => deactivate(req)), { validator: guard });
  setHandler(reactivateTenantUpdate, (req) => queue.run(() => reactivate(req)), { validator: guard });

  const finished = () => phase === 'purged' || phase === 'not-found';
  const drained = () => queue.idle && allHandlersFinished();
  const timing = () => phase === 'deactivated' && purgeAtMs !== undefined;
  const canRollOver = () =>
    (rollOver || workflowInfo().continueAsNewSuggested) && (phase === 'active' || phase === 'deactivated');

  for (;;) {
    if (timing() && purgeAtMs !== undefined) {
      // Sleep until the window passes or something changes (samples-typescript sleep-for-days).
      const left = purgeAtMs - Date.now();
      if (left > 0) await condition(() => !timing() || canRollOver(), left);
      if (timing() && Date.now() >= purgeAtMs) await queue.run(purge);
    } else {
      await condition(() => timing() || finished() || canRollOver());
    }
    if (finished()) break;
    if (canRollOver()) {
      await condition(drained);
      if (!canRollOver()) continue;
      await continueAsNew<typeof tenantWorkflow>({
        tenantId,
        retentionDays: args.retentionDays,
        purgeBatchSize: args.purgeBatchSize,
        carried: { phase: phase === 'deactivated' ? 'deactivated' : 'active', deactivatedAtMs, purgeAtMs, cycles },
      });
    }
  }
  await condition(drained);
  return { finalState: phase };
}
