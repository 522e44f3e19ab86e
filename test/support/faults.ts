import type { Client } from '@temporalio/client';
import type { Pool } from '../../activities/db/pool';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Runs `jobs` with `callers` concurrent callers, each taking the next job when it is done with one. */
export async function runCallers<T>(jobs: Array<() => Promise<T>>, callers: number): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(callers, jobs.length) }, async () => {
      for (let i = next++; i < jobs.length; i = next++) results[i] = await (jobs[i] as () => Promise<T>)();
    }),
  );
  return results;
}

export interface Attempted<T> {
  value: T;
  attempts: number;
  ms: number;
  errors: string[];
}

/**
 * A caller that retries the same request (same request id) on any error until it succeeds or
 * `deadlineMs` passes, the way a client of the service is told to. Every error seen is kept.
 */
export async function retrying<T>(fn: () => Promise<T>, deadlineMs = 180_000): Promise<Attempted<T>> {
  const started = Date.now();
  const errors: string[] = [];
  for (let attempt = 1; ; attempt++) {
    try {
      return { value: await fn(), attempts: attempt, ms: Date.now() - started, errors };
    } catch (err) {
      errors.push(`${(err as Error)?.name}: ${(err as Error)?.message}`.slice(0, 300));
      if (Date.now() - started > deadlineMs) {
        throw new Error(
          `gave up after ${attempt} attempts in ${Date.now() - started} ms: ${errors.slice(-3).join(' | ')}`,
        );
      }
      await sleep(Math.min(250 * attempt, 2000));
    }
  }
}

/**
 * Rows that belong to nothing, or that contradict each other. Every count is 0 in a consistent
 * database: credential versions are gapless from 1, the ANC names an existing current version, each
 * stored version came from exactly one used envelope and has exactly one audit record.
 */
export async function orphanCounts(pool: Pool): Promise<Record<string, number>> {
  const { rows } = await pool.query<Record<string, number>>(`
    SELECT
      (SELECT count(*) FROM ancs a WHERE NOT EXISTS
         (SELECT 1 FROM anc_credentials c WHERE c.tenant_id = a.tenant_id AND c.anc_id = a.anc_id
            AND c.version = a.credential_version))::int AS "ancWithoutCurrentCredential",
      (SELECT count(*) FROM (SELECT tenant_id, anc_id FROM anc_credentials GROUP BY 1, 2
         HAVING max(version) <> count(*) OR min(version) <> 1) g)::int AS "credentialVersionGaps",
      (SELECT count(*) FROM anc_credentials c WHERE
         (SELECT count(*) FROM used_envelopes u WHERE u.operation_id = c.operation_id) <> 1)::int
         AS "credentialWithoutOneEnvelope",
      (SELECT count(*) FROM anc_credentials c WHERE
         (SELECT count(*) FROM audit_log l WHERE l.event_key = c.operation_id) <> 1)::int
         AS "credentialWithoutOneAuditRecord",
      (SELECT count(*) FROM anc_credentials c WHERE NOT EXISTS
         (SELECT 1 FROM tenant_keys k WHERE k.tenant_id = c.tenant_id AND k.version = c.tenant_key_version))::int
         AS "credentialWithoutTenantKey",
      (SELECT count(*) FROM tenant_keys k WHERE NOT EXISTS
         (SELECT 1 FROM tenants t WHERE t.tenant_id = k.tenant_id))::int AS "tenantKeyWithoutTenant",
      (SELECT count(*) FROM (SELECT tenant_id FROM tenant_keys WHERE state = 'active' GROUP BY 1
         HAVING count(*) > 1) g)::int AS "tenantsWithTwoActiveKeys",
      (SELECT count(*) FROM health_checks h WHERE NOT EXISTS
         (SELECT 1 FROM ancs a WHERE a.tenant_id = h.tenant_id AND a.anc_id = h.anc_id))::int
         AS "healthCheckWithoutAnc"
  `);
  return rows[0] ?? {};
}

/**
 * Waits until every named workflow has settled: closed, or running with no workflow task and no
 * activity pending (a workflow retrying a task or an activity forever is stuck). Returns the ones
 * still busy after `timeoutMs`, with what they wait for.
 */
export async function unsettledWorkflows(client: Client, workflowIds: string[], timeoutMs = 60_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const busy: string[] = [];
    for (const id of workflowIds) {
      const d = await client.workflow.getHandle(id).describe();
      if (d.status.name !== 'RUNNING') {
        if (d.status.name !== 'COMPLETED') busy.push(`${id}: ${d.status.name}`);
        continue;
      }
      const activities = d.raw.pendingActivities ?? [];
      if (d.raw.pendingWorkflowTask || activities.length > 0) {
        const what = activities.map((a) => `${a.activityType?.name} attempt ${a.attempt}`).join(', ');
        busy.push(`${id}: ${d.raw.pendingWorkflowTask ? 'workflow task pending' : ''} ${what}`.trim());
      }
    }
    if (busy.length === 0 || Date.now() > deadline) return busy;
    await sleep(500);
  }
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}
