import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadTemporalSettings } from '../common/temporal-config';
import { envSchema, loadConfig } from '../worker/config';
import { CONFIG_BASE as base, configProblems as problems } from './support/config';

describe('worker configuration', () => {
  it('reports every problem at once, one line each, starting with the variable', () => {
    const found = problems({
      HOME: '/nonexistent',
      NODE_ENV: 'production',
      KEYVAULT_URL: 'http://vault.example',
      KEYVAULT_KEY_SIZE: '1024',
      MAX_ANCS_PER_TENANT: 'many',
      LDAP_STARTTLS: 'perhaps',
      LDAP_UPN_BIND: 'sometimes',
      DNS_OVERRIDES: 'corp.contoso.test',
      METRICS_PORT: '70000',
      AUDIT_MAC_KEY: 'c2hvcnQ=',
      TEMPORAL_TLS_CLIENT_CERT_PATH: '/nonexistent/cert.pem',
    });
    const variables = found.map((line) => line.split(' ')[0]);
    expect(variables.sort()).toEqual(
      [
        'DATABASE_URL',
        'KEYVAULT_URL',
        'KEYVAULT_KEY_SIZE',
        'MAX_ANCS_PER_TENANT',
        'LDAP_STARTTLS',
        'LDAP_UPN_BIND',
        'DNS_OVERRIDES',
        'METRICS_PORT',
        'AUDIT_MAC_KEY',
        'TEMPORAL_TLS_CLIENT_KEY_PATH',
        'TEMPORAL_TLS_CLIENT_CERT_PATH',
      ].sort(),
    );
    for (const line of found) expect(line).not.toContain('\n');
    expect(found).toContain('DATABASE_URL is required');
    expect(found).toContain('MAX_ANCS_PER_TENANT must be an integer from 1 to 10000 (got "many")');
  });

  it('applies defaults and reads the values it is given', () => {
    const config = loadConfig({
      ...base,
      HEALTH_PORT: '8081',
      SHUTDOWN_GRACE_SECONDS: '12',
      LDAP_UPN_BIND: ' lookup ',
    });
    expect(config.temporal).toMatchObject({
      address: '127.0.0.1:7233',
      namespace: 'default',
      taskQueue: 'anc-credentials',
    });
    expect(config).toMatchObject({
      healthPort: 8081,
      metricsPort: undefined,
      shutdownGraceSeconds: 12,
      maxAncsPerTenant: 10,
    });
    expect(config.ldap.upnBind).toBe('lookup');
    expect(config.kek.kind).toBe('local-dev');
  });

  it('refuses development shortcuts in production', () => {
    const found = problems({
      ...base,
      NODE_ENV: 'production',
      KEYVAULT_URL: 'https://vault.example',
      KEYVAULT_EMULATOR: 'true',
    });
    expect(found.sort()).toEqual([
      'AUDIT_MAC_KEY is required in production (32 random bytes, base64)',
      'KEYVAULT_EMULATOR must not be set in production',
    ]);
  });

  it('requires Key Vault in production: the local development KEK is refused', () => {
    const auditKey = Buffer.alloc(32, 9).toString('base64');
    expect(problems({ ...base, NODE_ENV: 'production', AUDIT_MAC_KEY: auditKey })).toEqual([
      'KEYVAULT_URL is required in production (the local development KEK is not for production)',
    ]);
  });

  it('limits the HSM budget to the vault limit for the key size', () => {
    expect(problems({ ...base, KEYVAULT_URL: 'https://v.example', KEYVAULT_HSM_OPS_PER_SECOND: '60' })).toEqual([
      'KEYVAULT_HSM_OPS_PER_SECOND must be at most 50 for 3072-bit keys (got "60")',
    ]);
    const ok = loadConfig({ ...base, KEYVAULT_URL: 'https://v.example', KEYVAULT_KEY_SIZE: '2048' });
    expect(ok.kek).toMatchObject({ kind: 'azure-key-vault', hsmOpsPerSecond: 100, keySize: 2048 });
  });

  it('exports the schema as an object other areas extend', () => {
    const extended = envSchema.extend({ EXTRA_SETTING: z.string().default('x') });
    const parsed = extended.parse({ DATABASE_URL: base.DATABASE_URL });
    expect(parsed.EXTRA_SETTING).toBe('x');
    expect(parsed.MAX_ANCS_PER_TENANT).toBe(10);
  });
});

describe('Temporal connection settings (environment configuration)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'anc-envconfig-'));
  const file = join(dir, 'temporal.toml');
  writeFileSync(
    file,
    [
      '[profile.default]',
      'address = "file-default:7233"',
      'namespace = "from-file"',
      '[profile.cloud]',
      'address = "cloud.example:7233"',
      'namespace = "prod.acct"',
      'api_key = "not-a-real-key"',
    ].join('\n'),
  );

  it('reads a profile from the config file, the environment overriding it', () => {
    expect(loadTemporalSettings({ TEMPORAL_CONFIG_FILE: file })).toMatchObject({
      address: 'file-default:7233',
      namespace: 'from-file',
    });
    const cloud = loadTemporalSettings({
      TEMPORAL_CONFIG_FILE: file,
      TEMPORAL_PROFILE: 'cloud',
      TEMPORAL_NAMESPACE: 'other',
    });
    expect(cloud).toMatchObject({ address: 'cloud.example:7233', namespace: 'other' });
    // An API key turns TLS on.
    expect(cloud.connectionOptions).toMatchObject({ apiKey: 'not-a-real-key', tls: true });
  });

  it('names the variable of an unknown profile or an unreadable TLS file', () => {
    expect(() => loadTemporalSettings({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'nosuch' })).toThrow(
      /TEMPORAL_PROFILE: Profile 'nosuch' not found/,
    );
    expect(() =>
      loadTemporalSettings({ TEMPORAL_TLS_SERVER_CA_CERT_PATH: join(dir, 'missing.pem'), HOME: '/nonexistent' }),
    ).toThrow(/TEMPORAL_TLS_SERVER_CA_CERT_PATH names a file that cannot be read/);
  });
});
