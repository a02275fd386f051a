/**
 * Cookie sessions kept in the database (`web_sessions`): the web-session API's
 * (src/http/web-session.ts), and meant for the admin console's and the
 * account page's too, each under its own `purpose` so one kind of session is
 * never taken for another.
 *
 * The cookie holds a random 256-bit token; the table holds only its SHA-256,
 * so a database dump hands out no live session, and there is nothing in the
 * cookie to sign or to forge. A session ends at its absolute expiry, after
 * the store's idle timeout without use (when it has one), or when revoked.
 */
import { and, eq, gt, isNull, lt, or, sql } from '../db/orm.ts';
import * as v from 'valibot';
import type { Db } from '../db/client.ts';
import { webSessions, type WebSessionRow } from '../db/schema.ts';
import { randomToken, sha256 } from './crypto.ts';

/** A session as its owner sees it: never the token, never its digest. */
export interface WebSession {
  purpose: string;
  tenant: string;
  userId: string;
  provider: string;
  externalId: string;
  createdAt: Date;
  /** The absolute end; an idle timeout may end it sooner. */
  expiresAt: Date;
  lastSeenAt: Date;
}

export interface WebSessionStoreOptions {
  /** Whose sessions these are (`web`, `console`, …): another purpose's token is not found here. */
  purpose: string;
  /** How long a session lives at most, in seconds. */
  ttlSeconds: number;
  /** Ends a session unused for this long, in seconds; none when absent. */
  idleSeconds?: number;
  now?: () => number;
}

export interface NewWebSession {
  tenant: string;
  userId: string;
  provider: string;
  externalId: string;
  /** An earlier end than `ttlSeconds` (the provider token's expiry, epoch ms); later ones are ignored. */
  notAfter?: number | undefined;
}

/** What a cookie may hold: the 43 characters of a base64url 32-byte token. Anything else is not looked up. */
export const SessionToken = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/));

/** `last_seen_at` is written at most this often: a page polling the session is not a write per request. */
const TOUCH_EVERY_MS = 60_000;

const toSession = (row: WebSessionRow): WebSession => ({
  purpose: row.purpose,
  tenant: row.tenant,
  userId: row.userId,
  provider: row.provider,
  externalId: row.externalId,
  createdAt: row.createdAt,
  expiresAt: row.expiresAt,
  lastSeenAt: row.lastSeenAt,
});

export function createWebSessions(db: Db, options: WebSessionStoreOptions) {
  const now = options.now ?? Date.now;
  const { purpose } = options;
  const idleMs = options.idleSeconds === undefined ? undefined : options.idleSeconds * 1000;
  const live = (at: Date) => and(eq(webSessions.purpose, purpose), isNull(webSessions.revokedAt), gt(webSessions.expiresAt, at));

  return {
    /** Starts a session: the token goes in the cookie (and nowhere else), the session says until when. */
    async create(session: NewWebSession): Promise<{ token: string; session: WebSession }> {
      const token = randomToken(32);
      const at = now();
      const end = Math.min(at + options.ttlSeconds * 1000, session.notAfter ?? Number.POSITIVE_INFINITY);
      const [row] = await db
        .insert(webSessions)
        .values({
          idHash: sha256(token),
          purpose,
          tenant: session.tenant,
          userId: session.userId,
          provider: session.provider,
          externalId: session.externalId,
          createdAt: new Date(at),
          expiresAt: new Date(Math.max(end, at + 1000)),
          lastSeenAt: new Date(at),
        })
        .returning();
      return { token, session: toSession(row!) };
    },

    /**
     * The live session of this token, or undefined: unknown, another
     * purpose's, revoked, past its expiry or idle too long. Using it counts
     * as activity for the idle timeout.
     */
    async find(token: string | undefined): Promise<WebSession | undefined> {
      if (!v.is(SessionToken, token)) return undefined;
      const at = new Date(now());
      const [row] = await db
        .select()
        .from(webSessions)
        .where(and(eq(webSessions.idHash, sha256(token)), live(at)));
      if (!row) return undefined;
      if (idleMs !== undefined && row.lastSeenAt.getTime() + idleMs <= at.getTime()) return undefined;
      if (at.getTime() - row.lastSeenAt.getTime() >= TOUCH_EVERY_MS) {
        await db
          .update(webSessions)
          .set({ lastSeenAt: at })
          .where(and(eq(webSessions.idHash, row.idHash), lt(webSessions.lastSeenAt, at)));
        return toSession({ ...row, lastSeenAt: at });
      }
      return toSession(row);
    },

    /** Ends this token's session for good (logout). False when there was no live one. */
    async revoke(token: string | undefined): Promise<boolean> {
      if (!v.is(SessionToken, token)) return false;
      const at = new Date(now());
      const ended = await db
        .update(webSessions)
        .set({ revokedAt: at })
        .where(and(eq(webSessions.idHash, sha256(token)), live(at)))
        .returning({ idHash: webSessions.idHash });
      return ended.length > 0;
    },

    /** Ends every live session of a user (of this purpose), or only those signed in with `provider`. */
    async revokeUser(key: { tenant: string; userId: string; provider?: string }): Promise<number> {
      const at = new Date(now());
      const ended = await db
        .update(webSessions)
        .set({ revokedAt: at })
        .where(and(live(at), eq(webSessions.tenant, key.tenant), eq(webSessions.userId, key.userId), key.provider === undefined ? sql`true` : eq(webSessions.provider, key.provider)))
        .returning({ idHash: webSessions.idHash });
      return ended.length;
    },

    /** Ends every live session (of this purpose) signed in as this identity, whatever user it was: an admin the console no longer has. */
    async revokeIdentity(identity: { provider: string; externalId: string }): Promise<number> {
      const at = new Date(now());
      const ended = await db
        .update(webSessions)
        .set({ revokedAt: at })
        .where(and(live(at), eq(webSessions.provider, identity.provider), eq(webSessions.externalId, identity.externalId)))
        .returning({ idHash: webSessions.idHash });
      return ended.length;
    },
  };
}

export type WebSessions = ReturnType<typeof createWebSessions>;

/** Rows of any purpose that ended (expired or revoked) more than a day ago: deleted by `purgeExpired`. */
export const endedSessions = (now: Date) => {
  const dayAgo = new Date(now.getTime() - 24 * 3600 * 1000);
  return or(lt(webSessions.expiresAt, dayAgo), lt(webSessions.revokedAt, dayAgo));
};
