/**
 * One contract for every KekProvider, run against:
 *   - AzureKeyVaultKekProvider talking HTTPS to the Key Vault emulator (stack/keyvault-emulator), a fresh key name
 *     per test;
 *   - LocalDevKekProvider on a fresh folder per test.
 * Then the Azure-only behaviour: retries on 429/503 (driven through the emulator's fault injection) and the
 * SlidingWindowLimiter as seen from the vault's side (the emulator's per-request timestamps).
 *
 * The Azure cases start a private emulator process (the same `stack/keyvault-emulator/main.ts` that stack/up.sh runs,
 * on a free port, with a throw-away certificate). The emulator's statistics and fault queue are global to the
 * process, so sharing the stack's emulator on :8443 with other test files running in parallel would let their
 * requests consume the faults injected here and show up in the counts asserted here (and the other way round).
 * It is driven only through its HTTP control endpoints, as an out-of-process client would. One case needs a clock
 * that stands still and starts its own in-process emulator for that.
 */
import { createPublicKey, randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AzureKeyVaultKekProvider } from '../activities/kek/azure-key-vault';
import { LocalDevKekProvider } from '../activities/kek/local-dev';
import { KekUnwrapError, KekVersionNotFoundError, type KekProvider } from '../activities/kek/provider';
import { startKeyVaultEmulator } from '../stack/keyvault-emulator/server';
import { azureEmulatorKek, startEmulatorProcess, type EmulatorProcess } from './support/emulator-process';

// ------------------------------------------------------------------------------------------ the contract

/** What the HSM side saw, where the test can look (the emulator); absent for the local provider. */
interface HsmObserver {
  wrapKeyCalls(): Promise<number>;
  unwrapKeyCalls(): Promise<number>;
}

interface ContractSubject {
  provider: KekProvider;
  /** A second instance on the same KEK, as after a worker restart (nothing cached). */
  reopen(): KekProvider;
  hsm?: HsmObserver;
}

const wrappedLength = 256; // RSA-2048

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  throw new Error('expected the call to be rejected');
}

