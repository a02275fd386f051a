import { and, asc, eq, isNull, lte, ne, or, sql } from '../db/orm.ts';
import * as v from 'valibot';
import type { Db } from '../db/client.ts';
import { links, type LinkRow } from '../db/schema.ts';
import type { Account, Credentials } from '../provider.ts';
import type { Keyring } from './crypto.ts';
import { LinkgateError } from './errors.ts';
import { DEFAULT_TENANT } from './ids.ts';
import { recordLinkEvent } from './link-events.ts';
import { enqueueLinkEvent, type RefreshFailure } from './webhooks.ts';

/** The link as the bot API shows it: never a credential. */
export interface Link {
  userId: string;
  provider: string;
  externalId: string;
  externalName: string | null;
  status: 'active' | 'needs_reauth';
  scopes: string[];
  linkedAt: string;
  updatedAt: string;
  expiresAt: string | null;
}

export interface LinkKey {
  tenant: string;
  userId: string;
  provider: string;
}

// A credential envelope opens only for the row it was sealed for.
export const linkAad = (key: LinkKey) => `link:${JSON.stringify([key.tenant, key.userId, key.provider])}`;

const StoredCredentials = v.object({
  accessToken: v.optional(v.string()),
  refreshToken: v.optional(v.string()),
  tokenType: v.optional(v.string()),
  expiresAt: v.optional(v.number()),
  scopes: v.optional(v.array(v.string())),
  extra: v.optional(v.record(v.string(), v.any())),
});

/** What the bot API shows of a link's row (`LinkStore.status` reads only these). */
export type LinkStatusRow = Pick<LinkRow, 'userId' | 'provider' | 'externalId' | 'externalName' | 'status' | 'scopes' | 'linkedAt' | 'updatedAt' | 'expiresAt'>;

export function toApiLink(row: LinkStatusRow): Link {
  return {
    userId: row.userId,
    provider: row.provider,
    externalId: row.externalId,
    externalName: row.externalName,
    status: row.status,
    scopes: row.scopes,
    linkedAt: row.linkedAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    expiresAt: row.expiresAt?.toISOString() ?? null,
  };
}

const whereKey = (key: LinkKey) => and(eq(links.tenant, key.tenant), eq(links.userId, key.userId), eq(links.provider, key.provider));

export interface LinkStoreOptions {
  /** Write a webhook event with every change, in its transaction. */
  webhookEvents?: boolean;
}

/** `whereKey` for a prepared statement: the key's parts are its placeholders `tenant`, `userId` and `provider`. */
const byKeyPlaceholders = () =>
  and(eq(links.tenant, sql.placeholder('tenant')), eq(links.userId, sql.placeholder('userId')), eq(links.provider, sql.placeholder('provider')));

