import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Database } from '../db/client.ts';
import type { LinkRow } from '../db/schema.ts';
import type { ApiCall, Credentials, Json, ProviderInstance, XrpcCall, XrpcResult } from '../provider.ts';
import { describeNeeds, type RegisteredProvider } from '../registry.ts';
import { DEFAULT_TENANT } from './ids.ts';
import type { ProviderDirectory } from './tenant-providers.ts';
import { randomToken, type Keyring } from './crypto.ts';
import { isLinkgateError, LinkgateError } from './errors.ts';
import { checkedCredentials } from './bounds.ts';
import { asProviderError } from './linking.ts';
import { createLinkStore, type LinkKey } from './links.ts';
import type { Metrics } from './metrics.ts';

export interface TokenAnswer {
  accessToken: string;
  tokenType: string;
  expiresAt: string | null;
  [field: string]: Json;
}

export interface TokenServiceDeps {
  database: Database;
  metrics?: Metrics;
  /** Write a webhook event when a link turns needs_reauth. */
  webhookEvents?: boolean;
  keyring: Keyring;
  /** Every tenant's providers; a link is refreshed by the instance of the configuration that made it. */
  providers: ProviderDirectory;
  logger: Logger;
  now: () => number;
  refreshMarginSeconds: number;
  /** How long a refresh may hold the link's lease: longer than the provider can take to answer. */
  refreshLeaseMs: number;
  hashUserId: (tenant: string, userId: string) => string;
  /** Counts a token handed out (src/core/link-events.ts: in memory, written in batches, never inside the request). */
  tokenServed?: (key: LinkKey) => void;
}

/** A link and its opened credentials, read together. */
interface Current {
  row: LinkRow;
  credentials: Credentials;
}

/** How often a request waiting on another instance's refresh looks again (it starts faster). */
const LEASE_POLL_MAX_MS = 250;

/**
 * Fresh credentials for a link, refreshing at most once at a time per link
 * across every instance on one database, without holding a database
 * connection while the provider answers:
 *
 * - in this instance, concurrent requests for one link share one refresh
 *   (single-flight), so a burst costs one provider call and one connection
 *   at a time;
 * - across instances, the refresher takes a lease on the link row (a token
 *   and an expiry, set by one atomic UPDATE), decides on the credentials as
 *   the lease returns them, and writes the new ones only if the stored ones
 *   are still those it refreshed (compare-and-swap), which also ends the
 *   lease. Others re-read until the lease ends and reuse the result, so a
 *   rotating refresh token (Discord) is never spent twice;
 * - a relink that lands meanwhile wins: the refresher's write, or its
 *   `needs_reauth`, applies only to the credentials it started from.
 *
 * A lease outlives the worst-case provider time, and an abandoned one (a
 * crashed instance) expires.
 */
