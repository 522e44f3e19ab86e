import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ancWorkflowId } from '../common/ids';
import { prometheusMetricsOptions } from '../worker/metrics';
import { dumpAllTables } from './support/db';
import { createHarness, startDevServer, type Harness } from './support/harness';
import { canaryForms, findCanary } from './support/canary';
import { historyAsJson } from './support/history';
import { freePort } from './support/worker-process';
import { scrape } from './support/prometheus';
import { ROOT } from './support/stack';

// Every log line the Temporal runtime, the worker and the workflows write in this process.
// And every metric it exports, from its Prometheus endpoint.
const runtimeLog: string[] = [];
const metricsPort = await freePort();
Runtime.install({
  logger: new DefaultLogger('TRACE', (entry) =>
    runtimeLog.push(`${entry.level} ${entry.message} ${JSON.stringify(entry.meta ?? {})}`),
  ),
  telemetryOptions: { metrics: prometheusMetricsOptions(`127.0.0.1:${metricsPort}`) },
});

describe('no plaintext password reaches Temporal history, the database, a log or a metric', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;

  beforeAll(async () => {
    env = await startDevServer();
    h = await createHarness({ env });
    await h.startWorker();
  });

  afterAll(async () => {
    await h?.close();
    await env?.teardown();
  });

  it('canary passwords are found in no sink, in any encoding', async () => {
    const canaries = [
      `Canary-${randomBytes(12).toString('hex')}`,
      `Cänary-ünïcode-${randomBytes(8).toString('hex')}-密码`,
    ];
    const tenantId = `canary-${randomBytes(4).toString('hex')}`;
    const actor = 'canary@contoso.test';
    const spec = {
      displayName: 'Canary ANC',
      adDomainName: 'corp.contoso.test',
      adDomainUsername: 'svcDomainJoin@corp.contoso.test',
    };
    await h.sdk.createAnc({ tenantId, ancId: 'anc-1', ...spec, password: canaries[0] as string, actor });
    await h.sdk.updateAncPassword(tenantId, 'anc-1', canaries[1] as string, { actor });
    await h.sdk.createAnc({ tenantId, ancId: 'anc-2', ...spec, password: canaries[1] as string, actor });
    await h.sdk.runHealthChecks(tenantId, 'anc-1', { actor });
    await h.sdk.deleteAnc(tenantId, 'anc-2', { actor });
    // A rejected request whose password was valid must not leak it either.
    await h.sdk
      .createAnc({ tenantId, ancId: 'anc-1', ...spec, password: canaries[0] as string, actor })
      .catch(() => undefined);

    // Sink 1: the full history of every workflow on the server, as the server stores it.
    let histories = '';
    let workflows = 0;
    for await (const wf of env.client.workflow.list()) {
      const history = await env.client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
      histories += Buffer.from(temporal.api.history.v1.History.encode(history).finish()).toString('latin1');
      histories += historyAsJson(history);
      workflows += 1;
    }
    expect(workflows).toBeGreaterThanOrEqual(3);
    // Sink 2: every row of every table.
    const tables = await dumpAllTables(h.db.pool);
    expect(tables).toContain('anc_credentials');
    // Sink 3: every log line written by the activities and the Temporal runtime.
    const logs = h.logs.text() + runtimeLog.join('\n');
    expect(runtimeLog.length).toBeGreaterThan(0);
    // Sink 4: the metrics endpoint.
    const metrics = await scrape(metricsPort);
    expect(metrics).toContain('anc_credential_seals_total');

    for (const canary of canaries) {
      const forms = canaryForms(canary);
      // The search itself works: each form is found where it was planted.
      for (const form of forms) expect(findCanary(`xx${form}xx`, [form])).toEqual([form]);
      expect(findCanary(histories, forms), 'history').toEqual([]);
      expect(findCanary(tables, forms), 'database').toEqual([]);
      expect(findCanary(logs, forms), 'logs').toEqual([]);
      expect(findCanary(metrics, forms), 'metrics').toEqual([]);
    }

    // The history does carry the sealed envelope (the check above is not vacuous).
    expect(histories).toContain('passwordEnvelope');

    if (process.env.RECORD_HISTORIES) {
      const history = await env.client.workflow.getHandle(ancWorkflowId(tenantId, 'anc-2')).fetchHistory();
      mkdirSync(`${ROOT}test/histories`, { recursive: true });
      writeFileSync(`${ROOT}test/histories/anc-create-delete.json`, historyAsJson(history));
    }
  });
});
