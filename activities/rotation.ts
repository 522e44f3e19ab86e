/**
 * Activities of the scheduled rotation (workflows/rotation.ts):
 *
 *  - renewKekIfDue: three months before the current KEK version expires, create a new version valid
 *    one year.
 *  - replaceExpiredTenantKeys: a tenant key older than twelve months gets a new version; every
 *    credential sealed under a retiring version is opened and sealed again under the new one, and the
 *    retiring rows are deleted (crypto-shredding), all in one transaction under the tenant row lock.
 *  - rewrapTenantKeys: every tenant key not wrapped by the current KEK version is unwrapped by its
 *    version (one HSM call) and wrapped again locally with the current public key (no remote wrap).
 *  - retireKekVersions: report (and optionally disable) KEK versions no tenant key refers to.
 *
 * Every decision about "now" uses the workflow time the caller passes. Tenant keys exist in the
 * clear only inside these functions, are zeroed after use and are never stored or returned.
 * Per-item problems retrying cannot fix are reported and skipped; anything else (throttling, network,
 * database) is thrown so Temporal retries the activity, and finished items are never redone: each
 * re-wrap commits on its own, guarded by `kek_version = <old>`.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { RewrapCursor, RotationFailure } from '../workflows/rotation-definitions';
import { CredentialOpenError, openCredential, sealCredential } from './crypto/seal';
import { zero } from './crypto/tenant-key';
import { appendAudit } from './db/audit';
import { inTransaction, type PoolClient } from './db/pool';
import type { ActivityDeps } from './deps';
import { KekUnwrapError, KekVersionNotFoundError, type KekVersion } from './kek/provider';
import { generateTenantKeyVersion } from './tenant-keys';

/** A KEK version is renewed this many calendar months before it expires. */
export const KEK_RENEW_BEFORE_EXPIRY_MONTHS = 3;
/** A new KEK version is valid this many calendar months. */
export const KEK_VALIDITY_MONTHS = 12;

// Serialises KEK renewals across workers (two rotations must never both create a version).
const KEK_RENEWAL_LOCK_ID = 0x616e636b; // "anck"

/** `from` moved by `months` calendar months (UTC), the day clamped to the target month's last day. */
export function addUtcMonths(from: Date, months: number): Date {
  const t = from.getTime();
  if (Number.isNaN(t)) throw new RangeError('invalid date');
  const firstOfTarget = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + months, 1));
  const y = firstOfTarget.getUTCFullYear();
  const m = firstOfTarget.getUTCMonth();
  const day = Math.min(from.getUTCDate(), new Date(Date.UTC(y, m + 1, 0)).getUTCDate());
  return new Date(
    Date.UTC(y, m, day, from.getUTCHours(), from.getUTCMinutes(), from.getUTCSeconds(), from.getUTCMilliseconds()),
  );
}

/** True when fewer than three months remain before `expiresAt`. */
export function kekRenewalDue(expiresAt: Date, now: Date): boolean {
  return now.getTime() >= addUtcMonths(expiresAt, -KEK_RENEW_BEFORE_EXPIRY_MONTHS).getTime();
}

interface AuditActor {
  /** The rotation's workflow id. */
  rotationId: string;
  actor: string;
}

function activityContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined; // called directly (tests, tools), not as an activity
  }
}

/** Problems with one item that retrying cannot fix: report it and go on with the others. */
function permanentItemError(err: unknown): string | undefined {
  if (err instanceof KekUnwrapError) return 'KekUnwrapFailed';
  if (err instanceof KekVersionNotFoundError) return 'KekVersionNotFound';
  if (err instanceof CredentialOpenError) return 'CredentialOpenFailed';
  return undefined;
}

/**
 * Runs `fn` over `items` with at most `concurrency` at once. The first error stops new items from
 * starting; the ones in flight finish (their work is committed, not wasted) and then it is thrown.
 */
