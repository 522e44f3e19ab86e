import { constants, createPrivateKey, generateKeyPair, privateDecrypt, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  emptyStats,
  KekUnwrapError,
  KekVersionNotFoundError,
  wrapWithPublicKey,
  type KekProvider,
  type KekVersion,
} from './provider';

const generateKeyPairAsync = promisify(generateKeyPair);

interface StoredVersion {
  version: string;
  createdAt: string;
  expiresAt: string;
  enabled: boolean;
  privateKeyPem: string;
}

/**
 * NOT FOR PRODUCTION. A development stand-in for Key Vault that keeps RSA private keys in files
 * (mode 0600) under one folder. Used when no KEYVAULT_URL is configured.
 */
export class LocalDevKekProvider implements KekProvider {
  readonly kind = 'local-dev' as const;
  private readonly counters = emptyStats();
  private readonly cache = new Map<string, { meta: KekVersion; privateKeyPem: string }>();

  constructor(
    private readonly dir: string,
    private readonly keySize: 2048 | 3072 | 4096 = 3072,
    private readonly now: () => Date = () => new Date(),
  ) {}

  private async load(version: string): Promise<{ meta: KekVersion; privateKeyPem: string }> {
    const cached = this.cache.get(version);
    if (cached) return cached;
    if (!/^[0-9a-f]{32}$/.test(version)) throw new KekVersionNotFoundError(version);
    let stored: StoredVersion;
    try {
      stored = JSON.parse(await readFile(join(this.dir, `${version}.json`), 'utf8')) as StoredVersion;
    } catch {
      throw new KekVersionNotFoundError(version);
    }
    const publicJwk = createPrivateKey(stored.privateKeyPem).export({ format: 'jwk' });
    const entry = {
      meta: {
        kekId: 'local-dev',
        version: stored.version,
        publicJwk: { kty: 'RSA', n: publicJwk.n, e: publicJwk.e },
        createdAt: new Date(stored.createdAt),
        expiresAt: new Date(stored.expiresAt),
        enabled: stored.enabled,
      },
      privateKeyPem: stored.privateKeyPem,
    };
    this.cache.set(version, entry);
    return entry;
  }

  private async save(stored: StoredVersion): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = join(this.dir, `.${stored.version}.${randomBytes(4).toString('hex')}.tmp`);
    await writeFile(tmp, JSON.stringify(stored), { mode: 0o600 });
    await rename(tmp, join(this.dir, `${stored.version}.json`));
    this.cache.delete(stored.version);
  }

  async listVersions(): Promise<KekVersion[]> {
    this.counters.reads += 1;
    let names: string[] = [];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    const versions = await Promise.all(
      names.filter((n) => /^[0-9a-f]{32}\.json$/.test(n)).map(async (n) => (await this.load(n.slice(0, 32))).meta),
    );
    return versions.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.version.localeCompare(b.version));
  }

  async currentVersion(): Promise<KekVersion | undefined> {
    return (await this.listVersions()).filter((v) => v.enabled).at(-1);
  }

  async getVersion(version: string): Promise<KekVersion> {
    this.counters.reads += 1;
    return (await this.load(version)).meta;
  }

  async createVersion(expiresAt: Date): Promise<KekVersion> {
    this.counters.creates += 1;
    const { privateKey } = await generateKeyPairAsync('rsa', { modulusLength: this.keySize });
    const createdAt = this.now();
    // Versions sort by creation time; the random tail keeps two created in one millisecond apart.
    const version = createdAt.getTime().toString(16).padStart(16, '0') + randomBytes(8).toString('hex');
    await this.save({
      version,
      createdAt: createdAt.toISOString(),
      expiresAt: expiresAt.toISOString(),
      enabled: true,
      privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    });
    return (await this.load(version)).meta;
  }

  async wrap(key: Buffer, version: KekVersion): Promise<Buffer> {
    return wrapWithPublicKey(version.publicJwk, key);
  }

  async unwrap(wrapped: Buffer, version: string): Promise<Buffer> {
    const { meta, privateKeyPem } = await this.load(version);
    if (!meta.enabled) throw new KekUnwrapError();
    this.counters.remoteUnwraps += 1;
    try {
      return privateDecrypt(
        { key: privateKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
        wrapped,
      );
    } catch {
      throw new KekUnwrapError();
    }
  }

  async disableVersion(version: string): Promise<void> {
    const { meta, privateKeyPem } = await this.load(version);
    await this.save({
      version,
      createdAt: meta.createdAt.toISOString(),
      expiresAt: meta.expiresAt.toISOString(),
      enabled: false,
      privateKeyPem,
    });
  }

  stats() {
    return { ...this.counters };
  }
}
