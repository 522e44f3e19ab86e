import { writeFileSync } from 'node:fs';
import { WithStartWorkflowOperation, WorkflowIdConflictPolicy } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ActivityDeps } from '../activities/deps';
import { VaultSet } from '../activities/kek/vaults';
import { rendezvousVault } from '../client/placement';
import { sealPasswordEnvelope } from '../client/envelope';
import { hsmTaskQueue } from '../common/hsm';
import { ancWorkflowId, KEYRING_WORKFLOW_ID } from '../common/ids';
import { WORKFLOWS_PATH } from '../worker/workflows-path';
import type { ancWorkflow } from '../workflows/anc';
import type { rotationWorkflow } from '../workflows/rotation';
import { createAncUpdate, getPublicKekQuery, updateAncPasswordUpdate } from '../workflows/definitions';
import { historyAsJson } from './support/history';
import { ROOT } from './support/stack';
import { openStoredCredential } from './support/credentials';
import { dumpAllTables } from './support/db';
import { azureEmulatorKek, startEmulatorProcess, type EmulatorProcess } from './support/emulator-process';
import { createHarness, startDevServer, type Harness } from './support/harness';

const spec = {
  displayName: 'Contoso HQ',
  adDomainName: 'corp.contoso.test',
  adDomainUsername: 'svcDomainJoin@corp.contoso.test',
};
const actor = 'admin@contoso.test';
const VAULTS = ['primary', 'eu2'];
let seq = 0;

/** A fresh tenant id that the placement rule puts on `vault`. */
function tenantOn(vault: string): string {
  for (;;) {
    const id = `t-${vault}-${Date.now().toString(36)}-${(seq++).toString(36)}`;
    if (rendezvousVault(id, VAULTS) === vault) return id;
  }
}

/** Unwrap calls each emulator has seen since the last reset (one per HSM private-key operation). */
async function unwraps(kv: Record<string, EmulatorProcess>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [id, emulator] of Object.entries(kv)) out[id] = (await emulator.stats()).operations.unwrapkey ?? 0;
  return out;
}

/**
 * Tenants spread over two vaults, each a Key Vault emulator of its own (two processes, so each
 * vault's calls are counted at its own emulator, apart from other test files' traffic): placement
 * by the rule, create and update on each, a client sealing for a vault the tenant is not on.
 */
