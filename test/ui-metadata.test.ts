import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import type { WorkflowHandle } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ancWorkflowId, tenantWorkflowId } from '../common/ids';
import { formatDuration } from '../common/summaries';
import { createHarness, startDevServer, type Harness } from './support/harness';
import { historyAsJson } from './support/history';
import { ROOT } from './support/stack';

/** The Web UI reads "current details" through this built-in query. */
async function currentDetails(handle: WorkflowHandle): Promise<string> {
  const metadata = await handle.query<temporal.api.sdk.v1.IWorkflowMetadata>('__temporal_workflow_metadata');
  return metadata.currentDetails ?? '';
}

/** Summaries of the activities scheduled in a workflow's history, in order (decoded JSON strings). */
async function activitySummaries(handle: WorkflowHandle): Promise<string[]> {
  const history = await handle.fetchHistory();
  return (history.events ?? [])
    .filter((e) => e.activityTaskScheduledEventAttributes)
    .map((e) => {
      const data = e.userMetadata?.summary?.data;
      return data ? (JSON.parse(Buffer.from(data).toString('utf8')) as string) : '';
    });
}

async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: last ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('workflows read well in the Web UI: summaries and current details, no secrets', () => {
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

  it('an ANC shows its summary, state, credential version and last health check with its error type', async () => {
    const tenantId = `ui-${randomBytes(4).toString('hex')}`;
    const password = `Wrong-${randomBytes(12).toString('hex')}`;
    const actor = 'ops@contoso.test';
    await h.sdk.createAnc({
      tenantId,
      ancId: 'hq',
      displayName: 'Contoso HQ',
      adDomainName: 'corp.contoso.test',
      adDomainUsername: 'svcDomainJoin@corp.contoso.test',
      password,
      actor,
    });
    const handle = env.client.workflow.getHandle(ancWorkflowId(tenantId, 'hq'));
    expect(await (await handle.describe()).staticSummary()).toBe('ANC hq — Contoso HQ, corp.contoso.test');

    // The directory refuses this password: the check after the create fails with its error type.
    const details = await eventually(
      () => currentDetails(handle),
      (d) => d.includes('Health check:** failed'),
      'the failed health check in the details',
    );
    expect(details).toContain('**ANC hq — Contoso HQ, corp.contoso.test**');
    expect(details).toContain(`**Tenant:** ${tenantId} · **State:** active`);
    expect(details).toContain('**Credential version:** 1');
    expect(details).toContain('`IncorrectCredentials`');

    await h.sdk.updateAncPassword(tenantId, 'hq', `${password}-2`, { actor });
    expect(await currentDetails(handle)).toContain('**Credential version:** 2');

    await h.sdk.deleteAnc(tenantId, 'hq', { actor });
    expect(await currentDetails(handle)).toContain('**State:** deleted');

    const steps = await activitySummaries(handle);
    // The create takes a second HSM dispatch slot for the envelope, then seals and stores.
    expect(steps.slice(0, 2)).toEqual([
      'Reserve a second HSM call for the envelope',
      'Provide: seal and store the credential',
    ]);
    expect(steps).toContain('Health check: DNS and LDAP bind with the stored credential');
    expect(steps).toContain('Update: seal and store the new credential');
    expect(steps[steps.length - 1]).toBe('Delete: remove the ANC and all its data');

    const shown = JSON.stringify({ details, steps, final: await currentDetails(handle) });
    expect(shown).not.toContain(password);
    expect(shown).not.toContain('passwordEnvelope');

    // RECORD_HISTORIES=1 saves this run for test/replay.test.ts (another value: the file's name).
    const record = process.env.RECORD_HISTORIES;
    if (record) {
      mkdirSync(`${ROOT}test/histories`, { recursive: true });
      const name = record === '1' ? 'anc-ui-metadata' : record;
      writeFileSync(`${ROOT}test/histories/${name}.json`, historyAsJson(await handle.fetchHistory()));
    }
  });

  it('a deactivated tenant shows when it was deactivated, when it will be purged and the time left', async () => {
    const tenantId = `ui-${randomBytes(4).toString('hex')}`;
    const actor = 'billing@contoso.test';
    await h.sdk.createAnc({
      tenantId,
      ancId: 'branch',
      displayName: 'Contoso Branch',
      adDomainName: 'corp.contoso.test',
      adDomainUsername: 'svcDomainJoin@corp.contoso.test',
      password: `P-${randomBytes(8).toString('hex')}`,
      actor,
    });
    const view = await h.sdk.deactivateTenant(tenantId, { actor });
    const handle = env.client.workflow.getHandle(tenantWorkflowId(tenantId));
    expect(await (await handle.describe()).staticSummary()).toBe(`Tenant ${tenantId} — lifecycle and data retention`);

    const details = await currentDetails(handle);
    expect(details).toContain(`**Tenant ${tenantId}** · **State:** deactivated`);
    expect(details).toContain(`**Deactivated at:** ${view.deactivatedAt}`);
    expect(details).toContain(`**Purge at:** ${view.purgeAt}`);
    expect(details).toMatch(/\*\*time left:\*\* 2[89]d( \d+h)? \d+m/);

    const ancDetails = await eventually(
      () => currentDetails(env.client.workflow.getHandle(ancWorkflowId(tenantId, 'branch'))),
      (d) => d.includes('**State:** deactivated'),
      'the ANC to follow its tenant',
    );
    expect(ancDetails).toContain('**State:** deactivated');

    const firstRun = await handle.describe();
    await h.sdk.reactivateTenant(tenantId, { actor });
    // Reactivation continues the tenant workflow as new; the new run publishes its details.
    const after = await eventually(
      () => currentDetails(env.client.workflow.getHandle(tenantWorkflowId(tenantId))),
      (d) => d.includes('**State:** active'),
      'the reactivated tenant',
    );
    expect(after).not.toContain('Purge at');
    expect(after).toContain('Deactivate/reactivate cycles: 1');

    const firstHandle = env.client.workflow.getHandle(tenantWorkflowId(tenantId), firstRun.runId);
    const steps = await activitySummaries(firstHandle);
    expect(steps).toEqual([
      "Read the tenant's record",
      'Deactivate: start the retention window',
      "List the tenant's ANCs",
      'Reactivate: restore the tenant and its ANCs',
      "List the tenant's ANCs",
    ]);

    if (process.env.RECORD_HISTORIES) {
      writeFileSync(
        `${ROOT}test/histories/tenant-deactivate-reactivate.json`,
        historyAsJson(await firstHandle.fetchHistory()),
      );
    }
  });

  it('durations read as days, hours and minutes', () => {
    expect(formatDuration(29 * 86_400_000)).toBe('29d 0m');
    expect(formatDuration(28 * 86_400_000 + 23 * 3_600_000 + 59 * 60_000 + 999)).toBe('28d 23h 59m');
    expect(formatDuration(0)).toBe('none');
  });
});
