import { sql } from '../db/orm.ts';
import type { Database } from '../db/client.ts';
import { LinkgateError } from './errors.ts';

export type NamedLock = <T>(name: string, fn: () => Promise<T>, options?: { timeoutMs?: number }) => Promise<T>;

/** In-process queues per database object, so every app on one PGlite (or one process on PostgreSQL) shares them. */
const queuesByDatabase = new WeakMap<Database, Map<string, Promise<void>>>();
/** How many lock holders may hold a pooled connection at once, per database object. */
const holdersByDatabase = new WeakMap<Database, Slots>();

interface Slots {
  take(): Promise<void>;
  give(): void;
}

/** At most `limit` at once; the rest wait in memory, in order, holding nothing. */
function slots(limit: number): Slots {
  let taken = 0;
  const waiting: Array<() => void> = [];
  return {
    take: () => {
      if (taken < limit) {
        taken += 1;
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => waiting.push(resolve));
    },
    // A waiter takes the slot over as it is given back.
    give: () => {
      const next = waiting.shift();
      if (next) next();
      else taken -= 1;
    },
  };
}

/**
 * An exclusive lock per name across every instance on one database.
 *
 * Callers in this process first queue in memory, so a burst of callers holds
 * at most one pooled connection per name; the head of the queue then takes
 * a transaction-scoped PostgreSQL advisory lock, which other instances wait
 * on. PGlite serves one process, so the in-memory queue is the whole lock.
 * The wait for the advisory lock is bounded by `lock_timeout`.
 *
 * A holder keeps its transaction's connection while `fn` runs, and `fn`
 * (a provider's session store, `tools.kv`) needs connections of its own
 * from the same pool: holders of as many names as the pool has connections
 * would wait on each other for ever. So at most half the pool (at least
 * one) holds locks at once; other holders wait in memory, holding nothing.
 */
export function createNamedLock(database: Database): NamedLock {
  let queues = queuesByDatabase.get(database);
  if (!queues) queuesByDatabase.set(database, (queues = new Map()));
  const queue = queues;

  return async (name, fn, options = {}) => {
    const timeoutMs = options.timeoutMs ?? 30_000;
    const previous = queue.get(name) ?? Promise.resolve();
    let release!: () => void;
    const mine = previous.then(() => new Promise<void>((resolve) => (release = resolve)));
    queue.set(name, mine);
    await previous;
    try {
      if (database.kind !== 'postgres') return await fn();
      let holders = holdersByDatabase.get(database);
      if (!holders) holdersByDatabase.set(database, (holders = slots(Math.max(1, Math.floor(database.poolSize / 2)))));
      const held = holders;
      await held.take();
      try {
        return await locked(name, fn, timeoutMs);
      } finally {
        held.give();
      }
    } finally {
      release();
      if (queue.get(name) === mine) queue.delete(name);
    }
  };

  /** Holds the advisory lock of `name` across instances, in a transaction of its own, while `fn` runs. */
  async function locked<T>(name: string, fn: () => Promise<T>, timeoutMs: number): Promise<T> {
    return await database.db.transaction(async (tx) => {
      await tx.execute(sql.raw(`set local lock_timeout = ${Math.max(1, Math.ceil(timeoutMs))}`));
      try {
        // Two-key form: its key space is apart from the one-key locks used elsewhere.
        await tx.execute(sql`select pg_advisory_xact_lock(1818849383, hashtext(${name}))`);
      } catch (cause) {
        throw new LinkgateError('provider_timeout', 'another instance held this lock for too long', { cause });
      }
      return fn();
    });
  }
}
