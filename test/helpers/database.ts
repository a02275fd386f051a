import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { openDatabase, type Database } from '../../src/db/client.ts';

/**
 * A fresh, migrated database for one test file: a new PostgreSQL database
 * when TEST_DATABASE_URL is set (CI), an in-memory PGlite otherwise.
 * `close()` drops what it created.
 */
export async function createTestDatabase(): Promise<Database & { url: string | undefined }> {
  const base = process.env.TEST_DATABASE_URL;
  if (!base) {
    const database = await openDatabase({ dataDir: 'memory://' });
    await database.migrate();
    return { ...database, url: undefined };
  }
  const name = `linkgate_test_${randomBytes(6).toString('hex')}`;
  const admin = postgres(base, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  const database = await openDatabase({ url: url.href, maxConnections: 20 });
  await database.migrate();
  return {
    ...database,
    url: url.href,
    async close() {
      await database.close();
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}