function kekContract(name: string, factory: () => Promise<ContractSubject>): void {
  describe(`KekProvider contract: ${name}`, { timeout: 60_000 }, () => {
    let s: ContractSubject;
    let kek: KekProvider;
    beforeEach(async () => {
      s = await factory();
      kek = s.provider;
    });

    const oneYear = (): Date => new Date(Date.now() + 365 * 86_400_000);

    it('has no current version and lists none before the first is created', async () => {
      expect(await kek.currentVersion()).toBeUndefined();
      expect(await kek.listVersions()).toEqual([]);
      expect(await s.reopen().currentVersion()).toBeUndefined();
    });

    it('createVersion makes a current version with that expiry (second precision) and an RSA public JWK', async () => {
      const before = Date.now();
      const expiresAt = new Date(Math.floor((Date.now() + 400 * 86_400_000) / 1000) * 1000 + 789);
      const created = await kek.createVersion(expiresAt);
      const after = Date.now();

      expect(Math.floor(created.expiresAt.getTime() / 1000)).toBe(Math.floor(expiresAt.getTime() / 1000));
      expect(created.enabled).toBe(true);
      expect(created.version).toMatch(/^[0-9a-f]{32}$/);
      expect(created.createdAt.getTime()).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
      expect(created.createdAt.getTime()).toBeLessThanOrEqual(after);
      expect(created.publicJwk.kty).toBe('RSA');
      expect(created.publicJwk.e).toBe('AQAB');
      expect(created.publicJwk.d).toBeUndefined(); // public material only
      const publicKey = createPublicKey({ key: created.publicJwk, format: 'jwk' });
      expect(publicKey.asymmetricKeyType).toBe('rsa');
      expect(publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
      expect(kek.stats().creates).toBe(1);

      for (const p of [kek, s.reopen()]) {
        const current = await p.currentVersion();
        expect(current?.version).toBe(created.version);
        expect(current?.publicJwk).toEqual(created.publicJwk);
        expect(Math.floor(current!.expiresAt.getTime() / 1000)).toBe(Math.floor(expiresAt.getTime() / 1000));
        const fetched = await p.getVersion(created.version);
        expect(fetched.publicJwk).toEqual(created.publicJwk);
      }
    });

    it('wraps locally (no service call) and unwraps remotely: a 32-byte key round-trips', async () => {
      const v = await kek.createVersion(oneYear());
      const key = randomBytes(32);
      const wrapped = await kek.wrap(key, v);
      const again = await kek.wrap(key, v);
      expect(wrapped.length).toBe(wrappedLength);
      expect(wrapped.equals(again)).toBe(false); // OAEP is randomised
      expect(wrapped.includes(key)).toBe(false);
      expect(kek.stats().remoteWraps).toBe(0);
      if (s.hsm) expect(await s.hsm.wrapKeyCalls()).toBe(0);

      expect((await kek.unwrap(wrapped, v.version)).equals(key)).toBe(true);
      expect((await kek.unwrap(again, v.version)).equals(key)).toBe(true);
      // Another instance (another worker) unwraps what this one wrapped.
      expect((await s.reopen().unwrap(wrapped, v.version)).equals(key)).toBe(true);
      expect(kek.stats().remoteWraps).toBe(0);
      expect(kek.stats().remoteUnwraps).toBe(2);
      if (s.hsm) {
        expect(await s.hsm.wrapKeyCalls()).toBe(0);
        expect(await s.hsm.unwrapKeyCalls()).toBe(3);
      }
    });

    it('serves many concurrent unwraps on a fresh instance (as a worker does right after it starts)', async () => {
      const v = await kek.createVersion(oneYear());
      const keys = Array.from({ length: 16 }, () => randomBytes(32));
      const wrapped = await Promise.all(keys.map((k) => kek.wrap(k, v)));
      const fresh = s.reopen();
      const results = await Promise.all(wrapped.map((w) => fresh.unwrap(w, v.version)));
      results.forEach((r, i) => expect(r.equals(keys[i]!)).toBe(true));
      expect(fresh.stats().remoteUnwraps).toBe(16);
      if (s.hsm) expect(await s.hsm.unwrapKeyCalls()).toBe(16);
    });

    it('keeps unwrapping a key wrapped by version 1 after version 2 exists and is current', async () => {
      const v1 = await kek.createVersion(oneYear());
      const key1 = randomBytes(32);
      const wrapped1 = await kek.wrap(key1, v1);

      const v2 = await kek.createVersion(oneYear());
      expect(v2.version).not.toBe(v1.version);
      expect(v2.publicJwk.n).not.toBe(v1.publicJwk.n);
      expect((await kek.currentVersion())?.version).toBe(v2.version);
      expect((await s.reopen().currentVersion())?.version).toBe(v2.version);

      expect((await kek.unwrap(wrapped1, v1.version)).equals(key1)).toBe(true);
      const key2 = randomBytes(32);
      expect((await kek.unwrap(await kek.wrap(key2, v2), v2.version)).equals(key2)).toBe(true);
      // Version 2 is a different RSA key: it cannot unwrap what version 1 wrapped.
      expect(await rejectionOf(kek.unwrap(wrapped1, v2.version))).toBeInstanceOf(KekUnwrapError);
    });

    it('still unwraps, after the version has expired, what it wrapped before (exp only stops new wraps)', async () => {
      const v = await kek.createVersion(new Date(Date.now() + 1500));
      const key = randomBytes(32);
      const wrapped = await kek.wrap(key, v);
      const wait = v.expiresAt.getTime() + 300 - Date.now();
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)));
      expect(Date.now()).toBeGreaterThan(v.expiresAt.getTime());
      // Rotation re-wraps such keys under the new version: it has to be able to read them.
      expect((await kek.unwrap(wrapped, v.version)).equals(key)).toBe(true);
      expect((await s.reopen().unwrap(wrapped, v.version)).equals(key)).toBe(true);
    });

    it('lists every version in creation order (also from a fresh instance)', async () => {
      // Created back to back: several versions share a creation second (Key Vault's timestamps are in seconds).
      const created = [];
      for (let i = 0; i < 4; i++) created.push((await kek.createVersion(oneYear())).version);
      for (const p of [kek, s.reopen()]) {
        const listed = await p.listVersions();
        expect(listed.map((v) => v.version)).toEqual(created);
        expect(listed.every((v) => v.enabled)).toBe(true);
        expect((await p.currentVersion())?.version).toBe(created.at(-1));
      }
    });

    it('refuses garbage with KekUnwrapError after exactly one HSM call (no retry storm)', async () => {
      const v = await kek.createVersion(oneYear());
      const garbage = randomBytes(wrappedLength);
      expect(await rejectionOf(kek.unwrap(garbage, v.version))).toBeInstanceOf(KekUnwrapError);
      expect(kek.stats().remoteUnwraps).toBe(1);
      expect(kek.stats().throttled).toBe(0);
      if (s.hsm) expect(await s.hsm.unwrapKeyCalls()).toBe(1);

      // A real wrapped key with one bit flipped, and a truncated one, are refused the same way.
      const wrapped = await kek.wrap(randomBytes(32), v);
      const flipped = Buffer.from(wrapped);
      flipped[100] = (flipped[100] ?? 0) ^ 0x01;
      expect(await rejectionOf(kek.unwrap(flipped, v.version))).toBeInstanceOf(KekUnwrapError);
      expect(await rejectionOf(kek.unwrap(wrapped.subarray(0, 17), v.version))).toBeInstanceOf(KekUnwrapError);
      expect(kek.stats().remoteUnwraps).toBe(3);
      if (s.hsm) expect(await s.hsm.unwrapKeyCalls()).toBe(3);
    });

    it('reports an unknown version with KekVersionNotFoundError', async () => {
      const v = await kek.createVersion(oneYear());
      const wrapped = await kek.wrap(randomBytes(32), v);
      const unknown = randomBytes(16).toString('hex');
      const unwrapErr = await rejectionOf(kek.unwrap(wrapped, unknown));
      expect(unwrapErr).toBeInstanceOf(KekVersionNotFoundError);
      expect((unwrapErr as KekVersionNotFoundError).version).toBe(unknown);
      expect(await rejectionOf(kek.unwrap(wrapped, 'not-a-version'))).toBeInstanceOf(KekVersionNotFoundError);
      const getErr = await rejectionOf(kek.getVersion(unknown));
      expect(getErr).toBeInstanceOf(KekVersionNotFoundError);
      expect((getErr as KekVersionNotFoundError).version).toBe(unknown);
    });

    it('disableVersion: current falls back to the previous version and unwrap is refused', async () => {
      const v1 = await kek.createVersion(oneYear());
      const v2 = await kek.createVersion(oneYear());
      const key = randomBytes(32);
      const wrapped2 = await kek.wrap(key, v2);
      expect((await kek.unwrap(wrapped2, v2.version)).equals(key)).toBe(true);

      await kek.disableVersion(v2.version);
      expect(await rejectionOf(kek.unwrap(wrapped2, v2.version))).toBeInstanceOf(KekUnwrapError);
      // The same after a restart, where nothing about version 2 is cached.
      const fresh = s.reopen();
      for (const p of [kek, fresh]) {
        expect((await p.currentVersion())?.version).toBe(v1.version);
        const listed = await p.listVersions();
        expect(listed.map((v) => [v.version, v.enabled])).toEqual([
          [v1.version, true],
          [v2.version, false],
        ]);
      }
      expect(await rejectionOf(fresh.unwrap(wrapped2, v2.version))).toBeInstanceOf(KekUnwrapError);
      // Version 1 still works.
      const key1 = randomBytes(32);
      expect((await fresh.unwrap(await fresh.wrap(key1, v1), v1.version)).equals(key1)).toBe(true);

      // Disabling the last enabled version leaves no current version.
      await kek.disableVersion(v1.version);
      expect(await kek.currentVersion()).toBeUndefined();
      expect(await s.reopen().currentVersion()).toBeUndefined();
    });

    it('stats().remoteUnwraps counts every unwrap; wraps never reach the service', async () => {
      const v = await kek.createVersion(oneYear());
      expect(kek.stats()).toMatchObject({ remoteUnwraps: 0, remoteWraps: 0, creates: 1, throttled: 0 });
      const keys = Array.from({ length: 5 }, () => randomBytes(32));
      const wrapped = await Promise.all(keys.map((k) => kek.wrap(k, v)));
      for (const [i, w] of wrapped.entries()) expect((await kek.unwrap(w, v.version)).equals(keys[i]!)).toBe(true);
      expect(kek.stats()).toMatchObject({ remoteUnwraps: 5, remoteWraps: 0, creates: 1, throttled: 0 });
      if (s.hsm) {
        expect(await s.hsm.unwrapKeyCalls()).toBe(5);
        expect(await s.hsm.wrapKeyCalls()).toBe(0);
      }
      // stats() is a snapshot, not a live view the caller could change.
      const snapshot = kek.stats();
      snapshot.remoteUnwraps = 1000;
      expect(kek.stats().remoteUnwraps).toBe(5);
    });
  });
}

