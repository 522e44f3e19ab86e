/**
 * Shared by the health-check tests: the test directory's fixtures (stack/ldap/up.sh; test-only,
 * non-secret values), an admin client for it, and a service-like ActivityDeps.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Attribute, Change, Client, Control } from 'ldapts';
import pino from 'pino';
import { sealPasswordEnvelope } from '../../client/envelope';
import { provideCredential } from '../../activities/credentials';
import type { ActivityDeps } from '../../activities/deps';
import { KekDirectory } from '../../activities/kek/directory';
import { LocalDevKekProvider } from '../../activities/kek/local-dev';
import { describeCurrentKek } from '../../activities/keyring';
import type { CredentialStored } from '../../common/types';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { stackEnv } from '../support/stack';
import type { LdapProbeSettings } from '../../activities/health/ldap';

export const DOMAIN = 'corp.contoso.test';
export const SUFFIX = 'dc=corp,dc=contoso,dc=test';
export const ADMIN_DN = `cn=admin,${SUFFIX}`;
export const ADMIN_PASSWORD = 'Admin-Test-Only-1!';
export const CLOUD_PCS_OU = `ou=CloudPCs,${SUFFIX}`;

/** The seeded accounts (see stack/ldap/up.sh). */
export const USERS = {
  domainJoin: { name: 'svcDomainJoin', password: 'Join-Test-Only-1!' },
  rotate: { name: 'svcRotate', password: 'Rotate-Test-Only-1!' },
  locked: { name: 'svcLocked', password: 'Locked-Test-Only-1!' },
  disabled: { name: 'svcDisabled', password: 'Disabled-Test-Only-1!' },
  expired: { name: 'svcExpired', password: 'Expired-Test-Only-1!' },
  mustChange: { name: 'svcMustChange', password: 'MustChange-Test-Only-1!' },
  expiring: { name: 'svcExpiring', password: 'Expiring-Test-Only-1!' },
  adExpiry: { name: 'svcAdExpiry', password: 'AdExpiry-Test-Only-1!' },
} as const;

export const upn = (name: string): string => `${name}@${DOMAIN}`;
export const userDn = (name: string): string => `cn=${name},ou=ServiceAccounts,${SUFFIX}`;

/** The test directory's URL from .stack/env; a missing or silent directory fails, never skips. */
export function directoryUrl(): URL {
  const url = stackEnv().LDAP_URL;
  if (!url) {
    throw new Error(
      'the test directory (OpenLDAP) is not part of the running stack: .stack/env has no LDAP_URL; run "bash stack/up.sh"',
    );
  }
  return new URL(url);
}

export async function adminClient(): Promise<Client> {
  const url = directoryUrl();
  const client = new Client({ url: url.toString(), timeout: 5000, connectTimeout: 5000 });
  try {
    await client.bind(ADMIN_DN, ADMIN_PASSWORD);
  } catch (err) {
    await client.unbind().catch(() => undefined);
    throw new Error(
      `the test directory at ${url.toString()} is not reachable or refused the admin bind (${(err as Error).message}); run "bash stack/up.sh"`,
    );
  }
  return client;
}

/** As the directory admin: set a user's password (ppolicy_hash_cleartext stores it hashed). */
export async function setDirectoryPassword(name: string, password: string): Promise<void> {
  const client = await adminClient();
  try {
    await client.modify(
      userDn(name),
      new Change({ operation: 'replace', modification: new Attribute({ type: 'userPassword', values: [password] }) }),
    );
  } finally {
    await client.unbind();
  }
}

const RELAX_OID = '1.3.6.1.4.1.4203.666.5.12';

/** As the admin with the Relax control: replace (or delete, with no values) any attribute, operational ones too. */
export async function setAttribute(name: string, type: string, values: string[]): Promise<void> {
  const client = await adminClient();
  try {
    await client.modify(
      userDn(name),
      new Change({ operation: values.length ? 'replace' : 'delete', modification: new Attribute({ type, values }) }),
      new Control(RELAX_OID, { critical: true }),
    );
  } finally {
    await client.unbind();
  }
}