async function forEachLimited<T>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  const ctx = activityContext();
  let next = 0;
  let failure: { err: unknown } | undefined;
  const lane = async (): Promise<void> => {
    while (!failure && next < items.length) {
      if (ctx?.cancellationSignal.aborted) {
        failure = { err: new CancelledFailure('rotation batch cancelled') };
        return;
      }
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, lane));
  if (failure) throw failure.err;
}

// ------------------------------------------------------------------------------- KEK renewal

export interface RenewKekInput extends AuditActor {
  /** Workflow time (ms since epoch). */
  nowMs: number;
}

export interface RenewKekResult {
  currentVersion: string;
  currentExpiresAtMs: number;
  /** A version was created by this call, or by an earlier attempt that did not finish. */
  renewed: boolean;
  /** The newest enabled version older than the current one, if any. */
  previousVersion?: string;
}

/**
 * Creates a new KEK version (valid one year) when fewer than three months remain on the current
 * one. Idempotent: a retry after the version was created finds it current with a year left and
 * creates nothing; it still reports the renewal until its audit record exists.
 */
export async function renewKekIfDue(deps: ActivityDeps, input: RenewKekInput): Promise<RenewKekResult> {
  const now = new Date(input.nowMs);
  const provider = deps.kek.provider;
  return inTransaction(deps.pool, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [KEK_RENEWAL_LOCK_ID]);
    const enabled = (await provider.listVersions()).filter((v) => v.enabled);
    let current: KekVersion | undefined = enabled.at(-1);
    let previous: KekVersion | undefined = enabled.at(-2);
    let created = false;
    if (!current || kekRenewalDue(current.expiresAt, now)) {
      previous = current;
      current = await provider.createVersion(addUtcMonths(now, KEK_VALIDITY_MONTHS));
      created = true;
    }
    // Other requests in this worker must seal new tenant keys with the new version at once.
    deps.kek.invalidate();
    const eventKey = `kek.renewed/${current.kekId}/${current.version}`;
    let renewed = created;
    if (!created && previous) {
      // A version created by an attempt whose transaction did not commit (or by an operator):
      // treat it as this rotation's renewal until it is audited.
      const audited = await client.query('SELECT 1 FROM audit_log WHERE event_key = $1', [eventKey]);
      renewed = (audited.rowCount ?? 0) === 0;
    }
    if (renewed) {
      await appendAudit(client, deps.config.auditMacKey, {
        eventKey,
        event: 'kek.renewed',
        at: now,
        actor: input.actor,
        workflowId: input.rotationId,
        outcome: 'success',
        details: {
          kekId: current.kekId,
          kekVersion: current.version,
          previousKekVersion: previous?.version ?? null,
          expiresAt: current.expiresAt.toISOString(),
          previousExpiresAt: previous?.expiresAt.toISOString() ?? null,
        },
      });
      deps.logger.info(
        { kekVersion: current.version, previousKekVersion: previous?.version, expiresAt: current.expiresAt },
        'KEK renewed',
      );
    }
    return {
      currentVersion: current.version,
      currentExpiresAtMs: current.expiresAt.getTime(),
      renewed,
      ...(previous ? { previousVersion: previous.version } : {}),
    };
  });
}

// ------------------------------------------------------------------------------- re-wrap

export interface RewrapBatchInput extends AuditActor {
  /** The KEK version to wrap with (the current one). */
  targetKekVersion: string;
  /** Resume after this tenant key; null from the start. */
  after: RewrapCursor | null;
  limit: number;
  concurrency: number;
  nowMs: number;
}

export interface RewrapBatchResult {
  rewrapped: number;
  /** Rows another attempt or worker had re-wrapped already. */
  alreadyDone: number;
  failed: RotationFailure[];
  hsmUnwraps: number;
  /** The last tenant key looked at. */
  next: RewrapCursor | null;
  /** No tenant key after `next` needs re-wrapping. */
  done: boolean;
}

interface StaleKeyRow {
  tenant_id: string;
  version: number;
  kek_version: string;
  wrapped_key: Buffer;
}

/**
 * One page of tenant keys not wrapped by the target KEK version: unwrap each with its own version
 * (one HSM call, held to the provider's rate budget), wrap with the target version locally and
 * store it in its own small transaction together with its audit record.
 */
