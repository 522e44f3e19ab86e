import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalDevKekProvider } from '../../activities/kek/local-dev';
import { ancWorkflowId } from '../../common/ids';
import { openStoredCredential } from '../support/credentials';
import { orphanCounts, percentile, retrying, runCallers, sleep, unsettledWorkflows } from '../support/faults';
import { createHarness, startDevServer, type Harness } from '../support/harness';
import { stackEnv } from '../support/stack';
import {
  faultWorkerScript,
  startWorkerProcess,
  workflowBundleFile,
  type WorkerProcess,
} from '../support/fault-worker-process';

/**
 * kill -9 of the only worker at random moments while several callers run creates, password
 * updates, on-demand health checks and deletes, each retrying its request with the same request id
 * until it is accepted. Afterwards every accepted operation is applied exactly once, no row belongs
 * to nothing, and no workflow is left retrying.
 */
const TENANTS = 5;
const ANCS_PER_TENANT = 6;
const CALLERS = 6;
const MIN_KILLS = 10;
/** Kills stop here, so the last operations are not held up without end. */
const MAX_KILLS = 12;
const spec = {
  displayName: 'Contoso HQ',
  adDomainName: 'corp.contoso.test',
  organizationalUnit: 'OU=CloudPCs,DC=corp,DC=contoso,DC=test',
  adDomainUsername: 'svcDomainJoin@corp.contoso.test',
};

type Step = 'create' | 'update' | 'health' | 'delete';
/** Per ANC, in order. Every third ANC is deleted at the end; the others get a second health check. */
const plan = (i: number): Step[] =>
  i % 3 === 0
    ? ['create', 'update', 'health', 'update', 'update', 'delete']
    : ['create', 'update', 'health', 'update', 'update', 'health'];

