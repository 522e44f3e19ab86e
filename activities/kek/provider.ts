import { constants, createPublicKey, publicEncrypt, type JsonWebKey } from 'node:crypto';

/** One version of the key-encryption key (KEK). Only public material crosses this interface. */
export interface KekVersion {
  /** Stable name of the KEK (the Key Vault key name, or "local-dev"). */
  kekId: string;
  /** Version identifier (Key Vault key version). */
  version: string;
  /** RSA public key as a JWK (kty, n, e). */
  publicJwk: JsonWebKey;
  createdAt: Date;
  /** When this version stops being usable; renewal starts three months before. */
  expiresAt: Date;
  enabled: boolean;
  /** Certificate mode: the version's certificate chain (base64 DER, leaf first), as JWK `x5c`. */
  x5c?: string[];
}

export interface KekStats {
  /** Calls that reach the HSM (or stand in for it): unwrap, create, disable. */
  remoteUnwraps: number;
  remoteWraps: number;
  creates: number;
  reads: number;
  /** HTTP retries after 429 / 5xx. */
  throttled: number;
}

/**
 * The narrow interface every KEK implementation provides. Wrapping is always local with the
 * public key (RSA-OAEP-256); unwrapping is done where the private key lives.
 */
export interface KekProvider {
  readonly kind: 'azure-key-vault' | 'local-dev';
  /** Key Vault certificate (renewed by Key Vault through its policy) or a bare key; absent means key. */
  readonly mode?: 'certificate' | 'key';
  /**
   * When the rotation must act on the current version (create one in key mode, ask Key Vault to
   * renew in certificate mode). Absent: three calendar months before expiry.
   */
  renewalDue?(expiresAt: Date, now: Date): boolean;
  /** The newest enabled version, or undefined when the KEK has no version yet. */
  currentVersion(): Promise<KekVersion | undefined>;
  getVersion(version: string): Promise<KekVersion>;
  listVersions(): Promise<KekVersion[]>;
  createVersion(expiresAt: Date): Promise<KekVersion>;
  wrap(key: Buffer, version: KekVersion): Promise<Buffer>;
  unwrap(wrapped: Buffer, version: string): Promise<Buffer>;
  disableVersion(version: string): Promise<void>;
  stats(): KekStats;
}

/** Unwrapping failed for a reason retrying cannot fix (not a wrapped key of this KEK version). */
export class KekUnwrapError extends Error {
  constructor() {
    super('the wrapped key could not be unwrapped with the named KEK version');
    this.name = 'KekUnwrapError';
  }
}

export class KekVersionNotFoundError extends Error {
  constructor(readonly version: string) {
    super(`KEK version ${version} does not exist`);
    this.name = 'KekVersionNotFoundError';
  }
}

/** RSA-OAEP with SHA-256 (JWA "RSA-OAEP-256"), done locally with the version's public key. */
export function wrapWithPublicKey(publicJwk: JsonWebKey, key: Buffer): Buffer {
  const publicKey = createPublicKey({ key: publicJwk, format: 'jwk' });
  return publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, key);
}

/** A version that is disabled or past its expiry never wraps a new key. */
export class KekVersionUnusableError extends Error {
  constructor(
    readonly version: string,
    readonly reason: 'disabled' | 'expired',
  ) {
    super(`KEK version ${version} is ${reason}: it cannot wrap a new key`);
    this.name = 'KekVersionUnusableError';
  }
}

export function emptyStats(): KekStats {
  return { remoteUnwraps: 0, remoteWraps: 0, creates: 0, reads: 0, throttled: 0 };
}
