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
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
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

/** /usr/bin/time, where present, gives each run's CPU time (user + system) as well. */
const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;

interface Timing {
  wall: number;
  /** NaN without /usr/bin/time. */
  cpu: number;
}

async function timeOnce(cmd: string, args: string[], env: NodeJS.ProcessEnv, okCodes: number[]): Promise<Timing> {
  const cpuFile = join(tmpdir(), `anc-bench-time-${process.pid}`);
  const [file, argv] = TIME ? [TIME, ['-q', '-f', '%U %S', '-o', cpuFile, cmd, ...args]] : [cmd, args];
  const start = performance.now();
  try {
    await run(file, argv, { env, cwd: ROOT });
  } catch (err) {
    // A command measured for its refusal (an argument error) exits non-zero by design.
    if (!okCodes.includes((err as { code?: number }).code ?? -1)) throw err;
  }
  const wall = performance.now() - start;
  if (!TIME) return { wall, cpu: NaN };
  const [user, sys] = readFileSync(cpuFile, 'utf8').trim().split(/\s+/).slice(-2).map(Number);
  return { wall, cpu: ((user ?? NaN) + (sys ?? NaN)) * 1000 };
}

async function timeCommand(
  label: string,
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  okCodes: number[] = [],
): Promise<Timing> {
  await timeOnce(cmd, args, env, okCodes); // warm the file cache
  const runs: Timing[] = [];
  for (let i = 0; i < RUNS; i++) runs.push(await timeOnce(cmd, args, env, okCodes));
  const m = { wall: median(runs.map((r) => r.wall)), cpu: median(runs.map((r) => r.cpu)) };
  console.log(
    `  ${label.padEnd(52)} ${m.wall.toFixed(0).padStart(6)} ms wall, ${m.cpu.toFixed(0).padStart(5)} ms CPU (median of ${RUNS})`,
  );
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
    // An argument error (a required option missing): exit code 2, like --help it loads no client.
    const usageDist = await timeCommand(
      'anc get, argument error  (node dist/cli.js)',
      process.execPath,
      ['dist/cli.js', 'get', '--tenant', 'bench'],
      cliEnv,
      [2],
    );
    const getDist = await timeCommand(
      'anc get     (node dist/cli.js)',
      process.execPath,
      ['dist/cli.js', ...get],
      cliEnv,
    );
    // Another build of the CLI to compare against in the same run (e.g. the previous one-file bundle).
    const other = process.env.BENCH_CLI_BEFORE;
    const helpOther = other
      ? await timeCommand('anc --help  (BENCH_CLI_BEFORE)', process.execPath, [other, '--help'], cliEnv)
      : undefined;
    const getOther = other
      ? await timeCommand('anc get     (BENCH_CLI_BEFORE)', process.execPath, [other, ...get], cliEnv)
      : undefined;
    const helpTsx = await timeCommand(
      'anc --help  (tsx client/cli.ts, before)',
      TSX,
      ['client/cli.ts', '--help'],
      cliEnv,
    );
    const getTsx = await timeCommand('anc get     (tsx client/cli.ts, before)', TSX, ['client/cli.ts', ...get], cliEnv);
    const x = (a: Timing, b: Timing) =>
      `${(a.wall / b.wall).toFixed(2)}x wall` + (Number.isNaN(a.cpu) ? '' : `, ${(a.cpu / b.cpu).toFixed(2)}x CPU`);
    console.log(`  => anc --help:        ${x(helpDist, go)} the Go CLI (tsx: ${x(helpTsx, go)})`);
    console.log(`  => anc argument error: ${x(usageDist, go)} the Go CLI`);
    console.log(`  => anc get:           ${x(getDist, go)} the Go CLI (tsx: ${x(getTsx, go)})`);
    if (helpOther && getOther) {
      console.log(`  => BENCH_CLI_BEFORE: --help ${x(helpOther, go)}, get ${x(getOther, go)} the Go CLI\n`);
    } else {
      console.log('');
    }

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
