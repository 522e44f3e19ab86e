import { readdirSync, readFileSync } from 'node:fs';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { ancWorkflowId, tenantWorkflowId } from '../common/ids';
import { RESERVE_ALONGSIDE_PATCH } from '../workflows/anc';
import { WORKFLOWS_PATH } from '../worker/workflows-path';
import { ROOT } from './support/stack';

// Histories recorded from real runs (RECORD_HISTORIES=1 npx vitest run test/secrets.test.ts).
// Replaying them against today's workflow code fails on any change that breaks determinism.
const DIR = `${ROOT}test/histories`;
const files = readdirSync(DIR).filter((f) => f.endsWith('.json'));

/**
 * The id the service gives the entity workflow a history belongs to (workflows check their id against
 * their arguments); other workflows replay under the file's name.
 */
function workflowIdOf(history: temporal.api.history.v1.History, file: string): string {
  const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
  const data = started?.input?.payloads?.[0]?.data;
  const args = data ? (JSON.parse(Buffer.from(data).toString('utf8')) as { tenantId?: string; ancId?: string }) : {};
  const type = started?.workflowType?.name;
  if (type === 'ancWorkflow' && args.tenantId && args.ancId) return ancWorkflowId(args.tenantId, args.ancId);
  if (type === 'tenantWorkflow' && args.tenantId) return tenantWorkflowId(args.tenantId);
  return file;
}

/** The workflow task each scheduled activity of a type came from, in history order. */
function schedulingTasks(file: string, activityType: string): string[] {
  const json = JSON.parse(readFileSync(`${DIR}/${file}`, 'utf8')) as Record<string, unknown>;
  return (temporal.api.history.v1.History.fromObject(json).events ?? [])
    .map((e) => e.activityTaskScheduledEventAttributes)
    .filter((a) => a?.activityType?.name === activityType)
    .map((a) => String(a?.workflowTaskCompletedEventId));
}

function patchIds(file: string): string[] {
  const json = JSON.parse(readFileSync(`${DIR}/${file}`, 'utf8')) as Record<string, unknown>;
  return (temporal.api.history.v1.History.fromObject(json).events ?? []).flatMap((e) => {
    const data = e.markerRecordedEventAttributes?.details?.['patch-data']?.payloads?.[0]?.data;
    return data ? [(JSON.parse(Buffer.from(data).toString('utf8')) as { id: string }).id] : [];
  });
}

describe('the credential store’s second HSM dispatch, before and after it was scheduled alongside', () => {
  it('runs recorded before the patch reserve first, then store, each from its own workflow task', () => {
    expect(patchIds('anc-hsm-queue.json')).not.toContain(RESERVE_ALONGSIDE_PATCH);
    const reserve = schedulingTasks('anc-hsm-queue.json', 'reserveHsmCall');
    const store = schedulingTasks('anc-hsm-queue.json', 'provideCredential');
    expect(reserve.length).toBeGreaterThan(0);
    expect(store.length).toBe(reserve.length);
    reserve.forEach((task, i) => expect(Number(store[i])).toBeGreaterThan(Number(task)));
  });

  it('runs recorded with the patch schedule both in the same workflow task', () => {
    expect(patchIds('anc-reserve-alongside.json')).toContain(RESERVE_ALONGSIDE_PATCH);
    const reserve = schedulingTasks('anc-reserve-alongside.json', 'reserveHsmCall');
    const store = schedulingTasks('anc-reserve-alongside.json', 'provideCredential');
    expect(reserve.length).toBeGreaterThanOrEqual(2); // the create and the update
    expect(store).toEqual(reserve);
  });
});

describe('saved workflow histories replay against the current workflow code', () => {
  it('has histories to replay', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  for (const file of files) {
    it(`replays ${file}`, async () => {
      const json = JSON.parse(readFileSync(`${DIR}/${file}`, 'utf8')) as Record<string, unknown>;
      const history = temporal.api.history.v1.History.fromObject(json);
      expect(history.events?.length).toBeGreaterThan(5);
      await expect(
        Worker.runReplayHistory(
          { workflowsPath: WORKFLOWS_PATH },
          history,
          // A recording may name the id it ran under (a workflow that derives child ids from it).
          typeof json.workflowId === 'string' ? json.workflowId : workflowIdOf(history, file),
        ),
      ).resolves.toBeUndefined();
    });
  }
});
