import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    // Kernels use their own thread pool; one test file per process keeps runs independent.
    pool: 'forks',
  },
});
