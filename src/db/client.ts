import { fileURLToPath } from 'node:url';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { pgliteDriver, postgresDriver, sql } from './orm.ts';
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
}

export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  // Each driver is loaded only when used: a PostgreSQL deployment does not carry PGlite's WebAssembly, and back.
  if (options.url) {
    const { postgres, drizzle: drizzlePostgres, migrate: migratePostgres } = postgresDriver();
    const poolSize = options.maxConnections ?? 10;
    const client = postgres(options.url, {
      max: poolSize,
      onnotice: () => {},
      // Credentials never leave the process through errors: postgres-js puts
      // query parameters on errors only when `debug` is on, which it is not.
    });
    const db = drizzlePostgres(client, { schema });
    return {
      db,
      kind: 'postgres',
      poolSize,
      async migrate() {
        // Several instances may start at once: the one holding the lock
        // migrates, the others wait and then find nothing left to do.
        const lock = await client.reserve();
        try {
          await lock`select pg_advisory_lock(hashtext('linkgate:migrate'))`;
          await migratePostgres(db, { migrationsFolder });
        } finally {
          await lock`select pg_advisory_unlock(hashtext('linkgate:migrate'))`;
          lock.release();
        }
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
  const { PGlite, drizzle: drizzlePglite, migrate: migratePglite } = pgliteDriver();
  const dataDir = options.dataDir ?? 'memory://';
  const client = await PGlite.create(dataDir, options.loadDataDir ? { loadDataDir: options.loadDataDir } : {});
  const db = drizzlePglite(client, { schema });
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

export async function ping(db: Db): Promise<void> {
  await db.execute(sql`select 1`);
}
