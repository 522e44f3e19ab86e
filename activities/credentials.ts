import { permanentFailure } from '../common/errors';
import type { AncSpec, CredentialStored } from '../common/types';
import { PasswordPolicyError, sealCredential } from './crypto/seal';
import { zero } from './crypto/tenant-key';
import { appendAudit } from './db/audit';
import { inTransaction, type PoolClient } from './db/pool';
import type { ActivityDeps } from './deps';
import { openEnvelope, readEnvelopeHeader } from './envelope';
import { obtainTenantKey, unwrapActiveTenantKeyEarly } from './tenant-keys';

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
  const { rows } = await client.query<{ version: number; tenant_key_version: number; created_at: Date }>(
    'SELECT version, tenant_key_version, created_at FROM anc_credentials WHERE operation_id = $1',
    [operationId],
  );
  const row = rows[0];
  return (
    row && {
      credentialVersion: row.version,
      tenantKeyVersion: row.tenant_key_version,
      storedAt: row.created_at.toISOString(),
    }
  );
}

async function lockActiveTenant(client: PoolClient, tenantId: string, createIfMissing: boolean): Promise<void> {
  if (createIfMissing) {
    await client.query('INSERT INTO tenants (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING', [tenantId]);
  }
  const { rows } = await client.query<{ state: string }>('SELECT state FROM tenants WHERE tenant_id = $1 FOR UPDATE', [
    tenantId,
  ]);
  const state = rows[0]?.state;
  if (state === undefined) throw permanentFailure('AncNotFound', `ANC does not exist`);
  if (state === 'deactivated') throw permanentFailure('TenantDeactivated', `tenant ${tenantId} is deactivated`);
  if (state === 'purged') throw permanentFailure('TenantPurged', `tenant ${tenantId} was purged`);
}

/**
 * The seed's encryption steps for one ANC operation, in one activity and one transaction:
 * open the client envelope, find or generate the tenant key, seal the password under it, store
 * the sealed credential version and the audit records. The password exists in the clear only
 * here. Retrying with the same operation id returns the stored result and writes nothing.
 */
export async function provideCredential(deps: ActivityDeps, input: ProvideCredentialInput): Promise<CredentialStored> {
  const done = await findStored(deps.pool, input.operationId);
  if (done) return done;

  const now = new Date(input.nowMs);
  const kekVersion = await deps.kek.current();
  // The two Key Vault unwraps (the envelope's content key, the tenant key) overlap, and the tenant
  // key's stays out of the transaction; under the tenant lock it is used only if still the active key.
  // A malformed envelope, or one for another ANC or operation, costs no tenant key unwrap.
  const header = readEnvelopeHeader(input.passwordEnvelope);
  const earlyKey =
    header.tid === input.tenantId && header.aid === input.ancId && header.op === input.mode
      ? unwrapActiveTenantKeyEarly(deps.pool, deps.kek, input.tenantId, now)
      : Promise.resolve(undefined);
  let opened: Awaited<ReturnType<typeof openEnvelope>>;
  try {
    opened = await openEnvelope({
      envelope: input.passwordEnvelope,
      kek: deps.kek.provider,
      kekId: kekVersion.kekId,
      tenantId: input.tenantId,
      ancId: input.ancId,
      op: input.mode,
      receivedAtMs: input.receivedAtMs,
      maxAgeSeconds: deps.config.envelopeMaxAgeSeconds,
    });
  } catch (err) {
    zero((await earlyKey)?.key);
    throw err;
  }
  const early = await earlyKey;
  const audit = { actor: input.actor, workflowId: input.workflowId };

  let earlyConsumed = false;
  try {
    return await inTransaction(deps.pool, async (client) => {
      await lockActiveTenant(client, input.tenantId, input.mode === 'create');
      let nextVersion = 1;
      if (input.mode === 'create') {
        const { rows } = await client.query<{ n: number; exists: boolean }>(
          'SELECT count(*)::int AS n, COALESCE(bool_or(anc_id = $2), false) AS exists FROM ancs WHERE tenant_id = $1',
          [input.tenantId, input.ancId],
        );
        if (rows[0]?.exists) throw permanentFailure('AncAlreadyExists', `ANC ${input.ancId} already exists`);
        if ((rows[0]?.n ?? 0) >= deps.config.maxAncsPerTenant) {
          throw permanentFailure(
            'TenantLimitReached',
            `tenant ${input.tenantId} already has ${deps.config.maxAncsPerTenant} ANCs, the most allowed`,
          );
        }
      } else {
        const { rows } = await client.query<{ next: number }>(
          `SELECT (SELECT COALESCE(MAX(version), 0) + 1 FROM anc_credentials c
                    WHERE c.tenant_id = a.tenant_id AND c.anc_id = a.anc_id) AS next
             FROM ancs a WHERE a.tenant_id = $1 AND a.anc_id = $2 FOR UPDATE`,
          [input.tenantId, input.ancId],
        );
        if (!rows[0]) throw permanentFailure('AncNotFound', `ANC ${input.ancId} does not exist`);
        nextVersion = rows[0].next;
      }

      const used = await client.query(
        `INSERT INTO used_envelopes (envelope_id, tenant_id, anc_id, operation_id) VALUES ($1, $2, $3, $4)
         ON CONFLICT (envelope_id) DO NOTHING`,
        [opened.envelopeId, input.tenantId, input.ancId, input.operationId],
      );
      if (used.rowCount === 0)
        throw permanentFailure('EnvelopeReused', 'this password envelope was already used: seal the password again');

      earlyConsumed = true;
      const tenantKey = await obtainTenantKey(client, deps.kek, deps.config.auditMacKey, {
        tenantId: input.tenantId,
        now,
        audit: { ...audit, eventKey: `${input.operationId}/tenant-key` },
        early,
      });
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

      if (input.mode === 'create') {
        const spec = input.spec;
        if (!spec) throw permanentFailure('InvalidDisplayName', 'create needs the ANC settings');
        await client.query(
          `INSERT INTO ancs (tenant_id, anc_id, display_name, ad_domain_name, organizational_unit, ad_username,
                             credential_version, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7)`,
          [
            input.tenantId,
            input.ancId,
            spec.displayName,
            spec.adDomainName,
            spec.organizationalUnit ?? null,
            spec.adDomainUsername,
            now,
          ],
        );
      } else {
        await client.query(
          'UPDATE ancs SET credential_version = $3, updated_at = $4 WHERE tenant_id = $1 AND anc_id = $2',
          [input.tenantId, input.ancId, nextVersion, now],
        );
      }
      await client.query(
        `INSERT INTO anc_credentials (tenant_id, anc_id, version, tenant_key_version, sealed, operation_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [input.tenantId, input.ancId, nextVersion, tenantKey.version, sealed, input.operationId, now],
      );
      await appendAudit(client, deps.config.auditMacKey, {
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
      return { credentialVersion: nextVersion, tenantKeyVersion: tenantKey.version, storedAt: now.toISOString() };
    });
  } catch (err) {
    if (!earlyConsumed) zero(early?.key);
    // A retry racing with its own earlier attempt: the first one won, report its result.
    if ((err as { code?: string }).code === PG_UNIQUE_VIOLATION) {
      const stored = await findStored(deps.pool, input.operationId);
      if (stored) return stored;
    }
    throw err;
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
  return inTransaction(deps.pool, async (client) => {
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
}
