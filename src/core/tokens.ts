import { and, eq } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Database, Db } from '../db/client.ts';
import { links as linksTable, type LinkRow } from '../db/schema.ts';
import type { Credentials, Json, ProviderInstance, XrpcCall, XrpcResult } from '../provider.ts';
import type { RegisteredProvider, Registry } from '../registry.ts';
import type { Keyring } from './crypto.ts';
import { isLinkgateError, LinkgateError } from './errors.ts';
import { asProviderError } from './linking.ts';
import { createLinkStore, type LinkKey, type LinkStore } from './links.ts';

export interface TokenAnswer {
  accessToken: string;
  tokenType: string;
  expiresAt: string | null;
  [field: string]: Json;
}

export interface TokenServiceDeps {
  database: Database;
  keyring: Keyring;
  registry: Registry;
  logger: Logger;
  now: () => number;
  refreshMarginSeconds: number;
  hashUserId: (tenant: string, userId: string) => string;
}

type Locked<T> = (db: Db) => Promise<T>;

/** PGlite's per-link refresh queues, shared by every app on the same database object. */
const pgliteQueues = new WeakMap<Database, Map<string, Promise<void>>>();

/**
 * Fresh credentials for a link, refreshing at most once at a time per link
 * across every instance on one database: on PostgreSQL the refresher holds
 * the link's row lock (`SELECT … FOR UPDATE`) for the refresh, and whoever
 * gets the lock next reads the credentials again before deciding to
 * refresh, so waiters reuse the result instead of spending the refresh token
 * twice. PGlite serves a single process, so an in-process queue per link
 * does the same there without holding its one connection.
 */
