/**
 * Checks of an audit anchor against the database, apart from the signers so that the CLI's
 * `audit verify` loads neither the Azure SDK nor the worker (see activities/audit-anchor.ts).
 */
import { createHash, createPublicKey, verify } from 'node:crypto';
import type { AuditAnchor } from '../common/types';
import type { Pool } from './db/pool';

/** The bytes an anchor's signature covers. */
export function auditAnchorPayload(a: Pick<AuditAnchor, 'seq' | 'mac' | 'at' | 'kid'>): Buffer {
  return Buffer.from(`anc-audit-anchor/v1\n${a.seq}\n${a.mac}\n${a.at}\n${a.kid}`, 'utf8');
}

/** The chain's head now. */
export async function readAuditHead(pool: Pool): Promise<{ seq: number; mac: string }> {
  const { rows } = await pool.query<{ seq: string; mac: Buffer }>(
    'SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1',
  );
  const head = rows[0];
  return head ? { seq: Number(head.seq), mac: head.mac.toString('hex') } : { seq: 0, mac: '' };
}

/** The anchor's signature verifies with its public key. */
export function verifyAnchorSignature(a: AuditAnchor): boolean {
  try {
    const key = createPublicKey({ key: { ...a.publicJwk }, format: 'jwk' });
    return verify('sha256', auditAnchorPayload(a), key, Buffer.from(a.signature, 'base64url'));
  } catch {
    return false;
  }
}

export type AnchorCheck =
  | { ok: true; anchoredSeq: number; anchoredAt: string; keyThumbprint: string }
  | {
      ok: false;
      reason: 'shorter-than-anchor' | 'anchor-mismatch' | 'anchor-signature';
      anchoredSeq: number;
      anchoredAt: string;
      /** The newest seq found in the database. */
      headSeq: number;
    };

/**
 * Compares the database's chain with an anchor: the anchored record must still exist with the
 * anchored MAC. (verifyAuditChain checks every record up to the head.)
 */
export async function checkAuditAnchor(pool: Pool, anchor: AuditAnchor): Promise<AnchorCheck> {
  const head = await readAuditHead(pool);
  const base = { anchoredSeq: anchor.seq, anchoredAt: anchor.at };
  if (!verifyAnchorSignature(anchor)) return { ok: false, reason: 'anchor-signature', headSeq: head.seq, ...base };
  if (head.seq < anchor.seq) return { ok: false, reason: 'shorter-than-anchor', headSeq: head.seq, ...base };
  if (anchor.seq > 0) {
    const { rows } = await pool.query<{ mac: Buffer }>('SELECT mac FROM audit_log WHERE seq = $1', [anchor.seq]);
    if (rows[0]?.mac.toString('hex') !== anchor.mac)
      return { ok: false, reason: 'anchor-mismatch', headSeq: head.seq, ...base };
  }
  const keyThumbprint = createHash('sha256')
    .update(`{"e":"${anchor.publicJwk.e}","kty":"RSA","n":"${anchor.publicJwk.n}"}`)
    .digest('base64url');
  return { ok: true, keyThumbprint, ...base };
}
