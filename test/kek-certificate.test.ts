/**
 * Certificate-mode KEK, against a Key Vault emulator process of this file's own (HTTPS, driven by the
 * unmodified Azure SDK) and a fresh PostgreSQL database:
 *   - the emulator's certificates API (create with a policy and its pending operation, get, versions,
 *     policy, the key behind each version under /keys, issuing from its test CA or self-signed);
 *   - the certificate provider (local wrap with the certificate's key, remote unwrap, disabled and
 *     expired versions never wrap);
 *   - the rotation adopting a version Key Vault's AutoRenew made (emulator clock), re-wrapping every
 *     tenant key with one unwrap each and no remote wrap, and asking Key Vault to renew when 90 days
 *     or fewer remain without a newer version.
 */
import { randomUUID, X509Certificate } from 'node:crypto';
import { CertificateClient, type CertificateClientOptions } from '@azure/keyvault-certificates';
import { KeyClient, type KeyClientOptions } from '@azure/keyvault-keys';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provideCredential } from '../activities/credentials';
import { openCredential } from '../activities/crypto/seal';
import { verifyAuditChain } from '../activities/db/audit';
import type { ActivityDeps } from '../activities/deps';
import { KekDirectory } from '../activities/kek/directory';
import { KekVersionUnusableError } from '../activities/kek/provider';
import { describeCurrentKek } from '../activities/keyring';
import { renewKekIfDue, rewrapTenantKeys } from '../activities/rotation';
import { sealPasswordEnvelope } from '../client/envelope';
import { x509 } from '../client/x509';
import { emulatorCredential } from '../worker/kek';
import { createTestDatabase, type TestDatabase } from './support/db';
import { azureEmulatorCertificateKek, startEmulatorProcess, type EmulatorProcess } from './support/emulator-process';

const DAY_S = 86_400;
let kv: EmulatorProcess;
let testCa: X509Certificate;

beforeAll(async () => {
  kv = await startEmulatorProcess();
  testCa = new X509Certificate(await kv.testCaPem());
});
afterAll(async () => {
  await kv?.stop();
});

const sdkOptions = () => ({
  disableChallengeResourceVerification: true,
  tlsOptions: { ca: kv.caPem },
});
const certificates = () =>
  new CertificateClient(kv.url, emulatorCredential, sdkOptions() as unknown as CertificateClientOptions);
const keys = () => new KeyClient(kv.url, emulatorCredential, sdkOptions() as KeyClientOptions);

const kekPolicy = (issuerName: string) => ({
  issuerName,
  subject: 'CN=anc-credential-kek',
  keyType: 'RSA-HSM' as const,
  keySize: 2048,
  exportable: false,
  validityInMonths: 12,
  keyUsage: ['keyEncipherment' as const],
  lifetimeActions: [{ action: 'AutoRenew' as const, daysBeforeExpiry: 90 }],
});

function keyUsageOf(der: Uint8Array): x509.KeyUsageFlags {
  const ext = new x509.X509Certificate(der).getExtension(x509.KeyUsagesExtension);
  if (!ext) throw new Error('certificate without a key usage extension');
  return ext.usages;
}

