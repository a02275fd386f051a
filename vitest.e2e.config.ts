import { defineConfig } from 'vitest/config';

// Browser tests: headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core.
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.test.ts'],
    // The PGlite snapshot, and a temporary directory for the run that must be left empty (test/global-setup.ts).
    globalSetup: ['test/global-setup.ts'],
    execArgv: ['--liftoff-only'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
