import { PRIMARY_VAULT_ID } from '../../common/vaults';
import { metered } from './metered';
import type { KekProvider, KekVersion } from './provider';

/**
 * Caches the current KEK version (public material only) so sealing a new tenant key does not
 * cost a Key Vault read each time. Rotation calls `invalidate()` after creating a version.
 */
export class KekDirectory {
  private cached: { version: KekVersion; at: number } | undefined;
  /** The provider, with its Key Vault calls counted and timed (see metered.ts). */
  readonly provider: KekProvider;

  /** `vaultId`: the vault this KEK is in, the `vault` label of its Key Vault metrics. */
  constructor(
    provider: KekProvider,
    private readonly ttlMs = 60_000,
    readonly vaultId: string = PRIMARY_VAULT_ID,
  ) {
    this.provider = metered(provider, vaultId);
  }

  async current(): Promise<KekVersion> {
    const now = Date.now();
    if (this.cached && now - this.cached.at < this.ttlMs) return this.cached.version;
    const version = await this.provider.currentVersion();
    // Retryable: the worker creates the first version at start; a later attempt will find it.
    if (!version) throw new Error('the key-encryption key has no enabled version yet');
    this.cached = { version, at: now };
    return version;
  }

  invalidate(): void {
    this.cached = undefined;
  }

  /** Makes sure a first KEK version exists (valid one year). Returns the current version. */
  async bootstrap(now: Date, validityDays = 365): Promise<KekVersion> {
    const existing = await this.provider.currentVersion();
    if (existing) return existing;
    const created = await this.provider.createVersion(new Date(now.getTime() + validityDays * 86_400_000));
    this.invalidate();
    return created;
  }
}
