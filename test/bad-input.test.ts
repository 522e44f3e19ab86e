/**
 * Bad input sent straight to the workflows with a raw Temporal client, bypassing the client SDK:
 * every refusal is a typed, non-retryable ApplicationFailure with a clear message; junk signals are
 * dropped and logged; the database is byte-for-byte the same afterwards; and no workflow task ever
 * failed (every history is searched). Dev server, PostgreSQL, local KEK.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import {
  WithStartWorkflowOperation,
  WorkflowIdConflictPolicy,
  type Client,
  type WorkflowHandle,
} from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeCurrentKek } from '../activities/keyring';
import { sealPasswordEnvelope } from '../client/envelope';
import { ancWorkflowId, tenantWorkflowId } from '../common/ids';
import { dumpAllTables } from './support/db';
import { createHarness, startDevServer, type Harness } from './support/harness';
import { countEvents, historyJson, shrinkLongStrings } from './support/histories';
import { captureRuntimeLogs } from './support/quiet-runtime';
import { ROOT } from './support/stack';

// Workflow and worker warnings in this process (dropped signals are logged at WARN).
const warnings: string[] = [];
captureRuntimeLogs((entry) => {
  if (entry.level === 'WARN' || entry.level === 'ERROR') {
    warnings.push(`${entry.message} ${JSON.stringify(entry.meta ?? {})}`);
  }
});

const MB = 'm'.repeat(1024 * 1024);
const actor = 'admin@contoso.test';
const tenantId = 'badinput';
const ancId = 'hq';
const spec = {
  displayName: 'Contoso HQ',
  adDomainName: 'corp.contoso.test',
  organizationalUnit: 'OU=CloudPCs,DC=corp,DC=contoso,DC=test',
  adDomainUsername: 'svcDomainJoin@corp.contoso.test',
};

let env: TestWorkflowEnvironment;
let h: Harness;
let client: Client;
let anc: WorkflowHandle;
let usedUpdateEnvelope: string;
let dumpBefore: string;
/** error type → how many inputs were refused with it. */
const refusals = new Map<string, number>();
let inputsSent = 0;

/** The ApplicationFailure at the end of a cause chain (update/workflow failure → activity failure → …). */
function applicationFailure(err: unknown): ApplicationFailure | undefined {
  for (let e = err; e; e = (e as { cause?: unknown }).cause) if (e instanceof ApplicationFailure) return e;
  return undefined;
}

/** Sends one bad input and checks the refusal: typed, non-retryable, a clear message. */
async function expectRefused(what: string, type: string, send: () => Promise<unknown>): Promise<void> {
  inputsSent += 1;
  const err = await send().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `${what}: expected a refusal`).toBeDefined();
  const failure = applicationFailure(err);
  expect(failure, `${what}: ${String(err)}`).toBeInstanceOf(ApplicationFailure);
  expect(failure?.type, what).toBe(type);
  expect(failure?.nonRetryable, what).toBe(true);
  expect(failure?.message.length, what).toBeGreaterThan(10);
  expect(failure?.message.length, what).toBeLessThan(300); // never echoes a 1 MB input
  refusals.set(type, (refusals.get(type) ?? 0) + 1);
}

const envelope = (o: { tenant?: string; anc?: string; op?: 'create' | 'update'; password?: string; now?: Date }) =>
  describeCurrentKek(h.deps).then((kek) =>
    sealPasswordEnvelope({
      password: o.password ?? 'Valid#Passw0rd',
      kek,
      tenantId: o.tenant ?? tenantId,
      ancId: o.anc ?? ancId,
      op: o.op ?? 'update',
      now: o.now,
    }),
  );

/** Flips one character of the JWE part `index` (0 header … 4 tag). */
function tamper(jwe: string, index: number): string {
  const parts = jwe.split('.');
  const p = parts[index] as string;
  const mid = Math.floor(p.length / 2);
  parts[index] = p.slice(0, mid) + (p[mid] === 'A' ? 'B' : 'A') + p.slice(mid + 1);
  return parts.join('.');
}

