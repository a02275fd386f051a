import { createHmac } from 'node:crypto';
import { sql } from '../db/orm.ts';
import type { Logger } from 'pino';
import type { RateLimitRule } from '../config.ts';
import type { Db } from '../db/client.ts';
import { logCause } from '../db/errors.ts';
import { rateLimits } from '../db/schema.ts';

/**
 * Request rate limits that hold across every instance on one database,
 * without a database round trip per request.
 *
 * Each key (an API key, a client address) is counted in fixed windows of
 * `windowSeconds`; a request is allowed while the sliding estimate
 * `previous × overlap + current` stays within the limit (the previous
 * window's count weighted by how much of it still falls in the last
 * `windowSeconds`).
 *
 * The count of a window lives in `rate_limits`, as the sum of what each
 * instance has claimed. An instance claims ahead a few requests per key (as
 * many as it served in the last two sync intervals, at most half of what is
 * left, at least one) and serves them from memory. Every SYNC_MS it sends
 * what it served plus its next claim, minus what it claimed before, in one
 * `INSERT … ON CONFLICT DO UPDATE SET count = count + excluded.count
 * RETURNING count` for all its keys. The database applies these one at a
 * time, so the count returned tells the instance exactly how much of its
 * claim still fits under the limit; the part that does not is not served.
 * The sum therefore never passes the limit, while a claim another instance
 * holds and has not used yet can refuse a request early (by at most its
 * unused claim, until its next sync). A request finding no claim left but
 * room under the limit waits for the next sync (started at once, shared by
 * every waiting request): that happens once per key per window, and when a
 * key's traffic grows faster than its claims.
 *
 * Approximations: instances read the previous window's count just after it
 * closes, so the sliding part may miss one sync interval of another
 * instance's traffic; Retry-After assumes nobody else sends. If the
 * database does not answer, each instance goes on alone with the last
 * counts it saw, and sends what it served once the database is back.
 */
export interface RateLimiter {
  /**
   * Counts one request of `key` in `scope`; answers from memory unless this
   * instance has no claim left for the key. `rule` replaces the scope's own
   * (a tenant's override): its keys are counted apart, under that rule.
   */
  take(scope: RateScope, key: string, rule?: RateLimitRule): RateDecision | Promise<RateDecision>;
  /** Sends what was served and the next claims, and reads every instance's counts back. */
  sync(): Promise<void>;
  /**
   * At shutdown, once no request is served any more: sends what was served
   * and gives back every claim, so the other instances get this one's unused
   * share at once instead of at the end of the window.
   */
  flush(): Promise<void>;
}

export type RateScope = 'api' | 'browser';
export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

export interface RateLimiterOptions {
  db: Db;
  rules: Readonly<Record<RateScope, RateLimitRule>>;
  /** The HMAC key that turns keys into `rate_limits.key_hash`. */
  secret: string;
  logger: Logger;
  now?: () => number;
  syncMs?: number;
}

export const SYNC_MS = 250;
/** A sync slower than this puts the instance on its own until one succeeds. */
const WAIT_MS = 1000;
/** How many syncs a request waits for a claim before it is refused (Retry-After: 1). */
const WAIT_ROUNDS = 3;
const MIN_CLAIM = 1;
const ROWS_PER_STATEMENT = 500;
const ALLOWED: RateDecision = Object.freeze({ allowed: true });

/** One key in one fixed window, as this instance sees it. */
interface Slot {
  readonly start: number;
  /** Requests served here. */
  used: number;
  /** What the database holds from this instance: served plus claimed ahead. */
  sent: number;
  /** How many requests this instance may serve: its share of `sent` the database confirmed. */
  allowed: number;
  /** Every instance's `sent` together, as of the last sync; undefined until read. */
  total: number | undefined;
  /** `total` was read after the window closed. */
  closedRead: boolean;
  /** `used` at the last sync that sent this slot, for the claim size. */
  usedAtSync: number;
}

interface Counter {
  readonly hash: string;
  current: Slot;
  previous: Slot;
  /** Requests waiting for a claim. */
  waiting: number;
  /** A request was refused: read the counts again at the next sync, they may have fallen since. */
  refresh: boolean;
  syncedAt: number;
}

interface Rule {
  limit: number;
  windowMs: number;
  counters: Map<string, Counter>;
}

interface Row {
  rule: Rule;
  counter: Counter;
  slot: Slot;
  /** The slot's `sent` once this row is applied. */
  want: number;
  /** The slot is a closed window: this row gives back its unused claim and reads its final count. */
  closing: boolean;
}

const slot = (start: number): Slot => ({ start, used: 0, sent: 0, allowed: 0, total: undefined, closedRead: false, usedAtSync: 0 });

