import { Client, Connection, type ConnectionOptions } from '@temporalio/client';
import pg from 'pg';
import type { Pool } from '../activities/db/pool';
import { loadConfig } from '../worker/config';
import { temporalConnectionOptions } from '../worker/temporal';
import { CliError, EXIT } from './cli-io';
import { kekTrustFromEnv } from './kek-trust';
import { AncClient } from './sdk';

/**
 * The CLI's connections, configured from the environment with the worker's own `loadConfig`, so
 * the variables, defaults and checks are the same. Each reads only the variables it needs, so a
 * setting the CLI does not use (LDAP, Key Vault...) can neither be required nor fail it.
 */

/** The variables the Temporal commands read (see worker/config.ts). */
export const TEMPORAL_ENV = [
  'TEMPORAL_ADDRESS',
  'TEMPORAL_NAMESPACE',
  'TEMPORAL_TASK_QUEUE',
  'TEMPORAL_API_KEY',
  'TEMPORAL_TLS_CERT',
  'TEMPORAL_TLS_KEY',
  'TEMPORAL_TLS_CA',
  'TEMPORAL_TLS_SERVER_NAME',
  'HEALTH_CHECK_INTERVAL_MINUTES',
  'NODE_ENV',
] as const;

/** The variables the audit commands read. */
export const AUDIT_ENV = ['DATABASE_URL', 'AUDIT_MAC_KEY', 'NODE_ENV'] as const;

function pick(env: NodeJS.ProcessEnv, names: readonly string[]): NodeJS.ProcessEnv {
  return Object.fromEntries(names.filter((n) => env[n] !== undefined).map((n) => [n, env[n]]));
}

/** Connecting failed; `cause` says why (unreachable, TLS, credentials...). */
export class TemporalConnectionError extends Error {
  constructor(message: string, cause: unknown) {
    super(message, { cause });
    this.name = 'TemporalConnectionError';
  }
}

export interface TemporalSdk {
  /** Connects on first use; later calls share the connection. */
  sdk(): Promise<AncClient>;
  /** Closes the connection if one was made; does not wait for one still being made. */
  close(): Promise<void>;
}

export function temporalSdkFromEnv(env: NodeJS.ProcessEnv = process.env): TemporalSdk {
  let pending: Promise<AncClient> | undefined;
  const connect = async (): Promise<AncClient> => {
    // loadConfig insists on DATABASE_URL, which the Temporal commands never use.
    const config = loadConfig({ ...pick(env, TEMPORAL_ENV), DATABASE_URL: 'postgres://unused' });
    let options: ConnectionOptions;
    try {
      options = temporalConnectionOptions(config.temporal);
    } catch (err) {
      // The TLS files named by TEMPORAL_TLS_* could not be read.
      throw new CliError('ConfigError', `cannot read the Temporal TLS files: ${(err as Error).message}`, EXIT.USAGE);
    }
    let connection: Connection;
    try {
      connection = await Connection.connect(options);
    } catch (err) {
      const where = `${config.temporal.address} (namespace ${config.temporal.namespace})`;
      throw new TemporalConnectionError(`cannot connect to Temporal at ${where}: ${(err as Error).message}`, err);
    }
    return new AncClient({
      client: new Client({ connection, namespace: config.temporal.namespace }),
      taskQueue: config.temporal.taskQueue,
      kekTrust: kekTrustFromEnv(env),
      // Only when set: otherwise the workflow's own default applies.
      healthCheckIntervalMinutes: env.HEALTH_CHECK_INTERVAL_MINUTES?.trim()
        ? config.healthCheckIntervalMinutes
        : undefined,
    });
  };
  let connected: AncClient | undefined;
  return {
    sdk: () =>
      (pending ??= connect().then((client) => {
        connected = client;
        return client;
      })),
    // A connection attempt still under way (a timed-out command) is abandoned, not waited for.
    close: async () => connected?.temporal.connection.close(),
  };
}

/** What the audit commands need: the service's database and the audit chain's MAC key. */
export interface AuditStore {
  pool: Pool;
  macKey: Buffer;
  /** True when AUDIT_MAC_KEY was not set and the worker's development key is used. */
  devKey: boolean;
  close(): Promise<void>;
}

export async function auditStoreFromEnv(env: NodeJS.ProcessEnv = process.env): Promise<AuditStore> {
  const config = loadConfig(pick(env, AUDIT_ENV));
  const pool = new pg.Pool({
    connectionString: config.databaseUrl,
    max: 1,
    connectionTimeoutMillis: 10_000,
    application_name: 'anc-cli',
  });
  pool.on('error', () => undefined);
  return {
    pool,
    macKey: config.auditMacKey,
    devKey: !env.AUDIT_MAC_KEY?.trim(),
    close: () => pool.end(),
  };
}
