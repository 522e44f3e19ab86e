import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, envSchema } from '../worker/config';
import { ROOT } from './support/stack';

const check = (file: string, profiles = '', json = false, extraEnv: Record<string, string> = {}) =>
  execFileSync('go', ['run', '.', ...(json ? ['--json'] : []), file], {
    cwd: `${ROOT}stack/compose-check`,
    encoding: 'utf8',
    stdio: 'pipe',
    env: { ...process.env, ...extraEnv, COMPOSE_PROFILES: profiles },
  });

interface Service {
  image?: string;
  build?: { target?: string };
  environment?: Record<string, string | null>;
  healthcheck?: { test?: string[] };
  deploy?: { replicas?: number };
  volumes?: { type: string; source: string; target: string; read_only?: boolean }[];
  profiles?: string[];
}
const project = (
  profiles: string,
  extraEnv: Record<string, string> = {},
): { services: Record<string, Service>; volumes: Record<string, unknown> } =>
  JSON.parse(check(`${ROOT}docker-compose.yml`, profiles, true, extraEnv));

/** Variables read by Temporal's environment configuration and by DefaultAzureCredential (not by our schema). */
const TEMPORAL_ENVCONFIG = /^TEMPORAL_(ADDRESS|NAMESPACE|API_KEY|PROFILE|CONFIG_FILE|TLS(_.+)?)$/;
const DEFAULT_AZURE_CREDENTIAL = new Set([
  'AZURE_TENANT_ID',
  'AZURE_CLIENT_ID',
  'AZURE_CLIENT_SECRET',
  'AZURE_CLIENT_CERTIFICATE_PATH',
  'AZURE_FEDERATED_TOKEN_FILE',
  'AZURE_AUTHORITY_HOST',
]);

describe('docker-compose.yml', () => {
  it('loads with the Compose specification loader, each profile', () => {
    expect(check(`${ROOT}docker-compose.yml`)).toMatch(/^valid: 4 services/);
    expect(check(`${ROOT}docker-compose.yml`, 'production')).toMatch(/^valid: 5 services/);
    expect(check(`${ROOT}docker-compose.yml`, 'local')).toMatch(/^valid: 6 services/);
  });

  it('the check fails on a broken file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'compose-'));
    copyFileSync(`${ROOT}docker-compose.yml`, join(dir, 'docker-compose.yml'));
    const broken = readFileSync(join(dir, 'docker-compose.yml'), 'utf8').replace(
      'temporal-postgresql: { condition: service_healthy }',
      'nosuch: { condition: service_healthy }',
    );
    writeFileSync(join(dir, 'docker-compose.yml'), broken);
    expect(() => check(join(dir, 'docker-compose.yml'))).toThrow();
  });

  it('runs Temporal on PostgreSQL with official images, its UI, the service database and two workers', () => {
    const { services, volumes } = project('production');
    expect(services.temporal?.image).toMatch(/^temporalio\/auto-setup:\d/);
    expect(services.temporal?.environment).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'temporal-postgresql' });
    expect(services['temporal-ui']?.image).toMatch(/^temporalio\/ui:\d/);
    expect(services['temporal-postgresql']?.image).toMatch(/^postgres:\d/);
    expect(services.postgres?.image).toMatch(/^postgres:\d/);
    expect(services.worker?.build?.target).toBe('runtime');
    expect(services.worker?.deploy?.replicas).toBe(2);
    for (const [name, service] of Object.entries(services)) {
      if (name !== 'temporal-ui') expect(service.healthcheck?.test, name).toBeDefined();
    }
    expect(Object.keys(volumes).sort()).toEqual(['anc-postgresql', 'keyvault-certs', 'temporal-postgresql']);
    for (const db of ['postgres', 'temporal-postgresql'])
      expect(services[db]?.volumes?.[0]).toMatchObject({ type: 'volume', target: '/var/lib/postgresql/data' });
  });

  it('sets on the workers only variables the code reads, with values the schema accepts', () => {
    const env = (profiles: string, name: string) => {
      const raw = project(profiles).services[name]?.environment ?? {};
      return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, v ?? '']));
    };
    const production = env('production', 'worker');
    const local = env('local', 'worker-local');
    for (const name of new Set([...Object.keys(production), ...Object.keys(local)])) {
      const read = name in envSchema.shape || TEMPORAL_ENVCONFIG.test(name) || DEFAULT_AZURE_CREDENTIAL.has(name);
      expect(read, `${name} is set but nothing reads it`).toBe(true);
    }
    expect(local).not.toHaveProperty('NODE_TLS_REJECT_UNAUTHORIZED');
    expect(production).not.toHaveProperty('NODE_TLS_REJECT_UNAUTHORIZED');

    // With the values an operator supplies, the worker's own parsing accepts both.
    const supplied = { AUDIT_MAC_KEY: Buffer.alloc(32, 1).toString('base64'), HOME: '/nonexistent' };
    const prod = loadConfig({ ...production, ...supplied, KEYVAULT_URL: 'https://myvault.vault.azure.net' });
    expect(prod.kek).toMatchObject({ kind: 'azure-key-vault', emulator: false });
    expect(prod).toMatchObject({ healthPort: 8080, metricsPort: 9464 });
    expect(prod.temporal).toMatchObject({ address: 'temporal:7233', namespace: 'default' });
    // Several vaults reach the production workers too.
    const vaults = 'primary=https://a.vault.azure.net,eu2=https://b.vault.azure.net';
    const withVaults = project('production', { KEYVAULT_VAULTS: vaults, KEYVAULT_CLOSED_VAULTS: 'primary' });
    const severalEnv = Object.entries(withVaults.services.worker?.environment ?? {}).map(([k, v]) => [k, v ?? '']);
    const several = loadConfig({ ...Object.fromEntries(severalEnv), ...supplied });
    expect(several.vaults.map((v) => [v.id, v.kek.kind === 'azure-key-vault' && v.kek.vaultUrl, v.closed])).toEqual([
      ['primary', 'https://a.vault.azure.net', true],
      ['eu2', 'https://b.vault.azure.net', false],
    ]);
    // Unset, the production worker refuses to start rather than use a development key.
    expect(() => loadConfig({ ...production, HOME: '/nonexistent' })).toThrow(
      /AUDIT_MAC_KEY is required in production/,
    );
    const dev = loadConfig({ ...local, HOME: '/nonexistent' });
    expect(dev.kek).toMatchObject({ kind: 'azure-key-vault', emulator: true, caPath: '/certs/cert.pem' });

    // The local workers trust the emulator's certificate from the volume it writes.
    const localProject = project('local');
    expect(localProject.services['worker-local']?.volumes?.[0]).toMatchObject({
      source: 'keyvault-certs',
      target: '/certs',
      read_only: true,
    });
    expect(localProject.services['keyvault-emulator']?.volumes?.[0]).toMatchObject({ source: 'keyvault-certs' });
  });
});

