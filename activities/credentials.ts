import { ApplicationFailure } from '@temporalio/common';
import { permanentFailure } from '../common/errors';
import { addCounter } from '../common/metrics';
import type { AncSpec, CredentialStored } from '../common/types';
import { PASSWORD_RULE_MESSAGES, passwordRuleBroken } from '../common/validation';
import { PasswordPolicyError, sealCredential } from './crypto/seal';
import { zero } from './crypto/tenant-key';
import { AUDIT_COLUMNS, appendAudit, prepareAudit } from './db/audit';
import { inTransaction, type PoolClient } from './db/pool';
import { ownVaultId, vaultsOf, type ActivityDeps } from './deps';
import type { TenantKeyRef } from './kek/tenant-key-cache';
import { operationLog } from './log';
import { serviceMeter } from './metrics';
import { openEnvelope, resealEnvelope } from './envelope';
import { settleTenantVault, TenantOnOtherVault, tenantOnOtherVault, type LockedTenant } from './tenant-vault';
import { PRIMARY_VAULT_ID } from '../common/vaults';
import {
  obtainTenantKey,
  USABLE_KEY_COLUMNS,
  usableKeyFrom,
  type TenantKeyRow,
  type UsableKeyColumns,
} from './tenant-keys';

export interface ProvideCredentialInput {
  mode: 'create' | 'update';
  tenantId: string;
  ancId: string;
  /** Required for create. */
  spec?: AncSpec;
  passwordEnvelope: string;
  /** Workflow time when the request was accepted (ms since epoch). */
  receivedAtMs: number;
  /** Workflow time now: decides whether the tenant key has expired. */
  nowMs: number;
  /** Unique per ANC operation (workflow id + update id): makes retries idempotent. */
  operationId: string;
  actor: string;
  workflowId: string;
}

const PG_UNIQUE_VIOLATION = '23505';

async function findStored(
  client: Pick<PoolClient, 'query'>,
  operationId: string,
): Promise<CredentialStored | undefined> {
  const { rows } = await client.query<{
    version: number;
    tenant_key_version: number;
    created_at: Date;
    vault_id: string | null;
  }>(
    `SELECT c.version, c.tenant_key_version, c.created_at, t.vault_id
       FROM anc_credentials c JOIN tenants t ON t.tenant_id = c.tenant_id WHERE c.operation_id = $1`,
    [operationId],
  );
  const row = rows[0];
  return (
    row && {
      credentialVersion: row.version,
      tenantKeyVersion: row.tenant_key_version,
      storedAt: row.created_at.toISOString(),
      vaultId: row.vault_id ?? PRIMARY_VAULT_ID,
    }
  );
}

async function lockActiveTenant(
  client: PoolClient,
  tenantId: string,
  createIfMissing: boolean,
  placement: string,
): Promise<LockedTenant> {
  // A create adds the tenant if it is new (placed on `placement`: its first key is generated in
  // this transaction) and locks its row in one statement: the no-op update on conflict locks the
  // existing row as FOR UPDATE would, and returns its latest state and vault.
  const hasKeys = 'EXISTS (SELECT 1 FROM tenant_keys k WHERE k.tenant_id = tenants.tenant_id) AS has_keys';
  const { rows } = await client.query<{ state: string } & LockedTenant>(
    createIfMissing
      ? `INSERT INTO tenants (tenant_id, vault_id) VALUES ($1, $2)
         ON CONFLICT (tenant_id) DO UPDATE SET state = tenants.state RETURNING state, vault_id, ${hasKeys}`
      : `SELECT state, vault_id, ${hasKeys} FROM tenants WHERE tenant_id = $1 FOR UPDATE`,
    createIfMissing ? [tenantId, placement] : [tenantId],
  );
  const state = rows[0]?.state;
  if (state === undefined) throw permanentFailure('AncNotFound', `ANC does not exist`);
  if (state === 'deactivated') throw permanentFailure('TenantDeactivated', `tenant ${tenantId} is deactivated`);
  if (state === 'purged') throw permanentFailure('TenantPurged', `tenant ${tenantId} was purged`);
  return { vault_id: rows[0]?.vault_id ?? null, has_keys: rows[0]?.has_keys ?? false };
}

