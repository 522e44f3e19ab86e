import type { LogLevel, LogMetadata, Logger as SdkLogger } from '@temporalio/common';
import { Runtime } from '@temporalio/worker';
import type { Logger } from 'pino';

const LEVELS: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
};

/**
 * The Temporal SDK's logger interface on top of a pino logger, so the SDK's own lines (worker
 * state, Core's native logs, the workflow and activity `log` APIs) come out as the service's JSON.
 * An `error` in the metadata becomes pino's `err`, serialized with its message and stack.
 */
export function sdkLogger(logger: Logger): SdkLogger {
  const write = (level: LogLevel, message: string, meta?: LogMetadata) => {
    const { error, ...rest } = meta ?? {};
    const fields = error === undefined ? rest : { ...rest, err: error };
    logger[LEVELS[level] ?? 'info'](fields, message);
  };
  return {
    log: write,
    trace: (m, meta) => write('TRACE', m, meta),
    debug: (m, meta) => write('DEBUG', m, meta),
    info: (m, meta) => write('INFO', m, meta),
    warn: (m, meta) => write('WARN', m, meta),
    error: (m, meta) => write('ERROR', m, meta),
  };
}

export interface TelemetrySettings {
  logger: Logger;
  /** Serve the SDK's Prometheus exporter (and the service's metrics) on this port; off when unset. */
  metricsPort?: number;
  /** Address the metrics endpoint binds to. */
  metricsHost?: string;
}

/**
 * Installs the SDK runtime once per process, before any connection or worker: SDK and Core logs
 * forwarded into pino (one JSON format on stdout), and Prometheus metrics when a port is given.
 */
export function installRuntime(settings: TelemetrySettings): Runtime {
  return Runtime.install({
    logger: sdkLogger(settings.logger),
    telemetryOptions: {
      logging: { forward: {}, filter: { core: 'WARN', other: 'ERROR' } },
      metrics:
        settings.metricsPort === undefined
          ? undefined
          : { prometheus: { bindAddress: `${settings.metricsHost ?? '0.0.0.0'}:${settings.metricsPort}` } },
    },
  });
}
