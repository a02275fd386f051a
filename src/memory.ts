import { executionAsyncResource } from 'node:async_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** V8's `gc` as `--expose-gc` makes it. */
type Collect = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

/**
 * Gives back to the system what start-up allocated and the gateway does not
 * keep: compiled modules' scratch, migrations, the young generation grown
 * while loading. V8 returns such memory once its memory reducer runs, which
 * it schedules only after a full collection; a gateway that starts with no
 * migration to run may never run one while idle, and kept 195 MB resident
 * on PGlite where 150 MB were in use (115 on PostgreSQL, 92 in use). So,
 * once, a second after listening (src/server.ts), the collection V8 makes
 * before giving up on an allocation, which reduces the footprint: two full
 * collections, about 60 ms (`node --trace-gc`), not on a request's path
 * unless one arrives just then.
 */
export function releaseStartupMemory(): boolean {
  try {
    let gc = (globalThis as { gc?: Collect }).gc;
    if (!gc) {
      // Exposed for one new context only: the flag is put back whatever happens.
      setFlagsFromString('--expose-gc');
      try {
        gc = runInNewContext('gc') as Collect;
      } finally {
        setFlagsFromString('--no-expose-gc');
      }
    }
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    return true;
  } catch {
    // A runtime that refuses the flag keeps the memory until V8 gives it back on its own; nothing depends on it.
    return false;
  }
}

/** The tick record keepTickRecord holds, for the life of the process. */
let keptTick: object | undefined;

/**
 * Holds one of `process.nextTick`'s records for the life of the process, so
 * that a collection that reduces memory does not make every later tick
 * slower.
 *
 * Each `nextTick` builds a record: an object literal with symbol keys, in
 * Node's lib/internal/process/task_queues.js. A full collection that reduces
 * the footprint (releaseStartupMemory's, and the one V8's memory reducer
 * makes once the process has idled for some seconds) does not keep unused
 * hidden classes, as other collections do for a while (V8's
 * `MarkCompactCollector::RetainMaps`, src/heap/mark-compact.cc). Run while
 * no record is alive, as at idle, it drops the record's classes, and from
 * then on every tick took 2–3 times as long: in the gateway's process, ticks
 * eight at a time took 580–880 ns against 130–250 with a record kept (Node
 * 24.21); under the status API's load, 5–8 µs of CPU per request, which makes
 * 7.4 ticks (bench/README.md, "The eighth session"). One record kept alive
 * keeps its classes. Inside a tick's callback, `executionAsyncResource()` is
 * that tick's record; where it is not (another runtime), what is kept is a
 * small object and nothing else changes.
 */
export function keepTickRecord(): void {
  process.nextTick(() => {
    keptTick = executionAsyncResource();
  });
}

/** What keepTickRecord holds (undefined until its tick has run). */
export const keptTickRecord = (): object | undefined => keptTick;