/**
 * The seed's encryption steps for one ANC operation, in one activity and one transaction:
 * open the client envelope, find or generate the tenant key, seal the password under it, store
 * the sealed credential version and the audit records. The password exists in the clear only
 * here. Retrying with the same operation id returns the stored result and writes nothing.
 */
const ENVELOPE_REJECTIONS = new Set(['InvalidEnvelope', 'EnvelopeExpired', 'EnvelopeReused']);

/** Counts a refused password envelope by its error type (the reason), and returns the error. */
function countRejection(err: unknown): unknown {
  if (err instanceof ApplicationFailure && err.type && ENVELOPE_REJECTIONS.has(err.type)) {
    addCounter(serviceMeter(), 'envelopeRejections', 1, { reason: err.type });
  }
  return err;
}

export async function provideCredential(deps: ActivityDeps, input: ProvideCredentialInput): Promise<CredentialStored> {
  const done = await findStored(deps.pool, input.operationId);
  if (done) return done;

  const vaults = vaultsOf(deps);
  const ownVault = ownVaultId(deps);
  const kekVersion = await deps.kek.current();
  const opened = await openEnvelope({
    envelope: input.passwordEnvelope,
    kek: deps.kek.provider,
    kekId: kekVersion.kekId,
    vaultId: ownVault,
    tenantId: input.tenantId,
    ancId: input.ancId,
    op: input.mode,
    receivedAtMs: input.receivedAtMs,
    maxAgeSeconds: deps.config.envelopeMaxAgeSeconds,
  }).catch((err: unknown) => {
    throw countRejection(err);
  });
  // The password rule (common/validation.ts), before anything is written.
  const broken = passwordRuleBroken(opened.password);
  if (broken) throw permanentFailure(broken, PASSWORD_RULE_MESSAGES[broken]);
  const now = new Date(input.nowMs);
  const audit = { actor: input.actor, workflowId: input.workflowId };

  let generatedKey = false;
  // A key generated here goes into the tenant-key cache once its row has committed, so the health
  // check that follows (and the tenant's next operations) do not unwrap it again.
  let freshKey: { ref: TenantKeyRef; key: Buffer } | undefined;
  try {
    const stored = await inTransaction(deps.pool, async (client) => {
      // Round trips: the tenant lock; one read of what the operation needs under it (the ANC, the
      // next version, the tenant's usable key); the audit lock and chain head; one statement for
      // every write. Each read is its own statement after the lock it depends on, so its snapshot
      // sees whatever the lock's previous holder committed.
      const locked = await lockActiveTenant(
        client,
        input.tenantId,
        input.mode === 'create',
        vaults.place(input.tenantId),
      );
      // The tenant's keys are in one vault: a tenant placed elsewhere (or moved) is served there.
      const tenantVault = await settleTenantVault(client, vaults, input.tenantId, locked);
      if (tenantVault !== ownVault) throw new TenantOnOtherVault(tenantVault);
      let nextVersion = 1;
      let usableKey: TenantKeyRow | undefined;
      if (input.mode === 'create') {
        const { rows } = await client.query<{ n: number; taken: boolean } & UsableKeyColumns>(
          `SELECT (SELECT count(*)::int FROM ancs WHERE tenant_id = $1) AS n,
                  EXISTS (SELECT 1 FROM ancs WHERE tenant_id = $1 AND anc_id = $2) AS taken, ${USABLE_KEY_COLUMNS}
             FROM (SELECT 1) one
             LEFT JOIN tenant_keys k ON k.tenant_id = $1 AND k.state = 'active' AND k.expires_at > $3`,
          [input.tenantId, input.ancId, now],
        );
        const row = rows[0];
        if (row?.taken) throw permanentFailure('AncAlreadyExists', `ANC ${input.ancId} already exists`);
        if ((row?.n ?? 0) >= deps.config.maxAncsPerTenant) {
          throw permanentFailure(
            'TenantLimitReached',
            `tenant ${input.tenantId} already has ${deps.config.maxAncsPerTenant} ANCs, the most allowed`,
          );
        }
        usableKey = row && usableKeyFrom(input.tenantId, row);
      } else {
        const { rows } = await client.query<{ next: number } & UsableKeyColumns>(
          `SELECT (SELECT COALESCE(MAX(version), 0) + 1 FROM anc_credentials c
                    WHERE c.tenant_id = a.tenant_id AND c.anc_id = a.anc_id) AS next, ${USABLE_KEY_COLUMNS}
             FROM ancs a
             LEFT JOIN tenant_keys k ON k.tenant_id = a.tenant_id AND k.state = 'active' AND k.expires_at > $3
            WHERE a.tenant_id = $1 AND a.anc_id = $2 FOR UPDATE OF a`,
          [input.tenantId, input.ancId, now],
        );
        if (!rows[0]) throw permanentFailure('AncNotFound', `ANC ${input.ancId} does not exist`);
        nextVersion = rows[0].next;
        usableKey = usableKeyFrom(input.tenantId, rows[0]);
      }

      const tenantKey = await obtainTenantKey(
        client,
        deps.kek,
        deps.config.auditMacKey,
        {
          tenantId: input.tenantId,
          now,
          audit: { ...audit, eventKey: `${input.operationId}/tenant-key` },
        },
        deps.tenantKeyCache,
        { row: usableKey },
        ownVault,
      );
      if (tenantKey.wrapped && deps.tenantKeyCache?.enabled) {
        freshKey = {
          ref: {
            vaultId: ownVault,
            tenantId: input.tenantId,
            tenantKeyVersion: tenantKey.version,
            ...tenantKey.wrapped,
          },
          key: Buffer.from(tenantKey.key),
        };
      }
      let sealed: Buffer;
      try {
        sealed = sealCredential({
          tenantKey: tenantKey.key,
          keyVersion: tenantKey.version,
          tenantId: input.tenantId,
          ancId: input.ancId,
          plaintext: opened.password,
        });
      } catch (err) {
        if (err instanceof PasswordPolicyError) throw permanentFailure(err.code, err.message);
        throw err;
      } finally {
        zero(tenantKey.key);
      }

      const spec = input.spec;
      if (input.mode === 'create' && !spec)
        throw permanentFailure('InvalidDisplayName', 'create needs the ANC settings');
      const prepared = await prepareAudit(client, deps.config.auditMacKey, {
        ...audit,
        eventKey: input.operationId,
        event: input.mode === 'create' ? 'anc.created' : 'anc.credential_updated',
        tenantId: input.tenantId,
        ancId: input.ancId,
        at: now,
        outcome: 'success',
        details: {
          credentialVersion: nextVersion,
          tenantKeyVersion: tenantKey.version,
          tenantKeyGenerated: tenantKey.generated,
        },
      });
      // Every write in one statement: the envelope marked used (a second use is a unique violation
      // on its key, told apart below), the ANC row, the credential version, the audit record.
      const params: unknown[] = [];
      const $ = (...values: unknown[]) =>
        values
          .map((v) => {
            params.push(v);
            return `$${params.length}`;
          })
          .join(', ');
      const writes = [
        `used AS (INSERT INTO used_envelopes (envelope_id, tenant_id, anc_id, operation_id)
                  VALUES (${$(opened.envelopeId, input.tenantId, input.ancId, input.operationId)}))`,
        spec
          ? `anc AS (INSERT INTO ancs (tenant_id, anc_id, display_name, ad_domain_name, organizational_unit, ad_username,
                                       credential_version, created_at, updated_at)
                     VALUES (${$(input.tenantId, input.ancId, spec.displayName, spec.adDomainName, spec.organizationalUnit ?? null, spec.adDomainUsername)},
                             1, ${$(now, now)}))`
          : `anc AS (UPDATE ancs SET credential_version = ${$(nextVersion)}, updated_at = ${$(now)}
                      WHERE tenant_id = ${$(input.tenantId)} AND anc_id = ${$(input.ancId)})`,
        `cred AS (INSERT INTO anc_credentials (tenant_id, anc_id, version, tenant_key_version, sealed, operation_id, created_at)
                  VALUES (${$(input.tenantId, input.ancId, nextVersion, tenantKey.version, sealed, input.operationId, now)}))`,
      ];
      const last =
        prepared.existingSeq === undefined
          ? `INSERT INTO audit_log ${AUDIT_COLUMNS} VALUES (${$(...prepared.values)})`
          : 'SELECT 1';
      try {
        await client.query(`WITH ${writes.join(',\n')}\n${last}`, params);
      } catch (err) {
        if ((err as { constraint?: string }).constraint === 'used_envelopes_pkey') {
          throw countRejection(
            permanentFailure('EnvelopeReused', 'this password envelope was already used: seal the password again'),
          );
        }
        throw err;
      }
      generatedKey = tenantKey.generated;
      return {
        credentialVersion: nextVersion,
        tenantKeyVersion: tenantKey.version,
        storedAt: now.toISOString(),
        vaultId: ownVault,
      };
    });
    // The new key version is committed: drop anything cached for the tenant's earlier versions.
    if (generatedKey) deps.tenantKeyCache?.invalidateTenant(input.tenantId);
    if (freshKey) deps.tenantKeyCache?.put(freshKey.ref, freshKey.key);
    addCounter(serviceMeter(), 'seals', 1, { operation: input.mode });
    operationLog(deps).info(input.mode === 'create' ? 'Credential stored' : 'Credential replaced', {
      tenantId: input.tenantId,
      ancId: input.ancId,
      credentialVersion: stored.credentialVersion,
      tenantKeyVersion: stored.tenantKeyVersion,
    });
    return stored;
  } catch (err) {
    if (err instanceof TenantOnOtherVault) {
      // Sealed to this vault but the tenant is on another: seal the password again, locally, for
      // that vault's current public KEK (the envelope was opened here already: no further HSM call
      // on this vault); the workflow sends it to that vault's HSM queue. Only ciphertext leaves.
      const target = vaults.get(err.vaultId);
      const targetKek = await target.kek.current();
      operationLog(deps).info("Credential redirected to the tenant's vault", {
        tenantId: input.tenantId,
        ancId: input.ancId,
        vaultId: target.id,
      });
      throw tenantOnOtherVault(target.id, resealEnvelope(opened, targetKek, target.id));
    }
    // A retry racing with its own earlier attempt: the first one won (and used the envelope), report
    // its result.
    const reused = err instanceof ApplicationFailure && err.type === 'EnvelopeReused';
    if ((err as { code?: string }).code === PG_UNIQUE_VIOLATION || reused) {
      const stored = await findStored(deps.pool, input.operationId);
      if (stored) return stored;
    }
    throw err;
  } finally {
    if (freshKey) zero(freshKey.key);
  }
}

