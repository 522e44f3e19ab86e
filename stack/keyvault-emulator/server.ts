/**
 * A small Azure Key Vault emulator for local development and tests.
 *
 * It speaks the keys subset of the Key Vault data-plane REST API closely enough to be driven,
 * unmodified, by `@azure/keyvault-keys` (KeyClient, CryptographyClient) over HTTPS:
 *
 *   POST  /keys/{name}/create                              create a new RSA / RSA-HSM version
 *   GET   /keys                                            list keys (latest version's attributes)
 *   GET   /keys/{name}/versions                            list versions
 *   GET   /keys/{name}[/{version}]                         key bundle (public part only)
 *   PATCH /keys/{name}[/{version}]                         update attributes, key_ops, tags
 *   POST  /keys/{name}[/{version}]/{wrapkey|unwrapkey|encrypt|decrypt}
 *   POST  /keys/{name}[/{version}]/{sign|verify}           RS256 over a SHA-256 digest
 *
 * Every vault request needs `?api-version=` and `Authorization: Bearer <anything>`; without a
 * bearer token the emulator answers 401 with the same `WWW-Authenticate` challenge Key Vault
 * sends, which is what the SDK's challenge-based authentication policy expects.
 *
 * Like an HSM, private keys never leave the process, except to the optional state file
 * (PKCS#8 PEM, written atomically with mode 0600). Nothing is logged: request bodies carry
 * key material.
 *
 * and the certificates subset `@azure/keyvault-certificates` uses (see certificates.ts): create with
 * a policy and its pending operation, get, get a version, list versions, get and update the policy;
 * the key behind each certificate version is served under /keys like any other key.
 *
 * Test hooks (no authentication, not part of Key Vault): `control` in-process, and over HTTP
 *   POST /_emulator/faults  {"count":2,"status":429,"retryAfterSeconds":0}
 *   POST /_emulator/fault-share  {"share":0.5,"faults":[{"status":429,"retryAfterSeconds":1},{"status":503}],"seed":7}
 *   GET  /_emulator/stats
 *   POST /_emulator/reset
 *   POST /_emulator/clock   {"advanceSeconds":86400}  moves the emulator's clock; due AutoRenew actions run
 *   GET  /_emulator/ca      the test CA's certificate (PEM) that issues non-Self certificates
 */
import {
  constants as cryptoConstants,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  privateDecrypt,
  privateEncrypt,
  publicDecrypt,
  publicEncrypt,
  randomBytes,
  randomUUID,
  type KeyObject,
} from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import {
  CertError,
  createCertificateStore,
  generateTestCa,
  loadTestCa,
  parsePolicy,
  type CertEntry,
  type TestCa,
} from './certificates';

// ------------------------------------------------------------------------------------------ API

export type FaultStatus = 429 | 500 | 503;

export interface FaultSpec {
  status: FaultStatus;
  /** Sent as `Retry-After` (seconds) when given. Without it the SDK does not retry a 429. */
  retryAfterSeconds?: number;
}

/** Vault operations as counted by {@link EmulatorControl.stats}. */
export type OperationName =
  | 'create'
  | 'get'
  | 'list'
  | 'listVersions'
  | 'update'
  | 'wrapkey'
  | 'unwrapkey'
  | 'encrypt'
  | 'decrypt'
  | 'sign'
  | 'verify'
  | 'certificates'
  | 'unsupported';

export type CryptoOperationName = 'wrapkey' | 'unwrapkey' | 'encrypt' | 'decrypt';

export interface EmulatorStats {
  /** Every vault request received (control endpoints under /_emulator are not counted). */
  totalRequests: number;
  /** Requests answered with the 401 bearer challenge (no `Authorization: Bearer` header). */
  unauthorized: number;
  /** Authenticated requests answered with an injected fault. */
  faultsInjected: number;
  /** Faults still queued by failNext. */
  pendingFaults: number;
  /** Authenticated requests per operation, including those answered with an injected fault. */
  operations: Record<OperationName, number>;
  /** `clock()` (ms) of every authenticated crypto request, in arrival order, faulted ones included. */
  cryptoTimestamps: Record<CryptoOperationName, number[]>;
}

export interface EmulatorControl {
  /** The next `count` authenticated vault requests fail with `fault.status`. Calls queue up. */
  failNext(count: number, fault: FaultSpec): void;
  /**
   * From now on, each authenticated vault request fails with probability `share` (0 stops it), with
   * one of `faults` picked at random; a seeded generator makes a run repeatable. Queued faults go first.
   */
  failShare(share: number, faults: FaultSpec[], seed?: number): void;
  stats(): EmulatorStats;
  /** Clears queued faults and statistics. Keys are kept. */
  reset(): void;
  /** Moves the emulator's clock forward and runs the certificates' due AutoRenew actions; returns the new time. */
  advanceClock(seconds: number): Promise<number>;
  /** The test CA certificate (PEM) that issues certificates of a non-Self issuer. */
  caPem(): Promise<string>;
}

export interface KeyVaultEmulatorOptions {
  /** 0 picks a free port. */
  port: number;
  /** Listen address, default 127.0.0.1. */
  host?: string;
  certPem: string;
  keyPem: string;
  /** JSON file that keeps the keys across restarts; in-memory only when absent. */
  statePath?: string;
  /** Milliseconds since the epoch; drives created/updated, exp/nbf checks and stats timestamps. */
  clock?: () => number;
  /** The test CA for non-Self certificate issuers (PEM); a fresh one is made when absent. */
  caCertPem?: string;
  caKeyPem?: string;
}

