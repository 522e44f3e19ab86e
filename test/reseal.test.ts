/**
 * Sealed format 2 in the database: credentials written in format 1 (before the upgrade) still open,
 * and the scheduled rotation re-seals them to format 2 under the same tenant key version, after which
 * every stored credential has the same size whatever its password. Real PostgreSQL, the Key Vault
 * emulator over HTTPS and the time-skipping test server.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provideCredential } from '../activities/credentials';
import { V2_SEALED_BYTES, _sealWithIvForTestVectors, openCredential } from '../activities/crypto/seal';
import { verifyAuditChain } from '../activities/db/audit';
import { describeCurrentKek } from '../activities/keyring';
import { resealFormat1Credentials } from '../activities/reseal';
import { sealPasswordEnvelope } from '../client/envelope';
import type { rotationWorkflow } from '../workflows/rotation';
import type { RotationProgress } from '../workflows/rotation-definitions';
import { createHarness, emulatorKek, startTimeSkippingServer, type Harness } from './support/harness';
import { countEvents, historyJson } from './support/histories';
import { ROOT } from './support/stack';

const spec = {
  displayName: 'Contoso HQ',
  adDomainName: 'corp.contoso.test',
  adDomainUsername: 'svcDomainJoin@corp.contoso.test',
};

// Passwords of very different lengths (1 to 256 code units, up to 768 UTF-8 bytes).
const PASSWORDS: Record<string, string> = {
  'fmt-a/one': 'x',
  'fmt-a/short': 'Sh0rt!pw',
  'fmt-a/medium': 'Correct-Horse-Battery-Staple-9!',
  'fmt-b/long': 'L0ng#'.repeat(40),
  'fmt-b/max': '\u20ac'.repeat(256),
};

let env: TestWorkflowEnvironment;
let h: Harness;

beforeAll(async () => {
  env = await startTimeSkippingServer();
  h = await createHarness({ env, kek: emulatorKek(), startSingletons: false });
});

afterAll(async () => {
  await h?.close();
  await env?.teardown();
});

async function provide(tenantId: string, ancId: string, password: string, mode: 'create' | 'update' = 'create') {
  const passwordEnvelope = await sealPasswordEnvelope({
    password,
    kek: await describeCurrentKek(h.deps),
    tenantId,
    ancId,
    op: mode,
  });
  return provideCredential(h.deps, {
    mode,
    tenantId,
    ancId,
    spec: mode === 'create' ? spec : undefined,
    passwordEnvelope,
    receivedAtMs: Date.now(),
    nowMs: Date.now(),
    operationId: `seed/${randomUUID()}`,
    actor: 'admin@contoso.test',
    workflowId: 'seed',
  });
}

interface CredRow {
  tenant_id: string;
  anc_id: string;
  version: number;
  tenant_key_version: number;
  sealed: Buffer;
  resealed_at: Date | null;
  wrapped_key: Buffer;
  kek_version: string;
}

async function credentials(): Promise<CredRow[]> {
  const { rows } = await h.db.pool.query<CredRow>(
    `SELECT c.tenant_id, c.anc_id, c.version, c.tenant_key_version, c.sealed, c.resealed_at, k.wrapped_key, k.kek_version
       FROM anc_credentials c JOIN tenant_keys k ON k.tenant_id = c.tenant_id AND k.version = c.tenant_key_version
      ORDER BY 1, 2, 3`,
  );
  return rows;
}

async function openRow(r: CredRow): Promise<string> {
  const key = await h.deps.kek.provider.unwrap(r.wrapped_key, r.kek_version);
  const ctx = { tenantKey: key, keyVersion: r.tenant_key_version, tenantId: r.tenant_id, ancId: r.anc_id };
  return openCredential({ ...ctx, sealed: r.sealed });
}

/** Rewrites a stored credential in format 1, as the service wrote it before format 2. */
async function downgradeToFormat1(r: CredRow): Promise<void> {
  const key = await h.deps.kek.provider.unwrap(r.wrapped_key, r.kek_version);
  const ctx = { tenantKey: key, keyVersion: r.tenant_key_version, tenantId: r.tenant_id, ancId: r.anc_id };
  const plaintext = openCredential({ ...ctx, sealed: r.sealed });
  const v1 = _sealWithIvForTestVectors({ ...ctx, plaintext }, randomBytes(16), 1);
  await h.db.pool.query(
    'UPDATE anc_credentials SET sealed = $4 WHERE tenant_id = $1 AND anc_id = $2 AND version = $3',
    [r.tenant_id, r.anc_id, r.version, v1],
  );
}

