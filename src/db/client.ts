import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import type { PGlite } from '@electric-sql/pglite';
import { pgliteDriver, postgresDriver, sql } from './orm.ts';
import { ensureTemplate, isNewDataDir, keepOnlyPostgres, pgliteStartParams, preparedStatements, seedDataDir, templateDir } from './pglite.ts';
import * as schema from './schema.ts';

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

export interface Database {
  db: Db;
  /** `postgres` can be shared by several instances; `pglite` is one process only. */
  kind: 'postgres' | 'pglite';
  /** How many connections the pool holds (PostgreSQL); PGlite has its one session. */
  poolSize: number;
  /** Applies the SQL migrations in drizzle/ that have not run yet. */
  migrate(): Promise<void>;
  /** LISTEN on a channel (one connection per process on PostgreSQL); resolves to the way to stop. */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  /** NOTIFY every instance listening on the channel. */
  notify(channel: string, payload: string): Promise<void>;
  close(): Promise<void>;
}

export const migrationsFolder = fileURLToPath(new URL('../../drizzle', import.meta.url));

export interface OpenDatabaseOptions {
  /** postgres:// URL; when absent an embedded PGlite is used. */
  url?: string | undefined;
  /** PGlite data directory, or `memory://` for an in-memory database. */
  dataDir?: string;
  /** PGlite only: start from a dumped data directory (tests use it to skip initdb). */
  loadDataDir?: Blob;
  /** postgres-js pool size. */
  maxConnections?: number;
  /** PGlite only: `false` runs initdb in a new data directory instead of copying the template (the template's own build). */
  template?: false;
  /** Called with each query Drizzle runs (tests count them: an idle wait must run none). */
  logQuery?: (query: string) => void;
}

const queryLogger = (options: OpenDatabaseOptions) => (options.logQuery ? { logger: { logQuery: options.logQuery } } : {});

export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  // Each driver is loaded only when used: a PostgreSQL deployment does not carry PGlite's WebAssembly, and back.
  if (options.url) {
    const { postgres, drizzle: drizzlePostgres, migrate: migratePostgres } = postgresDriver();
    const poolSize = options.maxConnections ?? 10;
    const client = postgres(options.url, {
      max: poolSize,
      onnotice: () => {},
      // postgres-js would otherwise run a pg_type query first on every new
      // connection and drop its promise: a connection lost during that query
      // (a database restart) became an unhandled rejection, which ends the
      // process (porsager/postgres#1192, #1223). Drizzle reads and writes the
      // text[] columns itself, so the array parsers it fetched are not needed,
      // and each new connection saves a round trip.
      fetch_types: false,
      // Credentials never leave the process through errors: postgres-js puts
      // query parameters on errors only when `debug` is on, which it is not.
    });
    const db = drizzlePostgres(client, { schema, ...queryLogger(options) });
    return {
      db,
      kind: 'postgres',
      poolSize,
      async migrate() {
        // Several instances may start at once: the one holding the lock
        // migrates, the others wait and then find nothing left to do.
        // The lock is a transaction's (released when it ends, however it
        // ends) while the migrations run on other pooled connections. Not
        // `client.reserve()`: without fetch_types postgres-js never hands a
        // new connection to a reservation.
        if (poolSize < 2) throw new Error('migrating needs a pool of two connections at least: one holds the lock');
        await client.begin(async (lock) => {
          // The transaction is idle while the migrations run, and its lock
          // may be waited for as long as another instance migrates: a
          // database's idle-in-transaction or statement timeout (hosted
          // PostgreSQL often sets them) must not end it.
          await lock`set local idle_in_transaction_session_timeout = 0`;
          await lock`set local statement_timeout = 0`;
          await lock`select pg_advisory_xact_lock(hashtext('linkgate:migrate'))`;
          await migratePostgres(db, { migrationsFolder });
        });
      },
      async listen(channel, onPayload) {
        const { unlisten } = await client.listen(channel, onPayload);
        return unlisten;
      },
      async notify(channel, payload) {
        await client.notify(channel, payload);
      },
      close: () => client.end({ timeout: 5 }),
    };
  }
  const dataDir = options.dataDir ?? 'memory://';
  // A new data directory starts as a copy of the template: no initdb (seconds, and 0.5–1 GB at its peak);
  // of the migrated one when `npm install` made it for these migrations: nothing left to migrate either.
  if (!dataDir.includes('://') && !options.loadDataDir && options.template !== false && isNewDataDir(dataDir)) {
    const template = migratedTemplate() ?? (await pgliteTemplate());
    if (template) seedDataDir(dataDir, template);
  }
  const { PGlite, drizzle: drizzlePglite, migrate: migratePglite } = pgliteDriver();
  const client = await PGlite.create(dataDir, { startParams: pgliteStartParams(), ...(options.loadDataDir ? { loadDataDir: options.loadDataDir } : {}) });
  // Drizzle's PGlite session calls only `query` and `transaction` on its client.
  const db = drizzlePglite({ client: preparedStatements(client, dataDir) as unknown as PGlite, schema, ...queryLogger(options) });
  return {
    db,
    kind: 'pglite',
    poolSize: 1,
    migrate: () => migratePglite(db, { migrationsFolder }),
    async listen(channel, onPayload) {
      const stop = await client.listen(channel, onPayload);
      return () => stop();
    },
    async notify(channel, payload) {
      await client.query('select pg_notify($1, $2)', [channel, payload]);
    },
    close: () => client.close(),
  };
}

