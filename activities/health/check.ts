import { performance } from 'node:perf_hooks';
import { ApplicationFailure } from '@temporalio/common';
import type { HealthCheckResult, HealthErrorType } from '../../common/types';
import { CredentialOpenError, openCredential } from '../crypto/seal';
import { zero } from '../crypto/tenant-key';
import { appendAudit } from '../db/audit';
import { inTransaction, type Pool } from '../db/pool';
import { ownVaultId, vaultsOf, type ActivityDeps } from '../deps';
import { tenantOnOtherVault } from '../tenant-vault';
import { unwrapTenantKey } from '../tenant-keys';
import { resolveDomain } from './dns';
import { probeDirectory, type LdapProbeSettings, type ProbeFinding } from './ldap';
import { addCounter } from '../../common/metrics';
import { operationLog } from '../log';
import { serviceMeter } from '../metrics';

export interface CheckAncHealthInput {
  tenantId: string;
  ancId: string;
  /** Unique per check: a retry with the same id returns the stored result and writes nothing. */
  checkId: string;
  /** Workflow time when the check starts (ms since epoch); the stored times count from it. */
  nowMs: number;
  actor: string;
  workflowId: string;
}

interface HealthCheckRow {
  status: 'passed' | 'failed' | 'warning';
  error_type: HealthErrorType | null;
  message: string | null;
  credential_version: number;
  started_at: Date;
  finished_at: Date;
  duration_ms: number;
}

interface AncCredentialRow {
  ad_domain_name: string;
  organizational_unit: string | null;
  ad_username: string;
  credential_version: number;
  sealed: Buffer | null;
  tenant_key_version: number | null;
  wrapped_key: Buffer | null;
  kek_version: string | null;
  vault_id: string | null;
}

const PG_FOREIGN_KEY_VIOLATION = '23503';
const PG_UNIQUE_VIOLATION = '23505';

const GONE: HealthCheckResult = {
  status: 'failed',
  errorType: 'CredentialUnavailable',
  message: 'the ANC no longer exists',
};

function toResult(row: HealthCheckRow): HealthCheckResult {
  return {
    status: row.status,
    ...(row.error_type ? { errorType: row.error_type } : {}),
    ...(row.message ? { message: row.message } : {}),
    startedAt: row.started_at.toISOString(),
    finishedAt: row.finished_at.toISOString(),
    durationMs: row.duration_ms,
    credentialVersion: row.credential_version,
  };
}

async function storedCheck(db: Pick<Pool, 'query'>, checkId: string): Promise<HealthCheckResult | undefined> {
  const { rows } = await db.query<HealthCheckRow>(
    `SELECT status, error_type, message, credential_version, started_at, finished_at, duration_ms
       FROM health_checks WHERE check_id = $1`,
    [checkId],
  );
  return rows[0] && toResult(rows[0]);
}

/** The most recent stored health check of an ANC, if any. */
export async function latestHealthCheck(
  pool: Pool,
  tenantId: string,
  ancId: string,
): Promise<HealthCheckResult | undefined> {
  const { rows } = await pool.query<HealthCheckRow>(
    `SELECT status, error_type, message, credential_version, started_at, finished_at, duration_ms
       FROM health_checks WHERE tenant_id = $1 AND anc_id = $2
      ORDER BY finished_at DESC, id DESC LIMIT 1`,
    [tenantId, ancId],
  );
  return rows[0] && toResult(rows[0]);
}

/**
 * Runs the ANC's health checks with its STORED credential: the AD domain resolves (DNS), a domain
 * controller accepts a bind with the stored user name and password, and the OU exists. The
 * password is opened from its sealed form only here and only for the bind; it is never logged,
 * stored, or put into a message. The result is stored (one row per checkId) together with an
 * audit record, in one transaction.
 */