export function createTokenService(deps: TokenServiceDeps) {
  const links = createLinkStore(deps.database.db, deps.keyring);
  let queues = pgliteQueues.get(deps.database);
  if (!queues) pgliteQueues.set(deps.database, (queues = new Map()));
  const marginMs = deps.refreshMarginSeconds * 1000;

  async function withLinkLock<T>(key: LinkKey, fn: Locked<T>): Promise<T> {
    if (deps.database.kind === 'postgres') {
      return deps.database.db.transaction(async (tx) => {
        await tx
          .select({ provider: linksTable.provider })
          .from(linksTable)
          .where(and(eq(linksTable.tenant, key.tenant), eq(linksTable.userId, key.userId), eq(linksTable.provider, key.provider)))
          .for('update');
        return fn(tx);
      });
    }
    const id = JSON.stringify([key.tenant, key.userId, key.provider]);
    const queue = queues!;
    const previous = queue.get(id) ?? Promise.resolve();
    let release!: () => void;
    const mine = previous.then(() => new Promise<void>((resolve) => (release = resolve)));
    queue.set(id, mine);
    await previous;
    try {
      return await fn(deps.database.db);
    } finally {
      release();
      if (queue.get(id) === mine) queue.delete(id);
    }
  }

  const dueForRefresh = (credentials: Credentials) =>
    credentials.expiresAt !== undefined && credentials.expiresAt - deps.now() <= marginMs;
  const expired = (credentials: Credentials) => credentials.expiresAt !== undefined && credentials.expiresAt <= deps.now();

  const needsReauth = (provider: string, cause?: unknown) =>
    new LinkgateError('needs_reauth', 'the user must link this account again', { provider, cause });

  async function markNeedsReauth(store: LinkStore, key: LinkKey, reason: string): Promise<void> {
    await store.setStatus(key, 'needs_reauth', new Date(deps.now()));
    deps.logger.info({ provider: key.provider, user: deps.hashUserId(key.tenant, key.userId), reason }, 'link needs reauthentication');
  }

  function configured(key: LinkKey): RegisteredProvider & { instance: ProviderInstance } {
    const provider = deps.registry.get(key.provider);
    if (!provider) throw new LinkgateError('unknown_provider', `there is no provider called "${key.provider}"`, { provider: key.provider });
    if (!provider.instance) throw new LinkgateError('provider_unconfigured', `${provider.displayName} is not configured`, { provider: key.provider });
    return provider as RegisteredProvider & { instance: ProviderInstance };
  }

  function requireLinked(row: LinkRow | undefined, key: LinkKey): LinkRow {
    if (!row) throw new LinkgateError('not_linked', 'this user has not linked this provider', { provider: key.provider });
    if (row.status === 'needs_reauth') throw needsReauth(key.provider);
    return row;
  }

  /** Refreshes under the link's lock, unless someone else already did. */
  async function refreshLocked(key: LinkKey, instance: ProviderInstance): Promise<Credentials> {
    const outcome = await withLinkLock(key, async (db) => {
      const store = createLinkStore(db, deps.keyring);
      for (;;) {
        const row = requireLinked(await store.get(key), key);
        const current = store.openCredentials(row);
        if (!dueForRefresh(current)) return { credentials: current };
        let fresh: Credentials;
        try {
          fresh = await instance.refresh!(current);
        } catch (error) {
          if (isLinkgateError(error, 'needs_reauth')) {
            // Commit the status inside the lock, then tell the caller.
            await markNeedsReauth(store, key, 'refresh refused');
            return { reauth: error };
          }
          throw asProviderError(error, key.provider);
        }
        if (await store.replaceCredentials(row, fresh, new Date(deps.now()))) {
          deps.logger.info({ provider: key.provider, user: deps.hashUserId(key.tenant, key.userId) }, 'token refreshed');
          return { credentials: fresh };
        }
        // A relink replaced the row while we refreshed: its credentials win; look again.
      }
    });
    if ('reauth' in outcome) throw needsReauth(key.provider, outcome.reauth);
    return outcome.credentials;
  }

  /** Credentials that work now (refreshed if due), or `needs_reauth`. */
  async function credentials(key: LinkKey): Promise<Credentials> {
    const { instance } = configured(key);
    const row = requireLinked(await links.get(key), key);
    const stored = links.openCredentials(row);
    if (!dueForRefresh(stored)) return stored;
    if (!instance.refresh) {
      // Nothing to refresh with (AniList): usable until it actually expires.
      if (!expired(stored)) return stored;
      await markNeedsReauth(links, key, 'token expired');
      throw needsReauth(key.provider);
    }
    return refreshLocked(key, instance);
  }

  return {
    credentials,

    /** The token API's answer: never a refresh token. */
    answer(key: LinkKey, credentials: Credentials): TokenAnswer | { [field: string]: Json } {
      const { instance } = configured(key);
      // A provider whose tokens cannot leave the gateway (DPoP-bound) answers with its fields alone.
      if (!credentials.accessToken && instance.tokenFields && credentials.refreshToken === undefined) return instance.tokenFields(credentials);
      if (!credentials.accessToken) throw new LinkgateError('provider_response_invalid', 'this link holds no access token', { provider: key.provider });
      return {
        ...(instance.tokenFields?.(credentials) ?? {}),
        accessToken: credentials.accessToken,
        tokenType: credentials.tokenType ?? 'Bearer',
        expiresAt: credentials.expiresAt === undefined ? null : new Date(credentials.expiresAt).toISOString(),
      };
    },

    /**
     * Forwards a bot's XRPC call through the link's session. The provider
     * refreshes what it must; a session that is gone turns the link
     * `needs_reauth`.
     */
    async xrpc(key: LinkKey, call: XrpcCall): Promise<XrpcResult> {
      const { instance } = configured(key);
      if (!instance.xrpc) throw new LinkgateError('not_found', `${key.provider} has no XRPC proxy`, { provider: key.provider });
      const row = requireLinked(await links.get(key), key);
      try {
        return await instance.xrpc(links.openCredentials(row), call);
      } catch (error) {
        if (isLinkgateError(error, 'needs_reauth')) {
          await markNeedsReauth(links, key, 'session refused');
          throw needsReauth(key.provider, error);
        }
        throw asProviderError(error, key.provider);
      }
    },

    /** Asks the provider whether the link still works; a refused token turns the link `needs_reauth`. */
    async verify(key: LinkKey): Promise<LinkRow> {
      const { instance } = configured(key);
      let current: Credentials;
      try {
        current = await credentials(key);
      } catch (error) {
        if (isLinkgateError(error, 'needs_reauth')) return requireRow(await links.get(key), key);
        throw error;
      }
      if (instance.verify) {
        let works: boolean;
        try {
          works = await instance.verify(current);
        } catch (error) {
          throw asProviderError(error, key.provider);
        }
        if (!works) await markNeedsReauth(links, key, 'provider refused the token');
      }
      return requireRow(await links.get(key), key);
    },
  };
}

function requireRow(row: LinkRow | undefined, key: LinkKey): LinkRow {
  if (!row) throw new LinkgateError('not_linked', 'this user has not linked this provider', { provider: key.provider });
  return row;
}

export type TokenService = ReturnType<typeof createTokenService>;
