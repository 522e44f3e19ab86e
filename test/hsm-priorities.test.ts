import { randomBytes } from 'node:crypto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wrapWithPublicKey } from '../activities/kek/provider';
import type { RotationProgress, RotationWorkflowArgs } from '../workflows/rotation-definitions';
import { ALL_SEARCH_ATTRIBUTES, createHarness, type Harness, type RunningWorker } from './support/harness';
import { quietTemporalCli } from './support/stack';

const DAY = 86_400_000;
/** A small budget: the HSM queue's rate for the whole test. */
const RATE = 4;

const spec = {
  displayName: 'Contoso HQ',
  adDomainName: 'corp.contoso.test',
  organizationalUnit: 'OU=CloudPCs,DC=corp,DC=contoso,DC=test',
  adDomainUsername: 'svcDomainJoin@corp.contoso.test',
};

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

/**
 * Priorities on the HSM task queue (dev server, which honours the rate and the priority keys):
 * creates keep their latency while a rotation and periodic health checks compete for a small
 * budget. Creates alone are the baseline, measured in the same run on the same worker settings.
 */
describe('HSM task queue priorities (dev server)', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  let worker: RunningWorker | undefined;

  beforeAll(async () => {
    // One partition for the HSM queue, so its rate is one bucket (as in a production namespace
    // configured for it); the dev server honours rate limits and priority keys.
    env = await TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'existing-path', path: quietTemporalCli() },
        ip: '127.0.0.1',
        ui: false,
        searchAttributes: ALL_SEARCH_ATTRIBUTES,
        extraArgs: [
          '--log-level',
          'error',
          '--dynamic-config-value',
          'matching.numTaskqueueReadPartitions=1',
          '--dynamic-config-value',
          'matching.numTaskqueueWritePartitions=1',
        ],
      },
    });
    h = await createHarness({ env, healthCheckIntervalMinutes: 1 });
  });
  afterAll(async () => {
    await worker?.stop();
    await h?.close();
    await env?.teardown();
  });

  async function timedCreates(prefix: string, n: number): Promise<number[]> {
    const took: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const view = await h.sdk.createAnc({
        tenantId: `${prefix}-${i}`,
        ancId: 'anc-1',
        ...spec,
        password: `Prio#Pass-${i}`,
        actor: 'test',
      });
      took.push(performance.now() - t0);
      expect(view.state).toBe('active');
    }
    return took;
  }

  it('creates keep their latency while a rotation backlog waits for the budget', { timeout: 300_000 }, async () => {
    // Creates alone at the small budget: the baseline.
    worker = await h.startWorker({ hsmOptions: { maxTaskQueueActivitiesPerSecond: RATE } });
    await timedCreates('warm', 1);
    const alone = await timedCreates('alone', 6);

    // The competition: 300 tenant keys for the rotation to re-wrap (32 at a time queued on the HSM
    // queue); the periodic checks of the ANCs created so far (every minute) also run at their slots.
    const old = await h.deps.kek.provider.createVersion(new Date(Date.now() + 200 * DAY));
    const ids = Array.from({ length: 300 }, (_, i) => `stale-${String(i).padStart(3, '0')}`);
    await h.db.pool.query('INSERT INTO tenants (tenant_id) SELECT unnest($1::text[])', [ids]);
    await h.db.pool.query(
      `INSERT INTO tenant_keys (tenant_id, version, state, wrapped_key, kek_id, kek_version, created_at, expires_at)
       SELECT t, 1, 'active', w, $3, $4, now(), now() + interval '300 days' FROM unnest($1::text[], $2::bytea[]) AS u(t, w)`,
      [ids, ids.map(() => wrapWithPublicKey(old.publicJwk, randomBytes(32))), old.kekId, old.version],
    );
    await h.deps.kek.provider.createVersion(new Date(Date.now() + 365 * DAY));
    h.deps.kek.invalidate();

    const rotationId = `rotation-${randomBytes(3).toString('hex')}`;
    const rotation = env.client.workflow.start('rotationWorkflow', {
      taskQueue: h.taskQueue,
      workflowId: rotationId,
      args: [{ batchSize: 100, concurrency: 32, kekGraceSeconds: 0 } satisfies RotationWorkflowArgs],
    });
    const checksBefore = await periodicChecks();
    await new Promise((r) => setTimeout(r, 3000)); // let the backlog build
    const loaded = await timedCreates('loaded', 6);
    const progress = (await (await rotation).query('getRotationProgress')) as RotationProgress;
    const { rows } = await h.db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM audit_log WHERE event = 'tenant_key.rewrapped'`,
    );
    const rewrapped = rows[0]?.n ?? 0;
    const checksDuring = (await periodicChecks()) - checksBefore;
    await (await rotation).terminate('test over');

    const ratio = median(loaded) / median(alone);
    console.log(
      `priorities: create p50 alone ${median(alone).toFixed(0)} ms, under load ${median(loaded).toFixed(0)} ms ` +
        `(ratio ${ratio.toFixed(2)}); meanwhile the rotation re-wrapped ${rewrapped} of 300 keys ` +
        `and ${checksDuring} periodic checks ran (HSM queue rate ${RATE}/s)`,
    );
    // The competition was real: the rotation was far from done when the creates had finished.
    expect(progress.phase).toBe('rewrapping');
    expect(rewrapped).toBeGreaterThan(0);
    expect(rewrapped).toBeLessThan(100);
    // And the creates went first.
    expect(ratio).toBeLessThan(2);
  });

  async function periodicChecks(): Promise<number> {
    const { rows } = await h.db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM audit_log WHERE event = 'anc.health_checked' AND actor = 'system:periodic'`,
    );
    return rows[0]?.n ?? 0;
  }
});
