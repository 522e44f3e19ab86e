/**
 * Upgrade of stored credentials from sealed format 1 (whose size reveals the password's length) to
 * format 2 (fixed size), run by the rotation (workflows/rotation.ts, phase 'resealing-format-1').
 *
 * Each credential keeps its tenant key version: only the sealed bytes change. Per tenant, the key
 * versions its format-1 rows use are unwrapped once each (one HSM call per key version) before any
 * lock is taken; the re-seal and its audit record are then one transaction holding the tenant row
 * lock (the lock provideCredential and the key replacement take), and each row is updated only if
 * it still holds the bytes that were opened, so a retried or concurrent run never redoes or undoes
 * anything. Tenant keys and passwords are held in the clear only here and zeroed after use.
 */
import type { RotationActor, RotationFailure } from '../common/rotation';
import { SEAL_FORMAT_V1, openCredential, sealCredential } from './crypto/seal';
import { zero } from './crypto/tenant-key';
import { appendAudit } from './db/audit';
import { inTransaction } from './db/pool';
import type { ActivityDeps } from './deps';
import { activityContext, forEachLimited, permanentItemError } from './rotation/shared';

export interface ResealBatchInput extends RotationActor {
  /** Resume after this tenant id; null from the start. */
  after: string | null;
  /** Tenants per call. */
  limit: number;
  concurrency: number;
  nowMs: number;
}

export interface ResealBatchResult {
  tenants: number;
  /** Credential versions upgraded from format 1 to format 2. */
  resealed: number;
  failed: RotationFailure[];
  hsmUnwraps: number;
  next: string | null;
  done: boolean;
}

// The predicate the partial index anc_credentials_sealed_format_1 is built on.
const FORMAT_1 = `get_byte(sealed, 0) = ${SEAL_FORMAT_V1}`;

interface OldRow {
  anc_id: string;
  version: number;
  tenant_key_version: number;
  sealed: Buffer;
}

async function resealTenant(
  deps: ActivityDeps,
  tenantId: string,
  input: ResealBatchInput,
): Promise<{ resealed: number; hsmUnwraps: number }> {
  const now = new Date(input.nowMs);
  const clear = new Map<number, Buffer>();
  let hsmUnwraps = 0;
  const unwrap = async (version: number): Promise<Buffer | undefined> => {
    const known = clear.get(version);
    if (known) return known;
    const { rows } = await deps.pool.query<{ wrapped_key: Buffer; kek_version: string }>(
      'SELECT wrapped_key, kek_version FROM tenant_keys WHERE tenant_id = $1 AND version = $2',
      [tenantId, version],
    );
    if (!rows[0]) return undefined;
    hsmUnwraps += 1;
    const key = await deps.kek.provider.unwrap(rows[0].wrapped_key, rows[0].kek_version);
    clear.set(version, key);
    return key;
  };
  try {
    // HSM calls happen outside the transaction: they may wait on the rate budget.
    const { rows: versions } = await deps.pool.query<{ v: number }>(
      `SELECT DISTINCT tenant_key_version AS v FROM anc_credentials WHERE tenant_id = $1 AND ${FORMAT_1}`,
      [tenantId],
    );
    for (const { v } of versions) await unwrap(v);

    const resealed = await inTransaction(deps.pool, async (client) => {
      const locked = await client.query('SELECT 1 FROM tenants WHERE tenant_id = $1 FOR UPDATE', [tenantId]);
      if (locked.rowCount === 0) return 0; // purged meanwhile
      const { rows } = await client.query<OldRow>(
        `SELECT anc_id, version, tenant_key_version, sealed FROM anc_credentials
          WHERE tenant_id = $1 AND ${FORMAT_1} ORDER BY anc_id, version FOR UPDATE`,
        [tenantId],
      );
      let n = 0;
      for (const row of rows) {
        // A key version the pre-lock pass did not see (a replacement moved the row meanwhile).
        const key = await unwrap(row.tenant_key_version);
        if (!key) continue;
        const ctx = { tenantKey: key, keyVersion: row.tenant_key_version, tenantId, ancId: row.anc_id };
        const password = openCredential({ ...ctx, sealed: row.sealed });
        const sealed = sealCredential({ ...ctx, plaintext: password });
        const updated = await client.query(
          `UPDATE anc_credentials SET sealed = $4, resealed_at = $5
            WHERE tenant_id = $1 AND anc_id = $2 AND version = $3 AND sealed = $6`,
          [tenantId, row.anc_id, row.version, sealed, now, row.sealed],
        );
        n += updated.rowCount ?? 0;
      }
      if (n > 0) {
        await appendAudit(client, deps.config.auditMacKey, {
          // Unique per upgrade: the first row upgraded here is never format 1 again.
          eventKey: `credential.resealed/${tenantId}/${rows[0]?.anc_id}/${rows[0]?.version}/format-2`,
          event: 'credential.resealed',
          tenantId,
          at: now,
          actor: input.actor,
          workflowId: input.rotationId,
          outcome: 'success',
          details: { fromFormat: SEAL_FORMAT_V1, toFormat: 2, credentialsResealed: n },
        });
      }
      return n;
    });
    return { resealed, hsmUnwraps };
  } finally {
    for (const key of clear.values()) zero(key);
  }
}

/** One page of tenants that still have credentials in sealed format 1. */
export async function resealFormat1Credentials(
  deps: ActivityDeps,
  input: ResealBatchInput,
): Promise<ResealBatchResult> {
  const { rows } = await deps.pool.query<{ tenant_id: string }>(
    `SELECT DISTINCT tenant_id FROM anc_credentials
      WHERE ${FORMAT_1} AND ($1::text IS NULL OR tenant_id > $1) ORDER BY tenant_id LIMIT $2`,
    [input.after, input.limit],
  );
  const result: ResealBatchResult = {
    tenants: rows.length,
    resealed: 0,
    failed: [],
    hsmUnwraps: 0,
    next: rows.at(-1)?.tenant_id ?? input.after,
    done: rows.length < input.limit,
  };
  const ctx = activityContext();
  // Each tenant holds a pooled connection while it works: keep the parallelism modest.
  await forEachLimited(rows, Math.min(input.concurrency, 4), async ({ tenant_id: tenantId }) => {
    try {
      const outcome = await resealTenant(deps, tenantId, input);
      result.resealed += outcome.resealed;
      result.hsmUnwraps += outcome.hsmUnwraps;
    } catch (err) {
      const reason = permanentItemError(err);
      if (!reason) throw err;
      result.failed.push({ phase: 'reseal', tenantId, reason });
      deps.logger.warn({ tenantId, reason }, 'credentials could not be re-sealed to format 2');
    }
    ctx?.heartbeat({ tenantId });
  });
  return result;
}
