import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inTransaction } from '../activities/db/pool';
import { KekDirectory } from '../activities/kek/directory';
import { generateTenantKeyVersion, obtainTenantKey, unwrapActiveTenantKeyEarly } from '../activities/tenant-keys';
import { createTestDatabase, type TestDatabase } from './support/db';
import { localKek } from './support/harness';

// provideCredential unwraps the tenant key before it takes the tenant lock (overlapping the
// envelope's unwrap). Under the lock the early key may be used only while it is still the active one.
describe('tenant key unwrapped before the lock (PostgreSQL, local KEK)', () => {
  let db: TestDatabase;
  let kek: KekDirectory;
  const macKey = Buffer.alloc(32, 3);
  const now = new Date();
  const audit = (key: string) => ({ actor: 'test', workflowId: 'wf', eventKey: key });

  beforeAll(async () => {
    db = await createTestDatabase('early');
    kek = new KekDirectory(localKek(), 0);
    await kek.bootstrap(now);
  });
  afterAll(async () => {
    await db?.drop();
  });

  const newTenant = async (tenantId: string) => {
    await db.pool.query('INSERT INTO tenants (tenant_id) VALUES ($1)', [tenantId]);
  };

  it('a tenant without a usable key has no early key', async () => {
    await newTenant('early-none');
    expect(await unwrapActiveTenantKeyEarly(db.pool, kek, 'early-none', now)).toBeUndefined();
  });

  it('the early key is used as is, with no second unwrap, while it is still the active key', async () => {
    await newTenant('early-same');
    const generated = await inTransaction(db.pool, (c) =>
      generateTenantKeyVersion(c, kek, macKey, { tenantId: 'early-same', now, audit: audit('g1') }),
    );
    const early = await unwrapActiveTenantKeyEarly(db.pool, kek, 'early-same', now);
    expect(early?.key.equals(generated.key)).toBe(true);
    const unwrapsBefore = kek.provider.stats().remoteUnwraps;
    const got = await inTransaction(db.pool, (c) =>
      obtainTenantKey(c, kek, macKey, { tenantId: 'early-same', now, audit: audit('o1'), early }),
    );
    expect(got.version).toBe(1);
    expect(got.generated).toBe(false);
    expect(got.key).toBe(early?.key);
    expect(kek.provider.stats().remoteUnwraps).toBe(unwrapsBefore);
  });

  it('a key replaced after the early unwrap is not used: the active one is, and the early copy is zeroed', async () => {
    await newTenant('early-stale');
    await inTransaction(db.pool, (c) =>
      generateTenantKeyVersion(c, kek, macKey, { tenantId: 'early-stale', now, audit: audit('s1') }),
    );
    const early = await unwrapActiveTenantKeyEarly(db.pool, kek, 'early-stale', now);
    expect(early).toBeDefined();
    const earlyCopy = Buffer.from(early?.key ?? []);
    const replaced = await inTransaction(db.pool, (c) =>
      generateTenantKeyVersion(c, kek, macKey, { tenantId: 'early-stale', now, audit: audit('s2') }),
    );
    const got = await inTransaction(db.pool, (c) =>
      obtainTenantKey(c, kek, macKey, { tenantId: 'early-stale', now, audit: audit('o2'), early }),
    );
    expect(got.version).toBe(2);
    expect(got.key.equals(replaced.key)).toBe(true);
    expect(got.key.equals(earlyCopy)).toBe(false);
    expect(early?.key.every((b) => b === 0)).toBe(true);
  });
});
