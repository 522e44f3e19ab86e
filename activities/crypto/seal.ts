/**
 * Sealing format for the on-premises AD password of an Azure network connection
 * (ANC), version 1. Encrypt-then-MAC in the style of RFC 7518 §5.2
 * (AES_CBC_HMAC_SHA2), with both subkeys derived from one per-tenant key.
 *
 *   ENC_KEY = HKDF-SHA256(tenantKey, salt = "", info = "anc-credential/v1/enc", 32)
 *   MAC_KEY = HKDF-SHA256(tenantKey, salt = "", info = "anc-credential/v1/mac", 32)
 *   AAD     = 0x01 | u16be(len tenantId) | tenantId | u16be(len ancId) | ancId | u32be(keyVersion)
 *             (strings UTF-8; lengths in bytes)
 *   E       = AES-256-CBC(ENC_KEY, IV, PKCS#7(UTF-8(plaintext))), IV = 16 random bytes per seal
 *   AL      = u64be(bit length of AAD)
 *   T       = HMAC-SHA256(MAC_KEY, AAD | IV | E | AL)     (full 32 bytes)
 *
 *   wire    = 0x01 | u32be(keyVersion) | IV (16) | E (16·n, n ≥ 1) | T (32)
 *
 * The header's version byte and key version are not MAC inputs themselves;
 * they are bound because open() requires them to equal the values the AAD was
 * rebuilt from (format version 1 and the caller's keyVersion).
 *
 * Pure functions: no I/O, no Temporal imports.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { TENANT_KEY_BYTES, zero } from './tenant-key';

export const SEAL_FORMAT_VERSION = 1;

/**
 * Active Directory limits a password to 256 UTF-16 code units, so anything
 * longer could never have been a valid AD password; we count code units
 * (JS string length), the same unit AD uses, not bytes or code points.
 */
export const MAX_PASSWORD_LENGTH = 256;

/** Longest tenantId / ancId in UTF-8 bytes; keeps AAD small and the u16 prefix ample. */
export const MAX_ID_BYTES = 255;

const ENC_INFO = 'anc-credential/v1/enc';
const MAC_INFO = 'anc-credential/v1/mac';
const SUBKEY_BYTES = 32;
const IV_BYTES = 16;
const BLOCK_BYTES = 16;
const TAG_BYTES = 32;
const HEADER_BYTES = 1 + 4;
/** version + key version + IV + one ciphertext block + tag = 69. */
export const MIN_SEALED_BYTES = HEADER_BYTES + IV_BYTES + BLOCK_BYTES + TAG_BYTES;

const OPEN_ERROR_MESSAGE = 'sealed credential could not be opened';

/**
 * The only error open() throws for bad input data. Always the same message and
 * no cause, so a caller (or attacker) cannot tell which check failed.
 */
export class CredentialOpenError extends Error {
  constructor() {
    super(OPEN_ERROR_MESSAGE);
  }
  static {
    // On the prototype, so instances carry no own properties (no details at all).
    Object.defineProperty(this.prototype, 'name', {
      value: 'CredentialOpenError',
      writable: true,
      configurable: true,
    });
  }
}

export type PasswordPolicyCode = 'PasswordEmpty' | 'PasswordTooLong';

/** A password refused by policy; the message never contains the password. */
export class PasswordPolicyError extends Error {
  readonly code: PasswordPolicyCode;
  constructor(code: PasswordPolicyCode) {
    super(
      code === 'PasswordEmpty'
        ? 'password must not be empty'
        : `password must be at most ${MAX_PASSWORD_LENGTH} UTF-16 code units`,
    );
    this.name = 'PasswordPolicyError';
    this.code = code;
  }
}

export interface CredentialContext {
  tenantKey: Buffer;
  keyVersion: number;
  tenantId: string;
  ancId: string;
}

export interface SealArgs extends CredentialContext {
  plaintext: string;
}

export interface OpenArgs extends CredentialContext {
  sealed: Buffer;
}

/** Seal a password under the tenant key, bound to (tenantId, ancId, keyVersion). */
export function sealCredential(args: SealArgs): Buffer {
  return sealWithIv(args, () => randomBytes(IV_BYTES));
}

