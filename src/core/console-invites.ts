/**
 * Invites to the admin console (`linkgate admin invite`): a one-time token,
 * valid an hour, that makes whoever signs in with it first an owner of the
 * console. The table keeps the token's SHA-256 only, so a database dump hands
 * out no invite. An invite adds owners to a console LINKGATE_ADMINS has opened;
 * it never opens one (src/http/console.tsx is not mounted without an entry).
 */
import * as v from 'valibot';
import type { Db } from '../db/client.ts';
import { and, eq, gt, isNotNull, isNull } from '../db/orm.ts';
import { consoleInvites } from '../db/schema.ts';
import { randomToken, sha256 } from './crypto.ts';

/** How long an invite link works. */
export const INVITE_TTL_SECONDS = 3600;

/** What an invite link carries: the 43 characters of a base64url 32-byte token. Anything else is not looked up. */
export const InviteToken = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/));

/** A new invite: the token goes in the link (and nowhere else). */
export async function createInvite(db: Db, now: Date): Promise<{ token: string; expiresAt: Date }> {
  const token = randomToken(32);
  const expiresAt = new Date(now.getTime() + INVITE_TTL_SECONDS * 1000);
  await db.insert(consoleInvites).values({ idHash: sha256(token), createdAt: now, expiresAt });
  return { token, expiresAt };
}

const open = (token: string, now: Date) => and(eq(consoleInvites.idHash, sha256(token)), isNull(consoleInvites.usedAt), gt(consoleInvites.expiresAt, now));

/** Whether this token is an invite not yet used or expired. */
export async function inviteOpen(db: Db, token: string | undefined, now: Date): Promise<boolean> {
  if (!v.is(InviteToken, token)) return false;
  const [row] = await db.select({ idHash: consoleInvites.idHash }).from(consoleInvites).where(open(token, now));
  return row !== undefined;
}

/** Spends the invite on `identity` (`<provider>:<externalId>`): true for the one request that got it, false if used, expired or unknown. */
export async function acceptInvite(db: Db, token: string | undefined, identity: string, now: Date): Promise<boolean> {
  if (!v.is(InviteToken, token)) return false;
  const spent = await db.update(consoleInvites).set({ usedAt: now, usedBy: identity }).where(open(token, now)).returning({ idHash: consoleInvites.idHash });
  return spent.length > 0;
}

/** Whether an invite made `identity` an owner. */
export async function invitedOwner(db: Db, identity: string): Promise<boolean> {
  const [row] = await db.select({ idHash: consoleInvites.idHash }).from(consoleInvites).where(eq(consoleInvites.usedBy, identity)).limit(1);
  return row !== undefined;
}

/** The providers invited owners signed in with (`used_by` is `<provider>:<externalId>`): the sign-in page offers them too. */
export async function invitedProviders(db: Db): Promise<Set<string>> {
  const rows = await db.selectDistinct({ usedBy: consoleInvites.usedBy }).from(consoleInvites).where(isNotNull(consoleInvites.usedBy));
  return new Set(rows.flatMap((row) => (row.usedBy ? [row.usedBy.slice(0, row.usedBy.indexOf(':'))] : [])));
}
