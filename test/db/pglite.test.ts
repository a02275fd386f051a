/**
 * src/db/pglite.ts: the embedded database's query path. Statements are
 * prepared once and then run as one Bind, Execute and Sync message that
 * pglite.ts writes itself (bindExecuteSync). These tests send values through
 * it to a real PGlite and compare what comes back with PGlite's own `query`
 * (which uses PGlite's serializer), and read the message as PostgreSQL's
 * protocol defines it. Then the templates new data directories are copied
 * from. Always on PGlite: it is the embedded database's code.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeMigratedTemplate, migratedTemplate, migrationsFolder, openDatabase, pgliteTemplate } from '../../src/db/client.ts';
import { pgliteDriver, sql } from '../../src/db/orm.ts';
import { bindExecuteSync, fileSystemNeedsSync, isNewDataDir, isPlainRead, pgliteStartParams, preparedStatements, seedDataDir, type QueryClient } from '../../src/db/pglite.ts';
import { pgliteSnapshot } from '../helpers/database.ts';

/** The message's fields, read back as the backend reads them (PostgreSQL docs, "Message Formats": Bind, Execute, Sync). */
function readMessage(bytes: Uint8Array) {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const cString = () => {
    const end = view.indexOf(0, at);
    const text = view.toString('utf8', at, end);
    at = end + 1;
    return text;
  };
  const type = String.fromCharCode(view[at++]!);
  const length = view.readInt32BE(at);
  const bindEnd = 1 + length;
  at += 4;
  const portal = cString();
  const statement = cString();
  const parameterFormats = view.readInt16BE(at);
  at += 2;
  const count = view.readUInt16BE(at);
  at += 2;
  const values: (string | null)[] = [];
  for (let i = 0; i < count; i++) {
    const size = view.readInt32BE(at);
    at += 4;
    values.push(size === -1 ? null : view.toString('utf8', at, at + size));
    if (size > 0) at += size;
  }
  const resultFormats = view.readInt16BE(at);
  at += 2;
  return { type, bindEnds: at === bindEnd, portal, statement, parameterFormats, values, resultFormats, rest: [...view.subarray(at)] };
}

/** Execute: 'E', length 9, the unnamed portal, no row limit. */
const EXECUTE = [0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0];
/** Sync: 'S', length 4. */
const SYNC = [0x53, 0, 0, 0, 4];

describe('bindExecuteSync', () => {
  it('writes Bind (text values, NULL as length -1, UTF-8 byte lengths), then Execute and Sync', () => {
    const values = ['default', null, '', 'ü€😀', 'x'.repeat(20_000)];
    const message = readMessage(bindExecuteSync([{ statement: 'linkgate_7', values }]));
    expect(message).toEqual({
      type: 'B',
      bindEnds: true,
      portal: '',
      statement: 'linkgate_7',
      parameterFormats: 0,
      values,
      resultFormats: 0,
      rest: [...EXECUTE, ...SYNC],
    });
  });

  it('holds a statement without parameters', () => {
    expect(readMessage(bindExecuteSync([{ statement: 's', values: [] }]))).toMatchObject({ bindEnds: true, statement: 's', values: [], resultFormats: 0 });
  });

  it('writes Bind and Execute for each of several runs, and one Sync at the end', () => {
    const message = bindExecuteSync([
      { statement: 'a', values: ['1', null] },
      { statement: 'bb', values: ['ü'] },
    ]);
    const first = readMessage(message);
    expect(first).toMatchObject({ type: 'B', bindEnds: true, statement: 'a', values: ['1', null] });
    const firstLength = message.length - first.rest.length;
    expect(first.rest.slice(0, EXECUTE.length)).toEqual(EXECUTE);
    const second = readMessage(message.subarray(firstLength + EXECUTE.length));
    expect(second).toMatchObject({ type: 'B', bindEnds: true, statement: 'bb', values: ['ü'], rest: [...EXECUTE, ...SYNC] });
  });
});

