/**
 * Tenant key replacement: a tenant key older than twelve months gets a new version; every
 * credential sealed under a retiring version is opened and sealed again under the new one, and the
 * retiring rows are deleted (crypto-shredding), all in one transaction under the tenant row lock.
 */
import type { ListReplaceableInput, ReplaceBatchInput, ReplaceBatchResult } from '../../common/rotation';
import { openCredential, sealCredential } from '../crypto/seal';
import { zero } from '../crypto/tenant-key';
import { appendAudit } from '../db/audit';
import { inTransaction, type PoolClient } from '../db/pool';
import { onVaultSql, ownVaultId, type ActivityDeps } from '../deps';
import { PRIMARY_VAULT_ID } from '../../common/vaults';
import { generateTenantKeyVersion } from '../tenant-keys';
import { activityContext, forEachLimited, permanentItemError } from './shared';

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
    const ref = { tenantId, tenantKeyVersion: row.version, kekVersion: row.kek_version, wrappedKey: row.wrapped_key };
    const fromVault = () => {
      outcome.hsmUnwraps += 1;
      return provider.unwrap(row.wrapped_key, row.kek_version);
    };
    const key = deps.tenantKeyCache ? await deps.tenantKeyCache.getOrUnwrap(ref, fromVault) : await fromVault();
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
      const locked = await client.query<{ vault_id: string | null }>(
        'SELECT state, vault_id FROM tenants WHERE tenant_id = $1 FOR UPDATE',
        [tenantId],
      );
      if (locked.rowCount === 0) return undefined; // purged meanwhile
      // Moved to another vault meanwhile: that vault's rotation replaces its keys.
      if ((locked.rows[0]?.vault_id ?? PRIMARY_VAULT_ID) !== ownVaultId(deps)) return undefined;
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
    // Replaced (or attempted): nothing cached for the tenant may be used again.
    deps.tenantKeyCache?.invalidateTenant(tenantId);
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
  const rows = input.tenants
    ? input.tenants.map((tenantId) => ({ tenant_id: tenantId }))
    : (await listTenantsToReplace(deps, input)).map((tenantId) => ({ tenant_id: tenantId }));
  const result: ReplaceBatchResult = {
    tenants: rows.length,
    replaced: 0,
    resealed: 0,
    deleted: 0,
    failed: [],
    hsmUnwraps: 0,
    next: rows.at(-1)?.tenant_id ?? input.after,
    done: input.tenants ? true : rows.length < input.limit,
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

/** The next page of tenants with an expired active key or retiring versions left over (ids only). */
export async function listTenantsToReplace(deps: ActivityDeps, input: ListReplaceableInput): Promise<string[]> {
  const { rows } = await deps.pool.query<{ tenant_id: string }>(
    `SELECT DISTINCT tenant_id FROM tenant_keys
      WHERE (state = 'retiring' OR expires_at <= $1) AND ($2::text IS NULL OR tenant_id > $2)
        AND ${onVaultSql('tenant_keys.tenant_id', '$4')}
      ORDER BY tenant_id LIMIT $3`,
    [new Date(input.nowMs), input.after, input.limit, ownVaultId(deps)],
  );
  return rows.map((r) => r.tenant_id);
}
