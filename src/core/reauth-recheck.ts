/**
 * The background re-check of `needs_reauth` links (issue #23): now and then,
 * each such link that has a refresh token gets one refresh attempt. A link
 * marked by a provider's passing fault (its API refusing a token during an
 * outage, say) comes back by itself, active and announced with
 * `link.recovered`; the others stay as they are, quietly — they already said
 * they need the user, so a failure is no news: no event, no log line, no
 * metric per link.
 *
 * Every instance runs the timer, at a jittered interval; a round is claimed
 * under the named lock with a marker that outlives half the interval, so one
 * instance does the work per interval and the lock is held only for the claim.
 */
import type { Logger } from 'pino';
import type { Database } from '../db/client.ts';
import { logCause } from '../db/errors.ts';
import { and, asc, eq, gt, or } from '../db/orm.ts';
import { links as linksTable, type LinkRow } from '../db/schema.ts';
import type { Keyring } from './crypto.ts';
import { createKeyValueStore } from './kv.ts';
import type { NamedLock } from './named-lock.ts';
import type { TokenService } from './tokens.ts';

export interface ReauthRecheckDeps {
  database: Database;
  keyring: Keyring;
  lock: NamedLock;
  tokens: Pick<TokenService, 'recover'>;
  logger: Logger;
  now: () => number;
  /** How often a round runs (one instance per interval); 0: never. */
  intervalMs: number;
  /** Random in [0, 1): the jitter (tests give a fixed one). */
  random?: () => number;
}

/** Not a provider id (those have no colon): the claim's kv namespace cannot collide with a provider's. */
const NAMESPACE = 'linkgate:reauth-recheck';
const PAGE = 100;

/** The wait before the next round: the interval, ±10 %, so instances started together drift apart. */
export const jittered = (intervalMs: number, random: () => number) => Math.round(intervalMs * (0.9 + 0.2 * random()));

export function createReauthRecheck(deps: ReauthRecheckDeps) {
  const claims = createKeyValueStore(deps.database.db, deps.keyring, NAMESPACE, deps.now);
  const random = deps.random ?? Math.random;

  /** Whether this instance takes this round: nobody took one in the last half interval. */
  async function claim(): Promise<boolean> {
    try {
      return await deps.lock(
        NAMESPACE,
        async () => {
          if ((await claims.get('round')) !== undefined) return false;
          await claims.set('round', { at: new Date(deps.now()).toISOString() }, { ttlSeconds: Math.max(1, Math.floor(deps.intervalMs / 2000)) });
          return true;
        },
        { timeoutMs: 1_000 },
      );
    } catch {
      // Another instance holds the lock: it is claiming this round.
      return false;
    }
  }

  /** Every `needs_reauth` link, a page at a time in key order (each page read after the previous one's refreshes). */
  async function* needingUser(): AsyncGenerator<LinkRow> {
    let after: LinkRow | undefined;
    for (;;) {
      const page: LinkRow[] = await deps.database.db
        .select()
        .from(linksTable)
        .where(
          and(
            eq(linksTable.status, 'needs_reauth'),
            after
              ? or(
                  gt(linksTable.tenant, after.tenant),
                  and(eq(linksTable.tenant, after.tenant), gt(linksTable.userId, after.userId)),
                  and(eq(linksTable.tenant, after.tenant), eq(linksTable.userId, after.userId), gt(linksTable.provider, after.provider)),
                )
              : undefined,
          ),
        )
        .orderBy(asc(linksTable.tenant), asc(linksTable.userId), asc(linksTable.provider))
        .limit(PAGE);
      yield* page;
      if (page.length < PAGE) return;
      after = page.at(-1);
    }
  }

  /** One round, if this instance claims it: how many links were tried and how many came back. */
  async function runOnce(): Promise<{ claimed: boolean; tried: number; recovered: number }> {
    if (!(await claim())) return { claimed: false, tried: 0, recovered: 0 };
    let tried = 0;
    let recovered = 0;
    for await (const row of needingUser()) {
      // A link that will not open (a retired key) or a provider that fails oddly is left as it is, like any failure.
      const outcome = await deps.tokens.recover(row).catch(() => 'not_recovered' as const);
      if (outcome === 'not_refreshable') continue;
      tried += 1;
      if (outcome === 'recovered') recovered += 1;
    }
    // One line per round, and only when something came back: an ordinary round is silent.
    if (recovered > 0) deps.logger.info({ tried, recovered }, 'needs_reauth links re-checked');
    else deps.logger.debug({ tried }, 'needs_reauth links re-checked');
    return { claimed: true, tried, recovered };
  }

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;
  let stopped = false;
  const schedule = (delayMs: number) => {
    timer = setTimeout(() => {
      running = runOnce()
        // The round as a whole (the database away, say): one line, never one per link.
        .catch((error: unknown) => deps.logger.warn({ cause: logCause(error) }, 'needs_reauth re-check round failed'))
        .finally(() => {
          running = undefined;
          if (!stopped) schedule(jittered(deps.intervalMs, random));
        });
    }, delayMs);
    timer.unref();
  };

  return {
    runOnce,
    /** Starts the timer (the first round after a random part of the interval); does nothing with an interval of 0. */
    start() {
      if (deps.intervalMs <= 0 || timer) return;
      schedule(Math.round(deps.intervalMs * random()));
    },
    /** Stops the timer and waits for a round in progress. */
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
