/**
 * drizzle-orm (and the postgres.js driver), loaded through `require`, i.e.
 * their CommonJS builds. Everything in Linkgate takes drizzle's values from
 * here; type-only imports from 'drizzle-orm' are fine, they leave no code.
 *
 * Why not `import`: Node 24's ESM loader asks for the package scope of every
 * file it loads (`getPackageScopeConfig` in lib/internal/modules/
 * package_json_reader.js), and that function spreads the package config, which
 * runs the lazy `exports` getter: the package's whole `exports` map is parsed
 * again for each file. drizzle-orm's package.json is 178 KB with 447 exports
 * and its pg-core build is a few hundred files, so `import`ing it took 380 ms
 * and grew the heap by 250 MB of garbage, which the process kept as resident
 * memory: the gateway idled at 165 MB, and at 112 MB with this module (see
 * bench/README.md). The CommonJS loader resolves relative `require`s without
 * reading package.json. test/db/orm.test.ts keeps other files from importing
 * drizzle's values directly, which would load a second copy.
 */
import { createRequire } from 'node:module';

// drizzle-kit (`npm run db:generate`) compiles src/db/schema.ts to CommonJS, where import.meta is empty.
const require = createRequire(import.meta.url ?? `file://${__filename}`);

const drizzle = require('drizzle-orm') as typeof import('drizzle-orm');
const pgCore = require('drizzle-orm/pg-core') as typeof import('drizzle-orm/pg-core');

export const { and, asc, count, desc, eq, gt, gte, inArray, isNotNull, isNull, lt, lte, ne, not, or, sql } = drizzle;
export const { bigserial, boolean, index, integer, jsonb, pgSchema, pgTable, primaryKey, serial, text, timestamp, uniqueIndex } = pgCore;
export const { DrizzleQueryError } = require('drizzle-orm/errors') as typeof import('drizzle-orm/errors');

/** The PostgreSQL driver: postgres.js and drizzle's adapter and migrator for it, one copy of each. */
export function postgresDriver() {
  return {
    postgres: require('postgres') as typeof import('postgres'),
    drizzle: (require('drizzle-orm/postgres-js') as typeof import('drizzle-orm/postgres-js')).drizzle,
    migrate: (require('drizzle-orm/postgres-js/migrator') as typeof import('drizzle-orm/postgres-js/migrator')).migrate,
  };
}

/** The embedded driver: PGlite (and its protocol and type helpers), drizzle's adapter and migrator for it, one copy of each. */
export function pgliteDriver() {
  const pglite = require('@electric-sql/pglite') as typeof import('@electric-sql/pglite');
  return {
    pglite,
    PGlite: pglite.PGlite,
    drizzle: (require('drizzle-orm/pglite') as typeof import('drizzle-orm/pglite')).drizzle,
    migrate: (require('drizzle-orm/pglite/migrator') as typeof import('drizzle-orm/pglite/migrator')).migrate,
  };
}
