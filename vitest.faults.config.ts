import { defineConfig } from 'vitest/config';

/** The fault tests too long for CI (`npm run test:faults`): one file at a time, minutes each. */
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    // The Temporal SDK's own logs go to a quiet logger (retries are expected here).
    setupFiles: ['test/support/quiet-runtime.ts'],
    testTimeout: 600_000,
    hookTimeout: 180_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 1, minForks: 1 } },
    fileParallelism: false,
    reporters: ['default'],
  },
});
