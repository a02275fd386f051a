import type { Logger } from 'pino';
import type { Database } from '../db/client.ts';
import { logCause } from '../db/errors.ts';
import { LinkgateError } from './errors.ts';
import type { LinkKey } from './links.ts';

const CHANNEL = 'linkgate_links';

const keyOf = (key: LinkKey) => JSON.stringify([key.tenant, key.userId, key.provider]);

/** A wait on one id: `changed` resolves on its next change; `stop` must be called when done. */
export interface Subscription {
  changed: Promise<void>;
  stop: () => void;
}

/**
 * "Something changed" across every instance, on one channel: NOTIFY on
 * PostgreSQL (PGlite delivers its own notifications in-process), one LISTEN
 * per channel and process, and an in-process fan-out to the waits on that
 * id. Nobody polls.
 */
export function createEventChannel(database: Database, logger: Logger, channel: string) {
  const waiters = new Map<string, Set<() => void>>();
  let listening: Promise<unknown> | undefined;

  const ensureListening = () => {
    listening ??= database
      .listen(channel, (payload) => {
        for (const wake of waiters.get(payload) ?? []) wake();
      })
      .catch((error: unknown) => {
        listening = undefined;
        throw error;
      });
    return listening;
  };

  return {
    /** Tells every instance `id` changed; a lost notification only makes a waiter wait for its timeout. */
    async publish(id: string): Promise<void> {
      try {
        await database.notify(channel, id);
      } catch (error) {
        logger.warn({ cause: logCause(error), channel }, 'change notification failed');
      }
    },

    /** How many waits are subscribed in this process (a wait that has ended leaves none behind). */
    waiting(): number {
      let count = 0;
      for (const set of waiters.values()) count += set.size;
      return count;
    },

    /**
     * Registers interest in `id` before the caller checks it, so a change
     * between the check and the wait is not missed. `database_unavailable`
     * (503) when the database cannot LISTEN.
     */
    async subscribe(id: string): Promise<Subscription> {
      try {
        await ensureListening();
      } catch (cause) {
        // Without LISTEN nobody would wake the waiter: the database is unavailable to it, not broken.
        throw new LinkgateError('database_unavailable', 'waiting for changes is not possible right now; try again shortly', { cause });
      }
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

export type EventChannel = ReturnType<typeof createEventChannel>;

/** "A link changed" (stored, or its flow cancelled), keyed by tenant, user and provider: the wait API's wake-up. */
export function createLinkEvents(database: Database, logger: Logger) {
  const events = createEventChannel(database, logger, CHANNEL);
  return {
    publish: (key: LinkKey) => events.publish(keyOf(key)),
    waiting: () => events.waiting(),
    subscribe: (key: LinkKey) => events.subscribe(keyOf(key)),
  };
}

export type LinkEvents = ReturnType<typeof createLinkEvents>;
