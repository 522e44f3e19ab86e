import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStoredCredential } from '../support/credentials';
import { orphanCounts, percentile, runCallers, sleep } from '../support/faults';
import { createHarness, startDevServer, type Harness } from '../support/harness';
import { startPgCluster, type PgCluster } from '../support/pg-cluster';

/**
 * PostgreSQL stopped for 30 s in the middle of a burst of creates and updates (a cluster of this
 * file's own, stopped and started with pg_ctl). Callers make one call each and simply wait: every
 * call succeeds once the database is back, and no row is left half-written.
 */
const OUTAGE_MS = 30_000;
const CREATES = 24;
const UPDATES = 12;
const CALLERS = 8;
const spec = {
  displayName: 'Contoso HQ',
  adDomainName: 'corp.contoso.test',
  organizationalUnit: 'OU=CloudPCs,DC=corp,DC=contoso,DC=test',
  adDomainUsername: 'svcDomainJoin@corp.contoso.test',
};
const actor = 'faults@contoso.test';

describe('PostgreSQL stopped for 30 s during a burst (dev server, own PostgreSQL cluster, local KEK)', () => {
  let env: TestWorkflowEnvironment;
  let pg: PgCluster;
  let h: Harness;

  beforeAll(async () => {
    pg = await startPgCluster();
    env = await startDevServer();
    h = await createHarness({ env, db: pg.db, healthCheckIntervalMinutes: 7 * 24 * 60 });
    await h.startWorker();
  });
  afterAll(async () => {
    await h?.close();
    await env?.teardown();
    await pg?.destroy();
  });

  it('callers wait and succeed; no partial rows', async () => {
    // ANCs to update during the outage, created beforehand.
    for (let i = 0; i < UPDATES; i++) {
      await h.sdk.createAnc({ tenantId: `pre-t${i % 3}`, ancId: `anc-${i}`, ...spec, password: `Pre#${i}v1`, actor });
    }
    const latencies: number[] = [];
    const failures: string[] = [];
    let doneDuringOutage = 0;
    let outage = false;
    const jobs = [
      ...Array.from(
        { length: CREATES },
        (_, i) => () =>
          h.sdk.createAnc({ tenantId: `burst-t${i % 4}`, ancId: `anc-${i}`, ...spec, password: `Burst#${i}`, actor }),
      ),
      ...Array.from(
        { length: UPDATES },
        (_, i) => () => h.sdk.updateAncPassword(`pre-t${i % 3}`, `anc-${i}`, `Pre#${i}v2`, { actor }),
      ),
    ]
      .sort(() => Math.random() - 0.5)
      .map((job) => async () => {
        // Spread the burst over the first seconds, so some calls start before and some during the outage.
        await sleep(Math.random() * 3000);
        const t0 = Date.now();
        try {
          await job();
          latencies.push(Date.now() - t0);
          if (outage) doneDuringOutage++;
        } catch (err) {
          failures.push(String(err));
        }
      });

    const burst = runCallers(jobs, CALLERS);
    await sleep(1000);
    const stoppedAt = Date.now();
    await pg.stop();
    outage = true;
    await sleep(OUTAGE_MS);
    outage = false;
    await pg.start();
    const downMs = Date.now() - stoppedAt;
    const restartedAt = Date.now();
    await burst;
    const drainMs = Date.now() - restartedAt;

    expect(failures).toEqual([]);
    expect(latencies).toHaveLength(CREATES + UPDATES);
    expect(Math.max(...latencies)).toBeGreaterThan(OUTAGE_MS / 2); // some calls did wait for the database
    for (const i of [0, 5, CREATES - 1]) {
      expect(await openStoredCredential(h, `burst-t${i % 4}`, `anc-${i}`, 1)).toBe(`Burst#${i}`);
    }
    for (const i of [0, UPDATES - 1]) {
      expect(await openStoredCredential(h, `pre-t${i % 3}`, `anc-${i}`, 2)).toBe(`Pre#${i}v2`);
    }
    const { rows } = await h.db.pool.query<{ prefix: string; ancs: number; versions: number }>(
      `SELECT split_part(tenant_id, '-', 1) AS prefix, count(DISTINCT tenant_id || '/' || anc_id)::int AS ancs,
              count(*)::int AS versions
         FROM anc_credentials GROUP BY 1 ORDER BY 1`,
    );
    expect(rows).toEqual([
      { prefix: 'burst', ancs: CREATES, versions: CREATES },
      { prefix: 'pre', ancs: UPDATES, versions: 2 * UPDATES },
    ]);
    const { rows: envelopes } = await h.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM used_envelopes');
    expect(envelopes[0]?.n).toBe(CREATES + 2 * UPDATES);
    const orphans = await orphanCounts(h.db.pool);
    expect(orphans).toEqual(Object.fromEntries(Object.keys(orphans).map((k) => [k, 0])));
    console.info(
      `[postgres outage] ${CREATES} creates + ${UPDATES} updates from ${CALLERS} callers; database down ${downMs} ms; ` +
        `${doneDuringOutage} finished while it was down; all done ${drainMs} ms after it came back; ` +
        `latency p50 ${percentile(latencies, 50)} ms, max ${Math.max(...latencies)} ms; failures 0`,
    );
  });
});
