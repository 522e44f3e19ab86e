/**
 * Sealing format for the on-premises AD password of an Azure network connection
 * (ANC). Encrypt-then-MAC in the style of RFC 7518 §5.2 (AES_CBC_HMAC_SHA2),
 * with both subkeys derived from one per-tenant key. New seals use version 2;
 * version 1 still opens, and the rotation re-seals it (activities/reseal.ts).
 *
 * Version 2 — every sealed credential has the same size, whatever the password:
 *
 *   ENC_KEY | MAC_KEY = HMAC-SHA512(tenantKey, u32be(1) | "anc-credential/v2/keys" | 0x00 | u32be(512))
 *             (NIST SP 800-108r1 KDF in counter mode with HMAC-SHA512, one iteration, empty context;
 *             first 32 bytes encrypt, last 32 bytes authenticate. One PRF call per seal or open,
 *             where format 1's two HKDF derivations cost six HMAC computations.)
 *   AAD     = 0x02 | u16be(len tenantId) | tenantId | u16be(len ancId) | ancId | u32be(keyVersion)
 *             (strings UTF-8; lengths in bytes)
 *   P       = u16be(n) | UTF-8(plaintext) (n bytes) | 0x00 × (782 − n)      (always 784 bytes)
 *   E       = AES-256-CBC(ENC_KEY, IV, P), no padding (P is 49 whole blocks), IV = 16 random bytes per seal
 *   AL      = u64be(bit length of AAD)
 *   T       = HMAC-SHA256(MAC_KEY, AAD | IV | E | AL)     (full 32 bytes)
 *
 *   wire    = 0x02 | u32be(keyVersion) | IV (16) | E (784) | T (32)            (always 837 bytes)
 *
 *   784 bytes hold the longest password AD accepts (256 UTF-16 code units are at most 768 UTF-8
 *   bytes) with its length prefix, rounded up to whole AES blocks.
 *
 * Version 1 — the length of E reveals the password's length to within 16 bytes:
 *
 *   ENC_KEY = HKDF-SHA256(tenantKey, salt = "", info = "anc-credential/v1/enc", 32)
 *   MAC_KEY = HKDF-SHA256(tenantKey, salt = "", info = "anc-credential/v1/mac", 32)
 *   AAD     = 0x01 | (as above)
 *   E       = AES-256-CBC(ENC_KEY, IV, PKCS#7(UTF-8(plaintext)))
 *   T       = HMAC-SHA256(MAC_KEY, AAD | IV | E | AL)
 *   wire    = 0x01 | u32be(keyVersion) | IV (16) | E (16·n, n ≥ 1) | T (32)
 *
 * The header's version byte and key version are not MAC inputs themselves;
 * they are bound because open() requires them to equal the values the AAD was
 * rebuilt from (the format version read and the caller's keyVersion), and the
 * two versions derive different subkeys.
 *
 * Pure functions: no I/O, no Temporal imports.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomFillSync, timingSafeEqual } from 'node:crypto';
import { TENANT_KEY_BYTES, zero } from './tenant-key';

/** The format new seals use. */
export const SEAL_FORMAT_VERSION = 2;
/** The first format: still opens, never written. */
export const SEAL_FORMAT_V1 = 1;
export type SealFormatVersion = 1 | 2;

/**
 * Active Directory limits a password to 256 UTF-16 code units, so anything
 * longer could never have been a valid AD password; we count code units
 * (JS string length), the same unit AD uses, not bytes or code points.
 */
export const MAX_PASSWORD_LENGTH = 256;

/** Longest tenantId / ancId in UTF-8 bytes; keeps AAD small and the u16 prefix ample. */
export const MAX_ID_BYTES = 255;

