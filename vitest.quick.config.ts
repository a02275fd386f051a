import { defineConfig, mergeConfig } from 'vitest/config';
import base from './vitest.config.ts';

/**
 * `npm run test:quick`, for the inner loop: the suite without the files whose
 * time goes to child processes (the gateway as `npm start` runs it, the
 * `linkgate` command, npm, the example bot), the ATProto PDS, or a provider
 * timeout of 10 s waited out for real. docs/development.md lists them;
 * `npm test` runs everything.
 */
export const SLOW = [
  'test/cli/**',
  'test/server.test.ts',
  'test/build.test.ts',
  'test/http/mcp.test.ts',
  'test/reliability/crash.test.ts',
  'test/reliability/fatal.test.ts',
  'test/reliability/http-limits.test.ts',
  'test/reliability/shutdown.test.ts',
  'test/docs/snippets.test.ts',
  'test/client/client.test.ts',
  'test/client/package.test.ts',
  'test/compat/annie-mei-takeover.test.ts',
  'test/db/lock.test.ts',
  'test/fakes/atproto-pds.test.ts',
  'test/providers/atproto.test.ts',
  'test/install.test.ts',
  'test/security/key-rotation.test.ts',
  'test/security/provider-faults.test.ts',
];

export default mergeConfig(base, defineConfig({ test: { exclude: SLOW } }));