describe('fileSystemNeedsSync', () => {
  it('is false for a directory and for memory, true for the browsers’ file systems', () => {
    expect(fileSystemNeedsSync('/var/lib/linkgate/pgdata')).toBe(false);
    expect(fileSystemNeedsSync('./data/pgdata')).toBe(false);
    expect(fileSystemNeedsSync('memory://')).toBe(false);
    expect(fileSystemNeedsSync('idb://linkgate')).toBe(true);
    expect(fileSystemNeedsSync('opfs-ahp://linkgate')).toBe(true);
  });
});

describe('isPlainRead', () => {
  it('takes a SELECT that only reads, and leaves out what PostgreSQL would not roll back, tables made and locked rows', () => {
    expect(isPlainRead('select "user_id", "status" from "links" where ("links"."tenant" = $1 and "links"."user_id" = $2)')).toBe(true);
    expect(isPlainRead('  SELECT count(*) FROM t')).toBe(true);
    for (const text of [
      "select nextval('s')",
      "select setval('s', 1)",
      "select set_config('x.y', $1, true)",
      'select pg_advisory_lock(1)',
      'select pg_advisory_xact_lock(hashtext($1))',
      'select pg_try_advisory_lock(42)',
      'select pg_try_advisory_xact_lock(42)',
      'select lo_unlink($1)',
      'select pg_terminate_backend($1)',
      "select pg_logical_emit_message(true, 'p', 'm')",
      "select pg_notify('c', $1)",
      'select pg_sleep(1)',
      'select * into copy_of_t from t',
      'select * from t where id = $1 for update',
      'select * from t for no key update',
      'select * from t for key share',
      'insert into t values ($1)',
      'with x as (delete from t returning *) select * from x',
    ]) {
      expect(isPlainRead(text), text).toBe(false);
    }
  });
});

