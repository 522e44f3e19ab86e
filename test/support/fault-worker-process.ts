import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { build } from 'esbuild';
import { WORKFLOWS_PATH } from '../../worker/workflows-path';
import type { FaultWorkerConfig } from './fault-worker';
import { ROOT } from './stack';

/** Bundles the workflows once into a file, so each worker process starts without bundling. */
export async function workflowBundleFile(): Promise<string> {
  const { code } = await bundleWorkflowCode({
    workflowsPath: WORKFLOWS_PATH,
    logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} },
  });
  const file = join(mkdtempSync(join(tmpdir(), 'anc-bundle-')), 'workflows.js');
  writeFileSync(file, code);
  return file;
}

/**
 * Compiles test/support/fault-worker.ts once into plain JavaScript (dependencies stay in
 * node_modules), so a restarted worker process starts in about a second instead of recompiling.
 */
export async function faultWorkerScript(): Promise<string> {
  const outfile = join(ROOT, '.stack', 'fault-worker', `worker-${process.pid}.mjs`);
  await build({
    entryPoints: [join(ROOT, 'test/support/fault-worker.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile,
    logLevel: 'error',
  });
  return outfile;
}

export interface WorkerProcess {
  pid: number;
  /** kill -9, and wait until it is gone. */
  kill9(): Promise<void>;
  /** SIGTERM (graceful shutdown), and wait until it is gone. */
  stop(): Promise<void>;
}

/** Starts the compiled fault worker (see {@link faultWorkerScript}) in a child process and waits until it polls. */
export async function startWorkerProcess(script: string, cfg: FaultWorkerConfig): Promise<WorkerProcess> {
  const child: ChildProcess = spawn(process.execPath, [script, JSON.stringify(cfg)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the worker process did not start within 60 s: ${stderr}`));
    }, 60_000);
    child.once('exit', () => clearTimeout(timer));
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('worker running\n')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`the worker process exited (${code ?? signal}) before running: ${stderr}`)),
    );
  });
  const pid = child.pid as number;
  return {
    pid,
    async kill9() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
