import { randomBytes } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wrapWithPublicKey } from '../activities/kek/provider';
import type { rotationWorkflow } from '../workflows/rotation';
import { azureEmulatorKek, startEmulatorProcess, type EmulatorProcess } from './support/emulator-process';
import { openStoredCredential } from './support/credentials';
import { orphanCounts, percentile, runCallers } from './support/faults';
import { createHarness, startDevServer, type Harness } from './support/harness';

/**
 * Key Vault answers a large share of requests with 429 (Retry-After: 1) or 503, during creates and
 * during a rotation: everything takes longer and nothing fails. The emulator runs in its own process
 * and picks the faulted requests with a seeded generator, so a run is repeatable.
 */
const DAY = 24 * 60 * 60 * 1000;
const SHARE = 0.4;
const FAULTS = [{ status: 429 as const, retryAfterSeconds: 1 }, { status: 503 as const }];
const CREATES = 24;
const CALLERS = 6;
const SEEDED_KEYS = 120;
const spec = {
  displayName: 'Contoso HQ',
  adDomainName: 'corp.contoso.test',
  organizationalUnit: 'OU=CloudPCs,DC=corp,DC=contoso,DC=test',
  adDomainUsername: 'svcDomainJoin@corp.contoso.test',
};
const actor = 'faults@contoso.test';

describe('Key Vault throttling and unavailability (dev server, Key Vault emulator process)', () => {
  let env: TestWorkflowEnvironment;
  let kv: EmulatorProcess;
  let h: Harness;
  const run = randomBytes(3).toString('hex');

  beforeAll(async () => {
    kv = await startEmulatorProcess();
    const kek = azureEmulatorKek(kv, { hsmOpsPerSecond: 1000 });
    // The first KEK version has two months left, so the rotation below renews it and re-wraps every key.
    await kek.createVersion(new Date(Date.now() + 60 * DAY));
    env = await startDevServer();
    h = await createHarness({ env, kek, healthCheckIntervalMinutes: 7 * 24 * 60 });
    await h.startWorker();
  });
  afterAll(async () => {
    await h?.close();
    await env?.teardown();
    await kv?.stop();
  });

  /** `CREATES` creates from `CALLERS` concurrent callers; every call must succeed the first time. */
  async function createBurst(label: string) {
    const started = Date.now();
    const latencies: number[] = [];
    const failures: string[] = [];
    await runCallers(
      Array.from({ length: CREATES }, (_, i) => async () => {
        const t0 = Date.now();
        try {
          await h.sdk.createAnc({
            tenantId: `${label}-${run}-t${i % 4}`,
            ancId: `anc-${i}`,
            ...spec,
            password: `${label}#Pass${i}`,
            actor,
          });
          latencies.push(Date.now() - t0);
        } catch (err) {
          failures.push(String(err));
        }
      }),
      CALLERS,
    );
    return { wallMs: Date.now() - started, p50: percentile(latencies, 50), p99: percentile(latencies, 99), failures };
  }

  it('creates: a share of vault requests fails with 429/503, every create still succeeds, only slower', async () => {
    const calm = await createBurst('calm');
    expect(calm.failures).toEqual([]);

    await kv.reset();
    await kv.faultShare(SHARE, FAULTS, 20261206);
    const stormy = await createBurst('storm');
    const stats = await kv.stats();
    await kv.faultShare(0, []);
    expect(stormy.failures).toEqual([]);
    const vaultRequests = Object.values(stats.operations).reduce((a, b) => a + (b ?? 0), 0);
    expect(stats.faultsInjected).toBeGreaterThan(10);
    expect(stats.faultsInjected / vaultRequests).toBeGreaterThan(SHARE - 0.15);
    console.info(
      `[keyvault faults] creates ${CREATES} x2, ${CALLERS} callers: no faults ${calm.wallMs} ms (p50 ${calm.p50}, p99 ${calm.p99});` +
        ` ${stats.faultsInjected}/${vaultRequests} vault requests faulted: ${stormy.wallMs} ms (p50 ${stormy.p50}, p99 ${stormy.p99}); failures 0`,
    );

    // Every ANC holds the password it was given, once.
    for (const i of [0, 7, CREATES - 1]) {
      expect(await openStoredCredential(h, `storm-${run}-t${i % 4}`, `anc-${i}`, 1)).toBe(`storm#Pass${i}`);
    }
    const { rows } = await h.db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM anc_credentials WHERE tenant_id LIKE $1`,
      [`storm-${run}-%`],
    );
    expect(rows[0]?.n).toBe(CREATES);
    expect(Object.values(await orphanCounts(h.db.pool)).every((n) => n === 0)).toBe(true);
  }, 300_000);

  it('rotation: KEK renewed and every tenant key re-wrapped while a share of vault requests fails, no failure reported', async () => {
    const old = await h.deps.kek.current();
    // More tenants, with keys wrapped by the version about to be renewed.
    const ids = Array.from({ length: SEEDED_KEYS }, (_, i) => `seed-${run}-${String(i).padStart(4, '0')}`);
    await h.db.pool.query('INSERT INTO tenants (tenant_id) SELECT unnest($1::text[])', [ids]);
    await h.db.pool.query(
      `INSERT INTO tenant_keys (tenant_id, version, state, wrapped_key, kek_id, kek_version, created_at, expires_at)
       SELECT t, 1, 'active', w, $3, $4, now(), now() + interval '365 days' FROM unnest($1::text[], $2::bytea[]) AS u(t, w)`,
      [ids, ids.map(() => wrapWithPublicKey(old.publicJwk, randomBytes(32))), old.kekId, old.version],
    );
    const { rows: before } = await h.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM tenant_keys');
    const keys = before[0]?.n ?? 0;

    await kv.reset();
    await kv.faultShare(SHARE, FAULTS, 7);
    const started = Date.now();
    const result = await env.client.workflow.execute<typeof rotationWorkflow>('rotationWorkflow', {
      taskQueue: h.taskQueue,
      workflowId: `rotation-faults-${run}`,
      args: [{ batchSize: 50, kekGraceSeconds: 0 }],
    });
    const wallMs = Date.now() - started;
    const stats = await kv.stats();
    await kv.faultShare(0, []);

    expect(result.phase).toBe('done');
    expect(result.failures).toEqual([]);
    expect(result.kek.renewed).toBe(true);
    expect(result.counts.rewrapped).toBe(keys);
    const { rows } = await h.db.pool.query<{ kek_version: string; n: number }>(
      'SELECT kek_version, count(*)::int AS n FROM tenant_keys GROUP BY 1',
    );
    expect(rows).toEqual([{ kek_version: result.kek.currentVersion, n: keys }]);
    expect(stats.faultsInjected).toBeGreaterThan(10);
    expect(await openStoredCredential(h, `storm-${run}-t1`, 'anc-5', 1)).toBe('storm#Pass5');
    console.info(
      `[keyvault faults] rotation: renewed + ${keys} keys re-wrapped in ${wallMs} ms with ${stats.faultsInjected} of ` +
        `${stats.totalRequests} vault requests faulted; unwraps at the vault ${stats.operations.unwrapkey}; failures 0`,
    );
  }, 300_000);
});