export async function rewrapTenantKeys(deps: ActivityDeps, input: RewrapBatchInput): Promise<RewrapBatchResult> {
  const provider = deps.kek.provider;
  const target = await provider.getVersion(input.targetKekVersion);
  if (!target.enabled) {
    throw ApplicationFailure.create({
      type: 'KekUnavailable',
      message: `KEK version ${target.version} is disabled: it cannot be the re-wrap target`,
      nonRetryable: true,
    });
  }
  const now = new Date(input.nowMs);
  const { rows } = await deps.pool.query<StaleKeyRow>(
    `SELECT tenant_id, version, kek_version, wrapped_key FROM tenant_keys
      WHERE kek_version <> $1 AND ($2::text IS NULL OR (tenant_id, version) > ($2::text, $3::int))
      ORDER BY tenant_id, version LIMIT $4`,
    [target.version, input.after?.tenantId ?? null, input.after?.version ?? 0, input.limit],
  );
  const result: RewrapBatchResult = {
    rewrapped: 0,
    alreadyDone: 0,
    failed: [],
    hsmUnwraps: 0,
    next: rows.length > 0 ? { tenantId: rows.at(-1)!.tenant_id, version: rows.at(-1)!.version } : input.after,
    done: rows.length < input.limit,
  };
  const ctx = activityContext();

  await forEachLimited(rows, input.concurrency, async (row) => {
    let key: Buffer | undefined;
    let wrapped: Buffer;
    try {
      result.hsmUnwraps += 1;
      key = await provider.unwrap(row.wrapped_key, row.kek_version);
      wrapped = await provider.wrap(key, target);
    } catch (err) {
      const reason = permanentItemError(err);
      if (!reason) throw err;
      result.failed.push({ phase: 'rewrap', tenantId: row.tenant_id, tenantKeyVersion: row.version, reason });
      deps.logger.warn(
        { tenantId: row.tenant_id, tenantKeyVersion: row.version, kekVersion: row.kek_version, reason },
        'tenant key could not be re-wrapped',
      );
      return;
    } finally {
      zero(key);
    }
    const stored = await inTransaction(deps.pool, async (client) => {
      const updated = await client.query(
        `UPDATE tenant_keys SET wrapped_key = $4, kek_id = $5, kek_version = $6, rewrapped_at = $7
          WHERE tenant_id = $1 AND version = $2 AND kek_version = $3`,
        [row.tenant_id, row.version, row.kek_version, wrapped, target.kekId, target.version, now],
      );
      if (updated.rowCount !== 1) return false;
      await appendAudit(client, deps.config.auditMacKey, {
        eventKey: `tenant_key.rewrapped/${row.tenant_id}/${row.version}/${target.version}`,
        event: 'tenant_key.rewrapped',
        tenantId: row.tenant_id,
        at: now,
        actor: input.actor,
        workflowId: input.rotationId,
        outcome: 'success',
        details: { tenantKeyVersion: row.version, fromKekVersion: row.kek_version, toKekVersion: target.version },
      });
      return true;
    });
    if (stored) result.rewrapped += 1;
    else result.alreadyDone += 1;
    ctx?.heartbeat({ tenantId: row.tenant_id, version: row.version });
  });
  return result;
}

// ------------------------------------------------------------------------------- tenant key replacement

export interface ReplaceBatchInput extends AuditActor {
  /** Resume after this tenant id; null from the start. */
  after: string | null;
  limit: number;
  concurrency: number;
  nowMs: number;
}

export interface ReplaceBatchResult {
  tenants: number;
  replaced: number;
  resealed: number;
  deleted: number;
  failed: RotationFailure[];
  hsmUnwraps: number;
  next: string | null;
  done: boolean;
}

interface KeyRow {
  version: number;
  state: 'active' | 'retiring';
  expires_at: Date;
  wrapped_key: Buffer;
  kek_version: string;
  referenced: boolean;
}

