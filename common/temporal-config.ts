import { loadClientConnectConfig } from '@temporalio/envconfig';
import type { TLSConfig } from '@temporalio/common/lib/internal-non-workflow';
import { DEFAULT_TASK_QUEUE } from './ids';

/** Configuration problems, every one of them at once, one line each naming the variable. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

/** Where to find Temporal, as the SDK, the CLI and the worker all read it. */
export interface TemporalSettings {
  /** Accepted by the client's `Connection.connect` and the worker's `NativeConnection.connect`. */
  connectionOptions: {
    address?: string;
    apiKey?: string;
    tls?: TLSConfig | boolean;
    metadata?: Record<string, string | Buffer>;
  };
  /** For messages: the address actually used. */
  address: string;
  namespace: string;
  taskQueue: string;
}

/** The local development server when nothing says otherwise. */
export const DEFAULT_TEMPORAL_ADDRESS = '127.0.0.1:7233';

/**
 * Temporal connection settings through the SDK's environment configuration: the profile
 * (TEMPORAL_PROFILE) of the TOML config file (TEMPORAL_CONFIG_FILE, or the user's default one),
 * overridden by TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY and TEMPORAL_TLS_*. The
 * task queue (TEMPORAL_TASK_QUEUE) is the service's own. Problems go to `problems`; TLS files are
 * read here, so a missing one is reported at start, naming its variable.
 */
export function readTemporalSettings(env: NodeJS.ProcessEnv, problems: string[]): TemporalSettings {
  const overrideEnvVars: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && value.trim() !== '') overrideEnvVars[name] = value.trim();
  }
  const taskQueue = overrideEnvVars.TEMPORAL_TASK_QUEUE ?? DEFAULT_TASK_QUEUE;
  const has = (name: string) => overrideEnvVars[`${name}_PATH`] ?? overrideEnvVars[`${name}_DATA`];
  if (has('TEMPORAL_TLS_CLIENT_CERT') && !has('TEMPORAL_TLS_CLIENT_KEY'))
    problems.push('TEMPORAL_TLS_CLIENT_KEY_PATH (or _DATA) is required with TEMPORAL_TLS_CLIENT_CERT_PATH (or _DATA)');
  try {
    const loaded = loadClientConnectConfig({ overrideEnvVars });
    const options = loaded.connectionOptions;
    const address = options.address ?? DEFAULT_TEMPORAL_ADDRESS;
    return {
      connectionOptions: {
        address,
        apiKey: options.apiKey,
        tls: options.tls ?? undefined,
        metadata: options.metadata,
      },
      address,
      namespace: loaded.namespace ?? 'default',
      taskQueue,
    };
  } catch (err) {
    problems.push(describeEnvconfigError(err as NodeJS.ErrnoException, overrideEnvVars));
    return { connectionOptions: {}, address: DEFAULT_TEMPORAL_ADDRESS, namespace: 'default', taskQueue };
  }
}

function describeEnvconfigError(err: NodeJS.ErrnoException, env: Record<string, string>): string {
  const message = err.message;
  if (err.code === 'ENOENT' && err.path) {
    const variable = Object.keys(env).find((name) => name.startsWith('TEMPORAL_') && env[name] === err.path);
    return `${variable ?? 'TEMPORAL_CONFIG_FILE'} names a file that cannot be read (${err.path})`;
  }
  if (/^Profile /.test(message)) return `TEMPORAL_PROFILE: ${message}`;
  return `TEMPORAL_CONFIG_FILE: ${message}`;
}

/** `readTemporalSettings`, throwing a ConfigError on any problem. */
export function loadTemporalSettings(env: NodeJS.ProcessEnv = process.env): TemporalSettings {
  const problems: string[] = [];
  const settings = readTemporalSettings(env, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return settings;
}
