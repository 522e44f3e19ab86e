import { Client, WorkflowIdConflictPolicy } from '@temporalio/client';
import proto from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../activities/db/audit';
import { describeCurrentKek } from '../activities/keyring';
import { purgeTenantAncs, type PurgeBatchInput } from '../activities/tenant';
import { AncClient, AncServiceError } from '../client/sdk';
import { ancWorkflowId, tenantWorkflowId } from '../common/ids';
import { PurgeAtKey, SEARCH_ATTRIBUTES, TenantIdKey, TenantStateKey } from '../common/search-attributes';
import type { PublicKek } from '../common/types';
import { getAncQuery } from '../workflows/definitions';
import { openStoredCredential } from './support/credentials';
import type { tenantWorkflow } from '../workflows/tenant';
import {
  deactivateTenantSignal,
  reactivateTenantSignal,
  type TenantLifecycleRequest,
} from '../workflows/tenant-definitions';
import {
  createHarness,
  startDevServer,
  startTimeSkippingServer,
  type Harness,
  type RunningWorker,
} from './support/harness';

// Workers here keep no workflow cache, so every workflow task replays its history (as a new
// worker's would), and no task or query is ever routed to the sticky queue of a stopped worker: the
// time-skipping test server does not reroute queries away from one.
const NO_CACHE = { options: { maxCachedWorkflows: 0 } };
const DAY = 24 * 60 * 60 * 1000;
const HOUR = 60 * 60 * 1000;
const RETENTION_MS = 29 * DAY;
const spec = {
  displayName: 'Contoso HQ',
  adDomainName: 'corp.contoso.test',
  organizationalUnit: 'OU=CloudPCs,DC=corp,DC=contoso,DC=test',
  adDomainUsername: 'svcDomainJoin@corp.contoso.test',
};
const admin = 'admin@contoso.test';
const billing = 'svc:billing';
let seq = 0;
const uniqueId = (p: string) => `${p}-${Date.now().toString(36)}-${(seq++).toString(36)}`;

/**
 * A plain client on the test server's connection. The environment's own client fast-forwards time
 * whenever it awaits a result, as far as the next timers go (ANC health checks, purge deadlines):
 * these tests move time only with `env.sleep`.
 */
function plainClient(env: TestWorkflowEnvironment): Client {
  return new Client({ connection: env.connection, namespace: env.namespace ?? 'default' });
}

/**
 * The SDK, reading the KEK public key straight from the activity instead of the keyring singleton:
 * the singleton refreshes hourly, which would cost ~700 workflow round trips per simulated month.
 */
function testClient(client: Client, h: Harness): AncClient {
  return new (class extends AncClient {
    override async publicKek(): Promise<PublicKek> {
      return describeCurrentKek(h.deps);
    }
  })({ client, taskQueue: h.taskQueue, healthCheckIntervalMinutes: 100 * 24 * 60 });
}

async function harnessFor(env: TestWorkflowEnvironment): Promise<Harness> {
  return createHarness({
    env,
    startSingletons: false,
    // Client envelopes carry the client's wall-clock time while the service judges them by
    // workflow time, which this file moves by months: widen the freshness window accordingly.
    config: { envelopeMaxAgeSeconds: 400 * 24 * 3600, tenantRetentionMs: RETENTION_MS },
  });
}

/**
 * The time-skipping server rejects a workflow task that upserts a search attribute it does not
 * know (the workflow then stalls), and it does not implement ListSearchAttributes, so the worker's
 * ensureSearchAttributes cannot be used: add them directly.
 */
async function registerSearchAttributes(env: TestWorkflowEnvironment): Promise<void> {
  const T = proto.temporal.api.enums.v1.IndexedValueType;
  await env.connection.operatorService.addSearchAttributes({
    namespace: env.namespace ?? 'default',
    searchAttributes: Object.fromEntries(
      Object.entries(SEARCH_ATTRIBUTES).map(([name, type]) => [
        name,
        type === 'Datetime' ? T.INDEXED_VALUE_TYPE_DATETIME : T.INDEXED_VALUE_TYPE_KEYWORD,
      ]),
    ),
  });
}

