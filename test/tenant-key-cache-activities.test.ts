import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealPasswordEnvelope } from '../client/envelope';
import { provideCredential } from '../activities/credentials';
import { openCredential } from '../activities/crypto/seal';
import type { ActivityDeps } from '../activities/deps';
import { checkAncHealth } from '../activities/health/check';
import { TenantKeyCache } from '../activities/kek/tenant-key-cache';
import { describeCurrentKek } from '../activities/keyring';
import { rewrapTenantKeys } from '../activities/rotation';
import { deactivateTenantData, finishTenantPurge, reactivateTenantData } from '../activities/tenant';
import { loadConfig } from '../worker/config';
import { createAnc, createHealthTestEnv, uniqueId, upn, USERS, type HealthTestEnv } from './health/support';

const DAY = 86_400_000;

/**
 * The tenant-key cache inside the activities that use it: health checks, updates and re-seals read
 * through it; replacement, re-wrap, deactivation and purge empty it for the tenant at once. Real
 * PostgreSQL and the local KEK, whose provider counts every unwrap (the HSM call it stands for).
 */
describe('tenant-key cache in the activities', () => {
  let env: HealthTestEnv;
  beforeAll(async () => {
    env = await createHealthTestEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  const withCache = (limits = { maxEntries: 100, maxAgeMs: 60_000, maxUses: 1000 }) => {
    const cache = new TenantKeyCache(limits);
    const deps: ActivityDeps = { ...env.deps, tenantKeyCache: cache };
    return { cache, deps };
  };
  const unwraps = () => env.deps.kek.provider.stats().remoteUnwraps;

  async function update(deps: ActivityDeps, tenantId: string, ancId: string, password: string, nowMs = Date.now()) {
    const passwordEnvelope = await sealPasswordEnvelope({
      password,
      kek: await describeCurrentKek(deps),
      tenantId,
      ancId,
      op: 'update',
    });
    return provideCredential(deps, {
      mode: 'update',
      tenantId,
      ancId,
      passwordEnvelope,
      receivedAtMs: Date.now(),
      nowMs,
      operationId: uniqueId('update'),
      actor: 'cache-test',
      workflowId: `wf-${ancId}`,
    });
  }
  const check = (deps: ActivityDeps, tenantId: string, ancId: string) =>
    checkAncHealth(deps, {
      tenantId,
      ancId,
      checkId: uniqueId('check'),
      nowMs: Date.now(),
      actor: 'cache-test',
      workflowId: `wf-${ancId}`,
    });
  async function openCurrent(deps: ActivityDeps, tenantId: string, ancId: string) {
    const { rows } = await env.db.pool.query(
      `SELECT c.sealed, c.tenant_key_version, k.wrapped_key, k.kek_version
         FROM ancs a JOIN anc_credentials c ON c.tenant_id = a.tenant_id AND c.anc_id = a.anc_id AND c.version = a.credential_version
         JOIN tenant_keys k ON k.tenant_id = c.tenant_id AND k.version = c.tenant_key_version
        WHERE a.tenant_id = $1 AND a.anc_id = $2`,
      [tenantId, ancId],
    );
    const row = rows[0];
    const key = await deps.kek.provider.unwrap(row.wrapped_key, row.kek_version);
    return {
      version: row.tenant_key_version as number,
      password: openCredential({
        tenantKey: key,
        keyVersion: row.tenant_key_version,
        tenantId,
        ancId,
        sealed: row.sealed,
      }),
    };
  }

  it('health checks and updates of one tenant cost one tenant-key unwrap between them', async () => {
    const { cache, deps } = withCache();
    const tenantId = uniqueId('t');
    await createAnc(deps, {
      tenantId,
      ancId: 'a1',
      username: upn(USERS.domainJoin.name),
      password: USERS.domainJoin.password,
    });
    const before = unwraps();
    await createAnc(deps, {
      tenantId,
      ancId: 'a2',
      username: upn(USERS.domainJoin.name),
      password: USERS.domainJoin.password,
    });

    for (let i = 0; i < 3; i++) {
      expect((await check(deps, tenantId, 'a1')).status).toBe('passed');
      await check(deps, tenantId, 'a2');
    }
    await update(deps, tenantId, 'a1', USERS.domainJoin.password);
    await update(deps, tenantId, 'a2', USERS.domainJoin.password);
    // A second create, six checks and two updates: one tenant-key unwrap, plus the three envelopes
    // (never cached).
    expect(unwraps() - before).toBe(4);
    expect(cache.stats()).toMatchObject({ misses: 1, hits: 8, entries: 1 });

    // The same work without the cache: every use unwraps.
    const plain = { ...env.deps, tenantKeyCache: new TenantKeyCache({ maxEntries: 0, maxAgeMs: 1, maxUses: 1 }) };
    const base = unwraps();
    for (let i = 0; i < 3; i++) await check(plain, tenantId, 'a1');
    expect(unwraps() - base).toBe(3);
  });

  it('a replaced tenant key (expired, new version) is dropped at once and never seals again', async () => {
    const { cache, deps } = withCache();
    const tenantId = uniqueId('t');
    await createAnc(deps, { tenantId, ancId: 'a', username: upn(USERS.domainJoin.name), password: 'First#Password1' });
    await check(deps, tenantId, 'a'); // caches version 1
    expect(cache.stats().entries).toBe(1);
    // Thirteen months later the active key has expired: the update generates version 2.
    const stored = await update(deps, tenantId, 'a', 'Second#Password2', Date.now() + 400 * DAY);
    expect(stored.tenantKeyVersion).toBe(2);
    expect(cache.stats().entries).toBe(0);
    expect(await openCurrent(deps, tenantId, 'a')).toEqual({ version: 2, password: 'Second#Password2' });
  });

  it('another worker replacing the key: this worker’s cached entry can no longer be hit', async () => {
    const a = withCache();
    const b = withCache();
    const tenantId = uniqueId('t');
    await createAnc(a.deps, {
      tenantId,
      ancId: 'x',
      username: upn(USERS.domainJoin.name),
      password: 'Alpha#Password1',
    });
    await check(a.deps, tenantId, 'x'); // worker A caches version 1
    // Worker B replaces the key (expired by its clock); worker A knows nothing of it.
    await update(b.deps, tenantId, 'x', 'Beta#Password2', Date.now() + 400 * DAY);
    expect(a.cache.stats().entries).toBe(1);
    // Worker A's next update reads the active row (version 2) and seals under it, not under its
    // cached version 1.
    const missesBefore = a.cache.stats().misses;
    const stored = await update(a.deps, tenantId, 'x', 'Gamma#Password3', Date.now() + 400 * DAY);
    expect(stored.tenantKeyVersion).toBe(2);
    expect(a.cache.stats().misses).toBe(missesBefore + 1);
    expect(await openCurrent(a.deps, tenantId, 'x')).toEqual({ version: 2, password: 'Gamma#Password3' });
  });

  it('a re-wrap drops the entry under the old wrapping; the next check unwraps the new one', async () => {
    const { cache, deps } = withCache();
    const tenantId = uniqueId('t');
    await createAnc(deps, {
      tenantId,
      ancId: 'a',
      username: upn(USERS.domainJoin.name),
      password: USERS.domainJoin.password,
    });
    await check(deps, tenantId, 'a');
    expect(cache.stats().entries).toBe(1);
    const target = await deps.kek.provider.createVersion(new Date(Date.now() + 365 * DAY));
    deps.kek.invalidate();
    const r = await rewrapTenantKeys(deps, {
      targetKekVersion: target.version,
      after: null,
      limit: 10,
      concurrency: 1,
      nowMs: Date.now(),
      rotationId: 'rot',
      actor: 'cache-test',
      keys: [{ tenantId, version: 1 }],
    });
    expect(r.rewrapped).toBe(1);
    expect(r.hsmUnwraps).toBe(0); // the cached key was re-wrapped without an HSM call
    expect(cache.stats().entries).toBe(0);
    const before = unwraps();
    expect((await check(deps, tenantId, 'a')).status).toBe('passed');
    expect(unwraps() - before).toBe(1);
  });

  it('deactivation and purge drop the tenant’s keys at once', async () => {
    const { cache, deps } = withCache();
    const tenantId = uniqueId('t');
    const other = uniqueId('t');
    await createAnc(deps, {
      tenantId,
      ancId: 'a',
      username: upn(USERS.domainJoin.name),
      password: USERS.domainJoin.password,
    });
    await createAnc(deps, {
      tenantId: other,
      ancId: 'a',
      username: upn(USERS.domainJoin.name),
      password: USERS.domainJoin.password,
    });
    await check(deps, tenantId, 'a');
    await check(deps, other, 'a');
    expect(cache.stats().entries).toBe(2);
    const now = Date.now();
    await deactivateTenantData(deps, { tenantId, nowMs: now, actor: 'cache-test', workflowId: 'wf', retentionDays: 1 });
    expect(cache.stats().entries).toBe(1); // the other tenant's entry stays
    await reactivateTenantData(deps, { tenantId, nowMs: now + 1, actor: 'cache-test', workflowId: 'wf' });
    await check(deps, tenantId, 'a');
    expect(cache.stats().entries).toBe(2);
    await deactivateTenantData(deps, {
      tenantId,
      nowMs: now + 2,
      actor: 'cache-test',
      workflowId: 'wf',
      retentionDays: 1,
    });
    await check(deps, other, 'a');
    // A check slipping in after deactivation would re-cache; the purge drops it again.
    cache.put({ tenantId, tenantKeyVersion: 1, kekVersion: 'any', wrappedKey: Buffer.from('x') }, Buffer.alloc(32, 1));
    const purged = await finishTenantPurge(deps, {
      tenantId,
      nowMs: now + 2 * DAY,
      actor: 'cache-test',
      workflowId: 'wf-purge',
      counts: { ancs: 1, credentials: 1, healthChecks: 0, usedEnvelopes: 1, tenantKeys: 1 },
    });
    expect(purged.purged).toBe(true);
    expect(cache.stats().entries).toBe(1);
  });

  it('is off with TENANT_KEY_CACHE_MAX_ENTRIES=0', () => {
    const base = { DATABASE_URL: 'postgres://x/y' };
    const on = loadConfig(base);
    expect(on.tenantKeyCache).toEqual({ maxEntries: 10_000, maxAgeSeconds: 300, maxUses: 1000 });
    const off = loadConfig({ ...base, TENANT_KEY_CACHE_MAX_ENTRIES: '0' });
    const cache = new TenantKeyCache({
      maxEntries: off.tenantKeyCache.maxEntries,
      maxAgeMs: off.tenantKeyCache.maxAgeSeconds * 1000,
      maxUses: off.tenantKeyCache.maxUses,
    });
    expect(cache.enabled).toBe(false);
    expect(() => loadConfig({ ...base, TENANT_KEY_CACHE_MAX_AGE_SECONDS: '0' })).toThrow(
      /TENANT_KEY_CACHE_MAX_AGE_SECONDS/,
    );
  });
});
