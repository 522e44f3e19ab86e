import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/db';
import { startDevServer } from './support/harness';
import { ROOT, stackKekTrust } from './support/stack';
import { startWorkerProcess, workerEnv, type WorkerProcess } from './support/worker-process';

const run = promisify(execFile);

/**
 * The project as another team and the container image get it: `npm pack` (of the dist/ built by the
 * global setup), installed with production dependencies only into a scratch folder outside the
 * repository. The SDK is type-checked and used from there; the worker runs from there.
 */
describe('the packed package', () => {
  let scratch: string;
  let pkg: string;
  let env: TestWorkflowEnvironment;
  let db: TestDatabase;
  let worker: WorkerProcess | undefined;
  const taskQueue = `tq-${randomBytes(6).toString('hex')}`;

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'anc-package-'));
    expect(scratch.startsWith(ROOT)).toBe(false);
    const [server, database] = await Promise.all([
      startDevServer(),
      createTestDatabase(),
      (async () => {
        await run('npm', ['pack', '--silent', '--pack-destination', scratch], { cwd: ROOT });
        const tarball = readdirSync(scratch).find((f) => f.endsWith('.tgz'));
        if (!tarball) throw new Error('npm pack made no tarball');
        writeFileSync(
          join(scratch, 'package.json'),
          JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
        );
        // Production dependencies only, as the image's runtime stage installs them.
        await run(
          'npm',
          [
            'install',
            '--omit=dev',
            '--prefer-offline',
            '--no-audit',
            '--no-fund',
            '--loglevel=error',
            join(scratch, tarball),
          ],
          { cwd: scratch, maxBuffer: 16 * 1024 * 1024 },
        );
      })(),
    ]);
    env = server;
    db = database;
    pkg = join(scratch, 'node_modules/anc-credential-service');
  }, 300_000);

  afterAll(async () => {
    await worker?.stop();
    await db?.drop();
    await env?.teardown();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('ships compiled code only, with production dependencies only', () => {
    expect(existsSync(join(pkg, 'dist/worker/main.js'))).toBe(true);
    expect(existsSync(join(pkg, 'dist/workflow-bundle.js'))).toBe(true);
    expect(existsSync(join(pkg, 'dist/client/index.d.ts'))).toBe(true);
    expect(existsSync(join(pkg, 'dist/migrations'))).toBe(true);
    for (const source of ['worker', 'client', 'activities', 'workflows', 'test', 'stack']) {
      expect(existsSync(join(pkg, source)), source).toBe(false);
    }
    for (const dev of ['typescript', 'vitest', 'tsx', 'esbuild', 'eslint']) {
      expect(existsSync(join(scratch, 'node_modules', dev)), dev).toBe(false);
    }
  });

  it('exports the SDK and nothing of the worker; the SDK reaches no database, directory or Key Vault code', async () => {
    const check = `
      const sdk = await import('anc-credential-service');
      const out = { exports: Object.keys(sdk).sort(), blocked: [] };
      for (const path of ['anc-credential-service/dist/worker/main.js', 'anc-credential-service/dist/activities/index.js']) {
        try { await import(path); } catch (e) { out.blocked.push(e.code); }
      }
      console.log(JSON.stringify(out));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', check], { cwd: scratch });
    const out = JSON.parse(stdout) as { exports: string[]; blocked: string[] };
    expect(out.exports).toEqual(expect.arrayContaining(['AncClient', 'AncServiceError', 'ConfigError']));
    expect(out.blocked).toEqual(['ERR_PACKAGE_PATH_NOT_EXPORTED', 'ERR_PACKAGE_PATH_NOT_EXPORTED']);

    // Every module the entry point loads, followed through relative imports.
    const seen = new Set<string>();
    const bare = new Set<string>();
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const code = readFileSync(file, 'utf8');
      for (const m of code.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'|^\s*import\s+'([^']+)'/gm)) {
        const spec = (m[1] ?? m[2]) as string;
        if (spec.startsWith('.')) visit(resolve(dirname(file), spec));
        else bare.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : (spec.split('/')[0] as string));
      }
    };
    visit(join(pkg, 'dist/client/index.js'));
    const local = [...seen].map((f) => f.slice(pkg.length + 1));
    expect(local.filter((f) => /^dist\/(activities|worker)\//.test(f))).toEqual([]);
    expect(
      [...bare].filter((p) => /^(pg|ldapts|node-pg-migrate|pino|@azure\/.*|@temporalio\/worker)$/.test(p)),
    ).toEqual([]);
  });

  it("runs the installed `anc` bin: help and argument errors, and a command that loads the client's code", async () => {
    const anc = join(scratch, 'node_modules/.bin/anc');
    const cliEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      ANC_STACK_ENV: '/nonexistent',
      TEMPORAL_ADDRESS: env.address,
      TEMPORAL_TASK_QUEUE: taskQueue,
    };
    const exec = async (args: string[]) => {
      try {
        const { stdout, stderr } = await run(anc, args, { cwd: scratch, env: cliEnv });
        return { code: 0, stdout, stderr };
      } catch (err) {
        const e = err as { code?: number; stdout?: string; stderr?: string };
        return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
      }
    };
    const help = await exec(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage: anc/);
    expect(help.stdout).toMatch(/\bget\b/);
    const usage = await exec(['get', '--tenant', 'fabrikam']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--anc/);
    // Loads the Temporal client from the package's own files and asks the server: not found is a refusal.
    const missing = await exec(['get', '--tenant', 'fabrikam', '--anc', 'nowhere', '--json']);
    expect(missing.stderr).toMatch(/not ?found/i);
    expect(missing.code).toBe(1);
  });

  it('starts the worker from the installed package and serves a program type-checked against its types', async () => {
    worker = startWorkerProcess(
      join(pkg, 'dist/worker/main.js'),
      workerEnv({ databaseUrl: db.url, temporalAddress: env.address, taskQueue }),
      scratch,
    );
    await worker.waitForMessage('Worker started');

    writeFileSync(
      join(scratch, 'consumer.ts'),
      `import { AncClient, AncServiceError, type AncView } from 'anc-credential-service';

const sdk = await AncClient.fromEnv();
const input = {
  tenantId: 'fabrikam',
  ancId: 'branch',
  displayName: 'Fabrikam branch',
  adDomainName: 'corp.contoso.test',
  adDomainUsername: 'svcDomainJoin@corp.contoso.test',
  password: 'Consumer-Pa55word!',
  actor: 'consumer-test',
};
const created: AncView = await sdk.createAnc(input);
const got: AncView = await sdk.getAnc('fabrikam', 'branch');
const deleted: { deleted: boolean } = await sdk.deleteAnc('fabrikam', 'branch', { actor: 'consumer-test' });
let afterDelete = '';
try {
  await sdk.getAnc('fabrikam', 'branch');
} catch (err) {
  if (err instanceof AncServiceError) afterDelete = err.type;
}
console.log(JSON.stringify({ created: created.state, got: got.credentialVersion, deleted: deleted.deleted, afterDelete }));
await sdk.temporal.connection.close();
`,
    );
    writeFileSync(
      join(scratch, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          // As consumers compile (the Temporal SDK's own declarations need @types/ms otherwise).
          skipLibCheck: true,
          typeRoots: [join(ROOT, 'node_modules/@types')],
          types: ['node'],
          outDir: 'out',
        },
        files: ['consumer.ts'],
      }),
    );
    const tsc = join(ROOT, 'node_modules/.bin/tsc');
    await run(tsc, ['-p', 'tsconfig.json'], { cwd: scratch }).catch((err: { stdout?: string }) => {
      throw new Error(`the consumer program does not type-check:\n${err.stdout}`);
    });
    // The types are the SDK's own, not `any`: a misuse is refused.
    writeFileSync(
      join(scratch, 'misuse.ts'),
      `import type { AncView } from 'anc-credential-service';\nexport const n = (v: AncView): number => v.state;\n`,
    );
    writeFileSync(
      join(scratch, 'tsconfig.misuse.json'),
      JSON.stringify({ extends: './tsconfig.json', files: ['misuse.ts'] }),
    );
    const misuse = await run(tsc, ['-p', 'tsconfig.misuse.json', '--noEmit'], { cwd: scratch }).then(
      () => 'accepted',
      (err: { stdout?: string }) => err.stdout ?? '',
    );
    expect(misuse).toMatch(/misuse\.ts\(2,\d+\): error TS2322: Type '[^']+' is not assignable to type 'number'/);

    const trust = stackKekTrust();
    const { stdout } = await run(process.execPath, ['out/consumer.js'], {
      cwd: scratch,
      env: {
        PATH: process.env.PATH,
        TEMPORAL_ADDRESS: env.address,
        TEMPORAL_TASK_QUEUE: taskQueue,
        HOME: scratch,
        // The consumer trusts the local test CA that issues the KEK certificate, as a real client would its CA.
        ANC_KEK_TRUST_ANCHOR: trust.trustAnchorPem,
        ANC_KEK_SUBJECT: trust.subject,
      },
    });
    expect(JSON.parse(stdout)).toEqual({ created: 'active', got: 1, deleted: true, afterDelete: 'AncNotFound' });

    expect(await worker.stop()).toBe(0);
    for (const line of worker.stdout().trimEnd().split('\n')) expect(() => JSON.parse(line), line).not.toThrow();
  });
});