export async function checkAncHealth(deps: ActivityDeps, input: CheckAncHealthInput): Promise<HealthCheckResult> {
  const done = await storedCheck(deps.pool, input.checkId);
  if (done) return done;

  const clock = performance.now();
  const { rows } = await deps.pool.query<AncCredentialRow>(
    `SELECT a.ad_domain_name, a.organizational_unit, a.ad_username, a.credential_version,
            c.sealed, c.tenant_key_version, k.wrapped_key, k.kek_version, t.vault_id
       FROM ancs a
       LEFT JOIN tenants t ON t.tenant_id = a.tenant_id
       LEFT JOIN anc_credentials c
              ON c.tenant_id = a.tenant_id AND c.anc_id = a.anc_id AND c.version = a.credential_version
       LEFT JOIN tenant_keys k
              ON k.tenant_id = c.tenant_id AND k.version = c.tenant_key_version
      WHERE a.tenant_id = $1 AND a.anc_id = $2`,
    [input.tenantId, input.ancId],
  );
  const anc = rows[0];
  if (!anc) return { ...GONE };
  // The tenant's keys are in one vault: a check sent to another (the tenant moved) names it.
  const tenantVault = anc.vault_id ?? vaultsOf(deps).first.id;
  if (tenantVault !== ownVaultId(deps)) throw tenantOnOtherVault(tenantVault);

  const finding = await runChecks(deps, input, anc);
  const durationMs = Math.max(0, Math.round(performance.now() - clock));
  const startedAt = new Date(input.nowMs);
  const finishedAt = new Date(input.nowMs + durationMs);

  operationLog(deps).info('ANC health check finished', {
    tenantId: input.tenantId,
    ancId: input.ancId,
    checkId: input.checkId,
    status: finding.status,
    errorType: finding.errorType,
    credentialVersion: anc.credential_version,
    durationMs,
  });

  try {
    return await inTransaction(deps.pool, async (client) => {
      const inserted = await client.query<HealthCheckRow>(
        `INSERT INTO health_checks (tenant_id, anc_id, check_id, status, error_type, message, credential_version,
                                    started_at, finished_at, duration_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (check_id) DO NOTHING
         RETURNING status, error_type, message, credential_version, started_at, finished_at, duration_ms`,
        [
          input.tenantId,
          input.ancId,
          input.checkId,
          finding.status,
          finding.errorType ?? null,
          finding.message ?? null,
          anc.credential_version,
          startedAt,
          finishedAt,
          durationMs,
        ],
      );
      const row = inserted.rows[0];
      if (!row) {
        // A concurrent attempt with the same checkId stored first: its result stands.
        const stored = await storedCheck(client, input.checkId);
        if (stored) return stored;
        throw new Error(`health check ${input.checkId} conflicted but is not stored`);
      }
      await appendAudit(client, deps.config.auditMacKey, {
        eventKey: input.checkId,
        event: 'anc.health_checked',
        tenantId: input.tenantId,
        ancId: input.ancId,
        actor: input.actor,
        workflowId: input.workflowId,
        at: finishedAt,
        outcome: finding.status === 'failed' ? 'failure' : 'success',
        details: {
          status: finding.status,
          errorType: finding.errorType ?? null,
          credentialVersion: anc.credential_version,
        },
      });
      addCounter(serviceMeter(), 'healthChecks', 1, {
        status: finding.status,
        error_type: finding.errorType ?? 'none',
      });
      return toResult(row);
    });
  } catch (err) {
    const code = (err as { code?: string }).code;
    // The ANC was deleted while the check ran (its rows cascade away): nothing to record.
    if (code === PG_FOREIGN_KEY_VIOLATION) return { ...GONE };
    if (code === PG_UNIQUE_VIOLATION) {
      const stored = await storedCheck(deps.pool, input.checkId);
      if (stored) return stored;
    }
    throw err;
  }
}

async function runChecks(deps: ActivityDeps, input: CheckAncHealthInput, anc: AncCredentialRow): Promise<ProbeFinding> {
  if (!anc.sealed || anc.tenant_key_version === null || !anc.wrapped_key || !anc.kek_version) {
    return {
      status: 'failed',
      errorType: 'CredentialUnavailable',
      message: 'the current credential version or its tenant key is missing',
    };
  }

  // The stored credential, opened for this check only.
  let password: string;
  let tenantKey: Buffer | undefined;
  try {
    tenantKey = await unwrapTenantKey(
      deps.kek,
      {
        tenant_id: input.tenantId,
        version: anc.tenant_key_version,
        wrapped_key: anc.wrapped_key,
        kek_version: anc.kek_version,
      },
      deps.tenantKeyCache,
      ownVaultId(deps),
    );
    password = openCredential({
      tenantKey,
      keyVersion: anc.tenant_key_version,
      tenantId: input.tenantId,
      ancId: input.ancId,
      sealed: anc.sealed,
    });
    addCounter(serviceMeter(), 'opens', 1, { purpose: 'health_check' });
  } catch (err) {
    if (
      err instanceof CredentialOpenError ||
      (err instanceof ApplicationFailure && err.type === 'CredentialUnavailable')
    ) {
      return {
        status: 'failed',
        errorType: 'CredentialUnavailable',
        message: 'the stored credential could not be opened',
      };
    }
    throw err; // e.g. Key Vault unreachable: retryable, Temporal tries again
  } finally {
    zero(tenantKey);
  }

  const ldap: LdapProbeSettings = deps.config.ldap;

  // (a) DNS can resolve the AD domain.
  const dns = await resolveDomain(anc.ad_domain_name, {
    overrides: deps.config.ldap.dnsOverrides,
    timeoutMs: ldap.timeoutMs,
  });
  if (!dns.ok) {
    const why = dns.reason === 'timeout' ? `no answer within ${ldap.timeoutMs} ms` : (dns.code ?? 'not found');
    return {
      status: 'failed',
      errorType: 'DomainNotResolvable',
      message: `the AD domain ${anc.ad_domain_name} does not resolve (${why})`,
    };
  }

  // (b) + (c) a domain controller accepts the stored credential; the OU exists.
  return probeDirectory(
    ldap,
    {
      domain: anc.ad_domain_name,
      address: dns.address,
      family: dns.family,
      upn: anc.ad_username,
      password,
      organizationalUnit: anc.organizational_unit,
    },
    input.nowMs,
  );
}
