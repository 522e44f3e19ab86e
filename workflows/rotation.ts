import {
  allHandlersFinished,
  condition,
  continueAsNew,
  executeChild,
  getExternalWorkflowHandle,
  log,
  patched,
  metricMeter,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { HSM_PRIORITY, hsmTaskQueue } from '../common/hsm';
import { AUDIT_ANCHOR_WORKFLOW_ID, KEYRING_WORKFLOW_ID } from '../common/ids';
import type { ReplaceBatchResult, RewrapBatchResult } from '../common/rotation';
import { addCounter, setGauge } from '../common/metrics';
import { anchorAuditSignal, refreshKekSignal } from './definitions';
import { checkRotationWorkflowArgs, START_CHECKS_PATCH } from './input-checks';
import {
  RESEAL_FORMAT_1_PATCH,
  rotationProgressQuery,
  type RewrapCursor,
  type RotationFailure,
  type RotationProgress,
  type RotationWorkflowArgs,
} from './rotation-definitions';

// Throttling (429 after the SDK's own Retry-After retries), Key Vault or database outages: retried
// for as long as it takes, never failing the run. Per-item problems retrying cannot fix are
// reported by the activities as results, not thrown.
const RETRY_FOREVER = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' } as const;

const { renewKekIfDue, retireKekVersions } = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  retry: RETRY_FOREVER,
});
const { rewrapTenantKeys, replaceExpiredTenantKeys, resealFormat1Credentials } = proxyActivities<Activities>({
  // A batch of 100 at the default budget takes seconds; the margin covers throttling back-off.
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: '2 minutes',
  retry: RETRY_FOREVER,
});

const { listStaleTenantKeys, listTenantsToReplace } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: RETRY_FOREVER,
});

/** Re-wraps and replacements go one key (one tenant) per activity to the HSM task queue. */
export const ROTATION_HSM_PATCH = 'hsm-task-queue';

/** After the first vault, the run rotates every further vault, each in a child run on its own HSM queue. */
export const ROTATION_VAULTS_PATCH = 'rotation-vaults';

const { listVaults } = proxyActivities<Activities>({ startToCloseTimeout: '1 minute', retry: RETRY_FOREVER });

function hsmRotationActivities(vaultId?: string) {
  return proxyActivities<Activities>({
    taskQueue: hsmTaskQueue(workflowInfo().taskQueue, vaultId),
    priority: { priorityKey: HSM_PRIORITY.rotation },
    // One HSM call each; waiting for the budget is schedule-to-start time, not counted here.
    startToCloseTimeout: '2 minutes',
    retry: RETRY_FOREVER,
  });
}

/** Runs `fn` over `items`, at most `limit` at once, in a deterministic order of starts. */
async function inParallel<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  return results;
}

/** A re-wrap pass repeats when keys were wrapped with an old version meanwhile; at most this often. */
const MAX_REWRAP_PASSES = 3;
const MAX_FAILURES_KEPT = 50;

function initialProgress(rotationId: string, nowMs: number): RotationProgress {
  const now = new Date(nowMs).toISOString();
  return {
    rotationId,
    phase: 'starting',
    startedAt: now,
    updatedAt: now,
    continuedAsNew: 0,
    kek: { renewed: false, unreferencedVersions: [], disabledVersions: [], stillReferenced: [] },
    counts: {
      rewrapped: 0,
      rewrapFailed: 0,
      tenantKeysReplaced: 0,
      credentialsResealed: 0,
      tenantKeyVersionsDeleted: 0,
      replaceFailed: 0,
      hsmUnwraps: 0,
      batches: 0,
    },
    cursor: null,
    rewrapPass: 0,
    rewrapPassFailed: 0,
    failures: [],
  };
}