describe('Key Vault emulator: certificates API through @azure/keyvault-certificates', () => {
  it('creates from a policy with a pending operation, issued by the test CA, with the key under /keys', async () => {
    const client = certificates();
    const name = `cert-${randomUUID().slice(0, 8)}`;
    const poller = await client.beginCreateCertificate(name, kekPolicy('anc-test-ca'), { intervalInMs: 20 });
    expect(poller.isDone()).toBe(false);
    const created = await poller.pollUntilDone();
    expect(poller.isDone()).toBe(true);

    const leaf = new X509Certificate(Buffer.from(created.cer!));
    expect(leaf.subject).toBe('CN=anc-credential-kek');
    expect(leaf.issuer).toBe(testCa.subject);
    expect(leaf.verify(testCa.publicKey)).toBe(true);
    expect(keyUsageOf(created.cer!) & x509.KeyUsageFlags.keyEncipherment).toBeTruthy();
    expect(new Date(leaf.validTo).getTime() - new Date(leaf.validFrom).getTime()).toBeGreaterThan(364 * DAY_S * 1000);
    expect(created.properties.expiresOn?.getTime()).toBe(new Date(leaf.validTo).getTime());

    const latest = await client.getCertificate(name);
    const byVersion = await client.getCertificateVersion(name, created.properties.version!);
    expect(latest.properties.version).toBe(created.properties.version);
    expect(Buffer.from(byVersion.cer!).equals(Buffer.from(created.cer!))).toBe(true);
    const versions: string[] = [];
    for await (const p of client.listPropertiesOfCertificateVersions(name)) versions.push(p.version!);
    expect(versions).toEqual([created.properties.version]);

    const policy = await client.getCertificatePolicy(name);
    expect(policy).toMatchObject({
      issuerName: 'anc-test-ca',
      keyType: 'RSA-HSM',
      keySize: 2048,
      exportable: false,
      validityInMonths: 12,
      lifetimeActions: [{ action: 'AutoRenew', daysBeforeExpiry: 90 }],
    });
    // (the SDK's updateCertificatePolicy does not return what the vault answered: read it back)
    await client.updateCertificatePolicy(name, {
      ...policy,
      lifetimeActions: [{ action: 'EmailContacts', daysBeforeExpiry: 30 }],
    });
    expect(await client.getCertificatePolicy(name)).toMatchObject({
      issuerName: 'anc-test-ca',
      lifetimeActions: [{ action: 'EmailContacts', daysBeforeExpiry: 30 }],
    });

    // The key behind the version: same public key, not exportable, unwraps.
    const key = await keys().getKey(name, { version: created.properties.version! });
    const jwk = leaf.publicKey.export({ format: 'jwk' });
    expect(Buffer.from(key.key!.n!).toString('base64url')).toBe(jwk.n);
    expect(key.properties.exportable).toBe(false);
    expect(key.keyOperations).toContain('unwrapKey');
    expect(key.key?.kty).toBe('RSA-HSM');
  });

  it('issues Self certificates self-signed, and refuses a policy it cannot honour', async () => {
    const client = certificates();
    const name = `self-${randomUUID().slice(0, 8)}`;
    const cert = await (
      await client.beginCreateCertificate(name, kekPolicy('Self'), { intervalInMs: 20 })
    ).pollUntilDone();
    const leaf = new X509Certificate(Buffer.from(cert.cer!));
    expect(leaf.issuer).toBe(leaf.subject);
    expect(leaf.verify(leaf.publicKey)).toBe(true);
    expect(leaf.verify(testCa.publicKey)).toBe(false);

    await expect(
      client.beginCreateCertificate(name, { ...kekPolicy('Self'), exportable: true }, { intervalInMs: 20 }),
    ).rejects.toMatchObject({ statusCode: 400 });
    await expect(client.getCertificateVersion(name, '0'.repeat(32))).rejects.toMatchObject({ statusCode: 404 });
  });
});

