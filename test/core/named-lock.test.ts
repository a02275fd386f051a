/**
 * tools.lock on PostgreSQL: holders of different names, each using the
 * database inside its lock (as a provider's session store does through
 * tools.kv), never exhaust the pool between them.
 */
import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/client.ts';
import { createNamedLock } from '../../src/core/named-lock.ts';
import { sql } from '../../src/db/orm.ts';
import { createTestDatabase } from '../helpers/database.ts';

describe.skipIf(!process.env.TEST_DATABASE_URL)('named locks on PostgreSQL', () => {
  it('lets as many holders of different names as the pool has connections each run a query inside its lock', async () => {
    const test = await createTestDatabase();
    // Two connections: two holders would each take one and wait for a second one for ever.
    const small = await openDatabase({ url: test.url!, maxConnections: 2 });
    try {
      const lock = createNamedLock(small);
      const inside: string[] = [];
      const all = Promise.all(
        ['a', 'b', 'c', 'd'].map((name) =>
          lock(name, async () => {
            const [row] = (await small.db.execute(sql`select ${name}::text as name`)) as unknown as Array<{ name: string }>;
            inside.push(row!.name);
            return row!.name;
          }),
        ),
      );
      const stuck = new Promise<'stuck'>((resolve) => setTimeout(() => resolve('stuck'), 5000).unref());
      expect(await Promise.race([all, stuck])).toEqual(['a', 'b', 'c', 'd']);
      expect(inside.sort()).toEqual(['a', 'b', 'c', 'd']);
    } finally {
      await small.close();
      await test.close();
    }
  });

  it('still excludes: one name is held by one caller at a time', async () => {
    const test = await createTestDatabase();
    try {
      const lock = createNamedLock(test);
      let holding = 0;
      let most = 0;
      await Promise.all(
        Array.from({ length: 6 }, () =>
          lock('same', async () => {
            holding += 1;
            most = Math.max(most, holding);
            await new Promise((resolve) => setTimeout(resolve, 10));
            holding -= 1;
          }),
        ),
      );
      expect(most).toBe(1);
    } finally {
      await test.close();
    }
  });
});
