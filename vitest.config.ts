import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.{ts,tsx}', 'providers/**/*.test.ts'],
    exclude: ['test/e2e/**', 'node_modules/**'],
    // PGlite's first open runs initdb (2–4 s) and the IdP starts per file.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
