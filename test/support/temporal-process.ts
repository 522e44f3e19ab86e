import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { stackEnv } from './stack';
import { freePort } from './pg-cluster';
import { sleep } from './faults';

export interface TemporalProcess {
  address: string;
  /** SIGTERM, and wait until the process is gone. */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same database file. */
  start(): Promise<void>;
}

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });

/**
 * A Temporal dev server (the `temporal` CLI from .tools) that keeps its state in `dbFile`, so it
 * can be stopped and started again with its workflows, timers and visibility records intact.
 */
export async function startTemporalProcess(dbFile: string): Promise<TemporalProcess> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const start = async () => {
    const c = spawn(
      stackEnv().TEMPORAL_CLI,
      ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--headless'].concat([
        '--db-filename',
        dbFile,
        '--log-level',
        'error',
      ]),
      { stdio: ['ignore', 'ignore', 'ignore'] },
    );
    child = c;
    exited = new Promise((resolve) => c.once('exit', () => resolve()));
    const deadline = Date.now() + 60_000;
    while (!(await portOpen(port))) {
      if (c.exitCode !== null) throw new Error(`the Temporal dev server exited (${c.exitCode})`);
      if (Date.now() > deadline) throw new Error('the Temporal dev server did not listen within 60 s');
      await sleep(200);
    }
  };
  await start();
  return {
    address: `127.0.0.1:${port}`,
    async stop() {
      child?.kill('SIGTERM');
      await exited;
    },
    start,
  };
}