/**
 * The data directory new PGlite data directories are copied from
 * (src/db/pglite.ts), made now if this install has none yet; undefined when
 * it cannot be made here.
 */
export function pgliteTemplate(): Promise<string | undefined> {
  return ensureTemplate(templateDir(), async (scratch) => {
    const database = await openDatabase({ dataDir: scratch, template: false });
    await database.close();
    await keepOnlyPostgres(scratch);
  });
}

/** A digest of drizzle/ (the journal and every migration): which migrations a migrated template holds. */
export function migrationsDigest(): string {
  const digest = createHash('sha256');
  for (const file of ['meta/_journal.json', ...readdirSync(migrationsFolder).filter((name) => name.endsWith('.sql')).sort()]) {
    digest.update(file).update(readFileSync(join(migrationsFolder, file)));
  }
  return digest.digest('hex').slice(0, 16);
}

/** Where the template with the migrations of `digest` applied lives: beside the template, named after it. */
export const migratedTemplateDir = (template: string, digest: string) => `${template}-migrated-${digest}`;

/**
 * The template with this checkout's migrations applied, if `npm install`
 * made it (makeMigratedTemplate): a new data directory copied from it has
 * nothing to migrate, which saves about 0.2 s of its first start. Never
 * made at start: a checkout whose migrations changed since the install
 * copies the plain template and migrates, as before.
 */
export function migratedTemplate(): string | undefined {
  const dir = migratedTemplateDir(templateDir(), migrationsDigest());
  return existsSync(join(dir, 'PG_VERSION')) ? dir : undefined;
}

/**
 * Makes the migrated template from the template (a copy, migrated, closed
 * cleanly; no initdb) unless it is there, and removes those made for other
 * migrations or another PGlite. `npm install` runs it (scripts/pglite-template.ts); the tests'
 * global setup too. Undefined when it cannot be made.
 */
export async function makeMigratedTemplate(template: string | undefined, digest = migrationsDigest()): Promise<string | undefined> {
  if (!template) return undefined;
  const dir = migratedTemplateDir(template, digest);
  const made = await ensureTemplate(dir, async (scratch) => {
    seedDataDir(scratch, template);
    const database = await openDatabase({ dataDir: scratch, template: false });
    try {
      await database.migrate();
    } finally {
      await database.close();
    }
  });
  if (made) {
    // Kept: this migrated template, the template and the tests' snapshots of it, and any build under
    // way (`.building-`). Gone: the migrated templates of other migrations, and whatever an earlier
    // PGlite or template layout left (each a full data directory, or a snapshot of one).
    const current = basename(template);
    const keep = (name: string) => name === basename(dir) || name.includes('.building-') || (name.startsWith(current) && !name.includes('-migrated-'));
    for (const name of readdirSync(dirname(dir))) {
      if (name.startsWith('pglite-') && !keep(name)) rmSync(join(dirname(dir), name), { recursive: true, force: true });
    }
  }
  return made;
}

export async function ping(db: Db): Promise<void> {
  await db.execute(sql`select 1`);
}
