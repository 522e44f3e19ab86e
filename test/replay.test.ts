import { readdirSync, readFileSync } from 'node:fs';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { WORKFLOWS_PATH } from '../worker/workflows-path';
import { ROOT } from './support/stack';

// Histories recorded from real runs (RECORD_HISTORIES=1 npx vitest run test/secrets.test.ts).
// Replaying them against today's workflow code fails on any change that breaks determinism.
const DIR = `${ROOT}test/histories`;
const files = readdirSync(DIR).filter((f) => f.endsWith('.json'));

describe('saved workflow histories replay against the current workflow code', () => {
  it('has histories to replay', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  for (const file of files) {
    it(`replays ${file}`, async () => {
      const json = JSON.parse(readFileSync(`${DIR}/${file}`, 'utf8')) as Record<string, unknown>;
      const history = temporal.api.history.v1.History.fromObject(json);
      expect(history.events?.length).toBeGreaterThan(5);
      await expect(Worker.runReplayHistory({ workflowsPath: WORKFLOWS_PATH }, history, file)).resolves.toBeUndefined();
    });
  }
});
