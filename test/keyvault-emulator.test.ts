/**
 * Drives the Key Vault emulator (stack/keyvault-emulator) with the official @azure/keyvault-keys
 * SDK over HTTPS, exactly as the worker talks to Azure Key Vault.
 *
 * The emulator's self-signed certificate is trusted per client through the pipeline option
 * `tlsOptions: { ca }` (supported by @azure/core-rest-pipeline); NODE_TLS_REJECT_UNAUTHORIZED is
 * never touched.
 */
import { spawn } from 'node:child_process';
import { constants as cryptoConstants, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import type { AccessToken, TokenCredential } from '@azure/core-auth';
import { CryptographyClient, KeyClient, type KeyClientOptions } from '@azure/keyvault-keys';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKeyVaultEmulator, type KeyVaultEmulator } from '../stack/keyvault-emulator/server';
import { selfSignedCert } from './support/certs';
import { ROOT } from './support/stack';

const CHALLENGE =
  'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="https://vault.azure.net"';

let dir: string;
let certPath: string;
let keyPath: string;
let certPem: string;
let keyPem: string;
let statePath: string;
let emulator: KeyVaultEmulator;
/** Added to Date.now() by the emulator's injectable clock. */
let clockOffsetMs = 0;
const clock = (): number => Date.now() + clockOffsetMs;

const tokenRequests: string[][] = [];
const credential: TokenCredential = {
  async getToken(scopes): Promise<AccessToken> {
    tokenRequests.push([scopes].flat());
    return { token: 'emulator-dummy-token', expiresOnTimestamp: Date.now() + 3_600_000 };
  },
};

/** Fresh options per client: the SDK mutates the object it is given (userAgentOptions). */
function clientOptions(): KeyClientOptions {
  return {
    tlsOptions: { ca: certPem },
    disableChallengeResourceVerification: true,
    retryOptions: { retryDelayInMs: 10, maxRetryDelayInMs: 50 },
  };
}

function newKeyClient(url = emulator.url): KeyClient {
  return new KeyClient(url, credential, clientOptions());
}