let newAncs = 0;
/** createAnc by update-with-start on a new ANC workflow, as the SDK does, with any request. */
function createWith(request: unknown, ids: { tenant?: string; anc?: string; workflowId?: string } = {}) {
  const t = ids.tenant ?? tenantId;
  const a = ids.anc ?? `new-${newAncs++}`;
  return client.workflow.executeUpdateWithStart('createAnc', {
    args: [request],
    startWorkflowOperation: new WithStartWorkflowOperation('ancWorkflow', {
      workflowId: ids.workflowId ?? ancWorkflowId(t, a),
      taskQueue: h.taskQueue,
      args: [{ tenantId: t, ancId: a }],
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
    }),
  });
}

beforeAll(async () => {
  env = await startDevServer();
  h = await createHarness({ env, healthCheckIntervalMinutes: 7 * 24 * 60 });
  client = env.client;
  await h.startWorker();
  await h.sdk.createAnc({ tenantId, ancId, ...spec, password: 'First#Passw0rd', actor });
  usedUpdateEnvelope = await envelope({ op: 'update', password: 'Second#Passw0rd' });
  anc = client.workflow.getHandle(ancWorkflowId(tenantId, ancId));
  await anc.executeUpdate('updateAdDomainPassword', { args: [{ actor, passwordEnvelope: usedUpdateEnvelope }] });
  // The tenant workflow, started the way an operator's raw client could (with a junk first signal).
  await client.workflow.signalWithStart('tenantWorkflow', {
    workflowId: tenantWorkflowId(tenantId),
    taskQueue: h.taskQueue,
    args: [{ tenantId }],
    signal: 'deactivateTenant',
    signalArgs: [null],
  });
  // Let the health check that follows each change finish before the snapshot.
  for (let i = 0; i < 200; i++) {
    const view = await anc.query<{ healthCheck: { status: string } }>('getAnc');
    if (!['pending', 'running'].includes(view.healthCheck.status)) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  dumpBefore = await dumpAllTables(h.db.pool);
});

afterAll(async () => {
  await h?.close();
  await env?.teardown();
});

describe('bad input straight to the workflows (raw Temporal client)', () => {
  it('createAnc: requests of the wrong shape are refused by the validator', async () => {
    const good = { ...spec, actor, passwordEnvelope: await envelope({ anc: 'never', op: 'create' }) };
    const cases: Array<[string, string, unknown]> = [
      ['null request', 'InvalidRequest', null],
      ['string request', 'InvalidRequest', 'createAnc'],
      ['array request', 'InvalidRequest', [good]],
      ['number request', 'InvalidRequest', 42],
      ['every field missing', 'InvalidActor', {}],
      ['actor missing', 'InvalidActor', { ...good, actor: undefined }],
      ['actor null', 'InvalidActor', { ...good, actor: null }],
      ['actor a number', 'InvalidActor', { ...good, actor: 7 }],
      ['actor 1 MB', 'InvalidActor', { ...good, actor: MB }],
      ['actor with NUL', 'InvalidActor', { ...good, actor: 'adm\u0000in' }],
      ['actor with a newline', 'InvalidActor', { ...good, actor: 'admin\nforged log line' }],
      ['displayName missing', 'InvalidDisplayName', { ...good, displayName: undefined }],
      ['displayName null', 'InvalidDisplayName', { ...good, displayName: null }],
      ['displayName an object', 'InvalidDisplayName', { ...good, displayName: { a: 1 } }],
      ['displayName 1 MB', 'InvalidDisplayName', { ...good, displayName: MB }],
      ['displayName with NUL', 'InvalidDisplayName', { ...good, displayName: 'HQ\u0000' }],
      ['displayName with BEL', 'InvalidDisplayName', { ...good, displayName: 'HQ\u0007' }],
      ['adDomainName missing', 'InvalidDomainName', { ...good, adDomainName: undefined }],
      ['adDomainName a number', 'InvalidDomainName', { ...good, adDomainName: 42 }],
      ['adDomainName 1 MB', 'InvalidDomainName', { ...good, adDomainName: MB }],
      ['adDomainName with NUL', 'InvalidDomainName', { ...good, adDomainName: 'corp\u0000.contoso.test' }],
      ['adDomainName with a slash', 'InvalidDomainName', { ...good, adDomainName: 'corp/contoso.test' }],
      ['organizationalUnit null', 'InvalidOrganizationalUnit', { ...good, organizationalUnit: null }],
      ['organizationalUnit 1 MB', 'InvalidOrganizationalUnit', { ...good, organizationalUnit: MB }],
      ['organizationalUnit with NUL', 'InvalidOrganizationalUnit', { ...good, organizationalUnit: 'OU=A\u0000' }],
      ['adDomainUsername missing', 'InvalidUpn', { ...good, adDomainUsername: undefined }],
      ['adDomainUsername an array', 'InvalidUpn', { ...good, adDomainUsername: ['a@b.c'] }],
      ['adDomainUsername with a slash', 'InvalidUpn', { ...good, adDomainUsername: 'svc/x@corp.contoso.test' }],
      ['adDomainUsername with NUL', 'InvalidUpn', { ...good, adDomainUsername: 'svc\u0000@corp.contoso.test' }],
      ['adDomainUsername 1 MB', 'InvalidUpn', { ...good, adDomainUsername: `${MB}@corp.contoso.test` }],
      ['passwordEnvelope missing', 'InvalidEnvelope', { ...good, passwordEnvelope: undefined }],
      ['passwordEnvelope null', 'InvalidEnvelope', { ...good, passwordEnvelope: null }],
      ['passwordEnvelope a number', 'InvalidEnvelope', { ...good, passwordEnvelope: 12345 }],
      ['passwordEnvelope 1 MB', 'InvalidEnvelope', { ...good, passwordEnvelope: MB }],
      [
        'passwordEnvelope truncated (4 parts)',
        'InvalidEnvelope',
        { ...good, passwordEnvelope: good.passwordEnvelope.split('.').slice(0, 4).join('.') },
      ],
      ['passwordEnvelope with NUL', 'InvalidEnvelope', { ...good, passwordEnvelope: 'a.b.\u0000.d' }],
    ];
    for (const [what, type, request] of cases) await expectRefused(`create: ${what}`, type, () => createWith(request));
  });

  it('createAnc: envelopes tampered, truncated, expired, for another tenant, ANC or operation, bad passwords', async () => {
    const create = async (anc: string, passwordEnvelope: string) =>
      createWith({ ...spec, actor, passwordEnvelope }, { anc });
    const forCreate = (a: string, o: Parameters<typeof envelope>[0] = {}) => envelope({ anc: a, op: 'create', ...o });
    const cases: Array<[string, string, (a: string) => Promise<string>]> = [
      ['header tampered', 'InvalidEnvelope', async (a) => tamper(await forCreate(a), 0)],
      ['wrapped key tampered', 'InvalidEnvelope', async (a) => tamper(await forCreate(a), 1)],
      ['ciphertext tampered', 'InvalidEnvelope', async (a) => tamper(await forCreate(a), 3)],
      ['tag tampered', 'InvalidEnvelope', async (a) => tamper(await forCreate(a), 4)],
      [
        'ciphertext truncated',
        'InvalidEnvelope',
        async (a) => {
          const p = (await forCreate(a)).split('.');
          p[3] = (p[3] as string).slice(0, 4);
          return p.join('.');
        },
      ],
      ['tag truncated', 'InvalidEnvelope', async (a) => (await forCreate(a)).slice(0, -6)],
      ['expired (10 minutes old)', 'EnvelopeExpired', (a) => forCreate(a, { now: new Date(Date.now() - 600_000) })],
      ['issued in the future', 'EnvelopeExpired', (a) => forCreate(a, { now: new Date(Date.now() + 600_000) })],
      ['for another tenant', 'InvalidEnvelope', (a) => forCreate(a, { tenant: 'someone-else' })],
      ['for another ANC', 'InvalidEnvelope', () => forCreate('another-anc')],
      ['for another operation (update)', 'InvalidEnvelope', (a) => envelope({ anc: a, op: 'update' })],
      ['correctly sealed empty password', 'PasswordEmpty', (a) => forCreate(a, { password: '' })],
      [
        'correctly sealed 300-character password',
        'PasswordTooLong',
        (a) => forCreate(a, { password: 'p'.repeat(300) }),
      ],
      [
        'correctly sealed password with NUL',
        'PasswordInvalidCharacters',
        (a) => forCreate(a, { password: 'Pass\u0000word1' }),
      ],
      [
        'correctly sealed password with ESC',
        'PasswordInvalidCharacters',
        (a) => forCreate(a, { password: 'Pass\u001bword1' }),
      ],
      [
        'correctly sealed password with U+0085',
        'PasswordInvalidCharacters',
        (a) => forCreate(a, { password: 'Pass\u0085word1' }),
      ],
    ];
    for (const [what, type, make] of cases) {
      const a = `env-${newAncs++}`;
      const jwe = await make(a);
      await expectRefused(`create: ${what}`, type, () => create(a, jwe));
    }
  });

  it('createAnc: ids with slashes or that do not match the workflow id fail the workflow, typed', async () => {
    const request = { ...spec, actor, passwordEnvelope: await envelope({ op: 'create', anc: 'x' }) };
    const starts: Array<[string, string, string, unknown]> = [
      ['tenantId with a slash', 'InvalidTenantId', 'anc/a/b/c', { tenantId: 'a/b', ancId: 'c' }],
      ['ancId with a slash', 'InvalidAncId', 'anc/a/b/c', { tenantId: 'a', ancId: 'b/c' }],
      ['ids that do not match the workflow id', 'InvalidRequest', 'anc/a/other', { tenantId: 'a', ancId: 'b' }],
      ['args null', 'InvalidRequest', 'anc/n/1', null],
      ['args empty', 'InvalidTenantId', 'anc/n/2', {}],
      ['tenantId a number', 'InvalidTenantId', 'anc/n/3', { tenantId: 5, ancId: '3' }],
      ['tenantId 1 MB', 'InvalidTenantId', 'anc/n/4', { tenantId: MB, ancId: '4' }],
      [
        'health interval a string',
        'InvalidRequest',
        'anc/n/5',
        { tenantId: 'n', ancId: '5', healthCheckIntervalMinutes: 'x' },
      ],
    ];
    for (const [what, type, workflowId, args] of starts) {
      await expectRefused(`start ancWorkflow: ${what}`, type, () =>
        client.workflow.execute('ancWorkflow', { workflowId, taskQueue: h.taskQueue, args: [args] }),
      );
    }
    // The same through update-with-start: the create itself is refused with the start's failure.
    await expectRefused('update-with-start: tenantId with a slash', 'InvalidTenantId', () =>
      createWith(request, { tenant: 'x/y', anc: 'z', workflowId: 'anc/x/y/z' }),
    );
    await expectRefused('update-with-start: ids that do not match the workflow id', 'InvalidRequest', () =>
      createWith(request, { tenant: 'x', anc: 'z', workflowId: 'anc/x/not-z' }),
    );
  });

  it('other workflows: bad start arguments fail them, typed', async () => {
    const starts: Array<[string, string, string, string, unknown[]]> = [
      ['tenantWorkflow args null', 'InvalidRequest', 'tenantWorkflow', 'tenant/bad-1', [null]],
      [
        'tenantWorkflow tenantId with a slash',
        'InvalidTenantId',
        'tenantWorkflow',
        'tenant/a/b',
        [{ tenantId: 'a/b' }],
      ],
      ['tenantWorkflow id mismatch', 'InvalidRequest', 'tenantWorkflow', 'tenant/other', [{ tenantId: 'bad-2' }]],
      [
        'tenantWorkflow retentionDays a string',
        'InvalidRequest',
        'tenantWorkflow',
        'tenant/bad-3',
        [{ tenantId: 'bad-3', retentionDays: '29' }],
      ],
      ['rotationWorkflow args null', 'InvalidRequest', 'rotationWorkflow', 'rotation-bad-1', [null]],
      [
        'rotationWorkflow batchSize a string',
        'InvalidRequest',
        'rotationWorkflow',
        'rotation-bad-2',
        [{ batchSize: 'x' }],
      ],
      ['rotationWorkflow actor 1 MB', 'InvalidActor', 'rotationWorkflow', 'rotation-bad-3', [{ actor: MB }]],
      ['keyringWorkflow args null', 'InvalidRequest', 'keyringWorkflow', 'keyring-bad-1', [null]],
      ['keyringWorkflow args a string', 'InvalidRequest', 'keyringWorkflow', 'keyring-bad-2', ['x']],
    ];
    for (const [what, type, workflowType, workflowId, args] of starts) {
      await expectRefused(`start ${what}`, type, () =>
        client.workflow.execute(workflowType, { workflowId, taskQueue: h.taskQueue, args }),
      );
    }
  });

  it('updateAdDomainPassword, deleteAnc, runHealthChecks on an existing ANC: refused, typed', async () => {
    const update = (req: unknown) => () => anc.executeUpdate('updateAdDomainPassword', { args: [req] });
    const cases: Array<[string, string, () => Promise<unknown>]> = [
      ['update: null', 'InvalidRequest', update(null)],
      ['update: every field missing', 'InvalidActor', update({})],
      ['update: envelope missing', 'InvalidEnvelope', update({ actor })],
      ['update: envelope an object', 'InvalidEnvelope', update({ actor, passwordEnvelope: { jwe: 1 } })],
      ['update: envelope 1 MB', 'InvalidEnvelope', update({ actor, passwordEnvelope: MB })],
      ['update: actor 1 MB', 'InvalidActor', update({ actor: MB, passwordEnvelope: usedUpdateEnvelope })],
      ['update: replayed envelope', 'EnvelopeReused', update({ actor, passwordEnvelope: usedUpdateEnvelope })],
      [
        'update: tampered ciphertext',
        'InvalidEnvelope',
        async () => update({ actor, passwordEnvelope: tamper(await envelope({}), 3) })(),
      ],
      [
        'update: truncated',
        'InvalidEnvelope',
        async () => update({ actor, passwordEnvelope: (await envelope({})).slice(0, -10) })(),
      ],
      [
        'update: expired',
        'EnvelopeExpired',
        async () => update({ actor, passwordEnvelope: await envelope({ now: new Date(Date.now() - 3_600_000) }) })(),
      ],
      [
        'update: for another tenant',
        'InvalidEnvelope',
        async () => update({ actor, passwordEnvelope: await envelope({ tenant: 'other' }) })(),
      ],
      [
        'update: for another ANC',
        'InvalidEnvelope',
        async () => update({ actor, passwordEnvelope: await envelope({ anc: 'other' }) })(),
      ],
      [
        'update: for another operation (create)',
        'InvalidEnvelope',
        async () => update({ actor, passwordEnvelope: await envelope({ op: 'create' }) })(),
      ],
      [
        'update: sealed empty password',
        'PasswordEmpty',
        async () => update({ actor, passwordEnvelope: await envelope({ password: '' }) })(),
      ],
      [
        'update: sealed 300-character password',
        'PasswordTooLong',
        async () => update({ actor, passwordEnvelope: await envelope({ password: 'q'.repeat(300) }) })(),
      ],
      [
        'update: sealed password with NUL',
        'PasswordInvalidCharacters',
        async () => update({ actor, passwordEnvelope: await envelope({ password: '\u0000' }) })(),
      ],
      ['delete: null', 'InvalidRequest', () => anc.executeUpdate('deleteAnc', { args: [null] })],
      ['delete: every field missing', 'InvalidActor', () => anc.executeUpdate('deleteAnc', { args: [{}] })],
      ['delete: actor 1 MB', 'InvalidActor', () => anc.executeUpdate('deleteAnc', { args: [{ actor: MB }] })],
      ['delete: actor with NUL', 'InvalidActor', () => anc.executeUpdate('deleteAnc', { args: [{ actor: '\u0000' }] })],
      ['health: null', 'InvalidRequest', () => anc.executeUpdate('runHealthChecks', { args: [null] })],
      ['health: actor a number', 'InvalidActor', () => anc.executeUpdate('runHealthChecks', { args: [{ actor: 1 }] })],
    ];
    for (const [what, type, send] of cases) await expectRefused(what, type, send);
  });

  it('tenant Updates: refused, typed', async () => {
    const tenant = client.workflow.getHandle(tenantWorkflowId(tenantId));
    const cases: Array<[string, string, string, unknown]> = [
      ['deactivateTenant: null', 'InvalidRequest', 'deactivateTenant', null],
      ['deactivateTenant: every field missing', 'InvalidActor', 'deactivateTenant', {}],
      ['deactivateTenant: actor empty', 'InvalidActor', 'deactivateTenant', { actor: ' ' }],
      ['deactivateTenant: actor with NUL', 'InvalidActor', 'deactivateTenant', { actor: 'ops\u0000' }],
      ['deactivateTenant: reason 1 MB', 'InvalidRequest', 'deactivateTenant', { actor, reason: MB }],
      ['deactivateTenant: reason a number', 'InvalidRequest', 'deactivateTenant', { actor, reason: 3 }],
      ['reactivateTenant: a string', 'InvalidRequest', 'reactivateTenant', 'please'],
    ];
    for (const [what, type, name, req] of cases) {
      await expectRefused(what, type, () => tenant.executeUpdate(name, { args: [req] }));
    }
  });

  it('junk signals are dropped and logged; nothing changes', async () => {
    const junkAnc: unknown[] = [null, 42, 'deactivated', {}, { state: 'bogus' }, { state: MB }, [{ state: 'purged' }]];
    for (const payload of junkAnc) await anc.signal('tenantStateChanged', payload);
    const tenant = client.workflow.getHandle(tenantWorkflowId(tenantId));
    const junkTenant: unknown[] = [null, {}, { actor: '' }, { actor: 'a\u0000b' }, { actor, reason: MB }, 'x'];
    for (const payload of junkTenant) {
      await tenant.signal('deactivateTenant', payload);
      await tenant.signal('reactivateTenant', payload);
    }
    // A query after the signals is answered after they were handled.
    const view = await anc.query<{ state: string }>('getAnc');
    expect(view.state).toBe('active');
    expect((await tenant.query<{ state: string }>('getTenant')).state).toBe('active');
    const dropped = (name: string) => warnings.filter((w) => w.includes(`${name} signal dropped`)).length;
    // At least once each: a workflow task the server force-closed (see below) runs its signals again.
    expect(dropped('tenantStateChanged')).toBeGreaterThan(0);
    // The one sent with signal-with-start in the set-up, and two per payload here.
    expect(dropped('deactivateTenant') + dropped('reactivateTenant')).toBeGreaterThan(0);
    // Logs name the signal and the tenant, never echo the payload.
    expect(warnings.join('\n')).not.toContain(MB.slice(0, 1000));
    refusals.set('signals dropped', junkAnc.length + 2 * junkTenant.length + 1);
  });

  it('the database is identical, and no workflow task ever failed', async () => {
    expect(await dumpAllTables(h.db.pool)).toBe(dumpBefore);

    // No input failed a workflow task in the worker. The only failures allowed are the server's own
    // FORCE_CLOSE_COMMAND, when more than 2 MB of signals arrive while a task is in flight (it closes
    // the task to flush them into history, and the next attempt succeeds): at most one per workflow.
    const FORCE_CLOSE = temporal.api.enums.v1.WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND;
    let workflows = 0;
    let forceClosed = 0;
    for await (const wf of client.workflow.list()) {
      const history = await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
      workflows += 1;
      const failures = (history.events ?? [])
        .map((e) => e.workflowTaskFailedEventAttributes)
        .filter((a) => a !== null && a !== undefined);
      const byWorker = failures.filter((a) => a.cause !== FORCE_CLOSE);
      expect(
        byWorker.map((a) => `${String(a.cause)}: ${a.failure?.message ?? ''}`),
        `${wf.workflowId}: workflow task failures`,
      ).toEqual([]);
      expect(failures.length, `${wf.workflowId}: force-closed tasks`).toBeLessThanOrEqual(1);
      forceClosed += failures.length;
    }
    expect(workflows).toBeGreaterThan(20);

    // The ANC workflow took every kind of junk: its history is kept for the replay test.
    const history = await anc.fetchHistory();
    expect(countEvents(history, 'EVENT_TYPE_MARKER_RECORDED')).toBeGreaterThan(0);
    if (process.env.RECORD_HISTORIES) {
      mkdirSync(`${ROOT}test/histories`, { recursive: true });
      writeFileSync(`${ROOT}test/histories/anc-bad-input.json`, shrinkLongStrings(historyJson(history)));
      const tenantHistory = await client.workflow.getHandle(tenantWorkflowId(tenantId)).fetchHistory();
      writeFileSync(`${ROOT}test/histories/tenant-bad-input.json`, shrinkLongStrings(historyJson(tenantHistory)));
    }
    const summary = [...refusals.entries()].map(([type, n]) => `${type} ${n}`).join(', ');
    console.info(
      `bad input: ${inputsSent} inputs refused (${summary}); ${workflows} workflows, 0 workflow task failures` +
        ` from the worker, ${forceClosed} task(s) force-closed by the server to flush > 2 MB of buffered signals`,
    );
  });
});