// ------------------------------------------------------------------------------------------ the subjects

let emulator: EmulatorProcess;

function azureKek(keyName: string, opsPerSecond = 1000): AzureKeyVaultKekProvider {
  return azureEmulatorKek(emulator, { keyName, hsmOpsPerSecond: opsPerSecond });
}

const freshKeyName = (): string => `kek-${randomBytes(6).toString('hex')}`;

beforeAll(async () => {
  emulator = await startEmulatorProcess();
}, 60_000);

afterAll(async () => {
  await emulator?.stop();
});

kekContract('AzureKeyVaultKekProvider against the Key Vault emulator', async () => {
  const keyName = freshKeyName();
  await emulator.reset();
  return {
    provider: azureKek(keyName),
    reopen: () => azureKek(keyName),
    hsm: {
      wrapKeyCalls: async () => (await emulator.stats()).operations.wrapkey,
      unwrapKeyCalls: async () => (await emulator.stats()).operations.unwrapkey,
    },
  };
});

kekContract('LocalDevKekProvider', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kek-contract-local-'));
  return { provider: new LocalDevKekProvider(dir, 2048), reopen: () => new LocalDevKekProvider(dir, 2048) };
});

// ------------------------------------------------------------------------------------------ Azure only

describe('AzureKeyVaultKekProvider: throttling, retries and the HSM budget', { timeout: 60_000 }, () => {
  /** A provider with one version and a warmed-up crypto client (connection and auth challenge done), stats reset. */
  async function ready(opsPerSecond = 1000) {
    const kek = azureKek(freshKeyName(), opsPerSecond);
    const v = await kek.createVersion(new Date(Date.now() + 365 * 86_400_000));
    const key = randomBytes(32);
    const wrapped = await kek.wrap(key, v);
    expect((await kek.unwrap(wrapped, v.version)).equals(key)).toBe(true);
    await emulator.reset();
    return { kek, v, key, wrapped, base: kek.stats() };
  }

  it('retries a 429 that carries Retry-After, honours the delay, and counts it in stats().throttled', async () => {
    const { kek, v, key, wrapped, base } = await ready();
    await emulator.faults(2, 429, 1);
    const started = Date.now();
    expect((await kek.unwrap(wrapped, v.version)).equals(key)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900); // two Retry-After: 1
    const stats = await emulator.stats();
    expect(stats.faultsInjected).toBe(2);
    expect(stats.pendingFaults).toBe(0);
    expect(stats.operations.unwrapkey).toBe(3);
    expect(kek.stats().throttled - base.throttled).toBe(2);
    // One logical unwrap: the limiter and remoteUnwraps count the call, not the HTTP attempts.
    expect(kek.stats().remoteUnwraps - base.remoteUnwraps).toBe(1);
  });

  it('rides out a 503 storm with exponential back-off', async () => {
    const { kek, v, key, wrapped, base } = await ready();
    await emulator.faults(3, 503);
    const started = Date.now();
    expect((await kek.unwrap(wrapped, v.version)).equals(key)).toBe(true);
    // 1 s doubling, with jitter between half and the full delay: at least 0.5 + 1 + 2 s.
    expect(Date.now() - started).toBeGreaterThanOrEqual(3400);
    const stats = await emulator.stats();
    expect(stats.operations.unwrapkey).toBe(4);
    expect(stats.pendingFaults).toBe(0);
    expect(kek.stats().throttled - base.throttled).toBe(3);
  });

  it('gives up after its retry budget with a retryable error (not KekUnwrapError)', async () => {
    const { kek, v, wrapped, base } = await ready();
    await emulator.faults(10, 503, 0);
    const err = await rejectionOf(kek.unwrap(wrapped, v.version));
    expect(err).not.toBeInstanceOf(KekUnwrapError);
    expect(err).not.toBeInstanceOf(KekVersionNotFoundError);
    expect((err as { statusCode?: number }).statusCode).toBe(503);
    const stats = await emulator.stats();
    expect(stats.operations.unwrapkey).toBe(7); // the first attempt and six retries
    expect(kek.stats().throttled - base.throttled).toBe(7);
    await emulator.reset(); // drop the faults left over
  });

  it('orders versions created within one second by creation, so the newest is current', async () => {
    // An in-process emulator whose clock stands still: every version gets the same creation second.
    const frozen = Date.now();
    const still = await startKeyVaultEmulator({
      port: 0,
      certPem: emulator.caPem,
      keyPem: emulator.keyPem,
      clock: () => frozen,
    });
    try {
      const keyName = freshKeyName();
      const open = (): AzureKeyVaultKekProvider =>
        azureEmulatorKek({ url: still.url, caPem: emulator.caPem }, { keyName });
      const kek = open();
      const created: string[] = [];
      for (let i = 0; i < 5; i++) created.push((await kek.createVersion(new Date(frozen + 86_400_000))).version);
      for (const p of [kek, open()]) {
        expect((await p.listVersions()).map((v) => v.version)).toEqual(created);
        expect((await p.currentVersion())?.version).toBe(created.at(-1));
      }
    } finally {
      await still.close();
    }
  });

  it('holds the HSM budget in every one-second window as seen by the vault (20/s, 60 unwraps)', async () => {
    const perSecond = 20;
    const keyName = freshKeyName();
    const v = await azureKek(keyName).createVersion(new Date(Date.now() + 365 * 86_400_000));
    // A cold instance, the worst case: new connections and the auth challenge delay the first calls
    // by a varying amount, so admitting calls a second apart is not enough to keep them apart at the vault.
    const kek = azureKek(keyName, perSecond);
    await emulator.reset();
    const keys = Array.from({ length: 60 }, () => randomBytes(32));
    const wrapped = await Promise.all(keys.map((k) => kek.wrap(k, v)));

    const started = Date.now();
    const results = await Promise.all(wrapped.map((w) => kek.unwrap(w, v.version)));
    const elapsed = Date.now() - started;
    results.forEach((r, i) => expect(r.equals(keys[i]!)).toBe(true));

    const stamps = (await emulator.stats()).cryptoTimestamps.unwrapkey;
    expect(stamps).toHaveLength(60);
    let busiest = 0;
    for (const [i, t] of stamps.entries()) {
      const inWindow = stamps.slice(i).filter((u) => u < t + 1000).length;
      busiest = Math.max(busiest, inWindow);
    }
    expect(busiest).toBeLessThanOrEqual(perSecond);
    expect(busiest).toBe(perSecond); // and the budget is actually used
    // 60 calls at 20 per second: three windows, so at least two full seconds.
    expect(elapsed).toBeGreaterThanOrEqual(1990);
    expect(stamps.at(-1)! - stamps[0]!).toBeGreaterThanOrEqual(2000);
  });
});
