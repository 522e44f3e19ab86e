/**
 * What the benchmark scripts share: a private Temporal dev server, Key Vault emulator and database per
 * run, the service worker as a separate process started the way production starts it (worker/main.ts,
 * configured through its environment), and small statistics helpers.
 *
 * The worker is a child process so its RSS and CPU can be read from /proc, and so the benchmark never
 * depends on which task queue an activity runs on: the emulator counts Key Vault calls wherever they
 * come from.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { migrate } from '../../activities/db/migrate';
import { createPool, type Pool } from '../../activities/db/pool';
import { sealCredential } from '../../activities/crypto/seal';
import { createEmptyDatabase } from '../support/db';
import { startEmulatorProcess, type EmulatorProcess } from '../support/emulator-process';
import { ALL_SEARCH_ATTRIBUTES } from '../support/harness';
import { quietTemporalCli, ROOT, stackEnv } from '../support/stack';

/** Key size and HSM budget the benchmarks run the service with (the largest budget allowed for 2048-bit keys). */
export const BENCH_KEY_SIZE = 2048;
export const BENCH_HSM_OPS_PER_SECOND = 200;

export interface BenchStack {
  env: TestWorkflowEnvironment;
  client: Client;
  address: string;
  vault: EmulatorProcess;
  /** The emulator's certificate, as a file for KEYVAULT_CA. */
  vaultCaPath: string;
  db: { url: string; pool: Pool };
  /** A fresh KEK name for this run. */
  keyName: string;
  close(): Promise<void>;
}

