/**
 * Scheduled rotation, end to end: the real time-skipping test server (workflow time jumps months),
 * real PostgreSQL, and the Azure Key Vault provider talking HTTPS to a Key Vault emulator process
 * of this file's own (so its per-operation counts and unwrap timestamps are ours alone).
 * The schedule itself (which the time-skipping server does not implement) runs on the dev server.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { ScheduleOverlapPolicy } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, type WorkflowBundle } from '@temporalio/worker';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createActivities } from '../activities';
import { provideCredential } from '../activities/credentials';
import { openCredential } from '../activities/crypto/seal';
import { verifyAuditChain } from '../activities/db/audit';
import type { AzureKeyVaultKekProvider } from '../activities/kek/azure-key-vault';
import { wrapWithPublicKey, type KekVersion } from '../activities/kek/provider';
import { describeCurrentKek } from '../activities/keyring';
import { addUtcMonths, type RewrapBatchInput, type ReplaceBatchInput } from '../activities/rotation';
import { sealPasswordEnvelope } from '../client/envelope';
import { ROTATION_SCHEDULE_ID } from '../common/ids';
import { ensureRotationSchedule, startSingletons } from '../worker/singletons';
import { WORKFLOWS_PATH } from '../worker/workflows-path';
import { getPublicKekQuery } from '../workflows/definitions';
import type { rotationWorkflow } from '../workflows/rotation';
import type { RotationProgress, RotationWorkflowArgs } from '../workflows/rotation-definitions';
import { dumpAllTables } from './support/db';
import { azureEmulatorKek, startEmulatorProcess, type EmulatorProcess } from './support/emulator-process';
import { createHarness, startDevServer, startTimeSkippingServer, type Harness } from './support/harness';
import { ROOT } from './support/stack';

const DAY = 86_400_000;
const spec = {
  displayName: 'Contoso HQ',
  adDomainName: 'corp.contoso.test',
  organizationalUnit: 'OU=CloudPCs,DC=corp,DC=contoso,DC=test',
  adDomainUsername: 'svcDomainJoin@corp.contoso.test',
};
const actor = 'admin@contoso.test';

// ------------------------------------------------------------------ a Key Vault emulator of our own

const kekFor = (kv: EmulatorProcess, hsmOpsPerSecond = 1000) => azureEmulatorKek(kv, { hsmOpsPerSecond });

// ------------------------------------------------------------------ seeding and reading back

/** Creates (or updates) an ANC the way the ANC workflow does, with the password sealed by the SDK. */
async function provide(
  h: Harness,
  args: { tenantId: string; ancId: string; password: string; nowMs: number; mode?: 'create' | 'update' },
) {
  const mode = args.mode ?? 'create';
  const passwordEnvelope = await sealPasswordEnvelope({
    password: args.password,
    kek: await describeCurrentKek(h.deps),
    tenantId: args.tenantId,
    ancId: args.ancId,
    op: mode,
  });
  return provideCredential(h.deps, {
    mode,
    tenantId: args.tenantId,
    ancId: args.ancId,
    spec: mode === 'create' ? spec : undefined,
    passwordEnvelope,
    receivedAtMs: Date.now(),
    nowMs: args.nowMs,
    operationId: `seed/${randomUUID()}`,
    actor,
    workflowId: 'seed',
  });
}

/** Bulk-inserts tenants with one active tenant key each, wrapped locally with `kek`. Returns the clear keys. */
async function seedTenantKeys(
  h: Harness,
  kek: KekVersion,
  opts: { prefix: string; count: number; createdAt: Date },
): Promise<Map<string, Buffer>> {
  const keys = new Map<string, Buffer>();
  for (let i = 0; i < opts.count; i++) keys.set(`${opts.prefix}-${String(i).padStart(5, '0')}`, randomBytes(32));
  const ids = [...keys.keys()];
  const wrapped = [...keys.values()].map((k) => wrapWithPublicKey(kek.publicJwk, k));
  await h.db.pool.query('INSERT INTO tenants (tenant_id) SELECT unnest($1::text[])', [ids]);
  await h.db.pool.query(
    `INSERT INTO tenant_keys (tenant_id, version, state, wrapped_key, kek_id, kek_version, created_at, expires_at)
     SELECT t, 1, 'active', w, $3, $4, $5, $6 FROM unnest($1::text[], $2::bytea[]) AS u(t, w)`,
    [ids, wrapped, kek.kekId, kek.version, opts.createdAt, new Date(opts.createdAt.getTime() + 365 * DAY)],
  );
  return keys;
}

