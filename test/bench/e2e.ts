/**
 * End-to-end creates and password updates through the SDK, until the call returns, at several
 * concurrencies, against a bare workflow started the same way (update-with-start) that runs the same
 * number of no-op activities before and after answering, on the same dev server with the same worker
 * settings. Service and bare runs alternate (A/B, then B/A) and repeat; the ratios pool every round.
 *
 * Per operation it also reports history events and activities (from sampled histories), Key Vault
 * calls (counted at the emulator, so wherever the activities run) and where the time goes (workflow
 * tasks, activity dispatch, activity execution, the rest), from history event times.
 *
 *   npm run bench -- e2e      (BENCH_ROUNDS=3, BENCH_SCALE=1 to make it longer or shorter)
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WithStartWorkflowOperation, WorkflowIdConflictPolicy, type Client } from '@temporalio/client';
import proto, { type temporal } from '@temporalio/proto';
import { AncClient } from '../../client/sdk';
import { ancWorkflowId } from '../../common/ids';
import { ROOT } from '../support/stack';
import { bareOpUpdate, type BareOpRequest } from './bare-workflow';
import {
  BENCH_HSM_OPS_PER_SECOND,
  BENCH_KEY_SIZE,
  fmt,
  machineLine,
  percentile,
  runConcurrent,
  sleep,
  sortNumbers,
  startBenchStack,
  startChildProcess,
  startServiceWorker,
  treeCpuSeconds,
  type BenchStack,
} from './support';

const E = proto.temporal.api.enums.v1.EventType;
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

const CONCURRENCY = [1, 8, 32];
const PASSWORD = 'Join-Test-Only-1!'; // the local directory's healthy account, so health checks pass
const USER = 'svcDomainJoin@corp.contoso.test';
const ANCS_PER_TENANT = 5;

type Variant = 'service' | 'bare';
type Op = 'create' | 'update';

interface Breakdown {
  /** Server-side span from the first event of the operation to UpdateCompleted. */
  span: number;
  workflowTasks: number;
  activityWait: number;
  activityRun: number;
}

interface PhaseResult {
  latencies: number[];
  throughputs: number[];
  historyEvents: number[];
  activities: number[];
  activitiesBeforeAnswer: number[];
  breakdown: Breakdown[];
  vaultCalls: number[];
  vaultUnwraps: number[];
  vaultWraps: number[];
  /** CPU ms per operation (the phase and what it set off, until settled): its worker process. */
  workerCpu: number[];
  /** ... and the Key Vault emulator, PostgreSQL and OpenLDAP (the service's dependencies). */
  depsCpu: number[];
}

const emptyPhase = (): PhaseResult => ({
  latencies: [],
  throughputs: [],
  historyEvents: [],
  activities: [],
  activitiesBeforeAnswer: [],
  breakdown: [],
  vaultCalls: [],
  vaultUnwraps: [],
  vaultWraps: [],
  workerCpu: [],
  depsCpu: [],
});

const ms = (t: temporal.api.history.v1.IHistoryEvent['eventTime']) =>
  Number(t?.seconds ?? 0) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);

/**
 * Reads one operation out of a history: events from `fromIndex` on, the update that starts there.
 * Returns activity counts (before and after the answer) and the time split of the answered part.
 */