export interface KeyVaultEmulator {
  /** Base URL, e.g. https://127.0.0.1:8443 (the vault URL to give KeyClient). */
  url: string;
  close(): Promise<void>;
  control: EmulatorControl;
}

// ------------------------------------------------------------------------------------------ model

const RECOVERY_LEVEL = 'Recoverable+Purgeable';
const RECOVERABLE_DAYS = 90;
const SERVICE_VERSION = '1.9.0.0-emulator';
const MAX_BODY_BYTES = 1024 * 1024;
const MAX_PAGE_SIZE = 25;
const KEY_NAME = /^[0-9a-zA-Z-]{1,127}$/;
const KEY_VERSION = /^[0-9a-f]{32}$/;
const API_VERSION = /^(\d+\.\d+(-preview(\.\d+)?)?|\d{4}-\d{2}-\d{2}(-preview)?)$/;
const RSA_KEY_TYPES = ['RSA', 'RSA-HSM'] as const;
const RSA_KEY_SIZES = [2048, 3072, 4096];
const KNOWN_KEY_OPS = ['encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey', 'import', 'export'];
const DEFAULT_RSA_KEY_OPS = ['encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey'];
const RSA_ALGORITHMS = ['RSA-OAEP-256', 'RSA-OAEP', 'RSA1_5'] as const;
const CRYPTO_OPS: readonly CryptoOperationName[] = ['wrapkey', 'unwrapkey', 'encrypt', 'decrypt'];
/** The key_ops entry that permits each crypto operation. */
const KEY_OP_FOR: Record<CryptoOperationName, string> = {
  wrapkey: 'wrapKey',
  unwrapkey: 'unwrapKey',
  encrypt: 'encrypt',
  decrypt: 'decrypt',
};
/**
 * Key Vault enforces nbf/exp only for operations that create new protected data or signatures;
 * decrypt, unwrap and verify still work outside the validity window so that existing data stays
 * recoverable (Key Vault docs, "Date-time controlled operations").
 */
const WINDOW_ENFORCED: ReadonlySet<CryptoOperationName> = new Set(['wrapkey', 'encrypt']);

type RsaKeyType = (typeof RSA_KEY_TYPES)[number];
type RsaAlgorithm = (typeof RSA_ALGORITHMS)[number];

interface KeyAttributes {
  enabled: boolean;
  /** Unix seconds. */
  nbf?: number;
  /** Unix seconds. */
  exp?: number;
  created: number;
  updated: number;
}

interface KeyVersion {
  version: string;
  kty: RsaKeyType;
  keySize: number;
  keyOps: string[];
  attributes: KeyAttributes;
  tags?: Record<string, string>;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** Public JWK members, base64url. */
  n: string;
  e: string;
}

interface KeyEntry {
  name: string;
  /** Creation order; the last one is the current version. */
  versions: KeyVersion[];
}

interface StateFile {
  format: 'keyvault-emulator-state/v1';
  /** Absent in files written before the certificates API. */
  certificates?: Array<{
    name: string;
    policy: unknown;
    versions: Array<{
      version: string;
      cer: string;
      attributes: CertEntry['versions'][number]['attributes'];
      tags?: Record<string, string>;
    }>;
  }>;
  keys: Array<{
    name: string;
    versions: Array<{
      version: string;
      kty: RsaKeyType;
      keySize: number;
      keyOps: string[];
      attributes: KeyAttributes;
      tags?: Record<string, string>;
      privateKeyPem: string;
    }>;
  }>;
}

class KvError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly innerCode?: string,
  ) {
    super(message);
  }
}

const badParameter = (message: string): KvError => new KvError(400, 'BadParameter', message);

const keyNotFound = (name: string, version?: string): KvError =>
  new KvError(
    404,
    'KeyNotFound',
    `A key with (name/id) ${version ? `${name}/${version}` : name} was not found in this key vault. ` +
      'If you recently deleted this key you may be able to recover it using the correct recovery command. ' +
      'For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182',
  );

const generateKeyPairAsync = promisify(generateKeyPair);
/** DER DigestInfo prefix of a SHA-256 digest (RFC 8017 9.2). */
const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');

// ------------------------------------------------------------------------------------------ server

