/**
 * The schema (migrations/) on the stack's PostgreSQL: it applies to an empty database, applying it again changes
 * nothing, and its constraints make the bad states of the model unrepresentable, each refused by the constraint
 * meant for it (checked by SQLSTATE and constraint name, not just "some error").
 */
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAudit } from '../activities/db/audit';
import { migrate } from '../activities/db/migrate';
import { inTransaction, type Pool } from '../activities/db/pool';
import { createEmptyDatabase, createTestDatabase, type TestDatabase } from './support/db';

/** Every migration in migrations/, in the order they apply. */
const ALL_MIGRATIONS = readdirSync(new URL('../migrations', import.meta.url))
  .filter((f) => f.endsWith('.sql'))
  .map((f) => f.replace(/\.sql$/, ''))
  .sort();

const CHECK = '23514';
const UNIQUE = '23505';
const FOREIGN_KEY = '23503';
const RAISED = 'P0001';

async function dbError(promise: Promise<unknown>): Promise<pg.DatabaseError> {
  try {
    await promise;
  } catch (e) {
    if (e instanceof pg.DatabaseError) return e;
    throw e;
  }
  throw new Error('expected the statement to be refused');
}

const emptyDatabase = () => createEmptyDatabase('schema');

/** Tables, columns, constraints, indexes, triggers and functions of the public schema, as comparable text. */
async function schemaSnapshot(url: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const out: string[] = [];
    for (const sql of [
      `SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' ||
              coalesce(column_default, '') AS s
         FROM information_schema.columns WHERE table_schema = 'public'`,
      `SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) AS s
         FROM pg_constraint WHERE connamespace = 'public'::regnamespace`,
      `SELECT indexdef AS s FROM pg_indexes WHERE schemaname = 'public'`,
      `SELECT tgrelid::regclass::text || ' ' || tgname || ' ' || tgenabled::text AS s
         FROM pg_trigger WHERE NOT tgisinternal`,
      `SELECT proname::text AS s FROM pg_proc WHERE pronamespace = 'public'::regnamespace`,
    ]) {
      out.push(...(await c.query<{ s: string }>(sql)).rows.map((row) => row.s));
    }
    return out.sort();
  } finally {
    await c.end();
  }
}

async function migrationsApplied(url: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<{ name: string }>('SELECT name FROM pgmigrations ORDER BY run_on, id')).rows.map(
      (r) => r.name,
    );
  } finally {
    await c.end();
  }
}

const APP_TABLES = [
  'anc_credentials',
  'ancs',
  'audit_log',
  'health_checks',
  'tenant_keys',
  'tenants',
  'used_envelopes',
];

describe('migrations', { timeout: 60_000 }, () => {
  it('apply on an empty database, and applying them again changes nothing', async () => {
    const db = await emptyDatabase();
    try {
      await migrate(db.url);
      const first = await schemaSnapshot(db.url);
      for (const table of APP_TABLES) expect(first.some((s) => s.startsWith(`${table}.`))).toBe(true);
      expect(await migrationsApplied(db.url)).toEqual(ALL_MIGRATIONS);

      await migrate(db.url);
      expect(await schemaSnapshot(db.url)).toEqual(first);
      expect(await migrationsApplied(db.url)).toEqual(ALL_MIGRATIONS);
    } finally {
      await db.drop();
    }
  });

  it('are safe to run from several processes at once (one applies, the others find nothing to do)', async () => {
    const db = await emptyDatabase();
    try {
      await Promise.all([migrate(db.url), migrate(db.url), migrate(db.url)]);
      expect(await migrationsApplied(db.url)).toEqual(ALL_MIGRATIONS);
      const snapshot = await schemaSnapshot(db.url);
      for (const table of APP_TABLES) expect(snapshot.some((s) => s.startsWith(`${table}.`))).toBe(true);
    } finally {
      await db.drop();
    }
  });

  it('roll back with the down migration, and apply again', async () => {
    const db = await emptyDatabase();
    try {
      await migrate(db.url);
      const applied = await schemaSnapshot(db.url);
      await runner({
        databaseUrl: db.url,
        dir: fileURLToPath(new URL('../migrations', import.meta.url)),
        direction: 'down',
        migrationsTable: 'pgmigrations',
        count: Infinity,
        singleTransaction: true,
        log: () => undefined,
      });
      const down = await schemaSnapshot(db.url);
      expect(down.filter((s) => APP_TABLES.some((t) => s.startsWith(`${t}.`) || s.startsWith(`${t} `)))).toEqual([]);
      expect(down.join('\n')).not.toMatch(/entity_id|audit_log_append_only/);
      await migrate(db.url);
      expect(await schemaSnapshot(db.url)).toEqual(applied);
    } finally {
      await db.drop();
    }
  });
});