/**
 * Deterministic seal with a caller-chosen IV. ONLY for pinning test vectors:
 * reusing an IV across seals under the same key breaks confidentiality.
 */
export function _sealWithIvForTestVectors(args: SealArgs, iv: Buffer): Buffer {
  // Precondition: IV is one AES block, as CBC requires.
  if (iv.length !== IV_BYTES) throw new Error(`iv must be ${IV_BYTES} bytes`);
  return sealWithIv(args, () => Buffer.from(iv));
}

function sealWithIv(args: SealArgs, makeIv: () => Buffer): Buffer {
  const { plaintext } = args;
  // Precondition (password policy, first): non-empty — an empty AD password is never what was meant.
  if (typeof plaintext !== 'string' || plaintext.length === 0) throw new PasswordPolicyError('PasswordEmpty');
  // Precondition (password policy): ≤ MAX_PASSWORD_LENGTH code units — AD's own limit.
  if (plaintext.length > MAX_PASSWORD_LENGTH) throw new PasswordPolicyError('PasswordTooLong');
  // Precondition: well-formed UTF-16 — a lone surrogate would be silently replaced by U+FFFD in UTF-8.
  if (!isWellFormed(plaintext)) throw new TypeError('password must be well-formed UTF-16');
  // Preconditions on key, key version and ids (shared with open).
  const aad = checkContextAndBuildAad(args);

  const iv = makeIv();
  let encKey: Buffer | undefined;
  let macKey: Buffer | undefined;
  let pt: Buffer | undefined;
  try {
    encKey = deriveSubkey(args.tenantKey, ENC_INFO);
    macKey = deriveSubkey(args.tenantKey, MAC_INFO);
    // Allocated (not pooled via Buffer.from) so zeroing touches only our bytes.
    pt = Buffer.alloc(Buffer.byteLength(plaintext, 'utf8'));
    pt.write(plaintext, 'utf8');
    const cipher = createCipheriv('aes-256-cbc', encKey, iv);
    const ciphertext = Buffer.concat([cipher.update(pt), cipher.final()]);
    const tag = computeTag(macKey, aad, iv, ciphertext);
    return Buffer.concat([header(args.keyVersion), iv, ciphertext, tag]);
  } finally {
    zero(pt);
    zero(encKey);
    zero(macKey);
  }
}

/**
 * Open a sealed password. Throws CredentialOpenError for any problem with the
 * sealed bytes or a mismatch with (tenantKey, keyVersion, tenantId, ancId);
 * throws a plain Error only for malformed caller arguments (programming errors).
 */
export function openCredential(args: OpenArgs): string {
  // Preconditions on key, key version and ids — caller bugs, so ordinary errors.
  const aad = checkContextAndBuildAad(args);
  const { sealed } = args;

  // Length check before any slicing: at least one block, whole blocks only.
  if (!Buffer.isBuffer(sealed) || sealed.length < MIN_SEALED_BYTES) throw new CredentialOpenError();
  const ctLen = sealed.length - HEADER_BYTES - IV_BYTES - TAG_BYTES;
  if (ctLen % BLOCK_BYTES !== 0) throw new CredentialOpenError();
  // Header must match what the AAD was built from, since the header itself is not MAC input.
  if (sealed[0] !== SEAL_FORMAT_VERSION) throw new CredentialOpenError();
  if (sealed.readUInt32BE(1) !== args.keyVersion) throw new CredentialOpenError();

  const iv = sealed.subarray(HEADER_BYTES, HEADER_BYTES + IV_BYTES);
  const ciphertext = sealed.subarray(HEADER_BYTES + IV_BYTES, HEADER_BYTES + IV_BYTES + ctLen);
  const tag = sealed.subarray(HEADER_BYTES + IV_BYTES + ctLen);

  let encKey: Buffer | undefined;
  let macKey: Buffer | undefined;
  let expected: Buffer | undefined;
  const parts: Buffer[] = [];
  let pt: Buffer | undefined;
  try {
    macKey = deriveSubkey(args.tenantKey, MAC_INFO);
    expected = computeTag(macKey, aad, iv, ciphertext);
    // Authenticate before decrypting (no padding oracle); constant-time compare.
    if (!timingSafeEqual(expected, tag)) throw new CredentialOpenError();

    encKey = deriveSubkey(args.tenantKey, ENC_INFO);
    try {
      const decipher = createDecipheriv('aes-256-cbc', encKey, iv);
      parts.push(decipher.update(ciphertext));
      parts.push(decipher.final()); // throws on bad PKCS#7 padding
      pt = Buffer.concat(parts);
      // fatal: invalid UTF-8 is an error, not silently replaced.
      return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(pt);
    } catch {
      // Swallow the original error: its message would reveal which step failed.
      throw new CredentialOpenError();
    }
  } finally {
    for (const p of parts) zero(p);
    zero(pt);
    zero(encKey);
    zero(macKey);
    zero(expected);
  }
}