interface Plan {
  active: KeyRow | undefined;
  needsNewKey: boolean;
  /** Versions that end up retiring: the retiring ones plus an expired active one. */
  retiring: KeyRow[];
  /** Versions whose clear key is needed: the referenced retiring ones, and the target if kept. */
  unwrap: KeyRow[];
}

async function loadKeys(client: Pick<PoolClient, 'query'>, tenantId: string): Promise<KeyRow[]> {
  const { rows } = await client.query<KeyRow>(
    `SELECT k.version, k.state, k.expires_at, k.wrapped_key, k.kek_version,
            EXISTS (SELECT 1 FROM anc_credentials c
                     WHERE c.tenant_id = k.tenant_id AND c.tenant_key_version = k.version) AS referenced
       FROM tenant_keys k WHERE k.tenant_id = $1 ORDER BY k.version`,
    [tenantId],
  );
  return rows;
}

function planFor(keys: KeyRow[], now: Date): Plan | undefined {
  const active = keys.find((k) => k.state === 'active');
  const needsNewKey = active !== undefined && active.expires_at.getTime() <= now.getTime();
  const retiring = keys.filter((k) => k.state === 'retiring' || (needsNewKey && k === active));
  if (retiring.length === 0) return undefined;
  const referenced = retiring.filter((k) => k.referenced);
  // Credentials under retiring keys need a current key to be sealed under: the active one, or a
  // new one when there is none (generated locally, no HSM call).
  const keepActive = !needsNewKey && active !== undefined && referenced.length > 0;
  return {
    active,
    needsNewKey: needsNewKey || (active === undefined && referenced.length > 0),
    retiring,
    unwrap: keepActive && active ? [...referenced, active] : referenced,
  };
}

interface TenantOutcome {
  replaced: boolean;
  resealed: number;
  deleted: number;
  hsmUnwraps: number;
}

/**
 * Replaces one tenant's expired key and re-seals what its retiring keys protect. The needed keys
 * are unwrapped before the lock is taken (HSM calls can wait on the rate budget); the generation,
 * re-seal, delete and audit then happen in one transaction holding the tenant row lock, the lock
 * provideCredential takes, so an update never interleaves and nothing sees a half-done state.
 */
