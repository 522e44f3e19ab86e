import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ActivityDeps } from '../activities/deps';
import { rendezvousVault } from '../client/placement';
import { hsmTaskQueue } from '../common/hsm';
import { openStoredCredential } from './support/credentials';
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
    expect(hsmTaskQueue('q')).toBe('q-hsm');
    expect(hsmTaskQueue('q', 'eu2')).toBe('q-hsm-eu2');
  });

  it.each(VAULTS)(
    'creates and updates a tenant placed on %s, its Key Vault calls at its own emulator',
    async (vault) => {
      const tenantId = tenantOn(vault);
      const other = vault === 'primary' ? 'eu2' : 'primary';
      await Promise.all(Object.values(kv).map((e) => e.reset()));
      // The SDK seals for the first vault here (the envelope's vault is the primary one).
      const created = await h.sdk.createAnc({ tenantId, ancId: 'anc-1', ...spec, password: 'First#Pass1', actor });
      expect(created.state).toBe('active');
      expect(await vaultOf(tenantId)).toBe(vault);
      expect(await openStoredCredential({ db: h.db, deps: depsOf(vault) }, tenantId, 'anc-1', 1)).toBe('First#Pass1');
      const updated = await h.sdk.updateAncPassword(tenantId, 'anc-1', 'Second#Pass2', { actor });
      expect(updated.vaultId).toBe(vault);
      expect(await openStoredCredential({ db: h.db, deps: depsOf(vault) }, tenantId, 'anc-1', 2)).toBe('Second#Pass2');
      const calls = await unwraps(kv);
      if (vault === 'primary') {
        // Create: open the envelope (the new key is wrapped locally). Update: open + tenant key.
        expect(calls.primary).toBeGreaterThanOrEqual(3);
        expect(calls.eu2).toBe(0);
      } else {
        // The envelopes were sealed for primary: each is opened there once and sealed again for eu2.
        expect(calls.primary).toBe(2);
        expect(calls.eu2).toBeGreaterThanOrEqual(3);
      }
      // The tenant key is wrapped by the tenant's vault's KEK, not the other's.
      await expect(openStoredCredential({ db: h.db, deps: depsOf(other) }, tenantId, 'anc-1', 1)).rejects.toThrow();
    },
  );
});
