/**
 * `npm install` runs this (postinstall, with `node --liftoff-only`): it makes
 * the PGlite data directory that new data directories are copied from
 * (src/db/pglite.ts), so that the first `npm start` does not run initdb
 * (seconds, and 0.5–1 GB of memory at its peak). It never fails the install:
 * without a template the first start makes one, or runs initdb in place.
 */
import { pgliteTemplate } from '../src/db/client.ts';

try {
  const dir = await pgliteTemplate();
  console.log(dir ? `linkgate: embedded database template ready (${dir})` : 'linkgate: could not make the embedded database template; the first start will');
} catch (error) {
  console.log(`linkgate: could not make the embedded database template (${error instanceof Error ? error.message : String(error)}); the first start will`);
}
