import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { migrationsDigest, openDatabase, pgliteTemplate, type Database } from '../../src/db/client.ts';
import { pgliteDriver } from '../../src/db/orm.ts';
import { pgliteStartParams } from '../../src/db/pglite.ts';

/**
 * The template (src/db/pglite.ts) with the migrations applied, as a tarball
 * for in-memory databases: `<template>-<digest of drizzle/>.tar`, made once
 * per install and set of migrations (vitest's global setup makes it before
 * the workers start). Each in-memory database loads it instead of running
 * initdb and the migrations (about 1 s instead of 4–7 s).
 */
export async function pgliteSnapshotFile(): Promise<string> {
  const template = await pgliteTemplate();
  if (!template) throw new Error('the PGlite template could not be made (is node_modules writable?)');
  const file = `${template}-${migrationsDigest()}.tar`;
  if (existsSync(file)) return file;
  const scratch = mkdtempSync(join(tmpdir(), 'linkgate-snapshot-'));
  try {
    const database = await openDatabase({ dataDir: join(scratch, 'pgdata') });
    await database.migrate();
    await database.close();
    // Dumped by a PGlite of its own, closed cleanly before: the Database interface does not expose one.
    const pg = await pgliteDriver().PGlite.create(join(scratch, 'pgdata'), { startParams: pgliteStartParams() });
    const dump = await pg.dumpDataDir('none');
    await pg.close();
    writeFileSync(join(scratch, 'pgdata.tar'), Buffer.from(await dump.arrayBuffer()));
    renameSync(join(scratch, 'pgdata.tar'), file);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return file;
}

let snapshot: Promise<Blob> | undefined;

/** The snapshot, read once per worker. */
export function pgliteSnapshot(): Promise<Blob> {
  snapshot ??= pgliteSnapshotFile().then((file) => new Blob([readFileSync(file)]));
  return snapshot;
}

/**
 * A fresh, migrated database for one test file: a new PostgreSQL database
 * when TEST_DATABASE_URL is set (CI), an in-memory PGlite otherwise.
 * `logQuery` sees every query Drizzle runs on it.
 * `close()` drops what it created.
 */
export async function createTestDatabase(options: { logQuery?: (query: string) => void } = {}): Promise<Database & { url: string | undefined }> {
  const base = process.env.TEST_DATABASE_URL;
  if (!base) {
    const database = await openDatabase({ dataDir: 'memory://', loadDataDir: await pgliteSnapshot(), ...options });
    // Nothing to do unless a migration was added since the snapshot (then its digest differs and a new one was made).
    await database.migrate();
    return { ...database, url: undefined };
  }
  const name = `linkgate_test_${randomBytes(6).toString('hex')}`;
  const admin = postgres(base, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  const database = await openDatabase({ url: url.href, maxConnections: 20, ...options });
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