/** A window's count: the other instances' claims and what was served here. */
const countOf = (s: Slot) => (s.total ?? s.sent) - s.sent + s.used;

export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const now = options.now ?? Date.now;
  const syncMs = options.syncMs ?? SYNC_MS;
  // The scopes' own rules, then overrides as they are first used (`api/<limit>/<window>`), each with its counters.
  const rules: Record<string, Rule> = {
    api: { limit: options.rules.api.limit, windowMs: options.rules.api.windowSeconds * 1000, counters: new Map() },
    browser: { limit: options.rules.browser.limit, windowMs: options.rules.browser.windowSeconds * 1000, counters: new Map() },
  };
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  /** The database is not answering: decide on what this instance knows, without waiting. */
  let alone = false;
  /** Shutting down: claims nothing ahead any more. */
  let flushing = false;

  const hash = (scope: string, key: string) => createHmac('sha256', options.secret).update(`rate:${scope}:${key}`).digest('base64url');

  /** Moves a counter to the window `at` falls in. */
  function roll(rule: Rule, counter: Counter, at: number): void {
    const start = at - (at % rule.windowMs);
    if (counter.current.start === start) return;
    counter.previous = counter.current.start === start - rule.windowMs ? counter.current : slot(start - rule.windowMs);
    counter.current = slot(start);
  }

  /** How many requests the current window may hold, once the previous window's overlap is counted. */
  function capacity(rule: Rule, counter: Counter, at: number): number {
    const overlap = 1 - (at - counter.current.start) / rule.windowMs;
    return rule.limit - countOf(counter.previous) * overlap;
  }

  /** Seconds until one more request fits, if nobody else sends any. */
  function retryAfter(rule: Rule, counter: Counter, at: number): number {
    const W = rule.windowMs;
    const elapsed = at - counter.current.start;
    const inWindow = countOf(counter.current);
    const previous = countOf(counter.previous);
    const room = rule.limit - 1;
    const waitMs =
      inWindow <= room && previous > 0
        ? W * (1 - (room - inWindow) / previous) - elapsed // the previous window's weight falls until one more fits
        : W - elapsed + W * Math.max(0, 1 - room / inWindow); // this window becomes the previous one and fades in turn
    return Math.max(1, Math.ceil(waitMs / 1000));
  }

  function decide(rule: Rule, counter: Counter, patient: boolean): RateDecision | 'wait' {
    const at = now();
    roll(rule, counter, at);
    const current = counter.current;
    if (current.used < current.allowed) return serve(current);
    if (capacity(rule, counter, at) - countOf(current) < 1) {
      counter.refresh = true;
      schedule();
      return { allowed: false, retryAfterSeconds: retryAfter(rule, counter, at) };
    }
    if (alone) return serve(current);
    if (patient) return 'wait';
    // Room, but other requests took every claim this instance could get in time.
    return { allowed: false, retryAfterSeconds: 1 };
  }

  function serve(current: Slot): RateDecision {
    current.used += 1;
    schedule();
    return ALLOWED;
  }

  async function waitAndDecide(rule: Rule, counter: Counter): Promise<RateDecision> {
    counter.waiting += 1;
    try {
      for (let round = 1; ; round += 1) {
        let timeout: NodeJS.Timeout | undefined;
        const synced = await Promise.race([
          sync().then(() => true),
          new Promise<false>((resolve) => (timeout = setTimeout(() => resolve(false), WAIT_MS))),
        ]);
        clearTimeout(timeout);
        if (!synced) goAlone('the database took too long');
        const decision = decide(rule, counter, round < WAIT_ROUNDS);
        if (decision !== 'wait') return decision;
      }
    } finally {
      counter.waiting -= 1;
    }
  }

  function goAlone(cause: unknown): void {
    if (!alone) options.logger.warn({ cause: typeof cause === 'string' ? cause : logCause(cause) }, 'rate limits cannot be shared right now; this instance counts alone until the database answers');
    alone = true;
  }

  function schedule(): void {
    timer ??= setTimeout(() => {
      timer = undefined;
      void sync();
    }, syncMs).unref();
  }

  /** Whether a counter has something to tell the database even if no request comes. */
  function unsettled(counter: Counter): boolean {
    const { current, previous } = counter;
    return previous.used !== previous.sent || !previous.closedRead || current.used > current.sent || current.sent - current.used > MIN_CLAIM;
  }

  /** What the next sync sends, a counter's rows next to each other. */
  function collect(): Row[] {
    const at = now();
    const rows: Row[] = [];
    for (const rule of Object.values(rules)) {
      for (const [key, counter] of rule.counters) {
        roll(rule, counter, at);
        const { current, previous } = counter;
        if (counter.waiting === 0 && !counter.refresh && current.used === 0 && current.sent === 0 && previous.used === 0 && previous.sent === 0) {
          rule.counters.delete(key); // idle for a window: nothing to count
          continue;
        }
        // A closed window: give back what was claimed and not served, and read its final count.
        if (previous.used !== previous.sent || !previous.closedRead) rows.push({ rule, counter, slot: previous, want: previous.used, closing: true });

        const rate = (current.used - current.usedAtSync) / Math.max(1, at - counter.syncedAt);
        const expected = Math.max(MIN_CLAIM, Math.ceil(rate * 2 * syncMs));
        const room = Math.max(0, Math.floor(capacity(rule, counter, at) - countOf(current)));
        const claim = flushing ? 0 : Math.min(room, Math.max(counter.waiting, Math.min(expected, Math.ceil(room / 2))));
        const want = current.used + claim;
        // A smaller claim takes effect now, so nothing is served against what is being given back.
        if (want < current.sent) current.allowed = Math.min(current.allowed, Math.max(current.used, want));
        if (want !== current.sent || current.total === undefined || counter.refresh) {
          counter.refresh = false;
          rows.push({ rule, counter, slot: current, want, closing: false });
          current.usedAtSync = current.used;
          counter.syncedAt = at;
        }
      }
    }
    return rows;
  }

  async function send(rows: Row[]): Promise<void> {
    for (let from = 0; from < rows.length; ) {
      let to = Math.min(rows.length, from + ROWS_PER_STATEMENT);
      while (to < rows.length && rows[to]!.counter === rows[to - 1]!.counter) to += 1;
      const batch = rows.slice(from, to);
      from = to;
      const totals = await options.db
        .insert(rateLimits)
        .values(
          batch.map((r) => ({
            keyHash: r.counter.hash,
            windowStart: new Date(r.slot.start),
            count: r.want - r.slot.sent,
            expiresAt: new Date(r.slot.start + 2 * r.rule.windowMs),
          })),
        )
        .onConflictDoUpdate({ target: [rateLimits.keyHash, rateLimits.windowStart], set: { count: sql`${rateLimits.count} + excluded.count` } })
        .returning({ keyHash: rateLimits.keyHash, windowStart: rateLimits.windowStart, count: rateLimits.count });
      const total = new Map(totals.map((t) => [`${t.keyHash} ${t.windowStart.getTime()}`, t.count]));
      for (const row of batch) {
        const count = total.get(`${row.counter.hash} ${row.slot.start}`);
        if (count === undefined) continue;
        row.slot.sent = row.want;
        row.slot.total = count;
        if (row.closing) row.slot.closedRead = true;
      }
      // Then, with every window's count fresh: how much of each claim fits under the limit.
      const at = now();
      for (const row of batch) {
        const { rule, counter, slot: s } = row;
        if (s !== counter.current || s.total === undefined || s.sent !== row.want) continue;
        const over = Math.max(0, s.total - Math.floor(capacity(rule, counter, at)));
        s.allowed = Math.max(s.used, row.want - over);
      }
    }
  }

  function sync(): Promise<void> {
    running ??= (async () => {
      clearTimeout(timer);
      timer = undefined;
      const rows = collect();
      if (rows.length === 0) return;
      try {
        await send(rows);
        if (alone) options.logger.info('rate limits are shared with the other instances again');
        alone = false;
      } catch (error) {
        goAlone(error);
      }
    })().finally(() => {
      running = undefined;
      if (Object.values(rules).some((rule) => [...rule.counters.values()].some(unsettled))) schedule();
    });
    return running;
  }

  return {
    take(scope, key, override) {
      let name: string = scope;
      if (override) {
        name = `${scope}/${override.limit}/${override.windowSeconds}`;
        rules[name] ??= { limit: override.limit, windowMs: override.windowSeconds * 1000, counters: new Map() };
      }
      const rule = rules[name]!;
      if (rule.limit === 0) return ALLOWED;
      // A row counts one window length: an instance configured with another window
      // (a rolling config change) must not add its counts to rows that start at the
      // same moment but span a different time.
      const scopeName = override ? name : `${scope}/${rule.windowMs / 1000}s`;
      let counter = rule.counters.get(key);
      if (!counter) {
        const at = now();
        const start = at - (at % rule.windowMs);
        // The previous window is read too: other instances may have counted in it.
        counter = { hash: hash(scopeName, key), current: slot(start), previous: slot(start - rule.windowMs), waiting: 0, refresh: false, syncedAt: at };
        rule.counters.set(key, counter);
      }
      const decision = decide(rule, counter, true);
      return decision === 'wait' ? waitAndDecide(rule, counter) : decision;
    },
    sync,
    async flush() {
      flushing = true;
      await running;
      await sync();
      clearTimeout(timer);
      timer = undefined;
    },
  };
}