function analyse(events: HistoryEvent[], fromIndex: number) {
  const slice = events.slice(fromIndex);
  const completedAt = slice.findIndex((e) => e.eventType === E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED);
  const answered = completedAt < 0 ? slice : slice.slice(0, completedAt + 1);
  const count = (list: HistoryEvent[], type: number) => list.filter((e) => e.eventType === type).length;
  const scheduled = new Map<string, { scheduled: number; task: string; started?: number; completed?: number }>();
  let workflowTasks = 0;
  let wftScheduled: number | undefined;
  for (const e of answered) {
    const t = ms(e.eventTime);
    switch (e.eventType) {
      case E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
        wftScheduled = t;
        break;
      case E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
        if (wftScheduled !== undefined) workflowTasks += t - wftScheduled;
        wftScheduled = undefined;
        break;
      case E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        scheduled.set(String(e.eventId), {
          scheduled: t,
          task: String(e.activityTaskScheduledEventAttributes?.workflowTaskCompletedEventId),
        });
        break;
      case E.EVENT_TYPE_ACTIVITY_TASK_STARTED: {
        const a = scheduled.get(String(e.activityTaskStartedEventAttributes?.scheduledEventId));
        if (a) a.started = t;
        break;
      }
      case E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: {
        const a = scheduled.get(String(e.activityTaskCompletedEventAttributes?.scheduledEventId));
        if (a) a.completed = t;
        break;
      }
    }
  }
  let activityWait = 0;
  let activityRun = 0;
  for (const a of scheduled.values()) {
    if (a.started !== undefined) activityWait += a.started - a.scheduled;
    if (a.started !== undefined && a.completed !== undefined) activityRun += a.completed - a.started;
  }
  // Activities the answer waited for, grouped by the workflow task that scheduled them: a group
  // runs together, the groups one after the other.
  const waves = new Map<string, number>();
  for (const a of scheduled.values()) {
    if (a.completed !== undefined) waves.set(a.task, (waves.get(a.task) ?? 0) + 1);
  }
  const first = answered[0];
  const last = answered.at(-1);
  return {
    events: slice.length,
    activities: count(slice, E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
    // Activities the answer waited for: those completed before it (others are scheduled with it).
    activitiesBeforeAnswer: count(answered, E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED),
    beforeWaves: [...waves.values()],
    breakdown: {
      span: first && last ? ms(last.eventTime) - ms(first.eventTime) : NaN,
      workflowTasks,
      activityWait,
      activityRun,
    },
  };
}

/** Index where the n-th (1-based) update's operation starts: the workflow task before its UpdateAccepted. */
function operationStart(events: HistoryEvent[], nth: number): number {
  let seen = 0;
  for (let i = 0; i < events.length; i++) {
    if (events[i]?.eventType !== E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED) continue;
    seen += 1;
    if (seen < nth) continue;
    if (nth === 1) return 0; // update-with-start: the operation starts with the workflow
    for (let j = i; j >= 0; j--) if (events[j]?.eventType === E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED) return j;
    return i;
  }
  return events.length;
}

interface Driver {
  variant: Variant;
  workflowId(tenantId: string, ancId: string): string;
  create(tenantId: string, ancId: string): Promise<unknown>;
  update(tenantId: string, ancId: string): Promise<unknown>;
}

function serviceDriver(sdk: AncClient): Driver {
  return {
    variant: 'service',
    workflowId: ancWorkflowId,
    create: (tenantId, ancId) =>
      sdk.createAnc({
        tenantId,
        ancId,
        displayName: `Bench ${ancId}`,
        adDomainName: 'corp.contoso.test',
        organizationalUnit: 'OU=CloudPCs,DC=corp,DC=contoso,DC=test',
        adDomainUsername: USER,
        password: PASSWORD,
        actor: 'bench',
      }),
    update: (tenantId, ancId) => sdk.updateAncPassword(tenantId, ancId, PASSWORD, { actor: 'bench' }),
  };
}

function bareDriver(
  client: Client,
  taskQueue: string,
  shape: () => { create: BareOpRequest; update: BareOpRequest },
): Driver {
  const workflowId = (tenantId: string, ancId: string) => `bare/${tenantId}/${ancId}`;
  return {
    variant: 'bare',
    workflowId,
    create: (tenantId, ancId) =>
      client.workflow.executeUpdateWithStart(bareOpUpdate, {
        args: [
          {
            ...shape().create,
            payload: randomBytes(Math.floor(shape().create.payload.length * 0.75)).toString('base64'),
          },
        ],
        updateId: randomUUID(),
        startWorkflowOperation: new WithStartWorkflowOperation('bareWorkflow', {
          workflowId: workflowId(tenantId, ancId),
          taskQueue,
          args: [],
          workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
        }),
      }),
    update: (tenantId, ancId) =>
      client.workflow.getHandle(workflowId(tenantId, ancId)).executeUpdate(bareOpUpdate, {
        args: [
          {
            ...shape().update,
            payload: randomBytes(Math.floor(shape().update.payload.length * 0.75)).toString('base64'),
          },
        ],
        updateId: randomUUID(),
      }),
  };
}

/** Waits until the emulator's request count has not moved for `quietMs` (background health checks done). */
async function settle(stack: BenchStack, quietMs = 1500, maxMs = 20_000): Promise<void> {
  const deadline = Date.now() + maxMs;
  let last = -1;
  let stableSince = Date.now();
  while (Date.now() < deadline) {
    const n = (await stack.vault.stats()).totalRequests;
    if (n !== last) {
      last = n;
      stableSince = Date.now();
    } else if (Date.now() - stableSince >= quietMs) return;
    await sleep(200);
  }
}

export async function e2e(): Promise<void> {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  const scale = Number(process.env.BENCH_SCALE ?? 1);
  const opsFor = (c: number) => Math.max(c, Math.round(scale * (c === 1 ? 40 : c === 8 ? 120 : 256)));
  console.log('End-to-end creates and password updates through the SDK vs a bare update-with-start workflow');
  console.log(`  machine: ${machineLine()}`);
  console.log(
    `  ${rounds} rounds, concurrency ${CONCURRENCY.join('/')}, ${CONCURRENCY.map(opsFor).join('/')} operations per phase;` +
      ` Key Vault emulator, RSA-${BENCH_KEY_SIZE} KEK, HSM budget ${BENCH_HSM_OPS_PER_SECOND}/s`,
  );

  const stack = await startBenchStack('e2e');
  const serviceQueue = `bench-anc-${randomBytes(3).toString('hex')}`;
  const bareQueue = `bench-bare-${randomBytes(3).toString('hex')}`;
  // The service's Key Vault-bound activities run on its HSM task queue under a task-queue-wide rate
  // (worker/config.ts's default for this budget); the bare no-ops get the same rate on their queue,
  // unless BENCH_BARE_RATE=0.
  const queueRate = Math.max(1, Math.floor(BENCH_HSM_OPS_PER_SECOND * 0.4));
  const bareRate = process.env.BENCH_BARE_RATE === '0' ? 0 : queueRate;
  console.log(
    `  HSM task queue rate ${queueRate} activities/s; bare no-ops ${bareRate ? `at the same rate` : 'without a rate'}`,
  );
  const service = await startServiceWorker(stack, serviceQueue, { HSM_QUEUE_ACTIVITIES_PER_SECOND: String(queueRate) });
  const bare = await startChildProcess('test/bench/bare-worker.ts', {}, /Worker started/, [
    stack.address,
    bareQueue,
    ...(bareRate ? [String(bareRate)] : []),
  ]);
  try {
    // The dependencies' CPU: the emulator process tree, and this stack's PostgreSQL and OpenLDAP.
    const stackPids = [join(ROOT, '.stack/pg/data/postmaster.pid'), join(ROOT, '.stack/run/slapd.pid')]
      .filter((f) => existsSync(f))
      .map((f) => Number(readFileSync(f, 'utf8').split('\n')[0]));
    const depsCpu = () => [stack.vault.pid, ...stackPids].reduce((sum, pid) => sum + treeCpuSeconds(pid), 0);
    const sdk = new AncClient({ client: stack.client, taskQueue: serviceQueue, kekTrust: { unverified: true } });
    await sdk.publicKek();
    const A = serviceDriver(sdk);

    // The bare workflow mirrors the service's shape: activities before and after the answer and the
    // request size, as measured on the service's own warm-up operations.
    const shape = {
      create: { payload: 'x'.repeat(800), before: [1], after: 1 },
      update: { payload: 'x'.repeat(700), before: [1], after: 1 },
    };
    const B = bareDriver(stack.client, bareQueue, () => shape);

    // Warm-up (not counted): both workers load their workflow bundles and caches.
    const warm = 16;
    await runConcurrent(warm, 8, (i) => A.create(`warm${i % 4}`, `a${i}`));
    await settle(stack);
    await runConcurrent(warm, 8, (i) => A.update(`warm${i % 4}`, `a${i}`));
    await settle(stack);
    {
      const history = await stack.client.workflow.getHandle(A.workflowId('warm0', 'a0')).fetchHistory();
      const events = history.events ?? [];
      const created = analyse(events.slice(0, operationStart(events, 2)), 0);
      const updated = analyse(events, operationStart(events, 2));
      shape.create.before = created.beforeWaves;
      shape.create.after = created.activities - created.activitiesBeforeAnswer;
      shape.update.before = updated.beforeWaves;
      shape.update.after = updated.activities - updated.activitiesBeforeAnswer;
    }
    await runConcurrent(warm, 8, (i) => B.create(`warm${i % 4}`, `a${i}`));
    await sleep(1500);
    await runConcurrent(warm, 8, (i) => B.update(`warm${i % 4}`, `a${i}`));
    await sleep(1500);
    console.log(
      `  activities per operation (before the answer, [together] in sequence, + after): create [${shape.create.before.join('][')}]+${shape.create.after},` +
        ` update [${shape.update.before.join('][')}]+${shape.update.after}; the bare workflow runs as many no-ops the same way\n`,
    );

    const results = new Map<string, PhaseResult>();
    const key = (v: Variant, op: Op, c: number) => `${v}/${op}/${c}`;
    const phase = (v: Variant, op: Op, c: number) => {
      let r = results.get(key(v, op, c));
      if (!r) results.set(key(v, op, c), (r = emptyPhase()));
      return r;
    };

    for (let round = 1; round <= rounds; round++) {
      for (const [ci, c] of CONCURRENCY.entries()) {
        const n = opsFor(c);
        const tenants = Math.max(c, Math.ceil(n / ANCS_PER_TENANT));
        const ids = (i: number) => [`r${round}c${c}t${i % tenants}`, `a${i}`] as const;
        const order = (round + ci) % 2 === 0 ? [A, B] : [B, A];
        const lengthsAfterCreate = new Map<string, number>();
        for (const op of ['create', 'update'] as const) {
          for (const d of order) {
            await stack.vault.reset();
            const worker = d.variant === 'service' ? service : bare;
            const cpu0 = { worker: worker.cpuSeconds(), deps: depsCpu() };
            const run = await runConcurrent(n, c, (i) => {
              const [t, a] = ids(i);
              return op === 'create' ? d.create(t, a) : d.update(t, a);
            });
            const r = phase(d.variant, op, c);
            r.latencies.push(...run.latencies);
            r.throughputs.push(n / (run.wallMs / 1000));
            if (d.variant === 'service') await settle(stack);
            else await sleep(1500);
            r.workerCpu.push(((worker.cpuSeconds() - cpu0.worker) * 1000) / n);
            r.depsCpu.push(((depsCpu() - cpu0.deps) * 1000) / n);
            if (d.variant === 'service') {
              const s = await stack.vault.stats();
              r.vaultCalls.push(s.totalRequests / n);
              r.vaultUnwraps.push(s.operations.unwrapkey / n);
              r.vaultWraps.push(s.operations.wrapkey / n);
            }
            // Sampled histories: events, activities and the time split of this operation.
            const sample = Array.from({ length: Math.min(8, n) }, (_, k) => Math.floor((k * n) / Math.min(8, n)));
            for (const i of sample) {
              const [t, a] = ids(i);
              const id = d.workflowId(t, a);
              const events = (await stack.client.workflow.getHandle(id).fetchHistory()).events ?? [];
              if (op === 'create') {
                const end = operationStart(events, 2);
                const x = analyse(events.slice(0, end), 0);
                lengthsAfterCreate.set(id, events.length);
                r.historyEvents.push(x.events);
                r.activities.push(x.activities);
                r.activitiesBeforeAnswer.push(x.activitiesBeforeAnswer);
                r.breakdown.push(x.breakdown);
              } else {
                const x = analyse(events, operationStart(events, 2));
                r.historyEvents.push(events.length - (lengthsAfterCreate.get(id) ?? 0));
                r.activities.push(x.activities);
                r.activitiesBeforeAnswer.push(x.activitiesBeforeAnswer);
                r.breakdown.push(x.breakdown);
              }
            }
          }
        }
        const a = phase('service', 'create', c).throughputs.at(-1) ?? NaN;
        const b = phase('bare', 'create', c).throughputs.at(-1) ?? NaN;
        const au = phase('service', 'update', c).throughputs.at(-1) ?? NaN;
        const bu = phase('bare', 'update', c).throughputs.at(-1) ?? NaN;
        console.log(
          `  round ${round} c=${String(c).padStart(2)}: creates ${fmt(a)} vs ${fmt(b)} ops/s (${fmt(a / b, 2)}x),` +
            ` updates ${fmt(au)} vs ${fmt(bu)} ops/s (${fmt(au / bu, 2)}x)`,
        );
      }
    }

    console.log('');
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    for (const op of ['create', 'update'] as const) {
      console.log(
        `  ${op === 'create' ? 'Creates' : 'Password updates'} (service vs bare; pooled over ${rounds} rounds)`,
      );
      for (const c of CONCURRENCY) {
        const s = phase('service', op, c);
        const b = phase('bare', op, c);
        const sl = sortNumbers(s.latencies);
        const bl = sortNumbers(b.latencies);
        const tS = mean(s.throughputs);
        const tB = mean(b.throughputs);
        const perRound = s.throughputs.map((x, i) => x / (b.throughputs[i] ?? NaN));
        console.log(
          `    c=${String(c).padStart(2)}  throughput ${fmt(tS)} vs ${fmt(tB)} ops/s = ${fmt(tS / tB, 2)}x` +
            ` (rounds ${fmt(Math.min(...perRound), 2)}–${fmt(Math.max(...perRound), 2)}x)` +
            ` · p50 ${fmt(percentile(sl, 50))} vs ${fmt(percentile(bl, 50))} ms = ${fmt(percentile(sl, 50) / percentile(bl, 50), 2)}x` +
            ` · p99 ${fmt(percentile(sl, 99))} vs ${fmt(percentile(bl, 99))} ms = ${fmt(percentile(sl, 99) / percentile(bl, 99), 2)}x`,
        );
        const bs = (r: PhaseResult, f: keyof Breakdown) => fmt(mean(r.breakdown.map((x) => x[f])));
        console.log(
          `           CPU ms per op (until settled): worker ${fmt(mean(s.workerCpu))} vs ${fmt(mean(b.workerCpu))},` +
            ` Key Vault emulator + PostgreSQL + OpenLDAP ${fmt(mean(s.depsCpu))} vs ${fmt(mean(b.depsCpu))}`,
        );
        console.log(
          `           per op: history events ${fmt(mean(s.historyEvents))} vs ${fmt(mean(b.historyEvents))},` +
            ` activities ${fmt(mean(s.activities))} vs ${fmt(mean(b.activities))}` +
            ` (${fmt(mean(s.activitiesBeforeAnswer))} before the answer),` +
            ` Key Vault calls ${fmt(mean(s.vaultCalls), 2)} (unwrap ${fmt(mean(s.vaultUnwraps), 2)}, wrap ${fmt(mean(s.vaultWraps), 2)})`,
        );
        console.log(
          `           mean ms, service vs bare: client→answer ${fmt(mean(s.latencies))} vs ${fmt(mean(b.latencies))},` +
            ` server span ${bs(s, 'span')} vs ${bs(b, 'span')}, workflow tasks ${bs(s, 'workflowTasks')} vs ${bs(b, 'workflowTasks')},` +
            ` activity dispatch ${bs(s, 'activityWait')} vs ${bs(b, 'activityWait')}, activity run ${bs(s, 'activityRun')} vs ${bs(b, 'activityRun')}`,
        );
      }
    }
    console.log('');
  } finally {
    await bare.stop();
    await service.stop();
    await stack.close();
  }
}
