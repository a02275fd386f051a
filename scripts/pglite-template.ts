/**
 * `npm install` runs this (postinstall, with `node --liftoff-only`): it makes
 * the PGlite data directory that new data directories are copied from
 * (src/db/pglite.ts), so that the first `npm start` does not run initdb
 * (seconds, and 0.5–1 GB of memory at its peak), and a copy of it with this
 * checkout's migrations applied, so that it does not migrate either
 * (makeMigratedTemplate). It never fails the install: without a template the
 * first start makes one, or runs initdb in place; without the migrated one
 * it migrates.
 */
import { makeMigratedTemplate, pgliteTemplate } from '../src/db/client.ts';

const cause = (error: unknown) => (error instanceof Error ? error.message : String(error));
let template: string | undefined;
try {
  template = await pgliteTemplate();
  console.log(template ? `linkgate: embedded database template ready (${template})` : 'linkgate: could not make the embedded database template; the first start will');
} catch (error) {
  console.log(`linkgate: could not make the embedded database template (${cause(error)}); the first start will`);
}
if (template) {
  try {
    const migrated = await makeMigratedTemplate(template);
    console.log(migrated ? `linkgate: migrated template ready (${migrated})` : 'linkgate: could not make the migrated template; the first start will migrate');
  } catch (error) {
    console.log(`linkgate: could not make the migrated template (${cause(error)}); the first start will migrate`);
  }
}
