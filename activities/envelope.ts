import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { PRIMARY_VAULT_ID, isVaultId } from '../common/vaults';
import { permanentFailure } from '../common/errors';
import { zero } from './crypto/tenant-key';
import {
  KekUnwrapError,
  KekVersionNotFoundError,
  wrapWithPublicKey,
  type KekProvider,
  type KekVersion,
} from './kek/provider';

/**
 * Opens the password envelope the client SDK made: a compact JWE (RSA-OAEP-256 + A256GCM) whose
 * protected header binds tenant, ANC, operation, issue time and a unique id. The content key is
 * unwrapped by the KEK provider (the private key never leaves it); GCM authenticates the header.
 */
export interface EnvelopeHeader {
  alg: 'RSA-OAEP-256';
  enc: 'A256GCM';
  kid: string;
  typ: 'anc-password+jwe';
  tid: string;
  aid: string;
  op: 'create' | 'update';
  iat: number;
  jti: string;
  /** The vault whose KEK sealed it; absent: the first vault ("primary"). */
  vid?: string;
}

export interface OpenedEnvelope {
  password: string;
  envelopeId: string;
  header: EnvelopeHeader;
}

const CLOCK_SKEW_MS = 60_000;

function decodePart(part: string | undefined): Buffer {
  if (part === undefined || !/^[A-Za-z0-9_-]*$/.test(part))
    throw permanentFailure('InvalidEnvelope', 'password envelope is malformed');
  return Buffer.from(part, 'base64url');
}

/** Reads the (non-secret) protected header without opening anything. */
export function readEnvelopeHeader(envelope: string): EnvelopeHeader {
  const parts = envelope.split('.');
  if (parts.length !== 5) throw permanentFailure('InvalidEnvelope', 'password envelope is not a compact JWE');
  let header: EnvelopeHeader;
  try {
    header = JSON.parse(decodePart(parts[0]).toString('utf8')) as EnvelopeHeader;
  } catch {
    throw permanentFailure('InvalidEnvelope', 'password envelope header is not valid JSON');
  }
  if (
    header.alg !== 'RSA-OAEP-256' ||
    header.enc !== 'A256GCM' ||
    header.typ !== 'anc-password+jwe' ||
    typeof header.kid !== 'string' ||
    typeof header.tid !== 'string' ||
    typeof header.aid !== 'string' ||
    (header.op !== 'create' && header.op !== 'update') ||
    !Number.isInteger(header.iat) ||
    typeof header.jti !== 'string' ||
    !/^[A-Za-z0-9_-]{16,64}$/.test(header.jti) ||
    (header.vid !== undefined && !isVaultId(header.vid))
  ) {
    throw permanentFailure('InvalidEnvelope', 'password envelope header is not one this service issues');
  }
  return header;
}

export async function openEnvelope(args: {
  envelope: string;
  kek: KekProvider;
  kekId: string;
  /** The vault whose KEK `kek` is: an envelope sealed to another vault's KEK is refused. */
  vaultId?: string;
  tenantId: string;
  ancId: string;
  op: 'create' | 'update';
  /** When Temporal accepted the request (workflow time), so worker downtime does not expire it. */
  receivedAtMs: number;
  maxAgeSeconds: number;
}): Promise<OpenedEnvelope> {
  const header = readEnvelopeHeader(args.envelope);
  if (header.tid !== args.tenantId || header.aid !== args.ancId || header.op !== args.op) {
    throw permanentFailure('InvalidEnvelope', `password envelope was sealed for another ANC or operation`);
  }
  const issuedMs = header.iat * 1000;
  if (args.receivedAtMs - issuedMs > args.maxAgeSeconds * 1000 || issuedMs - args.receivedAtMs > CLOCK_SKEW_MS) {
    throw permanentFailure(
      'EnvelopeExpired',
      `password envelope is older than ${args.maxAgeSeconds} s: seal the password again`,
    );
  }
  const slash = header.kid.lastIndexOf('/');
  const kekId = header.kid.slice(0, slash);
  const version = header.kid.slice(slash + 1);
  if (slash <= 0 || kekId !== args.kekId)
    throw permanentFailure('InvalidEnvelope', 'password envelope names an unknown key');
  if ((header.vid ?? PRIMARY_VAULT_ID) !== (args.vaultId ?? PRIMARY_VAULT_ID))
    throw permanentFailure('InvalidEnvelope', 'password envelope was sealed for another vault than the one asked');

  const [protectedB64, encryptedKeyB64, ivB64, ciphertextB64, tagB64] = args.envelope.split('.');
  const encryptedKey = decodePart(encryptedKeyB64);
  const iv = decodePart(ivB64);
  const ciphertext = decodePart(ciphertextB64);
  const tag = decodePart(tagB64);
  if (iv.length !== 12 || tag.length !== 16)
    throw permanentFailure('InvalidEnvelope', 'password envelope is malformed');

  let cek: Buffer | undefined;
  try {
    cek = await args.kek.unwrap(encryptedKey, version);
  } catch (err) {
    if (err instanceof KekUnwrapError || err instanceof KekVersionNotFoundError) {
      throw permanentFailure('InvalidEnvelope', 'password envelope could not be opened');
    }
    throw err; // transient (throttling, network): Temporal retries
  }
  let plain: Buffer | undefined;
  try {
    if (cek.length !== 32) throw new Error('bad key length');
    const decipher = createDecipheriv('aes-256-gcm', cek, iv);
    decipher.setAAD(Buffer.from(protectedB64 ?? '', 'ascii'));
    decipher.setAuthTag(tag);
    plain = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    return { password: new TextDecoder('utf-8', { fatal: true }).decode(plain), envelopeId: header.jti, header };
  } catch {
    throw permanentFailure('InvalidEnvelope', 'password envelope could not be opened');
  } finally {
    zero(cek);
    zero(plain);
  }
}

/**
 * Seals an opened envelope's password again, for another vault's current KEK (its public key,
 * locally: no HSM call). The new envelope keeps the original's tenant, ANC, operation, issue time and
 * id (so its age and single use are judged as the original's) and names the new vault and key. Used
 * when a client sealed to a vault the tenant is not on: only this ciphertext reaches the history.
 */
export function resealEnvelope(
  opened: OpenedEnvelope,
  kek: Pick<KekVersion, 'kekId' | 'version' | 'publicJwk'>,
  vaultId: string,
): string {
  const { vid: _previous, ...rest } = opened.header;
  const header: EnvelopeHeader = {
    ...rest,
    kid: `${kek.kekId}/${kek.version}`,
    ...(vaultId === PRIMARY_VAULT_ID ? {} : { vid: vaultId }),
  };
  const protectedB64 = Buffer.from(JSON.stringify(header), 'utf8').toString('base64url');
  const cek = randomBytes(32);
  const iv = randomBytes(12);
  const plain = Buffer.from(opened.password, 'utf8');
  try {
    const cipher = createCipheriv('aes-256-gcm', cek, iv);
    cipher.setAAD(Buffer.from(protectedB64, 'ascii'));
    const ciphertext = Buffer.concat([cipher.update(plain), cipher.final()]);
    const encryptedKey = wrapWithPublicKey(kek.publicJwk, cek);
    return [protectedB64, encryptedKey, iv, ciphertext, cipher.getAuthTag()]
      .map((part) => (typeof part === 'string' ? part : part.toString('base64url')))
      .join('.');
  } finally {
    zero(cek);
    zero(plain);
  }
}
