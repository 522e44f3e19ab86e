/**
 * Start-up benchmark (not a test; asserts nothing): the CLI's `--help` and `get`, from the bundled
 * build (dist/cli.js) and from source through tsx, against the Go `temporal` CLI doing
 * `workflow describe` on the same dev server; and the worker's start-up to "Worker started" from
 * source (tsx) and from the build (node dist/worker/main.js). Prints medians and ratios.
 *
 *   npm run build && npx tsx test/bench/startup.ts      (needs: bash stack/up.sh)
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { AncClient } from '../../client/sdk';
import { ancWorkflowId } from '../../common/ids';
import { createTestDatabase } from '../support/db';
import { startDevServer } from '../support/harness';
import { ROOT, stackEnv, stackKekTrust } from '../support/stack';
import { startWorkerProcess, workerEnv } from '../support/worker-process';

const run = promisify(execFile);
const TSX = join(ROOT, 'node_modules/.bin/tsx');
const RUNS = Number(process.env.BENCH_RUNS ?? 7);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function timeCommand(label: string, cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  await run(cmd, args, { env, cwd: ROOT }); // warm the file cache
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const start = performance.now();
    await run(cmd, args, { env, cwd: ROOT });
    times.push(performance.now() - start);
  }
  const m = median(times);
  console.log(`  ${label.padEnd(52)} ${m.toFixed(0).padStart(6)} ms (median of ${RUNS})`);
  return m;
}

async function workerStartup(label: string, cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < Math.max(3, Math.floor(RUNS / 2)); i++) {
    const start = performance.now();
    const child = spawn(cmd, args, { env, cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString('utf8');
        if (out.includes('"msg":"Worker started"')) resolve();
      });
      child.on('close', (code) => reject(new Error(`worker exited (${code}) before starting:\n${out}`)));
    });
    times.push(performance.now() - start);
    child.kill('SIGTERM');
    await new Promise((resolve) => child.on('close', resolve));
  }
  const m = median(times);
  console.log(`  ${label.padEnd(52)} ${m.toFixed(0).padStart(6)} ms (median of ${times.length})`);
  return m;
}

async function main(): Promise<void> {
  if (!existsSync(join(ROOT, 'dist/cli.js'))) throw new Error('run `npm run build` first');
  const stack = stackEnv();
  const env = await startDevServer();
  const db = await createTestDatabase();
  const taskQueue = `bench-${randomBytes(4).toString('hex')}`;
  const wEnv = workerEnv({ databaseUrl: db.url, temporalAddress: env.address, taskQueue });
  const worker = startWorkerProcess(join(ROOT, 'dist/worker/main.js'), wEnv, ROOT);
  try {
    await worker.waitForMessage('Worker started');
    const sdk = new AncClient({ client: env.client, taskQueue, kekTrust: stackKekTrust() });
    await sdk.createAnc({
      tenantId: 'bench',
      ancId: 'hq',
      displayName: 'Bench HQ',
      adDomainName: 'corp.contoso.test',
      adDomainUsername: 'svcDomainJoin@corp.contoso.test',
      password: 'Bench-Pa55word!',
      actor: 'bench',
    });
    const cliEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      ANC_STACK_ENV: '/nonexistent',
      TEMPORAL_ADDRESS: env.address,
      TEMPORAL_TASK_QUEUE: taskQueue,
    };
    const get = ['get', '--tenant', 'bench', '--anc', 'hq', '--json'];

    console.log(`CLI start-up against one dev server (${env.address})`);
    const go = await timeCommand(
      'baseline: temporal workflow describe (Go CLI)',
      stack.TEMPORAL_CLI,
      ['workflow', 'describe', '--address', env.address, '-w', ancWorkflowId('bench', 'hq')],
      cliEnv,
    );
    const helpDist = await timeCommand(
      'anc --help  (node dist/cli.js)',
      process.execPath,
      ['dist/cli.js', '--help'],
      cliEnv,
    );
    const getDist = await timeCommand(
      'anc get     (node dist/cli.js)',
      process.execPath,
      ['dist/cli.js', ...get],
      cliEnv,
    );
    const helpTsx = await timeCommand(
      'anc --help  (tsx client/cli.ts, before)',
      TSX,
      ['client/cli.ts', '--help'],
      cliEnv,
    );
    const getTsx = await timeCommand('anc get     (tsx client/cli.ts, before)', TSX, ['client/cli.ts', ...get], cliEnv);
    console.log(`  => anc --help: ${(helpDist / go).toFixed(2)}x the Go CLI (before: ${(helpTsx / go).toFixed(2)}x)`);
    console.log(`  => anc get:    ${(getDist / go).toFixed(2)}x the Go CLI (before: ${(getTsx / go).toFixed(2)}x)\n`);

    console.log('Worker start-up to "Worker started" (a fresh task queue each time)');
    const fresh = () => ({ ...wEnv, TEMPORAL_TASK_QUEUE: `bench-${randomBytes(4).toString('hex')}` });
    const before = await workerStartup('tsx worker/main.ts (before)', TSX, ['worker/main.ts'], fresh());
    const after = await workerStartup(
      'node dist/worker/main.js (after)',
      process.execPath,
      ['dist/worker/main.js'],
      fresh(),
    );
    console.log(`  => built worker starts in ${(after / before).toFixed(2)}x the time from source`);
  } finally {
    await worker.stop();
    await db.drop();
    await env.teardown();
  }
}

await main();