/**
 * The key version from the header, to choose which tenant key to open with.
 * Only a hint until openCredential authenticates it.
 */
export function readSealedKeyVersion(sealed: Buffer): number {
  if (!Buffer.isBuffer(sealed) || sealed.length < MIN_SEALED_BYTES || sealed[0] !== SEAL_FORMAT_VERSION) {
    throw new CredentialOpenError();
  }
  return sealed.readUInt32BE(1);
}

function checkContextAndBuildAad(ctx: CredentialContext): Buffer {
  // Precondition: a 256-bit tenant key; anything else is a caller bug.
  if (!Buffer.isBuffer(ctx.tenantKey) || ctx.tenantKey.length !== TENANT_KEY_BYTES) {
    throw new Error('tenant key must be 32 bytes');
  }
  // Precondition: keyVersion is a positive integer that fits the u32 header field.
  if (!Number.isInteger(ctx.keyVersion) || ctx.keyVersion < 1 || ctx.keyVersion > 0xffff_ffff) {
    throw new Error('key version must be an integer in 1..2^32-1');
  }
  const tenantId = encodeId(ctx.tenantId, 'tenantId');
  const ancId = encodeId(ctx.ancId, 'ancId');
  // AAD: every variable-length field is length-prefixed, so the encoding is injective.
  const aad = Buffer.alloc(1 + 2 + tenantId.length + 2 + ancId.length + 4);
  let o = aad.writeUInt8(SEAL_FORMAT_VERSION, 0);
  o = aad.writeUInt16BE(tenantId.length, o);
  o += tenantId.copy(aad, o);
  o = aad.writeUInt16BE(ancId.length, o);
  o += ancId.copy(aad, o);
  aad.writeUInt32BE(ctx.keyVersion, o);
  return aad;
}

function encodeId(value: string, name: string): Buffer {
  // Precondition: non-empty, well-formed (distinct strings must encode distinctly), ≤ MAX_ID_BYTES.
  if (typeof value !== 'string' || value.length === 0) throw new Error(`${name} must be non-empty`);
  if (!isWellFormed(value)) throw new Error(`${name} must be well-formed UTF-16`);
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > MAX_ID_BYTES) throw new Error(`${name} must be at most ${MAX_ID_BYTES} UTF-8 bytes`);
  return bytes;
}

function deriveSubkey(tenantKey: Buffer, info: string): Buffer {
  // Buffer.from(ArrayBuffer) shares memory, so zeroing the Buffer wipes the derived key.
  return Buffer.from(hkdfSync('sha256', tenantKey, Buffer.alloc(0), info, SUBKEY_BYTES));
}

function computeTag(macKey: Buffer, aad: Buffer, iv: Buffer, ciphertext: Buffer): Buffer {
  const al = Buffer.alloc(8);
  al.writeBigUInt64BE(BigInt(aad.length) * 8n);
  return createHmac('sha256', macKey).update(aad).update(iv).update(ciphertext).update(al).digest();
}

function header(keyVersion: number): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  h.writeUInt8(SEAL_FORMAT_VERSION, 0);
  h.writeUInt32BE(keyVersion, 1);
  return h;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function isWellFormed(s: string): boolean {
  return !LONE_SURROGATE.test(s);
}