describe('worker killed with kill -9 during mixed operations (dev server, PostgreSQL, local KEK)', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  let worker: WorkerProcess | undefined;
  const kekDir = mkdtempSync(join(tmpdir(), 'anc-kek-'));
  const run = Date.now().toString(36);

  beforeAll(async () => {
    env = await startDevServer();
    h = await createHarness({
      env,
      kek: new LocalDevKekProvider(kekDir, 2048),
      healthCheckIntervalMinutes: 7 * 24 * 60,
    });
  });
  afterAll(async () => {
    await worker?.stop();
    await h?.close();
    await env?.teardown();
  });

  it(`≥ ${MIN_KILLS} kills during ${TENANTS * ANCS_PER_TENANT * 6} operations: each applied exactly once, nothing orphaned or stuck`, async () => {
    const cfg = {
      address: env.address,
      namespace: env.namespace ?? 'default',
      taskQueue: h.taskQueue,
      databaseUrl: h.db.url,
      kekDir,
      bundlePath: await workflowBundleFile(),
      ldapUrl: stackEnv().LDAP_URL ?? 'ldap://127.0.0.1:1',
    };
    const script = await faultWorkerScript();
    worker = await startWorkerProcess(script, cfg);

    const ancs = Array.from({ length: TENANTS * ANCS_PER_TENANT }, (_, i) => ({
      i,
      tenantId: `kill-${run}-t${i % TENANTS}`,
      ancId: `anc-${String(i).padStart(2, '0')}`,
      caller: `caller-${i % CALLERS}@contoso.test`,
    }));
    const versions = new Map<string, number[]>();
    const latencies: number[] = [];
    let attempts = 0;
    let ops = 0;
    const opErrors: string[] = [];

    // Each caller owns some ANCs and steps through them round-robin, one operation at a time.
    let workloadDone = false;
    let kills = 0;
    let inFlight = 0;
    const inFlightAtKill: number[] = [];
    // The run spans the kills: step s of every caller starts only after 2s kills, so at least
    // MIN_KILLS land while operations are still to do; the killer goes on until the last one ends.
    const killsBefore = (step: number) => Math.min(MIN_KILLS, 2 * step);
    const callers = Array.from({ length: CALLERS }, (_, c) => async () => {
      const mine = ancs.filter((a) => a.i % CALLERS === c);
      for (let step = 0; step < 6; step++) {
        while (kills < killsBefore(step)) await sleep(100);
        for (const a of mine) {
          const kind = plan(a.i)[step] as Step;
          const requestId = `${a.tenantId}/${a.ancId}/${step}`;
          const updatesBefore = plan(a.i)
            .slice(0, step)
            .filter((s) => s === 'update').length;
          const password = `${a.ancId}#v${updatesBefore + 2}`;
          inFlight++;
          const r = await retrying(async () => {
            switch (kind) {
              case 'create':
                return (
                  await h.sdk.createAnc({
                    tenantId: a.tenantId,
                    ancId: a.ancId,
                    ...spec,
                    password: `${a.ancId}#v1`,
                    actor: a.caller,
                    requestId,
                  })
                ).credentialVersion;
              case 'update':
                return (await h.sdk.updateAncPassword(a.tenantId, a.ancId, password, { actor: a.caller, requestId }))
                  .credentialVersion;
              case 'health':
                return (await h.sdk.runHealthChecks(a.tenantId, a.ancId, { actor: a.caller, requestId })).status;
              case 'delete':
                return (await h.sdk.deleteAnc(a.tenantId, a.ancId, { actor: a.caller, requestId })).deleted;
            }
          });
          inFlight--;
          ops++;
          attempts += r.attempts;
          latencies.push(r.ms);
          opErrors.push(...r.errors);
          if (kind === 'create' || kind === 'update') {
            const key = `${a.tenantId}/${a.ancId}`;
            versions.set(key, [...(versions.get(key) ?? []), r.value as number]);
          }
        }
      }
    });

    const restartMs: number[] = [];
    const killer = (async () => {
      while (!workloadDone && kills < MAX_KILLS) {
        // A random moment soon after the previous restart: the operations of a step take only a few
        // seconds, so a longer pause would let them all finish between kills. (A kill loses the
        // activities in flight; Temporal retries them once their start-to-close timeout passes.)
        await sleep(500 + Math.random() * 2000);
        // Aim at work in flight: wait a little for an operation to be running (callers waiting at a
        // step boundary for the next kill have none, and are released by the kill itself).
        for (let w = 0; w < 50 && inFlight === 0 && !workloadDone; w++) await sleep(100);
        if (workloadDone) break;
        inFlightAtKill.push(inFlight);
        await worker?.kill9();
        kills++;
        process.stderr.write(
          `[worker kill -9] kill ${kills}: ${ops} operations done, ${inFlightAtKill.at(-1)} in flight\n`,
        );
        const t0 = Date.now();
        worker = await startWorkerProcess(script, cfg);
        restartMs.push(Date.now() - t0);
      }
    })();
    const started = Date.now();
    await runCallers(callers, CALLERS).finally(() => (workloadDone = true));
    const wallMs = Date.now() - started;
    await killer;

    expect(ops).toBe(TENANTS * ANCS_PER_TENANT * 6);
    expect(kills).toBeGreaterThanOrEqual(MIN_KILLS);
    expect(inFlightAtKill.filter((n) => n > 0).length).toBeGreaterThanOrEqual(MIN_KILLS);

    // No workflow left retrying a task or an activity.
    const ids = ancs.map((a) => ancWorkflowId(a.tenantId, a.ancId));
    expect(await unsettledWorkflows(env.client, ids)).toEqual([]);

    // Exactly once: versions 1..4 in order, each opening to its own password; one audit record per operation.
    const { rows: audit } = await h.db.pool.query<{
      tenant_id: string;
      anc_id: string;
      event: string;
      actor: string;
      n: number;
    }>(
      `SELECT tenant_id, anc_id, event, actor, count(*)::int AS n FROM audit_log WHERE tenant_id LIKE $1
        GROUP BY 1, 2, 3, 4`,
      [`kill-${run}-%`],
    );
    const count = (a: (typeof ancs)[number], event: string, actor?: string) =>
      audit
        .filter(
          (r) =>
            r.tenant_id === a.tenantId && r.anc_id === a.ancId && r.event === event && (!actor || r.actor === actor),
        )
        .reduce((n, r) => n + r.n, 0);
    for (const a of ancs) {
      const steps = plan(a.i);
      expect(versions.get(`${a.tenantId}/${a.ancId}`)).toEqual([1, 2, 3, 4]);
      expect(count(a, 'anc.created')).toBe(1);
      expect(count(a, 'anc.credential_updated')).toBe(3);
      expect(count(a, 'anc.deleted')).toBe(steps.includes('delete') ? 1 : 0);
      expect(count(a, 'anc.health_checked', a.caller)).toBe(steps.filter((s) => s === 'health').length);
      const { rows } = await h.db.pool.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM used_envelopes WHERE tenant_id = $1 AND anc_id = $2',
        [a.tenantId, a.ancId],
      );
      // Deleting an ANC removes its envelope records with it.
      expect(rows[0]?.n).toBe(steps.includes('delete') ? 0 : 4);
      const { rows: anc } = await h.db.pool.query<{ credential_version: number }>(
        'SELECT credential_version FROM ancs WHERE tenant_id = $1 AND anc_id = $2',
        [a.tenantId, a.ancId],
      );
      if (steps.includes('delete')) {
        expect(anc).toEqual([]);
      } else {
        expect(anc).toEqual([{ credential_version: 4 }]);
        for (let v = 1; v <= 4; v++)
          expect(await openStoredCredential(h, a.tenantId, a.ancId, v)).toBe(`${a.ancId}#v${v}`);
      }
    }
    expect(await orphanCounts(h.db.pool)).toEqual(
      Object.fromEntries(Object.keys(await orphanCounts(h.db.pool)).map((k) => [k, 0])),
    );
    console.info(
      `[worker kill -9] ${ops} operations (${CALLERS} callers) in ${wallMs} ms with ${kills} kills; ` +
        `operations in flight at each kill: ${inFlightAtKill.join(' ')}; ${attempts - ops} caller retries; latency p50 ${percentile(latencies, 50)} ms, p99 ${percentile(latencies, 99)} ms, ` +
        `max ${Math.max(...latencies)} ms; worker restart p50 ${percentile(restartMs, 50)} ms; ` +
        `errors seen by callers: ${[...new Set(opErrors.map((e) => e.split(':')[0]))].join(', ') || 'none'}`,
    );
  });
});
