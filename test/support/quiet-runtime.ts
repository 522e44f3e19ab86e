import { DefaultLogger, Runtime } from '@temporalio/worker';
import { expect } from 'vitest';

// The SDK logs worker state changes and retried activities at INFO/WARN; tests that expect those
// would bury the test report. Errors still show. A test that needs the runtime itself runs a
// child process (see test/worker-process.test.ts).
// test/secrets.test.ts installs its own runtime logger (TRACE, captured) to search it for secrets.
const ownRuntime = /secrets\.test\.ts$/.test(expect.getState().testPath ?? '');
if (!ownRuntime) installQuiet();

function installQuiet(): void {
  try {
    Runtime.install({
      logger: new DefaultLogger('ERROR'),
      telemetryOptions: { logging: { forward: {}, filter: { core: 'ERROR', other: 'ERROR' } } },
    });
  } catch {
    // Installed already by an earlier file in this process.
  }
}