const V1_ENC_INFO = 'anc-credential/v1/enc';
const V1_MAC_INFO = 'anc-credential/v1/mac';
const V2_KDF_LABEL = 'anc-credential/v2/keys';
const SUBKEY_BYTES = 32;
const IV_BYTES = 16;
const BLOCK_BYTES = 16;
const TAG_BYTES = 32;
const HEADER_BYTES = 1 + 4;
const LENGTH_PREFIX_BYTES = 2;
/** A 256-code-unit password is at most 768 UTF-8 bytes (3 per code unit; a surrogate pair is 4 for 2). */
const MAX_PASSWORD_UTF8_BYTES = MAX_PASSWORD_LENGTH * 3;
/** The v2 padded plaintext: length prefix + the longest password, rounded up to whole blocks (784). */
export const V2_PLAINTEXT_BYTES =
  Math.ceil((LENGTH_PREFIX_BYTES + MAX_PASSWORD_UTF8_BYTES) / BLOCK_BYTES) * BLOCK_BYTES;
/** Every v2 sealed credential is exactly this long (837). */
export const V2_SEALED_BYTES = HEADER_BYTES + IV_BYTES + V2_PLAINTEXT_BYTES + TAG_BYTES;
/** version + key version + IV + one ciphertext block + tag = 69 (the shortest v1). */
export const MIN_SEALED_BYTES = HEADER_BYTES + IV_BYTES + BLOCK_BYTES + TAG_BYTES;

const ZEROS = Buffer.alloc(V2_PLAINTEXT_BYTES);
const OPEN_ERROR_MESSAGE = 'sealed credential could not be opened';
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

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

/** Seal a password under the tenant key, bound to (tenantId, ancId, keyVersion), in the current format. */
export function sealCredential(args: SealArgs): Buffer {
  return sealWithIv(args, undefined, SEAL_FORMAT_VERSION);
}

/**
 * Deterministic seal with a caller-chosen IV, in format 2 or (for tests of old
 * rows) format 1. ONLY for pinning test vectors and building old-format rows in
 * tests: reusing an IV across seals under the same key breaks confidentiality.
 */
export function _sealWithIvForTestVectors(
  args: SealArgs,
  iv: Buffer,
  format: SealFormatVersion = SEAL_FORMAT_VERSION,
): Buffer {
  // Precondition: IV is one AES block, as CBC requires.
  if (!Buffer.isBuffer(iv) || iv.length !== IV_BYTES) throw new Error(`iv must be ${IV_BYTES} bytes`);
  return sealWithIv(args, iv, format);
}

/**
 * The v2 plaintext is built here, then wiped (only the bytes written: the rest
 * stays zero). Sealing is synchronous, so one buffer serves every call.
 */
const SCRATCH = Buffer.alloc(V2_PLAINTEXT_BYTES);

function sealWithIv(args: SealArgs, fixedIv: Buffer | undefined, format: SealFormatVersion): Buffer {
  const { plaintext } = args;
  // Precondition (password policy, first): non-empty — an empty AD password is never what was meant.
  if (typeof plaintext !== 'string' || plaintext.length === 0) throw new PasswordPolicyError('PasswordEmpty');
  // Precondition (password policy): ≤ MAX_PASSWORD_LENGTH code units — AD's own limit.
  if (plaintext.length > MAX_PASSWORD_LENGTH) throw new PasswordPolicyError('PasswordTooLong');
  // Precondition: well-formed UTF-16 — a lone surrogate would be silently replaced by U+FFFD in UTF-8.
  if (!isWellFormed(plaintext)) throw new TypeError('password must be well-formed UTF-16');
  // Preconditions on key, key version and ids (shared with open).
  const aad = checkContextAndBuildAad(args, format);

  // The output is written in place: header, IV, ciphertext, then the tag.
  const out = Buffer.allocUnsafe(
    HEADER_BYTES +
      IV_BYTES +
      (format === SEAL_FORMAT_VERSION ? V2_PLAINTEXT_BYTES : v1CiphertextBytes(plaintext)) +
      TAG_BYTES,
  );
  out[0] = format;
  out.writeUInt32BE(args.keyVersion, 1);
  if (fixedIv) fixedIv.copy(out, HEADER_BYTES);
  else nextIv(out, HEADER_BYTES);
  const iv = out.subarray(HEADER_BYTES, HEADER_BYTES + IV_BYTES);
  const ctEnd = out.length - TAG_BYTES;

  const keys = deriveKeys(args.tenantKey, format);
  let written = 0;
  let v1Plaintext: Buffer | undefined;
  try {
    const cipher = createCipheriv('aes-256-cbc', keys.subarray(0, SUBKEY_BYTES), iv);
    let body: Buffer;
    if (format === SEAL_FORMAT_VERSION) {
      // Fixed size: length prefix, the UTF-8 bytes, zeros to the end; whole blocks, so no PKCS#7.
      const n = SCRATCH.write(plaintext, LENGTH_PREFIX_BYTES, 'utf8');
      written = LENGTH_PREFIX_BYTES + n;
      SCRATCH.writeUInt16BE(n, 0);
      cipher.setAutoPadding(false);
      // Whole blocks and no padding: update() returns all 784 bytes and final() would add nothing.
      body = cipher.update(SCRATCH);
    } else {
      v1Plaintext = Buffer.from(plaintext, 'utf8');
      const first = cipher.update(v1Plaintext);
      const last = cipher.final();
      body = Buffer.concat([first, last]);
    }
    body.copy(out, HEADER_BYTES + IV_BYTES);
    computeTag(keys.subarray(SUBKEY_BYTES), aad, out.subarray(HEADER_BYTES, ctEnd)).copy(out, ctEnd);
    return out;
  } finally {
    SCRATCH.fill(0, 0, written);
    zero(v1Plaintext);
    zero(keys);
  }
}