describe('tenants on two vaults (dev server, PostgreSQL, two Key Vault emulators)', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  const kv: Record<string, EmulatorProcess> = {};

  beforeAll(async () => {
    let primary: EmulatorProcess;
    let eu2: EmulatorProcess;
    [env, primary, eu2] = await Promise.all([startDevServer(), startEmulatorProcess(), startEmulatorProcess()]);
    kv.primary = primary;
    kv.eu2 = eu2;
    h = await createHarness({
      env,
      kek: azureEmulatorKek(primary),
      vaults: [{ id: 'eu2', kek: azureEmulatorKek(eu2) }],
    });
    await h.startWorker();
  });
  afterAll(async () => {
    await h?.close();
    await env?.teardown();
    await Promise.all(Object.values(kv).map((e) => e.stop()));
  });

  const vaultOf = async (tenantId: string) =>
    (await h.db.pool.query<{ vault_id: string }>('SELECT vault_id FROM tenants WHERE tenant_id = $1', [tenantId]))
      .rows[0]?.vault_id;
  /** The vault's own activities' view, to open a stored credential with that vault's KEK. */
  const depsOf = (vaultId: string): Pick<ActivityDeps, 'kek'> => ({
    kek: (h.deps.vaults?.get(vaultId).kek ?? h.deps.kek) as ActivityDeps['kek'],
  });

  it('places new tenants by rendezvous hashing, uniformly and stably', () => {
    const counts: Record<string, number> = { primary: 0, eu2: 0 };
    for (let i = 0; i < 2000; i++) counts[rendezvousVault(`tenant-${i}`, VAULTS)]! += 1;
    // Uniform: each vault gets about half (binomial, 2000 draws: 5 sigma is about 112).
    expect(counts.primary).toBeGreaterThan(880);
    expect(counts.eu2).toBeGreaterThan(880);
    // Stable, and adding a vault moves only the tenants the new vault wins.
    let moved = 0;
    for (let i = 0; i < 2000; i++) {
      const before = rendezvousVault(`tenant-${i}`, VAULTS);
      expect(rendezvousVault(`tenant-${i}`, [...VAULTS].reverse())).toBe(before);
      const after = rendezvousVault(`tenant-${i}`, [...VAULTS, 'us3']);
      if (after !== before) {
        expect(after).toBe('us3');
        moved += 1;
      }
    }
    expect(moved).toBeGreaterThan(500);
    expect(moved).toBeLessThan(834);
    // A closed vault gets no new tenants.
    const kek = h.deps.kek;
    const closed = new VaultSet(
      [
        { id: 'primary', kek },
        { id: 'eu2', kek },
      ],
      ['eu2'],
    );
    expect(closed.openIds).toEqual(['primary']);
    for (let i = 0; i < 50; i++) expect(closed.place(`tenant-${i}`)).toBe('primary');
    expect(() => new VaultSet([{ id: 'primary', kek }], ['primary'])).toThrow(RangeError);
    expect(hsmTaskQueue('q')).toBe('q-hsm');
    expect(hsmTaskQueue('q', 'eu2')).toBe('q-hsm-eu2');
  });

  it("the keyring publishes every vault's KEK and the open vaults; the old query the first vault's", async () => {
    const ring = await h.sdk.vaultKeks(true);
    expect(ring.openVaultIds).toEqual(VAULTS);
    expect(ring.vaults.map((v) => v.vaultId)).toEqual(VAULTS);
    for (const { vaultId, kek } of ring.vaults) {
      const current = await (h.deps.vaults?.get(vaultId).kek ?? h.deps.kek).current();
      expect(kek.version).toBe(current.version);
      expect(kek.publicJwk.n).toBe(current.publicJwk.n);
    }
    expect(ring.vaults[0]?.kek.publicJwk.n).not.toBe(ring.vaults[1]?.kek.publicJwk.n);
    const old = await env.client.workflow.getHandle(KEYRING_WORKFLOW_ID).query(getPublicKekQuery);
    expect(old).toEqual(ring.vaults[0]?.kek);
    const history = await env.client.workflow.getHandle(KEYRING_WORKFLOW_ID).fetchHistory();
    await Worker.runReplayHistory({ workflowsPath: WORKFLOWS_PATH }, history, KEYRING_WORKFLOW_ID);
    if (process.env.RECORD_HISTORIES)
      writeFileSync(`${ROOT}test/histories/keyring-vaults.json`, historyAsJson(history));
  });

  it.each(VAULTS)(
    'creates, updates and checks a tenant placed on %s, its Key Vault calls at its own emulator only',
    async (vault) => {
      const tenantId = tenantOn(vault);
      const other = vault === 'primary' ? 'eu2' : 'primary';
      expect(await h.sdk.vaultFor(tenantId)).toBe(vault);
      await Promise.all(Object.values(kv).map((e) => e.reset()));
      const created = await h.sdk.createAnc({ tenantId, ancId: 'anc-1', ...spec, password: 'First#Pass1', actor });
      expect(created.state).toBe('active');
      expect(created.vaultId).toBe(vault);
      expect(await vaultOf(tenantId)).toBe(vault);
      const updated = await h.sdk.updateAncPassword(tenantId, 'anc-1', 'Second#Pass2', { actor });
      expect(updated.vaultId).toBe(vault);
      const checked = await h.sdk.runHealthChecks(tenantId, 'anc-1', { actor });
      expect(checked.status).not.toBe('running');
      expect(checked.errorType).not.toBe('CredentialUnavailable');
      const calls = await unwraps(kv);
      // Create: open the envelope (the new key is wrapped locally); update: open + tenant key; the
      // checks (after each change, and the one asked for): the tenant key each, unless cached.
      expect(calls[vault]).toBeGreaterThanOrEqual(4);
      expect(calls[other]).toBe(0);
      expect(await openStoredCredential({ db: h.db, deps: depsOf(vault) }, tenantId, 'anc-1', 1)).toBe('First#Pass1');
      expect(await openStoredCredential({ db: h.db, deps: depsOf(vault) }, tenantId, 'anc-1', 2)).toBe('Second#Pass2');
      // The tenant key is wrapped by the tenant's vault's KEK, not the other's.
      await expect(openStoredCredential({ db: h.db, deps: depsOf(other) }, tenantId, 'anc-1', 1)).rejects.toThrow();
    },
  );

  it('a client that seals for a vault the tenant is not on still succeeds: the service re-seals', async () => {
    const tenantId = tenantOn('eu2');
    const primaryKek = (await h.sdk.vaultKeks()).vaults[0]!.kek;
    // What a client from before several vaults sends: sealed for the first vault, no vault named.
    const envelope = (ancId: string, op: 'create' | 'update', password: string) =>
      sealPasswordEnvelope({ password, kek: primaryKek, tenantId, ancId, op });
    await Promise.all(Object.values(kv).map((e) => e.reset()));
    const created = await env.client.workflow.executeUpdateWithStart(createAncUpdate, {
      args: [{ ...spec, actor, passwordEnvelope: await envelope('anc-w', 'create', 'Wrong#Vault1') }],
      startWorkflowOperation: new WithStartWorkflowOperation<typeof ancWorkflow>('ancWorkflow', {
        workflowId: ancWorkflowId(tenantId, 'anc-w'),
        taskQueue: h.taskQueue,
        args: [{ tenantId, ancId: 'anc-w' }],
        workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
      }),
    });
    expect(created.vaultId).toBe('eu2');
    const handle = env.client.workflow.getHandle(ancWorkflowId(tenantId, 'anc-w'));
    const stored = await handle.executeUpdate(updateAncPasswordUpdate, {
      args: [{ actor, passwordEnvelope: await envelope('anc-w', 'update', 'Wrong#Vault2') }],
    });
    expect(stored).toMatchObject({ credentialVersion: 2, vaultId: 'eu2' });
    const calls = await unwraps(kv);
    // Each envelope is opened once in the vault it was sealed for (the extra HSM call), then again,
    // sealed for eu2, where the tenant is.
    expect(calls.primary).toBe(2);
    expect(calls.eu2).toBeGreaterThanOrEqual(3);
    expect(await vaultOf(tenantId)).toBe('eu2');
    expect(await openStoredCredential({ db: h.db, deps: depsOf('eu2') }, tenantId, 'anc-w', 2)).toBe('Wrong#Vault2');
    // The history holds ciphertext only, and it replays.
    const history = await handle.fetchHistory();
    expect(JSON.stringify(history)).not.toContain('Wrong#Vault');
    await Worker.runReplayHistory({ workflowsPath: WORKFLOWS_PATH }, history, ancWorkflowId(tenantId, 'anc-w'));
    if (process.env.RECORD_HISTORIES)
      writeFileSync(`${ROOT}test/histories/anc-vaults-reseal.json`, historyAsJson(history));
  });

  it("rotates per vault: a new eu2 KEK version re-wraps the eu2 tenants' keys on eu2 only", async () => {
    const eu2 = h.deps.vaults!.get('eu2').kek;
    const keysOn = async (vaultId: string) =>
      (
        await h.db.pool.query<{ tenant_id: string; version: number; kek_version: string }>(
          `SELECT k.tenant_id, k.version, k.kek_version FROM tenant_keys k JOIN tenants t USING (tenant_id)
            WHERE t.vault_id = $1 ORDER BY 1, 2`,
          [vaultId],
        )
      ).rows;
    const primaryBefore = await keysOn('primary');
    const eu2Before = await keysOn('eu2');
    expect(primaryBefore.length).toBeGreaterThan(0);
    expect(eu2Before.length).toBeGreaterThan(0);
    // A new eu2 KEK version (as a renewal makes): every eu2 tenant key is now stale.
    const next = await eu2.provider.createVersion(new Date(Date.now() + 365 * 86_400_000));
    eu2.invalidate();
    await Promise.all(Object.values(kv).map((e) => e.reset()));
    const rotationId = `rotation-vaults-${Date.now()}`;
    const progress = await env.client.workflow.execute<typeof rotationWorkflow>('rotationWorkflow', {
      taskQueue: h.taskQueue,
      workflowId: rotationId,
      args: [{ kekGraceSeconds: 0, actor: 'vault-test' }],
    });
    for (const id of [rotationId, `${rotationId}/vault-eu2`]) {
      const history = await env.client.workflow.getHandle(id).fetchHistory();
      await Worker.runReplayHistory({ workflowsPath: WORKFLOWS_PATH }, history, id);
      if (process.env.RECORD_HISTORIES)
        writeFileSync(
          `${ROOT}test/histories/rotation-vaults${id === rotationId ? '' : '-child'}.json`,
          JSON.stringify({ workflowId: id, ...(JSON.parse(historyAsJson(history)) as object) }, null, 2),
        );
    }
    expect(progress.phase).toBe('done');
    expect(progress.counts.rewrapped).toBe(0);
    expect(progress.vaults?.eu2).toMatchObject({ phase: 'done', kekVersion: next.version });
    expect(progress.vaults?.eu2?.counts.rewrapped).toBe(eu2Before.length);
    // The primary vault's keys are untouched; eu2's all wrapped by its new version.
    expect(await keysOn('primary')).toEqual(primaryBefore);
    expect((await keysOn('eu2')).map((k) => k.kek_version)).toEqual(eu2Before.map(() => next.version));
    const calls = await unwraps(kv);
    expect(calls.primary).toBe(0);
    expect(calls.eu2).toBe(eu2Before.length);
    // Every credential of an eu2 tenant still opens, with eu2's KEK.
    const creds = await h.db.pool.query<{ tenant_id: string; anc_id: string; version: number }>(
      `SELECT c.tenant_id, c.anc_id, c.version FROM anc_credentials c JOIN tenants t USING (tenant_id)
        WHERE t.vault_id = 'eu2'`,
    );
    expect(creds.rows.length).toBeGreaterThan(0);
    for (const c of creds.rows) {
      expect(await openStoredCredential({ db: h.db, deps: depsOf('eu2') }, c.tenant_id, c.anc_id, c.version)).toMatch(
        /#/,
      );
    }
  });

  it('moves a tenant: keys re-wrapped for the new vault, checks and updates there, the old vault sees no more calls', async () => {
    const tenantId = tenantOn('primary');
    await h.sdk.createAnc({ tenantId, ancId: 'anc-m', ...spec, password: 'Before#Move1', actor });
    await h.sdk.runHealthChecks(tenantId, 'anc-m', { actor });
    await Promise.all(Object.values(kv).map((e) => e.reset()));
    const moved = await h.sdk.moveTenant(tenantId, 'eu2', { actor });
    expect(moved).toEqual({ fromVault: 'primary', toVault: 'eu2', tenantKeys: 1 });
    expect(await vaultOf(tenantId)).toBe('eu2');
    // One unwrap in the old vault per tenant key; the wrap for eu2 is local.
    expect(await unwraps(kv)).toEqual({ primary: 1, eu2: 0 });
    expect(await openStoredCredential({ db: h.db, deps: depsOf('eu2') }, tenantId, 'anc-m', 1)).toBe('Before#Move1');
    const audit = await h.db.pool.query(
      `SELECT details FROM audit_log WHERE event = 'tenant.moved' AND tenant_id = $1`,
      [tenantId],
    );
    expect(audit.rows[0]?.details).toMatchObject({ fromVault: 'primary', toVault: 'eu2', tenantKeys: 1 });
    // Moving again to where it is: nothing to do.
    expect(await h.sdk.moveTenant(tenantId, 'eu2', { actor })).toMatchObject({ tenantKeys: 0 });
    await expect(h.sdk.moveTenant(tenantId, 'nowhere', { actor })).rejects.toMatchObject({ type: 'VaultUnknown' });

    await Promise.all(Object.values(kv).map((e) => e.reset()));
    // The ANC workflow still thinks "primary": its check is answered there without an HSM call and
    // runs again on eu2.
    const checked = await h.sdk.runHealthChecks(tenantId, 'anc-m', { actor });
    expect(checked.errorType).not.toBe('CredentialUnavailable');
    const stored = await h.sdk.updateAncPassword(tenantId, 'anc-m', 'After#Move2', { actor });
    expect(stored.vaultId).toBe('eu2');
    const again = await h.sdk.runHealthChecks(tenantId, 'anc-m', { actor });
    expect(again.errorType).not.toBe('CredentialUnavailable');
    expect((await h.sdk.getAnc(tenantId, 'anc-m')).vaultId).toBe('eu2');
    const calls = await unwraps(kv);
    expect(calls.primary).toBe(0);
    expect(calls.eu2).toBeGreaterThanOrEqual(3);
    expect(await openStoredCredential({ db: h.db, deps: depsOf('eu2') }, tenantId, 'anc-m', 2)).toBe('After#Move2');
    // The histories hold no password, and the ANC's replays.
    const history = await env.client.workflow.getHandle(ancWorkflowId(tenantId, 'anc-m')).fetchHistory();
    expect(JSON.stringify(history)).not.toMatch(/Before#Move|After#Move/);
    await Worker.runReplayHistory({ workflowsPath: WORKFLOWS_PATH }, history, ancWorkflowId(tenantId, 'anc-m'));
    if (process.env.RECORD_HISTORIES)
      writeFileSync(`${ROOT}test/histories/anc-vaults-move.json`, historyAsJson(history));
  });

  it('no password of these tests is anywhere in the logs or the database', async () => {
    const passwords = ['First#Pass1', 'Second#Pass2', 'Wrong#Vault1', 'Wrong#Vault2', 'Before#Move1', 'After#Move2'];
    const logs = h.logs.text();
    const tables = await dumpAllTables(h.db.pool);
    expect(logs.length).toBeGreaterThan(0);
    expect(tables).toContain('tenant.moved');
    for (const p of passwords) {
      expect(logs).not.toContain(p);
      expect(tables).not.toContain(p);
    }
  });
});