async function replaceForTenant(
  deps: ActivityDeps,
  tenantId: string,
  input: ReplaceBatchInput,
): Promise<TenantOutcome | undefined> {
  const now = new Date(input.nowMs);
  const provider = deps.kek.provider;
  const outcome: TenantOutcome = { replaced: false, resealed: 0, deleted: 0, hsmUnwraps: 0 };
  const clear = new Map<number, Buffer>();
  const unwrap = async (row: KeyRow): Promise<Buffer> => {
    const known = clear.get(row.version);
    if (known) return known;
    outcome.hsmUnwraps += 1;
    const key = await provider.unwrap(row.wrapped_key, row.kek_version);
    clear.set(row.version, key);
    return key;
  };
  let newKey: Buffer | undefined;
  try {
    const before = planFor(await loadKeys(deps.pool, tenantId), now);
    if (!before) return undefined;
    // A key's clear value never changes (re-wrapping changes only its wrapping), so what is
    // unwrapped here stays valid even if the rows change before the lock is taken.
    for (const row of before.unwrap) await unwrap(row);

    return await inTransaction(deps.pool, async (client) => {
      const locked = await client.query('SELECT state FROM tenants WHERE tenant_id = $1 FOR UPDATE', [tenantId]);
      if (locked.rowCount === 0) return undefined; // purged meanwhile
      const keys = await loadKeys(client, tenantId);
      const plan = planFor(keys, now);
      if (!plan) return undefined; // done by an earlier attempt or another writer

      let target: { version: number; key: Buffer };
      if (plan.needsNewKey) {
        const generated = await generateTenantKeyVersion(client, deps.kek, deps.config.auditMacKey, {
          tenantId,
          now,
          audit: {
            actor: input.actor,
            workflowId: input.rotationId,
            // Unique per generation: versions only grow, and a rolled-back attempt left no record.
            eventKey: `tenant_key.generated/${tenantId}/after-v${Math.max(...keys.map((k) => k.version))}`,
          },
        });
        newKey = generated.key;
        target = { version: generated.version, key: generated.key };
        outcome.replaced = true;
      } else {
        const active = plan.active as KeyRow;
        target = { version: active.version, key: await unwrap(active) };
      }

      const retiringVersions = plan.retiring.map((k) => k.version);
      const byVersion = new Map(plan.retiring.map((k) => [k.version, k]));
      const { rows: creds } = await client.query<{
        anc_id: string;
        version: number;
        tenant_key_version: number;
        sealed: Buffer;
      }>(
        `SELECT anc_id, version, tenant_key_version, sealed FROM anc_credentials
          WHERE tenant_id = $1 AND tenant_key_version = ANY($2::int[]) ORDER BY anc_id, version FOR UPDATE`,
        [tenantId, retiringVersions],
      );
      for (const cred of creds) {
        const oldKey = await unwrap(byVersion.get(cred.tenant_key_version) as KeyRow);
        const password = openCredential({
          tenantKey: oldKey,
          keyVersion: cred.tenant_key_version,
          tenantId,
          ancId: cred.anc_id,
          sealed: cred.sealed,
        });
        const sealed = sealCredential({
          tenantKey: target.key,
          keyVersion: target.version,
          tenantId,
          ancId: cred.anc_id,
          plaintext: password,
        });
        await client.query(
          `UPDATE anc_credentials SET tenant_key_version = $4, sealed = $5, resealed_at = $6
            WHERE tenant_id = $1 AND anc_id = $2 AND version = $3`,
          [tenantId, cred.anc_id, cred.version, target.version, sealed, now],
        );
        outcome.resealed += 1;
      }

      // Crypto-shredding: the retiring versions go once nothing refers to them (the foreign key
      // from anc_credentials guarantees a referenced key can never be deleted).
      const { rows: deleted } = await client.query<{ version: number }>(
        `DELETE FROM tenant_keys k
          WHERE k.tenant_id = $1 AND k.state = 'retiring'
            AND NOT EXISTS (SELECT 1 FROM anc_credentials c
                             WHERE c.tenant_id = k.tenant_id AND c.tenant_key_version = k.version)
          RETURNING k.version`,
        [tenantId],
      );
      outcome.deleted = deleted.length;
      const deletedVersions = deleted.map((d) => d.version).sort((a, b) => a - b);
      await appendAudit(client, deps.config.auditMacKey, {
        eventKey: `tenant_key.replaced/${tenantId}/${deletedVersions.join('+') || `kept-v${target.version}`}`,
        event: 'tenant_key.replaced',
        tenantId,
        at: now,
        actor: input.actor,
        workflowId: input.rotationId,
        outcome: 'success',
        details: {
          toTenantKeyVersion: target.version,
          fromTenantKeyVersions: retiringVersions.join(','),
          deletedTenantKeyVersions: deletedVersions.join(','),
          credentialsResealed: outcome.resealed,
          generated: outcome.replaced,
        },
      });
      return outcome;
    });
  } finally {
    for (const key of clear.values()) zero(key);
    zero(newKey);
  }
}

/**
 * One page of tenants with an expired active key or retiring key versions left over (from an
 * interrupted run, or from provideCredential replacing an expired key itself).
 */