/** Format 1's ciphertext length: the UTF-8 bytes with PKCS#7 padding (always at least one padding byte). */
function v1CiphertextBytes(plaintext: string): number {
  return (Math.floor(Buffer.byteLength(plaintext, 'utf8') / BLOCK_BYTES) + 1) * BLOCK_BYTES;
}

/**
 * Open a sealed password (format 1 or 2). Throws CredentialOpenError for any
 * problem with the sealed bytes or a mismatch with (tenantKey, keyVersion,
 * tenantId, ancId); throws a plain Error only for malformed caller arguments
 * (programming errors).
 */
export function openCredential(args: OpenArgs): string {
  const { sealed } = args;
  const format = Buffer.isBuffer(sealed) ? sealed[0] : undefined;
  // Preconditions on key, key version and ids — caller bugs, so ordinary errors (checked before the data).
  const aad = checkContextAndBuildAad(args, format === SEAL_FORMAT_V1 ? SEAL_FORMAT_V1 : SEAL_FORMAT_VERSION);

  // Length checks before any slicing: v2 has exactly one size; v1 at least one block, whole blocks only.
  if (!Buffer.isBuffer(sealed)) throw new CredentialOpenError();
  if (format === SEAL_FORMAT_VERSION) {
    if (sealed.length !== V2_SEALED_BYTES) throw new CredentialOpenError();
  } else if (format === SEAL_FORMAT_V1) {
    if (sealed.length < MIN_SEALED_BYTES) throw new CredentialOpenError();
    if ((sealed.length - HEADER_BYTES - IV_BYTES - TAG_BYTES) % BLOCK_BYTES !== 0) throw new CredentialOpenError();
  } else {
    throw new CredentialOpenError();
  }
  // The header's key version must match what the AAD was built from, since the header is not MAC input.
  if (sealed.readUInt32BE(1) !== args.keyVersion) throw new CredentialOpenError();
  const ctEnd = sealed.length - TAG_BYTES;

  const keys = deriveKeys(args.tenantKey, format);
  let expected: Buffer | undefined;
  let pt: Buffer | undefined;
  try {
    // IV and ciphertext are contiguous on the wire: one MAC input.
    expected = computeTag(keys.subarray(SUBKEY_BYTES), aad, sealed.subarray(HEADER_BYTES, ctEnd));
    // Authenticate before decrypting (no padding oracle); constant-time compare.
    if (!timingSafeEqual(expected, sealed.subarray(ctEnd))) throw new CredentialOpenError();
    try {
      const decipher = createDecipheriv(
        'aes-256-cbc',
        keys.subarray(0, SUBKEY_BYTES),
        sealed.subarray(HEADER_BYTES, HEADER_BYTES + IV_BYTES),
      );
      const ciphertext = sealed.subarray(HEADER_BYTES + IV_BYTES, ctEnd);
      if (format === SEAL_FORMAT_VERSION) {
        decipher.setAutoPadding(false);
        // Whole blocks and no padding: update() returns all 784 bytes and final() would add nothing.
        pt = decipher.update(ciphertext);
        // fatal: invalid UTF-8 is an error, not silently replaced.
        return UTF8.decode(unpadV2(pt));
      }
      const first = decipher.update(ciphertext);
      try {
        pt = Buffer.concat([first, decipher.final()]); // v1: final() throws on bad PKCS#7 padding
      } finally {
        zero(first);
      }
      return UTF8.decode(pt);
    } catch {
      // Swallow the original error: its message would reveal which step failed.
      throw new CredentialOpenError();
    }
  } finally {
    zero(pt);
    zero(keys);
    zero(expected);
  }
}

