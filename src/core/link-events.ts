/**
 * Each link's own history, for the console's link page and
 * `GET /api/v1/users/:userId/links/:provider/events`: linked, relinked,
 * refreshed, refresh failed (with its reason), needs re-auth, unlinked, and
 * how many times a token was served, per hour.
 *
 * The link store (src/core/links.ts) writes each row in the transaction of
 * the change it describes, beside that change's webhook event, so the log
 * and the webhooks cannot disagree. Tokens are the exception: the token API
 * is a hot path, so `createTokenServedCounter` counts in memory and adds the
 * counts to one row per link and hour in a single upsert every few seconds
 * (and at shutdown): no database write happens inside a token request.
 * Rows never hold a credential; they are purged after
 * LINKGATE_LINK_EVENT_RETENTION_DAYS (src/core/purge.ts).
 */
import type { Logger } from 'pino';
import * as v from 'valibot';
import type { Db } from '../db/client.ts';
import { logCause } from '../db/errors.ts';
import { and, desc, eq, lt, sql } from '../db/orm.ts';
import { linkEvents, type LinkEventRow } from '../db/schema.ts';
import type { LinkKey } from './links.ts';

export const LINK_EVENT_KINDS = ['linked', 'relinked', 'refreshed', 'refresh_failed', 'needs_reauth', 'token_served', 'unlinked'] as const;
export type LinkEventKind = (typeof LINK_EVENT_KINDS)[number];

/** LINKGATE_LINK_EVENT_RETENTION_DAYS when unset (src/config.ts has the same default). */
export const LINK_EVENT_RETENTION_DAYS = 90;

/** What a row's `detail` may hold: facts about the link, never a credential. */
export type LinkEventDetail = Readonly<Record<string, string | number | boolean | null | readonly string[]>>;

/** Writes one event of a change, on `db` (the change's own transaction). */
export async function recordLinkEvent(db: Db, key: LinkKey, kind: Exclude<LinkEventKind, 'token_served'>, at: Date, detail?: LinkEventDetail): Promise<void> {
  await db.insert(linkEvents).values({ tenant: key.tenant, userId: key.userId, provider: key.provider, kind, at, detail: detail ?? null });
}

/** An event as the bot API answers it. */
export interface LinkEvent {
  id: string;
  kind: LinkEventKind;
  /** When; for `token_served`, the start of the hour counted. */
  at: string;
  /** 1, or the tokens served in that hour. */
  count: number;
  detail: Record<string, unknown> | null;
}

const Detail = v.nullable(v.record(v.string(), v.unknown()));

export const toLinkEvent = (row: LinkEventRow): LinkEvent => ({
  id: String(row.id),
  kind: row.kind,
  at: row.at.toISOString(),
  count: row.count,
  detail: v.parse(Detail, row.detail ?? null),
});

/** `<ms>.<id>` of the last event of a page: the next page starts after it. */
export const LinkEventCursor = v.pipe(
  v.string(),
  v.regex(/^\d{1,15}\.\d{1,15}$/, 'cursor must be the nextCursor of a previous page'),
  v.transform((text) => {
    const [ms, id] = text.split('.');
    return { at: new Date(Number(ms)), id: Number(id) };
  }),
);

/** A link's events, newest first, `limit` at a time (the link may be gone: its events stay until purged). */
export async function listLinkEvents(db: Db, key: LinkKey, page: { limit: number; cursor?: { at: Date; id: number } }): Promise<{ events: LinkEvent[]; nextCursor: string | null }> {
  const after = page.cursor ? sql`(${linkEvents.at}, ${linkEvents.id}) < (${page.cursor.at.toISOString()}::timestamptz, ${page.cursor.id})` : undefined;
  const rows = await db
    .select()
    .from(linkEvents)
    .where(and(eq(linkEvents.tenant, key.tenant), eq(linkEvents.userId, key.userId), eq(linkEvents.provider, key.provider), after))
    .orderBy(desc(linkEvents.at), desc(linkEvents.id))
    .limit(page.limit + 1);
  const shown = rows.slice(0, page.limit);
  const last = shown.at(-1);
  return { events: shown.map(toLinkEvent), nextCursor: rows.length > page.limit && last ? `${last.at.getTime()}.${last.id}` : null };
}