export interface DeleteAncInput {
  tenantId: string;
  ancId: string;
  operationId: string;
  actor: string;
  workflowId: string;
  nowMs: number;
}

/** Removes the ANC and everything stored for it at once and for good. Deleting again is a no-op. */
export async function deleteAncData(deps: ActivityDeps, input: DeleteAncInput): Promise<{ deleted: boolean }> {
  const result = await inTransaction(deps.pool, async (client) => {
    const removed = await client.query('DELETE FROM ancs WHERE tenant_id = $1 AND anc_id = $2', [
      input.tenantId,
      input.ancId,
    ]);
    await client.query('DELETE FROM used_envelopes WHERE tenant_id = $1 AND anc_id = $2', [
      input.tenantId,
      input.ancId,
    ]);
    let deleted = (removed.rowCount ?? 0) > 0;
    if (!deleted) {
      // A retry after an attempt that committed: the audit record tells.
      const audited = await client.query('SELECT 1 FROM audit_log WHERE event_key = $1', [input.operationId]);
      deleted = (audited.rowCount ?? 0) > 0;
    } else {
      await appendAudit(client, deps.config.auditMacKey, {
        eventKey: input.operationId,
        event: 'anc.deleted',
        tenantId: input.tenantId,
        ancId: input.ancId,
        actor: input.actor,
        workflowId: input.workflowId,
        at: new Date(input.nowMs),
        outcome: 'success',
      });
    }
    return { deleted };
  });
  operationLog(deps).info('ANC data deleted', {
    tenantId: input.tenantId,
    ancId: input.ancId,
    deleted: result.deleted,
  });
  return result;
}