async function expectServiceError(p: Promise<unknown>, type: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${type}`).toBeInstanceOf(AncServiceError);
  expect((err as AncServiceError).type).toBe(type);
}

async function eventually<T>(fn: () => Promise<T>, check: (v: T) => boolean, what: string, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (check(v)) return v;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v)?.slice(0, 300)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The result of a workflow that has closed or is about to (waits without moving time). */
async function closedResult<T>(handle: {
  describe(): Promise<{ status: { name: string } }>;
  result(): Promise<T>;
}): Promise<T> {
  await eventually(
    () => handle.describe(),
    (d) => d.status.name !== 'RUNNING',
    'the workflow to close',
    // Generous: on a loaded machine a retried purge batch and the ANC workflows closing take a while.
    90_000,
  );
  return handle.result();
}

/** Row counts for the tenant in every table with a tenant_id column, except the tombstone and audit. */
async function tenantRowCounts(h: Harness, tenantId: string): Promise<Record<string, number>> {
  const { rows: tables } = await h.db.pool.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.columns
      WHERE table_schema = 'public' AND column_name = 'tenant_id' AND table_name NOT IN ('tenants', 'audit_log')
      ORDER BY table_name`,
  );
  const counts: Record<string, number> = {};
  for (const { table_name } of tables) {
    const { rows } = await h.db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "${table_name}" WHERE tenant_id = $1`,
      [tenantId],
    );
    counts[table_name] = rows[0]?.n ?? 0;
  }
  return counts;
}

/** The sealed material as stored: must be byte-for-byte the same after a reactivation. */
async function sealedSnapshot(h: Harness, tenantId: string) {
  const creds = await h.db.pool.query(
    `SELECT anc_id, version, tenant_key_version, encode(sealed, 'hex') AS sealed, operation_id
       FROM anc_credentials WHERE tenant_id = $1 ORDER BY anc_id, version`,
    [tenantId],
  );
  const keys = await h.db.pool.query(
    `SELECT version, state, encode(wrapped_key, 'hex') AS wrapped, kek_version, expires_at
       FROM tenant_keys WHERE tenant_id = $1 ORDER BY version`,
    [tenantId],
  );
  const ancs = await h.db.pool.query(
    `SELECT anc_id, display_name, ad_domain_name, organizational_unit, ad_username, credential_version, created_at, updated_at
       FROM ancs WHERE tenant_id = $1 ORDER BY anc_id`,
    [tenantId],
  );
  return { creds: creds.rows, keys: keys.rows, ancs: ancs.rows };
}

async function tenantRow(h: Harness, tenantId: string) {
  const { rows } = await h.db.pool.query<{
    state: string;
    deactivated_at: Date | null;
    purge_at: Date | null;
    purged_at: Date | null;
  }>('SELECT state, deactivated_at, purge_at, purged_at FROM tenants WHERE tenant_id = $1', [tenantId]);
  return rows[0];
}

async function ancStates(h: Harness, tenantId: string): Promise<string[]> {
  const { rows } = await h.db.pool.query<{ state: string }>(
    'SELECT state FROM ancs WHERE tenant_id = $1 ORDER BY anc_id',
    [tenantId],
  );
  return rows.map((r) => r.state);
}

async function auditEvents(h: Harness, tenantId: string, event: string) {
  const { rows } = await h.db.pool.query<{ details: Record<string, unknown>; actor: string; at: Date }>(
    'SELECT details, actor, at FROM audit_log WHERE tenant_id = $1 AND event = $2 ORDER BY seq',
    [tenantId, event],
  );
  return rows;
}

describe('tenant deactivation, retention and purge (time-skipping server, PostgreSQL)', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  let sdk: AncClient;
  let client: Client;
  let worker: RunningWorker | undefined;

  const tenantHandle = (tenantId: string) =>
    client.workflow.getHandle<typeof tenantWorkflow>(tenantWorkflowId(tenantId));
  const ancWorkflowState = (tenantId: string, ancId: string) =>
    client.workflow
      .getHandle(ancWorkflowId(tenantId, ancId))
      .query(getAncQuery)
      .then((v) => v.state);
  const waitForAncStates = async (tenantId: string, ancIds: string[], state: string) => {
    for (const ancId of ancIds) {
      await eventually(
        () => ancWorkflowState(tenantId, ancId),
        (s) => s === state,
        `${ancId} to be ${state}`,
      );
    }
  };
  const searchAttributes = async (tenantId: string) => {
    const d = await tenantHandle(tenantId).describe();
    return {
      tenantId: d.typedSearchAttributes.get(TenantIdKey),
      state: d.typedSearchAttributes.get(TenantStateKey),
      purgeAt: d.typedSearchAttributes.get(PurgeAtKey)?.toISOString(),
    };
  };
  const seedAncs = async (tenantId: string, passwords: Record<string, string>) => {
    for (const [ancId, password] of Object.entries(passwords)) {
      const view = await sdk.createAnc({ tenantId, ancId, ...spec, password, actor: admin });
      expect(view).toMatchObject({ state: 'active', credentialVersion: 1 });
    }
  };

  beforeAll(async () => {
    env = await startTimeSkippingServer();
    await registerSearchAttributes(env);
    h = await harnessFor(env);
    client = plainClient(env);
    sdk = testClient(client, h);
    worker = await h.startWorker(NO_CACHE);
  });

  afterAll(async () => {
    await h?.close();
    await env?.teardown();
  });

  it('reactivation at 28 days 23 hours restores the tenant and its ANCs exactly, credentials untouched', async () => {
    const tenantId = uniqueId('react');
    await seedAncs(tenantId, { 'anc-1': 'Alpha#Pass1', 'anc-2': 'Beta#Pass1' });
    expect((await sdk.updateAncPassword(tenantId, 'anc-1', 'Alpha#Pass2', { actor: admin })).credentialVersion).toBe(2);
    const before = await sealedSnapshot(h, tenantId);
    expect(before.creds).toHaveLength(3);

    const deactivated = await sdk.deactivateTenant(tenantId, { actor: billing, reason: 'subscription ended' });
    expect(deactivated.state).toBe('deactivated');
    const deactivatedAt = Date.parse(deactivated.deactivatedAt ?? '');
    expect(Date.parse(deactivated.purgeAt ?? '') - deactivatedAt).toBe(RETENTION_MS);
    expect(deactivated.timeLeftMs).toBeGreaterThan(RETENTION_MS - HOUR);

    // One transaction marked the tenant and both ANCs; the ANC workflows were told.
    const row = await tenantRow(h, tenantId);
    expect(row).toMatchObject({ state: 'deactivated', purged_at: null });
    expect(row?.purge_at?.toISOString()).toBe(deactivated.purgeAt);
    expect(await ancStates(h, tenantId)).toEqual(['deactivated', 'deactivated']);
    await waitForAncStates(tenantId, ['anc-1', 'anc-2'], 'deactivated');
    expect(await searchAttributes(tenantId)).toEqual({
      tenantId,
      state: 'deactivated',
      purgeAt: deactivated.purgeAt,
    });

    await env.sleep(28 * DAY + 23 * HOUR);
    const late = await sdk.getTenant(tenantId);
    expect(late).toMatchObject({ state: 'deactivated', purgeAt: deactivated.purgeAt });
    expect(await tenantRowCounts(h, tenantId)).toMatchObject({ ancs: 2, anc_credentials: 3, tenant_keys: 1 });

    const reactivated = await sdk.reactivateTenant(tenantId, { actor: billing, reason: 'paid' });
    expect(reactivated).toMatchObject({ tenantId, state: 'active', cycles: 1 });
    expect(reactivated.purgeAt).toBeUndefined();
    expect(await tenantRow(h, tenantId)).toEqual({
      state: 'active',
      deactivated_at: null,
      purge_at: null,
      purged_at: null,
    });
    expect(await ancStates(h, tenantId)).toEqual(['active', 'active']);
    // Nothing re-sealed, no key replaced: the stored bytes are the ones from before.
    expect(await sealedSnapshot(h, tenantId)).toEqual(before);
    expect(await openStoredCredential(h, tenantId, 'anc-1', 1)).toBe('Alpha#Pass1');
    expect(await openStoredCredential(h, tenantId, 'anc-1', 2)).toBe('Alpha#Pass2');
    expect(await openStoredCredential(h, tenantId, 'anc-2', 1)).toBe('Beta#Pass1');
    await waitForAncStates(tenantId, ['anc-1', 'anc-2'], 'active');
    const sa = await eventually(
      () => searchAttributes(tenantId),
      (s) => s.state === 'active',
      'TenantState active',
    );
    expect(sa.purgeAt).toBeUndefined();

    // The old deadline passes without effect: the timer went with the reactivation.
    await env.sleep(2 * HOUR);
    expect(await sdk.getTenant(tenantId)).toMatchObject({ state: 'active' });
    expect(await tenantRowCounts(h, tenantId)).toMatchObject({ ancs: 2, anc_credentials: 3, tenant_keys: 1 });
    expect((await sdk.updateAncPassword(tenantId, 'anc-2', 'Beta#Pass2', { actor: admin })).credentialVersion).toBe(2);
    expect(await openStoredCredential(h, tenantId, 'anc-2', 2)).toBe('Beta#Pass2');

    const [deact] = await auditEvents(h, tenantId, 'tenant.deactivated');
    expect(deact).toMatchObject({
      actor: billing,
      details: { ancs: 2, retentionDays: 29, reason: 'subscription ended' },
    });
    expect(deact?.at.getTime()).toBe(deactivatedAt);
    expect(await auditEvents(h, tenantId, 'tenant.reactivated')).toHaveLength(1);
    expect(await verifyAuditChain(h.db.pool, h.deps.config.auditMacKey)).toMatchObject({ ok: true });
  });

  it('without a reactivation, just after 29 days every row of the tenant is gone and its ANC workflows closed', async () => {
    const tenantId = uniqueId('purge');
    await seedAncs(tenantId, { 'anc-1': 'Gamma#Pass1', 'anc-2': 'Delta#Pass1', 'anc-3': 'Eps#Pass1' });
    await sdk.updateAncPassword(tenantId, 'anc-3', 'Eps#Pass2', { actor: admin });
    // Operators and billing signal (signal-with-start); a getTenant shows when it has applied.
    await client.workflow.signalWithStart<typeof tenantWorkflow, [TenantLifecycleRequest]>('tenantWorkflow', {
      workflowId: tenantWorkflowId(tenantId),
      taskQueue: h.taskQueue,
      args: [{ tenantId }],
      signal: deactivateTenantSignal,
      signalArgs: [{ actor: 'ops@contoso.test' }],
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
    });
    const view = await eventually(
      () => sdk.getTenant(tenantId),
      (v) => v.state === 'deactivated',
      'deactivation',
    );
    const purgeAt = Date.parse(view.purgeAt ?? '');
    await waitForAncStates(tenantId, ['anc-1', 'anc-2', 'anc-3'], 'deactivated');
    const before = await tenantRowCounts(h, tenantId);
    expect(before).toMatchObject({ ancs: 3, anc_credentials: 4, tenant_keys: 1, used_envelopes: 4 });
    const { rows: hc } = await h.db.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM health_checks WHERE tenant_id = $1',
      [tenantId],
    );

    // A minute before the deadline nothing is gone.
    await env.sleep(RETENTION_MS - 60_000);
    expect(await tenantRowCounts(h, tenantId)).toEqual(before);
    expect((await tenantRow(h, tenantId))?.state).toBe('deactivated');

    await env.sleep(2 * 60_000);
    const handle = tenantHandle(tenantId);
    expect(await closedResult(handle)).toEqual({ finalState: 'purged' });
    const after = await tenantRowCounts(h, tenantId);
    expect(
      Object.values(after).every((n) => n === 0),
      JSON.stringify(after),
    ).toBe(true);
    // The tombstone, purged at workflow time (a month ahead of the activity's wall clock).
    const row = await tenantRow(h, tenantId);
    expect(row?.state).toBe('purged');
    expect(row?.purge_at?.getTime()).toBe(purgeAt);
    const purgedAt = row?.purged_at?.getTime() ?? 0;
    expect(purgedAt).toBeGreaterThanOrEqual(purgeAt);
    expect(purgedAt - purgeAt).toBeLessThan(HOUR);
    const audit = await auditEvents(h, tenantId, 'tenant.purged');
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({
      actor: 'system:retention',
      details: { ancs: 3, credentials: 4, usedEnvelopes: 4, tenantKeys: 1, healthChecks: hc[0]?.n },
    });
    // Every ANC workflow has ended.
    for (const ancId of ['anc-1', 'anc-2', 'anc-3']) {
      const anc = client.workflow.getHandle(ancWorkflowId(tenantId, ancId));
      expect(await closedResult(anc)).toEqual({ finalState: 'deleted' });
    }
    expect(await sdk.getTenant(tenantId)).toMatchObject({ state: 'purged', purgedAt: row?.purged_at?.toISOString() });
    // The ANCs are gone for the SDK too, and a new one cannot be provided for a purged tenant.
    await expectServiceError(sdk.getAnc(tenantId, 'anc-1'), 'AncNotFound');
    await expectServiceError(
      sdk.createAnc({ tenantId, ancId: 'anc-9', ...spec, password: 'New#Pass1', actor: admin }),
      'TenantPurged',
    );
    expect(await verifyAuditChain(h.db.pool, h.deps.config.auditMacKey)).toMatchObject({ ok: true });
  });

  it('a reactivation at 29 days and 1 second is refused with TenantPurged and restores nothing', async () => {
    const tenantId = uniqueId('late');
    await seedAncs(tenantId, { 'anc-1': 'Zeta#Pass1' });
    const deactivated = await sdk.deactivateTenant(tenantId, { actor: billing });
    const firstRun = tenantHandle(tenantId);
    const { runId } = await firstRun.describe();

    await env.sleep(RETENTION_MS + 1000);
    await expectServiceError(sdk.reactivateTenant(tenantId, { actor: billing }), 'TenantPurged');
    expect(await closedResult(client.workflow.getHandle(tenantWorkflowId(tenantId), runId))).toEqual({
      finalState: 'purged',
    });
    // Asked again, by update or by signal, after the run has ended: a new run reads the tombstone.
    await expectServiceError(sdk.reactivateTenant(tenantId, { actor: billing }), 'TenantPurged');
    await expectServiceError(sdk.deactivateTenant(tenantId, { actor: billing }), 'TenantPurged');
    const signalled = await client.workflow.signalWithStart<typeof tenantWorkflow, [TenantLifecycleRequest]>(
      'tenantWorkflow',
      {
        workflowId: tenantWorkflowId(tenantId),
        taskQueue: h.taskQueue,
        args: [{ tenantId }],
        signal: reactivateTenantSignal,
        signalArgs: [{ actor: 'ops@contoso.test' }],
        workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
      },
    );
    expect(await closedResult(signalled)).toEqual({ finalState: 'purged' });

    const row = await tenantRow(h, tenantId);
    expect(row?.state).toBe('purged');
    expect(row?.purge_at?.toISOString()).toBe(deactivated.purgeAt);
    const counts = await tenantRowCounts(h, tenantId);
    expect(
      Object.values(counts).every((n) => n === 0),
      JSON.stringify(counts),
    ).toBe(true);
    expect(await auditEvents(h, tenantId, 'tenant.reactivated')).toHaveLength(0);
    expect(await auditEvents(h, tenantId, 'tenant.purged')).toHaveLength(1);
    expect(await sdk.getTenant(tenantId)).toMatchObject({ state: 'purged' });
  });

  it('three deactivate/reactivate cycles in a row, each continuing as new, leave the tenant whole', async () => {
    const tenantId = uniqueId('cycles');
    await seedAncs(tenantId, { 'anc-1': 'Eta#Pass1' });
    const before = await sealedSnapshot(h, tenantId);
    for (let cycle = 1; cycle <= 3; cycle++) {
      // The second cycle goes through the signals operators and billing send; the others through
      // the SDK's updates.
      const bySignal = cycle === 2;
      if (bySignal) await tenantHandle(tenantId).signal(deactivateTenantSignal, { actor: billing });
      const d = bySignal
        ? await eventually(
            () => sdk.getTenant(tenantId),
            (v) => v.state === 'deactivated',
            'deactivation',
          )
        : await sdk.deactivateTenant(tenantId, { actor: billing });
      expect(d).toMatchObject({ state: 'deactivated', cycles: cycle - 1 });
      expect(Date.parse(d.purgeAt ?? '') - Date.parse(d.deactivatedAt ?? '')).toBe(RETENTION_MS);
      await waitForAncStates(tenantId, ['anc-1'], 'deactivated');
      await env.sleep((10 + cycle) * DAY);

      const { runId } = await tenantHandle(tenantId).describe();
      if (bySignal) await tenantHandle(tenantId).signal(reactivateTenantSignal, { actor: billing });
      else expect(await sdk.reactivateTenant(tenantId, { actor: billing })).toMatchObject({ state: 'active' });
      // Each reactivation continues as new: a fresh history carrying the state. (Wait for it
      // before querying: the test server mishandles a query that races a continue-as-new.)
      await eventually(
        () => tenantHandle(tenantId).describe(),
        (desc) => desc.runId !== runId && desc.status.name === 'RUNNING',
        'a new run after reactivation',
      );
      expect(await sdk.getTenant(tenantId)).toMatchObject({ state: 'active', cycles: cycle });
      expect(await tenantRow(h, tenantId)).toMatchObject({ state: 'active', purge_at: null });
      await waitForAncStates(tenantId, ['anc-1'], 'active');
    }
    expect(await sdk.getTenant(tenantId)).toMatchObject({ state: 'active', cycles: 3 });
    expect(await auditEvents(h, tenantId, 'tenant.deactivated')).toHaveLength(3);
    expect(await auditEvents(h, tenantId, 'tenant.reactivated')).toHaveLength(3);
    // No clock from an earlier cycle survives: a month later nothing is purged.
    await env.sleep(30 * DAY);
    expect(await tenantRow(h, tenantId)).toMatchObject({ state: 'active' });
    expect(await sealedSnapshot(h, tenantId)).toEqual(before);
    expect(await openStoredCredential(h, tenantId, 'anc-1', 1)).toBe('Eta#Pass1');
  });

  it('deactivating twice keeps the first clock', async () => {
    const tenantId = uniqueId('twice');
    await seedAncs(tenantId, { 'anc-1': 'Theta#Pass1' });
    const first = await sdk.deactivateTenant(tenantId, { actor: billing });
    await env.sleep(3 * DAY);
    const second = await sdk.deactivateTenant(tenantId, { actor: 'ops@contoso.test' });
    expect(second).toMatchObject({ state: 'deactivated', deactivatedAt: first.deactivatedAt, purgeAt: first.purgeAt });
    // Counted from the first deactivation (plus the few real seconds the test itself took).
    expect(second.timeLeftMs).toBeLessThanOrEqual(RETENTION_MS - 3 * DAY);
    expect(second.timeLeftMs).toBeGreaterThan(RETENTION_MS - 3 * DAY - 60_000);
    await tenantHandle(tenantId).signal(deactivateTenantSignal, { actor: 'ops@contoso.test' });
    const third = await sdk.deactivateTenant(tenantId, { actor: billing });
    expect(third.purgeAt).toBe(first.purgeAt);
    expect((await tenantRow(h, tenantId))?.purge_at?.toISOString()).toBe(first.purgeAt);
    expect(await auditEvents(h, tenantId, 'tenant.deactivated')).toHaveLength(1);
    expect((await searchAttributes(tenantId)).purgeAt).toBe(first.purgeAt);
    expect(await sdk.reactivateTenant(tenantId, { actor: billing })).toMatchObject({ state: 'active' });
    // Reactivating an active tenant is not an error either.
    expect(await sdk.reactivateTenant(tenantId, { actor: billing })).toMatchObject({ state: 'active', cycles: 1 });
  });

  it('during the window creates and updates are refused with TenantDeactivated, deletes are honoured', async () => {
    const tenantId = uniqueId('window');
    await seedAncs(tenantId, { 'anc-1': 'Iota#Pass1', 'anc-2': 'Kappa#Pass1' });
    await sdk.deactivateTenant(tenantId, { actor: billing });
    await waitForAncStates(tenantId, ['anc-1', 'anc-2'], 'deactivated');
    await env.sleep(DAY);

    await expectServiceError(
      sdk.updateAncPassword(tenantId, 'anc-1', 'Iota#Pass2', { actor: admin }),
      'TenantDeactivated',
    );
    await expectServiceError(sdk.runHealthChecks(tenantId, 'anc-1', { actor: admin }), 'TenantDeactivated');
    await expectServiceError(
      sdk.createAnc({ tenantId, ancId: 'anc-3', ...spec, password: 'Lambda#Pass1', actor: admin }),
      'TenantDeactivated',
    );
    expect(await sdk.deleteAnc(tenantId, 'anc-2', { actor: admin })).toEqual({ deleted: true });
    expect(await closedResult(client.workflow.getHandle(ancWorkflowId(tenantId, 'anc-2')))).toEqual({
      finalState: 'deleted',
    });
    const { rows } = await h.db.pool.query(
      'SELECT anc_id, version FROM anc_credentials WHERE tenant_id = $1 ORDER BY anc_id, version',
      [tenantId],
    );
    expect(rows).toEqual([{ anc_id: 'anc-1', version: 1 }]);
    expect(await tenantRowCounts(h, tenantId)).toMatchObject({ ancs: 1, used_envelopes: 1 });

    // Reactivated: the deleted ANC stays deleted, the other is back as it was.
    await sdk.reactivateTenant(tenantId, { actor: billing });
    expect(await ancStates(h, tenantId)).toEqual(['active']);
    expect(await openStoredCredential(h, tenantId, 'anc-1', 1)).toBe('Iota#Pass1');
    await expectServiceError(sdk.getAnc(tenantId, 'anc-2'), 'AncNotFound');
    await waitForAncStates(tenantId, ['anc-1'], 'active');
    expect((await sdk.updateAncPassword(tenantId, 'anc-1', 'Iota#Pass2', { actor: admin })).credentialVersion).toBe(2);
    const created = await sdk.createAnc({ tenantId, ancId: 'anc-3', ...spec, password: 'Lambda#Pass1', actor: admin });
    expect(created.state).toBe('active');
  });

  it('a deactivation for an unknown tenant is TenantNotFound and leaves nothing running', async () => {
    const tenantId = uniqueId('ghost');
    await expectServiceError(sdk.deactivateTenant(tenantId, { actor: billing }), 'TenantNotFound');
    expect(await closedResult(tenantHandle(tenantId))).toEqual({ finalState: 'not-found' });
    expect(await tenantRow(h, tenantId)).toBeUndefined();
    await expectServiceError(sdk.getTenant(uniqueId('never')), 'TenantNotFound');
    await expectServiceError(sdk.deactivateTenant('not a tenant id', { actor: billing }), 'InvalidTenantId');
  });

  it('a worker replaced in the middle of the window: the new one replays the timer and purges on time', async () => {
    const tenantId = uniqueId('restart');
    await seedAncs(tenantId, { 'anc-1': 'Mu#Pass1', 'anc-2': 'Nu#Pass1' });
    const d = await sdk.deactivateTenant(tenantId, { actor: billing });
    await env.sleep(10 * DAY);
    // The old worker goes away with its cache; the new one knows the workflow only from history.
    // (No simulated time passes without a worker: the test server stops skipping time while a
    // workflow task waits for one.)
    await worker?.stop();
    worker = await h.startWorker(NO_CACHE);
    expect(await sdk.getTenant(tenantId)).toMatchObject({ state: 'deactivated', purgeAt: d.purgeAt });
    await env.sleep(19 * DAY - HOUR);
    expect(await tenantRowCounts(h, tenantId)).toMatchObject({ ancs: 2, tenant_keys: 1 });
    await env.sleep(2 * HOUR);
    expect(await closedResult(tenantHandle(tenantId))).toEqual({ finalState: 'purged' });
    const counts = await tenantRowCounts(h, tenantId);
    expect(
      Object.values(counts).every((n) => n === 0),
      JSON.stringify(counts),
    ).toBe(true);
    const row = await tenantRow(h, tenantId);
    expect(row?.state).toBe('purged');
    expect((row?.purged_at?.getTime() ?? 0) - Date.parse(d.purgeAt ?? '')).toBeLessThan(2 * HOUR);
    for (const ancId of ['anc-1', 'anc-2']) {
      const anc = client.workflow.getHandle(ancWorkflowId(tenantId, ancId));
      expect(await closedResult(anc)).toEqual({ finalState: 'deleted' });
    }
  });

  it('a worker that crashes after the first purge batch committed: a new worker finishes the purge', async () => {
    const tenantId = uniqueId('crash');
    const ancIds = ['anc-1', 'anc-2', 'anc-3'];
    await seedAncs(tenantId, { 'anc-1': 'Xi#Pass1', 'anc-2': 'Omicron#Pass1', 'anc-3': 'Pi#Pass1' });
    // One ANC per purge batch, so the purge takes several activities.
    await client.workflow.signalWithStart<typeof tenantWorkflow, [TenantLifecycleRequest]>('tenantWorkflow', {
      workflowId: tenantWorkflowId(tenantId),
      taskQueue: h.taskQueue,
      args: [{ tenantId, purgeBatchSize: 1 }],
      signal: deactivateTenantSignal,
      signalArgs: [{ actor: billing }],
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
    });
    await eventually(
      () => sdk.getTenant(tenantId),
      (v) => v.state === 'deactivated',
      'deactivation',
    );
    await worker?.stop();
    worker = undefined;

    // This worker's first purge batch commits, then the worker dies before reporting it.
    let batches = 0;
    let crash!: () => void;
    const crashedOnce = new Promise<void>((resolve) => (crash = resolve));
    const crashing: RunningWorker = await h.startWorker({
      options: NO_CACHE.options,
      activities: {
        purgeTenantAncs: async (input: PurgeBatchInput) => {
          const result = await purgeTenantAncs(h.deps, input);
          batches += 1;
          if (batches === 1) {
            crashing.worker.shutdown();
            crash();
            throw new Error('simulated worker crash after the batch committed');
          }
          return result;
        },
      },
    });
    // The timer fires at the end of this sleep; the purge then runs in real time.
    await env.sleep(RETENTION_MS);
    await crashedOnce;
    await crashing.stop();
    // Half done: one ANC deleted, the rest (and the keys, and the tenant row) still there.
    expect(await tenantRowCounts(h, tenantId)).toMatchObject({ ancs: 2, tenant_keys: 1 });
    expect((await tenantRow(h, tenantId))?.state).toBe('deactivated');
    expect(batches).toBe(1);

    worker = await h.startWorker(NO_CACHE);
    expect(await closedResult(tenantHandle(tenantId))).toEqual({ finalState: 'purged' });
    const counts = await tenantRowCounts(h, tenantId);
    expect(
      Object.values(counts).every((n) => n === 0),
      JSON.stringify(counts),
    ).toBe(true);
    expect((await tenantRow(h, tenantId))?.state).toBe('purged');
    const audit = await auditEvents(h, tenantId, 'tenant.purged');
    expect(audit).toHaveLength(1);
    expect(audit[0]?.details).toMatchObject({ ancs: 3, credentials: 3, tenantKeys: 1 });
    for (const ancId of ancIds) {
      const anc = client.workflow.getHandle(ancWorkflowId(tenantId, ancId));
      expect(await closedResult(anc), ancId).toEqual({ finalState: 'deleted' });
    }
    expect(await verifyAuditChain(h.db.pool, h.deps.config.auditMacKey)).toMatchObject({ ok: true });
  });
});

describe('tenant lifecycle on the dev server: listing through visibility', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  let sdk: AncClient;
  let client: Client;

  beforeAll(async () => {
    env = await startDevServer();
    h = await harnessFor(env);
    client = plainClient(env);
    sdk = testClient(client, h);
    await h.startWorker();
  });

  afterAll(async () => {
    await h?.close();
    await env?.teardown();
  });

  it('listTenants follows deactivation and reactivation; PurgeAt is set, then removed', async () => {
    const tenantId = uniqueId('list');
    await sdk.createAnc({ tenantId, ancId: 'anc-1', ...spec, password: 'Rho#Pass1', actor: admin });
    const d = await sdk.deactivateTenant(tenantId, { actor: billing });
    const listed = await eventually(
      () => sdk.listTenants({ state: 'deactivated' }),
      (l) => l.some((t) => t.tenantId === tenantId),
      'the tenant listed as deactivated',
    );
    expect(listed.find((t) => t.tenantId === tenantId)).toEqual({ tenantId, state: 'deactivated', purgeAt: d.purgeAt });
    expect(await sdk.getTenant(tenantId)).toMatchObject({ state: 'deactivated', purgeAt: d.purgeAt });

    await sdk.reactivateTenant(tenantId, { actor: billing });
    const active = await eventually(
      () => sdk.listTenants({ state: 'active' }),
      (l) => l.some((t) => t.tenantId === tenantId),
      'the tenant listed as active',
    );
    expect(active.find((t) => t.tenantId === tenantId)).toEqual({ tenantId, state: 'active' });
    expect((await sdk.listTenants({ state: 'deactivated' })).some((t) => t.tenantId === tenantId)).toBe(false);
    expect((await sdk.listTenants()).filter((t) => t.tenantId === tenantId)).toEqual([{ tenantId, state: 'active' }]);
    const desc = await client.workflow.getHandle(tenantWorkflowId(tenantId)).describe();
    expect(desc.typedSearchAttributes.get(PurgeAtKey)).toBeUndefined();
    expect(desc.typedSearchAttributes.get(TenantStateKey)).toBe('active');
  });
});
