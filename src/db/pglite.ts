/**
 * The embedded database (PGlite) set up for one small gateway: its
 * PostgreSQL settings, new data directories copied from a template instead
 * of running initdb, and a query path with prepared statements, the reads
 * of one turn of the event loop sent as one trip.
 * docs/performance.md ("The embedded database") has the measurements.
 */
import { createRequire } from 'node:module';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { PGlite, QueryOptions, Results, Transaction } from '@electric-sql/pglite';
import * as v from 'valibot';
import { pgliteDriver } from './orm.ts';

/**
 * PGlite's own start parameters (single-user mode, `-F`: no fsync, which
 * its WebAssembly file system could not do anyway) and:
 * - shared_buffers 8 MB instead of 128 MB: PostgreSQL zero-fills them at
 *   start, so each MB of them is a MB of resident memory (128 MB: 112 MB more
 *   than 16; 16 MB: 8 MB more than 8, measured on PGlite's WebAssembly
 *   memory), for a gateway whose hot rows fit in a few (a thousand links are
 *   well under 1 MB); a page that misses is read from the OS's page cache,
 *   a few µs beside the ~100 µs a query costs here.
 *
 * Kept: synchronous_commit (on): single-user mode has no WAL writer, so an
 * asynchronous commit could be lost with the process. With `-F` a COMMIT
 * has written its WAL to the OS when it returns: it survives the gateway's
 * crash (test/reliability/crash.test.ts), not the machine's. PostgreSQL is the
 * deployment for that.
 */
export function pgliteStartParams(): string[] {
  return [...pgliteDriver().PGlite.defaultStartParams, '-c', 'shared_buffers=8MB'];
}

// --- the template ------------------------------------------------------------------------------

/**
 * Where the template for this PGlite release lives: an empty database as
 * initdb makes it, but for the two template databases (keepOnlyPostgres),
 * in `node_modules/.cache/linkgate/`, made by `npm install`
 * (postinstall) or by the first start that needs it. Not migrated: the
 * server migrates at start as on PostgreSQL, and the template stays valid
 * whatever the migrations become.
 */
export function templateDir(): string {
  const pgliteDist = dirname(createRequire(import.meta.url).resolve('@electric-sql/pglite'));
  const { version } = v.parse(v.object({ version: v.string() }), JSON.parse(readFileSync(join(pgliteDist, '..', 'package.json'), 'utf8')));
  // The start parameters are not in it: they are given at every start, over postgresql.conf.
  // "-postgres-only": made by keepOnlyPostgres (the templates before it held initdb's three databases).
  return join(pgliteDist, '..', '..', '..', '.cache', 'linkgate', `pglite-${version}-postgres-only`);
}

/**
 * Drops initdb's template0 and template1 from a new template, leaving the
 * `postgres` database, the only one PGlite opens. Copying a data directory
 * costs per file (0.8–1.3 ms a file on this project's machine on
 * 2026-12-07: 0.9–1.3 s for the 1 083 files of the migrated template with
 * three databases, 0.54 s for its 483 with one), and this leaves about a
 * third of initdb's files (371 of 971). Nothing in the gateway creates a
 * database, which is what template1 is for.
 */
export async function keepOnlyPostgres(dataDir: string): Promise<void> {
  const pg = await pgliteDriver().PGlite.create(dataDir, { startParams: pgliteStartParams() });
  try {
    // Simple queries, one statement each: DROP DATABASE runs in no transaction block.
    await pg.exec(`update pg_database set datistemplate = false where datname in ('template0', 'template1')`);
    await pg.exec('drop database template0');
    await pg.exec('drop database template1');
  } finally {
    await pg.close();
  }
}

/**
 * The template directory, made first if it is missing: `build` runs initdb
 * in a scratch directory beside it, which is renamed into place once the
 * database in it has been closed cleanly. Undefined when it cannot be made
 * (a read-only node_modules): then the caller runs initdb.
 */
