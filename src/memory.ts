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
