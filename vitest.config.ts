import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**'],
    setupFiles: ['./core/polyfills.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Docker and process tests share one engine and one machine: files run in
    // parallel across the two cores, tests inside a file run in order.
    fileParallelism: true,
    maxWorkers: 2,
  },
})