export async function ensureTemplate(dir: string, build: (scratch: string) => Promise<void>): Promise<string | undefined> {
  if (existsSync(join(dir, 'PG_VERSION'))) return dir;
  let scratch: string | undefined;
  try {
    mkdirSync(dirname(dir), { recursive: true });
    scratch = mkdtempSync(`${dir}.building-`);
    await build(scratch);
    renameSync(scratch, dir);
    return dir;
  } catch {
    // Another process finished first (the rename found it there), or this one cannot write here.
    if (scratch) rmSync(scratch, { recursive: true, force: true });
    return existsSync(join(dir, 'PG_VERSION')) ? dir : undefined;
  }
}

/** Whether `dataDir` holds nothing yet: neither a database nor anything else, which a copy would replace. */
export function isNewDataDir(dataDir: string): boolean {
  if (existsSync(join(dataDir, 'PG_VERSION'))) return false;
  return !existsSync(dataDir) || readdirSync(dataDir).length === 0;
}

/**
 * Makes `dataDir` a copy of the template when it holds no database yet. The
 * copy goes to a scratch directory first and is renamed into place: a crash
 * while copying leaves no half database behind. A directory that holds
 * something else is left alone.
 */
export function seedDataDir(dataDir: string, template: string): void {
  if (!isNewDataDir(dataDir)) return;
  // One name, not one per process: the caller holds the DATA_DIR lock, and a crash's leftover is replaced.
  const scratch = join(dirname(dataDir), `.${basename(dataDir)}.copying`);
  rmSync(scratch, { recursive: true, force: true });
  cpSync(template, scratch, { recursive: true });
  rmSync(dataDir, { recursive: true, force: true });
  renameSync(scratch, dataDir);
}

// --- prepared statements -----------------------------------------------------------------------

interface Statement {
  name: string;
  paramTypes: number[];
  fields: { name: string; dataTypeID: number }[];
  /** The schema generation it was prepared in (preparedStatements, `generation`). */
  generation: number;
}

/** Statements are named `linkgate_<n>`: one count per process, so two clients on one PGlite never reuse a name. */
let counter = 0;
/** Named statements kept at most; the least recently used is closed. */
const MAX_STATEMENTS = 200;
/** Statements worth preparing: the ones Drizzle sends again and again. DDL (the migrations) is parsed each time. */
const PREPARABLE = /^\s*(select|insert|update|delete|with)\b/i;
/** Statements that go several to a trip outside a transaction (preparedStatements, "reads"). A notice could not be told apart. */
const READ = /^\s*select\b/i;
/**
 * SELECTs that are not only reads: what PostgreSQL does not roll back (a
 * sequence, a setting, a session's advisory lock, a notification, a large
 * object, another backend signalled, a logical message), a wait, a table
 * made, or rows locked. A function of the database's own that writes cannot
 * be told from its name; the gateway's reads call none.
 */
const NOT_A_PLAIN_READ =
  /\b(nextval|setval|set_config|pg_(try_)?advisory_\w+|pg_notify|pg_sleep\w*|lo_\w+|pg_(terminate|cancel)_backend|pg_logical_emit_message|into|for\s+(update|share|no\s+key\s+update|key\s+share))\b/i;

/** A SELECT that only reads: one that can share a trip (and its transaction) with others, and run again if that trip fails. */
export function isPlainRead(text: string): boolean {
  return READ.test(text) && !NOT_A_PLAIN_READ.test(text);
}
/** Reads on one trip at most: a bound on the message and on the answers held at once. */
const MAX_READS_PER_TRIP = 64;
/**
 * "cached plan must not change result type": a table changed under a
 * prepared statement (PostgreSQL's RevalidateCachedQuery; 0A000 alone is any
 * "feature not supported", a trigger's own error among them).
 */
