import { Client, Connection } from '@temporalio/client';
import type { Pool } from '../activities/db/pool';
import { ConfigError, readTemporalSettings } from '../common/temporal-config';
import { describeIssues, envSchema, loadConfig } from '../worker/config';
import { kekTrustFromEnv } from './kek-trust';
import { AncClient } from './sdk';

/**
 * The CLI's connections, configured from the environment with the worker's own `loadConfig`, so
 * the variables, defaults and checks are the same. Each reads only the variables it needs, so a
 * setting the CLI does not use (LDAP, Key Vault...) can neither be required nor fail it.
 */

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

/**
 * The Temporal commands read the connection through the SDK's environment configuration (see
 * common/temporal-config.ts), plus TEMPORAL_TASK_QUEUE and HEALTH_CHECK_INTERVAL_MINUTES.
 */
export function temporalSdkFromEnv(env: NodeJS.ProcessEnv = process.env): TemporalSdk {
  let pending: Promise<AncClient> | undefined;
  const connect = async (): Promise<AncClient> => {
    const problems: string[] = [];
    const temporal = readTemporalSettings(env, problems);
    const interval = envSchema.shape.HEALTH_CHECK_INTERVAL_MINUTES.safeParse(
      env.HEALTH_CHECK_INTERVAL_MINUTES?.trim() || undefined,
    );
    if (!interval.success) problems.push(...describeIssues(interval.error.issues, 'HEALTH_CHECK_INTERVAL_MINUTES'));
    if (problems.length > 0) throw new ConfigError(problems);
    let connection: Connection;
    try {
      connection = await Connection.connect(temporal.connectionOptions);
    } catch (err) {
      const where = `${temporal.address} (namespace ${temporal.namespace})`;
      throw new TemporalConnectionError(`cannot connect to Temporal at ${where}: ${(err as Error).message}`, err);
    }
    return new AncClient({
      client: new Client({ connection, namespace: temporal.namespace }),
      taskQueue: temporal.taskQueue,
      kekTrust: kekTrustFromEnv(env),
      // Only when set: otherwise the workflow's own default applies.
      healthCheckIntervalMinutes: env.HEALTH_CHECK_INTERVAL_MINUTES?.trim() ? interval.data : undefined,
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
  // Loaded here, not at import: only the audit commands use the database.
  const { default: pg } = await import('pg');
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
