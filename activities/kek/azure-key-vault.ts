import type { TokenCredential } from '@azure/core-auth';
import { CryptographyClient, KeyClient, type KeyClientOptions, type KeyVaultKey } from '@azure/keyvault-keys';
import type { PipelinePolicy } from '@azure/core-rest-pipeline';
import {
  emptyStats,
  KekUnwrapError,
  KekVersionNotFoundError,
  wrapWithPublicKey,
  type KekProvider,
  type KekVersion,
} from './provider';
import type { SlidingWindowLimiter } from './rate-limiter';

export interface AzureKeyVaultKekOptions {
  vaultUrl: string;
  keyName: string;
  keySize: 2048 | 3072 | 4096;
  credential: TokenCredential;
  /** Budget for calls that reach the HSM (unwrap, create, disable). */
  limiter: SlidingWindowLimiter;
  /** PEM of a CA to trust in addition to the system's (the local emulator only). */
  trustedCaPem?: string;
  /** Skip the check that the auth challenge's resource matches the vault's domain (emulator only). */
  disableChallengeResourceVerification?: boolean;
}

function statusOf(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null && 'statusCode' in err
    ? (err as { statusCode?: number }).statusCode
    : undefined;
}

/**
 * The KEK is an RSA-HSM key in Azure Key Vault used with RSA-OAEP-256. Wrapping is local with
 * the version's cached public key (Key Vault's own guidance for public-key operations); only
 * unwrap, create and disable reach the HSM. 429 and 5xx are retried by the SDK's pipeline with
 * exponential backoff (1 s doubling to 16 s) honouring Retry-After; what still fails is thrown
 * as a plain error so Temporal retries the activity.
 */
export class AzureKeyVaultKekProvider implements KekProvider {
  readonly kind = 'azure-key-vault' as const;
  private readonly counters = emptyStats();
  private readonly keys: KeyClient;
  // The SDK mutates the options object it is given, so each client gets a fresh one.
  private readonly clientOptions: () => KeyClientOptions;
  private readonly versions = new Map<string, KekVersion>();
  private readonly crypto = new Map<string, CryptographyClient>();

  constructor(private readonly opts: AzureKeyVaultKekOptions) {
    const counters = this.counters;
    const throttleCounter: PipelinePolicy = {
      name: 'anc-kek-throttle-counter',
      async sendRequest(request, next) {
        const response = await next(request);
        if (response.status === 429 || response.status >= 500) counters.throttled += 1;
        return response;
      },
    };
    this.clientOptions = () => ({
      retryOptions: { maxRetries: 6, retryDelayInMs: 1000, maxRetryDelayInMs: 16_000 },
      additionalPolicies: [{ policy: throttleCounter, position: 'perRetry' }],
      disableChallengeResourceVerification: opts.disableChallengeResourceVerification,
      ...(opts.trustedCaPem ? { tlsOptions: { ca: opts.trustedCaPem } } : {}),
    });
    this.keys = new KeyClient(opts.vaultUrl, opts.credential, this.clientOptions());
  }

  private toVersion(key: KeyVaultKey): KekVersion {
    const { n, e } = key.key ?? {};
    if (!key.properties.version || !n || !e)
      throw new Error(`Key Vault returned key ${key.name} without an RSA public key`);
    if (!key.properties.expiresOn) throw new Error(`KEK version ${key.properties.version} has no expiry date`);
    return {
      kekId: this.opts.keyName,
      version: key.properties.version,
      publicJwk: { kty: 'RSA', n: Buffer.from(n).toString('base64url'), e: Buffer.from(e).toString('base64url') },
      createdAt: key.properties.createdOn ?? new Date(0),
      expiresAt: key.properties.expiresOn,
      enabled: key.properties.enabled !== false,
    };
  }

  async getVersion(version: string): Promise<KekVersion> {
    const cached = this.versions.get(version);
    if (cached) return cached;
    this.counters.reads += 1;
    try {
      const v = this.toVersion(await this.keys.getKey(this.opts.keyName, { version }));
      this.versions.set(version, v);
      return v;
    } catch (err) {
      if (statusOf(err) === 404) throw new KekVersionNotFoundError(version);
      throw err;
    }
  }

  async listVersions(): Promise<KekVersion[]> {
    const result: KekVersion[] = [];
    this.counters.reads += 1;
    try {
      for await (const props of this.keys.listPropertiesOfKeyVersions(this.opts.keyName)) {
        if (!props.version) continue;
        const v = await this.getVersion(props.version);
        // Enabled state can change; the listing is authoritative for it.
        result.push({ ...v, enabled: props.enabled !== false });
      }
    } catch (err) {
      if (statusOf(err) === 404) return [];
      throw err;
    }
    return result.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.version.localeCompare(b.version));
  }

  async currentVersion(): Promise<KekVersion | undefined> {
    return (await this.listVersions()).filter((v) => v.enabled).at(-1);
  }

  async createVersion(expiresAt: Date): Promise<KekVersion> {
    await this.opts.limiter.acquire();
    this.counters.creates += 1;
    const key = await this.keys.createRsaKey(this.opts.keyName, {
      hsm: true,
      keySize: this.opts.keySize,
      expiresOn: expiresAt,
      keyOps: ['wrapKey', 'unwrapKey'],
    });
    const v = this.toVersion(key);
    this.versions.set(v.version, v);
    return v;
  }

  async wrap(key: Buffer, version: KekVersion): Promise<Buffer> {
    return wrapWithPublicKey(version.publicJwk, key);
  }

  private cryptoClient(version: string): CryptographyClient {
    let client = this.crypto.get(version);
    if (!client) {
      const kid = `${this.opts.vaultUrl.replace(/\/+$/, '')}/keys/${this.opts.keyName}/${version}`;
      client = new CryptographyClient(kid, this.opts.credential, this.clientOptions());
      this.crypto.set(version, client);
    }
    return client;
  }

  async unwrap(wrapped: Buffer, version: string): Promise<Buffer> {
    await this.opts.limiter.acquire();
    this.counters.remoteUnwraps += 1;
    try {
      const { result } = await this.cryptoClient(version).unwrapKey('RSA-OAEP-256', wrapped);
      return Buffer.from(result);
    } catch (err) {
      const status = statusOf(err);
      if (status === 404) throw new KekVersionNotFoundError(version);
      if (status === 400 || status === 403) throw new KekUnwrapError();
      throw err;
    }
  }

  async disableVersion(version: string): Promise<void> {
    await this.opts.limiter.acquire();
    await this.keys.updateKeyProperties(this.opts.keyName, version, { enabled: false });
    const cached = this.versions.get(version);
    if (cached) this.versions.set(version, { ...cached, enabled: false });
  }

  stats() {
    return { ...this.counters };
  }
}
