/**
 * Rotation at scale: 10,000 tenants with 50,000 credentials, every tenant key wrapped by an older KEK
 * version and a share of them expired, rotated by the service worker (worker/main.ts, its own process)
 * through the rotation schedule, as an operator's `anc rotation run` would.
 *
 * Seeding: creating 50,000 ANCs through the API would take longer than the rotation itself on a
 * shared machine, so the rows are written straight into PostgreSQL in the shape provideCredential
 * writes them: a random 256-bit key per tenant wrapped locally (RSA-OAEP-256) with the old KEK
 * version's public key, each password sealed under it with the service's own sealCredential. No
 * Key Vault call is made while seeding, so the emulator's counts are the rotation's alone. ANC
 * workflows are not started (the rotation reads only the database).
 *
 * Baselines in the same run: the HSM budget the worker is given, and a bare loop of Key Vault unwraps
 * through the same provider, budget and concurrency, measured before and after the rotation.
 *
 *   npm run bench -- rotation   (BENCH_TENANTS=10000, BENCH_CREDENTIALS_PER_TENANT=5, BENCH_EXPIRED_SHARE=0.1)
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { AncClient } from '../../client/sdk';
import { azureEmulatorKek } from '../support/emulator-process';
import {
  BENCH_HSM_OPS_PER_SECOND,
  BENCH_KEY_SIZE,
  fmt,
  insertSeededAncs,
  machineLine,
  mib,
  runConcurrent,
  sealSeededCredentials,
  seededCredentials,
  sleep,
  startBenchStack,
  startServiceWorker,
  type BenchStack,
} from './support';

const DAY = 86_400_000;
const REWRAP_CONCURRENCY = 16; // the rotation workflow's default

async function seed(
  stack: BenchStack,
  wrap: (key: Buffer) => Promise<Buffer>,
  kek: { kekId: string; version: string },
  tenants: number,
  perTenant: number,
  expired: number,
): Promise<Buffer[]> {
  const pool = stack.db.pool;
  const now = Date.now();
  const wrappedKeys: Buffer[] = [];
  const batch = 500;
  for (let start = 0; start < tenants; start += batch) {
    const ids: string[] = [];
    const wrapped: Buffer[] = [];
    const created: Date[] = [];
    const expires: Date[] = [];
    const cred = seededCredentials();
    for (let t = start; t < Math.min(tenants, start + batch); t++) {
      const tenantId = `t${String(t).padStart(5, '0')}`;
      const key = randomBytes(32);
      const isExpired = t < expired;
      ids.push(tenantId);
      const w = await wrap(key);
      wrapped.push(w);
      wrappedKeys.push(w);
      created.push(new Date(now - (isExpired ? 400 : 30) * DAY));
      expires.push(new Date(now + (isExpired ? -35 : 335) * DAY));
      sealSeededCredentials(cred, tenantId, key, perTenant, t);
      key.fill(0);
    }
    await pool.query('INSERT INTO tenants (tenant_id) SELECT unnest($1::text[])', [ids]);
    await pool.query(
      `INSERT INTO tenant_keys (tenant_id, version, state, wrapped_key, kek_id, kek_version, created_at, expires_at)
       SELECT t, 1, 'active', w, $3, $4, c, e FROM unnest($1::text[], $2::bytea[], $5::timestamptz[], $6::timestamptz[]) AS x(t, w, c, e)`,
      [ids, wrapped, kek.kekId, kek.version, created, expires],
    );
    // The ANC row names its current credential version (a deferred foreign key): one transaction.
    const client = await pool.connect();
    await client.query('BEGIN');
    await insertSeededAncs(client, cred);
    await client.query('COMMIT');
    client.release();
  }
  await pool.query('ANALYZE');
  return wrappedKeys;
}

export async function rotation(): Promise<void> {
  const tenants = Number(process.env.BENCH_TENANTS ?? 10_000);
  const perTenant = Number(process.env.BENCH_CREDENTIALS_PER_TENANT ?? 5);
  const expired = Math.round(tenants * Number(process.env.BENCH_EXPIRED_SHARE ?? 0.1));
  console.log(
    `Rotation of ${tenants} tenant keys (${expired} expired) and ${tenants * perTenant} credentials, by the service worker`,
  );
  console.log(`  machine: ${machineLine()}`);
  console.log(
    `  Key Vault emulator, RSA-${BENCH_KEY_SIZE} KEK, HSM budget ${BENCH_HSM_OPS_PER_SECOND}/s, rotation defaults (batches of 100, concurrency ${REWRAP_CONCURRENCY})`,
  );
  const stack = await startBenchStack('rotation');
  try {
    // The same key the worker will use (its name comes from the environment), with a budget as large
    // as the worker's, for seeding (local wraps only) and the bare unwrap baseline.
    const provider = azureEmulatorKek(
      { url: stack.vault.url, caPem: stack.vault.caPem },
      { keyName: stack.keyName, hsmOpsPerSecond: BENCH_HSM_OPS_PER_SECOND },
    );
    const old = await provider.createVersion(new Date(Date.now() + 200 * DAY));
    let t0 = performance.now();
    const wrappedKeys = await seed(stack, (k) => provider.wrap(k, old), old, tenants, perTenant, expired);
    console.log(
      `  seeded in ${fmt((performance.now() - t0) / 1000)} s (straight into PostgreSQL, see the file's header)`,
    );
    // The current version: every tenant key is now wrapped by an older one.
    await provider.createVersion(new Date(Date.now() + 365 * DAY));

    const bareN = Math.min(2000, tenants);
    const bareUnwraps = async (): Promise<number> => {
      const run = await runConcurrent(bareN, REWRAP_CONCURRENCY, (i) =>
        provider.unwrap(wrappedKeys[i % wrappedKeys.length] as Buffer, old.version).then((k) => k.fill(0)),
      );
      return bareN / (run.wallMs / 1000);
    };
    const bareBefore = await bareUnwraps();

    const worker = await startServiceWorker(stack, `bench-rotation-${randomBytes(3).toString('hex')}`);
    try {
      await sleep(2000);
      const rssIdle = worker.rss();
      const cpuBefore = worker.cpuSeconds();
      await stack.vault.reset();
      const sdk = new AncClient({ client: stack.client, kekTrust: { unverified: true } });
      t0 = performance.now();
      const triggered = await sdk.triggerRotation();
      const phaseAt = new Map<string, number>();
      let rssPeak = rssIdle;
      let last;
      for (;;) {
        rssPeak = Math.max(rssPeak, worker.rss());
        last = await sdk.getRotationProgress(triggered.workflowId);
        const phase = last?.progress.phase ?? 'starting';
        if (!phaseAt.has(phase)) phaseAt.set(phase, performance.now());
        // A KEK version the rotation did not create itself counts as a renewal: the run then waits
        // out the grace period (10 minutes) before retiring the old version. The work is done by then.
        if (last && (last.status !== 'RUNNING' || phase === 'kek-grace')) break;
        await sleep(500);
      }
      const total = (performance.now() - t0) / 1000;
      const cpu = worker.cpuSeconds() - cpuBefore;
      const stats = await stack.vault.stats();
      const bareAfter = await bareUnwraps();
      const p = last?.progress;
      if (!p || (last?.status !== 'COMPLETED' && p.phase !== 'kek-grace'))
        throw new Error(`the rotation ended ${last?.status ?? 'unseen'}`);
      const at = (phase: string) => phaseAt.get(phase) ?? NaN;
      const replaceSeconds = (at('rewrapping') - at('replacing-tenant-keys')) / 1000;
      const rewrapEnd = Math.min(...['kek-grace', 'retiring-kek', 'done'].map(at).filter(Number.isFinite));
      const rewrapSeconds = (rewrapEnd - at('rewrapping')) / 1000;
      const bare = (bareBefore + bareAfter) / 2;
      const rewrapRate = p.counts.rewrapped / rewrapSeconds;
      const keysTouched = p.counts.rewrapped + p.counts.tenantKeysReplaced;
      console.log(
        `  rotation: ${fmt(total)} s in all; ${p.counts.tenantKeysReplaced} expired tenant keys replaced and` +
          ` ${p.counts.credentialsResealed} credentials re-sealed in ${fmt(replaceSeconds)} s,` +
          ` ${p.counts.rewrapped} tenant keys re-wrapped in ${fmt(rewrapSeconds)} s` +
          ` (failures ${p.counts.rewrapFailed + p.counts.replaceFailed}, continued-as-new ${p.continuedAsNew})`,
      );
      console.log(
        `  tenant keys re-wrapped per second: ${fmt(rewrapRate)} = ${fmt(rewrapRate / BENCH_HSM_OPS_PER_SECOND, 2)}x the HSM budget` +
          ` (${BENCH_HSM_OPS_PER_SECOND}/s), ${fmt(rewrapRate / bare, 2)}x a bare unwrap loop` +
          ` (${fmt(bareBefore)} before, ${fmt(bareAfter)} after the rotation)`,
      );
      console.log(
        `  credentials re-sealed per second (expired tenant keys): ${fmt(p.counts.credentialsResealed / replaceSeconds)};` +
          ` expired tenant keys replaced per second: ${fmt(p.counts.tenantKeysReplaced / replaceSeconds)}`,
      );
      console.log(
        `  Key Vault (counted at the emulator): ${stats.operations.unwrapkey} unwraps for ${keysTouched} tenant keys =` +
          ` ${fmt(stats.operations.unwrapkey / keysTouched, 3)} per key; remote wraps ${stats.operations.wrapkey};` +
          ` other requests ${stats.totalRequests - stats.operations.unwrapkey - stats.operations.wrapkey}` +
          ` (the workflow counted ${p.counts.hsmUnwraps} unwraps)`,
      );
      console.log(
        `  worker RSS: ${mib(rssIdle)} idle before, ${mib(rssPeak)} peak during the rotation` +
          ` (${fmt(rssPeak / rssIdle, 2)}x); worker CPU ${fmt(cpu)} s over ${fmt(total)} s\n`,
      );
    } finally {
      await worker.stop();
    }
  } finally {
    await stack.close();
  }
}
