import { DefaultLogger, Runtime } from '@temporalio/worker';
import { expect } from 'vitest';

// Test files that install the process's Runtime themselves: the canary test (every SDK log line,
// and the metrics endpoint) and the metrics test (the Prometheus exporter).
const OWN_RUNTIME = ['test/secrets.test.ts', 'test/metrics.test.ts'];

// The SDK logs worker state changes and retried activities at INFO/WARN; tests that expect those
// would bury the test report. Errors still show. A test that needs the runtime itself runs a
// child process (see test/worker-process.test.ts) or is listed above.
const testPath = expect.getState().testPath ?? '';
if (!OWN_RUNTIME.some((file) => testPath.endsWith(file))) {
  try {
    Runtime.install({
      logger: new DefaultLogger('ERROR'),
      telemetryOptions: { logging: { forward: {}, filter: { core: 'ERROR', other: 'ERROR' } } },
    });
  } catch {
    // Installed already by an earlier file in this process.
  }
}
