import type { PublicKek, VaultKeyring } from '../common/types';
import { setGauge } from '../common/metrics';
import { vaultsOf, type ActivityDeps } from './deps';
import type { KekDirectory } from './kek/directory';
import { processMeter } from './metrics';

/** The KEK version clients seal passwords for. Public material only. */
export async function describeCurrentKek(deps: ActivityDeps): Promise<PublicKek> {
  return describeKek(deps.kek);
}

/** Every vault's current KEK version and the vaults open to new tenants. Public material only. */
export async function describeVaultKeks(deps: ActivityDeps): Promise<VaultKeyring> {
  const vaults = vaultsOf(deps);
  const described = [];
  for (const vault of vaults.list) described.push({ vaultId: vault.id, kek: await describeKek(vault.kek) });
  return { vaults: described, openVaultIds: vaults.openIds };
}

async function describeKek(kek: KekDirectory): Promise<PublicKek> {
  kek.invalidate();
  const current = await kek.current();
  const { n, e } = current.publicJwk;
  if (typeof n !== 'string' || typeof e !== 'string') throw new Error('KEK public key is not an RSA key');
  // Refreshed hourly by the keyring workflow and right after a rotation renews the KEK.
  setGauge(processMeter(), 'kekDaysToExpiry', (current.expiresAt.getTime() - Date.now()) / 86_400_000, {
    vault: kek.vaultId,
  });
  return {
    kekId: current.kekId,
    version: current.version,
    publicJwk: { kty: 'RSA', n, e, kid: `${current.kekId}/${current.version}`, alg: 'RSA-OAEP-256' },
    expiresAt: current.expiresAt.toISOString(),
    ...(current.x5c ? { x5c: [...current.x5c] } : {}),
  };
}
