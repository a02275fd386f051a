import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.{ts,tsx}', 'providers/**/*.test.ts'],
    exclude: ['test/e2e/**', 'node_modules/**'],
    globalSetup: ['test/global-setup.ts'],
    // As `npm start` runs: PGlite's WebAssembly without the optimising tier (docs/performance.md).
    execArgv: ['--liftoff-only'],
    // A PGlite database loads its snapshot in about a second; the ATProto PDS starts per file.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // vitest's default is one worker fewer than the cores: one on the 2-core
    // machine, and the files ran one after another. Much of a file's time is
    // spent waiting (gateway processes starting, a provider timeout, a device
    // polling), so one worker more than the cores: 3 there, 160 s instead of
    // 323 s (docs/development.md).
    maxWorkers: availableParallelism() + 1,
  },
});
