/**
 * Anchors of the audit chain's head outside PostgreSQL. The chain's MACs detect a changed or
 * removed record in the middle, but not the newest records deleted (the shorter chain still
 * verifies). So, at every rotation run and at a regular interval, the head (newest seq and MAC) is
 * signed with a key the database's owner does not hold (a Key Vault key: the HSM signs) and kept in
 * the audit-anchor workflow's state in Temporal. `anc audit verify` then reports a chain shorter than
 * its last anchor, or whose record at the anchored seq has another MAC.
 */
import {
  constants,
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  privateEncrypt,
  type KeyObject,
} from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TokenCredential } from '@azure/core-auth';
import { CryptographyClient, KeyClient, type KeyClientOptions, type KeyVaultKey } from '@azure/keyvault-keys';
import type { AuditAnchor } from '../common/types';
import { auditAnchorPayload, readAuditHead } from './audit-anchor-check';
import type { ActivityDeps } from './deps';
import { statusOf } from './kek/azure-key-vault';

/** Signs an anchor's payload digest; only public material leaves it. */
export interface AuditAnchorSigner {
  /** The signing key's id (it is part of what is signed). */
  keyId(): Promise<string>;
  sign(digest: Buffer): Promise<{ kid: string; signature: Buffer; publicJwk: AuditAnchor['publicJwk'] }>;
}

function rsaJwk(key: KeyObject): AuditAnchor['publicJwk'] {
  const jwk = key.export({ format: 'jwk' });
  return { kty: 'RSA', n: jwk.n as string, e: jwk.e as string };
}

/** An RSA key in Key Vault (RSA-HSM, sign/verify only), created on first use. */
export class KeyVaultAnchorSigner implements AuditAnchorSigner {
  private readonly keys: KeyClient;
  private key: Promise<KeyVaultKey> | undefined;

  constructor(
    private readonly opts: {
      vaultUrl: string;
      keyName: string;
      credential: TokenCredential;
      clientOptions: () => KeyClientOptions;
    },
  ) {
    this.keys = new KeyClient(opts.vaultUrl, opts.credential, opts.clientOptions());
  }

  private async ensureKey(): Promise<KeyVaultKey> {
    try {
      return await this.keys.getKey(this.opts.keyName);
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
      return this.keys.createRsaKey(this.opts.keyName, { hsm: true, keySize: 3072, keyOps: ['sign', 'verify'] });
    }
  }

  private current(): Promise<KeyVaultKey> {
    this.key ??= this.ensureKey().catch((err: unknown) => {
      this.key = undefined;
      throw err;
    });
    return this.key;
  }

  async keyId(): Promise<string> {
    const key = await this.current();
    if (!key.id) throw new Error('the audit anchor key has no id');
    return key.id;
  }

  async sign(digest: Buffer) {
    const key = await this.current();
    const { n, e } = key.key ?? {};
    if (!key.id || !n || !e) throw new Error('the audit anchor key has no RSA public key');
    const crypto = new CryptographyClient(key, this.opts.credential, this.opts.clientOptions());
    const { result } = await crypto.sign('RS256', digest);
    return {
      kid: key.id,
      signature: Buffer.from(result),
      publicJwk: {
        kty: 'RSA' as const,
        n: Buffer.from(n).toString('base64url'),
        e: Buffer.from(e).toString('base64url'),
      },
    };
  }
}

/** Local development only: an RSA key in a file next to the local KEK. */
export class LocalAnchorSigner implements AuditAnchorSigner {
  private readonly privateKey: KeyObject;
  constructor(dir: string) {
    const file = join(dir, 'audit-anchor.pem');
    if (!existsSync(file)) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 3072 });
      writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    }
    this.privateKey = createPrivateKey(readFileSync(file, 'utf8'));
  }

  async keyId(): Promise<string> {
    const publicJwk = rsaJwk(createPublicKey(this.privateKey));
    const thumbprint = createHash('sha256')
      .update(`{"e":"${publicJwk.e}","kty":"RSA","n":"${publicJwk.n}"}`)
      .digest('base64url');
    return `local/${thumbprint}`;
  }

  async sign(digest: Buffer) {
    // RS256 of a message whose SHA-256 is `digest`: PKCS#1 v1.5 over the digest's DigestInfo.
    const signature = privateEncrypt(
      { key: this.privateKey, padding: constants.RSA_PKCS1_PADDING },
      Buffer.concat([SHA256_DIGEST_INFO, digest]),
    );
    return { kid: await this.keyId(), signature, publicJwk: rsaJwk(createPublicKey(this.privateKey)) };
  }
}

const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/** Activity: reads the head and signs it. Only public facts are returned (they go to history). */
export async function anchorAuditHead(deps: ActivityDeps): Promise<AuditAnchor> {
  const signer = deps.auditAnchor;
  if (!signer) throw new Error('no audit anchor signer is configured');
  const head = await readAuditHead(deps.pool);
  const at = new Date().toISOString();
  const unsigned = { ...head, at, kid: await signer.keyId() };
  const signed = await signer.sign(createHash('sha256').update(auditAnchorPayload(unsigned)).digest());
  return {
    ...unsigned,
    alg: 'RS256',
    signature: signed.signature.toString('base64url'),
    publicJwk: signed.publicJwk,
  };
}

export { auditAnchorPayload, checkAuditAnchor, readAuditHead, verifyAnchorSignature } from './audit-anchor-check';
export type { AnchorCheck } from './audit-anchor-check';
