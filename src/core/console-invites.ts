/**
 * Invites to the admin console (`linkgate admin invite`): a one-time token,
 * valid an hour, that makes whoever signs in with it first an owner of the
 * console. The table keeps the token's SHA-256 only, so a database dump hands
 * out no invite. An invite adds owners to a console LINKGATE_ADMINS has opened;
 * it never opens one (src/http/console/ is not mounted without an entry).
 */
import * as v from 'valibot';
import type { Db } from '../db/client.ts';
import { and, asc, eq, gt, isNotNull, isNull } from '../db/orm.ts';
import { consoleInvites } from '../db/schema.ts';
import { randomToken, sha256 } from './crypto.ts';

/** How long an invite link works. */
export const INVITE_TTL_SECONDS = 3600;

/** What an invite link carries: the 43 characters of a base64url 32-byte token. Anything else is not looked up. */
export const InviteToken = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/));

/**
 * How an open invite is named in the console, the operator API and the audit
 * trail: `inv_` and the first 16 characters of its digest, never the token
 * (96 bits of a SHA-256: nothing to guess the link from, and no two invites alike).
 */
/** Why no invite is made, listed or revoked while LINKGATE_ADMINS is empty: an invite never opens a closed console. */
export const CONSOLE_CLOSED = 'the admin console is closed (LINKGATE_ADMINS is unset), and an invite does not open it: add an owner to LINKGATE_ADMINS first';

/** What revoking an invite that is not open says (the operator API, the console, the command line). */
export const NO_OPEN_INVITE = 'there is no open invite with this id (it was used, it expired, or it was revoked)';

export const InviteId = v.pipe(v.string(), v.regex(/^inv_[A-Za-z0-9_-]{16}$/, 'not an invite id (inv_…)'));
const inviteIdOf = (idHash: string) => `inv_${idHash.slice(0, 16)}`;

/** A new invite: the token goes in the link (and nowhere else); its id names it from then on. */
export async function createInvite(db: Db, now: Date): Promise<{ id: string; token: string; expiresAt: Date }> {
  const token = randomToken(32);
  const expiresAt = new Date(now.getTime() + INVITE_TTL_SECONDS * 1000);
  const idHash = sha256(token);
  await db.insert(consoleInvites).values({ idHash, createdAt: now, expiresAt });
  return { id: inviteIdOf(idHash), token, expiresAt };
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

/** An invite not yet used nor expired, by its id. */
export interface OpenInvite {
  id: string;
  createdAt: Date;
  expiresAt: Date;
}

/** The open invites (not used, not expired), oldest first. */
export async function openInvites(db: Db, now: Date): Promise<OpenInvite[]> {
  const rows = await db
    .select()
    .from(consoleInvites)
    .where(and(isNull(consoleInvites.usedAt), gt(consoleInvites.expiresAt, now)))
    .orderBy(asc(consoleInvites.createdAt));
  return rows.map((row) => ({ id: inviteIdOf(row.idHash), createdAt: row.createdAt, expiresAt: row.expiresAt }));
}

/** Revokes an open invite: its link stops working. False when no open invite has this id (used, expired, revoked or unknown). */
export async function revokeInvite(db: Db, id: string, now: Date): Promise<boolean> {
  if (!v.is(InviteId, id)) return false;
  // A prefix of the digest: found among the open ones here, not with LIKE (base64url's `_` is one of LIKE's wildcards).
  const found = (await db.select({ idHash: consoleInvites.idHash }).from(consoleInvites).where(and(isNull(consoleInvites.usedAt), gt(consoleInvites.expiresAt, now)))).find(
    (row) => inviteIdOf(row.idHash) === id,
  );
  if (!found) return false;
  const gone = await db
    .delete(consoleInvites)
    .where(and(eq(consoleInvites.idHash, found.idHash), isNull(consoleInvites.usedAt)))
    .returning({ idHash: consoleInvites.idHash });
  return gone.length > 0;
}

/** An owner an invite made: who, when invited, when they accepted. */
export interface InvitedOwner {
  /** `<provider>:<externalId>`. */
  identity: string;
  invitedAt: Date;
  acceptedAt: Date;
}

/** Every owner an invite made, in the order they accepted. */
export async function invitedOwners(db: Db): Promise<InvitedOwner[]> {
  const rows = await db.select().from(consoleInvites).where(isNotNull(consoleInvites.usedBy)).orderBy(asc(consoleInvites.usedAt));
  const seen = new Map<string, InvitedOwner>();
  for (const row of rows) {
    if (row.usedBy && row.usedAt && !seen.has(row.usedBy)) seen.set(row.usedBy, { identity: row.usedBy, invitedAt: row.createdAt, acceptedAt: row.usedAt });
  }
  return [...seen.values()];
}

/** Removes an owner an invite made (every invite they used): they are no admin from the next request on. False when none made them one. */
export async function removeInvitedOwner(db: Db, identity: string): Promise<boolean> {
  const gone = await db.delete(consoleInvites).where(eq(consoleInvites.usedBy, identity)).returning({ idHash: consoleInvites.idHash });
  return gone.length > 0;
}
