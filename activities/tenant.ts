import { ApplicationFailure } from '@temporalio/common';
import { permanentFailure } from '../common/errors';
import { setGauge } from '../common/metrics';
import { appendAudit } from './db/audit';
import { inTransaction, type PoolClient } from './db/pool';
import type { ActivityDeps } from './deps';
import { processMeter } from './metrics';

/**
 * Tenant deactivation, reactivation and purge. Every activity takes the workflow's time (`nowMs`)
 * instead of reading the clock, is idempotent (a retry after a commit changes nothing and answers
 * the same) and holds the tenant row lock while it changes the tenant, so it cannot interleave with
 * a credential being provided for that tenant.
 */

const DAY_MS = 24 * 60 * 60 * 1000;

export type TenantRowState = 'active' | 'deactivated' | 'purged';

export interface TenantRecord {
  state: TenantRowState | 'not-found';
  deactivatedAt?: string;
  purgeAt?: string;
  purgedAt?: string;
}

interface TenantRow {
  state: TenantRowState;
  deactivated_at: Date | null;
  purge_at: Date | null;
  purged_at: Date | null;
}

function toRecord(row: TenantRow | undefined): TenantRecord {
  if (!row) return { state: 'not-found' };
  return {
    state: row.state,
    deactivatedAt: row.deactivated_at?.toISOString(),
    purgeAt: row.purge_at?.toISOString(),
    purgedAt: row.purged_at?.toISOString(),
  };
}

async function lockTenant(client: PoolClient, tenantId: string): Promise<TenantRow | undefined> {
  const { rows } = await client.query<TenantRow>(
    'SELECT state, deactivated_at, purge_at, purged_at FROM tenants WHERE tenant_id = $1 FOR UPDATE',
    [tenantId],
  );
  return rows[0];
}

export interface AuditContext {
  actor: string;
  workflowId: string;
  reason?: string;
}

/** The tenant's row as stored (read when a tenant workflow run starts). */
export async function loadTenant(deps: ActivityDeps, input: { tenantId: string }): Promise<TenantRecord> {
  const { rows } = await deps.pool.query<TenantRow>(
    'SELECT state, deactivated_at, purge_at, purged_at FROM tenants WHERE tenant_id = $1',
    [input.tenantId],
  );
  return toRecord(rows[0]);
}

/** The tenant's ANC ids in id order, a page at a time (`afterAncId` is the last id of the previous page). */
export async function listTenantAncIds(
  deps: ActivityDeps,
  input: { tenantId: string; afterAncId?: string; limit: number },
): Promise<string[]> {
  const { rows } = await deps.pool.query<{ anc_id: string }>(
    `SELECT anc_id FROM ancs WHERE tenant_id = $1 AND ($2::text IS NULL OR anc_id > $2)
      ORDER BY anc_id LIMIT $3`,
    [input.tenantId, input.afterAncId ?? null, input.limit],
  );
  return rows.map((r) => r.anc_id);
}

export interface DeactivateTenantInput extends AuditContext {
  tenantId: string;
  /** Workflow time of the deactivation. */
  nowMs: number;
  /** Retention window in days; the worker's TENANT_RETENTION (default 29d) when absent. */
  retentionDays?: number;
}

export interface DeactivateTenantResult {
  deactivatedAt: string;
  purgeAt: string;
  /** False when the tenant was deactivated already (its first clock is kept). */
  changed: boolean;
  ancs: number;
}

/**
 * Marks the tenant and all its ANCs deactivated, with the date its data will be purged, in one
 * transaction with the audit record. Credentials stay as they are, sealed. A tenant deactivated
 * already keeps its dates: deactivating again never restarts the clock.
 */