/** Markdown shown as "Current details" in the Temporal Web UI. */
function details(p: RotationProgress): string {
  const c = p.counts;
  const cursor = p.cursor ? `${p.cursor.tenantId}${'version' in p.cursor ? ` v${p.cursor.version}` : ''}` : '-';
  return [
    `**Key rotation** — phase \`${p.phase}\``,
    `KEK: current \`${p.kek.currentVersion ?? '?'}\`${p.kek.renewed ? ` (renewed, previous \`${p.kek.previousVersion ?? '-'}\`)` : ''}`,
    `Re-wrapped ${c.rewrapped} (failed ${c.rewrapFailed}, pass ${p.rewrapPass}) · tenant keys replaced ${c.tenantKeysReplaced} · credentials re-sealed ${c.credentialsResealed} · old versions deleted ${c.tenantKeyVersionsDeleted} (failed ${c.replaceFailed}) · upgraded to sealed format 2 ${c.credentialsUpgraded ?? 0}`,
    `HSM unwraps ${c.hsmUnwraps} · batches ${c.batches} · cursor ${cursor} · continued-as-new ${p.continuedAsNew}`,
    p.kek.unreferencedVersions.length
      ? `Unreferenced KEK versions: ${p.kek.unreferencedVersions.join(', ')}${p.kek.disabledVersions.length ? ` (disabled: ${p.kek.disabledVersions.join(', ')})` : ''}`
      : '',
  ]
    .filter(Boolean)
    .join('\n\n');
}

/**
 * One rotation: renew the KEK when fewer than three months remain on it, replace tenant keys older
 * than twelve months (re-sealing their credentials), re-wrap every tenant key not wrapped by the
 * current KEK version, then report (and optionally disable) KEK versions nothing refers to.
 *
 * Started by the rotation schedule (overlap SKIP) or on demand through it. All progress lives in
 * the database, so a run that dies anywhere is finished by the next one without redoing anything;
 * the cursor and counts travel across continue-as-new and are readable with the
 * `getRotationProgress` query.
 */
export async function rotationWorkflow(args: RotationWorkflowArgs = {}): Promise<RotationProgress> {
  if (patched(START_CHECKS_PATCH)) checkRotationWorkflowArgs(args);
  const rotationId = workflowInfo().workflowId;
  const batchSize = Math.max(1, Math.min(args.batchSize ?? 100, 1000));
  const batchesPerRun = Math.max(1, args.batchesPerRun ?? 100);
  const concurrency = Math.max(1, Math.min(args.concurrency ?? 16, 64));
  const graceMs = Math.max(0, args.kekGraceSeconds ?? 600) * 1000;
  const actor = args.actor ?? 'rotation';
  // The vault this run rotates; every step's input names it (absent: the first vault).
  const vault = args.vaultId === undefined ? {} : { vaultId: args.vaultId };
  const p: RotationProgress = args.carried ?? initialProgress(rotationId, Date.now());
  let batchesThisRun = 0;

  setHandler(rotationProgressQuery, () => p, {
    description: 'Phase, KEK versions, counts (re-wrapped, replaced, re-sealed) and cursor of this rotation',
  });
  const touch = (): void => {
    p.updatedAt = new Date(Date.now()).toISOString();
    setCurrentDetails(details(p));
  };
  const recordFailures = (failed: RotationFailure[]): void => {
    for (const f of failed) if (p.failures.length < MAX_FAILURES_KEPT) p.failures.push(f);
  };
  const timeToContinueAsNew = (): boolean => batchesThisRun >= batchesPerRun || workflowInfo().continueAsNewSuggested;
  touch();

  for (;;) {
    switch (p.phase) {
      case 'starting':
        p.phase = 'renewing-kek';
        break;

      case 'renewing-kek': {
        const r = await renewKekIfDue({ nowMs: Date.now(), rotationId, actor, ...vault });
        p.kek.currentVersion = r.currentVersion;
        p.kek.currentExpiresAt = new Date(r.currentExpiresAtMs).toISOString();
        if (r.renewed) {
          p.kek.renewed = true;
          p.kek.previousVersion = r.previousVersion;
          p.kek.renewedAt = new Date(Date.now()).toISOString();
        }
        // The keyring publishes the current public key to clients. Best effort: it also refreshes
        // hourly, and it may not run at all (tests, a worker still starting).
        try {
          await getExternalWorkflowHandle(KEYRING_WORKFLOW_ID).signal(refreshKekSignal);
        } catch (err) {
          log.info('keyring workflow not signalled', { error: String(err) });
        }
        p.phase = 'replacing-tenant-keys';
        p.cursor = null;
        break;
      }

      case 'replacing-tenant-keys': {
        if (timeToContinueAsNew()) return continueAsNewWith(args, p);
        const cursor = p.cursor && !('version' in p.cursor) ? p.cursor.tenantId : null;
        let r: ReplaceBatchResult;
        if (patched(ROTATION_HSM_PATCH)) {
          const nowMs = Date.now();
          const tenants = await listTenantsToReplace({ after: cursor, limit: batchSize, nowMs, ...vault });
          const hsm = hsmRotationActivities(args.vaultId);
          const each = await inParallel(tenants, concurrency, (tenantId) =>
            hsm.replaceExpiredTenantKeys({
              after: null,
              limit: 1,
              concurrency: 1,
              nowMs,
              rotationId,
              actor,
              tenants: [tenantId],
              ...vault,
            }),
          );
          r = {
            tenants: tenants.length,
            replaced: sum(each, (e) => e.replaced),
            resealed: sum(each, (e) => e.resealed),
            deleted: sum(each, (e) => e.deleted),
            failed: each.flatMap((e) => e.failed),
            hsmUnwraps: sum(each, (e) => e.hsmUnwraps),
            next: tenants.at(-1) ?? cursor,
            done: tenants.length < batchSize,
          };
        } else {
          r = await replaceExpiredTenantKeys({
            after: cursor,
            limit: batchSize,
            concurrency,
            nowMs: Date.now(),
            rotationId,
            actor,
          });
        }
        batchesThisRun += 1;
        p.counts.batches += 1;
        p.counts.hsmUnwraps += r.hsmUnwraps;
        p.counts.tenantKeysReplaced += r.replaced;
        p.counts.credentialsResealed += r.resealed;
        p.counts.tenantKeyVersionsDeleted += r.deleted;
        p.counts.replaceFailed += r.failed.length;
        recordFailures(r.failed);
        // Metrics from workflow code are not emitted again when the history is replayed.
        addCounter(metricMeter, 'rotationReplaced', r.replaced);
        addCounter(metricMeter, 'opens', r.resealed, { purpose: 'reseal' });
        addCounter(metricMeter, 'seals', r.resealed, { operation: 'reseal' });
        addCounter(metricMeter, 'rotationFailures', r.failed.length, { phase: 'replace' });
        p.cursor = r.next ? { tenantId: r.next } : null;
        if (r.done) {
          p.phase = 'rewrapping';
          p.cursor = null;
          p.rewrapPass = 1;
          p.rewrapPassFailed = 0;
        }
        break;
      }

      case 'rewrapping': {
        if (timeToContinueAsNew()) return continueAsNewWith(args, p);
        const cursor = p.cursor && 'version' in p.cursor ? (p.cursor as RewrapCursor) : null;
        const targetKekVersion = p.kek.currentVersion as string;
        let r: RewrapBatchResult;
        if (patched(ROTATION_HSM_PATCH)) {
          const nowMs = Date.now();
          const keys = await listStaleTenantKeys({ targetKekVersion, after: cursor, limit: batchSize, ...vault });
          const hsm = hsmRotationActivities(args.vaultId);
          const each = await inParallel(keys, concurrency, (key) =>
            hsm.rewrapTenantKeys({
              targetKekVersion,
              after: null,
              limit: 1,
              concurrency: 1,
              nowMs,
              rotationId,
              actor,
              keys: [key],
              ...vault,
            }),
          );
          r = {
            rewrapped: sum(each, (e) => e.rewrapped),
            alreadyDone: sum(each, (e) => e.alreadyDone),
            failed: each.flatMap((e) => e.failed),
            hsmUnwraps: sum(each, (e) => e.hsmUnwraps),
            next: keys.at(-1) ?? cursor,
            done: keys.length < batchSize,
          };
        } else {
          r = await rewrapTenantKeys({
            targetKekVersion,
            after: cursor,
            limit: batchSize,
            concurrency,
            nowMs: Date.now(),
            rotationId,
            actor,
          });
        }
        batchesThisRun += 1;
        p.counts.batches += 1;
        p.counts.hsmUnwraps += r.hsmUnwraps;
        p.counts.rewrapped += r.rewrapped;
        p.counts.rewrapFailed += r.failed.length;
        p.rewrapPassFailed += r.failed.length;
        recordFailures(r.failed);
        addCounter(metricMeter, 'rotationRewrapped', r.rewrapped);
        addCounter(metricMeter, 'rotationFailures', r.failed.length, { phase: 'rewrap' });
        p.cursor = r.next;
        if (r.done) {
          p.cursor = null;
          const graceOver = !p.kek.renewed || Date.now() >= Date.parse(p.kek.renewedAt ?? '') + graceMs;
          p.phase = graceOver ? 'retiring-kek' : 'kek-grace';
          // Runs after the re-wrap, so the tenant keys it unwraps are wrapped by the current KEK.
          // Format 1 predates several vaults: only the first vault's run has any to upgrade.
          if (patched(RESEAL_FORMAT_1_PATCH) && args.vaultId === undefined) p.phase = 'resealing-format-1';
        }
        break;
      }

      case 'resealing-format-1': {
        if (timeToContinueAsNew()) return continueAsNewWith(args, p);
        const after = p.cursor && !('version' in p.cursor) ? p.cursor.tenantId : null;
        const r = await resealFormat1Credentials({
          after,
          limit: batchSize,
          concurrency,
          nowMs: Date.now(),
          rotationId,
          actor,
        });
        batchesThisRun += 1;
        p.counts.batches += 1;
        p.counts.hsmUnwraps += r.hsmUnwraps;
        p.counts.credentialsUpgraded = (p.counts.credentialsUpgraded ?? 0) + r.resealed;
        recordFailures(r.failed);
        p.cursor = r.next ? { tenantId: r.next } : null;
        if (r.done) {
          p.cursor = null;
          const graceOver = !p.kek.renewed || Date.now() >= Date.parse(p.kek.renewedAt ?? '') + graceMs;
          p.phase = graceOver ? 'retiring-kek' : 'kek-grace';
        }
        break;
      }

      case 'kek-grace': {
        // Clients may hold envelopes sealed for the old version, and other workers may still wrap
        // new tenant keys with it for up to their cache's lifetime: wait, then look again.
        const wait = Date.parse(p.kek.renewedAt ?? '') + graceMs - Date.now();
        if (wait > 0) await sleep(wait);
        p.phase = 'retiring-kek';
        break;
      }

      case 'retiring-kek': {
        const r = await retireKekVersions({
          currentKekVersion: p.kek.currentVersion as string,
          nowMs: Date.now(),
          rotationId,
          actor,
          ...vault,
        });
        p.kek.unreferencedVersions = [...new Set([...p.kek.unreferencedVersions, ...r.unreferenced])];
        p.kek.disabledVersions = [...new Set([...p.kek.disabledVersions, ...r.disabled])];
        p.kek.stillReferenced = r.stillReferenced;
        const stale = r.stillReferenced.reduce((n, s) => n + s.tenantKeys, 0);
        setGauge(metricMeter, 'rotationRemaining', stale);
        if (stale > p.rewrapPassFailed && p.rewrapPass < MAX_REWRAP_PASSES) {
          // Keys wrapped with an old version after the pass went by them: another pass.
          p.rewrapPass += 1;
          p.rewrapPassFailed = 0;
          p.phase = 'rewrapping';
          p.cursor = null;
          break;
        }
        if (args.vaultId === undefined && patched(ROTATION_VAULTS_PATCH)) {
          // Every further vault: the same steps with its KEK and tenants, on its own HSM queue, at
          // once (each vault has its own budget).
          const others = (await listVaults()).slice(1);
          const { carried: _carried, ...childArgs } = args;
          const runs = await Promise.all(
            others.map((vaultId) =>
              executeChild(rotationWorkflow, {
                workflowId: `${rotationId}/vault-${vaultId}`,
                args: [{ ...childArgs, vaultId }],
                staticSummary: `Key rotation of vault ${vaultId}`,
              }),
            ),
          );
          p.vaults = Object.fromEntries(
            runs.map((r, i) => [
              others[i] as string,
              { phase: r.phase, kekVersion: r.kek.currentVersion, counts: r.counts },
            ]),
          );
        }
        p.phase = 'done';
        p.finishedAt = new Date(Date.now()).toISOString();
        addCounter(metricMeter, 'rotationRuns', 1, { outcome: 'completed' });
        // Every run anchors the audit chain's head outside PostgreSQL. Best effort: the anchor
        // workflow also anchors on its own interval, and it may not run (tests).
        if (args.vaultId === undefined && patched('audit-anchor-after-rotation')) {
          try {
            await getExternalWorkflowHandle(AUDIT_ANCHOR_WORKFLOW_ID).signal(anchorAuditSignal);
          } catch (err) {
            log.info('audit anchor workflow not signalled', { error: String(err) });
          }
        }
        touch();
        return p;
      }

      case 'done':
        return p;
    }
    touch();
  }
}

async function continueAsNewWith(args: RotationWorkflowArgs, p: RotationProgress): Promise<never> {
  p.continuedAsNew += 1;
  p.updatedAt = new Date(Date.now()).toISOString();
  setCurrentDetails(details(p));
  await condition(allHandlersFinished);
  return continueAsNew<typeof rotationWorkflow>({ ...args, carried: p });
}

function sum<T>(items: readonly T[], pick: (item: T) => number): number {
  return items.reduce((n, item) => n + pick(item), 0);
}
