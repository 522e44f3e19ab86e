import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AncClient } from '../client/sdk';
import { checkHealth } from '../worker/health-server';
import { createTestDatabase, type TestDatabase } from './support/db';
import { startDevServer } from './support/harness';
import { ROOT, stackKekTrust } from './support/stack';
import { freePort, startWorkerProcess, workerEnv, type WorkerProcess } from './support/worker-process';

/**
 * The compiled worker (`node dist/worker/main.js`, built by the test run's global setup) in a child
 * process against a dev server, PostgreSQL, the Key Vault emulator and the test directory.
 */
describe('the worker process (dist/worker/main.js)', () => {
  let env: TestWorkflowEnvironment;
  let db: TestDatabase;
  let worker: WorkerProcess;
  let metricsPort: number;
  let healthPort: number;
  const taskQueue = `tq-${randomBytes(6).toString('hex')}`;

  beforeAll(async () => {
    env = await startDevServer();
    db = await createTestDatabase();
    metricsPort = await freePort();
    healthPort = await freePort();
    worker = startWorkerProcess(
      join(ROOT, 'dist/worker/main.js'),
      {
        ...workerEnv({ databaseUrl: db.url, temporalAddress: env.address, taskQueue }),
        METRICS_PORT: String(metricsPort),
        HEALTH_PORT: String(healthPort),
        SHUTDOWN_GRACE_SECONDS: '5',
      },
      ROOT,
    );
    await worker.waitForMessage('Worker started');
  });

  afterAll(async () => {
    await worker?.stop();
    await db?.drop();
    await env?.teardown();
  });

  it('completes a create, reports healthy, and serves the SDK metrics on METRICS_PORT', async () => {
    const sdk = new AncClient({ client: env.client, taskQueue, kekTrust: stackKekTrust() });
    const view = await sdk.createAnc({
      tenantId: 'contoso',
      ancId: 'hq',
      displayName: 'Contoso HQ',
      adDomainName: 'corp.contoso.test',
      adDomainUsername: 'svcDomainJoin@corp.contoso.test',
      password: 'Worker-process-Pa55!',
      actor: 'tester',
    });
    expect(view).toMatchObject({ state: 'active', credentialVersion: 1 });

    const health = await fetch(`http://127.0.0.1:${healthPort}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({
      ok: true,
      checks: { temporal: { ok: true }, database: { ok: true }, worker: { ok: true } },
    });
    expect((await fetch(`http://127.0.0.1:${healthPort}/other`)).status).toBe(404);

    const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(metrics.status).toBe(200);
    const text = await metrics.text();
    // Worker task metrics after the create's workflow and activity tasks.
    expect(text).toMatch(/^temporal_workflow_task_execution_latency\S* /m);
    expect(text).toMatch(/^temporal_activity_execution_latency\S* /m);
    expect(text).toContain(`task_queue="${taskQueue}"`);
    // The service's own metrics share the endpoint.
    expect(text).toMatch(/^anc_credential_seals_total\{[^}]*operation="create"[^}]*\} 1$/m);
  });

  it('stops on SIGTERM within the grace time, and every stdout line is one JSON object', async () => {
    const started = Date.now();
    const exit = await worker.stop();
    expect(exit).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    const lines = worker.stdout().trimEnd().split('\n');
    expect(lines.length).toBeGreaterThan(3);
    for (const line of lines) {
      const entry = JSON.parse(line) as { level?: unknown; msg?: unknown };
      expect(typeof entry.level, line).toBe('number');
      expect(typeof entry.msg, line).toBe('string');
    }
    const messages = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
    expect(messages).toContain('Worker started');
    expect(messages).toContain('Worker stopped');
    // The SDK's own lines come through the same logger, with its fields.
    expect(lines.some((l) => /"sdkComponent":"worker".*"msg":"Worker state changed"/.test(l))).toBe(true);
    expect(worker.stderr()).toBe('');
  });
});

describe('health report', () => {
  it('names the dependency that fails, and one that hangs', async () => {
    const report = await checkHealth(
      {
        temporal: async () => undefined,
        database: async () => {
          throw new Error('connect ECONNREFUSED 127.0.0.1:1');
        },
        slow: () => new Promise(() => undefined),
      },
      200,
    );
    expect(report).toEqual({
      ok: false,
      checks: {
        temporal: { ok: true },
        database: { ok: false, error: 'connect ECONNREFUSED 127.0.0.1:1' },
        slow: { ok: false, error: 'no answer within 200 ms' },
      },
    });
  });
});
