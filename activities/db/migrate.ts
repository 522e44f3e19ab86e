import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import pg from 'pg';

const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));
// Distinct from node-pg-migrate's own lock id.
const MIGRATE_QUEUE_LOCK_ID = 0x616e636d; // "ancm"

/**
 * Applies every pending migration. Safe to call from several processes at once: node-pg-migrate's
 * own lock is a try-lock (a second caller fails with "Another migration is already running"), so
 * callers first queue on a blocking advisory lock, and each finds the work done by the one before.
 */
export async function migrate(databaseUrl: string): Promise<void> {
  const queue = new pg.Client({ connectionString: databaseUrl, application_name: 'anc-migrate' });
  queue.on('error', () => undefined); // a lost connection fails the pending query instead
  await queue.connect();
  try {
    await queue.query('SELECT pg_advisory_lock($1)', [MIGRATE_QUEUE_LOCK_ID]);
    await runner({
      databaseUrl,
      dir: MIGRATIONS_DIR,
      direction: 'up',
      migrationsTable: 'pgmigrations',
      count: Infinity,
      singleTransaction: true,
      log: () => undefined,
    });
  } finally {
    // Ending the session releases the advisory lock.
    await queue.end();
  }
}
