/**
 * vitest's global setup (vitest.config.ts, vitest.e2e.config.ts), once per run:
 *
 * - the PGlite template, the migrated template (src/db/client.ts) and the
 *   snapshot (test/helpers/database.ts) are made before the workers start,
 *   so that they do not all make them at once, and so that gateways started
 *   on new data directories start as `npm install` leaves them;
 * - the run gets a temporary directory of its own (TMPDIR, which the workers
 *   inherit): whatever a test leaves in it fails the run, named.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeMigratedTemplate, pgliteTemplate } from '../src/db/client.ts';
import { pgliteSnapshotFile } from './helpers/database.ts';

export default async function setup(): Promise<() => void> {
  const runTmp = mkdtempSync(join(tmpdir(), 'linkgate-test-run-'));
  process.env.TMPDIR = runTmp;
  try {
    await makeMigratedTemplate(await pgliteTemplate());
    await pgliteSnapshotFile();
  } catch (error) {
    rmSync(runTmp, { recursive: true, force: true });
    throw error;
  }
  return function teardown() {
    // Not left by a test: the caches tsx and Node keep in the temporary directory of every process that runs them.
    const left = readdirSync(runTmp).filter((name) => !/^(tsx-\d+|node-compile-cache)$/.test(name));
    rmSync(runTmp, { recursive: true, force: true });
    if (left.length > 0) throw new Error(`the tests left ${left.length} temporary folder(s) behind: ${left.join(', ')}`);
  };
}
