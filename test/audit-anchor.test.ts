/**
 * Audit anchors: the chain's head signed with a Key Vault key (the stack's emulator, its sign
 * operation) and kept in the audit-anchor workflow on the Temporal dev server. Deleting the newest
 * records keeps the MAC chain valid, but `anc audit verify` (the real CLI) reports the chain shorter
 * than its last anchor. A rotation run anchors the head too.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkAuditAnchor, KeyVaultAnchorSigner, verifyAnchorSignature } from '../activities/audit-anchor';
import { appendAudit, verifyAuditChain } from '../activities/db/audit';
import { inTransaction } from '../activities/db/pool';
import { AUDIT_ANCHOR_WORKFLOW_ID } from '../common/ids';
import type { AuditAnchor } from '../common/types';
import { emulatorCredential } from '../worker/kek';
import { startAuditAnchor } from '../worker/singletons';
import { getAuditAnchorsQuery } from '../workflows/definitions';
import type { rotationWorkflow } from '../workflows/rotation';
import { createHarness, startDevServer, type Harness } from './support/harness';
import { ROOT, stackEnv } from './support/stack';

let env: TestWorkflowEnvironment;
let h: Harness;

beforeAll(async () => {
  env = await startDevServer();
  h = await createHarness({ env, startSingletons: false });
  const stack = stackEnv();
  const ca = readFileSync(stack.KEYVAULT_CA, 'utf8');
  h.deps.auditAnchor = new KeyVaultAnchorSigner({
    vaultUrl: stack.KEYVAULT_URL,
    keyName: `audit-anchor-${randomUUID().slice(0, 8)}`,
    credential: emulatorCredential,
    clientOptions: () => ({ disableChallengeResourceVerification: true, tlsOptions: { ca } }),
  });
  await h.startWorker();
  await startAuditAnchor(env.client, h.taskQueue, 60);
}, 120_000);

afterAll(async () => {
  await h?.close();
  await env?.teardown();
});

async function append(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await inTransaction(h.db.pool, (client) =>
      appendAudit(client, h.deps.config.auditMacKey, {
        eventKey: `test/${randomUUID()}`,
        event: 'anc.health_checked',
        at: new Date(),
        tenantId: 'contoso',
        ancId: 'hq',
        actor: 'tester',
        outcome: 'success',
      }),
    );
  }
}

async function head(): Promise<number> {
  const { rows } = await h.db.pool.query('SELECT coalesce(max(seq), 0)::int AS n FROM audit_log');
  return rows[0].n as number;
}

const anchorHandle = () => env.client.workflow.getHandle(AUDIT_ANCHOR_WORKFLOW_ID);

async function anchoredAt(seq: number): Promise<AuditAnchor> {
  for (let i = 0; i < 100; i++) {
    const last = (await anchorHandle().query(getAuditAnchorsQuery)).at(-1);
    if (last?.seq === seq) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no anchor at seq ${seq}`);
}

function auditVerify(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(join(ROOT, 'node_modules/.bin/tsx'), [join(ROOT, 'client/cli.ts'), 'audit', 'verify'], {
    cwd: ROOT,
    env: {
      ...process.env,
      DATABASE_URL: h.db.url,
      AUDIT_MAC_KEY: h.deps.config.auditMacKey.toString('base64'),
      TEMPORAL_ADDRESS: env.address,
      TEMPORAL_NAMESPACE: env.namespace ?? 'default',
      TEMPORAL_TASK_QUEUE: h.taskQueue,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('audit anchors outside PostgreSQL (dev server, Key Vault emulator signing)', () => {
  it('anchors the head on request and at every rotation run, signed by the Key Vault key', async () => {
    await append(5);
    await anchorHandle().signal('anchorAudit');
    const anchor = await anchoredAt(5);
    expect(anchor.kid).toMatch(/\/keys\/audit-anchor-/);
    expect(verifyAnchorSignature(anchor)).toBe(true);
    expect(verifyAnchorSignature({ ...anchor, seq: 4 })).toBe(false);
    expect(await checkAuditAnchor(h.db.pool, { ...anchor, seq: 4 })).toMatchObject({
      ok: false,
      reason: 'anchor-signature',
    });

    // A rotation run (nothing due) anchors the head as it finishes.
    await append(2);
    await env.client.workflow.execute<typeof rotationWorkflow>('rotationWorkflow', {
      taskQueue: h.taskQueue,
      workflowId: `rotation-${randomUUID()}`,
      args: [{}],
    });
    await anchoredAt(await head());

    const ok = await auditVerify();
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/OK: audit chain verified, 7 records/);
    expect(ok.stdout).toMatch(/OK: last anchor \(record 7,/);
  });

  it('reports a chain shorter than its last anchor after the newest records are deleted', async () => {
    await append(2); // records 8 and 9: after the last anchor, inside the window that can go unseen
    expect((await auditVerify()).code).toBe(0);

    // The database's owner removes the newest records, past the anchored one.
    await h.db.pool.query('ALTER TABLE audit_log DISABLE TRIGGER USER');
    await h.db.pool.query('DELETE FROM audit_log WHERE seq > 5');
    await h.db.pool.query('ALTER TABLE audit_log ENABLE TRIGGER USER');

    // The MAC chain alone still verifies: that is the gap the anchor closes.
    expect(await verifyAuditChain(h.db.pool, h.deps.config.auditMacKey)).toEqual({ ok: true, records: 5 });
    const broken = await auditVerify();
    expect(broken.code).toBe(4);
    expect(broken.stdout).toMatch(/the chain ends at record 5, shorter than its last anchor at record 7/);
  });
});