const rotate = (workflowId: string): Promise<RotationProgress> =>
  env.client.workflow.execute<typeof rotationWorkflow>('rotationWorkflow', {
    taskQueue: h.taskQueue,
    workflowId,
    args: [{ batchSize: 1 }], // one tenant per batch: the cursor is exercised
    workflowExecutionTimeout: '1 hour',
  });

describe('sealed format 2 in the database, and the rotation upgrading format 1', () => {
  it('new credentials are stored in format 2, all the same size whatever the password length', async () => {
    for (const [id, password] of Object.entries(PASSWORDS)) {
      const [tenantId, ancId] = id.split('/') as [string, string];
      await provide(tenantId, ancId, password);
    }
    const rows = await credentials();
    expect(rows).toHaveLength(5);
    expect(new Set(rows.map((r) => r.sealed.length))).toEqual(new Set([V2_SEALED_BYTES]));
    expect(rows.map((r) => r.sealed[0])).toEqual([2, 2, 2, 2, 2]);
    const { rows: sizes } = await h.db.pool.query(
      'SELECT DISTINCT octet_length(sealed)::int AS n FROM anc_credentials',
    );
    expect(sizes).toEqual([{ n: V2_SEALED_BYTES }]);
  });

  it('format 1 rows still open; the rotation re-seals them to format 2 under the same key version', async () => {
    // An update, so one ANC has two credential versions.
    await provide('fmt-a', 'short', 'Sh0rt!pw-2', 'update');
    const expected: Record<string, string> = {};
    for (const r of await credentials()) {
      await downgradeToFormat1(r);
      expected[`${r.tenant_id}/${r.anc_id}/${r.version}`] = await openRow(r);
    }
    const before = await credentials();
    expect(before.map((r) => r.sealed[0])).toEqual([1, 1, 1, 1, 1, 1]);
    // Format 1 reveals the length: the sizes differ.
    expect(new Set(before.map((r) => r.sealed.length)).size).toBeGreaterThan(2);
    for (const r of before) expect(await openRow(r)).toBe(expected[`${r.tenant_id}/${r.anc_id}/${r.version}`]);

    // The index the rotation's query can use.
    const client = await h.db.pool.connect();
    try {
      await client.query('SET enable_seqscan = off');
      const { rows: plan } = await client.query(
        `EXPLAIN SELECT DISTINCT tenant_id FROM anc_credentials WHERE get_byte(sealed, 0) = 1 ORDER BY tenant_id`,
      );
      expect(plan.map((p) => p['QUERY PLAN']).join('\n')).toContain('anc_credentials_sealed_format_1');
    } finally {
      await client.query('RESET enable_seqscan');
      client.release();
    }

    const w = await h.startWorker();
    const result = await rotate('rotation-format-1');
    const history = await env.client.workflow.getHandle('rotation-format-1').fetchHistory();
    // RECORD_HISTORIES=1 saves this run for test/replay.test.ts (another value: the file's name).
    const record = process.env.RECORD_HISTORIES;
    if (record) {
      mkdirSync(`${ROOT}test/histories`, { recursive: true });
      const name = record === '1' ? 'rotation-reseal-format-1' : record;
      writeFileSync(`${ROOT}test/histories/${name}.json`, historyJson(history));
    }
    expect(result.phase).toBe('done');
    expect(result.counts.credentialsUpgraded).toBe(6);
    expect(result.counts.hsmUnwraps).toBe(2); // one tenant key version per tenant
    expect(result.failures).toEqual([]);

    const after = await credentials();
    expect(after.map((r) => r.sealed[0])).toEqual([2, 2, 2, 2, 2, 2]);
    expect(new Set(after.map((r) => r.sealed.length))).toEqual(new Set([V2_SEALED_BYTES]));
    expect(after.map((r) => r.tenant_key_version)).toEqual(before.map((r) => r.tenant_key_version));
    for (const r of after) {
      expect(r.resealed_at).not.toBeNull();
      expect(await openRow(r)).toBe(expected[`${r.tenant_id}/${r.anc_id}/${r.version}`]);
    }
    const { rows: audit } = await h.db.pool.query(
      `SELECT tenant_id, details FROM audit_log WHERE event = 'credential.resealed' ORDER BY tenant_id`,
    );
    expect(audit).toEqual([
      { tenant_id: 'fmt-a', details: { fromFormat: 1, toFormat: 2, credentialsResealed: 4 } },
      { tenant_id: 'fmt-b', details: { fromFormat: 1, toFormat: 2, credentialsResealed: 2 } },
    ]);
    expect(await verifyAuditChain(h.db.pool, h.deps.config.auditMacKey)).toMatchObject({ ok: true });

    // The history records the patch marker and no workflow task ever failed.
    expect(countEvents(history, 'EVENT_TYPE_MARKER_RECORDED')).toBeGreaterThan(0);
    expect(countEvents(history, 'EVENT_TYPE_WORKFLOW_TASK_FAILED')).toBe(0);

    // Nothing is left: a second run (and the activity called directly) finds no format-1 row.
    const again = await rotate('rotation-format-1-again');
    expect(again.counts).toMatchObject({ credentialsUpgraded: 0, hsmUnwraps: 0 });
    const direct = await resealFormat1Credentials(h.deps, {
      after: null,
      limit: 100,
      concurrency: 4,
      nowMs: Date.now(),
      rotationId: 'direct',
      actor: 'test',
    });
    expect(direct).toMatchObject({ tenants: 0, resealed: 0, hsmUnwraps: 0, done: true });
    await w.stop();
  });

  it('a format-1 row that does not open is reported and left as it is; the others are upgraded', async () => {
    const stored = await provide('fmt-c', 'good', 'G00d-password');
    await provide('fmt-d', 'bad', 'B4d-password');
    const rows = (await credentials()).filter((r) => r.tenant_id === 'fmt-c' || r.tenant_id === 'fmt-d');
    for (const r of rows) await downgradeToFormat1(r);
    // Tamper with fmt-d's stored bytes (the tag's last byte).
    await h.db.pool.query(
      `UPDATE anc_credentials SET sealed = overlay(sealed placing '\\xee'::bytea from octet_length(sealed))
        WHERE tenant_id = 'fmt-d'`,
    );
    const result = await resealFormat1Credentials(h.deps, {
      after: null,
      limit: 100,
      concurrency: 4,
      nowMs: Date.now(),
      rotationId: 'direct',
      actor: 'test',
    });
    expect(result.resealed).toBe(1);
    expect(result.failed).toEqual([{ phase: 'reseal', tenantId: 'fmt-d', reason: 'CredentialOpenFailed' }]);
    const after = (await credentials()).filter((r) => r.tenant_id === 'fmt-c' || r.tenant_id === 'fmt-d');
    expect(after.map((r) => [r.tenant_id, r.sealed[0]])).toEqual([
      ['fmt-c', 2],
      ['fmt-d', 1],
    ]);
    expect(await openRow(after[0] as CredRow)).toBe('G00d-password');
    expect(stored.credentialVersion).toBe(1);
  });
});