function storeOn(db: Db, keyring: Keyring, options: LinkStoreOptions) {
  const defaultEvents = options.webhookEvents ?? false;
  // The default tenant's events exist when the environment configures a webhook; another tenant's
  // are written whenever it has an endpoint (enqueueLinkEvent checks, in the same statement).
  const eventsFor = (tenant: string) => defaultEvents || tenant !== DEFAULT_TENANT;
  // The status API's one query, built once: Drizzle's query building is a
  // noticeable share of the hot path's CPU otherwise (bench/README.md).
  let getLink: ReturnType<typeof prepareGet> | undefined;
  let getStatus: ReturnType<typeof prepareStatus> | undefined;
  // The status API's own: the columns it answers with, not the sealed credentials and the refresh
  // bookkeeping, which the driver would otherwise read, decode and map on every request.
  const prepareStatus = () =>
    db
      .select({
        userId: links.userId,
        provider: links.provider,
        externalId: links.externalId,
        externalName: links.externalName,
        status: links.status,
        scopes: links.scopes,
        linkedAt: links.linkedAt,
        updatedAt: links.updatedAt,
        expiresAt: links.expiresAt,
      })
      .from(links)
      .where(byKeyPlaceholders())
      .prepare('linkgate_link_status');
  const prepareGet = () =>
    db
      .select()
      .from(links)
      .where(byKeyPlaceholders())
      .prepare('linkgate_link_get');

  return {
    /**
     * Stores (or replaces, on relink) the user's link. Unless shared accounts
     * are allowed, an external account already linked to another user of the
     * tenant is refused; an advisory lock on the account makes that check
     * hold when two users link the same account at once.
     */
    async store(key: LinkKey, account: Account, credentials: Credentials, options: { allowShared: boolean; now: Date; configVersion?: number | null; via?: 'flow' | 'sign_in' | 'import' }): Promise<LinkRow> {
      const events = eventsFor(key.tenant);
      // (The webhook event and the link's own event are written in the same transaction: they exist exactly when the change does.)
      return db.transaction(async (tx) => {
        if (!options.allowShared) {
          await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`link:${key.tenant}:${key.provider}:${account.id}`}))`);
          const [other] = await tx
            .select({ userId: links.userId })
            .from(links)
            .where(and(eq(links.tenant, key.tenant), eq(links.provider, key.provider), eq(links.externalId, account.id), ne(links.userId, key.userId)))
            .limit(1);
          if (other) {
            throw new LinkgateError('account_already_linked', 'this account is already linked to another user', { provider: key.provider });
          }
        }
        const values = {
          externalId: account.id,
          externalName: account.name ?? null,
          status: 'active' as const,
          scopes: credentials.scopes ?? [],
          credentials: keyring.seal(JSON.stringify(credentials), linkAad(key)),
          expiresAt: credentials.expiresAt === undefined ? null : new Date(credentials.expiresAt),
          linkedAt: options.now,
          updatedAt: options.now,
          // New credentials: a refresh of the old ones in flight is moot (it sees the change and reads again).
          refreshLease: null,
          refreshLeaseUntil: null,
          refreshFailedAt: null,
          configVersion: options.configVersion ?? null,
        };
        // Locks the row of a relink, so "created" or "updated" (and "recovered") is decided on what is really there.
        const [before] = await tx.select({ status: links.status, refreshFailedAt: links.refreshFailedAt }).from(links).where(whereKey(key)).for('update');
        const existed = before !== undefined;
        const [row] = await tx
          .insert(links)
          .values({ ...key, ...values })
          .onConflictDoUpdate({ target: [links.tenant, links.userId, links.provider], set: values })
          .returning();
        if (!row) throw new Error('link upsert returned no row');
        await recordLinkEvent(tx, key, existed ? 'relinked' : 'linked', options.now, { externalId: row.externalId, externalName: row.externalName, scopes: row.scopes, via: options.via ?? 'flow' });
        if (events) await enqueueLinkEvent(tx, existed ? 'link.updated' : 'link.created', row, options.now);
        // A relink of a link that needed the user, or whose refresh was failing: it works again.
        if (events && before && (before.status === 'needs_reauth' || before.refreshFailedAt !== null)) await enqueueLinkEvent(tx, 'link.recovered', row, options.now);
        return row;
      });
    },

    async get(key: LinkKey): Promise<LinkRow | undefined> {
      getLink ??= prepareGet();
      const [row] = await getLink.execute({ tenant: key.tenant, userId: key.userId, provider: key.provider });
      return row;
    },

    /** The link as the bot API shows it (toApiLink), and no more. */
    async status(key: LinkKey): Promise<LinkStatusRow | undefined> {
      getStatus ??= prepareStatus();
      const [row] = await getStatus.execute({ tenant: key.tenant, userId: key.userId, provider: key.provider });
      return row;
    },

    async list(tenant: string, userId: string): Promise<LinkRow[]> {
      return db.select().from(links).where(and(eq(links.tenant, tenant), eq(links.userId, userId))).orderBy(asc(links.provider));
    },

    /** Deletes the link; `via` (api, cli, rpc, tenant_deleted…) goes into its `unlinked` event. */
    async delete(key: LinkKey, now: Date = new Date(), via?: string): Promise<LinkRow | undefined> {
      return db.transaction(async (tx) => {
        const [row] = await tx.delete(links).where(whereKey(key)).returning();
        if (!row) return undefined;
        await recordLinkEvent(tx, key, 'unlinked', now, { externalId: row.externalId, externalName: row.externalName, ...(via ? { via } : {}) });
        if (eventsFor(key.tenant)) await enqueueLinkEvent(tx, 'link.deleted', row, now);
        return row;
      });
    },

    /**
     * Replaces the credentials of a link only if they are still the ones
     * `row` holds: a relink or another refresh that got there first wins, and
     * the caller gets `undefined` and reads again. Ends any refresh lease.
     */
    async replaceCredentials(row: LinkRow, credentials: Credentials, now: Date): Promise<LinkRow | undefined> {
      const update = (on: Db) =>
        on
          .update(links)
          .set({
            credentials: keyring.seal(JSON.stringify(credentials), linkAad(row)),
            scopes: credentials.scopes ?? row.scopes,
            expiresAt: credentials.expiresAt === undefined ? null : new Date(credentials.expiresAt),
            status: 'active',
            updatedAt: now,
            refreshLease: null,
            refreshLeaseUntil: null,
            refreshFailedAt: null,
          })
          .where(and(whereKey(row), eq(links.credentials, row.credentials)))
          .returning();
      return db.transaction(async (tx) => {
        const [updated] = await update(tx);
        if (!updated) return undefined;
        await recordLinkEvent(tx, row, 'refreshed', now, { expiresAt: updated.expiresAt?.toISOString() ?? null, scopes: updated.scopes });
        // The first success after failing refreshes, or for a link that needed the user (the re-check), is news: `link.recovered`, in the same transaction.
        if ((row.refreshFailedAt !== null || row.status === 'needs_reauth') && eventsFor(row.tenant)) await enqueueLinkEvent(tx, 'link.recovered', updated, now);
        return updated;
      });
    },

    /**
     * Notes that refreshing `row`'s credentials failed for a reason that is
     * not the user's; the first such failure (the link was fine before) is a
     * `link.refresh_failed` event. Returns whether it was the first.
     */
    async noteRefreshFailure(row: LinkRow, failure: RefreshFailure, now: Date): Promise<boolean> {
      const update = (on: Db) =>
        on
          .update(links)
          .set({ refreshFailedAt: now })
          .where(and(whereKey(row), eq(links.credentials, row.credentials), isNull(links.refreshFailedAt)))
          .returning();
      return db.transaction(async (tx) => {
        const [updated] = await update(tx);
        if (!updated) return false;
        // Like the webhook event, the first failure only: a provider down for an hour is one row, not one per token request.
        await recordLinkEvent(tx, row, 'refresh_failed', now, { reason: failure.reason, willRetry: failure.willRetry });
        if (eventsFor(row.tenant)) await enqueueLinkEvent(tx, 'link.refresh_failed', updated, now, failure);
        return true;
      });
    },

    /**
     * Sets the status only if the link still holds the credentials of `row`
     * (the ones found refused or expired): a relink that landed in between
     * keeps its status, and the caller gets `undefined` and reads again.
     */
    async setStatus(row: LinkRow, status: LinkRow['status'], now: Date, reason?: string): Promise<LinkRow | undefined> {
      const update = (on: Db) =>
        on
          .update(links)
          .set({ status, updatedAt: now })
          .where(and(whereKey(row), eq(links.credentials, row.credentials)))
          .returning();
      // Only a change is an event: a link already needing reauth stays quiet.
      if (status !== 'needs_reauth' || row.status === 'needs_reauth') return (await update(db))[0];
      return db.transaction(async (tx) => {
        const [updated] = await update(tx);
        if (!updated) return undefined;
        await recordLinkEvent(tx, row, 'needs_reauth', now, reason ? { reason } : undefined);
        if (eventsFor(row.tenant)) await enqueueLinkEvent(tx, 'link.needs_reauth', updated, now);
        return updated;
      });
    },

    /**
     * Gives a link the external id its provider derives now, if it still has
     * `row`'s (another instance doing the same at start-up changes nothing
     * twice); a webhook event says so. `undefined` when it had changed.
     */
    async rekey(row: LinkRow, externalId: string, now: Date): Promise<LinkRow | undefined> {
      const update = (on: Db) =>
        on
          .update(links)
          .set({ externalId, updatedAt: now })
          .where(and(whereKey(row), eq(links.externalId, row.externalId)))
          .returning();
      if (!eventsFor(row.tenant)) return (await update(db))[0];
      return db.transaction(async (tx) => {
        const [updated] = await update(tx);
        if (updated) await enqueueLinkEvent(tx, 'link.updated', updated, now);
        return updated;
      });
    },

    /**
     * Takes the refresh lease of an active link if nobody holds an unexpired
     * one, and returns the link as it is now (the holder decides on these
     * credentials, not on an earlier read); `undefined` if someone else holds
     * it or the link is gone or no longer active.
     */
    async takeRefreshLease(key: LinkKey, lease: string, now: Date, until: Date): Promise<LinkRow | undefined> {
      const [leased] = await db
        .update(links)
        .set({ refreshLease: lease, refreshLeaseUntil: until })
        .where(and(whereKey(key), eq(links.status, 'active'), or(isNull(links.refreshLeaseUntil), lte(links.refreshLeaseUntil, now))))
        .returning();
      return leased;
    },

    /** Lets the refresh lease go, if it is still `lease`. */
    async releaseRefreshLease(key: LinkKey, lease: string): Promise<void> {
      await db
        .update(links)
        .set({ refreshLease: null, refreshLeaseUntil: null })
        .where(and(whereKey(key), eq(links.refreshLease, lease)));
    },

    openCredentials(row: LinkRow): Credentials {
      const plaintext = keyring.open(row.credentials, linkAad(row));
      return v.parse(StoredCredentials, JSON.parse(plaintext));
    },
  };
}

export function createLinkStore(db: Db, keyring: Keyring, options: LinkStoreOptions = {}) {
  return {
    ...storeOn(db, keyring, options),
    /** The same store over another connection or a transaction. */
    using: (other: Db) => storeOn(other, keyring, options),
  };
}

export type LinkStore = ReturnType<typeof createLinkStore>;

/** What the console's link search takes: words to find, and filters. */
export interface LinkSearch {
  /** A user id or an external id (exactly), or part of the account's name (any case). */
  query?: string | undefined;
  provider?: string | undefined;
  status?: LinkRow['status'] | undefined;
  limit: number;
}

/** A tenant's links matching a search, most recently changed first; never a credential is opened. */
export async function searchLinks(db: Db, tenant: string, search: LinkSearch): Promise<LinkRow[]> {
  const words = search.query?.trim();
  // LIKE's own wildcards in the words are matched as themselves.
  const pattern = words ? `%${words.replace(/[\\%_]/g, (c) => `\\${c}`)}%` : undefined;
  return db
    .select()
    .from(links)
    .where(
      and(
        eq(links.tenant, tenant),
        search.provider ? eq(links.provider, search.provider) : undefined,
        search.status ? eq(links.status, search.status) : undefined,
        words ? or(eq(links.userId, words), eq(links.externalId, words), sql`${links.externalName} ilike ${pattern}`) : undefined,
      ),
    )
    .orderBy(sql`${links.updatedAt} desc`)
    .limit(search.limit);
}