describe('constraints make bad states unrepresentable', { timeout: 60_000 }, () => {
  let db: TestDatabase;
  let pool: Pool;

  beforeAll(async () => {
    db = await createTestDatabase('schema');
    pool = db.pool;
  });

  afterAll(async () => {
    await db?.drop();
  });

  const newId = (prefix: string): string => `${prefix}-${randomBytes(4).toString('hex')}`;
  const wrappedKey = (): Buffer => randomBytes(384);
  const sealed = (n = 120): Buffer => randomBytes(n);

  async function tenant(): Promise<string> {
    const id = newId('t');
    await pool.query(`INSERT INTO tenants (tenant_id) VALUES ($1)`, [id]);
    return id;
  }

  async function tenantKey(tenantId: string, version: number, state: 'active' | 'retiring'): Promise<void> {
    await pool.query(
      `INSERT INTO tenant_keys (tenant_id, version, state, wrapped_key, kek_id, kek_version, created_at, expires_at)
       VALUES ($1, $2, $3, $4, 'kek', 'v1', now(), now() + interval '1 year')`,
      [tenantId, version, state, wrappedKey()],
    );
  }

  /** A tenant with an active key 1 and one ANC whose credential version 1 is sealed with that key. */
  async function tenantWithAnc(): Promise<{ tenantId: string; ancId: string }> {
    const tenantId = await tenant();
    await tenantKey(tenantId, 1, 'active');
    const ancId = newId('anc');
    await inTransaction(pool, async (c) => {
      await c.query(
        `INSERT INTO ancs (tenant_id, anc_id, display_name, ad_domain_name, ad_username, credential_version)
         VALUES ($1, $2, 'ANC', 'corp.example.com', 'svc@corp.example.com', 1)`,
        [tenantId, ancId],
      );
      await c.query(
        `INSERT INTO anc_credentials (tenant_id, anc_id, version, tenant_key_version, sealed, operation_id)
         VALUES ($1, $2, 1, 1, $3, $4)`,
        [tenantId, ancId, sealed(), newId('op')],
      );
    });
    return { tenantId, ancId };
  }

  it('accepts the valid states the failures below are variations of', async () => {
    const { tenantId, ancId } = await tenantWithAnc();
    await tenantKey(tenantId, 2, 'retiring');
    await pool.query(
      `INSERT INTO anc_credentials (tenant_id, anc_id, version, tenant_key_version, sealed, operation_id)
       VALUES ($1, $2, 2, 2, $3, $4)`,
      [tenantId, ancId, sealed(69), newId('op')],
    );
    await pool.query(`UPDATE ancs SET credential_version = 2 WHERE tenant_id = $1 AND anc_id = $2`, [tenantId, ancId]);
    await pool.query(
      `UPDATE tenants SET state = 'deactivated', deactivated_at = now(), purge_at = now() + interval '29 days'
        WHERE tenant_id = $1`,
      [tenantId],
    );
    await pool.query(`UPDATE tenants SET state = 'purged', purged_at = now() WHERE tenant_id = $1`, [tenantId]);
    const { rows } = await pool.query(`SELECT state FROM tenants WHERE tenant_id = $1`, [tenantId]);
    expect(rows).toEqual([{ state: 'purged' }]);
  });

  it('refuses a deactivated tenant without purge_at (insert and update)', async () => {
    const inserted = await dbError(
      pool.query(`INSERT INTO tenants (tenant_id, state, deactivated_at) VALUES ($1, 'deactivated', now())`, [
        newId('t'),
      ]),
    );
    expect(inserted).toMatchObject({ code: CHECK, constraint: 'tenants_deactivation_dates' });

    const id = await tenant();
    const updated = await dbError(
      pool.query(`UPDATE tenants SET state = 'deactivated', deactivated_at = now() WHERE tenant_id = $1`, [id]),
    );
    expect(updated).toMatchObject({ code: CHECK, constraint: 'tenants_deactivation_dates' });

    // Nor without deactivated_at, nor purged before it was deactivated, nor an active tenant with a purge date.
    for (const sql of [
      `UPDATE tenants SET state = 'deactivated', purge_at = now() WHERE tenant_id = $1`,
      `UPDATE tenants SET state = 'deactivated', deactivated_at = now(), purge_at = now() - interval '1 day'
        WHERE tenant_id = $1`,
      `UPDATE tenants SET purge_at = now() + interval '1 day' WHERE tenant_id = $1`,
      `UPDATE tenants SET state = 'purged' WHERE tenant_id = $1`,
    ]) {
      expect(await dbError(pool.query(sql, [id]))).toMatchObject({
        code: CHECK,
        constraint: 'tenants_deactivation_dates',
      });
    }
    expect((await pool.query(`SELECT state FROM tenants WHERE tenant_id = $1`, [id])).rows).toEqual([
      { state: 'active' },
    ]);
  });

  it('refuses a second active key for one tenant', async () => {
    const id = await tenant();
    await tenantKey(id, 1, 'active');
    await tenantKey(id, 2, 'retiring');
    expect(await dbError(tenantKey(id, 3, 'active'))).toMatchObject({
      code: UNIQUE,
      constraint: 'tenant_keys_one_active',
    });
    expect(
      await dbError(pool.query(`UPDATE tenant_keys SET state = 'active' WHERE tenant_id = $1 AND version = 2`, [id])),
    ).toMatchObject({ code: UNIQUE, constraint: 'tenant_keys_one_active' });
    // Another tenant's active key is no conflict.
    await tenantKey(await tenant(), 1, 'active');
  });

  it('refuses a tenant key that expires at or before its creation', async () => {
    const id = await tenant();
    for (const expiresAt of [`'2030-01-01T00:00:00Z'`, `'2029-12-31T23:59:59Z'`]) {
      const err = await dbError(
        pool.query(
          `INSERT INTO tenant_keys (tenant_id, version, state, wrapped_key, kek_id, kek_version, created_at, expires_at)
           VALUES ($1, 1, 'active', $2, 'kek', 'v1', '2030-01-01T00:00:00Z', ${expiresAt})`,
          [id, wrappedKey()],
        ),
      );
      expect(err).toMatchObject({ code: CHECK, constraint: 'tenant_keys_expiry_after_creation' });
    }
  });

  it('refuses a credential naming a tenant key version that does not exist', async () => {
    const { tenantId, ancId } = await tenantWithAnc();
    const err = await dbError(
      pool.query(
        `INSERT INTO anc_credentials (tenant_id, anc_id, version, tenant_key_version, sealed, operation_id)
         VALUES ($1, $2, 2, 7, $3, $4)`,
        [tenantId, ancId, sealed(), newId('op')],
      ),
    );
    expect(err).toMatchObject({ code: FOREIGN_KEY, constraint: 'anc_credentials_tenant_id_tenant_key_version_fkey' });
    // Key 1 of ANOTHER tenant does not count either.
    const other = await tenantWithAnc();
    const moved = await dbError(
      pool.query(`UPDATE anc_credentials SET tenant_key_version = 2 WHERE tenant_id = $1`, [other.tenantId]),
    );
    expect(moved).toMatchObject({ code: FOREIGN_KEY, constraint: 'anc_credentials_tenant_id_tenant_key_version_fkey' });
  });

  it('refuses to delete a tenant key that a credential still uses', async () => {
    const { tenantId } = await tenantWithAnc();
    const err = await dbError(pool.query(`DELETE FROM tenant_keys WHERE tenant_id = $1 AND version = 1`, [tenantId]));
    expect(err).toMatchObject({ code: FOREIGN_KEY, constraint: 'anc_credentials_tenant_id_tenant_key_version_fkey' });
    expect((await pool.query(`SELECT 1 FROM tenant_keys WHERE tenant_id = $1`, [tenantId])).rowCount).toBe(1);
    // Once no credential uses it (the ANC is gone, as in a purge), the key can go.
    await pool.query(`DELETE FROM ancs WHERE tenant_id = $1`, [tenantId]);
    await pool.query(`DELETE FROM tenant_keys WHERE tenant_id = $1 AND version = 1`, [tenantId]);
    expect((await pool.query(`SELECT 1 FROM anc_credentials WHERE tenant_id = $1`, [tenantId])).rowCount).toBe(0);
  });

  it('refuses, at commit, an ANC whose current credential version has no row (deferred foreign key)', async () => {
    const id = await tenant();
    await tenantKey(id, 1, 'active');
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      // Deferred: the statement itself is accepted, so the ANC and its first credential can be inserted together.
      await client.query(
        `INSERT INTO ancs (tenant_id, anc_id, display_name, ad_domain_name, ad_username, credential_version)
         VALUES ($1, 'anc-1', 'ANC', 'corp.example.com', 'svc@corp.example.com', 1)`,
        [id],
      );
      const err = await dbError(client.query('COMMIT'));
      expect(err).toMatchObject({ code: FOREIGN_KEY, constraint: 'ancs_current_credential' });
    } finally {
      await client.query('ROLLBACK').catch(() => undefined);
      client.release();
    }
    expect((await pool.query(`SELECT 1 FROM ancs WHERE tenant_id = $1`, [id])).rowCount).toBe(0);

    // Moving an existing ANC to a credential version that does not exist is refused the same way.
    const { tenantId, ancId } = await tenantWithAnc();
    const moved = await dbError(
      inTransaction(pool, (c) =>
        c.query(`UPDATE ancs SET credential_version = 2 WHERE tenant_id = $1 AND anc_id = $2`, [tenantId, ancId]),
      ),
    );
    expect(moved).toMatchObject({ code: FOREIGN_KEY, constraint: 'ancs_current_credential' });
  });

  it('refuses bad entity ids wherever an entity id is stored', async () => {
    for (const bad of ['bad id!', '', '-leading-dash', '.hidden', 'x'.repeat(65), 'tab\tid', 'ünicode']) {
      const err = await dbError(pool.query(`INSERT INTO tenants (tenant_id) VALUES ($1)`, [bad]));
      expect(err, JSON.stringify(bad)).toMatchObject({ code: CHECK, constraint: 'entity_id_check' });
    }
    const id = await tenant();
    const anc = await dbError(
      pool.query(
        `INSERT INTO ancs (tenant_id, anc_id, display_name, ad_domain_name, ad_username, credential_version)
         VALUES ($1, 'bad id!', 'ANC', 'corp.example.com', 'svc@corp.example.com', 1)`,
        [id],
      ),
    );
    expect(anc).toMatchObject({ code: CHECK, constraint: 'entity_id_check' });
    const envelope = await dbError(
      pool.query(
        `INSERT INTO used_envelopes (envelope_id, tenant_id, anc_id, operation_id) VALUES ('e1', $1, 'bad id!', 'op')`,
        [id],
      ),
    );
    expect(envelope).toMatchObject({ code: CHECK, constraint: 'entity_id_check' });
    // The longest and the most varied valid ids are accepted.
    for (const good of ['a'.repeat(64), 'A0._-z']) {
      await pool.query(`INSERT INTO tenants (tenant_id) VALUES ($1)`, [good]);
    }
  });

  it('keeps audit_log append-only: UPDATE, DELETE and TRUNCATE are refused', async () => {
    const macKey = randomBytes(32);
    for (let i = 0; i < 3; i++) {
      await inTransaction(pool, (c) =>
        appendAudit(c, macKey, {
          eventKey: newId('evt'),
          event: 'anc.created',
          at: new Date(),
          actor: 'schema-test',
          outcome: 'success',
          details: { i },
        }),
      );
    }
    const before = (await pool.query('SELECT * FROM audit_log ORDER BY seq')).rows;
    expect(before.length).toBeGreaterThanOrEqual(3);
    for (const sql of [
      `UPDATE audit_log SET details = '{"i": 99}' WHERE seq = 1`,
      `UPDATE audit_log SET outcome = 'failure'`,
      `DELETE FROM audit_log WHERE seq = 2`,
      `DELETE FROM audit_log`,
      `TRUNCATE audit_log`,
    ]) {
      const err = await dbError(pool.query(sql));
      expect(err, sql).toMatchObject({ code: RAISED, message: 'audit_log is append-only' });
    }
    expect((await pool.query('SELECT * FROM audit_log ORDER BY seq')).rows).toEqual(before);
  });

  it('refuses a sealed blob shorter than 69 bytes (the smallest valid sealed format)', async () => {
    const { tenantId, ancId } = await tenantWithAnc();
    for (const length of [0, 1, 68]) {
      const err = await dbError(
        pool.query(
          `INSERT INTO anc_credentials (tenant_id, anc_id, version, tenant_key_version, sealed, operation_id)
           VALUES ($1, $2, 2, 1, $3, $4)`,
          [tenantId, ancId, sealed(length), newId('op')],
        ),
      );
      expect(err, `${length} bytes`).toMatchObject({ code: CHECK, constraint: 'anc_credentials_sealed_check' });
    }
    await pool.query(
      `INSERT INTO anc_credentials (tenant_id, anc_id, version, tenant_key_version, sealed, operation_id)
       VALUES ($1, $2, 2, 1, $3, $4)`,
      [tenantId, ancId, sealed(69), newId('op')],
    );
  });
});
