import { createHash } from 'node:crypto';

/**
 * Where a new tenant goes: rendezvous (highest-random-weight) hashing of the tenant id over the
 * vaults open to new tenants. Each vault scores SHA-256("anc-vault\0" + vaultId + "\0" + tenantId)
 * (first 8 bytes, big-endian); the highest score wins, ties (never seen in practice) go to the
 * smaller id. Stable (the same inputs always give the same vault), uniform (each vault wins for
 * about 1/n of tenant ids), and adding or closing a vault moves only the tenants whose winner it
 * was or becomes. A client computes it without asking the service. The service records the result
 * at the tenant's first key and never changes it except by a move.
 */
export function rendezvousVault(tenantId: string, vaultIds: readonly string[]): string {
  let best: { id: string; score: bigint } | undefined;
  for (const id of vaultIds) {
    const score = createHash('sha256').update(`anc-vault\0${id}\0${tenantId}`).digest().readBigUInt64BE(0);
    if (!best || score > best.score || (score === best.score && id < best.id)) best = { id, score };
  }
  if (!best) throw new RangeError('no vault is open to new tenants');
  return best.id;
}
