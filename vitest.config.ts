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
  },
});
