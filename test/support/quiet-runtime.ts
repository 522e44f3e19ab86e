import { DefaultLogger, Runtime, type LogEntry } from '@temporalio/worker';
import { expect } from 'vitest';

// Test files that install the process's Runtime themselves: the canary test (every SDK log line,
// and the metrics endpoint) and the metrics test (the Prometheus exporter).
const OWN_RUNTIME = ['test/secrets.test.ts', 'test/metrics.test.ts'];

let capture: ((entry: LogEntry) => void) | undefined;

/** From now on, every SDK and workflow log entry of this process (TRACE and up) goes to `fn` as well. */
export function captureRuntimeLogs(fn: (entry: LogEntry) => void): void {
  capture = fn;
}

// The SDK logs worker state changes and retried activities at INFO/WARN; tests that expect those
// would bury the test report. Errors still show. A test that needs the runtime itself runs a
// child process (see test/worker-process.test.ts) or is listed above.
const testPath = expect.getState().testPath ?? '';
if (!OWN_RUNTIME.some((file) => testPath.endsWith(file))) {
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
}