/** The password bytes of an authenticated v2 plaintext; anything but zeros after them is refused. */
function unpadV2(pt: Buffer): Buffer {
  const n = pt.readUInt16BE(0);
  if (n === 0 || n > MAX_PASSWORD_UTF8_BYTES) throw new CredentialOpenError();
  const end = LENGTH_PREFIX_BYTES + n;
  if (pt.compare(ZEROS, 0, pt.length - end, end) !== 0) throw new CredentialOpenError();
  return pt.subarray(LENGTH_PREFIX_BYTES, end);
}

/**
 * The key version from the header, to choose which tenant key to open with.
 * Only a hint until openCredential authenticates it.
 */
export function readSealedKeyVersion(sealed: Buffer): number {
  readSealedFormat(sealed);
  return sealed.readUInt32BE(1);
}

/** The format version from the header (1 or 2). Only a hint until openCredential authenticates it. */
export function readSealedFormat(sealed: Buffer): SealFormatVersion {
  if (!Buffer.isBuffer(sealed)) throw new CredentialOpenError();
  if (sealed[0] === SEAL_FORMAT_VERSION && sealed.length === V2_SEALED_BYTES) return SEAL_FORMAT_VERSION;
  if (sealed[0] === SEAL_FORMAT_V1 && sealed.length >= MIN_SEALED_BYTES) return SEAL_FORMAT_V1;
  throw new CredentialOpenError();
}

/**
 * Checks the context and returns the MAC's associated data followed by its length field:
 * AAD | u64be(bit length of AAD), in one buffer (computeTag splits it).
 */
function checkContextAndBuildAad(ctx: CredentialContext, format: SealFormatVersion): Buffer {
  // Precondition: a 256-bit tenant key; anything else is a caller bug.
  if (!Buffer.isBuffer(ctx.tenantKey) || ctx.tenantKey.length !== TENANT_KEY_BYTES) {
    throw new Error('tenant key must be 32 bytes');
  }
  // Precondition: keyVersion is a positive integer that fits the u32 header field.
  if (!Number.isInteger(ctx.keyVersion) || ctx.keyVersion < 1 || ctx.keyVersion > 0xffff_ffff) {
    throw new Error('key version must be an integer in 1..2^32-1');
  }
  const tenantIdBytes = idBytes(ctx.tenantId, 'tenantId');
  const ancIdBytes = idBytes(ctx.ancId, 'ancId');
  // AAD: every variable-length field is length-prefixed, so the encoding is injective.
  const aadBytes = 1 + 2 + tenantIdBytes + 2 + ancIdBytes + 4;
  const buf = Buffer.allocUnsafe(aadBytes + AL_BYTES);
  buf[0] = format;
  let o = buf.writeUInt16BE(tenantIdBytes, 1);
  o += buf.write(ctx.tenantId, o, 'utf8');
  o = buf.writeUInt16BE(ancIdBytes, o);
  o += buf.write(ctx.ancId, o, 'utf8');
  o = buf.writeUInt32BE(ctx.keyVersion, o);
  // AL = u64be(bit length of AAD); the AAD is far shorter than 2^32 bits, so the high word is zero.
  o = buf.writeUInt32BE(0, o);
  buf.writeUInt32BE(aadBytes * 8, o);
  return buf;
}

