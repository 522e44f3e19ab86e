import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { stackEnv } from './stack';

/** A port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

/**
 * The worker's environment for the test stack: the given database and Temporal server, the Key
 * Vault emulator over HTTPS (trusted through KEYVAULT_CA, a fresh key name), the test directory.
 * Nothing is read from .stack/env.
 */
export function workerEnv(opts: {
  databaseUrl: string;
  temporalAddress: string;
  taskQueue: string;
}): NodeJS.ProcessEnv {
  const stack = stackEnv();
  return {
    PATH: process.env.PATH,
    ANC_STACK_ENV: '/nonexistent/.stack/env',
    DATABASE_URL: opts.databaseUrl,
    TEMPORAL_ADDRESS: opts.temporalAddress,
    TEMPORAL_NAMESPACE: 'default',
    TEMPORAL_TASK_QUEUE: opts.taskQueue,
    KEYVAULT_URL: stack.KEYVAULT_URL,
    KEYVAULT_EMULATOR: 'true',
    KEYVAULT_CA: stack.KEYVAULT_CA,
    KEYVAULT_KEY_NAME: `worker-process-${randomBytes(4).toString('hex')}`,
    // The KEK certificate from the stack's test CA, which clients trust (test/support/stack.ts).
    KEYVAULT_CERT_ISSUER: 'anc-test-ca',
    KEYVAULT_CERT_SUBJECT: 'CN=anc-credential-kek',
    LDAP_URL: stack.LDAP_URL ?? 'ldap://127.0.0.1:1',
    DNS_OVERRIDES: 'corp.contoso.test=127.0.0.1',
    LOG_LEVEL: 'info',
  };
}

export interface WorkerProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves once a stdout line has this `msg`; rejects if the process ends first or after `ms`. */
  waitForMessage(msg: string, ms?: number): Promise<void>;
  /** SIGTERM, then the exit code (or signal name). */
  stop(): Promise<number | string | null>;
}

export function startWorkerProcess(script: string, env: NodeJS.ProcessEnv, cwd: string): WorkerProcess {
  const child = spawn(process.execPath, [script], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString('utf8')));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString('utf8')));
  const exited = new Promise<number | string | null>((resolve) =>
    child.on('close', (code, signal) => resolve(code ?? signal)),
  );
  const hasMessage = (msg: string) =>
    out.split('\n').some((line) => {
      try {
        return (JSON.parse(line) as { msg?: string }).msg === msg;
      } catch {
        return false;
      }
    });
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    waitForMessage: (msg, ms = 90_000) =>
      new Promise<void>((resolve, reject) => {
        const deadline = Date.now() + ms;
        const timer = setInterval(() => {
          if (hasMessage(msg)) {
            clearInterval(timer);
            resolve();
          } else if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
            clearInterval(timer);
            reject(new Error(`worker did not log "${msg}" (exit ${child.exitCode}):\n${out}\n${err}`));
          }
        }, 100);
      }),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}
