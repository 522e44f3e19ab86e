import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './support/stack';

const check = (file: string) =>
  execFileSync('go', ['run', '.', file], { cwd: `${ROOT}stack/compose-check`, encoding: 'utf8', stdio: 'pipe' });

describe('docker-compose.yml', () => {
  it('loads with the Compose specification loader', () => {
    expect(check(`${ROOT}docker-compose.yml`)).toMatch(/^valid: 5 services/);
  });

  it('the check fails on a broken file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'compose-'));
    copyFileSync(`${ROOT}docker-compose.yml`, join(dir, 'docker-compose.yml'));
    const broken = readFileSync(join(dir, 'docker-compose.yml'), 'utf8').replace(
      'postgres: { condition: service_healthy }',
      'nosuch: { condition: service_healthy }',
    );
    writeFileSync(join(dir, 'docker-compose.yml'), broken);
    expect(() => check(join(dir, 'docker-compose.yml'))).toThrow();
  });
});
