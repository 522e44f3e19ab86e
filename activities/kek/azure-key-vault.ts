import type { TokenCredential } from '@azure/core-auth';
import { CryptographyClient, KeyClient, type KeyClientOptions, type KeyVaultKey } from '@azure/keyvault-keys';
import type { PipelinePolicy } from '@azure/core-rest-pipeline';
import { addCounter } from '../../common/metrics';
import { serviceMeter } from '../metrics';
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

export function statusOf(err: unknown): number | undefined {
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
  readonly mode: 'certificate' | 'key' = 'key';
  protected readonly counters = emptyStats();
  private readonly keys: KeyClient;
  // The SDK mutates the options object it is given, so each client gets a fresh one.
  protected readonly clientOptions: () => KeyClientOptions;
  protected readonly versions = new Map<string, KekVersion>();
  /** Per version: its crypto client, and that client's first call, which later calls wait for. */
  private readonly crypto = new Map<string, { client: CryptographyClient; firstCall: Promise<unknown> }>();

  constructor(protected readonly opts: AzureKeyVaultKekOptions) {
    const counters = this.counters;
    // Requests whose latest attempt was throttled or failed on the server side.
    const backingOff = new WeakSet<object>();
    const throttleCounter: PipelinePolicy = {
      name: 'anc-kek-throttle-counter',
      async sendRequest(request, next) {
        // Runs once per HTTP attempt. An attempt after a 429/5xx is the SDK's retry (a re-send
        // after an authentication challenge is not).
        if (backingOff.has(request)) addCounter(serviceMeter(), 'keyVaultRetries', 1);
        const response = await next(request);
        if (response.status === 429 || response.status >= 500) {
          counters.throttled += 1;
          backingOff.add(request);
        } else backingOff.delete(request);
        if (response.status === 429) addCounter(serviceMeter(), 'keyVaultThrottled', 1);
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
        if (props.enabled === false) {
          // Key Vault refuses to GET a disabled version (403), so unless this process cached it
          // before, a disabled version is listed from its properties, without its public key.
          const cached = this.versions.get(props.version);
          if (cached) {
            result.push({ ...cached, enabled: false });
            continue;
          }
          if (!props.expiresOn) throw new Error(`KEK version ${props.version} has no expiry date`);
          result.push({
            kekId: this.opts.keyName,
            version: props.version,
            publicJwk: {},
            createdAt: props.createdOn ?? new Date(0),
            expiresAt: props.expiresOn,
            enabled: false,
          });
          continue;
        }
        const v = await this.getVersion(props.version);
        // Enabled state can change; the listing is authoritative for it.
        result.push({ ...v, enabled: true });
      }
    } catch (err) {
      if (statusOf(err) === 404) return [];
      throw err;
    }
    // Creation times have one-second precision; the sort is stable, so versions created in the
    // same second keep the service's order (creation order) instead of a random version-id order.
    return result.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
  }

  async currentVersion(): Promise<KekVersion | undefined> {
    return (await this.listVersions()).filter((v) => v.enabled).at(-1);
  }

  async createVersion(expiresAt: Date): Promise<KekVersion> {
    this.counters.creates += 1;
    const key = await this.opts.limiter.run(() =>
      this.keys.createRsaKey(this.opts.keyName, {
        hsm: true,
        keySize: this.opts.keySize,
        expiresOn: expiresAt,
        keyOps: ['wrapKey', 'unwrapKey'],
      }),
    );
    const v = this.toVersion(key);
    this.versions.set(v.version, v);
    return v;
  }

  async wrap(key: Buffer, version: KekVersion): Promise<Buffer> {
    return wrapWithPublicKey(version.publicJwk, key);
  }

  private unwrapRemote(version: string, wrapped: Buffer): Promise<{ result: Uint8Array }> {
    const entry = this.crypto.get(version);
    if (entry) return entry.firstCall.then(() => entry.client.unwrapKey('RSA-OAEP-256', wrapped));
    const vaultUrl = this.opts.vaultUrl.replace(/\/+$/, '');
    const name = this.opts.keyName;
    const id = `${vaultUrl}/keys/${name}/${version}`;
    // Built from the version's identity alone (no key material, no dates): given only a key id,
    // the SDK first GETs the key and then refuses, client-side, to unwrap once the version's
    // expiry has passed, although Key Vault itself still unwraps (exp only stops new wraps).
    // That would strand every key still wrapped by an expired version, re-wrapping included.
    const client = new CryptographyClient(
      { name, id, properties: { name, id, vaultUrl, version } },
      this.opts.credential,
      this.clientOptions(),
    );
    // A new client's first request goes alone: the SDK's challenge authentication sends it
    // without its body to obtain the challenge, and puts the body back only if that same request
    // completes the challenge. When another first request wins that race, the unwrap is re-sent
    // with no body (a 400, which would read as KekUnwrapError).
    const call = client.unwrapKey('RSA-OAEP-256', wrapped);
    this.crypto.set(version, { client, firstCall: call.catch(() => undefined) });
    return call;
  }

  async unwrap(wrapped: Buffer, version: string): Promise<Buffer> {
    this.counters.remoteUnwraps += 1;
    try {
      const { result } = await this.opts.limiter.run(() => this.unwrapRemote(version, wrapped));
      return Buffer.from(result);
    } catch (err) {
      const status = statusOf(err);
      if (status === 404) throw new KekVersionNotFoundError(version);
      if (status === 400 || status === 403) throw new KekUnwrapError();
      throw err;
    }
  }

  async disableVersion(version: string): Promise<void> {
    await this.opts.limiter.run(() => this.keys.updateKeyProperties(this.opts.keyName, version, { enabled: false }));
    const cached = this.versions.get(version);
    if (cached) this.versions.set(version, { ...cached, enabled: false });
  }

  stats() {
    return { ...this.counters };
  }
}