describe('Dockerfile', () => {
  const dockerfile = readFileSync(`${ROOT}Dockerfile`, 'utf8');
  const stages = dockerfile.split(/^FROM /m).slice(1);
  const runtime = stages.find((s) => /^\S+ AS runtime$/m.test(s)) ?? '';

  it('passes hadolint', () => {
    const hadolint = `${ROOT}.tools/venv/bin/hadolint`;
    expect(existsSync(hadolint), 'hadolint is installed by stack/up.sh').toBe(true);
    expect(execFileSync(hadolint, ['--failure-threshold', 'info', `${ROOT}Dockerfile`], { encoding: 'utf8' })).toBe('');
    // The linter does fail on a bad file.
    const dir = mkdtempSync(join(tmpdir(), 'dockerfile-'));
    writeFileSync(join(dir, 'Dockerfile'), 'FROM node:latest\nRUN cd /app && npm install\n');
    expect(() => execFileSync(hadolint, [join(dir, 'Dockerfile')], { stdio: 'pipe' })).toThrow();
  });

  it('builds in one stage and runs compiled code with production dependencies as a non-root user', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(runtime).toMatch(/npm install --omit=dev/);
    expect(runtime).toMatch(/^COPY --from=build \/src\/dist \.\/dist$/m);
    expect(runtime).toMatch(/^USER 1000:1000$/m);
    expect(runtime).toMatch(/^HEALTHCHECK .*\n.*\/healthz/m);
    expect(runtime).toMatch(/^CMD \["node", "dist\/worker\/main\.js"\]$/m);
    expect(runtime).not.toMatch(/tsx|NODE_TLS_REJECT_UNAUTHORIZED/);
    // The last stage is what `docker build` makes by default.
    expect(stages.at(-1)).toBe(runtime);
  });

  it('sends only sources to the build, nothing local or secret', () => {
    const ignore = readFileSync(`${ROOT}.dockerignore`, 'utf8').split('\n');
    expect(ignore[ignore.findIndex((l) => !l.startsWith('#'))]).toBe('*');
    for (const kept of ignore.filter((l) => l.startsWith('!'))) {
      expect(kept).not.toMatch(/\.stack|\.tools|node_modules|dist|\.env/);
    }
  });
});