export async function startKeyVaultEmulator(opts: KeyVaultEmulatorOptions): Promise<KeyVaultEmulator> {
  const baseClock = opts.clock ?? Date.now;
  let clockOffsetMs = 0;
  const clock = (): number => baseClock() + clockOffsetMs;
  let caPromise: Promise<TestCa> | undefined;
  const testCa = (): Promise<TestCa> =>
    (caPromise ??= opts.caCertPem && opts.caKeyPem ? loadTestCa(opts.caCertPem, opts.caKeyPem) : generateTestCa());
  const nowSeconds = (): number => Math.floor(clock() / 1000);
  const listenHost = opts.host ?? '127.0.0.1';
  const keys = new Map<string, KeyEntry>();
  let initialCerts: CertEntry[] = [];
  if (opts.statePath) {
    mkdirSync(dirname(opts.statePath), { recursive: true });
    const loaded = loadState(opts.statePath);
    for (const entry of loaded.keys) keys.set(entry.name, entry);
    initialCerts = loaded.certificates;
  }
  const certificates = createCertificateStore({
    ca: testCa,
    nowMs: clock,
    initial: initialCerts,
    persist: () => {
      if (opts.statePath) writeStateAtomically(opts.statePath, keys, certificates.certs);
    },
    keys: {
      addKey(name, version, kty, keySize, keyOps, exp, nbf, privateKey, publicKey) {
        const jwk = publicKey.export({ format: 'jwk' });
        const now = nowSeconds();
        const kv: KeyVersion = {
          version,
          kty,
          keySize,
          keyOps,
          attributes: { enabled: true, nbf, exp, created: now, updated: now },
          privateKey,
          publicKey,
          n: jwk.n as string,
          e: jwk.e as string,
        };
        const existing = keys.get(name);
        if (existing) existing.versions.push(kv);
        else keys.set(name, { name, versions: [kv] });
      },
      setKeyEnabled(name, version, enabled) {
        const kv = keys.get(name)?.versions.find((v) => v.version === version);
        if (kv) kv.attributes.enabled = enabled;
      },
    },
  });

  // ---------------------------------------------------------------- stats and faults
  const faults: FaultSpec[] = [];
  let stats = emptyStats();
  let faultShare: { share: number; faults: FaultSpec[]; next: () => number } | undefined;
  const sharedFault = (): FaultSpec | undefined => {
    if (!faultShare || faultShare.next() >= faultShare.share) return undefined;
    return faultShare.faults[Math.floor(faultShare.next() * faultShare.faults.length)];
  };

  const control: EmulatorControl = {
    failNext(count, fault) {
      if (!Number.isInteger(count) || count < 1 || count > 1_000_000) {
        throw new TypeError('failNext: count must be a positive integer');
      }
      const status: unknown = fault?.status;
      if (status !== 429 && status !== 500 && status !== 503) {
        throw new TypeError('failNext: status must be 429, 500 or 503');
      }
      const retry = fault.retryAfterSeconds;
      if (retry !== undefined && !(typeof retry === 'number' && Number.isFinite(retry) && retry >= 0)) {
        throw new TypeError('failNext: retryAfterSeconds must be a non-negative number');
      }
      const spec: FaultSpec =
        retry === undefined ? { status: fault.status } : { status: fault.status, retryAfterSeconds: retry };
      for (let i = 0; i < count; i++) faults.push(spec);
    },
    failShare(share, specs, seed) {
      if (!(typeof share === 'number' && share >= 0 && share <= 1)) {
        throw new TypeError('failShare: share must be a number from 0 to 1');
      }
      if (share === 0) {
        faultShare = undefined;
        return;
      }
      if (!Array.isArray(specs) || specs.length === 0)
        throw new TypeError('failShare: faults must be a non-empty list');
      const checked = specs.map((f) => {
        if (f?.status !== 429 && f?.status !== 500 && f?.status !== 503) {
          throw new TypeError('failShare: status must be 429, 500 or 503');
        }
        const retry = f.retryAfterSeconds;
        if (retry !== undefined && !(typeof retry === 'number' && Number.isFinite(retry) && retry >= 0)) {
          throw new TypeError('failShare: retryAfterSeconds must be a non-negative number');
        }
        return retry === undefined ? { status: f.status } : { status: f.status, retryAfterSeconds: retry };
      });
      // mulberry32: small, seedable, good enough to spread faults.
      let state = (seed ?? Math.floor(Math.random() * 2 ** 32)) >>> 0;
      const next = () => {
        state = (state + 0x6d2b79f5) >>> 0;
        let t = state;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
      };
      faultShare = { share, faults: checked, next };
    },
    stats() {
      return {
        ...stats,
        pendingFaults: faults.length,
        operations: { ...stats.operations },
        cryptoTimestamps: {
          wrapkey: [...stats.cryptoTimestamps.wrapkey],
          unwrapkey: [...stats.cryptoTimestamps.unwrapkey],
          encrypt: [...stats.cryptoTimestamps.encrypt],
          decrypt: [...stats.cryptoTimestamps.decrypt],
        },
      };
    },
    reset() {
      faults.length = 0;
      faultShare = undefined;
      stats = emptyStats();
    },
    async advanceClock(seconds) {
      if (!Number.isFinite(seconds) || seconds < 0) throw new TypeError('advanceClock: seconds must be >= 0');
      clockOffsetMs += seconds * 1000;
      await certificates.runLifetimeActions();
      return clock();
    },
    async caPem() {
      return (await testCa()).certPem;
    },
  };

  // ---------------------------------------------------------------- persistence
  /** Applies `mutate`, persists, and undoes the change if the state file cannot be written. */
  function commit(mutate: () => () => void): void {
    const undo = mutate();
    if (!opts.statePath) return;
    try {
      writeStateAtomically(opts.statePath, keys, certificates.certs);
    } catch {
      undo();
      throw new KvError(500, 'InternalServerError', 'The emulator could not persist its state file.');
    }
  }

  // ---------------------------------------------------------------- helpers
  function findVersion(name: string, version: string | undefined): { entry: KeyEntry; kv: KeyVersion } {
    const entry = keys.get(name);
    if (!entry) throw keyNotFound(name, version);
    const kv = version ? entry.versions.find((v) => v.version === version) : entry.versions.at(-1);
    if (!kv) throw keyNotFound(name, version);
    return { entry, kv };
  }

  function ensureEnabled(kv: KeyVersion, operation: string): void {
    if (!kv.attributes.enabled) {
      throw new KvError(403, 'Forbidden', `Operation ${operation} is not allowed on a disabled key.`, 'KeyDisabled');
    }
  }

  function attributesJson(a: KeyAttributes): Record<string, unknown> {
    return {
      enabled: a.enabled,
      ...(a.nbf !== undefined ? { nbf: a.nbf } : {}),
      ...(a.exp !== undefined ? { exp: a.exp } : {}),
      created: a.created,
      updated: a.updated,
      recoveryLevel: RECOVERY_LEVEL,
      recoverableDays: RECOVERABLE_DAYS,
      exportable: false,
    };
  }

  function keyBundle(base: string, name: string, kv: KeyVersion): Record<string, unknown> {
    return {
      key: {
        kid: `${base}/keys/${name}/${kv.version}`,
        kty: kv.kty,
        key_ops: [...kv.keyOps],
        n: kv.n,
        e: kv.e,
      },
      attributes: attributesJson(kv.attributes),
      ...(kv.tags ? { tags: { ...kv.tags } } : {}),
    };
  }

  function page<T>(
    base: string,
    path: string,
    query: URLSearchParams,
    items: T[],
  ): { value: T[]; nextLink: string | null } {
    const maxRaw = query.get('maxresults');
    let max = MAX_PAGE_SIZE;
    if (maxRaw !== null) {
      max = Number(maxRaw);
      if (!Number.isInteger(max) || max < 1 || max > MAX_PAGE_SIZE) {
        throw badParameter(`maxresults must be an integer between 1 and ${MAX_PAGE_SIZE}.`);
      }
    }
    const token = query.get('$skiptoken');
    const offset = token === null ? 0 : Number(Buffer.from(token, 'base64url').toString('utf8'));
    if (!Number.isInteger(offset) || offset < 0) throw badParameter('Invalid $skiptoken.');
    const value = items.slice(offset, offset + max);
    let nextLink: string | null = null;
    if (offset + max < items.length) {
      const next = new URLSearchParams({
        'api-version': query.get('api-version') ?? '',
        $skiptoken: Buffer.from(String(offset + max)).toString('base64url'),
        maxresults: String(max),
      });
      nextLink = `${base}${path}?${next.toString()}`;
    }
    return { value, nextLink };
  }

  // ---------------------------------------------------------------- operations
  async function createKey(base: string, name: string, body: Record<string, unknown>): Promise<unknown> {
    if (!KEY_NAME.test(name)) throw badParameter(`The key name '${name}' is invalid.`);
    const kty = body.kty;
    if (typeof kty !== 'string') throw badParameter('The parameter kty is required.');
    if (!(RSA_KEY_TYPES as readonly string[]).includes(kty)) {
      throw badParameter(`The key type '${kty}' is not supported by the emulator (RSA, RSA-HSM).`);
    }
    const keySize = body.key_size ?? 2048;
    if (typeof keySize !== 'number' || !RSA_KEY_SIZES.includes(keySize)) {
      throw badParameter(`The key size '${String(keySize)}' is invalid for an RSA key (2048, 3072, 4096).`);
    }
    const publicExponent = body.public_exponent ?? 65537;
    if (publicExponent !== 3 && publicExponent !== 65537) {
      throw badParameter('public_exponent must be 3 or 65537.');
    }
    const keyOps =
      body.key_ops === undefined || body.key_ops === null ? [...DEFAULT_RSA_KEY_OPS] : parseKeyOps(body.key_ops);
    const attrs = parseAttributes(body.attributes);
    const tags = parseTags(body.tags);
    if (body.crv !== undefined && body.crv !== null) throw badParameter('crv is not valid for an RSA key.');

    const { privateKey, publicKey } = await generateKeyPairAsync('rsa', { modulusLength: keySize, publicExponent });
    const jwk = publicKey.export({ format: 'jwk' });
    if (typeof jwk.n !== 'string' || typeof jwk.e !== 'string') {
      throw new KvError(500, 'InternalServerError', 'Key generation failed.');
    }
    const now = nowSeconds();
    const kv: KeyVersion = {
      version: newVersionId(),
      kty: kty as RsaKeyType,
      keySize,
      keyOps,
      attributes: {
        enabled: attrs.enabled ?? true,
        ...(attrs.nbf !== undefined && attrs.nbf !== null ? { nbf: attrs.nbf } : {}),
        ...(attrs.exp !== undefined && attrs.exp !== null ? { exp: attrs.exp } : {}),
        created: now,
        updated: now,
      },
      ...(tags ? { tags } : {}),
      privateKey,
      publicKey,
      n: jwk.n,
      e: jwk.e,
    };
    commit(() => {
      const existing = keys.get(name);
      if (existing) {
        existing.versions.push(kv);
        return () => {
          existing.versions = existing.versions.filter((v) => v !== kv);
        };
      }
      keys.set(name, { name, versions: [kv] });
      return () => {
        keys.delete(name);
      };
    });
    return keyBundle(base, name, kv);
  }

  function updateKey(base: string, name: string, version: string | undefined, body: Record<string, unknown>): unknown {
    const { kv } = findVersion(name, version);
    const keyOps = body.key_ops === undefined || body.key_ops === null ? undefined : parseKeyOps(body.key_ops);
    const attrs = parseAttributes(body.attributes);
    const tags = body.tags === undefined ? undefined : parseTags(body.tags);
    commit(() => {
      const before = {
        keyOps: kv.keyOps,
        attributes: { ...kv.attributes },
        tags: kv.tags,
      };
      if (keyOps) kv.keyOps = keyOps;
      if (attrs.enabled !== undefined) kv.attributes.enabled = attrs.enabled;
      for (const field of ['nbf', 'exp'] as const) {
        const value = attrs[field];
        if (value === null) delete kv.attributes[field];
        else if (value !== undefined) kv.attributes[field] = value;
      }
      if (body.tags !== undefined) {
        if (tags) kv.tags = tags;
        else delete kv.tags;
      }
      kv.attributes.updated = nowSeconds();
      return () => {
        kv.keyOps = before.keyOps;
        kv.attributes = before.attributes;
        if (before.tags) kv.tags = before.tags;
        else delete kv.tags;
      };
    });
    return keyBundle(base, name, kv);
  }

  function cryptoOperation(
    base: string,
    op: CryptoOperationName,
    name: string,
    version: string | undefined,
    body: Record<string, unknown>,
  ): unknown {
    const { kv } = findVersion(name, version);
    const keyOp = KEY_OP_FOR[op];
    ensureEnabled(kv, keyOp);
    if (!kv.keyOps.includes(keyOp)) {
      throw new KvError(403, 'Forbidden', `Operation ${keyOp} is not permitted on this key.`, 'KeyOperationForbidden');
    }
    if (WINDOW_ENFORCED.has(op)) {
      const now = nowSeconds();
      if (kv.attributes.nbf !== undefined && now < kv.attributes.nbf) {
        throw new KvError(
          403,
          'Forbidden',
          `Operation ${keyOp} is not allowed on a key that is not yet valid.`,
          'KeyNotYetValid',
        );
      }
      if (kv.attributes.exp !== undefined && now >= kv.attributes.exp) {
        throw new KvError(403, 'Forbidden', `Operation ${keyOp} is not allowed on an expired key.`, 'KeyExpired');
      }
    }
    const alg = body.alg;
    if (typeof alg !== 'string') throw badParameter('The parameter alg is required.');
    if (!(RSA_ALGORITHMS as readonly string[]).includes(alg)) {
      throw badParameter(`The algorithm '${alg}' is not valid for an RSA key.`);
    }
    const input = decodeBase64Url(body.value, 'value');
    const modulusBytes = kv.keySize / 8;
    let output: Buffer;
    if (op === 'wrapkey' || op === 'encrypt') {
      try {
        output = rsaEncrypt(kv.publicKey, alg as RsaAlgorithm, input);
      } catch {
        throw badParameter(`The value is too long for ${alg} with a ${kv.keySize}-bit key.`);
      }
    } else {
      const failure = badParameter(
        op === 'unwrapkey' ? 'The wrapped key could not be unwrapped.' : 'The ciphertext could not be decrypted.',
      );
      if (input.length !== modulusBytes) throw failure;
      try {
        output = rsaDecrypt(kv.privateKey, alg as RsaAlgorithm, input);
      } catch {
        throw failure;
      }
    }
    return { kid: `${base}/keys/${name}/${kv.version}`, value: output.toString('base64url') };
  }

  /** RS256 over the SHA-256 digest the client sends (PKCS#1 v1.5 with the DigestInfo prefix). */
  function signOperation(
    base: string,
    op: 'sign' | 'verify',
    name: string,
    version: string | undefined,
    body: Record<string, unknown>,
  ): unknown {
    const { kv } = findVersion(name, version);
    ensureEnabled(kv, op);
    if (!kv.keyOps.includes(op)) {
      throw new KvError(403, 'Forbidden', `Operation ${op} is not permitted on this key.`, 'KeyOperationForbidden');
    }
    if (body.alg !== 'RS256') throw badParameter('The emulator signs with RS256 only.');
    const digest = decodeBase64Url(op === 'sign' ? body.value : body.digest, op === 'sign' ? 'value' : 'digest');
    if (digest.length !== 32) throw badParameter('The digest must be 32 bytes (SHA-256).');
    const digestInfo = Buffer.concat([SHA256_DIGEST_INFO, digest]);
    if (op === 'sign') {
      const signature = privateEncrypt({ key: kv.privateKey, padding: cryptoConstants.RSA_PKCS1_PADDING }, digestInfo);
      return { kid: `${base}/keys/${name}/${kv.version}`, value: signature.toString('base64url') };
    }
    const signature = decodeBase64Url(body.value, 'value');
    let recovered: Buffer | undefined;
    try {
      recovered = publicDecrypt({ key: kv.publicKey, padding: cryptoConstants.RSA_PKCS1_PADDING }, signature);
    } catch {
      recovered = undefined;
    }
    return { value: recovered !== undefined && recovered.equals(digestInfo) };
  }

  // ---------------------------------------------------------------- request handling
  async function handleVault(req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer): Promise<void> {
    const method = req.method ?? 'GET';
    const route = routeOf(method, url.pathname);
    stats.totalRequests++;

    const auth = req.headers.authorization;
    if (!auth || !/^Bearer\s+\S+/i.test(auth)) {
      stats.unauthorized++;
      res.setHeader(
        'WWW-Authenticate',
        'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="https://vault.azure.net"',
      );
      throw new KvError(401, 'Unauthorized', 'AKV10000: Request is missing a Bearer or PoP token.');
    }

    stats.operations[route.op]++;
    if (isCryptoOp(route.op)) stats.cryptoTimestamps[route.op].push(clock());

    const fault = faults.shift() ?? sharedFault();
    if (fault) {
      stats.faultsInjected++;
      if (fault.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(fault.retryAfterSeconds));
      const code =
        fault.status === 429 ? 'Throttled' : fault.status === 503 ? 'ServiceUnavailable' : 'InternalServerError';
      const message =
        fault.status === 429
          ? 'Request was not processed because too many requests were received. (injected by keyvault-emulator)'
          : `The service is unavailable. (status ${fault.status} injected by keyvault-emulator)`;
      throw new KvError(fault.status, code, message);
    }

    const apiVersion = url.searchParams.get('api-version');
    if (!apiVersion) throw badParameter("The 'api-version' query parameter is missing.");
    if (!API_VERSION.test(apiVersion)) throw badParameter(`The specified version (${apiVersion}) is not recognized.`);

    const base = vaultBase(req, serverUrl);
    const json = (): Record<string, unknown> => parseJsonBody(body);
    if (route.op === 'certificates') {
      const seg = url.pathname.split('/').slice(1).map(decodeSegment);
      try {
        const out = await certificates.handle(method, seg, base, json);
        sendJson(res, out.status, out.body);
      } catch (e) {
        if (e instanceof CertError) throw new KvError(e.status, e.code, e.message);
        throw e;
      }
      return;
    }
    const { name, version } = route;
    if (version !== undefined && !KEY_VERSION.test(version)) throw keyNotFound(name ?? '', version);

    let result: unknown;
    switch (route.op) {
      case 'create':
        result = await createKey(base, name!, json());
        break;
      case 'get': {
        const { kv } = findVersion(name!, version);
        ensureEnabled(kv, 'get');
        result = keyBundle(base, name!, kv);
        break;
      }
      case 'list': {
        const items = [...keys.values()]
          .filter((e) => e.versions.length > 0)
          .sort((a, b) => a.name.localeCompare(b.name))
          .map((e) => {
            const latest = e.versions.at(-1)!;
            return {
              kid: `${base}/keys/${e.name}`,
              attributes: attributesJson(latest.attributes),
              ...(latest.tags ? { tags: { ...latest.tags } } : {}),
            };
          });
        result = page(base, '/keys', url.searchParams, items);
        break;
      }
      case 'listVersions': {
        const entry = keys.get(name!);
        if (!entry) throw keyNotFound(name!);
        const items = entry.versions.map((kv) => ({
          kid: `${base}/keys/${name}/${kv.version}`,
          attributes: attributesJson(kv.attributes),
          ...(kv.tags ? { tags: { ...kv.tags } } : {}),
        }));
        result = page(base, `/keys/${name}/versions`, url.searchParams, items);
        break;
      }
      case 'update':
        result = updateKey(base, name!, version, json());
        break;
      case 'sign':
      case 'verify':
        result = signOperation(base, route.op, name!, version, json());
        break;
      case 'wrapkey':
      case 'unwrapkey':
      case 'encrypt':
      case 'decrypt':
        result = cryptoOperation(base, route.op, name!, version, json());
        break;
      case 'unsupported':
        throw new KvError(
          501,
          'NotImplemented',
          `The keyvault-emulator does not implement ${method} ${url.pathname} (keys: create, get, list, versions, update, wrapkey, unwrapkey, encrypt, decrypt).`,
        );
    }
    sendJson(res, 200, result);
  }

  async function handleControl(req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer): Promise<void> {
    const method = req.method ?? 'GET';
    if (url.pathname === '/_emulator/faults' && method === 'POST') {
      const spec = parseJsonBody(body);
      try {
        control.failNext(spec.count === undefined ? 1 : (spec.count as number), {
          status: spec.status as FaultStatus,
          ...(spec.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: spec.retryAfterSeconds as number }),
        });
      } catch (e) {
        throw badParameter((e as Error).message);
      }
      sendJson(res, 200, { pendingFaults: faults.length });
      return;
    }
    if (url.pathname === '/_emulator/fault-share' && method === 'POST') {
      const spec = parseJsonBody(body);
      try {
        control.failShare(
          spec.share as number,
          (spec.faults ?? []) as FaultSpec[],
          spec.seed === undefined ? undefined : (spec.seed as number),
        );
      } catch (e) {
        throw badParameter((e as Error).message);
      }
      sendJson(res, 200, { share: spec.share });
      return;
    }
    if (url.pathname === '/_emulator/stats' && method === 'GET') {
      sendJson(res, 200, control.stats());
      return;
    }
    if (url.pathname === '/_emulator/reset' && method === 'POST') {
      control.reset();
      sendJson(res, 200, { reset: true });
      return;
    }
    if (url.pathname === '/_emulator/clock' && method === 'POST') {
      const spec = parseJsonBody(body);
      const seconds = spec.advanceSeconds;
      if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0)
        throw badParameter('advanceSeconds must be a non-negative number.');
      sendJson(res, 200, { nowMs: await control.advanceClock(seconds) });
      return;
    }
    if (url.pathname === '/_emulator/ca' && method === 'GET') {
      sendJson(res, 200, { pem: await control.caPem() });
      return;
    }
    throw new KvError(404, 'NotFound', 'Unknown emulator control endpoint.');
  }

  const server: Server = createServer({ cert: opts.certPem, key: opts.keyPem }, (req, res) => {
    res.setHeader('x-ms-request-id', randomUUID());
    res.setHeader('x-ms-keyvault-service-version', SERVICE_VERSION);
    res.setHeader('x-ms-keyvault-region', 'emulator');
    res.setHeader('Cache-Control', 'no-cache');
    const clientRequestId = req.headers['x-ms-client-request-id'];
    if (typeof clientRequestId === 'string' && /^[\w.-]{1,128}$/.test(clientRequestId)) {
      res.setHeader('x-ms-client-request-id', clientRequestId);
    }
    readBody(req)
      .then(async (body) => {
        const url = new URL(req.url ?? '/', 'https://emulator.invalid');
        if (url.pathname.startsWith('/_emulator/')) await handleControl(req, res, url, body);
        else await handleVault(req, res, url, body);
      })
      .catch((err: unknown) => {
        if (res.headersSent) {
          res.destroy();
          return;
        }
        if (err instanceof KvError) {
          sendJson(res, err.status, {
            error: {
              code: err.code,
              message: err.message,
              ...(err.innerCode ? { innererror: { code: err.innerCode } } : {}),
            },
          });
        } else {
          // Deliberately not logged: the error could carry request material.
          sendJson(res, 500, { error: { code: 'InternalServerError', message: 'Unexpected emulator error.' } });
        }
      });
  });
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(opts.port, listenHost, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const urlHost =
    listenHost === '0.0.0.0' || listenHost === '::'
      ? '127.0.0.1'
      : listenHost.includes(':')
        ? `[${listenHost}]`
        : listenHost;
  const serverUrl = `https://${urlHost}:${port}`;

  let closing: Promise<void> | undefined;
  return {
    url: serverUrl,
    control,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

// ------------------------------------------------------------------------------------------ routing

interface Route {
  op: OperationName;
  name?: string;
  /** undefined = the current (latest) version. */
  version?: string;
}

function routeOf(method: string, pathname: string): Route {
  // Keep empty segments: the SDK sends /keys/{name}/ for "latest" and /keys/{name}//wrapkey when a
  // CryptographyClient was built from a key id without a version.
  const seg = pathname.split('/').slice(1).map(decodeSegment);
  if (seg[0] === 'keys' && seg.length === 4 && method === 'POST' && seg[1]) {
    const op = (seg[3] ?? '').toLowerCase();
    if (op === 'sign' || op === 'verify') return { op, name: seg[1], version: seg[2] ? seg[2] : undefined };
  }
  if (seg[0] === 'certificates' && seg.length >= 2 && seg[1]) return { op: 'certificates' };
  if (seg[0] !== 'keys') return { op: 'unsupported' };
  const name = seg[1];
  const v = (s: string | undefined): string | undefined => (s ? s : undefined);
  if (seg.length === 1 || (seg.length === 2 && name === '')) {
    return method === 'GET' ? { op: 'list' } : { op: 'unsupported' };
  }
  if (!name) return { op: 'unsupported' };
  if (seg.length === 3 && seg[2] === 'create' && method === 'POST') return { op: 'create', name };
  if (seg.length === 3 && seg[2] === 'versions' && method === 'GET') return { op: 'listVersions', name };
  if (seg.length === 2 || seg.length === 3) {
    if (method === 'GET') return { op: 'get', name, version: v(seg[2]) };
    if (method === 'PATCH') return { op: 'update', name, version: v(seg[2]) };
    return { op: 'unsupported' };
  }
  if (seg.length === 4 && method === 'POST') {
    const op = (seg[3] ?? '').toLowerCase();
    if (isCryptoOp(op)) return { op, name, version: v(seg[2]) };
  }
  return { op: 'unsupported' };
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function isCryptoOp(op: string): op is CryptoOperationName {
  return (CRYPTO_OPS as readonly string[]).includes(op);
}

/** The vault URL the client used (Host header), so that kids match what the SDK expects. */
function vaultBase(req: IncomingMessage, fallback: string): string {
  const host = req.headers.host;
  if (host && /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$/.test(host)) return `https://${host}`;
  return fallback;
}

// ------------------------------------------------------------------------------------------ parsing

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('end', () => {
      if (tooLarge) reject(new KvError(413, 'RequestTooLarge', 'The request body is too large.'));
      else resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

function parseJsonBody(body: Buffer): Record<string, unknown> {
  if (body.length === 0) throw badParameter('The request body is missing.');
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw badParameter('The request body is not valid JSON.');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw badParameter('The request body must be a JSON object.');
  }
  return parsed as Record<string, unknown>;
}

function parseKeyOps(value: unknown): string[] {
  if (!Array.isArray(value) || !value.every((op): op is string => typeof op === 'string')) {
    throw badParameter('key_ops must be an array of strings.');
  }
  for (const op of value) {
    if (!KNOWN_KEY_OPS.includes(op)) throw badParameter(`Unknown key operation '${op}'.`);
  }
  return [...new Set(value)];
}

interface ParsedAttributes {
  enabled?: boolean;
  /** null = clear (PATCH only). */
  nbf?: number | null;
  exp?: number | null;
}

function parseAttributes(value: unknown): ParsedAttributes {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw badParameter('attributes must be an object.');
  const a = value as Record<string, unknown>;
  const out: ParsedAttributes = {};
  if (a.enabled !== undefined && a.enabled !== null) {
    if (typeof a.enabled !== 'boolean') throw badParameter('attributes.enabled must be a boolean.');
    out.enabled = a.enabled;
  }
  for (const field of ['nbf', 'exp'] as const) {
    const v = a[field];
    if (v === undefined) continue;
    if (v === null) out[field] = null;
    else if (typeof v === 'number' && Number.isInteger(v)) out[field] = v;
    else throw badParameter(`attributes.${field} must be an integer (unix seconds).`);
  }
  if (a.exportable === true) throw badParameter('Exportable keys are not supported by the emulator.');
  return out;
}

function parseTags(value: unknown): Record<string, string> | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) throw badParameter('tags must be an object.');
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > 15) throw badParameter('A key can have at most 15 tags.');
  const tags: Record<string, string> = {};
  for (const [k, v] of entries) {
    if (typeof v !== 'string') throw badParameter(`The value of tag '${k}' must be a string.`);
    tags[k] = v;
  }
  return entries.length > 0 ? tags : undefined;
}

function decodeBase64Url(value: unknown, field: string): Buffer {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_-]*={0,2}$/.test(value)) {
    throw badParameter(`The parameter ${field} must be base64url encoded.`);
  }
  return Buffer.from(value, 'base64url');
}