describe('preparedStatements on PGlite', () => {
  let pg: PGlite;
  let client: QueryClient;

  beforeAll(async () => {
    pg = await pgliteDriver().PGlite.create('memory://', { startParams: pgliteStartParams(), loadDataDir: await pgliteSnapshot() });
    client = preparedStatements(pg, 'memory://');
  });
  afterAll(() => pg.close());

  it('answers what PGlite’s own query answers, for values of every kind', async () => {
    const text = 'select $1::text as a, $2::text as b, $3::text as c, $4::int as d, $5::timestamptz as e, $6::text[] as f, $7::jsonb as g, $8::bytea as h, $9::boolean as i';
    const params = ['ü€😀 "quoted" \\ back', null, 'y'.repeat(20_000), 42, new Date('2026-12-07T10:00:00.123Z'), ['a', 'b,c', null], { nested: [1, 'two'] }, new Uint8Array([0, 1, 254, 255]), false];
    const own = await pg.query(text, params);
    for (let run = 0; run < 2; run++) {
      // The first run prepares the statement, the second finds it prepared.
      const prepared = await client.query(text, params);
      expect(prepared.rows).toEqual(own.rows);
      expect(prepared.fields).toEqual(own.fields.map(({ name, dataTypeID }) => ({ name, dataTypeID })));
    }
    expect((own.rows[0] as { c: string }).c).toHaveLength(20_000);
  });

  it('takes a thousand parameters, and more than a signed 16-bit count holds', async () => {
    const params = Array.from({ length: 1000 }, (_, i) => `v${i}`);
    const text = `select ${params.map((_, i) => `$${i + 1}::text`).join(' || ')} as joined`;
    const { rows } = await client.query<{ joined: string }>(text, params);
    expect(rows[0]!.joined).toBe(params.join(''));

    const many = Array.from({ length: 40_000 }, (_, i) => i);
    const sum = await client.query<{ n: number; total: string }>(`select cardinality(a) as n, (select sum(x) from unnest(a) x)::text as total from (select array[${many.map((_, i) => `$${i + 1}::int`).join(',')}] as a) s`, many);
    expect(sum.rows).toEqual([{ n: 40_000, total: String((40_000 * 39_999) / 2) }]);
  });

  it('counts the rows a write changed, and the change is there to read', async () => {
    await pg.exec('create table prepared_test (id int primary key, name text)');
    const inserted = await client.query('insert into prepared_test (id, name) select g, $1 from generate_series(1, 5) g', ['five']);
    expect(inserted.affectedRows).toBe(5);
    const updated = await client.query('update prepared_test set name = $1 where id <= $2', ['two', 2]);
    expect(updated.affectedRows).toBe(2);
    const { rows } = await pg.query('select name, count(*)::int as n from prepared_test group by name order by name');
    expect(rows).toEqual([
      { name: 'five', n: 3 },
      { name: 'two', n: 2 },
    ]);
  });

  it('prepares a statement again when its table changed under it', async () => {
    await pg.exec('create table changing (id int)');
    await pg.exec('insert into changing values (1)');
    expect((await client.query('select * from changing')).rows).toEqual([{ id: 1 }]);
    await pg.exec('alter table changing add column note text');
    await pg.exec("update changing set note = 'added'");
    expect((await client.query('select * from changing')).rows).toEqual([{ id: 1, note: 'added' }]);
  });

  it('keeps answering right past the number of statements it holds', async () => {
    for (let i = 0; i < 250; i++) {
      const { rows } = await client.query<{ n: number }>(`select $1::int + ${i} as n`, [1]);
      expect(rows[0]!.n).toBe(1 + i);
    }
    // The first ones were closed to make room: prepared again, they answer as before.
    expect((await client.query<{ n: number }>('select $1::int + 0 as n', [7])).rows[0]!.n).toBe(7);
  });

  it('asks PGlite to sync its file system after a write only where that file system needs it', async () => {
    // Counted on the real PGlite: on memory:// its syncToFs does nothing, but each call goes through a mutex.
    const real = pg.syncToFs.bind(pg);
    let syncs = 0;
    pg.syncToFs = () => {
      syncs += 1;
      return real();
    };
    try {
      await pg.exec('create table if not exists synced (n int)');
      syncs = 0;
      await client.query('insert into synced values ($1)', [1]);
      expect(syncs).toBe(0);
      await client.query('insert into synced values ($1)', [2]);
      expect(syncs).toBe(0);
      // The same PGlite, told its data directory is IndexedDB's: synced after preparing, and after each run.
      const browser = preparedStatements(pg, 'idb://linkgate');
      await browser.query('insert into synced values ($1)', [3]);
      expect(syncs).toBe(2);
      await browser.query('insert into synced values ($1)', [4]);
      expect(syncs).toBe(3);
      expect((await pg.query('select n from synced order by n')).rows).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }]);
    } finally {
      pg.syncToFs = real;
    }
  });

  it('lets two clients share one PGlite without their statement names meeting', async () => {
    const other = preparedStatements(pg, 'memory://');
    const [mine, theirs] = await Promise.all([client.query<{ x: string }>("select 'mine' as x where $1::int = 1", [1]), other.query<{ x: string }>("select 'theirs' as x where $1::int = 1", [1])]);
    expect(mine.rows).toEqual([{ x: 'mine' }]);
    expect(theirs.rows).toEqual([{ x: 'theirs' }]);
  });

  describe('reads made while the event loop turns', () => {
    /** Counts PGlite's trips (execProtocolStream calls) while `run` runs, on the real PGlite. */
    async function trips<T>(run: () => Promise<T>): Promise<{ result: T; trips: number }> {
      const real = pg.execProtocolStream.bind(pg);
      let count = 0;
      pg.execProtocolStream = (...args) => {
        count += 1;
        return real(...args);
      };
      try {
        return { result: await run(), trips: count };
      } finally {
        pg.execProtocolStream = real;
      }
    }
    const byId = 'select id, name from trip_rows where id = $1';
    const countAbove = 'select count(*)::int as n from trip_rows where id > $1';

    beforeAll(async () => {
      await pg.exec("create table trip_rows (id int primary key, name text); insert into trip_rows select g, 'row ' || g from generate_series(1, 200) g");
      // Prepared before the trips are counted.
      await client.query(byId, [1]);
      await client.query(countAbove, [1]);
    });

    it('go as one trip, and each gets its own answer', async () => {
      const ids = [5, 3, 999, 17, 3, 200];
      const { result, trips: count } = await trips(() => Promise.all(ids.map((id) => client.query<{ id: number; name: string }>(byId, [id]))));
      expect(result.map((r) => r.rows)).toEqual(ids.map((id) => (id <= 200 ? [{ id, name: `row ${id}` }] : [])));
      expect(result[0]!.fields).toEqual([
        { name: 'id', dataTypeID: 23 },
        { name: 'name', dataTypeID: 25 },
      ]);
      expect(count).toBe(1);
      // Different statements on one trip.
      const mixed = await trips(() => Promise.all([client.query<{ id: number }>(byId, [8]), client.query<{ n: number }>(countAbove, [190]), client.query<{ id: number }>(byId, [9])]));
      expect(mixed.result.map((r) => r.rows)).toEqual([[{ id: 8, name: 'row 8' }], [{ n: 10 }], [{ id: 9, name: 'row 9' }]]);
      expect(mixed.trips).toBe(1);
      // Not prepared yet (a client of its own, nothing prepared): each prepared on the way, a trip each, then one trip for both.
      const other = preparedStatements(pg, 'memory://');
      const fresh = await trips(() => Promise.all([other.query(byId, [10]), other.query<{ n: number }>('select count(*)::int as n from trip_rows where id < $1', [4])]));
      expect(fresh.result.map((r) => r.rows)).toEqual([[{ id: 10, name: 'row 10' }], [{ n: 3 }]]);
      expect(fresh.trips).toBe(3);
    });

    it('take more than one trip when there are more than a trip takes', async () => {
      const ids = Array.from({ length: 150 }, (_, i) => i + 1);
      const { result, trips: count } = await trips(() => Promise.all(ids.map((id) => client.query<{ name: string }>(byId, [id]))));
      expect(result.map((r) => r.rows[0]!.name)).toEqual(ids.map((id) => `row ${id}`));
      expect(count).toBe(3); // 64, 64 and 22
    });

    it('answer each on its own when one of them fails: the others their rows, that one its error', async () => {
      // Refused at Bind (the value is no int), and at Execute after the reads before it had run (division by zero).
      for (const [failing, param, code] of [
        ['select $1::int as n', 'not a number', '22P02'],
        ['select 1 / $1::int as n', 0, '22012'],
      ] as const) {
        await client.query(failing, [1]); // prepared, so that the trips counted are the runs
        const { result: settled, trips: count } = await trips(() => Promise.allSettled([client.query(byId, [4]), client.query(failing, [param]), client.query(byId, [6])]));
        expect(settled[0]).toEqual({ status: 'fulfilled', value: expect.objectContaining({ rows: [{ id: 4, name: 'row 4' }] }) });
        expect(settled[1]).toMatchObject({ status: 'rejected', reason: { code, query: failing, params: [param] } });
        expect(settled[2]).toEqual({ status: 'fulfilled', value: expect.objectContaining({ rows: [{ id: 6, name: 'row 6' }] }) });
        // The trip that failed, then one trip each.
        expect(count).toBe(4);
      }
    });

    it('keep the order they were made in with the writes around them', async () => {
      await pg.exec('create table trip_order (id int primary key)');
      const count = 'select count(*)::int as n from trip_order where id > $1';
      await client.query(count, [0]);
      // Not awaited one by one: a read made before a write does not see it, one made after it does.
      const [before, , after, , last] = await Promise.all([
        client.query<{ n: number }>(count, [0]),
        client.query('insert into trip_order values ($1)', [1]),
        client.query<{ n: number }>(count, [0]),
        client.transaction(async (tx) => {
          await tx.query('insert into trip_order values ($1)', [2]);
        }),
        client.query<{ n: number }>(count, [0]),
      ]);
      expect([before.rows[0]!.n, after.rows[0]!.n, last.rows[0]!.n]).toEqual([0, 1, 2]);
    });

    it('wait for a transaction that runs, and read what it committed', async () => {
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      let inserted!: () => void;
      const didInsert = new Promise<void>((resolve) => (inserted = resolve));
      const transaction = client.transaction(async (tx) => {
        await tx.query('insert into trip_rows (id, name) values ($1, $2)', [500, 'in a transaction']);
        inserted();
        await held;
      });
      await didInsert;
      let answered = false;
      const reading = client.query<{ name: string }>(byId, [500]).then((r) => ((answered = true), r));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(answered).toBe(false);
      release();
      await transaction;
      expect((await reading).rows).toEqual([{ id: 500, name: 'in a transaction' }]);
    });

    it('refuse a transaction and a statement made in the turn close() is called in with PGlite’s own error, and do not start the transaction', async () => {
      const own = await pgliteDriver().PGlite.create('memory://', { startParams: pgliteStartParams(), loadDataDir: await pgliteSnapshot() });
      const closing = preparedStatements(own, 'memory://');
      let ran = false;
      const transaction = closing.transaction(async (tx) => {
        ran = true;
        return (await tx.query('select 1 as n')).rows;
      });
      const statement = closing.query('create table never_made (n int)');
      await own.close();
      const settled = await Promise.allSettled([transaction, statement]);
      // PGlite's WebAssembly was torn down under them: a TypeError from inside it before.
      for (const result of settled) expect(result.status === 'rejected' ? String(result.reason) : 'answered').toMatch(/^Error: PGlite is clos(ing|ed)$/);
      expect(ran).toBe(false);
    });

    it('are refused, not left waiting, once PGlite is closed', async () => {
      const own = await pgliteDriver().PGlite.create('memory://', { startParams: pgliteStartParams(), loadDataDir: await pgliteSnapshot() });
      const closed = preparedStatements(own, 'memory://');
      expect((await closed.query<{ n: number }>('select $1::int as n', [1])).rows).toEqual([{ n: 1 }]);
      // Made in the turn close() is called in: answered before it, or refused, never left waiting.
      const during = closed.query<{ n: number }>('select $1::int as n', [2]);
      await own.close();
      const settled = await during.then(
        (r) => r.rows,
        (error: unknown) => String(error),
      );
      expect([[{ n: 2 }], 'Error: PGlite is closing', 'Error: PGlite is closed']).toContainEqual(settled);
      const refused = await Promise.allSettled([closed.query('select $1::int as n', [2]), closed.query('select $1::int as n', [3])]);
      expect(refused.map((r) => r.status)).toEqual(['rejected', 'rejected']);
      expect(String((refused[0] as PromiseRejectedResult).reason)).toMatch(/closed/i);
    });
  });

  it('prepares its statements again once it changed the schema itself: what they take, not only what they answer', async () => {
    await client.query('create table retyped (id int primary key, code int)');
    await client.query('insert into retyped values ($1, $2)', [1, 7]);
    const text = 'select id from retyped where code = $1';
    expect((await client.query(text, [7])).rows).toEqual([{ id: 1 }]);
    // PostgreSQL would keep the cached statement's int parameter: 'abc' would fail as an int, on every call.
    await client.query('alter table retyped alter column code type text using code::text');
    await client.query('insert into retyped values ($1, $2)', [2, 'abc']);
    expect((await client.query(text, ['abc'])).rows).toEqual([{ id: 2 }]);

    // The same in a transaction, and after one that rolled back: what was prepared inside it is prepared again.
    await expect(
      client.transaction(async (tx) => {
        await tx.query('alter table retyped alter column code type int using 0');
        expect((await tx.query(text, [0])).rows).toHaveLength(2);
        await tx.query('select 1 / $1::int', [0]);
      }),
    ).rejects.toMatchObject({ code: '22012' });
    expect((await client.query(text, ['abc'])).rows).toEqual([{ id: 2 }]);
  });

  it('prepares a statement again when something else closed it on the same PGlite', async () => {
    const text = 'select $1::int + 40 as n';
    expect((await client.query<{ n: number }>(text, [1])).rows).toEqual([{ n: 41 }]);
    await pg.exec('deallocate all');
    expect((await client.query<{ n: number }>(text, [2])).rows).toEqual([{ n: 42 }]);
  });

  it('runs a statement once when its error only looks like a changed table (feature_not_supported from a trigger)', async () => {
    await pg.exec(`
      create sequence refused_seq;
      create table refused (id int default nextval('refused_seq'));
      create function refuse() returns trigger language plpgsql as $$ begin raise exception 'no' using errcode = 'feature_not_supported'; end $$;
      create trigger refuse before insert on refused for each row execute function refuse();`);
    for (let i = 0; i < 2; i++) {
      const failure = await client.query('insert into refused default values').catch((error: unknown) => error);
      expect(failure).toMatchObject({ code: '0A000' });
    }
    expect((await pg.query<{ last_value: number }>('select last_value from refused_seq')).rows).toEqual([{ last_value: 2 }]);
  });

  it('refuses a query on a transaction that has ended, as PGlite does', async () => {
    await client.query('create table ended (n int)');
    let kept: QueryClient | undefined;
    await client.transaction(async (tx) => {
      kept = tx;
      await tx.query('insert into ended values ($1)', [1]);
    });
    await expect(kept!.query('insert into ended values ($1)', [2])).rejects.toThrow('Transaction is closed');
    await expect(kept!.query('select count(*) from ended')).rejects.toThrow('Transaction is closed');
    expect((await pg.query<{ n: number }>('select count(*)::int as n from ended')).rows).toEqual([{ n: 1 }]);
  });

  it('reports a database error with the query and its parameters, and goes on', async () => {
    const failure = await client.query('select $1::int as n', ['not a number']).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: '22P02', query: 'select $1::int as n', params: ['not a number'] });
    expect((await client.query<{ n: number }>('select $1::int as n', [3])).rows).toEqual([{ n: 3 }]);
  });
});