/** A dev server (in memory), a Key Vault emulator process and a migrated database of this run's own. */
export async function startBenchStack(label: string): Promise<BenchStack> {
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: quietTemporalCli() },
      ip: '127.0.0.1',
      ui: false,
      searchAttributes: ALL_SEARCH_ATTRIBUTES,
      extraArgs: ['--log-level', 'error'],
    },
  });
  const vault = await startEmulatorProcess();
  const dir = mkdtempSync(join(tmpdir(), 'anc-bench-'));
  const vaultCaPath = join(dir, 'vault-ca.pem');
  writeFileSync(vaultCaPath, vault.caPem);
  const empty = await createEmptyDatabase(`bench_${label}`);
  await migrate(empty.url);
  const pool = createPool(empty.url, 20);
  const connection = await Connection.connect({ address: env.address });
  return {
    env,
    client: new Client({ connection }),
    address: env.address,
    vault,
    vaultCaPath,
    db: { url: empty.url, pool },
    keyName: `bench-${randomBytes(4).toString('hex')}`,
    async close() {
      await connection.close();
      await pool.end();
      await empty.drop();
      await vault.stop();
      await env.teardown();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface ChildWorker {
  pid: number;
  child: ChildProcess;
  /** Resident set size in bytes, from /proc. */
  rss(): number;
  /** User + system CPU seconds so far, from /proc. */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

const CLOCK_TICKS = 100;

function procRss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

function procCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields after the command name start at field 3 (state): utime is field 14, stime field 15.
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/**
 * Runs `script` (relative to the repository) in its own Node process with tsx, resolves once a stdout
 * line matches `ready`. Output is kept quiet; the last lines are shown when the process dies early.
 */
export async function startChildProcess(
  script: string,
  env: Record<string, string>,
  ready: RegExp,
  args: string[] = [],
): Promise<ChildWorker> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, script), ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  const keep = (c: Buffer) => {
    tail = (tail + c.toString()).slice(-4000);
  };
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const onData = (c: Buffer) => {
      keep(c);
      out = (out + c.toString()).slice(-8000);
      if (ready.test(out)) {
        child.stdout?.off('data', onData);
        child.stdout?.on('data', keep);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${script} exited (${code}) before it was ready:\n${tail}`)));
  });
  const pid = child.pid as number;
  let stopping = false;
  child.once('exit', (code, signal) => {
    if (!stopping) console.error(`${script} exited unexpectedly (${code ?? signal}):\n${tail}`);
  });
  return {
    pid,
    child,
    rss: () => procRss(pid),
    cpuSeconds: () => procCpuSeconds(pid),
    async stop() {
      stopping = true;
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The service worker (worker/main.ts) against a bench stack, configured only through its environment. */
export function startServiceWorker(
  stack: BenchStack,
  taskQueue: string,
  extraEnv: Record<string, string> = {},
): Promise<ChildWorker> {
  const local = stackEnv();
  return startChildProcess(
    'worker/main.ts',
    {
      ANC_STACK_ENV: '/nonexistent',
      NODE_ENV: 'development',
      DATABASE_URL: stack.db.url,
      TEMPORAL_ADDRESS: stack.address,
      TEMPORAL_NAMESPACE: 'default',
      TEMPORAL_TASK_QUEUE: taskQueue,
      KEYVAULT_URL: stack.vault.url,
      KEYVAULT_EMULATOR: 'true',
      // A bare RSA key (the figures compare with earlier runs in key mode); clients skip the trust check.
      KEYVAULT_KEK_MODE: 'key',
      KEYVAULT_CA: stack.vaultCaPath,
      KEYVAULT_KEY_NAME: stack.keyName,
      KEYVAULT_KEY_SIZE: String(BENCH_KEY_SIZE),
      KEYVAULT_HSM_OPS_PER_SECOND: String(BENCH_HSM_OPS_PER_SECOND),
      LDAP_URL: local.LDAP_URL ?? 'ldap://127.0.0.1:1',
      DNS_OVERRIDES: 'corp.contoso.test=127.0.0.1',
      LDAP_UPN_BIND: 'auto',
      LOG_LEVEL: 'info',
      ...extraEnv,
    },
    /"msg":"Worker started"/,
  );
}

/** User + system CPU seconds of a process and all its descendants (live or exited), from /proc. */
export function treeCpuSeconds(root: number): number {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      // gone meanwhile
    }
  }
  // A live process's own time plus what its exited (reaped) children used, which the kernel adds to
  // it: processes that end during the measurement still count, and none counts twice.
  let total = 0;
  const visit = (pid: number) => {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      total += (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS;
    } catch {
      return;
    }
    for (const c of children.get(pid) ?? []) visit(c);
  };
  visit(root);
  return total;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

export function sortNumbers(xs: number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

/** Runs `count` jobs with at most `concurrency` in flight; returns each job's latency in ms and the wall time. */
export async function runConcurrent(
  count: number,
  concurrency: number,
  job: (i: number) => Promise<unknown>,
): Promise<{ latencies: number[]; wallMs: number }> {
  const latencies: number[] = new Array<number>(count);
  let next = 0;
  const start = performance.now();
  const lane = async () => {
    for (;;) {
      const i = next++;
      if (i >= count) return;
      const t0 = performance.now();
      await job(i);
      latencies[i] = performance.now() - t0;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  return { latencies, wallMs: performance.now() - start };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One line naming the machine, for the figures. */
export function machineLine(): string {
  const cpu = cpus();
  let load = '';
  try {
    load = ` · load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`;
  } catch {
    // not Linux
  }
  return `${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}${load}`;
}

export const fmt = (x: number, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : '-');
export const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

/** Credentials to seed, in the shape `provideCredential` stores them: one row per tenant and ANC. */
export interface SeededCredentials {
  tenant: string[];
  anc: string[];
  sealed: Buffer[];
  op: string[];
}

export function seededCredentials(): SeededCredentials {
  return { tenant: [], anc: [], sealed: [], op: [] };
}

/** Seals `count` passwords of `tenantId` (ANCs anc0, anc1, ...) under its tenant key version 1. */
export function sealSeededCredentials(
  cred: SeededCredentials,
  tenantId: string,
  tenantKey: Buffer,
  count: number,
  label: number,
): void {
  for (let a = 0; a < count; a++) {
    const ancId = `anc${a}`;
    cred.tenant.push(tenantId);
    cred.anc.push(ancId);
    cred.sealed.push(
      sealCredential({ tenantKey, keyVersion: 1, tenantId, ancId, plaintext: `Seeded-Password-${label}-${a}!` }),
    );
    cred.op.push(`seed/${tenantId}/${ancId}`);
  }
}

/**
 * Writes the ANC rows and their first credential versions. Call inside a transaction: the ANC row
 * names its current credential version (a deferred foreign key).
 */
export async function insertSeededAncs(
  client: { query(text: string, params: unknown[]): Promise<unknown> },
  cred: SeededCredentials,
): Promise<void> {
  await client.query(
    `INSERT INTO ancs (tenant_id, anc_id, display_name, ad_domain_name, ad_username, credential_version)
     SELECT t, a, 'Seeded ' || a, 'corp.contoso.test', 'svcDomainJoin@corp.contoso.test', 1
       FROM unnest($1::text[], $2::text[]) AS x(t, a)`,
    [cred.tenant, cred.anc],
  );
  await client.query(
    `INSERT INTO anc_credentials (tenant_id, anc_id, version, tenant_key_version, sealed, operation_id)
     SELECT t, a, 1, 1, s, o FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[]) AS x(t, a, s, o)`,
    [cred.tenant, cred.anc, cred.sealed, cred.op],
  );
}