/** Every stored credential version, opened with its tenant key (unwrapped by the KEK version named). */
async function openAll(h: Harness, tenantIds: string[]): Promise<Record<string, string>> {
  const { rows } = await h.db.pool.query(
    `SELECT c.tenant_id, c.anc_id, c.version, c.sealed, c.tenant_key_version, k.wrapped_key, k.kek_version
       FROM anc_credentials c JOIN tenant_keys k ON k.tenant_id = c.tenant_id AND k.version = c.tenant_key_version
      WHERE c.tenant_id = ANY($1) ORDER BY 1, 2, 3`,
    [tenantIds],
  );
  const out: Record<string, string> = {};
  for (const r of rows) {
    const key = await h.deps.kek.provider.unwrap(r.wrapped_key, r.kek_version);
    out[`${r.tenant_id}/${r.anc_id}/${r.version}`] = openCredential({
      tenantKey: key,
      keyVersion: r.tenant_key_version,
      tenantId: r.tenant_id,
      ancId: r.anc_id,
      sealed: r.sealed,
    });
  }
  return out;
}

async function kekVersionsInUse(h: Harness): Promise<Record<string, number>> {
  const { rows } = await h.db.pool.query<{ kek_version: string; n: number }>(
    'SELECT kek_version, count(*)::int AS n FROM tenant_keys GROUP BY 1',
  );
  return Object.fromEntries(rows.map((r) => [r.kek_version, r.n]));
}

async function auditCount(h: Harness, event: string): Promise<number> {
  const { rows } = await h.db.pool.query('SELECT count(*)::int AS n FROM audit_log WHERE event = $1', [event]);
  return rows[0].n as number;
}

/** The decoded text of every payload in a workflow history (activity inputs and results, ...). */
function payloadTexts(history: unknown): string[] {
  const out: string[] = [];
  const walk = (node: unknown): void => {
    if (!node || typeof node !== 'object') return;
    const record = node as Record<string, unknown>;
    if (record.data instanceof Uint8Array && 'metadata' in record) {
      out.push(Buffer.from(record.data).toString('utf8'));
      return;
    }
    for (const value of Object.values(record)) walk(value);
  };
  walk(history);
  return out;
}

/** Most unwrap calls the emulator saw in any one-second window. */
function busiestSecond(stamps: number[]): number {
  const sorted = [...stamps].sort((a, b) => a - b);
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < sorted.length; hi++) {
    while ((sorted[hi] as number) - (sorted[lo] as number) >= 1000) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}

// ------------------------------------------------------------------ the tests

let kv: EmulatorProcess;
let bundle: WorkflowBundle;

beforeAll(async () => {
  [kv, bundle] = await Promise.all([
    startEmulatorProcess(),
    bundleWorkflowCode({
      workflowsPath: WORKFLOWS_PATH,
      logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} },
    }),
  ]);
});

afterAll(async () => {
  await kv?.stop();
});