describe('the migrated template', () => {
  const journal = JSON.parse(readFileSync(join(migrationsFolder, 'meta/_journal.json'), 'utf8')) as { entries: unknown[] };
  // Drizzle's execute answers PGlite's result (rows in `rows`).
  const count = async (database: { db: { execute: (query: ReturnType<typeof sql>) => Promise<unknown> } }, query: ReturnType<typeof sql>) =>
    ((await database.db.execute(query)) as { rows: { n: number }[] }).rows[0]!.n;
  const applied = async (dataDir: string) => {
    const database = await openDatabase({ dataDir, template: false });
    try {
      const migrations = await count(database, sql`select count(*)::int as n from drizzle.__drizzle_migrations`);
      const links = await count(database, sql`select count(*)::int as n from links`);
      await database.migrate();
      return { migrations, links, afterMigrate: await count(database, sql`select count(*)::int as n from drizzle.__drizzle_migrations`) };
    } finally {
      await database.close();
    }
  };

  it('is the template with every migration applied, made once, and the ones for other migrations or PGlites go', async () => {
    const scratch = mkdtempSync(join(tmpdir(), 'linkgate-migrated-'));
    try {
      // A template of its own, so that this test builds one instead of finding the install's.
      const template = join(scratch, 'pglite-test');
      seedDataDir(template, (await pgliteTemplate())!);
      const stale = `${template}-migrated-0000000000000000`;
      const otherPglite = join(scratch, 'pglite-0.0.1-migrated-0000000000000000');
      const building = `${template}-migrated-testdigest.building-x`;
      // What an earlier template layout left: its template and a test snapshot of it.
      const oldLayout = join(scratch, 'pglite-0.0.1');
      const oldSnapshot = join(scratch, 'pglite-0.0.1-0000000000000000.tar');
      for (const dir of [stale, otherPglite, building, oldLayout]) {
        mkdirSync(dir);
        writeFileSync(join(dir, 'PG_VERSION'), '17');
      }
      writeFileSync(oldSnapshot, 'tar');

      const made = await makeMigratedTemplate(template, 'testdigest');
      expect(made).toBe(`${template}-migrated-testdigest`);
      expect(existsSync(stale)).toBe(false);
      expect(existsSync(otherPglite)).toBe(false);
      expect(existsSync(oldLayout)).toBe(false);
      expect(existsSync(oldSnapshot)).toBe(false);
      // Another process's build under way is not touched.
      expect(existsSync(building)).toBe(true);
      expect(existsSync(join(template, 'PG_VERSION'))).toBe(true);
      const builtAt = statSync(join(made!, 'PG_VERSION')).mtimeMs;
      expect(await makeMigratedTemplate(template, 'testdigest')).toBe(made);
      expect(statSync(join(made!, 'PG_VERSION')).mtimeMs).toBe(builtAt);

      // A data directory copied from it holds every migration, and migrating it changes nothing.
      const dataDir = join(scratch, 'pgdata');
      seedDataDir(dataDir, made!);
      expect(await applied(dataDir)).toEqual({ migrations: journal.entries.length, links: 0, afterMigrate: journal.entries.length });
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it('holds the postgres database alone: initdb’s template0 and template1 are dropped, and with them two thirds of the files a new data directory copies', async () => {
    const template = (await pgliteTemplate())!;
    const files = (dir: string): number => readdirSync(dir, { withFileTypes: true }).reduce((n, entry) => n + (entry.isDirectory() ? files(join(dir, entry.name)) : 1), 0);
    expect(readdirSync(join(template, 'base'))).toHaveLength(1);
    expect(files(template)).toBeLessThan(500);
    const dataDir = mkdtempSync(join(tmpdir(), 'linkgate-one-db-'));
    try {
      rmSync(dataDir, { recursive: true });
      seedDataDir(dataDir, template);
      const database = await openDatabase({ dataDir, template: false });
      try {
        const rows = (await database.db.execute(sql`select datname, current_database() as current from pg_database`)) as unknown as { rows: { datname: string; current: string }[] };
        expect(rows.rows).toEqual([{ datname: 'postgres', current: 'postgres' }]);
      } finally {
        await database.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('is copied only into a data directory that holds nothing yet', async () => {
    const scratch = mkdtempSync(join(tmpdir(), 'linkgate-seed-'));
    try {
      const template = (await pgliteTemplate())!;
      const missing = join(scratch, 'missing');
      const empty = join(scratch, 'empty');
      mkdirSync(empty);
      const other = join(scratch, 'other');
      mkdirSync(other);
      writeFileSync(join(other, 'notes.txt'), 'mine');
      const database = join(scratch, 'database');
      mkdirSync(database);
      writeFileSync(join(database, 'PG_VERSION'), '17');
      expect([missing, empty, other, database].map(isNewDataDir)).toEqual([true, true, false, false]);

      for (const dir of [missing, empty, other, database]) seedDataDir(dir, template);
      expect(existsSync(join(missing, 'PG_VERSION')) && existsSync(join(empty, 'PG_VERSION'))).toBe(true);
      expect(existsSync(join(other, 'PG_VERSION'))).toBe(false);
      expect(readFileSync(join(other, 'notes.txt'), 'utf8')).toBe('mine');
      expect(readFileSync(join(database, 'PG_VERSION'), 'utf8')).toBe('17');
      expect(existsSync(join(database, 'base'))).toBe(false);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it('is what a new data directory starts from once npm install made it: migrated before migrate() runs', async () => {
    await makeMigratedTemplate(await pgliteTemplate());
    expect(migratedTemplate()).toMatch(/-migrated-[0-9a-f]{16}$/);
    const scratch = mkdtempSync(join(tmpdir(), 'linkgate-migrated-'));
    try {
      const dataDir = join(scratch, 'pgdata');
      const database = await openDatabase({ dataDir });
      const migrations = await count(database, sql`select count(*)::int as n from drizzle.__drizzle_migrations`);
      await database.close();
      expect(migrations).toBe(journal.entries.length);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