/** The UTF-8 length of an id, after its preconditions: non-empty, well-formed (distinct strings encode distinctly), ≤ MAX_ID_BYTES. */
function idBytes(value: string, name: string): number {
  if (typeof value !== 'string' || value.length === 0) throw new Error(`${name} must be non-empty`);
  if (!isWellFormed(value)) throw new Error(`${name} must be well-formed UTF-16`);
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > MAX_ID_BYTES) throw new Error(`${name} must be at most ${MAX_ID_BYTES} UTF-8 bytes`);
  return bytes;
}

/**
 * Both subkeys in one buffer, ENC_KEY | MAC_KEY (32 + 32), which the caller zeroes.
 * v2: one KDF call for both; v1: one HKDF call each, as that format was defined.
 */
function deriveKeys(tenantKey: Buffer, format: number | undefined): Buffer {
  if (format === SEAL_FORMAT_V1) {
    // Buffer.from(ArrayBuffer) shares memory, so zeroing the Buffer wipes the derived key.
    const enc = Buffer.from(hkdfSync('sha256', tenantKey, EMPTY, V1_ENC_INFO, SUBKEY_BYTES));
    const mac = Buffer.from(hkdfSync('sha256', tenantKey, EMPTY, V1_MAC_INFO, SUBKEY_BYTES));
    const both = Buffer.alloc(2 * SUBKEY_BYTES);
    enc.copy(both, 0);
    mac.copy(both, SUBKEY_BYTES);
    zero(enc);
    zero(mac);
    return both;
  }
  // One PRF call gives both subkeys (the HKDF of format 1 costs two calls, each three HMACs).
  return createHmac('sha512', tenantKey).update(V2_KDF_INPUT).digest();
}

/** [1]_32 | Label | 0x00 | Context (empty) | [L = 512]_32: NIST SP 800-108r1 counter mode, one iteration. */
const V2_KDF_INPUT = Buffer.concat([
  Buffer.from([0, 0, 0, 1]),
  Buffer.from(V2_KDF_LABEL, 'utf8'),
  Buffer.from([0]),
  Buffer.from([0, 0, 2, 0]),
]);

const EMPTY = Buffer.alloc(0);
const AL_BYTES = 8;

/** T = HMAC-SHA256(MAC_KEY, AAD | IV | E | AL); `aadAndAl` is checkContextAndBuildAad's result, `ivAndCiphertext` contiguous as on the wire. */
function computeTag(macKey: Buffer, aadAndAl: Buffer, ivAndCiphertext: Buffer): Buffer {
  const aadEnd = aadAndAl.length - AL_BYTES;
  return createHmac('sha256', macKey)
    .update(aadAndAl.subarray(0, aadEnd))
    .update(ivAndCiphertext)
    .update(aadAndAl.subarray(aadEnd))
    .digest();
}

/**
 * IVs are drawn from the CSPRNG in batches (one native call per 256 seals, not one per seal), each
 * 16 bytes used once. IVs are public, so the unused batch in memory is no secret. The pool starts
 * empty, so no random bytes can be baked into a snapshot of the process.
 */
const IV_POOL = Buffer.alloc(IV_BYTES * 256);
let ivPoolOffset = IV_POOL.length;

function nextIv(target: Buffer, offset: number): void {
  if (ivPoolOffset === IV_POOL.length) {
    randomFillSync(IV_POOL);
    ivPoolOffset = 0;
  }
  IV_POOL.copy(target, offset, ivPoolOffset, ivPoolOffset + IV_BYTES);
  ivPoolOffset += IV_BYTES;
}

const stringIsWellFormed = (String.prototype as unknown as { isWellFormed?: (this: string) => boolean }).isWellFormed;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** No lone surrogate (String.prototype.isWellFormed where the runtime has it, Node 20 does). */
function isWellFormed(s: string): boolean {
  return stringIsWellFormed ? stringIsWellFormed.call(s) : !LONE_SURROGATE.test(s);
}