// ------------------------------------------------------------------------------------------ RSA

function rsaEncrypt(publicKey: KeyObject, alg: RsaAlgorithm, data: Buffer): Buffer {
  if (alg === 'RSA1_5') return publicEncrypt({ key: publicKey, padding: cryptoConstants.RSA_PKCS1_PADDING }, data);
  return publicEncrypt(
    {
      key: publicKey,
      padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING,
      oaepHash: alg === 'RSA-OAEP-256' ? 'sha256' : 'sha1',
    },
    data,
  );
}

function rsaDecrypt(privateKey: KeyObject, alg: RsaAlgorithm, data: Buffer): Buffer {
  if (alg !== 'RSA1_5') {
    return privateDecrypt(
      {
        key: privateKey,
        padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: alg === 'RSA-OAEP-256' ? 'sha256' : 'sha1',
      },
      data,
    );
  }
  // Node 20 refuses PKCS#1 v1.5 private decryption (CVE-2023-46809), so strip the padding of the
  // raw RSA result here: 0x00 0x02 <at least 8 non-zero bytes> 0x00 <message>.
  const em = privateDecrypt({ key: privateKey, padding: cryptoConstants.RSA_NO_PADDING }, data);
  let separator = -1;
  for (let i = 2; i < em.length; i++) {
    if (separator < 0 && em[i] === 0x00) separator = i;
  }
  if (em[0] !== 0x00 || em[1] !== 0x02 || separator < 10) throw new Error('invalid PKCS#1 v1.5 padding');
  return em.subarray(separator + 1);
}