export async function deactivateTenantData(
  deps: ActivityDeps,
  input: DeactivateTenantInput,
): Promise<DeactivateTenantResult> {
  const retentionMs = input.retentionDays === undefined ? deps.config.tenantRetentionMs : input.retentionDays * DAY_MS;
  if (!Number.isFinite(retentionMs) || retentionMs <= 0) {
    throw ApplicationFailure.create({
      type: 'InvalidRetention',
      message: `retentionDays must be a positive number (got ${input.retentionDays})`,
      nonRetryable: true,
    });
  }
  const retentionDays = retentionMs / DAY_MS;
  const result = await inTransaction(deps.pool, async (client) => {
    const row = await lockTenant(client, input.tenantId);
    if (!row) throw permanentFailure('TenantNotFound', `tenant ${input.tenantId} does not exist`);
    if (row.state === 'purged') throw permanentFailure('TenantPurged', `tenant ${input.tenantId} was purged`);
    if (row.state === 'deactivated' && row.deactivated_at && row.purge_at) {
      const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM ancs WHERE tenant_id = $1', [
        input.tenantId,
      ]);
      return {
        deactivatedAt: row.deactivated_at.toISOString(),
        purgeAt: row.purge_at.toISOString(),
        changed: false,
        ancs: rows[0]?.n ?? 0,
      };
    }
    const deactivatedAt = new Date(input.nowMs);
    const purgeAt = new Date(input.nowMs + retentionMs);
    await client.query(
      `UPDATE tenants SET state = 'deactivated', deactivated_at = $2, purge_at = $3, purged_at = NULL, updated_at = $2
        WHERE tenant_id = $1`,
      [input.tenantId, deactivatedAt, purgeAt],
    );
    const ancs = await client.query(`UPDATE ancs SET state = 'deactivated' WHERE tenant_id = $1`, [input.tenantId]);
    await appendAudit(client, deps.config.auditMacKey, {
      eventKey: `${input.workflowId}/deactivated/${input.nowMs}`,
      event: 'tenant.deactivated',
      tenantId: input.tenantId,
      actor: input.actor,
      workflowId: input.workflowId,
      at: deactivatedAt,
      outcome: 'success',
      details: {
        ancs: ancs.rowCount ?? 0,
        retentionDays,
        retentionSeconds: retentionMs / 1000,
        purgeAt: purgeAt.toISOString(),
        reason: input.reason ?? null,
      },
    });
    return {
      deactivatedAt: deactivatedAt.toISOString(),
      purgeAt: purgeAt.toISOString(),
      changed: true,
      ancs: ancs.rowCount ?? 0,
    };
  });
  // A deactivated tenant's key has no business in memory: drop it now, not when it ages out.
  deps.tenantKeyCache?.invalidateTenant(input.tenantId);
  return result;
}

export interface ReactivateTenantInput extends AuditContext {
  tenantId: string;
  nowMs: number;
}

/**
 * Restores a deactivated tenant and its ANCs to active, with the audit record, in one transaction.
 * Nothing is re-sealed: the ANCs keep their credential versions and the tenant its keys. Refused
 * with TenantPurged once the retention window has passed (at workflow time), even if the purge has
 * not removed the rows yet. Reactivating an active tenant changes nothing.
 */
export async function reactivateTenantData(
  deps: ActivityDeps,
  input: ReactivateTenantInput,
): Promise<{ changed: boolean; ancs: number }> {
  return inTransaction(deps.pool, async (client) => {
    const row = await lockTenant(client, input.tenantId);
    if (!row) throw permanentFailure('TenantNotFound', `tenant ${input.tenantId} does not exist`);
    if (row.state === 'purged') throw permanentFailure('TenantPurged', `tenant ${input.tenantId} was purged`);
    if (row.state === 'active') return { changed: false, ancs: 0 };
    if (!row.purge_at || row.purge_at.getTime() <= input.nowMs) {
      throw permanentFailure(
        'TenantPurged',
        `tenant ${input.tenantId}'s retention window ended at ${row.purge_at?.toISOString()}: its data is purged`,
      );
    }
    const now = new Date(input.nowMs);
    await client.query(
      `UPDATE tenants SET state = 'active', deactivated_at = NULL, purge_at = NULL, updated_at = $2
        WHERE tenant_id = $1`,
      [input.tenantId, now],
    );
    const ancs = await client.query(`UPDATE ancs SET state = 'active' WHERE tenant_id = $1`, [input.tenantId]);
    await appendAudit(client, deps.config.auditMacKey, {
      eventKey: `${input.workflowId}/reactivated/${input.nowMs}`,
      event: 'tenant.reactivated',
      tenantId: input.tenantId,
      actor: input.actor,
      workflowId: input.workflowId,
      at: now,
      outcome: 'success',
      details: {
        ancs: ancs.rowCount ?? 0,
        deactivatedAt: row.deactivated_at?.toISOString() ?? null,
        reason: input.reason ?? null,
      },
    });
    return { changed: true, ancs: ancs.rowCount ?? 0 };
  });
}