describe('scheduled rotation (time-skipping server, PostgreSQL, Key Vault emulator)', () => {
  // Each test gets its own time-skipping server (workflow time is global to one) and database.
  let env: TestWorkflowEnvironment;
  const harnesses: Harness[] = [];

  beforeEach(async () => {
    env = await startTimeSkippingServer();
  });
  afterEach(async () => {
    for (const h of harnesses.splice(0)) await h.close();
    await env?.teardown();
  });

  async function harness(opts: { kek: AzureKeyVaultKekProvider; disable?: boolean }): Promise<Harness> {
    const h = await createHarness({
      env,
      kek: opts.kek,
      startSingletons: false, // the keyring's hourly timer would make every skipped month slow
      config: { disableUnreferencedKekVersions: opts.disable ?? false },
    });
    harnesses.push(h);
    return h;
  }

  function rotate(h: Harness, workflowId: string, args: RotationWorkflowArgs = {}): Promise<RotationProgress> {
    return env.client.workflow.execute<typeof rotationWorkflow>('rotationWorkflow', {
      taskQueue: h.taskQueue,
      workflowId,
      args: [{ batchSize: 100, ...args }],
      // The time-skipping server keeps skipping to a closed workflow's stale timeout timer while
      // the client still awaits its result (10 years without a timeout!). Bound that jump.
      workflowExecutionTimeout: '1 hour',
    });
  }

  const worker = (h: Harness, activities: Parameters<Harness['startWorker']>[0] = {}) =>
    h.startWorker({ ...activities, options: { workflowBundle: bundle, workflowsPath: undefined } });

  it('(a) 9 months + 1 day after the KEK was made: a new version wraps every tenant key, credentials still open', async () => {
    const kek = kekFor(kv);
    const h = await harness({ kek });
    const w = await worker(h);
    const first = await kek.currentVersion();
    const t0 = await env.currentTimeMs();
    const passwords: Record<string, string> = {};
    for (const tenantId of ['contoso', 'fabrikam', 'tailspin']) {
      for (const ancId of ['hq', 'branch']) {
        const password = `Pw#${tenantId}#${ancId}#1`;
        await provide(h, { tenantId, ancId, password, nowMs: t0 });
        passwords[`${tenantId}/${ancId}/1`] = password;
      }
    }
    await provide(h, { tenantId: 'contoso', ancId: 'hq', password: 'Pw#contoso#hq#2', nowMs: t0, mode: 'update' });
    passwords['contoso/hq/2'] = 'Pw#contoso#hq#2';

    // Now: nothing is due.
    const early = await rotate(h, 'rotation-a-early');
    expect(early).toMatchObject({ phase: 'done', kek: { renewed: false, currentVersion: first?.version } });
    expect(early.counts).toMatchObject({ rewrapped: 0, tenantKeysReplaced: 0, hsmUnwraps: 0 });

    await env.sleep('274 days');
    // The keyring starts after the jump (its hourly timer would have fired 6,500 times).
    await startSingletons(env.client, h.taskQueue);
    await kv.reset();
    const started = Date.now();
    const result = await rotate(h, 'rotation-a');
    const took = Date.now() - started;
    if (process.env.RECORD_HISTORIES) {
      // Saved for test/replay.test.ts (a renewal, a re-wrap pass, the grace period and retirement).
      const history = await env.client.workflow.getHandle('rotation-a').fetchHistory();
      const message = temporal.api.history.v1.History.fromObject(history);
      const json = temporal.api.history.v1.History.toObject(message, { longs: String, enums: String, bytes: String });
      writeFileSync(`${ROOT}test/histories/rotation-renewal.json`, JSON.stringify(json));
    }
    const stats = await kv.stats();

    expect(result.phase).toBe('done');
    expect(result.kek.renewed).toBe(true);
    expect(result.kek.previousVersion).toBe(first?.version);
    const current = result.kek.currentVersion as string;
    expect(current).not.toBe(first?.version);
    // Valid one year from workflow time (nine months and a day after the first version was made).
    const renewedAt = Date.parse(result.kek.renewedAt as string);
    expect(renewedAt - t0).toBeGreaterThanOrEqual(274 * DAY);
    expect(renewedAt - t0).toBeLessThan(275 * DAY);
    const expires = Date.parse(result.kek.currentExpiresAt as string);
    expect(Math.abs(expires - addUtcMonths(new Date(renewedAt), 12).getTime())).toBeLessThan(5_000);
    expect((await kek.listVersions()).map((v) => v.version)).toEqual([first?.version, current]);

    expect(await kekVersionsInUse(h)).toEqual({ [current]: 3 });
    expect(result.counts).toMatchObject({ rewrapped: 3, rewrapFailed: 0, tenantKeysReplaced: 0, hsmUnwraps: 3 });
    expect(stats.operations.unwrapkey).toBe(3); // one HSM call per tenant key
    expect(stats.operations.wrapkey ?? 0).toBe(0); // wrapping is local
    expect(stats.operations.create).toBe(1);
    expect(result.kek.unreferencedVersions).toEqual([first?.version]);
    expect(result.kek.disabledVersions).toEqual([]);
    const { rows } = await h.db.pool.query('SELECT count(*)::int AS n FROM tenant_keys WHERE rewrapped_at IS NULL');
    expect(rows[0].n).toBe(0);

    expect(await openAll(h, ['contoso', 'fabrikam', 'tailspin'])).toEqual(passwords);
    expect(await auditCount(h, 'tenant_key.rewrapped')).toBe(3);
    expect(await auditCount(h, 'kek.renewed')).toBe(1);
    expect(await auditCount(h, 'kek.rotated')).toBe(1);
    expect(await verifyAuditChain(h.db.pool, h.deps.config.auditMacKey)).toMatchObject({ ok: true });

    // The keyring publishes the new version to clients.
    const keyring = env.client.workflow.getHandle('anc-keyring');
    for (let i = 0; i < 100 && (await keyring.query(getPublicKekQuery))?.version !== current; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect((await keyring.query(getPublicKekQuery))?.version).toBe(current);
    await keyring.terminate();

    // Running again does nothing.
    await kv.reset();
    const again = await rotate(h, 'rotation-a-again');
    expect(again.kek).toMatchObject({ renewed: false, currentVersion: current });
    expect(again.counts).toMatchObject({ rewrapped: 0, hsmUnwraps: 0, tenantKeysReplaced: 0 });
    expect((await kv.stats()).operations.unwrapkey ?? 0).toBe(0);
    await w.stop();
    console.info(`(a) renewal + re-wrap of 3 tenant keys: ${took} ms`);
  });

  it('(b) 12 months + 1 day after a tenant key was made: new key version, credentials re-sealed, old row gone', async () => {
    const kek = kekFor(kv);
    const h = await harness({ kek });
    const w = await worker(h);
    const t0 = await env.currentTimeMs();
    const passwords: Record<string, string> = {};
    const seed = async (tenantId: string, ancId: string, password: string, nowMs: number, mode?: 'update') => {
      const stored = await provide(h, { tenantId, ancId, password, nowMs, mode });
      passwords[`${tenantId}/${ancId}/${stored.credentialVersion}`] = password;
    };
    await seed('old-1', 'a', 'Old1#A#1', t0);
    await seed('old-1', 'a', 'Old1#A#2', t0, 'update');
    await seed('old-1', 'b', 'Old1#B#1', t0);
    await seed('old-2', 'a', 'Old2#A#1', t0);
    // A tenant whose key was made 200 days later: not due yet.
    await seed('young', 'a', 'Young#A#1', t0 + 200 * DAY);

    await env.sleep('366 days');
    // An update racing with the rotation, at the same workflow time: whichever takes the tenant
    // lock first, the other sees its result.
    const racedAt = await env.currentTimeMs();
    const rotation = rotate(h, 'rotation-b');
    const raced = seed('old-1', 'a', 'Old1#A#3', racedAt, 'update');
    // Health-check style readers (one statement reads the sealed credential and its key) all along.
    let finished = false;
    let reads = 0;
    const reader = (async () => {
      while (!finished) {
        const { rows } = await h.db.pool.query(
          `SELECT c.tenant_id, k.wrapped_key FROM ancs a
             JOIN anc_credentials c ON c.tenant_id = a.tenant_id AND c.anc_id = a.anc_id AND c.version = a.credential_version
             LEFT JOIN tenant_keys k ON k.tenant_id = c.tenant_id AND k.version = c.tenant_key_version`,
        );
        for (const r of rows) expect(r.wrapped_key, `key of ${r.tenant_id}`).not.toBeNull();
        await openAll(h, ['old-1', 'old-2']);
        reads += 1;
      }
    })();
    const [result] = await Promise.all([rotation, raced]).finally(() => (finished = true));
    await reader;
    expect(reads).toBeGreaterThan(0);

    expect(result.phase).toBe('done');
    const { rows: keys } = await h.db.pool.query(
      `SELECT tenant_id, version, state, kek_version, created_at, expires_at FROM tenant_keys ORDER BY 1, 2`,
    );
    const current = result.kek.currentVersion;
    expect(keys.map((k) => [k.tenant_id, k.version, k.state, k.kek_version])).toEqual([
      ['old-1', 2, 'active', current],
      ['old-2', 2, 'active', current],
      ['young', 1, 'active', current],
    ]);
    for (const k of keys.filter((r) => r.tenant_id !== 'young')) {
      expect(k.created_at.getTime()).toBeGreaterThanOrEqual(t0 + 366 * DAY);
    }
    const { rows: creds } = await h.db.pool.query(
      `SELECT tenant_id, anc_id, version, tenant_key_version, resealed_at FROM anc_credentials ORDER BY 1, 2, 3`,
    );
    for (const c of creds) expect(c.tenant_key_version).toBe(c.tenant_id === 'young' ? 1 : 2);
    // Four credential versions were sealed under old-1 v1 and old-2 v1, and were all re-sealed.
    expect(creds.filter((c) => c.resealed_at !== null)).toHaveLength(4);
    expect(result.counts.credentialsResealed).toBe(4);
    expect(result.counts.tenantKeyVersionsDeleted).toBe(2);
    expect(result.counts.replaceFailed).toBe(0);
    expect(await openAll(h, ['old-1', 'old-2', 'young'])).toEqual(passwords);
    expect(Object.keys(passwords)).toHaveLength(6);
    expect(await auditCount(h, 'tenant_key.replaced')).toBe(2);
    expect(await verifyAuditChain(h.db.pool, h.deps.config.auditMacKey)).toMatchObject({ ok: true });

    // Nothing left to do.
    const again = await rotate(h, 'rotation-b-again');
    expect(again.counts).toMatchObject({ tenantKeysReplaced: 0, credentialsResealed: 0, rewrapped: 0, hsmUnwraps: 0 });
    await w.stop();
  });

  it('(c) runs that fail midway are finished by the next run, with nothing done twice', async () => {
    const kek = kekFor(kv);
    // A KEK version with two months left: renewal is due right away.
    const now = await env.currentTimeMs();
    const old = await kek.createVersion(new Date(now + 60 * DAY));
    const h = await harness({ kek });
    const clear = await seedTenantKeys(h, old, { prefix: 'bulk', count: 250, createdAt: new Date(now) });
    // Ten tenants whose key is 400 days old, with a credential each.
    for (let i = 0; i < 10; i++) {
      await provide(h, { tenantId: `exp-${i}`, ancId: 'a', password: `Expired#${i}`, nowMs: now - 400 * DAY });
    }
    await kv.reset();

    const real = createActivities(h.deps);
    let replaceCalls = 0;
    let rewrapCalls = 0;
    const crash = () =>
      ApplicationFailure.create({ type: 'SimulatedCrash', message: 'worker lost', nonRetryable: true });
    const w = await worker(h, {
      activities: {
        // Both commit their work, then "crash" before the workflow hears of it, once each.
        replaceExpiredTenantKeys: async (input: ReplaceBatchInput) => {
          const r = await real.replaceExpiredTenantKeys(input);
          if (++replaceCalls === 1) throw crash();
          return r;
        },
        rewrapTenantKeys: async (input: RewrapBatchInput) => {
          const r = await real.rewrapTenantKeys(input);
          if (++rewrapCalls === 2) throw crash();
          return r;
        },
      },
    });

    // Work is one key (one tenant) per activity: when a run fails, its siblings in flight still
    // finish and commit. Wait for that before the next run, as a new run after a lost worker would.
    const settled = async (event: string): Promise<number> => {
      let n = await auditCount(h, event);
      for (;;) {
        await new Promise((r) => setTimeout(r, 1500));
        const now = await auditCount(h, event);
        if (now === n) return n;
        n = now;
      }
    };
    await expect(rotate(h, 'rotation-c-1')).rejects.toThrow();
    await settled('tenant_key.replaced');
    await expect(rotate(h, 'rotation-c-2')).rejects.toThrow();
    // Run 2 stopped at its second re-wrap, with the others in flight finishing too.
    const rewrappedBefore = await settled('tenant_key.rewrapped');
    expect(rewrappedBefore).toBeGreaterThanOrEqual(2);
    expect(rewrappedBefore).toBeLessThan(250);
    const last = await rotate(h, 'rotation-c-3');
    const stats = await kv.stats();

    expect(last.phase).toBe('done');
    expect(last.kek.renewed).toBe(false); // renewed by the first run
    expect(last.counts.rewrapped).toBe(250 - rewrappedBefore); // the others were done by run 2
    expect(last.counts.tenantKeysReplaced).toBe(0); // all done by run 1
    // Exactly one HSM unwrap per tenant key over the three runs: 250 re-wraps + 10 replacements.
    expect(stats.operations.unwrapkey).toBe(260);
    expect(stats.operations.wrapkey ?? 0).toBe(0);
    expect(stats.operations.create).toBe(1);
    const current = last.kek.currentVersion as string;
    expect(await kekVersionsInUse(h)).toEqual({ [current]: 260 });
    expect(await auditCount(h, 'tenant_key.rewrapped')).toBe(250);
    expect(await auditCount(h, 'tenant_key.replaced')).toBe(10);
    expect(await auditCount(h, 'kek.renewed')).toBe(1);
    expect(await verifyAuditChain(h.db.pool, h.deps.config.auditMacKey)).toMatchObject({ ok: true });

    // The re-wrapped keys are the same keys; the re-sealed credentials still open.
    const { rows } = await h.db.pool.query(
      `SELECT tenant_id, wrapped_key, kek_version FROM tenant_keys WHERE tenant_id = ANY($1)`,
      [['bulk-00000', 'bulk-00137', 'bulk-00249']],
    );
    for (const r of rows)
      expect((await kek.unwrap(r.wrapped_key, r.kek_version)).equals(clear.get(r.tenant_id)!)).toBe(true);
    expect(await openAll(h, ['exp-0', 'exp-9'])).toEqual({ 'exp-0/a/1': 'Expired#0', 'exp-9/a/1': 'Expired#9' });

    // No tenant key in the clear anywhere: not in the database, not in any activity's input or result.
    const dump = await dumpAllTables(h.db.pool);
    const histories = await Promise.all(
      ['rotation-c-1', 'rotation-c-2', 'rotation-c-3'].map(async (id) =>
        payloadTexts(await env.client.workflow.getHandle(id).fetchHistory()),
      ),
    );
    const everywhere = [dump, ...histories.flat()].join('\n');
    expect(histories.flat().length).toBeGreaterThan(10);
    for (const key of clear.values()) {
      for (const form of [key.toString('hex'), key.toString('base64'), key.toString('base64url'), key.join(',')]) {
        expect(everywhere.includes(form)).toBe(false);
      }
    }
    await w.stop();
  });

  it('(e) throttled unwraps (429 with and without Retry-After) are retried and never fail the run', async () => {
    const kek = kekFor(kv);
    const now = await env.currentTimeMs();
    const old = await kek.createVersion(new Date(now + 60 * DAY));
    const h = await harness({ kek });
    await seedTenantKeys(h, old, { prefix: 'busy', count: 40, createdAt: new Date(now) });
    const providedBefore = kek.stats();
    const real = createActivities(h.deps);
    let armed = false;
    const w = await worker(h, {
      activities: {
        rewrapTenantKeys: async (input: RewrapBatchInput) => {
          if (!armed) {
            armed = true;
            await kv.reset();
            // The SDK's pipeline waits out a Retry-After itself; a bare 429 fails the activity,
            // and Temporal retries it.
            await kv.faults(2, 429, 1);
            await kv.faults(2, 429);
          }
          return real.rewrapTenantKeys(input);
        },
      },
    });
    const result = await rotate(h, 'rotation-e');
    const stats = await kv.stats();
    expect(result.phase).toBe('done');
    expect(result.failures).toEqual([]);
    expect(stats.faultsInjected).toBe(4);
    // Every tenant key re-wrapped once. In the provider: one successful unwrap per key plus the two
    // calls that failed with a bare 429 (the two with Retry-After were retried inside their call).
    expect(await kekVersionsInUse(h)).toEqual({ [result.kek.currentVersion as string]: 40 });
    expect(await auditCount(h, 'tenant_key.rewrapped')).toBe(40);
    const provider = kek.stats();
    expect(provider.remoteUnwraps - providedBefore.remoteUnwraps).toBe(42);
    expect(provider.throttled - providedBefore.throttled).toBe(4);
    // At the vault: those calls plus the throttled requests. Once in about ten runs, on a loaded
    // machine, the vault counted one more successful unwrap (cause not established; the SDK's
    // pipeline retrying a request below the provider is one candidate), hence "at least".
    expect(stats.operations.unwrapkey! - stats.faultsInjected).toBeGreaterThanOrEqual(40);
    await w.stop();
  });

  it('(d) 1,000 tenants under 100 HSM ops/s: never over budget in any second, one unwrap per key, no remote wraps', async () => {
    const kek = kekFor(kv, 100);
    const now = await env.currentTimeMs();
    const old = await kek.createVersion(new Date(now + 60 * DAY));
    const h = await harness({ kek, disable: true });
    const w = await worker(h);
    const clear = await seedTenantKeys(h, old, { prefix: 'tenant', count: 1000, createdAt: new Date(now) });
    await kv.reset();

    const started = Date.now();
    const result = await rotate(h, 'rotation-d', { batchSize: 100, batchesPerRun: 3, concurrency: 16 });
    const took = Date.now() - started;
    const stats = await kv.stats();

    expect(result.failures).toEqual([]);
    const unwraps = stats.cryptoTimestamps.unwrapkey;
    expect(unwraps).toHaveLength(1000);
    const peak = busiestSecond(unwraps);
    expect(peak).toBeLessThanOrEqual(100);
    expect(stats.operations.wrapkey ?? 0).toBe(0);
    // 11 re-wrap batches, the replacement pass and the format-1 re-seal pass (which finds nothing).
    expect(result.counts).toMatchObject({ rewrapped: 1000, hsmUnwraps: 1000, rewrapFailed: 0, batches: 13 });
    expect(result.continuedAsNew).toBeGreaterThanOrEqual(3);
    const current = result.kek.currentVersion as string;
    expect(await kekVersionsInUse(h)).toEqual({ [current]: 1000 });
    // The old version is unreferenced, and disabled as configured.
    expect(result.kek.unreferencedVersions).toEqual([old.version]);
    expect(result.kek.disabledVersions).toEqual([old.version]);
    expect((await kek.listVersions()).map((v) => [v.version, v.enabled])).toEqual([
      [old.version, false],
      [current, true],
    ]);
    const sample = await h.db.pool.query(
      `SELECT tenant_id, wrapped_key, kek_version FROM tenant_keys ORDER BY random() LIMIT 5`,
    );
    for (const r of sample.rows) {
      expect((await kek.unwrap(r.wrapped_key, r.kek_version)).equals(clear.get(r.tenant_id)!)).toBe(true);
    }
    const span = (Math.max(...unwraps) - Math.min(...unwraps)) / 1000;
    console.info(
      `(d) 1000 re-wraps at a budget of 100/s: ${took} ms in all, unwraps over ${span.toFixed(1)} s ` +
        `(${(1000 / span).toFixed(1)}/s), busiest second ${peak}, runs ${result.continuedAsNew + 1}`,
    );
    await w.stop();
  });
});

describe('rotation schedule (dev server)', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;

  beforeAll(async () => {
    env = await startDevServer();
    h = await createHarness({ env, kek: kekFor(kv), startSingletons: false });
  });
  afterAll(async () => {
    await h?.close();
    await env?.teardown();
  });

  it('is created once, updated on the next start, triggered on demand without overlap, and reports progress', async () => {
    expect(await ensureRotationSchedule(env.client, h.taskQueue, 24)).toBe('created');
    expect(await ensureRotationSchedule(env.client, h.taskQueue, 6)).toBe('updated');
    const schedule = env.client.schedule.getHandle(ROTATION_SCHEDULE_ID);
    const described = await schedule.describe();
    expect(described.spec.intervals?.map((i) => i.every)).toEqual([6 * 3_600_000]);
    expect(described.policies.overlap).toBe(ScheduleOverlapPolicy.SKIP);
    expect(described.action).toMatchObject({ workflowType: 'rotationWorkflow', taskQueue: h.taskQueue });

    expect(await h.sdk.getRotationProgress()).toBeUndefined();
    // No worker yet, so the triggered rotation stays running: a second trigger starts nothing.
    const triggered = await h.sdk.triggerRotation();
    expect(triggered.started).toBe(true);
    expect(triggered.workflowId).toMatch(/^anc-key-rotation-/);
    expect(await h.sdk.triggerRotation()).toEqual({ started: false, workflowId: triggered.workflowId });
    const w = await h.startWorker({ options: { workflowBundle: bundle, workflowsPath: undefined } });
    const done = await env.client.workflow.getHandle(triggered.workflowId!).result();
    expect(done).toMatchObject({ phase: 'done' });
    // What the Web UI shows as the workflow's current details.
    const metadata = await env.client.workflow
      .getHandle(triggered.workflowId!)
      .query<{ currentDetails?: string; definition?: { queryDefinitions?: Array<{ name?: string }> } }>(
        '__temporal_workflow_metadata',
      );
    expect(metadata.currentDetails).toContain('phase `done`');
    expect(metadata.definition?.queryDefinitions?.map((q) => q.name)).toContain('getRotationProgress');
    const status = await h.sdk.getRotationProgress();
    expect(status).toMatchObject({
      workflowId: triggered.workflowId,
      status: 'COMPLETED',
      progress: { phase: 'done' },
    });
    await schedule.delete();
    await w.stop();
  });
});