const PLAN_CHANGED = { code: '0A000', routine: 'RevalidateCachedQuery' };
/** "prepared statement does not exist": closed by someone else on the same PGlite (DEALLOCATE, DISCARD). */
const NO_SUCH_STATEMENT = '26000';
/**
 * Statements that may change what a prepared statement takes or answers (a
 * column's type, a type dropped and made again; a DO block may hold any of
 * them), or close prepared statements. PostgreSQL prepares a statement again
 * by itself when a table under it changed, but keeps the parameter types it
 * was prepared with: a cached `where code = $1` would go on taking an int
 * after the column became text.
 */
const CHANGES_SCHEMA = /^\s*(create|alter|drop|do|discard|deallocate)\b/i;

/** Execute (the unnamed portal, every row). */
const EXECUTE = Uint8Array.of(0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0);
/** Sync: the end of a trip, where PostgreSQL commits its implicit transaction and answers ReadyForQuery. */
const SYNC = Uint8Array.of(0x53, 0, 0, 0, 4);

/** One run of a prepared statement: its name and its parameters, as text. */
export interface BoundRun {
  statement: string;
  values: readonly (string | null)[];
}

/**
 * Bind (the unnamed portal to a statement, parameters and result columns
 * all in text) and Execute for each run, then one Sync, as one message:
 * PostgreSQL's frontend/backend protocol, "Message Formats". Written here,
 * in one pooled Buffer, rather than by PGlite's serializer, whose writer
 * makes four ArrayBuffers per Bind and took 10–12 µs per run timed alone
 * (this 0.6), and about 32 µs per status request in the gateway's profile
 * (bench/README.md, sixth session).
 */
export function bindExecuteSync(runs: readonly BoundRun[]): Uint8Array {
  // Each Bind's length once: it sizes the message and is written into it.
  const lengths = runs.map(bindLength);
  let size = SYNC.length;
  for (const length of lengths) size += 1 + length + EXECUTE.length;
  const message = Buffer.allocUnsafe(size);
  let at = 0;
  for (let i = 0; i < runs.length; i++) {
    const { statement, values } = runs[i]!;
    // 'B', its length, the portal's name (empty) and the statement's, no format codes, the values, no format codes.
    message[at++] = 0x42;
    at = message.writeInt32BE(lengths[i]!, at);
    message[at++] = 0;
    at += message.write(statement, at);
    message[at++] = 0;
    at = message.writeInt16BE(0, at);
    // Unsigned, as the backend reads it: up to 65 535 parameters (a multi-row insert may pass 32 767).
    at = message.writeUInt16BE(values.length, at);
    for (const value of values) {
      if (value === null) {
        at = message.writeInt32BE(-1, at);
      } else {
        const written = message.write(value, at + 4);
        message.writeInt32BE(written, at);
        at += 4 + written;
      }
    }
    at = message.writeInt16BE(0, at);
    message.set(EXECUTE, at);
    at += EXECUTE.length;
  }
  message.set(SYNC, at);
  return message;
}

/** A Bind message's length field: itself, the two names, the format and value counts, the values. */
function bindLength({ statement, values }: BoundRun): number {
  let length = 4 + 1 + Buffer.byteLength(statement) + 1 + 2 + 2 + 2;
  for (const value of values) length += 4 + (value === null ? 0 : Buffer.byteLength(value));
  return length;
}

/**
 * Whether PGlite's file system for `dataDir` needs its `syncToFs` after a
 * write. A directory (NodeFS) is written through by every write PostgreSQL
 * makes, and `memory://` has nowhere to copy to: both have a `syncToFs`
 * that does nothing, which PGlite still reaches through a mutex of its own
 * and several promise hops per query. The browsers' IndexedDB and OPFS file
 * systems (`idb://`, `opfs-ahp://`) do need it.
 */
export function fileSystemNeedsSync(dataDir: string): boolean {
  return dataDir.includes('://') && !dataDir.startsWith('memory://');
}

/** A read waiting for its trip. */
interface PendingRead {
  text: string;
  params: unknown[];
  options: QueryOptions | undefined;
  resolve: (results: Results<unknown>) => void;
  reject: (error: unknown) => void;
}

