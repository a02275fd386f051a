import type { Logger } from 'pino';
import type { Database } from '../db/client.ts';
import { logCause } from '../db/errors.ts';
import { LinkgateError } from './errors.ts';
import type { LinkKey } from './links.ts';

const CHANNEL = 'linkgate_links';

const keyOf = (key: LinkKey) => JSON.stringify([key.tenant, key.userId, key.provider]);

/**
 * "A link changed" across every instance: NOTIFY on PostgreSQL (PGlite
 * delivers its own notifications in-process), one LISTEN per process, and an
 * in-process fan-out to the requests waiting on that link. Nobody polls.
 */
export function createLinkEvents(database: Database, logger: Logger) {
  const waiters = new Map<string, Set<() => void>>();
  let listening: Promise<unknown> | undefined;

  const ensureListening = () => {
    listening ??= database
      .listen(CHANNEL, (payload) => {
        for (const wake of waiters.get(payload) ?? []) wake();
      })
      .catch((error: unknown) => {
        listening = undefined;
        throw error;
      });
    return listening;
  };

  return {
    /** Tells every instance the link changed; a lost notification only makes a waiter wait for its timeout. */
    async publish(key: LinkKey): Promise<void> {
      try {
        await database.notify(CHANNEL, keyOf(key));
      } catch (error) {
        logger.warn({ cause: logCause(error) }, 'link notification failed');
      }
    },

    /** How many waits are subscribed in this process (a wait that has ended leaves none behind). */
    waiting(): number {
      let count = 0;
      for (const set of waiters.values()) count += set.size;
      return count;
    },

    /**
     * Registers interest in a link before the caller checks it, so a change
     * between the check and the wait is not missed. `wake` resolves on the
     * next change; `stop` must be called when done. `database_unavailable`
     * (503) when the database cannot LISTEN.
     */
    async subscribe(key: LinkKey): Promise<{ changed: Promise<void>; stop: () => void }> {
      try {
        await ensureListening();
      } catch (cause) {
        // Without LISTEN nobody would wake the waiter: the database is unavailable to it, not broken.
        throw new LinkgateError('database_unavailable', 'waiting for link changes is not possible right now; try again shortly', { cause });
      }
      const id = keyOf(key);
      let wake!: () => void;
      const changed = new Promise<void>((resolve) => (wake = resolve));
      let set = waiters.get(id);
      if (!set) waiters.set(id, (set = new Set()));
      set.add(wake);
      return {
        changed,
        stop: () => {
          set.delete(wake);
          if (set.size === 0 && waiters.get(id) === set) waiters.delete(id);
        },
      };
    },
  };
}

export type LinkEvents = ReturnType<typeof createLinkEvents>;
