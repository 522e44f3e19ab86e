/**
 * Re-wrap: every tenant key not wrapped by the current KEK version is unwrapped by its version
 * (one HSM call) and wrapped again locally with the current public key (no remote wrap).
 */
import { ApplicationFailure } from '@temporalio/common';
import type { ListStaleKeysInput, RewrapBatchInput, RewrapBatchResult, RewrapCursor } from '../../common/rotation';
import { zero } from '../crypto/tenant-key';
import { appendAudit } from '../db/audit';
import { inTransaction } from '../db/pool';
import { onVaultSql, ownVaultId, type ActivityDeps } from '../deps';
import { activityContext, forEachLimited, permanentItemError } from './shared';

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
  if (!target.enabled || target.expiresAt.getTime() <= input.nowMs) {
    throw ApplicationFailure.create({
      type: 'KekUnavailable',
      message: `KEK version ${target.version} is ${target.enabled ? 'expired' : 'disabled'}: it cannot be the re-wrap target`,
      nonRetryable: true,
    });
  }
  const now = new Date(input.nowMs);
  const { rows } = input.keys
    ? await deps.pool.query<StaleKeyRow>(
        `SELECT k.tenant_id, k.version, k.kek_version, k.wrapped_key
           FROM tenant_keys k
           JOIN unnest($2::text[], $3::int[]) AS w(tenant_id, version)
             ON w.tenant_id = k.tenant_id AND w.version = k.version
          WHERE k.kek_version <> $1 AND ${onVaultSql('k.tenant_id', '$4')}
          ORDER BY k.tenant_id, k.version`,
        [target.version, input.keys.map((k) => k.tenantId), input.keys.map((k) => k.version), ownVaultId(deps)],
      )
    : await deps.pool.query<StaleKeyRow>(
        `SELECT tenant_id, version, kek_version, wrapped_key FROM tenant_keys
          WHERE kek_version <> $1 AND ($2::text IS NULL OR (tenant_id, version) > ($2::text, $3::int))
            AND ${onVaultSql('tenant_keys.tenant_id', '$5')}
          ORDER BY tenant_id, version LIMIT $4`,
        [target.version, input.after?.tenantId ?? null, input.after?.version ?? 0, input.limit, ownVaultId(deps)],
      );
  const result: RewrapBatchResult = {
    rewrapped: 0,
    alreadyDone: 0,
    failed: [],
    hsmUnwraps: 0,
    next: rows.length > 0 ? { tenantId: rows.at(-1)!.tenant_id, version: rows.at(-1)!.version } : input.after,
    done: input.keys ? true : rows.length < input.limit,
  };
  const ctx = activityContext();

  await forEachLimited(rows, input.concurrency, async (row) => {
    let key: Buffer | undefined;
    let wrapped: Buffer;
    try {
      const ref = {
        tenantId: row.tenant_id,
        tenantKeyVersion: row.version,
        kekVersion: row.kek_version,
        wrappedKey: row.wrapped_key,
      };
      const unwrap = () => {
        result.hsmUnwraps += 1;
        return provider.unwrap(row.wrapped_key, row.kek_version);
      };
      key = deps.tenantKeyCache ? await deps.tenantKeyCache.getOrUnwrap(ref, unwrap) : await unwrap();
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
    // Re-wrapped: the entry under the old wrapping goes at once.
    deps.tenantKeyCache?.invalidateTenant(row.tenant_id);
    if (stored) result.rewrapped += 1;
    else result.alreadyDone += 1;
    ctx?.heartbeat({ tenantId: row.tenant_id, version: row.version });
  });
  return result;
}

/** Ids (never key material) of the next page of tenant keys not wrapped by the target version. */
export async function listStaleTenantKeys(deps: ActivityDeps, input: ListStaleKeysInput): Promise<RewrapCursor[]> {
  const { rows } = await deps.pool.query<{ tenant_id: string; version: number }>(
    `SELECT tenant_id, version FROM tenant_keys
      WHERE kek_version <> $1 AND ($2::text IS NULL OR (tenant_id, version) > ($2::text, $3::int))
        AND ${onVaultSql('tenant_keys.tenant_id', '$5')}
      ORDER BY tenant_id, version LIMIT $4`,
    [input.targetKekVersion, input.after?.tenantId ?? null, input.after?.version ?? 0, input.limit, ownVaultId(deps)],
  );
  return rows.map((r) => ({ tenantId: r.tenant_id, version: r.version }));
}