async function rejection(promise: Promise<unknown>): Promise<{ statusCode?: number; code?: string; message: string }> {
  try {
    await promise;
  } catch (e) {
    return e as { statusCode?: number; code?: string; message: string };
  }
  throw new Error('expected the call to fail');
}

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function raw(method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<RawResponse> {
  return new Promise((resolveResponse, reject) => {
    const req = request(
      new URL(path, emulator.url),
      { method, headers: { ...headers, ...(body ? { 'content-type': 'application/json' } : {}) }, ca: certPem },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolveResponse({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

beforeAll(async () => {
  ({ dir, certPath, keyPath, certPem, keyPem } = selfSignedCert('kv-emulator-test-'));
  statePath = join(dir, 'state', 'vault.json');
  emulator = await startKeyVaultEmulator({ port: 0, certPem, keyPem, statePath, clock });
}, 30_000);

afterAll(async () => {
  await emulator?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('Key Vault emulator driven by @azure/keyvault-keys', { timeout: 30_000 }, () => {
  it('answers the first request with the bearer challenge, then accepts any bearer token', async () => {
    const unauthenticated = await raw('GET', '/keys?api-version=2025-07-01');
    expect(unauthenticated.status).toBe(401);
    expect(unauthenticated.headers['www-authenticate']).toBe(CHALLENGE);
    expect(JSON.parse(unauthenticated.body)).toEqual({
      error: { code: 'Unauthorized', message: expect.stringContaining('Bearer') },
    });

    emulator.control.reset();
    tokenRequests.length = 0;
    const client = newKeyClient();
    const key = await client.createRsaKey('challenge-key', { keySize: 2048 });
    expect(key.name).toBe('challenge-key');
    const stats = emulator.control.stats();
    // One unauthenticated probe (sent without its body), then the real request with the token.
    expect(stats.unauthorized).toBe(1);
    expect(stats.operations.create).toBe(1);
    expect(stats.totalRequests).toBe(2);
    // The scope comes from the challenge's resource, not from the vault URL.
    expect(tokenRequests).toContainEqual(['https://vault.azure.net/.default']);

    // Later calls of the same client reuse the token: no more challenges.
    await client.getKey('challenge-key');
    expect(emulator.control.stats().unauthorized).toBe(1);
  });

  it('requires api-version and reports errors in the Key Vault error shape', async () => {
    const auth = { authorization: 'Bearer anything' };
    const missing = await raw('GET', '/keys', auth);
    expect(missing.status).toBe(400);
    expect(JSON.parse(missing.body)).toEqual({
      error: { code: 'BadParameter', message: expect.stringContaining('api-version') },
    });

    const listed = await raw('GET', '/keys?api-version=7.5', auth);
    expect(listed.status).toBe(200);
    expect(JSON.parse(listed.body)).toMatchObject({ value: expect.any(Array), nextLink: null });

    const err = await rejection(newKeyClient().getKey('no-such-key'));
    expect(err.statusCode).toBe(404);
    expect(err.code).toBe('KeyNotFound');
  });

  it('creates an RSA-HSM 3072 key with an expiry and tags, and reads it back', async () => {
    const client = newKeyClient();
    const expiresOn = new Date(Date.now() + 30 * 86_400_000);
    const created = await client.createRsaKey('hsm-kek', {
      hsm: true,
      keySize: 3072,
      expiresOn,
      keyOps: ['wrapKey', 'unwrapKey'],
      tags: { purpose: 'kek' },
    });
    expect(created.keyType).toBe('RSA-HSM');
    expect(created.keyOperations).toEqual(['wrapKey', 'unwrapKey']);
    expect(created.key?.n?.length).toBe(384);
    expect(Buffer.from(created.key?.e ?? []).toString('hex')).toBe('010001');
    expect(created.key?.d).toBeUndefined(); // the private part never leaves the emulator
    expect(created.properties.version).toMatch(/^[0-9a-f]{32}$/);
    expect(created.id).toBe(`${emulator.url}/keys/hsm-kek/${created.properties.version}`);
    expect(created.properties.vaultUrl).toBe(emulator.url);
    expect(created.properties.expiresOn?.getTime()).toBe(Math.floor(expiresOn.getTime() / 1000) * 1000);
    expect(created.properties.enabled).toBe(true);
    expect(created.properties.recoveryLevel).toBe('Recoverable+Purgeable');
    expect(created.properties.recoverableDays).toBe(90);
    expect(created.properties.tags).toEqual({ purpose: 'kek' });

    const latest = await client.getKey('hsm-kek');
    expect(latest.id).toBe(created.id);
    expect(latest.properties.expiresOn?.getTime()).toBe(created.properties.expiresOn?.getTime());
    expect(latest.properties.createdOn).toBeInstanceOf(Date);
    expect(Buffer.from(latest.key?.n ?? []).equals(Buffer.from(created.key?.n ?? []))).toBe(true);
    const pinned = await client.getKey('hsm-kek', { version: created.properties.version! });
    expect(pinned.id).toBe(created.id);
  });

  it('lists versions (with paging) after a second version is created', async () => {
    const client = newKeyClient();
    const v1 = await client.createRsaKey('versioned', { keySize: 2048 });
    const v2 = await client.createRsaKey('versioned', { keySize: 2048 });
    expect(v2.properties.version).not.toBe(v1.properties.version);

    const versions: string[] = [];
    for await (const p of client.listPropertiesOfKeyVersions('versioned')) versions.push(p.version!);
    expect(versions.sort()).toEqual([v1.properties.version!, v2.properties.version!].sort());

    // One item per page: the SDK has to follow nextLink.
    const pages: number[] = [];
    for await (const pageItems of client.listPropertiesOfKeyVersions('versioned').byPage({ maxPageSize: 1 })) {
      pages.push(pageItems.length);
    }
    expect(pages).toEqual([1, 1]);

    expect((await client.getKey('versioned')).properties.version).toBe(v2.properties.version);
    const names: string[] = [];
    for await (const p of client.listPropertiesOfKeys()) names.push(p.name);
    expect(names).toEqual(expect.arrayContaining(['versioned', 'hsm-kek']));
  });

  it('wraps and unwraps through the service with RSA-OAEP-256', async () => {
    const client = newKeyClient();
    const key = await client.createRsaKey('remote-wrap', { keySize: 2048 });
    const crypto = client.getCryptographyClient('remote-wrap');
    const cek = randomBytes(32);

    emulator.control.reset();
    const wrapped = await crypto.wrapKey('RSA-OAEP-256', cek);
    expect(wrapped.result.length).toBe(256);
    expect(wrapped.keyID).toBe(key.id);
    // RSA-OAEP-256 is not in the SDK's local RSA provider, so the wrap really went to the vault.
    expect(emulator.control.stats().operations.wrapkey).toBe(1);
    expect(emulator.control.stats().operations.get).toBe(1); // the SDK fetches the key first

    const unwrapped = await crypto.unwrapKey('RSA-OAEP-256', wrapped.result);
    expect(Buffer.from(unwrapped.result).equals(cek)).toBe(true);
    expect(emulator.control.stats().operations.unwrapkey).toBe(1);

    // A standalone CryptographyClient (own pipeline, own challenge) works the same way.
    const standalone = new CryptographyClient(key.id!, credential, clientOptions());
    const again = await standalone.unwrapKey('RSA-OAEP-256', wrapped.result);
    expect(Buffer.from(again.result).equals(cek)).toBe(true);

    // RSA-OAEP (SHA-1) and RSA1_5 round-trip too (the SDK wraps those locally, the vault unwraps).
    for (const alg of ['RSA-OAEP', 'RSA1_5'] as const) {
      const w = await crypto.wrapKey(alg, cek);
      const u = await crypto.unwrapKey(alg, w.result);
      expect(Buffer.from(u.result).equals(cek)).toBe(true);
    }
    // encrypt/decrypt through the service.
    const enc = await crypto.encrypt({ algorithm: 'RSA-OAEP-256', plaintext: Buffer.from('hello') });
    const dec = await crypto.decrypt({ algorithm: 'RSA-OAEP-256', ciphertext: enc.result });
    expect(Buffer.from(dec.result).toString()).toBe('hello');
  });

  it('unwraps remotely what was wrapped locally with node:crypto and the public JWK', async () => {
    const client = newKeyClient();
    await client.createRsaKey('local-wrap', { keySize: 2048 });
    const fetched = await client.getKey('local-wrap');
    const publicKey = createPublicKey({
      key: {
        kty: 'RSA',
        n: Buffer.from(fetched.key!.n!).toString('base64url'),
        e: Buffer.from(fetched.key!.e!).toString('base64url'),
      },
      format: 'jwk',
    });
    const cek = randomBytes(32);
    const wrapped = publicEncrypt(
      { key: publicKey, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      cek,
    );

    const crypto = client.getCryptographyClient('local-wrap', { keyVersion: fetched.properties.version! });
    const unwrapped = await crypto.unwrapKey('RSA-OAEP-256', wrapped);
    expect(Buffer.from(unwrapped.result).equals(cek)).toBe(true);
    expect(unwrapped.keyID).toBe(fetched.id);
  });

  it('keeps unwrapping with version 1 after version 2 exists', async () => {
    const client = newKeyClient();
    const v1 = await client.createRsaKey('rotating', { keySize: 2048 });
    const cek = randomBytes(32);
    const wrappedV1 = await client
      .getCryptographyClient('rotating', { keyVersion: v1.properties.version! })
      .wrapKey('RSA-OAEP-256', cek);

    const v2 = await client.createRsaKey('rotating', { keySize: 2048 });
    expect((await client.getKey('rotating')).properties.version).toBe(v2.properties.version);

    const v1Client = client.getCryptographyClient('rotating', { keyVersion: v1.properties.version! });
    expect(Buffer.from((await v1Client.unwrapKey('RSA-OAEP-256', wrappedV1.result)).result).equals(cek)).toBe(true);

    // The current version is a different RSA key: it cannot unwrap version 1's ciphertext.
    const err = await rejection(client.getCryptographyClient('rotating').unwrapKey('RSA-OAEP-256', wrappedV1.result));
    expect(err.statusCode).toBe(400);
  });

  it('rejects garbage ciphertext with 400 BadParameter', async () => {
    const client = newKeyClient();
    await client.createRsaKey('garbage', { keySize: 2048 });
    const crypto = client.getCryptographyClient('garbage');
    for (const junk of [randomBytes(256), randomBytes(17)]) {
      const err = await rejection(crypto.unwrapKey('RSA-OAEP-256', junk));
      expect(err.statusCode).toBe(400);
      expect(err.code).toBe('BadParameter');
    }
    const badAlg = await raw(
      'POST',
      `/keys/garbage//unwrapkey?api-version=2025-07-01`,
      { authorization: 'Bearer x' },
      JSON.stringify({ alg: 'A256KW', value: 'AAAA' }),
    );
    expect(badAlg.status).toBe(400);
    expect(JSON.parse(badAlg.body).error.code).toBe('BadParameter');
  });

  it('refuses a disabled key version with 403 and accepts it again once re-enabled', async () => {
    const client = newKeyClient();
    const key = await client.createRsaKey('disabled', { keySize: 2048 });
    const version = key.properties.version!;
    const cek = randomBytes(32);
    const wrapped = await client.getCryptographyClient('disabled').wrapKey('RSA-OAEP-256', cek);

    const updated = await client.updateKeyProperties('disabled', version, { enabled: false, tags: { state: 'off' } });
    expect(updated.properties.enabled).toBe(false);
    expect(updated.properties.tags).toEqual({ state: 'off' });

    const getErr = await rejection(client.getKey('disabled'));
    expect(getErr.statusCode).toBe(403);
    expect(getErr.code).toBe('Forbidden');

    // The SDK's GET gets 403, it falls back to remote-only, and the vault refuses the unwrap.
    const unwrapErr = await rejection(
      client.getCryptographyClient('disabled', { keyVersion: version }).unwrapKey('RSA-OAEP-256', wrapped.result),
    );
    expect(unwrapErr.statusCode).toBe(403);
    expect(unwrapErr.message).toMatch(/disabled/);

    // Listing still shows the version as disabled.
    const listed: boolean[] = [];
    for await (const p of client.listPropertiesOfKeyVersions('disabled')) listed.push(p.enabled!);
    expect(listed).toEqual([false]);

    await client.updateKeyProperties('disabled', version, { enabled: true });
    const ok = await client
      .getCryptographyClient('disabled', { keyVersion: version })
      .unwrapKey('RSA-OAEP-256', wrapped.result);
    expect(Buffer.from(ok.result).equals(cek)).toBe(true);
  });

  it('enforces exp with the injectable clock: no new wraps, existing data still unwraps', async () => {
    const client = newKeyClient();
    await client.createRsaKey('expiring', { keySize: 2048, expiresOn: new Date(Date.now() + 3_600_000) });
    const cek = randomBytes(32);
    const wrapped = await client.getCryptographyClient('expiring').wrapKey('RSA-OAEP-256', cek);
    clockOffsetMs = 2 * 3_600_000; // the emulator now lives two hours ahead; the SDK still sees "now"
    try {
      const err = await rejection(client.getCryptographyClient('expiring').wrapKey('RSA-OAEP-256', cek));
      expect(err.statusCode).toBe(403);
      expect(err.code).toBe('Forbidden');
      expect(err.message).toMatch(/expired/);
      // Like Key Vault, unwrap (and decrypt) keep working outside the validity window.
      const unwrapped = await client.getCryptographyClient('expiring').unwrapKey('RSA-OAEP-256', wrapped.result);
      expect(Buffer.from(unwrapped.result).equals(cek)).toBe(true);
    } finally {
      clockOffsetMs = 0;
    }
  });

  it('injects 429/503 faults: the SDK retries when Retry-After is present, gives up on a bare 429', async () => {
    const client = newKeyClient();
    await client.createRsaKey('faulty', { keySize: 2048 });
    const crypto = client.getCryptographyClient('faulty');
    const cek = randomBytes(32);
    const wrapped = await crypto.wrapKey('RSA-OAEP-256', cek); // GET done, token cached

    emulator.control.reset();
    emulator.control.failNext(2, { status: 429, retryAfterSeconds: 0 });
    const first = await crypto.unwrapKey('RSA-OAEP-256', wrapped.result);
    expect(Buffer.from(first.result).equals(cek)).toBe(true);
    let stats = emulator.control.stats();
    expect(stats.faultsInjected).toBe(2);
    expect(stats.operations.unwrapkey).toBe(3); // two throttled attempts, then success
    expect(stats.cryptoTimestamps.unwrapkey).toHaveLength(3);
    expect(stats.pendingFaults).toBe(0);

    // Without Retry-After a 429 is not retried by the SDK's default retry policy.
    emulator.control.reset();
    emulator.control.failNext(2, { status: 429 });
    const err = await rejection(crypto.unwrapKey('RSA-OAEP-256', wrapped.result));
    expect(err.statusCode).toBe(429);
    stats = emulator.control.stats();
    expect(stats.operations.unwrapkey).toBe(1);
    expect(stats.pendingFaults).toBe(1);

    // 503 (and 500) are retried with exponential back-off even without Retry-After.
    emulator.control.reset();
    emulator.control.failNext(2, { status: 503 });
    const third = await crypto.unwrapKey('RSA-OAEP-256', wrapped.result);
    expect(Buffer.from(third.result).equals(cek)).toBe(true);
    expect(emulator.control.stats().operations.unwrapkey).toBe(3);

    // The same through the HTTP control endpoint, used by out-of-process tests.
    emulator.control.reset();
    const armed = await raw(
      'POST',
      '/_emulator/faults',
      {},
      JSON.stringify({ count: 1, status: 429, retryAfterSeconds: 1 }),
    );
    expect(armed.status).toBe(200);
    expect(JSON.parse(armed.body)).toEqual({ pendingFaults: 1 });
    const throttled = await raw(
      'POST',
      `/keys/faulty//unwrapkey?api-version=2025-07-01`,
      { authorization: 'Bearer x' },
      '{}',
    );
    expect(throttled.status).toBe(429);
    expect(throttled.headers['retry-after']).toBe('1');
    expect(JSON.parse(throttled.body).error.code).toBe('Throttled');
    const bad = await raw('POST', '/_emulator/faults', {}, JSON.stringify({ count: 1, status: 404 }));
    expect(bad.status).toBe(400);
    expect(() => emulator.control.failNext(0, { status: 429 })).toThrow(TypeError);
  });

  it('records a timestamp per crypto operation from the injected clock', async () => {
    const client = newKeyClient();
    await client.createRsaKey('rated', { keySize: 2048 });
    const crypto = client.getCryptographyClient('rated');
    const wrapped = await crypto.wrapKey('RSA-OAEP-256', randomBytes(32));
    emulator.control.reset();
    clockOffsetMs = 1_000_000;
    try {
      const before = clock();
      for (let i = 0; i < 5; i++) await crypto.unwrapKey('RSA-OAEP-256', wrapped.result);
      const after = clock();
      const { cryptoTimestamps } = emulator.control.stats();
      expect(cryptoTimestamps.unwrapkey).toHaveLength(5);
      expect(cryptoTimestamps.wrapkey).toHaveLength(0);
      for (const t of cryptoTimestamps.unwrapkey) {
        expect(t).toBeGreaterThanOrEqual(before);
        expect(t).toBeLessThanOrEqual(after);
      }
      expect([...cryptoTimestamps.unwrapkey].sort((a, b) => a - b)).toEqual(cryptoTimestamps.unwrapkey);
    } finally {
      clockOffsetMs = 0;
    }
  });

  it('keeps keys in the state file across a restart', async () => {
    const client = newKeyClient();
    const key = await client.createRsaKey('durable', { keySize: 2048, tags: { keep: 'yes' } });
    const cek = randomBytes(32);
    const wrapped = await client.getCryptographyClient('durable').wrapKey('RSA-OAEP-256', cek);

    expect(statSync(statePath).mode & 0o777).toBe(0o600);
    const state = JSON.parse(readFileSync(statePath, 'utf8'));
    expect(state.format).toBe('keyvault-emulator-state/v1');
    const stored = state.keys.find((k: { name: string }) => k.name === 'durable');
    expect(stored.versions[0].privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);

    await emulator.close();
    emulator = await startKeyVaultEmulator({ port: 0, certPem, keyPem, statePath, clock });

    const restarted = newKeyClient();
    const reloaded = await restarted.getKey('durable');
    expect(reloaded.properties.version).toBe(key.properties.version);
    expect(reloaded.properties.tags).toEqual({ keep: 'yes' });
    expect(reloaded.id).toBe(`${emulator.url}/keys/durable/${key.properties.version}`);
    expect(Buffer.from(reloaded.key!.n!).equals(Buffer.from(key.key!.n!))).toBe(true);
    const unwrapped = await restarted.getCryptographyClient('durable').unwrapKey('RSA-OAEP-256', wrapped.result);
    expect(Buffer.from(unwrapped.result).equals(cek)).toBe(true);
    // Earlier keys came back too.
    expect((await restarted.getKey('hsm-kek')).keyType).toBe('RSA-HSM');
  });

  it('runs as a CLI that prints one line and exits cleanly on SIGTERM', async () => {
    const tsx = join(ROOT, 'node_modules', '.bin', 'tsx');
    const child = spawn(
      tsx,
      [
        join(ROOT, 'stack/keyvault-emulator/main.ts'),
        '--port',
        '0',
        '--cert',
        certPath,
        '--key',
        keyPath,
        '--state',
        join(dir, 'cli-state.json'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolveExit) => child.on('exit', (code) => resolveExit(code)));
    const line = await new Promise<string>((resolveLine, reject) => {
      child.stdout.on('data', (c: Buffer) => {
        stdout += c.toString();
        if (stdout.includes('\n')) resolveLine(stdout);
      });
      child.on('exit', () => reject(new Error(`emulator exited early: ${stderr}`)));
    });
    expect(line).toMatch(/^keyvault-emulator listening on https:\/\/127\.0\.0\.1:\d+\n$/);

    const url = line.trim().split(' ').at(-1)!;
    const cliClient = newKeyClient(url);
    const key = await cliClient.createRsaKey('cli-key', { keySize: 2048 });
    expect(key.id).toBe(`${url}/keys/cli-key/${key.properties.version}`);

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stdout).toBe(line); // nothing logged after the startup line
    expect(stderr).toBe('');
  });
});
