import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // dist/ is built once, before any test file runs.
    globalSetup: ['test/support/global-setup.ts'],
    // The Temporal SDK's own logs go to a quiet logger in the test processes.
    setupFiles: ['test/support/quiet-runtime.ts'],
    // The long fault tests run with `npm run test:faults` (vitest.faults.config.ts).
    exclude: ['test/faults/**', 'node_modules/**'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // Test files start their own Temporal servers; two cores run two files at a time well.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ['default'],
  },
});
