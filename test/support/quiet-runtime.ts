import { DefaultLogger, Runtime, type LogEntry } from '@temporalio/worker';

/**
 * The Temporal runtime of every test process (vitest's setupFiles): the SDK logs worker state
 * changes and retried activities, which would bury the test report, so only errors are printed.
 * A test that searches the SDK's log lines takes them all with `captureRuntimeLogs`. A test that
 * needs the runtime's own telemetry runs a worker process (see test/worker-process.test.ts).
 */
let capture: ((entry: LogEntry) => void) | undefined;

/** From now on, every SDK log entry of this process (TRACE and up) goes to `fn` as well. */
export function captureRuntimeLogs(fn: (entry: LogEntry) => void): void {
  capture = fn;
}

try {
  Runtime.install({
    logger: new DefaultLogger('TRACE', (entry) => {
      capture?.(entry);
      if (entry.level === 'ERROR') console.error(`[temporal] ${entry.message}`, entry.meta ?? '');
    }),
    telemetryOptions: { logging: { forward: {}, filter: { core: 'WARN', other: 'ERROR' } } },
  });
} catch {
  // Installed already by an earlier file in this process.
}
