import type { PublicKek } from '../common/types';
import { setGauge } from '../common/metrics';
import type { ActivityDeps } from './deps';
import { processMeter } from './metrics';

/** The KEK version clients seal passwords for. Public material only. */
export async function describeCurrentKek(deps: ActivityDeps): Promise<PublicKek> {
  deps.kek.invalidate();
  const current = await deps.kek.current();
  const { n, e } = current.publicJwk;
  if (typeof n !== 'string' || typeof e !== 'string') throw new Error('KEK public key is not an RSA key');
  // Refreshed hourly by the keyring workflow and right after a rotation renews the KEK.
  setGauge(processMeter(), 'kekDaysToExpiry', (current.expiresAt.getTime() - Date.now()) / 86_400_000);
  return {
    kekId: current.kekId,
    version: current.version,
    publicJwk: { kty: 'RSA', n, e, kid: `${current.kekId}/${current.version}`, alg: 'RSA-OAEP-256' },
    expiresAt: current.expiresAt.toISOString(),
    ...(current.x5c ? { x5c: [...current.x5c] } : {}),
  };
}
