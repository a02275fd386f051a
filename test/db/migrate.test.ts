import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/client.ts';

const MIGRATIONS = (JSON.parse(readFileSync(new URL('../../drizzle/meta/_journal.json', import.meta.url), 'utf8')) as { entries: unknown[] }).entries.length;

/**
 * Instances of a deployment start together (a rolling update, a scaled
 * service) on one PostgreSQL database: each migrates at start-up, and the
 * migrations must run once, whoever comes first.
 */
describe.skipIf(!process.env.TEST_DATABASE_URL)('migrating PostgreSQL', () => {
  it('four instances migrating a new database at once apply each migration once, and again find nothing to do, on a database that ends idle transactions', async () => {
    const base = process.env.TEST_DATABASE_URL!;
    const name = `linkgate_test_${randomBytes(6).toString('hex')}`;
    const admin = postgres(base, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create database ${name}`);
    // As hosted PostgreSQL often has it: a transaction idle for longer is ended.
    await admin.unsafe(`alter database ${name} set idle_in_transaction_session_timeout = '100ms'`);
    const url = new URL(base);
    url.pathname = `/${name}`;
    // Two connections each: the lock's transaction holds one, the migrations run on the other.
    const instances = await Promise.all(Array.from({ length: 4 }, () => openDatabase({ url: url.href, maxConnections: 2 })));
    const applied = postgres(url.href, { max: 1, onnotice: () => {} });
    try {
      await Promise.all(instances.map((instance) => instance.migrate()));
      const count = async () => (await applied<{ n: number }[]>`select count(*)::int as n from drizzle.__drizzle_migrations`)[0]!.n;
      expect(await count()).toBe(MIGRATIONS);
      expect((await applied`select to_regclass('public.console_form_tokens') as t`)[0]!.t).toBe('console_form_tokens');
      await Promise.all(instances.map((instance) => instance.migrate()));
      expect(await count()).toBe(MIGRATIONS);
    } finally {
      await applied.end();
      await Promise.all(instances.map((instance) => instance.close()));
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
    }
  });
});