/** What Drizzle's PGlite session calls on its client. */
export interface QueryClient {
  query<T>(text: string, params?: unknown[], options?: QueryOptions): Promise<Results<T>>;
  transaction<T>(run: (tx: QueryClient) => Promise<T>): Promise<T>;
}

/**
 * PGlite's `query`, as Drizzle calls it, with named prepared statements.
 * PGlite runs every query as six protocol messages (Parse, Describe, Bind,
 * Describe, Execute, Sync), each a separate trip through PostgreSQL's main
 * loop in WebAssembly, and parses and plans it every time. Here a statement
 * is parsed once (Parse, Describe) and then runs as Bind, Execute, Sync in
 * one trip: the status API's query went from ~250 to ~100 µs of CPU. Reads
 * (SELECT) outside a transaction go several to a trip ("reads" below).
 * What this does not handle (COPY with a blob) goes to PGlite's `query`.
 *
 * `dataDir` is the one PGlite was opened on: it says whether a write must
 * be copied out to its file system afterwards (fileSystemNeedsSync).
 */
export function preparedStatements(pg: PGlite, dataDir: string): QueryClient {
  const mustSync = fileSystemNeedsSync(dataDir);
  const { protocol } = pgliteDriver().pglite;
  const { serialize } = protocol;
  const statements = new Map<string, Statement>();
  /**
   * Moves on whenever this client runs a statement that may change the
   * schema (CHANGES_SCHEMA), and again when a transaction that ran one ends
   * (committed or rolled back, what was prepared inside it may be wrong now):
   * a statement prepared in an earlier generation is closed and prepared
   * again on its next use. A schema changed by another client of the same
   * PGlite is caught only where PostgreSQL reports it (PLAN_CHANGED).
   */
  let generation = 0;

  function concat(parts: Uint8Array[]): Uint8Array {
    const message = new Uint8Array(parts.reduce((size, part) => size + part.length, 0));
    let at = 0;
    for (const part of parts) {
      message.set(part, at);
      at += part.length;
    }
    return message;
  }

  /** PGlite's errors carry the query and its parameters; so do these. */
  function withQuery(error: unknown, text: string, params: unknown[]): unknown {
    if (error instanceof protocol.messages.DatabaseError) Object.assign(error, { query: text, params });
    return error;
  }

  async function prepare(text: string, syncToFs: boolean): Promise<Statement> {
    const name = `linkgate_${(counter += 1)}`;
    const messages = await pg.execProtocolStream(concat([serialize.parse({ name, text }), serialize.describe({ type: 'S', name }), serialize.sync()]), { syncToFs });
    const statement: Statement = { name, paramTypes: [], fields: [], generation };
    for (const message of messages) {
      if (message instanceof protocol.messages.ParameterDescriptionMessage) statement.paramTypes = message.dataTypeIDs;
      if (message instanceof protocol.messages.RowDescriptionMessage) statement.fields = message.fields.map((f) => ({ name: f.name, dataTypeID: f.dataTypeID }));
    }
    if (statements.size >= MAX_STATEMENTS) {
      const [oldest] = statements;
      if (oldest) await forget(oldest[0], oldest[1], syncToFs);
    }
    statements.set(text, statement);
    return statement;
  }

  async function forget(text: string, statement: Statement, syncToFs: boolean): Promise<void> {
    statements.delete(text);
    await pg.execProtocolStream(concat([serialize.close({ type: 'S', name: statement.name }), serialize.sync()]), { syncToFs, throwOnError: false });
  }

  /** As PGlite's parseType, looked up per field rather than merged per query: its parsers are a few hundred (one per array type). */
  function parseField(value: string | null, oid: number, own: QueryOptions['parsers']): unknown {
    if (value === null) return null;
    const parser = own?.[oid] ?? pg.parsers[oid];
    return parser ? parser(value, oid) : value;
  }

  /**
   * The statement prepared for `text`: found (and moved to the end: least recently used first) or prepared
   * now, as well as one prepared before the schema last changed.
   */
  async function statementFor(text: string, syncToFs: boolean): Promise<Statement> {
    const statement = statements.get(text);
    if (statement?.generation !== generation) {
      if (statement) await forget(text, statement, syncToFs);
      return prepare(text, syncToFs);
    }
    statements.delete(text);
    statements.set(text, statement);
    return statement;
  }

  /** A run's parameters as text, by PGlite's serializers for the types the statement takes. */
  function bound(statement: Statement, params: unknown[], options: QueryOptions | undefined): BoundRun {
    const serializers = options?.serializers ? { ...pg.serializers, ...options.serializers } : pg.serializers;
    const values: (string | null)[] = new Array(params.length);
    for (let i = 0; i < params.length; i++) {
      const value = params[i];
      const toText = value === null || value === undefined ? undefined : serializers[statement.paramTypes[i]!];
      // PGlite's serializers answer text; String() keeps a stray one from writing anything else.
      values[i] = value === null || value === undefined ? null : toText ? String(toText(value)) : String(value);
    }
    return { statement: statement.name, values };
  }

  /**
   * One run's answer, read from `messages[from]` up to its CommandComplete:
   * its rows, mapped by the statement's fields, and the count of rows it
   * changed. `next` is where the following run's answer starts.
   */
  function answerOf<T>(messages: readonly unknown[], from: number, statement: Statement, options: QueryOptions | undefined): { results: Results<T>; next: number } {
    const { fields } = statement;
    // Plain loops, no closure made per query: under tsx (keepNames) each named one costs a defineProperty.
    const own = options?.parsers;
    const rows: unknown[] = [];
    let affectedRows = 0;
    let at = from;
    for (; at < messages.length; at++) {
      const message = messages[at];
      if (message instanceof protocol.messages.DataRowMessage) {
        const values = message.fields;
        if (options?.rowMode === 'array') {
          const row: unknown[] = new Array(values.length);
          for (let i = 0; i < values.length; i++) row[i] = parseField(values[i]!, fields[i]!.dataTypeID, own);
          rows.push(row);
        } else {
          const row: Record<string, unknown> = {};
          for (let i = 0; i < values.length; i++) row[fields[i]!.name] = parseField(values[i]!, fields[i]!.dataTypeID, own);
          rows.push(row);
        }
      } else if (message instanceof protocol.messages.CommandCompleteMessage) {
        // "INSERT 0 5", "UPDATE 3", "DELETE 1": the count of rows changed (as PGlite reports it).
        const [command = ''] = message.text.split(' ');
        if (['INSERT', 'UPDATE', 'DELETE', 'MERGE', 'COPY'].includes(command)) affectedRows += Number(message.text.split(' ').at(-1));
        at += 1;
        break;
      }
    }
    if (!(messages[at - 1] instanceof protocol.messages.CommandCompleteMessage)) throw new Error('PGlite answered fewer statements than it was sent');
    return { results: { rows: rows as T[], fields, affectedRows }, next: at };
  }

  async function run<T>(text: string, params: unknown[], options: QueryOptions | undefined, inTransaction: boolean): Promise<Results<T>> {
    const syncToFs = mustSync && !inTransaction;
    const statement = await statementFor(text, syncToFs);
    const messages = await pg.execProtocolStream(bindExecuteSync([bound(statement, params, options)]), {
      syncToFs,
      ...(options?.onNotice ? { onNotice: options.onNotice } : {}),
    });
    return answerOf<T>(messages, 0, statement, options).results;
  }

  async function query<T>(text: string, params: unknown[], options: QueryOptions | undefined, inTransaction: boolean, retry = !inTransaction): Promise<Results<T>> {
    try {
      return await run<T>(text, params, options, inTransaction);
    } catch (error) {
      const statement = statements.get(text);
      const stale =
        error instanceof protocol.messages.DatabaseError &&
        ((error.code === PLAN_CHANGED.code && error.routine === PLAN_CHANGED.routine) || error.code === NO_SUCH_STATEMENT);
      if (statement && stale) {
        await forget(text, statement, mustSync && !inTransaction);
        // Outside a transaction nothing was done: prepare it again, as the table is now. Inside one, the transaction has failed.
        if (retry) return query<T>(text, params, options, inTransaction, false);
      }
      throw withQuery(error, text, params);
    }
  }

  const preparable = (text: string, options: QueryOptions | undefined) => !options?.blob && PREPARABLE.test(text);

  // --- reads, several to a trip ---
  //
  // A trip through PGlite costs most of a read's CPU whatever the read: the
  // call into WebAssembly, PostgreSQL starting and committing the trip's
  // transaction, ReadyForQuery, PGlite's mutexes and promises. Timed alone
  // (an indexed row of 100 000, 2026-12-07): ~150 µs for a read on its own
  // trip, ~100 µs each with 4 to a trip, ~75 with 8. So a read opens a trip
  // (or joins the open one, up to MAX_READS_PER_TRIP); the trip, once the
  // queries made before it have run, waits for the end of the event loop's
  // turn (setImmediate: after that turn's I/O callbacks, the status API's
  // requests among them) and sends every read that joined as one message:
  // Bind and Execute each, one Sync.
  //
  // Order is kept: this client's queries run in the order they were made
  // (inOrder), and any query that is not a read closes the open trip, so a
  // read made after it goes on a later trip. The reads of a trip share its
  // transaction: the same now(), and what PostgreSQL does not roll back would
  // be done once per run: a sequence, a session advisory lock, set_config,
  // which isPlainRead leaves out. If the trip fails, PostgreSQL has abandoned
  // its transaction and skipped the rest up to Sync: then each read runs
  // again on a trip of its own, for its own answer or error (a read that
  // fails costs the others of its trip a second trip; reads rarely fail, as
  // inputs are checked before they reach the database). (Under fake timers
  // that fake setImmediate, reads wait for them.)
  let open: PendingRead[] | undefined;

  /**
   * This client's queries, one after another in the order they were made:
   * each starts once the one before it has ended. PGlite's own mutexes then
   * keep them apart from other users of the same PGlite.
   */
  let tail: Promise<unknown> = Promise.resolve();
  function inOrder<T>(run: () => Promise<T>): Promise<T> {
    const result = tail.then(run);
    tail = result.catch(() => undefined);
    return result;
  }

  /**
   * As PGlite's own query: once PGlite is ready (waited for outside its
   * mutexes, which its start may need), after the transaction that runs,
   * then alone; and checked again inside, as its close() does: a close()
   * queued ahead may have run.
   */
  async function exclusive<T>(run: () => Promise<T>): Promise<T> {
    await pg._checkReady();
    return pg._runExclusiveTransaction(() =>
      pg.runExclusive(async () => {
        await pg._checkReady();
        return run();
      }),
    );
  }

  /**
   * For what goes through PGlite's own query and transaction, which check
   * that it is ready only before they wait for its mutexes: a close() queued
   * ahead may have run meanwhile and torn its WebAssembly down under them.
   * Then the caller gets PGlite's "closing"/"closed" error rather than what
   * the torn-down module threw (a TypeError).
   */
  async function closedAs<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      await pg._checkReady();
      throw error;
    }
  }

  function read<T>(text: string, params: unknown[], options: QueryOptions | undefined): Promise<Results<T>> {
    return new Promise<Results<T>>((resolve, reject) => {
      if (!open) tripOf((open = []));
      open.push({ text, params, options, resolve: resolve as PendingRead['resolve'], reject });
      if (open.length >= MAX_READS_PER_TRIP) open = undefined;
    });
  }

  /** A query that is not a read: reads made after it go on a later trip than the open one. */
  function closeTrip(): void {
    open = undefined;
  }

  function tripOf(trip: PendingRead[]): void {
    inOrder(async () => {
      // The end of the turn: the reads that this turn's I/O callbacks make join the trip.
      await new Promise((resolve) => setImmediate(resolve));
      if (open === trip) open = undefined;
      await exclusive(() => runReads(trip));
    }).catch((error: unknown) => {
      // PGlite closed or failed, outside any one read: every read of the trip has its error.
      if (open === trip) open = undefined;
      for (const pending of trip) pending.reject(error);
    });
  }

  async function runReads(trip: PendingRead[]): Promise<void> {
    if (trip.length > 1) {
      const prepared: Statement[] = [];
      let messages: readonly unknown[] | undefined;
      try {
        const runs: BoundRun[] = [];
        for (const pending of trip) {
          const statement = await statementFor(pending.text, mustSync);
          prepared.push(statement);
          runs.push(bound(statement, pending.params, pending.options));
        }
        messages = await pg.execProtocolStream(bindExecuteSync(runs), { syncToFs: mustSync });
      } catch {
        // One of them failed, and the trip with it: each runs again alone, below.
        messages = undefined;
      }
      if (messages) {
        // Each answer read on its own: a parser that throws fails its own read only.
        for (let i = 0, at = 0; i < trip.length; i++) {
          try {
            const { results, next } = answerOf<unknown>(messages, at, prepared[i]!, trip[i]!.options);
            trip[i]!.resolve(results);
            at = next;
          } catch (error) {
            trip[i]!.reject(withQuery(error, trip[i]!.text, trip[i]!.params));
            at = nextAnswer(messages, at);
          }
        }
        return;
      }
    }
    for (const pending of trip) await query(pending.text, pending.params, pending.options, false).then(pending.resolve, pending.reject);
  }

  /** Where the answer after the one starting at `from` starts: past its CommandComplete. */
  function nextAnswer(messages: readonly unknown[], from: number): number {
    let at = from;
    while (at < messages.length && !(messages[at] instanceof protocol.messages.CommandCompleteMessage)) at += 1;
    return at + 1;
  }

  /** A statement that is not prepared, run by `run`; the schema's generation moves on after one that may change it. */
  async function unprepared<T>(text: string, run: () => Promise<Results<T>>): Promise<Results<T>> {
    try {
      return await run();
    } finally {
      if (CHANGES_SCHEMA.test(text)) generation += 1;
    }
  }

  /** `tx` for the transaction's callback. */
  function onTransaction(tx: Transaction): QueryClient {
    return {
      query<T>(text: string, params: unknown[] = [], options?: QueryOptions) {
        // As PGlite's own transaction does: the prepared path below would otherwise run in whatever transaction is current.
        if (tx.closed) return Promise.reject(new Error('Transaction is closed'));
        if (preparable(text, options)) return pg.runExclusive(() => query<T>(text, params, options, true));
        return unprepared(text, () => tx.query<T>(text, params, options));
      },
      transaction: () => Promise.reject(new Error('nested transactions are savepoints: Drizzle runs them on the same transaction')),
    };
  }

  return {
    async query<T>(text: string, params: unknown[] = [], options?: QueryOptions) {
      if (preparable(text, options) && isPlainRead(text) && !options?.onNotice) return read<T>(text, params, options);
      closeTrip();
      if (!preparable(text, options)) return inOrder(() => closedAs(() => unprepared(text, () => pg.query<T>(text, params, options))));
      return inOrder(() => exclusive(() => query<T>(text, params, options, false)));
    },
    transaction: (run) => {
      closeTrip();
      return inOrder(async () => {
        // Only this transaction's statements run meanwhile (inOrder): a generation that moved is one of them.
        const before = generation;
        try {
          return await closedAs(() =>
            pg.transaction(async (tx) => {
              // Checked again inside, as exclusive() does: the callback does not start on a PGlite that is closing.
              await pg._checkReady();
              return run(onTransaction(tx));
            }),
          );
        } finally {
          if (generation !== before) generation += 1;
        }
      });
    },
  };
}