export function generalizedTime(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/[-:T]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

export function ldapSettings(
  overrides: Partial<ActivityDeps['config']['ldap'] & LdapProbeSettings> = {},
): ActivityDeps['config']['ldap'] {
  const url = directoryUrl();
  return {
    urlTemplate: `ldap://{domain}:${url.port || '389'}`,
    startTls: false,
    timeoutMs: 3000,
    dnsOverrides: { [DOMAIN]: url.hostname },
    upnBind: 'auto',
    passwordExpiryWarningDays: 14,
    ...overrides,
  };
}

export interface HealthTestEnv {
  db: TestDatabase;
  deps: ActivityDeps;
  logs: string[];
  kekDir: string;
  /** Deps with other LDAP settings (same pool, KEK and log capture). */
  withLdap(overrides: Partial<ActivityDeps['config']['ldap'] & LdapProbeSettings>): ActivityDeps;
  close(): Promise<void>;
}

export async function createHealthTestEnv(): Promise<HealthTestEnv> {
  const db = await createTestDatabase('health');
  const kekDir = mkdtempSync(join(tmpdir(), 'anc-health-kek-'));
  const kek = new KekDirectory(new LocalDevKekProvider(kekDir, 2048));
  await kek.bootstrap(new Date());
  const logs: string[] = [];
  const logger = pino({ level: 'trace' }, { write: (line: string) => void logs.push(line) });
  const deps: ActivityDeps = {
    pool: db.pool,
    kek,
    logger,
    config: {
      auditMacKey: Buffer.alloc(32, 0x42),
      maxAncsPerTenant: 1000,
      envelopeMaxAgeSeconds: 300,
      tenantRetentionMs: 29 * 24 * 3600 * 1000,
      disableUnreferencedKekVersions: false,
      ldap: ldapSettings(),
    },
  };
  return {
    db,
    deps,
    logs,
    kekDir,
    withLdap: (overrides) => ({ ...deps, config: { ...deps.config, ldap: ldapSettings(overrides) } }),
    async close() {
      await db.drop();
      rmSync(kekDir, { recursive: true, force: true });
    },
  };
}

export const uniqueId = (prefix: string): string => `${prefix}-${randomBytes(5).toString('hex')}`;

/** Creates an ANC through the real provideCredential path (client envelope → sealed credential). */
export async function createAnc(
  deps: ActivityDeps,
  args: {
    tenantId: string;
    ancId: string;
    username: string;
    password: string;
    domain?: string;
    organizationalUnit?: string;
  },
): Promise<CredentialStored> {
  const kek = await describeCurrentKek(deps);
  const now = Date.now();
  const passwordEnvelope = await sealPasswordEnvelope({
    password: args.password,
    kek,
    tenantId: args.tenantId,
    ancId: args.ancId,
    op: 'create',
  });
  return provideCredential(deps, {
    mode: 'create',
    tenantId: args.tenantId,
    ancId: args.ancId,
    spec: {
      displayName: `health test ${args.ancId}`,
      adDomainName: args.domain ?? DOMAIN,
      adDomainUsername: args.username,
      ...(args.organizationalUnit ? { organizationalUnit: args.organizationalUnit } : {}),
    },
    passwordEnvelope,
    receivedAtMs: now,
    nowMs: now,
    operationId: uniqueId(`create-${args.ancId}`),
    actor: 'health-test',
    workflowId: `wf-${args.ancId}`,
  });
}

/** updateAdDomainPassword through the real provideCredential path. */
export async function updateAncPassword(
  deps: ActivityDeps,
  args: { tenantId: string; ancId: string; password: string },
): Promise<CredentialStored> {
  const kek = await describeCurrentKek(deps);
  const now = Date.now();
  const passwordEnvelope = await sealPasswordEnvelope({
    password: args.password,
    kek,
    tenantId: args.tenantId,
    ancId: args.ancId,
    op: 'update',
  });
  return provideCredential(deps, {
    mode: 'update',
    tenantId: args.tenantId,
    ancId: args.ancId,
    passwordEnvelope,
    receivedAtMs: now,
    nowMs: now,
    operationId: uniqueId(`update-${args.ancId}`),
    actor: 'health-test',
    workflowId: `wf-${args.ancId}`,
  });
}