export function createTokenService(deps: TokenServiceDeps) {
  const links = createLinkStore(deps.database.db, deps.keyring, { webhookEvents: deps.webhookEvents ?? false });
  const marginMs = deps.refreshMarginSeconds * 1000;
  const inFlight = new Map<string, Promise<Current>>();

  const dueForRefresh = (credentials: Credentials) =>
    credentials.expiresAt !== undefined && credentials.expiresAt - deps.now() <= marginMs;
  const expired = (credentials: Credentials) => credentials.expiresAt !== undefined && credentials.expiresAt <= deps.now();

  const needsReauth = (provider: string, cause?: unknown) =>
    new LinkgateError('needs_reauth', 'the user must link this account again', { provider, cause });

  /** Marks the link `needs_reauth` if it still holds the credentials of `row`; false when a relink replaced them. */
  async function markNeedsReauth(row: LinkRow, reason: string): Promise<boolean> {
    const marked = await links.setStatus(row, 'needs_reauth', new Date(deps.now()), reason);
    if (marked) deps.logger.info({ provider: row.provider, user: deps.hashUserId(row.tenant, row.userId), reason }, 'link needs reauthentication');
    return marked !== undefined;
  }

  /** The environment's provider (the default tenant's): unknown → 404, not configured → 503. */
  function configured(key: LinkKey): RegisteredProvider & { instance: ProviderInstance } {
    const provider = deps.providers.defaults.get(key.provider);
    if (!provider) throw new LinkgateError('unknown_provider', `there is no provider called "${key.provider}"`, { provider: key.provider });
    if (!provider.instance) {
      throw new LinkgateError('provider_unconfigured', `${provider.displayName} is not configured (missing ${describeNeeds(provider.needs)})`, { provider: key.provider });
    }
    return provider as RegisteredProvider & { instance: ProviderInstance };
  }

  /**
   * The instance that serves a link: the environment's for the default
   * tenant's links, else the one made from the tenant's configuration
   * version that created the link (its client refreshes and revokes what it
   * issued, also after the tenant changed its app).
   */
  async function instanceFor(row: LinkRow): Promise<ProviderInstance> {
    if (row.tenant === DEFAULT_TENANT && row.configVersion === null) return configured(row).instance;
    const instance = await deps.providers.instance(row.tenant, row.provider, row.configVersion);
    if (!instance) throw new LinkgateError('provider_unconfigured', 'the configuration this link was made with is gone', { provider: row.provider });
    return instance;
  }

  /** Before reading the link: the default tenant's provider must be configured (503 otherwise, linked or not). */
  function checkConfigured(key: LinkKey): void {
    if (key.tenant === DEFAULT_TENANT) configured(key);
  }

  function requireLinked(row: LinkRow | undefined, key: LinkKey): LinkRow {
    if (!row) throw new LinkgateError('not_linked', 'this user has not linked this provider', { provider: key.provider });
    if (row.status === 'needs_reauth') throw needsReauth(key.provider);
    return row;
  }

  /**
   * A refresh that failed for a reason other than the user's grant: the bot
   * asked nothing wrong, so a provider's 4xx (`invalid_client`,
   * `unsupported_grant_type`: our client or the provider is at fault) is a
   * 502 too, never the bot's 400.
   */
  function refreshFailure(error: unknown, provider: string): LinkgateError {
    const failure = asProviderError(error, provider);
    if (failure.status >= 500) return failure;
    return new LinkgateError('refresh_failed', `the provider refused to refresh the token (${failure.message})`, { provider, cause: failure });
  }

  /**
   * Refreshes under the link's lease, unless someone else already did. Due
   * credentials are refreshed; with `refused` (an access token the
   * provider's API just refused), those are too, while the link still holds them.
   */
  async function refreshLeased(key: LinkKey, instance: ProviderInstance, refused?: Credentials): Promise<Current> {
    const lease = randomToken(16);
    let pauseMs = 20;
    const due = (credentials: Credentials) => dueForRefresh(credentials) || (refused !== undefined && credentials.accessToken === refused.accessToken);
    for (;;) {
      const row = requireLinked(await links.get(key), key);
      const seen = links.openCredentials(row);
      if (!due(seen)) return { row, credentials: seen };
      if (row.refreshLeaseUntil && row.refreshLeaseUntil.getTime() > deps.now()) {
        // Another instance is refreshing: look again shortly (no connection is held meanwhile).
        await sleep(pauseMs);
        pauseMs = Math.min(pauseMs * 2, LEASE_POLL_MAX_MS);
        continue;
      }
      const now = deps.now();
      const leased = await links.takeRefreshLease(key, lease, new Date(now), new Date(now + deps.refreshLeaseMs));
      if (!leased) continue;
      let released = false;
      try {
        const current = links.openCredentials(leased);
        if (!due(current)) return { row: leased, credentials: current };
        let fresh: Credentials;
        try {
          fresh = checkedCredentials(await instance.refresh!(current), key.provider);
        } catch (error) {
          if (!isLinkgateError(error, 'needs_reauth')) {
            const failure = refreshFailure(error, key.provider);
            deps.metrics?.inc('linkgate_token_refreshes_total', { provider: key.provider, tenant: key.tenant, outcome: failure.code });
            // The first failure of a link that worked is an event (link.refresh_failed); the next use tries again
            // when the provider was down or slow (5xx), not when it refused our client (refresh_failed).
            const first = await links
              .noteRefreshFailure(leased, { reason: failure.code, willRetry: failure.status >= 500 && failure.code !== 'refresh_failed' }, new Date(deps.now()))
              .catch(() => false);
            if (first) deps.logger.warn({ provider: key.provider, user: deps.hashUserId(key.tenant, key.userId), errorCode: failure.code }, 'token refresh failing');
            throw failure;
          }
          deps.metrics?.inc('linkgate_token_refreshes_total', { provider: key.provider, tenant: key.tenant, outcome: 'needs_reauth' });
          if (await markNeedsReauth(leased, 'refresh refused')) throw needsReauth(key.provider, error);
          continue; // A relink replaced the credentials that were refused: look again.
        }
        const updated = await links.replaceCredentials(leased, fresh, new Date(deps.now()));
        if (updated) {
          released = true;
          deps.logger.info({ provider: key.provider, user: deps.hashUserId(key.tenant, key.userId) }, 'token refreshed');
          deps.metrics?.inc('linkgate_token_refreshes_total', { provider: key.provider, tenant: key.tenant, outcome: 'refreshed' });
          return { row: updated, credentials: fresh };
        }
        // A relink replaced the row while we refreshed: its credentials win; look again.
      } finally {
        if (!released) await links.releaseRefreshLease(key, lease);
      }
    }
  }

  /** One refresh per link in this instance: concurrent callers share it. */
  function refreshOnce(key: LinkKey, instance: ProviderInstance, refused?: Credentials): Promise<Current> {
    const id = JSON.stringify([key.tenant, key.userId, key.provider, refused?.accessToken ?? null]);
    let running = inFlight.get(id);
    if (!running) {
      running = refreshLeased(key, instance, refused).finally(() => inFlight.delete(id));
      inFlight.set(id, running);
    }
    return running;
  }

  /** The link and credentials that work now (refreshed if due), or `needs_reauth`. */
  async function current(key: LinkKey): Promise<Current> {
    checkConfigured(key);
    for (;;) {
      const row = requireLinked(await links.get(key), key);
      const stored = links.openCredentials(row);
      if (!dueForRefresh(stored)) return { row, credentials: stored };
      const instance = await instanceFor(row);
      if (instance.refresh) return refreshOnce(key, instance);
      // Nothing to refresh with (AniList): usable until it actually expires.
      if (!expired(stored)) return { row, credentials: stored };
      if (await markNeedsReauth(row, 'token expired')) throw needsReauth(key.provider);
      // Relinked since we read it: look again.
    }
  }

  return {
    /**
     * Refreshes now, due or not (the console's "refresh now"): the stored
     * credentials are treated as refused, through the same lease as any
     * refresh. A provider without refresh is a 400.
     */
    async refreshNow(key: LinkKey): Promise<LinkRow> {
      checkConfigured(key);
      const row = requireLinked(await links.get(key), key);
      const instance = await instanceFor(row);
      if (!instance.refresh) throw new LinkgateError('bad_request', 'this provider\'s links cannot be refreshed (it issues no refresh token)', { provider: key.provider });
      return (await refreshOnce(key, instance, links.openCredentials(row))).row;
    },

    /** Credentials that work now (refreshed if due), or `needs_reauth`. */
    async credentials(key: LinkKey): Promise<Credentials> {
      return (await current(key)).credentials;
    },

    /** The token API's answer for a link (refreshed if due): never a refresh token. */
    async token(key: LinkKey): Promise<TokenAnswer | { [field: string]: Json }> {
      const { row, credentials } = await current(key);
      const instance = await instanceFor(row);
      // A provider whose tokens cannot leave the gateway (DPoP-bound) answers with its fields alone.
      if (!credentials.accessToken && instance.tokenFields && credentials.refreshToken === undefined) {
        deps.tokenServed?.(key);
        return instance.tokenFields(credentials);
      }
      if (!credentials.accessToken) throw new LinkgateError('provider_response_invalid', 'this link holds no access token', { provider: key.provider });
      deps.tokenServed?.(key);
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
      const noProxy = () => new LinkgateError('not_found', `${key.provider} has no XRPC proxy`, { provider: key.provider });
      if (key.tenant === DEFAULT_TENANT && !configured(key).instance.xrpc) throw noProxy();
      const row = requireLinked(await links.get(key), key);
      const instance = await instanceFor(row);
      if (!instance.xrpc) throw noProxy();
      try {
        return await instance.xrpc(links.openCredentials(row), call);
      } catch (error) {
        if (isLinkgateError(error, 'needs_reauth')) {
          await markNeedsReauth(row, 'session refused');
          throw needsReauth(key.provider, error);
        }
        throw asProviderError(error, key.provider);
      }
    },

    /**
     * A bot's call to the provider's API with the link's credentials (the
     * proxy route checked it against the allowlist): refreshed first when
     * due; a 401 refreshes once and retries; a second 401 (or one with
     * nothing to refresh with) turns the link `needs_reauth`. The upstream
     * answer is handed back unread.
     */
    async proxy(key: LinkKey, call: ApiCall): Promise<Response> {
      const noProxy = () => new LinkgateError('not_found', `${key.provider} has no API proxy`, { provider: key.provider });
      if (key.tenant === DEFAULT_TENANT && !configured(key).instance.api) throw noProxy();
      let now = await current(key);
      const instance = await instanceFor(now.row);
      const api = instance.api;
      if (!api) throw noProxy();
      const send = async (credentials: Credentials) => {
        try {
          return await api.request(credentials, call);
        } catch (error) {
          throw asProviderError(error, key.provider);
        }
      };
      let answer = await send(now.credentials);
      if (answer.status !== 401) return answer;
      await answer.body?.cancel().catch(() => {});
      if (instance.refresh) {
        now = await refreshOnce(key, instance, now.credentials);
        answer = await send(now.credentials);
        if (answer.status !== 401) return answer;
        await answer.body?.cancel().catch(() => {});
      }
      await markNeedsReauth(now.row, 'the provider API refused the token');
      throw needsReauth(key.provider);
    },

    /**
     * Tries once whether a `needs_reauth` link's refresh token still works
     * (the background re-check, src/core/reauth-recheck.ts): on success the
     * link is active again with the new credentials (`link.recovered`); on
     * any failure nothing changes and nothing is said — the link already
     * told everyone it needs the user. No lease: only this re-check refreshes
     * a `needs_reauth` link, and the write applies only to the credentials
     * it read, so a relink meanwhile wins.
     */
    async recover(row: LinkRow): Promise<'recovered' | 'not_recovered' | 'not_refreshable'> {
      if (row.status !== 'needs_reauth') return 'not_refreshable';
      const stored = links.openCredentials(row);
      if (stored.refreshToken === undefined) return 'not_refreshable';
      const instance = await instanceFor(row).catch(() => undefined);
      if (!instance?.refresh) return 'not_refreshable';
      let fresh: Credentials;
      try {
        fresh = checkedCredentials(await instance.refresh(stored), row.provider);
      } catch {
        return 'not_recovered';
      }
      const updated = await links.replaceCredentials(row, fresh, new Date(deps.now()));
      if (!updated) return 'not_recovered';
      deps.logger.info({ provider: row.provider, user: deps.hashUserId(row.tenant, row.userId) }, 'link recovered by the re-check');
      deps.metrics?.inc('linkgate_token_refreshes_total', { provider: row.provider, tenant: row.tenant, outcome: 'recovered' });
      return 'recovered';
    },

    /** Asks the provider whether the link still works; a refused token turns the link `needs_reauth`. */
    async verify(key: LinkKey): Promise<LinkRow> {
      checkConfigured(key);
      let now: Current;
      try {
        now = await current(key);
      } catch (error) {
        if (isLinkgateError(error, 'needs_reauth')) return requireRow(await links.get(key), key);
        throw error;
      }
      const instance = await instanceFor(now.row);
      if (instance.verify) {
        let works: boolean;
        try {
          works = await instance.verify(now.credentials);
        } catch (error) {
          throw asProviderError(error, key.provider);
        }
        // Only the credentials that were refused: a relink meanwhile stays active.
        if (!works) await markNeedsReauth(now.row, 'provider refused the token');
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