export async function replaceExpiredTenantKeys(
  deps: ActivityDeps,
  input: ReplaceBatchInput,
): Promise<ReplaceBatchResult> {
  const { rows } = await deps.pool.query<{ tenant_id: string }>(
    `SELECT DISTINCT tenant_id FROM tenant_keys
      WHERE (state = 'retiring' OR expires_at <= $1) AND ($2::text IS NULL OR tenant_id > $2)
      ORDER BY tenant_id LIMIT $3`,
    [new Date(input.nowMs), input.after, input.limit],
  );
  const result: ReplaceBatchResult = {
    tenants: rows.length,
    replaced: 0,
    resealed: 0,
    deleted: 0,
    failed: [],
    hsmUnwraps: 0,
    next: rows.at(-1)?.tenant_id ?? input.after,
    done: rows.length < input.limit,
  };
  const ctx = activityContext();
  // Each tenant holds a pooled connection while it works: keep the parallelism modest.
  await forEachLimited(rows, Math.min(input.concurrency, 4), async ({ tenant_id: tenantId }) => {
    try {
      const outcome = await replaceForTenant(deps, tenantId, input);
      if (outcome) {
        result.hsmUnwraps += outcome.hsmUnwraps;
        if (outcome.replaced) result.replaced += 1;
        result.resealed += outcome.resealed;
        result.deleted += outcome.deleted;
      }
    } catch (err) {
      const reason = permanentItemError(err);
      if (!reason) throw err;
      result.failed.push({ phase: 'replace', tenantId, reason });
      deps.logger.warn({ tenantId, reason }, 'tenant key could not be replaced');
    }
    ctx?.heartbeat({ tenantId });
  });
  return result;
}

// ------------------------------------------------------------------------------- retiring KEK versions

export interface RetireKekInput extends AuditActor {
  currentKekVersion: string;
  nowMs: number;
}

export interface RetireKekResult {
  /** Enabled versions other than the current one that no tenant key refers to. */
  unreferenced: string[];
  /** Of those, the ones disabled now (config.disableUnreferencedKekVersions). */
  disabled: string[];
  /** Versions other than the current one still referred to, with how many tenant keys. */
  stillReferenced: Array<{ kekVersion: string; tenantKeys: number }>;
}

/**
 * Reports the KEK versions no tenant key refers to any more (audited once each as 'kek.rotated')
 * and, when configured, disables them in Key Vault so they can no longer unwrap anything.
 */
export async function retireKekVersions(deps: ActivityDeps, input: RetireKekInput): Promise<RetireKekResult> {
  const provider = deps.kek.provider;
  const versions = await provider.listVersions();
  const { rows } = await deps.pool.query<{ kek_version: string; n: number }>(
    'SELECT kek_version, count(*)::int AS n FROM tenant_keys GROUP BY kek_version',
  );
  const refs = new Map(rows.map((r) => [r.kek_version, r.n]));
  const result: RetireKekResult = {
    unreferenced: [],
    disabled: [],
    stillReferenced: rows
      .filter((r) => r.kek_version !== input.currentKekVersion)
      .map((r) => ({ kekVersion: r.kek_version, tenantKeys: r.n })),
  };
  const now = new Date(input.nowMs);
  for (const v of versions) {
    if (v.version === input.currentKekVersion || !v.enabled || (refs.get(v.version) ?? 0) > 0) continue;
    result.unreferenced.push(v.version);
    const disable = deps.config.disableUnreferencedKekVersions;
    if (disable) {
      await provider.disableVersion(v.version);
      result.disabled.push(v.version);
    }
    await inTransaction(deps.pool, async (client) => {
      await appendAudit(client, deps.config.auditMacKey, {
        eventKey: `kek.rotated/${v.kekId}/${v.version}/${disable ? 'disabled' : 'unreferenced'}`,
        event: 'kek.rotated',
        at: now,
        actor: input.actor,
        workflowId: input.rotationId,
        outcome: 'success',
        details: {
          kekId: v.kekId,
          fromKekVersion: v.version,
          toKekVersion: input.currentKekVersion,
          unreferenced: true,
          disabled: disable,
        },
      });
    });
  }
  if (result.disabled.length > 0) deps.kek.invalidate();
  return result;
}

/** The rotation's activities, bound to their dependencies (spread into createActivities). */
export function createRotationActivities(deps: ActivityDeps) {
  return {
    renewKekIfDue: (input: RenewKekInput) => renewKekIfDue(deps, input),
    rewrapTenantKeys: (input: RewrapBatchInput) => rewrapTenantKeys(deps, input),
    replaceExpiredTenantKeys: (input: ReplaceBatchInput) => replaceExpiredTenantKeys(deps, input),
    retireKekVersions: (input: RetireKekInput) => retireKekVersions(deps, input),
  };
}

export type RotationActivities = ReturnType<typeof createRotationActivities>;
