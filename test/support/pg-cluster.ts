import { execFileSync } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { migrate } from '../../activities/db/migrate';
import { createPool } from '../../activities/db/pool';
import type { TestDatabase } from './db';

/** A free loopback TCP port (released before it is returned, so there is a small race). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface PgCluster {
  /** A migrated database on this cluster, with a pool of 20. */
  db: TestDatabase;
  port: number;
  /** pg_ctl stop -m fast: clients are disconnected, the port closes. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the cluster and removes its files. */
  destroy(): Promise<void>;
}

/**
 * A PostgreSQL cluster of a test file's own (initdb in a temporary folder, on a free port), so
 * stopping it disturbs nothing else. Uses the same server binaries as stack/up.sh.
 */
export async function startPgCluster(): Promise<PgCluster> {
  const versions = readdirSync('/usr/lib/postgresql').sort((a, b) => Number(a) - Number(b));
  const bin = join('/usr/lib/postgresql', versions[versions.length - 1] ?? '', 'bin');
  const root = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'anc-pg-'));
  const data = join(dir, 'data');
  const sock = join(dir, 'sock');
  mkdirSync(sock);
  if (root) {
    execFileSync('chown', ['-R', 'postgres', dir]);
    chownSync(dir, Number(execFileSync('id', ['-u', 'postgres']).toString().trim()), 0);
  }
  const asPg = (cmd: string, args: string[]) =>
    root
      ? execFileSync('runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args], { stdio: 'pipe' })
      : execFileSync(join(bin, cmd), args, { stdio: 'pipe' });
  asPg('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-locale']);
  const port = await freePort();
  const start = async () => {
    asPg('pg_ctl', [
      '-D',
      data,
      '-l',
      join(dir, 'postgres.log'),
      '-w',
      '-t',
      '60',
      '-o',
      `-c listen_addresses=127.0.0.1 -p ${port} -k ${sock} -c fsync=off -c max_connections=100`,
      'start',
    ]);
  };
  const stop = async () => {
    asPg('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
  };
  await start();
  const admin = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` });
  await admin.connect();
  await admin.query('CREATE DATABASE anc');
  await admin.end();
  const url = `postgres://postgres@127.0.0.1:${port}/anc`;
  await migrate(url);
  const pool = createPool(url, 20);
  let stopped = false;
  return {
    port,
    db: { url, pool, drop: async () => void (await pool.end()) },
    stop: async () => {
      await stop();
      stopped = true;
    },
    start: async () => {
      await start();
      stopped = false;
    },
    async destroy() {
      await pool.end().catch(() => undefined);
      if (!stopped) await stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
