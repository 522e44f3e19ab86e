import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Pool, PoolClient } from './pool';

/** Lifecycle events recorded in the audit log. */
export type AuditEvent =
  | 'anc.created'
  | 'anc.credential_updated'
  | 'anc.deleted'
  | 'anc.health_checked'
  | 'credential.resealed'
  | 'tenant_key.generated'
  | 'tenant_key.rewrapped'
  | 'tenant_key.replaced'
  | 'tenant.deactivated'
  | 'tenant.reactivated'
  | 'tenant.purged'
  | 'tenant.moved'
  | 'kek.rotated'
  | 'kek.renewed';

export interface AuditEntry {
  /** Idempotency key: the same key appends once, however often the caller retries. */
  eventKey: string;
  event: AuditEvent;
  at: Date;
  tenantId?: string | null;
  ancId?: string | null;
  actor: string;
  workflowId?: string | null;
  outcome: 'success' | 'failure';
  /** Non-secret facts only (versions, ids, counts, error types). */
  details?: Record<string, string | number | boolean | null>;
}

export interface AuditRecord extends Required<Omit<AuditEntry, 'details'>> {
  seq: number;
  details: Record<string, string | number | boolean | null>;
}

// A single lock serialises appends so each record chains onto exactly one predecessor.
const AUDIT_LOCK_ID = 0x616e6361; // "anca"
const GENESIS_MAC: Buffer = Buffer.alloc(32);

function canonicalDetails(details: Record<string, unknown>): string {
  return JSON.stringify(
    Object.keys(details)
      .sort()
      .map((k) => [k, details[k]]),
  );
}

function recordMac(key: Buffer, prevMac: Buffer, r: AuditRecord): Buffer {
  const body = JSON.stringify([
    r.seq,
    r.eventKey,
    r.at.toISOString(),
    r.event,
    r.tenantId,
    r.ancId,
    r.actor,
    r.workflowId,
    r.outcome,
    canonicalDetails(r.details),
  ]);
  return createHmac('sha256', key).update(prevMac).update(body, 'utf8').digest();
}

/** The audit_log columns an append writes, in the order of `PreparedAudit.values`. */
export const AUDIT_COLUMNS =
  '(seq, event_key, at, event, tenant_id, anc_id, actor, workflow_id, outcome, details, prev_mac, mac)';

/** A record chained onto the current last one, ready to insert; or the sequence number already stored. */
export type PreparedAudit = { existingSeq: number } | { existingSeq?: undefined; seq: number; values: unknown[] };

/**
 * Takes the audit lock (held until the caller's transaction ends) and chains the entry onto the
 * last record: its sequence number, MAC and the values to insert (`AUDIT_COLUMNS`). The caller
 * inserts it in the same transaction, alone (appendAudit) or together with the change it describes.
 * The lock is its own statement: the read after it must see every record committed before it.
 */
export async function prepareAudit(client: PoolClient, macKey: Buffer, entry: AuditEntry): Promise<PreparedAudit> {
  await client.query('SELECT pg_advisory_xact_lock($1)', [AUDIT_LOCK_ID]);
  const { rows } = await client.query<{ existing: string | null; seq: string | null; mac: Buffer | null }>(
    `SELECT (SELECT seq FROM audit_log WHERE event_key = $1) AS existing, last.seq, last.mac
       FROM (SELECT 1) one LEFT JOIN (SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1) last ON true`,
    [entry.eventKey],
  );
  const row = rows[0];
  if (row?.existing != null) return { existingSeq: Number(row.existing) };
  const prevMac = row?.mac ?? GENESIS_MAC;
  const record: AuditRecord = {
    seq: row?.seq != null ? Number(row.seq) + 1 : 1,
    eventKey: entry.eventKey,
    event: entry.event,
    at: new Date(Math.floor(entry.at.getTime())),
    tenantId: entry.tenantId ?? null,
    ancId: entry.ancId ?? null,
    actor: entry.actor,
    workflowId: entry.workflowId ?? null,
    outcome: entry.outcome,
    details: entry.details ?? {},
  };
  const mac = recordMac(macKey, prevMac, record);
  return {
    seq: record.seq,
    values: [
      record.seq,
      record.eventKey,
      record.at,
      record.event,
      record.tenantId,
      record.ancId,
      record.actor,
      record.workflowId,
      record.outcome,
      JSON.stringify(record.details),
      prevMac,
      mac,
    ],
  };
}

/**
 * Appends one record inside the caller's transaction, so the audit record commits or rolls back
 * with the change it describes. Returns the record's sequence number.
 */
export async function appendAudit(client: PoolClient, macKey: Buffer, entry: AuditEntry): Promise<number> {
  const prepared = await prepareAudit(client, macKey, entry);
  if (prepared.existingSeq !== undefined) return prepared.existingSeq;
  await client.query(
    `INSERT INTO audit_log ${AUDIT_COLUMNS} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
    prepared.values,
  );
  return prepared.seq;
}

interface AuditRow {
  seq: string;
  event_key: string;
  at: Date;
  event: AuditEvent;
  tenant_id: string | null;
  anc_id: string | null;
  actor: string;
  workflow_id: string | null;
  outcome: 'success' | 'failure';
  details: Record<string, string | number | boolean | null>;
  prev_mac: Buffer;
  mac: Buffer;
}

function toRecord(row: AuditRow): AuditRecord {
  return {
    seq: Number(row.seq),
    eventKey: row.event_key,
    at: row.at,
    event: row.event,
    tenantId: row.tenant_id,
    ancId: row.anc_id,
    actor: row.actor,
    workflowId: row.workflow_id,
    outcome: row.outcome,
    details: row.details,
  };
}

export type AuditVerification =
  | { ok: true; records: number }
  | { ok: false; records: number; brokenAt: number; reason: 'mac-mismatch' | 'chain-mismatch' | 'sequence-gap' };

/** Walks the whole chain in order and reports the first record that does not verify. */
export async function verifyAuditChain(pool: Pool, macKey: Buffer, batchSize = 1000): Promise<AuditVerification> {
  let prevMac: Buffer = GENESIS_MAC;
  let expectedSeq = 1;
  let records = 0;
  for (;;) {
    const { rows } = await pool.query<AuditRow>('SELECT * FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2', [
      expectedSeq,
      batchSize,
    ]);
    if (rows.length === 0) return { ok: true, records };
    for (const row of rows) {
      const record = toRecord(row);
      if (record.seq !== expectedSeq) return { ok: false, records, brokenAt: expectedSeq, reason: 'sequence-gap' };
      if (!timingSafeEqual(row.prev_mac, prevMac))
        return { ok: false, records, brokenAt: record.seq, reason: 'chain-mismatch' };
      const mac = recordMac(macKey, prevMac, record);
      if (row.mac.length !== mac.length || !timingSafeEqual(row.mac, mac)) {
        return { ok: false, records, brokenAt: record.seq, reason: 'mac-mismatch' };
      }
      prevMac = row.mac;
      expectedSeq += 1;
      records += 1;
    }
  }
}

export async function listAudit(
  pool: Pool,
  filter: { tenantId?: string; ancId?: string; limit?: number },
): Promise<AuditRecord[]> {
  const { rows } = await pool.query<AuditRow>(
    `SELECT * FROM audit_log
      WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR anc_id = $2)
      ORDER BY seq DESC LIMIT $3`,
    [filter.tenantId ?? null, filter.ancId ?? null, filter.limit ?? 100],
  );
  return rows.map(toRecord);
}
