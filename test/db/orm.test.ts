/**
 * src/db/orm.ts is the one place drizzle-orm's code is loaded from (through
 * require; the file says why). A value import of 'drizzle-orm' anywhere else
 * would load its ESM build beside it: the start-up cost back, and two copies
 * of its classes (`instanceof DrizzleQueryError` failing across them).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DrizzleQueryError, sql } from '../../src/db/orm.ts';
import { openDatabase } from '../../src/db/client.ts';
import { pgliteSnapshot } from '../helpers/database.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && /\.(ts|tsx|js|mjs)$/.test(entry.name))
    .map((entry) => relative(root, join(entry.parentPath, entry.name)));
}

describe('drizzle-orm is loaded once, through src/db/orm.ts', () => {
  it('no other file imports values from drizzle-orm or postgres.js', () => {
    const offenders: string[] = [];
    for (const file of ['src', 'providers', 'test', 'scripts'].flatMap(sources)) {
      if (file === join('src', 'db', 'orm.ts')) continue;
      const text = readFileSync(join(root, file), 'utf8');
      // `import type { … } from 'drizzle-orm…'` leaves no code and is fine.
      const valueImport = /^import (?!type )[^;]*?from '(drizzle-orm[^']*)'/m.exec(text) ?? /import\(\s*'(drizzle-orm[^']*)'\s*\)/.exec(text);
      if (valueImport) offenders.push(`${file}: ${valueImport[1]}`);
      // postgres.js too, in src: drizzle's driver requires it, so an import would be a second copy.
      if (file.startsWith('src') && /from 'postgres'|import\('postgres'\)/.test(text)) offenders.push(`${file}: postgres`);
    }
    expect(offenders).toEqual([]);
  });

  it('comes from the CommonJS build, loaded through require (the ESM build costs 250 MB of start-up heap on Node 24)', () => {
    const loaded = Object.keys(createRequire(import.meta.url).cache);
    expect(loaded.filter((file) => /node_modules\/drizzle-orm\/(index|pg-core\/index|errors)\.cjs$/.test(file))).toHaveLength(3);
  });

  it("the errors drizzle throws are the DrizzleQueryError that src/db/errors.ts tests for", async () => {
    const database = process.env.TEST_DATABASE_URL ? await openDatabase({ url: process.env.TEST_DATABASE_URL }) : await openDatabase({ dataDir: 'memory://', loadDataDir: await pgliteSnapshot() });
    try {
      const failure = await database.db.execute(sql`select * from no_such_table`).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(DrizzleQueryError);
      expect(failure).toMatchObject({ cause: { code: '42P01' } });
    } finally {
      await database.close();
    }
  });
});
