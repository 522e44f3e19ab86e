import { describe, expect, it } from 'vitest';
import { loadConfig } from '../worker/config';
import { CONFIG_BASE as base, configProblems as problems } from './support/config';

describe('worker configuration: several vaults', () => {
  it('without KEYVAULT_VAULTS: one vault, "primary", the KEYVAULT_URL one (or the local KEK)', () => {
    const single = loadConfig({ ...base, KEYVAULT_URL: 'https://a.vault.azure.net' });
    expect(single.vaults).toEqual([{ id: 'primary', kek: single.kek, closed: false }]);
    const local = loadConfig(base);
    expect(local.vaults.map((v) => [v.id, v.kek.kind])).toEqual([['primary', 'local-dev']]);
  });

  it('reads the list: each vault its own URL, the same key settings and budget each', () => {
    const config = loadConfig({
      ...base,
      KEYVAULT_VAULTS: 'primary=https://a.vault.azure.net, eu2=https://b.vault.azure.net',
      KEYVAULT_CLOSED_VAULTS: 'primary',
      KEYVAULT_KEY_NAME: 'kek-x',
      KEYVAULT_HSM_OPS_PER_SECOND: '20',
    });
    expect(config.vaults.map((v) => [v.id, v.kek.kind === 'azure-key-vault' && v.kek.vaultUrl, v.closed])).toEqual([
      ['primary', 'https://a.vault.azure.net', true],
      ['eu2', 'https://b.vault.azure.net', false],
    ]);
    for (const v of config.vaults) {
      expect(v.kek).toMatchObject({ kind: 'azure-key-vault', keyName: 'kek-x', hsmOpsPerSecond: 20 });
    }
    expect(config.kek).toBe(config.vaults[0]?.kek);
    expect(config.hsmQueueActivitiesPerSecond).toBe(8);
    // Half a second of the queue's rate in flight per process and vault, and what a process can release at once.
    expect(config.hsmWorkerSlots).toBe(4);
    expect(
      loadConfig({ ...base, KEYVAULT_URL: 'https://a.vault.azure.net', HSM_WORKER_SLOTS: '7' }).hsmWorkerSlots,
    ).toBe(7);
  });

  it('refuses a malformed list, a list not led by primary, unknown or all-closed vaults', () => {
    expect(problems({ ...base, KEYVAULT_VAULTS: 'primary=https://a, Bad_Id=https://b' })[0]).toMatch(
      /^KEYVAULT_VAULTS entry "Bad_Id=https:\/\/b" must look like id=https:\/\//,
    );
    expect(problems({ ...base, KEYVAULT_VAULTS: 'primary=https://a,eu2=http://b' })[0]).toMatch(/^KEYVAULT_VAULTS /);
    expect(problems({ ...base, KEYVAULT_VAULTS: 'primary=https://a,primary=https://b' })).toEqual([
      'KEYVAULT_VAULTS names vault "primary" twice',
    ]);
    expect(problems({ ...base, KEYVAULT_VAULTS: 'eu2=https://b' })[0]).toMatch(
      /^KEYVAULT_VAULTS must list "primary" first/,
    );
    expect(
      problems({ ...base, KEYVAULT_URL: 'https://other', KEYVAULT_VAULTS: 'primary=https://a,eu2=https://b' }),
    ).toEqual(['KEYVAULT_URL must be unset or equal to the primary vault of KEYVAULT_VAULTS']);
    expect(
      problems({ ...base, KEYVAULT_VAULTS: 'primary=https://a,eu2=https://b', KEYVAULT_CLOSED_VAULTS: 'us3' }),
    ).toEqual(['KEYVAULT_CLOSED_VAULTS names "us3", which is not a configured vault']);
    expect(
      problems({ ...base, KEYVAULT_VAULTS: 'primary=https://a,eu2=https://b', KEYVAULT_CLOSED_VAULTS: 'primary,eu2' }),
    ).toEqual(['KEYVAULT_CLOSED_VAULTS must leave at least one vault open to new tenants']);
    // Production accepts the list in place of KEYVAULT_URL.
    expect(() =>
      loadConfig({
        ...base,
        NODE_ENV: 'production',
        AUDIT_MAC_KEY: Buffer.alloc(32, 9).toString('base64'),
        KEYVAULT_VAULTS: 'primary=https://a,eu2=https://b',
      }),
    ).not.toThrow();
  });
});