// ------------------------------------------------------------------------------------------ purge

export interface PurgeCounts {
  ancs: number;
  credentials: number;
  healthChecks: number;
  usedEnvelopes: number;
  tenantKeys: number;
}

export type PurgePlan =
  | { status: 'due'; counts: PurgeCounts }
  /** The stored purge date is later than the workflow thought: wait until then. */
  | { status: 'not-due'; purgeAt: string }
  | { status: 'purged'; purgedAt: string }
  | { status: 'active' }
  | { status: 'not-found' };

// Deletes only while the row says the tenant is deactivated and its window has passed at the
// workflow's time: a bug or an out-of-band reactivation can never purge a live tenant.
const PURGE_DUE = `EXISTS (SELECT 1 FROM tenants t WHERE t.tenant_id = $1 AND t.state = 'deactivated' AND t.purge_at <= $2)`;

/** Checks the purge is due and counts what it will remove (for the audit record). Read-only. */
export async function planTenantPurge(
  deps: ActivityDeps,
  input: { tenantId: string; nowMs: number },
): Promise<PurgePlan> {
  const { rows } = await deps.pool.query<TenantRow>(
    'SELECT state, deactivated_at, purge_at, purged_at FROM tenants WHERE tenant_id = $1',
    [input.tenantId],
  );
  const row = rows[0];
  if (!row) return { status: 'not-found' };
  if (row.state === 'purged')
    return { status: 'purged', purgedAt: (row.purged_at ?? new Date(input.nowMs)).toISOString() };
  if (row.state === 'active') return { status: 'active' };
  if (!row.purge_at || row.purge_at.getTime() > input.nowMs) {
    return { status: 'not-due', purgeAt: (row.purge_at ?? new Date(input.nowMs)).toISOString() };
  }
  const counts = await deps.pool.query<PurgeCounts>(
    `SELECT (SELECT count(*) FROM ancs WHERE tenant_id = $1)::int AS "ancs",
            (SELECT count(*) FROM anc_credentials WHERE tenant_id = $1)::int AS "credentials",
            (SELECT count(*) FROM health_checks WHERE tenant_id = $1)::int AS "healthChecks",
            (SELECT count(*) FROM used_envelopes WHERE tenant_id = $1)::int AS "usedEnvelopes",
            (SELECT count(*) FROM tenant_keys WHERE tenant_id = $1)::int AS "tenantKeys"`,
    [input.tenantId],
  );
  const c = counts.rows[0];
  if (!c) throw new Error('count query returned no row');
  return { status: 'due', counts: c };
}

export interface PurgeBatchInput {
  tenantId: string;
  nowMs: number;
  batchSize: number;
}

/**
 * Deletes up to `batchSize` of the tenant's ANCs (their credential versions and health checks go
 * with them, by cascade). Returns how many it deleted; fewer than `batchSize` means none are left.
 */
export async function purgeTenantAncs(deps: ActivityDeps, input: PurgeBatchInput): Promise<{ deleted: number }> {
  const { rowCount } = await deps.pool.query(
    `DELETE FROM ancs WHERE tenant_id = $1 AND ${PURGE_DUE}
        AND anc_id IN (SELECT anc_id FROM ancs WHERE tenant_id = $1 ORDER BY anc_id LIMIT $3)`,
    [input.tenantId, new Date(input.nowMs), input.batchSize],
  );
  return { deleted: rowCount ?? 0 };
}

/** Deletes up to `batchSize` of the tenant's used-envelope records. */
export async function purgeTenantEnvelopes(deps: ActivityDeps, input: PurgeBatchInput): Promise<{ deleted: number }> {
  const { rowCount } = await deps.pool.query(
    `DELETE FROM used_envelopes WHERE tenant_id = $1 AND ${PURGE_DUE}
        AND envelope_id IN (SELECT envelope_id FROM used_envelopes WHERE tenant_id = $1 LIMIT $3)`,
    [input.tenantId, new Date(input.nowMs), input.batchSize],
  );
  return { deleted: rowCount ?? 0 };
}

export interface FinishPurgeInput extends AuditContext {
  tenantId: string;
  nowMs: number;
  /** What the plan counted when the purge began, for the audit record. */
  counts: PurgeCounts;
}

