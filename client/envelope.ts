import { randomBytes } from 'node:crypto';
import { CompactEncrypt, importJWK } from 'jose';
import type { PublicKek } from '../common/types';
import { PRIMARY_VAULT_ID } from '../common/vaults';

/**
 * Seals a password in the caller's process for the service's current KEK, so only the worker's
 * activity that re-seals it under the tenant key can open it. A fresh AES-256-GCM content key per
 * call, wrapped with RSA-OAEP-256; tenant, ANC, operation, time and a unique id ride in the
 * authenticated protected header.
 */
export async function sealPasswordEnvelope(args: {
  password: string;
  kek: PublicKek;
  tenantId: string;
  ancId: string;
  op: 'create' | 'update';
  now?: Date;
  /** The vault whose KEK `kek` is; named in the header unless it is the first ("primary"). */
  vaultId?: string;
}): Promise<string> {
  const key = await importJWK(args.kek.publicJwk, 'RSA-OAEP-256');
  return new CompactEncrypt(new TextEncoder().encode(args.password))
    .setProtectedHeader({
      alg: 'RSA-OAEP-256',
      enc: 'A256GCM',
      kid: `${args.kek.kekId}/${args.kek.version}`,
      typ: 'anc-password+jwe',
      tid: args.tenantId,
      aid: args.ancId,
      op: args.op,
      iat: Math.floor((args.now ?? new Date()).getTime() / 1000),
      jti: randomBytes(16).toString('base64url'),
      ...(args.vaultId && args.vaultId !== PRIMARY_VAULT_ID ? { vid: args.vaultId } : {}),
    })
    .encrypt(key);
}
