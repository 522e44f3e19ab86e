import { permanentFailure } from '../../common/errors';
import { rendezvousVault } from '../../client/placement';
import { PRIMARY_VAULT_ID } from '../../common/vaults';
import type { KekDirectory } from './directory';

/** One vault the worker serves: its id and its KEK. */
export interface Vault {
  id: string;
  kek: KekDirectory;
}

/**
 * The vaults the worker serves, the first one first. The first is "primary": tenants from before
 * there could be several vaults are on it, and its HSM task queue is the old `<queue>-hsm`. Closed
 * vaults keep serving their tenants but get no new ones.
 */
export class VaultSet {
  private readonly byId: Map<string, Vault>;
  private readonly open: string[];

  constructor(
    readonly list: readonly Vault[],
    closed: Iterable<string> = [],
  ) {
    if (list[0]?.id !== PRIMARY_VAULT_ID) throw new RangeError(`the first vault must be "${PRIMARY_VAULT_ID}"`);
    this.byId = new Map(list.map((v) => [v.id, v]));
    if (this.byId.size !== list.length) throw new RangeError('vault ids must be unique');
    const shut = new Set(closed);
    this.open = list.map((v) => v.id).filter((id) => !shut.has(id));
    if (this.open.length === 0) throw new RangeError('at least one vault must be open to new tenants');
  }

  /** One vault, "primary", with the given KEK: a deployment that never configured several. */
  static single(kek: KekDirectory): VaultSet {
    return new VaultSet([{ id: PRIMARY_VAULT_ID, kek }]);
  }

  get first(): Vault {
    return this.list[0] as Vault;
  }

  get ids(): string[] {
    return this.list.map((v) => v.id);
  }

  /** Vaults new tenants may be placed on. */
  get openIds(): string[] {
    return [...this.open];
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** The vault with this id; a typed, non-retryable failure for one the worker does not serve. */
  get(id: string): Vault {
    const vault = this.byId.get(id);
    if (!vault) throw permanentFailure('VaultUnknown', `vault "${id}" is not one this service is configured with`);
    return vault;
  }

  /** Where a new tenant goes (rendezvous hashing over the open vaults, common/placement.ts). */
  place(tenantId: string): string {
    return rendezvousVault(tenantId, this.open);
  }
}
