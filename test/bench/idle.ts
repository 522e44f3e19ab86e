/**
 * Deactivated tenants waiting in their retention window cost the worker nothing while they wait:
 * worker RSS and CPU over an idle window with 10,000 deactivated tenants, against an idle worker with
 * none, both measured over the same window (so background load on a shared machine hits both).
 *
 * The tenants are rows written straight into PostgreSQL (no ANCs: creating them through the API would
 * take longer than the measurement), then deactivated through the SDK, which starts each tenant's
 * workflow and its durable timer. Two windows:
 *   1. right after, with the worker that deactivated them (their workflows in its cache);
 *   2. with a freshly started worker (nothing cached; the tenants wait on the server's timers).
 * Each window compares against a fresh worker process on a task queue with no workflows.
 *
 *   npm run bench -- idle      (BENCH_IDLE_TENANTS=10000, BENCH_IDLE_SECONDS=120)
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { AncClient } from '../../client/sdk';
import {
  fmt,
  machineLine,
  mib,
  runConcurrent,
  sleep,
  startBenchStack,
  startServiceWorker,
  type BenchStack,
  type ChildWorker,
} from './support';

interface Sample {
  rssStart: number;
  rssEnd: number;
  rssMax: number;
  cpuSeconds: number;
}

/** Samples both workers every second for `seconds`. */
async function watch(workers: ChildWorker[], seconds: number): Promise<Sample[]> {
  const samples = workers.map((w) => ({ rssStart: w.rss(), rssEnd: 0, rssMax: 0, cpuSeconds: -w.cpuSeconds() }));
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    workers.forEach((w, i) => {
      const s = samples[i] as Sample;
      s.rssMax = Math.max(s.rssMax, w.rss());
    });
    await sleep(1000);
  }
  workers.forEach((w, i) => {
    const s = samples[i] as Sample;
    s.rssEnd = w.rss();
    s.rssMax = Math.max(s.rssMax, s.rssEnd);
    s.cpuSeconds += w.cpuSeconds();
  });
  return samples;
}

function report(label: string, seconds: number, withTenants: Sample, none: Sample): void {
  const line = (name: string, s: Sample) =>
    `      ${name.padEnd(30)} RSS ${mib(s.rssStart)} → ${mib(s.rssEnd)} (max ${mib(s.rssMax)},` +
    ` growth ${fmt((s.rssEnd - s.rssStart) / 2 ** 20)} MiB), CPU ${fmt(s.cpuSeconds, 2)} s = ${fmt((100 * s.cpuSeconds) / seconds, 2)}% of a core`;
  console.log(`    ${label}`);
  console.log(line('with the deactivated tenants', withTenants));
  console.log(line('idle worker with none', none));
  console.log(
    `      => RSS ${fmt(withTenants.rssEnd / none.rssEnd, 2)}x, CPU ${fmt(withTenants.cpuSeconds / Math.max(none.cpuSeconds, 0.01), 2)}x the worker with none`,
  );
}

async function seedTenants(stack: BenchStack, n: number): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => `idle${String(i).padStart(5, '0')}`);
  for (let i = 0; i < n; i += 5000) {
    await stack.db.pool.query('INSERT INTO tenants (tenant_id) SELECT unnest($1::text[])', [ids.slice(i, i + 5000)]);
  }
  return ids;
}

export async function idle(): Promise<void> {
  const n = Number(process.env.BENCH_IDLE_TENANTS ?? 10_000);
  const seconds = Number(process.env.BENCH_IDLE_SECONDS ?? 120);
  console.log(`${n} deactivated tenants waiting in their retention window: worker RSS and CPU over ${seconds} s idle`);
  console.log(`  machine: ${machineLine()}`);
  const stack = await startBenchStack('idle');
  const queue = `bench-idle-${randomBytes(3).toString('hex')}`;
  const emptyQueue = () => `bench-none-${randomBytes(3).toString('hex')}`;
  const workers: ChildWorker[] = [];
  const start = async (q: string) => {
    const w = await startServiceWorker(stack, q);
    workers.push(w);
    return w;
  };
  try {
    const ids = await seedTenants(stack, n);
    const first = await start(queue);
    const sdk = new AncClient({ client: stack.client, taskQueue: queue, kekTrust: { unverified: true } });
    const t0 = performance.now();
    const run = await runConcurrent(ids.length, 32, (i) =>
      sdk.deactivateTenant(ids[i] as string, { actor: 'bench', reason: 'idle benchmark' }),
    );
    console.log(
      `  ${n} tenants deactivated through the SDK in ${fmt((performance.now() - t0) / 1000)} s` +
        ` (${fmt(n / (run.wallMs / 1000))}/s at concurrency 32)`,
    );

    let none = await start(emptyQueue());
    await sleep(10_000);
    const [warm, noneA] = await watch([first, none], seconds);
    report('1. the worker that deactivated them (their workflows cached)', seconds, warm as Sample, noneA as Sample);

    await first.stop();
    await none.stop();
    const fresh = await start(queue);
    none = await start(emptyQueue());
    await sleep(10_000);
    const [cold, noneB] = await watch([fresh, none], seconds);
    report(
      '2. a freshly started worker (nothing cached, timers on the server)',
      seconds,
      cold as Sample,
      noneB as Sample,
    );
    console.log('');
  } finally {
    for (const w of workers) await w.stop();
    await stack.close();
  }
}
