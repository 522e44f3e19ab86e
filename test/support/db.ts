import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate } from '../../activities/db/migrate';
import { createPool, type Pool } from '../../activities/db/pool';
import { stackEnv } from './stack';

export interface TestDatabase {
  url: string;
  pool: Pool;
  drop(): Promise<void>;
}

/** An empty database (not migrated) on the stack's PostgreSQL server, dropped by `drop()`. */
export async function createEmptyDatabase(prefix = 'test'): Promise<{ url: string; drop(): Promise<void> }> {
  const base = stackEnv().DATABASE_URL;
  const name = `${prefix}_${randomBytes(6).toString('hex')}`.toLowerCase();
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** A fresh, migrated database per test file, on the stack's PostgreSQL server. */
export async function createTestDatabase(prefix = 'test'): Promise<TestDatabase> {
  const empty = await createEmptyDatabase(prefix);
  await migrate(empty.url);
  const pool = createPool(empty.url, 20);
  return {
    url: empty.url,
    pool,
    async drop() {
      await pool.end();
      await empty.drop();
    },
  };
}

/** Every row of every table in the public schema, as text, for searching for secrets. */
export async function dumpAllTables(pool: Pool): Promise<string> {
  const { rows: tables } = await pool.query<{ tablename: string }>(
    `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`,
  );
  let out = '';
  for (const { tablename } of tables) {
    const { rows } = await pool.query(`SELECT * FROM "${tablename}"`);
    out += `== ${tablename}\n`;
    for (const row of rows) {
      out +=
        JSON.stringify(row, (_k, v: unknown) =>
          v && typeof v === 'object' && 'type' in v && (v as { type: string }).type === 'Buffer'
            ? Buffer.from((v as unknown as { data: number[] }).data).toString('hex')
            : v,
        ) + '\n';
    }
  }
  return out;
}