/**
 * The last step, in one transaction: removes anything the batches left (normally nothing), destroys
 * every wrapped tenant key (crypto-shredding: nothing sealed for the tenant can be opened again),
 * turns the tenant row into a tombstone (state purged, purged_at) and appends `tenant.purged`.
 * A retry after the commit finds the tombstone and answers the same.
 */
export async function finishTenantPurge(
  deps: ActivityDeps,
  input: FinishPurgeInput,
): Promise<{ purged: boolean; purgedAt?: string; state: TenantRecord['state'] }> {
  const result = await inTransaction(
    deps.pool,
    async (
      client,
    ): Promise<{
      purged: boolean;
      purgedAt?: string;
      state: TenantRecord['state'];
    }> => {
      const row = await lockTenant(client, input.tenantId);
      if (!row) return { purged: false, state: 'not-found' };
      if (row.state === 'purged') return { purged: true, purgedAt: row.purged_at?.toISOString(), state: 'purged' };
      if (row.state !== 'deactivated' || !row.purge_at || row.purge_at.getTime() > input.nowMs) {
        return { purged: false, state: row.state };
      }
      const now = new Date(input.nowMs);
      const ancs = await client.query('DELETE FROM ancs WHERE tenant_id = $1', [input.tenantId]);
      const envelopes = await client.query('DELETE FROM used_envelopes WHERE tenant_id = $1', [input.tenantId]);
      const keys = await client.query('DELETE FROM tenant_keys WHERE tenant_id = $1', [input.tenantId]);
      await client.query(`UPDATE tenants SET state = 'purged', purged_at = $2, updated_at = $2 WHERE tenant_id = $1`, [
        input.tenantId,
        now,
      ]);
      await appendAudit(client, deps.config.auditMacKey, {
        eventKey: `${input.workflowId}/purged`,
        event: 'tenant.purged',
        tenantId: input.tenantId,
        actor: input.actor,
        workflowId: input.workflowId,
        at: now,
        outcome: 'success',
        details: {
          ancs: input.counts.ancs,
          credentials: input.counts.credentials,
          healthChecks: input.counts.healthChecks,
          usedEnvelopes: input.counts.usedEnvelopes,
          tenantKeys: keys.rowCount ?? 0,
          lateAncs: ancs.rowCount ?? 0,
          lateEnvelopes: envelopes.rowCount ?? 0,
          deactivatedAt: row.deactivated_at?.toISOString() ?? null,
          purgeAt: row.purge_at.toISOString(),
        },
      });
      return { purged: true, purgedAt: now.toISOString(), state: 'purged' };
    },
  );
  // Crypto-shredded in the database; the same for any copy held here.
  deps.tenantKeyCache?.invalidateTenant(input.tenantId);
  return result;
}

/**
 * Publishes how many tenants are in their retention window (deactivated, not yet purged). Read
 * from the database after each change, so every worker reports the same number.
 */
async function refreshRetentionGauge<T>(deps: ActivityDeps, result: T): Promise<T> {
  const { rows } = await deps.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM tenants WHERE state = 'deactivated'`,
  );
  setGauge(processMeter(), 'tenantsInRetention', rows[0]?.n ?? 0);
  return result;
}

/** The tenant lifecycle activities, bound to their dependencies (spread into createActivities). */
export function createTenantActivities(deps: ActivityDeps) {
  return {
    loadTenant: (input: { tenantId: string }) => loadTenant(deps, input),
    listTenantAncIds: (input: { tenantId: string; afterAncId?: string; limit: number }) =>
      listTenantAncIds(deps, input),
    deactivateTenantData: async (input: DeactivateTenantInput) =>
      refreshRetentionGauge(deps, await deactivateTenantData(deps, input)),
    reactivateTenantData: async (input: ReactivateTenantInput) =>
      refreshRetentionGauge(deps, await reactivateTenantData(deps, input)),
    planTenantPurge: (input: { tenantId: string; nowMs: number }) => planTenantPurge(deps, input),
    purgeTenantAncs: (input: PurgeBatchInput) => purgeTenantAncs(deps, input),
    purgeTenantEnvelopes: (input: PurgeBatchInput) => purgeTenantEnvelopes(deps, input),
    finishTenantPurge: async (input: FinishPurgeInput) =>
      refreshRetentionGauge(deps, await finishTenantPurge(deps, input)),
  };
}
