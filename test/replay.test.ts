import { readdirSync, readFileSync } from 'node:fs';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { ancWorkflowId, tenantWorkflowId } from '../common/ids';
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
        Worker.runReplayHistory({ workflowsPath: WORKFLOWS_PATH }, history, workflowIdOf(history, file)),
      ).resolves.toBeUndefined();
    });
  }
});