function newVersionId(): string {
  return randomBytes(16).toString('hex');
}

// ------------------------------------------------------------------------------------------ state file

function loadState(path: string): { keys: KeyEntry[]; certificates: CertEntry[] } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { keys: [], certificates: [] };
    throw e;
  }
  // A state file that cannot be read is an error, never a reason to start empty and overwrite keys.
  const state = JSON.parse(text) as StateFile;
  if (state?.format !== 'keyvault-emulator-state/v1' || !Array.isArray(state.keys)) {
    throw new Error(`keyvault-emulator: ${path} is not a keyvault-emulator state file`);
  }
  const certificates: CertEntry[] = (state.certificates ?? []).map((c) => {
    const policy = parsePolicy(c.policy);
    return {
      name: c.name,
      policy,
      versions: c.versions.map((v) => ({
        version: v.version,
        der: Buffer.from(v.cer, 'base64'),
        attributes: { ...v.attributes },
        ...(v.tags ? { tags: { ...v.tags } } : {}),
      })),
    };
  });
  const loadedKeys = state.keys.map((k) => ({
    name: k.name,
    versions: k.versions.map((v) => {
      const privateKey = createPrivateKey(v.privateKeyPem);
      const publicKey = createPublicKey(privateKey);
      const jwk = publicKey.export({ format: 'jwk' });
      if (typeof jwk.n !== 'string' || typeof jwk.e !== 'string') {
        throw new Error(`keyvault-emulator: ${path}: key ${k.name}/${v.version} is not an RSA key`);
      }
      return {
        version: v.version,
        kty: v.kty,
        keySize: v.keySize,
        keyOps: [...v.keyOps],
        attributes: { ...v.attributes },
        ...(v.tags ? { tags: { ...v.tags } } : {}),
        privateKey,
        publicKey,
        n: jwk.n,
        e: jwk.e,
      };
    }),
  }));
  return { keys: loadedKeys, certificates };
}