describe('certificate-mode KEK provider and rotation', { timeout: 60_000 }, () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase('cert');
  });
  afterAll(async () => {
    await db?.drop();
  });

  function depsFor(kek: KekDirectory): ActivityDeps {
    return {
      pool: db.pool,
      kek,
      logger: pino({ level: 'silent' }),
      config: {
        auditMacKey: Buffer.alloc(32, 9),
        maxAncsPerTenant: 10,
        envelopeMaxAgeSeconds: 300,
        tenantRetentionMs: 29 * 24 * 3600 * 1000,
        disableUnreferencedKekVersions: false,
        ldap: {
          urlTemplate: 'ldap://127.0.0.1:1',
          startTls: false,
          timeoutMs: 1000,
          dnsOverrides: {},
          upnBind: 'auto',
          passwordExpiryWarningDays: 14,
        },
      },
    };
  }

  it('wraps locally with the certificate key, unwraps in the vault, never wraps with a disabled version', async () => {
    const provider = azureEmulatorCertificateKek(kv);
    const dir = new KekDirectory(provider, 0);
    const first = await dir.bootstrap(new Date());
    expect(first.x5c).toHaveLength(1);
    const leaf = new X509Certificate(Buffer.from(first.x5c![0]!, 'base64'));
    expect(leaf.publicKey.export({ format: 'jwk' }).n).toBe(first.publicJwk.n);
    expect(await provider.storedPolicy()).toMatchObject({ keyType: 'RSA-HSM', exportable: false });

    await kv.reset();
    const key = Buffer.alloc(32, 5);
    const wrapped = await provider.wrap(key, first);
    expect((await provider.unwrap(wrapped, first.version)).equals(key)).toBe(true);
    const stats = await kv.stats();
    expect(stats.operations.wrapkey).toBe(0);
    expect(stats.operations.unwrapkey).toBe(1);

    await provider.disableVersion(first.version);
    const again = azureEmulatorCertificateKek(kv, { keyName: first.kekId });
    const listed = await again.listVersions();
    expect(listed.map((v) => [v.version, v.enabled])).toEqual([[first.version, false]]);
    await expect(again.wrap(key, listed[0]!)).rejects.toBeInstanceOf(KekVersionUnusableError);
    expect(await again.currentVersion()).toBeUndefined();
  });

  it('adopts the version AutoRenew made and re-wraps to it; asks for a renewal when none came', async () => {
    const provider = azureEmulatorCertificateKek(kv);
    const dir = new KekDirectory(provider, 0);
    const v1 = await dir.bootstrap(new Date());
    const deps = depsFor(dir);
    const actor = 'rotation';
    const rotationId = `rot-${randomUUID()}`;
    const tenants = ['contoso', 'fabrikam', 'tailspin'].map((t) => `${t}-${randomUUID().slice(0, 6)}`);
    for (const tenantId of tenants) {
      const passwordEnvelope = await sealPasswordEnvelope({
        password: `Pw#${tenantId}`,
        kek: await describeCurrentKek(deps),
        tenantId,
        ancId: 'hq',
        op: 'create',
      });
      await provideCredential(deps, {
        mode: 'create',
        tenantId,
        ancId: 'hq',
        spec: {
          displayName: 'HQ',
          adDomainName: 'corp.contoso.test',
          adDomainUsername: 'svc@corp.contoso.test',
        },
        passwordEnvelope,
        receivedAtMs: Date.now(),
        nowMs: Date.now(),
        operationId: `seed/${randomUUID()}`,
        actor,
        workflowId: 'seed',
      });
    }

    // Nothing due yet: no new version, nothing audited.
    const early = await renewKekIfDue(deps, { nowMs: Date.now(), actor, rotationId });
    expect(early).toMatchObject({ currentVersion: v1.version, renewed: false });

    // 280 days on, Key Vault's AutoRenew (90 days before expiry) has made a new version.
    const renewedAt = await kv.advanceClock(280 * DAY_S);
    await kv.reset();
    const adopted = await renewKekIfDue(deps, { nowMs: renewedAt, actor, rotationId });
    expect(adopted.renewed).toBe(true);
    expect(adopted.previousVersion).toBe(v1.version);
    expect(adopted.currentVersion).not.toBe(v1.version);
    expect((await kv.stats()).operations.certificates).toBeGreaterThan(0);
    const { rows: audits } = await db.pool.query(
      `SELECT details FROM audit_log WHERE event = 'kek.renewed' AND details->>'kekId' = $1 ORDER BY seq`,
      [v1.kekId],
    );
    expect(audits.map((r) => r.details.source)).toEqual(['adopted']);

    const batch = await rewrapTenantKeys(deps, {
      targetKekVersion: adopted.currentVersion,
      after: null,
      limit: 100,
      concurrency: 4,
      nowMs: renewedAt,
      actor,
      rotationId,
    });
    expect(batch).toMatchObject({ rewrapped: tenants.length, hsmUnwraps: tenants.length, failed: [], done: true });
    const stats = await kv.stats();
    expect(stats.operations.unwrapkey).toBe(tenants.length);
    expect(stats.operations.wrapkey).toBe(0);

    // Every credential still opens with its tenant key, now wrapped by the adopted version.
    const { rows } = await db.pool.query(
      `SELECT c.tenant_id, c.anc_id, c.sealed, c.tenant_key_version, k.wrapped_key, k.kek_version
         FROM anc_credentials c JOIN tenant_keys k ON k.tenant_id = c.tenant_id AND k.version = c.tenant_key_version
        WHERE c.tenant_id = ANY($1)`,
      [tenants],
    );
    expect(rows).toHaveLength(tenants.length);
    for (const r of rows) {
      expect(r.kek_version).toBe(adopted.currentVersion);
      const tenantKey = await provider.unwrap(r.wrapped_key, r.kek_version);
      const password = openCredential({
        tenantKey,
        keyVersion: r.tenant_key_version,
        tenantId: r.tenant_id,
        ancId: r.anc_id,
        sealed: r.sealed,
      });
      expect(password).toBe(`Pw#${r.tenant_id}`);
    }
    // A repeat adopts nothing twice.
    expect((await renewKekIfDue(deps, { nowMs: renewedAt, actor, rotationId })).renewed).toBe(false);

    // v1 has expired 100 days later: it is never a wrap target again.
    const later = renewedAt + 100 * DAY_S * 1000;
    await expect(
      rewrapTenantKeys(deps, {
        targetKekVersion: v1.version,
        after: null,
        limit: 10,
        concurrency: 1,
        nowMs: later,
        actor,
        rotationId,
      }),
    ).rejects.toMatchObject({ type: 'KekUnavailable' });

    // Without AutoRenew in the policy, once 90 days or fewer remain the service asks Key Vault to renew.
    const client = certificates();
    const policy = await client.getCertificatePolicy(v1.kekId);
    await client.updateCertificatePolicy(v1.kekId, {
      ...policy,
      lifetimeActions: [{ action: 'EmailContacts', daysBeforeExpiry: 30 }],
    });
    const late = await kv.advanceClock(280 * DAY_S);
    const requested = await renewKekIfDue(deps, { nowMs: late, actor, rotationId });
    expect(requested.renewed).toBe(true);
    expect(requested.previousVersion).toBe(adopted.currentVersion);
    const versions = await provider.listVersions();
    expect(versions.map((v) => v.version)).toEqual([v1.version, adopted.currentVersion, requested.currentVersion]);
    const { rows: after } = await db.pool.query(
      `SELECT details FROM audit_log WHERE event = 'kek.renewed' AND details->>'kekId' = $1 ORDER BY seq`,
      [v1.kekId],
    );
    expect(after.map((r) => r.details.source)).toEqual(['adopted', 'renewal-requested']);
    expect((await verifyAuditChain(db.pool, deps.config.auditMacKey)).ok).toBe(true);
  });
});