/** Deletes the events older than the retention. */
export async function purgeLinkEvents(db: Db, now: Date, retentionDays: number): Promise<number> {
  const before = new Date(now.getTime() - retentionDays * 24 * 3600 * 1000);
  const gone = await db.delete(linkEvents).where(lt(linkEvents.at, before)).returning({ id: linkEvents.id });
  return gone.length;
}

const HOUR_MS = 3600 * 1000;
/** Rows per upsert statement. */
const FLUSH_BATCH = 1000;

export interface TokenServedCounterDeps {
  db: Db;
  logger: Logger;
  now: () => number;
  /** How long counts wait in memory before they are written (5 s). */
  flushMs?: number;
}

/**
 * Counts tokens served per link and hour in memory; the first count after a
 * flush arms a timer, and the flush adds every count to its row with one
 * `INSERT … ON CONFLICT DO UPDATE SET count = count + excluded.count` per
 * thousand links. Counts a failed flush could not write are kept for the
 * next one. Instances add to the same row, so the total is theirs together.
 */
export function createTokenServedCounter(deps: TokenServedCounterDeps) {
  const flushMs = deps.flushMs ?? 5000;
  const pending = new Map<string, { key: LinkKey; hour: number; count: number }>();
  let timer: NodeJS.Timeout | undefined;
  let writing: Promise<void> = Promise.resolve();

  const add = (key: LinkKey, hour: number, count: number) => {
    // NUL is in no tenant, user or provider id: the parts cannot run into each other.
    const id = `${key.tenant}\0${key.userId}\0${key.provider}\0${hour}`;
    const entry = pending.get(id);
    if (entry) entry.count += count;
    else pending.set(id, { key: { tenant: key.tenant, userId: key.userId, provider: key.provider }, hour, count });
  };

  async function write(): Promise<void> {
    if (pending.size === 0) return;
    const batch = [...pending.values()];
    pending.clear();
    for (let i = 0; i < batch.length; i += FLUSH_BATCH) {
      const part = batch.slice(i, i + FLUSH_BATCH);
      try {
        await deps.db
          .insert(linkEvents)
          .values(part.map(({ key, hour, count }) => ({ ...key, kind: 'token_served' as const, at: new Date(hour), count })))
          .onConflictDoUpdate({
            target: [linkEvents.tenant, linkEvents.userId, linkEvents.provider, linkEvents.at],
            targetWhere: sql`kind = 'token_served'`,
            set: { count: sql`${linkEvents.count} + excluded.count` },
          });
      } catch (error) {
        // Kept for the next flush: a database hiccup loses no count.
        for (const { key, hour, count } of batch.slice(i)) add(key, hour, count);
        deps.logger.warn({ cause: logCause(error) }, 'token-served counts not written; kept for the next flush');
        return;
      }
    }
  }

  const flush = (): Promise<void> => {
    clearTimeout(timer);
    timer = undefined;
    writing = writing.then(write);
    return writing;
  };

  return {
    /** One token served for `key` now: a map update, nothing else. */
    served(key: LinkKey): void {
      add(key, Math.floor(deps.now() / HOUR_MS) * HOUR_MS, 1);
      if (timer === undefined) {
        timer = setTimeout(() => void flush(), flushMs);
        timer.unref();
      }
    },
    /** Writes what is counted (the events route calls it first, so this instance's counts are current; shutdown calls it last). */
    flush,
    /** Links with counts not yet written. */
    pending: () => pending.size,
  };
}

export type TokenServedCounter = ReturnType<typeof createTokenServedCounter>;
