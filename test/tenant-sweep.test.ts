import proto from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDuration } from '../worker/config';
import { loadConfig } from '../worker/config';
import { tenantWorkflowId, TENANT_SWEEP_SCHEDULE_ID } from '../common/ids';
import { ensureTenantSweepSchedule } from '../worker/singletons';
import { createHarness, startDevServer, type Harness } from './support/harness';

/**
 * An operator terminates or resets a deactivated tenant's workflow in the middle of its retention
 * window. Real time on the dev server, with a 20-second window and the sweep schedule every 2 s.
 */
const RETENTION_MS = 20_000;
const SWEEP_MS = 2_000;
const spec = {
  displayName: 'Contoso HQ',
  adDomainName: 'corp.contoso.test',
  organizationalUnit: 'OU=CloudPCs,DC=corp,DC=contoso,DC=test',
  adDomainUsername: 'svcDomainJoin@corp.contoso.test',
};
const actor = 'ops@contoso.test';
let seq = 0;
const uniqueId = (p: string) => `${p}-${Date.now().toString(36)}-${(seq++).toString(36)}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const { EventType } = proto.temporal.api.enums.v1;

describe('TENANT_RETENTION as a duration', () => {
  it('parses days, hours, minutes and seconds, and refuses what it cannot read', () => {
    expect(parseDuration('29d')).toBe(29 * 86_400_000);
    expect(parseDuration('12h')).toBe(12 * 3_600_000);
    expect(parseDuration('90m')).toBe(90 * 60_000);
    expect(parseDuration('20s')).toBe(20_000);
    for (const bad of ['', '29', '1.5d', '-3d', '3w', 'd']) expect(parseDuration(bad)).toBeUndefined();
    const base = { DATABASE_URL: 'postgres://x@127.0.0.1/x', LOCAL_KEK_DIR: '/tmp/none' };
    expect(loadConfig(base).tenantRetentionMs).toBe(29 * 86_400_000);
    expect(loadConfig({ ...base, TENANT_RETENTION: '20s' }).tenantRetentionMs).toBe(20_000);
    expect(loadConfig({ ...base, TENANT_RETENTION_DAYS: '7' }).tenantRetentionMs).toBe(7 * 86_400_000);
    expect(loadConfig(base).tenantSweepIntervalMs).toBe(3_600_000);
    expect(() => loadConfig({ ...base, TENANT_RETENTION: '3 weeks' })).toThrow(/TENANT_RETENTION must be a duration/);
    expect(() =>
      loadConfig({
        ...base,
        TENANT_RETENTION: '1h',
        NODE_ENV: 'production',
        AUDIT_MAC_KEY: Buffer.alloc(32).toString('base64'),
      }),
    ).toThrow(/at least 1d in production/);
    expect(() => loadConfig({ ...base, TENANT_RETENTION: '2d', TENANT_RETENTION_DAYS: '2' })).toThrow(/not both/);
  });
});

describe('sweep of deactivated tenants whose workflow an operator terminated or reset (dev server)', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;

  beforeAll(async () => {
    env = await startDevServer();
    h = await createHarness({ env, config: { tenantRetentionMs: RETENTION_MS } });
    await h.startWorker();
  });
  afterAll(async () => {
    await h?.close();
    await env?.teardown();
  });

  const row = async (tenantId: string) => {
    const { rows } = await h.db.pool.query<{ state: string; purge_at: Date | null; purged_at: Date | null }>(
      'SELECT state, purge_at, purged_at FROM tenants WHERE tenant_id = $1',
      [tenantId],
    );
    const { rows: n } = await h.db.pool.query<{ ancs: number; creds: number; keys: number }>(
      `SELECT (SELECT count(*) FROM ancs WHERE tenant_id = $1)::int AS ancs,
              (SELECT count(*) FROM anc_credentials WHERE tenant_id = $1)::int AS creds,
              (SELECT count(*) FROM tenant_keys WHERE tenant_id = $1)::int AS keys`,
      [tenantId],
    );
    return { ...rows[0], ...n[0] };
  };

  it('terminated and reset workflows: the purge happens on the stored date, never before; a reactivation still restores', async () => {
    const terminated = uniqueId('term');
    const reset = uniqueId('reset');
    const reactivated = uniqueId('react');
    for (const tenantId of [terminated, reset, reactivated]) {
      await h.sdk.createAnc({ tenantId, ancId: 'anc-1', ...spec, password: 'Sweep#Pass1', actor });
    }
    const views = await Promise.all(
      [terminated, reset, reactivated].map((t) => h.sdk.deactivateTenant(t, { actor, reason: 'test' })),
    );
    for (const v of views) {
      expect(Date.parse(v.purgeAt ?? '') - Date.parse(v.deactivatedAt ?? '')).toBe(RETENTION_MS);
    }
    const purgeAt = new Map(views.map((v) => [v.tenantId, Date.parse(v.purgeAt ?? '')]));

    // From the Web UI: terminate two, reset the third to its first workflow task.
    const client = env.client;
    await client.workflow.getHandle(tenantWorkflowId(terminated)).terminate('operator: stuck?');
    await client.workflow.getHandle(tenantWorkflowId(reactivated)).terminate('operator: stuck?');
    const resetHandle = client.workflow.getHandle(tenantWorkflowId(reset));
    const history = await resetHandle.fetchHistory();
    const firstTask = history.events?.find((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED);
    const described = await resetHandle.describe();
    await client.workflowService.resetWorkflowExecution({
      namespace: env.namespace ?? 'default',
      workflowExecution: { workflowId: tenantWorkflowId(reset), runId: described.runId },
      reason: 'operator reset',
      workflowTaskFinishEventId: firstTask?.eventId,
      requestId: uniqueId('req'),
    });
    expect((await client.workflow.getHandle(tenantWorkflowId(terminated)).describe()).status.name).toBe('TERMINATED');

    // The sweep, on its schedule, gives the terminated ones their workflow back.
    await ensureTenantSweepSchedule(client, h.taskQueue, SWEEP_MS);
    const deadline = Date.now() + 15_000;
    for (;;) {
      const statuses = await Promise.all(
        [terminated, reactivated].map(
          async (t) => (await client.workflow.getHandle(tenantWorkflowId(t)).describe()).status.name,
        ),
      );
      if (statuses.every((s) => s === 'RUNNING')) break;
      if (Date.now() > deadline)
        throw new Error(`the sweep did not restart the tenant workflows: ${statuses.join(', ')}`);
      await sleep(250);
    }
    const t = await h.sdk.getTenant(terminated);
    expect(t).toMatchObject({ state: 'deactivated', purgeAt: new Date(purgeAt.get(terminated) ?? 0).toISOString() });

    // Reactivation before the date restores the tenant through the restarted workflow.
    const back = await h.sdk.reactivateTenant(reactivated, { actor });
    expect(back.state).toBe('active');
    expect((await h.sdk.getAnc(reactivated, 'anc-1')).state).toBe('active');

    // Nothing is purged early: just before the stored date everything is still there.
    const latest = Math.max(purgeAt.get(terminated) ?? 0, purgeAt.get(reset) ?? 0);
    const earliest = Math.min(purgeAt.get(terminated) ?? 0, purgeAt.get(reset) ?? 0);
    await sleep(Math.max(0, earliest - Date.now() - 1500));
    for (const tenantId of [terminated, reset]) {
      expect(await row(tenantId)).toMatchObject({ state: 'deactivated', ancs: 1, creds: 1, keys: 1 });
    }

    // On time: purged within a few seconds of the stored date.
    await sleep(Math.max(0, latest - Date.now()));
    const purgedBy = Date.now() + 15_000;
    const lateness: string[] = [];
    for (const tenantId of [terminated, reset]) {
      for (;;) {
        const r = await row(tenantId);
        if (r.state === 'purged') {
          expect(r).toMatchObject({ ancs: 0, creds: 0, keys: 0 });
          const late = (r.purged_at?.getTime() ?? 0) - (purgeAt.get(tenantId) ?? 0);
          expect(late).toBeGreaterThanOrEqual(0);
          expect(late).toBeLessThan(5_000);
          lateness.push(`${late} ms`);
          break;
        }
        if (Date.now() > purgedBy) throw new Error(`${tenantId} was not purged on time (${r.state})`);
        await sleep(250);
      }
    }
    expect(await row(reactivated)).toMatchObject({ state: 'active', ancs: 1, creds: 1, keys: 1 });
    const sweeps = await client.schedule.getHandle(TENANT_SWEEP_SCHEDULE_ID).describe();
    expect(sweeps.info.numActionsTaken).toBeGreaterThan(0);
    await client.schedule.getHandle(TENANT_SWEEP_SCHEDULE_ID).delete();
    console.info(
      `[tenant sweep] ${RETENTION_MS / 1000} s window, sweep every ${SWEEP_MS / 1000} s, ${sweeps.info.numActionsTaken} sweeps: ` +
        `terminated and reset tenants purged ${lateness.join(' and ')} after their date, none early; reactivation after a restart restored`,
    );
  }, 180_000);
});