function writeStateAtomically(path: string, keys: Map<string, KeyEntry>, certs: Map<string, CertEntry>): void {
  const state: StateFile = {
    format: 'keyvault-emulator-state/v1',
    certificates: [...certs.values()].map((c) => ({
      name: c.name,
      policy: c.policy,
      versions: c.versions.map((v) => ({
        version: v.version,
        cer: v.der.toString('base64'),
        attributes: v.attributes,
        ...(v.tags ? { tags: v.tags } : {}),
      })),
    })),
    keys: [...keys.values()].map((entry) => ({
      name: entry.name,
      versions: entry.versions.map((v) => ({
        version: v.version,
        kty: v.kty,
        keySize: v.keySize,
        keyOps: v.keyOps,
        attributes: v.attributes,
        ...(v.tags ? { tags: v.tags } : {}),
        privateKeyPem: v.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      })),
    })),
  };
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, JSON.stringify(state, null, 2));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // ignore
    }
    throw e;
  }
}

// ------------------------------------------------------------------------------------------ misc

function emptyStats(): EmulatorStats {
  return {
    totalRequests: 0,
    unauthorized: 0,
    faultsInjected: 0,
    pendingFaults: 0,
    operations: {
      create: 0,
      get: 0,
      list: 0,
      listVersions: 0,
      update: 0,
      wrapkey: 0,
      unwrapkey: 0,
      encrypt: 0,
      decrypt: 0,
      sign: 0,
      verify: 0,
      certificates: 0,
      unsupported: 0,
    },
    cryptoTimestamps: { wrapkey: [], unwrapkey: [], encrypt: [], decrypt: [] },
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}
