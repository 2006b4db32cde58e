import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // expect.poll waits for something to become true (a page updated, a row arrived); on two shared
    // cores a second is too little when every worker is busy. Speed is the benchmarks' business.
    expect: { poll: { timeout: 5_000 } },
    pool: 'forks',
    // Two cores, shared: integration and e2e files spawn brokers and processes of their own.
    maxWorkers: 2,
  },
});
