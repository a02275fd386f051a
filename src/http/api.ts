import { Hono, type Context, type MiddlewareHandler } from 'hono';
import * as v from 'valibot';
import type { Metrics } from '../core/metrics.ts';
import { LinkgateError } from '../core/errors.ts';
import { ProviderId, UserId, userNameSchema } from '../core/ids.ts';
import { checkReturnTo, createLinkUrl, ScopeList } from '../core/link-context.ts';
import { toApiLink, type LinkStore } from '../core/links.ts';
import type { LinkEvents } from '../core/events.ts';
import { LinkEventCursor, listLinkEvents, type TokenServedCounter } from '../core/link-events.ts';
import type { TokenService } from '../core/tokens.ts';
import { unlink } from '../core/unlink.ts';
import { parseInput } from '../core/validation.ts';
import type { ApiCall, Json } from '../provider.ts';
import { callProvider, checkProxyCall, passedContentType, PROXY_METHODS, UpstreamQuery } from '../core/proxy.ts';
import { importLinks } from '../core/link-transfer.ts';
import { describeNeeds, type RegisteredProvider, type Registry } from '../registry.ts';
import type { ProviderDirectory } from '../core/tenant-providers.ts';
import type { TenantStore } from '../core/tenants.ts';
import type { Db } from '../db/client.ts';
import { listDeliveries, retryDelivery, toApiDelivery } from '../core/webhooks.ts';
import { authenticateBot } from '../core/callers.ts';
import { bodyLimit, readJsonBody, refuseApiKey, type ApiKeys, type AppEnv } from './middleware.ts';
import { countRequest } from './rate-limit.ts';
import type { RateLimiter } from '../core/rate-limit.ts';
import type { RateLimitRule } from '../config.ts';

export interface ApiRoutesDeps {
  /** Every tenant's providers. */
  providers: ProviderDirectory;
  /** Which tenant a key belongs to, and each tenant's context secret. */
  tenants: TenantStore;
  /** The webhook outbox, for the delivery log. */
  db: Db;
  links: LinkStore;
  events: LinkEvents;
  tokens: TokenService;
  apiKeys: ApiKeys;
  now: () => number;
  publicBaseUrl: URL;
  contextTtlSeconds: number;
  returnToOrigins: readonly string[];
  hashUserId: (tenant: string, userId: string) => string;
  /** Counts requests per API key. */
  limiter: RateLimiter;
  /** LINK_ALLOW_SHARED_ACCOUNTS, for imported links as for linked ones. */
  allowSharedAccounts: boolean;
  /** Aborted at shutdown: waits answer as on timeout, so the bot asks again elsewhere. */
  stopping?: AbortSignal | undefined;
  metrics?: Metrics | undefined;
  /** Whether the user cancelled linking at or after a time (flows ended as `cancelled`). */
  cancelledSince: (key: { tenant: string; userId: string; provider: string }, since: Date) => Promise<boolean>;
  /** This instance's token counts not yet written: the events route writes them first. */
  tokensServed?: Pick<TokenServedCounter, 'flush'>;
}

const UserIdParam = v.pipe(UserId, v.description('the bot’s id for its user (a Discord snowflake, say), as text: 1–128 letters, digits and ._:@+=-'));
const ProviderParam = v.pipe(ProviderId, v.description('a provider id, as GET /api/v1/providers lists them (anilist, discord, …)'));
export const UserParams = v.object({ userId: UserIdParam });
export const WaitQuery = v.object({
  timeoutSeconds: v.optional(
    v.pipe(
      v.string(),
      v.description('how long to wait, 1 to 60 seconds'),
      v.regex(/^\d{1,2}$/, 'timeoutSeconds must be a whole number from 1 to 60'),
      v.transform(Number),
      v.minValue(1, 'timeoutSeconds must be at least 1'),
      v.maxValue(60, 'timeoutSeconds must be at most 60'),
    ),
    '30',
  ),
  since: v.optional(
    v.pipe(
      v.string(),
      v.description('ISO 8601 time, e.g. when you made the link URL: a cancel since then also ends the wait (409)'),
      v.isoTimestamp('since must be an ISO 8601 time such as 2026-12-03T12:00:00Z'),
      v.transform((text) => new Date(text)),
    ),
  ),
});
export const LinkQuery = v.object({
  requireScopes: v.optional(
    v.pipe(
      v.string(),
      v.description('comma-separated scopes the link must have been granted; without them: 409 insufficient_scope with a link URL that asks for them'),
      v.transform((text) => text.split(',').map((scope) => scope.trim()).filter((scope) => scope !== '')),
      ScopeList('requireScopes'),
    ),
  ),
  verify: v.optional(v.pipe(v.picklist(['true', 'false'], 'verify must be true or false'), v.description('true: ask the provider whether the stored token still works (a refused one turns the link needs_reauth)'))),
});
export const LinkParams = v.object({ userId: UserIdParam, provider: ProviderParam });
// NSID syntax from the AT Protocol spec (atproto.com/specs/nsid): a reversed domain, then a name.
const Nsid = v.pipe(
  v.string(),
  v.maxLength(317, 'the NSID is too long'),
  v.regex(/^[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+\.[a-zA-Z][a-zA-Z0-9]{0,62}$/, 'the method must be an NSID like app.bsky.actor.getProfile'),
);
export const XrpcParams = v.object({ userId: UserIdParam, provider: ProviderParam, nsid: v.pipe(Nsid, v.description('the XRPC method, an NSID such as app.bsky.actor.getProfile; it must be in ATPROTO_XRPC_ALLOW')) });
export const ProxyParams = v.object({
  userId: UserIdParam,
  provider: ProviderParam,
});
export const XrpcBody = v.pipe(
  v.custom<Record<string, unknown>>((input) => typeof input === 'object' && input !== null && !Array.isArray(input), 'the body must be a JSON object'),
  v.record(v.string(), v.unknown()),
);
export const DeliveriesQuery = v.object({
  status: v.optional(v.pipe(v.picklist(['pending', 'delivered', 'dead'], 'status must be pending, delivered or dead'), v.description('only deliveries in this state: pending, delivered or dead'))),
  limit: v.optional(
    v.pipe(v.string(), v.description('how many, 1 to 100'), v.regex(/^\d{1,3}$/, 'limit must be a whole number from 1 to 100'), v.transform(Number), v.minValue(1, 'limit must be at least 1'), v.maxValue(100, 'limit must be at most 100')),
    '50',
  ),
});
export const LinkEventsQuery = v.object({
  cursor: v.optional(v.pipe(LinkEventCursor, v.description('the nextCursor of the previous page'))),
  limit: v.optional(
    v.pipe(v.string(), v.description('how many, 1 to 100'), v.regex(/^\d{1,3}$/, 'limit must be a whole number from 1 to 100'), v.transform(Number), v.minValue(1, 'limit must be at least 1'), v.maxValue(100, 'limit must be at most 100')),
    '50',
  ),
});
export const DeliveryParams = v.object({ id: v.pipe(v.string(), v.description('a delivery id, evt_…, from the delivery log'), v.regex(/^evt_[0-9a-f-]{36}$/, 'id must be a delivery id like evt_…')) });
export const LinkUrlBody = v.object({
  userId: UserId,
  provider: ProviderId,
  returnTo: v.optional(v.pipe(v.string('returnTo must be a string'), v.maxLength(2048, 'returnTo is too long'))),
  /** Shown on the confirmation page ("… for its user <userName>"), so the person can tell the link is theirs. */
  userName: v.optional(userNameSchema('userName')),
  /** Scopes to ask the provider for on top of its configured ones. */
  scopes: v.optional(ScopeList('scopes')),
});

/** The largest import body (JSON lines): about 10 000 links. */
export const IMPORT_MAX_BYTES = 8 * 1024 * 1024;

/**
 * `POST …/links:import`, for the bot API (the key's tenant) and the operator
 * API (any tenant): JSON lines in, each line's result out (src/core/link-transfer.ts).
 */
export async function answerImport(
  c: Context<AppEnv>,
  deps: { links: LinkStore; providers: ProviderDirectory; allowSharedAccounts: boolean; now: () => number },
  tenant: string,
): Promise<Response> {
  if (!/^application\/(x-ndjson|jsonl|json)\b/i.test(c.req.header('content-type') ?? '')) {
    throw new LinkgateError('bad_request', 'expected JSON lines (Content-Type: application/x-ndjson)');
  }
  const registry = await deps.providers.of(tenant);
  const answer = await importLinks(
    { links: deps.links, tenant, provider: (provider) => registry.get(provider), allowSharedAccounts: deps.allowSharedAccounts, now: deps.now },
    await c.req.text(),
    c.req.header('linkgate-passphrase'),
  );
  c.get('log')().info({ tenant, ...answer.counts }, 'links imported');
  return c.json(answer);
}

/**
 * A route that would hand the bot a link URL answers 503 while the provider
 * is not configured: a bot must never be given a link that cannot work (or `null`).
 */
export function unconfigured(provider: RegisteredProvider): LinkgateError {
  return new LinkgateError('provider_unconfigured', `${provider.displayName} is not configured (missing ${describeNeeds(provider.needs)})`, { provider: provider.id });
}

export interface LinkUrlOptions {
  returnTo?: string;
  userName?: string;
  scopes?: readonly string[];
}

/** A link URL for a tenant's user, signed with the tenant's context secret (POST /link-urls, relink answers, MCP). */
export async function signLinkUrl(
  deps: Pick<ApiRoutesDeps, 'contextTtlSeconds' | 'publicBaseUrl' | 'now'> & { tenants: Pick<TenantStore, 'signingSecret'> },
  tenant: string,
  userId: string,
  provider: string,
  options: LinkUrlOptions = {},
): Promise<{ url: string; expiresAt: string }> {
  const secret = deps.tenants.signingSecret(tenant);
  const { url, expiresAt } = await createLinkUrl(
    { userId, provider, tenant, ...options },
    { secret: typeof secret === 'string' ? secret : await secret, ttlSeconds: deps.contextTtlSeconds, publicBaseUrl: deps.publicBaseUrl, now: deps.now() },
  );
  return { url, expiresAt: expiresAt.toISOString() };
}

type RelinkCode = 'not_linked' | 'needs_reauth' | 'insufficient_scope';

/** An answer that carries a fresh link URL: what is wrong, and the URL that puts it right. */
export function relinkBody(error: { code: RelinkCode; message: string }, linkUrl: string) {
  return { error: { code: error.code, message: error.message }, linkUrl };
}

/** The status API's `not_linked` message. */
export const notLinkedMessage = (displayName: string) => `this user has not linked ${displayName}`;

/**
 * The bot API's gate, for /api/v1 and /mcp alike: the key and its tenant (401,
 * 403), its rate limit (429), then for a request with a body its size (413).
 */
export function botGate(deps: Pick<ApiRoutesDeps, 'tenants' | 'limiter' | 'apiKeys'>): MiddlewareHandler<AppEnv> {
  // One middleware for them all, as each layer costs the hot path a dispatch and a promise.
  const limitBody = bodyLimit(64 * 1024);
  const admit = (c: Context<AppEnv>, next: () => Promise<void>, key: string, tenant: string) => {
    // Only the key names the tenant: a header may confirm it, never choose another.
    const asked = c.req.header('x-tenant-id');
    if (asked !== undefined && asked !== tenant) throw new LinkgateError('tenant_mismatch', 'this API key belongs to another tenant than x-tenant-id names');
    c.set('tenant', tenant);
    // A tenant may have its own limit per key (cached; the default tenant's is the environment's).
    const settings = deps.tenants.settings(tenant);
    if (settings instanceof Promise) return settings.then((found) => count(c, next, key, found.apiRateLimit));
    return count(c, next, key, settings.apiRateLimit);
  };
  // An import carries many links: its body may be larger.
  const limitImport = bodyLimit(IMPORT_MAX_BYTES);
  const count = (c: Context<AppEnv>, next: () => Promise<void>, key: string, rule: RateLimitRule | undefined) => {
    const limit = c.req.path.endsWith('/links:import') ? limitImport : limitBody;
    const counted = countRequest(c, deps.limiter, 'api', key, rule);
    return counted ? counted.then(() => limit(c, next)) : limit(c, next);
  };
  // Who calls: the same `authenticateBot` as the RPC services (src/rpc/gate.ts); the key names the tenant.
  const tenantOf = (presented: string) => deps.tenants.resolveApiKey(presented);
  return function apiGate(c: Context<AppEnv>, next: () => Promise<void>) {
    const bot = authenticateBot(tenantOf, c.req.header('authorization'));
    if (bot instanceof Promise) return bot.then((found) => (found ? admit(c, next, found.key, found.tenant) : refuseApiKey(c, deps.apiKeys)));
    return bot ? admit(c, next, bot.key, bot.tenant) : refuseApiKey(c, deps.apiKeys);
  };
}

export function apiRoutes(deps: ApiRoutesDeps) {
  const app = new Hono<AppEnv>();
  app.use('*', botGate(deps));

  /** The tenant's providers: the default tenant's at once, on the status API's hot path. */
  const registryOf = (c: Context<AppEnv>): Registry | Promise<Registry> => deps.providers.of(c.get('tenant'));

  /** The provider must exist; `configured` says whether a link URL can be made for it. */
  function knownProvider(registry: Registry, id: string) {
    const provider = registry.get(id);
    if (!provider) throw new LinkgateError('unknown_provider', `there is no provider called "${id}"`, { provider: id });
    return provider;
  }
  async function tenantProvider(c: Context<AppEnv>, id: string) {
    const registry = registryOf(c);
    return knownProvider(registry instanceof Promise ? await registry : registry, id);
  }

  const linkUrl = (tenant: string, userId: string, provider: string, options: LinkUrlOptions = {}) => signLinkUrl(deps, tenant, userId, provider, options);

  const importRoute = (c: Context<AppEnv>, tenant: string) => answerImport(c, deps, tenant);

  app.get('/providers', async (c) =>
    c.json({
      providers: (await registryOf(c)).list().map((p) => ({ id: p.id, displayName: p.displayName, configured: p.instance !== undefined })),
    }),
  );

  app.post('/link-urls', async (c) => {
    const body = parseInput(LinkUrlBody, await readJsonBody(c));
    const provider = await tenantProvider(c, body.provider);
    if (!provider.instance) throw unconfigured(provider);
    const returnTo = body.returnTo === undefined ? undefined : checkReturnTo(body.returnTo, deps.returnToOrigins);
    return c.json(await linkUrl(c.get('tenant'), body.userId, provider.id, { ...(returnTo ? { returnTo } : {}), ...(body.userName ? { userName: body.userName } : {}), ...(body.scopes ? { scopes: body.scopes } : {}) }), 201);
  });

  app.get('/users/:userId/links', async (c) => {
    const { userId } = parseInput(UserParams, c.req.param());
    const rows = await deps.links.list(c.get('tenant'), userId);
    return c.json({ links: rows.map(toApiLink) });
  });

  /**
   * `not_linked` and `needs_reauth` answers carry a fresh link URL, so a bot
   * can reply "please link your account: <url>" without another call.
   */
  async function relinkAnswer(c: Context<AppEnv>, error: { code: RelinkCode; message: string }, userId: string, provider: string, scopes?: readonly string[]) {
    const known = await tenantProvider(c, provider);
    if (!known.instance) throw unconfigured(known);
    const fresh = await linkUrl(c.get('tenant'), userId, provider, scopes && scopes.length > 0 ? { scopes } : {});
    return c.json(relinkBody(error, fresh.url), error.code === 'not_linked' ? 404 : 409);
  }

  /** Runs a route, answering `not_linked` / `needs_reauth` with a link URL. */
  async function orRelink(c: Context<AppEnv>, userId: string, provider: string, run: () => Promise<Response>): Promise<Response> {
    try {
      return await run();
    } catch (error) {
      if (error instanceof LinkgateError && (error.code === 'not_linked' || error.code === 'needs_reauth')) {
        return relinkAnswer(c, { code: error.code, message: error.message }, userId, provider);
      }
      throw error;
    }
  }

  app.get('/users/:userId/links/:provider', async (c) => {
    const { userId, provider } = parseInput(LinkParams, c.req.param());
    const { verify, requireScopes } = parseInput(LinkQuery, { verify: c.req.query('verify'), requireScopes: c.req.query('requireScopes') });
    const registry = registryOf(c);
    const known = knownProvider(registry instanceof Promise ? await registry : registry, provider);
    const key = { tenant: c.get('tenant'), userId, provider };
    return orRelink(c, userId, provider, async () => {
      const row = verify === 'true' ? await deps.tokens.verify(key) : await deps.links.status(key);
      // The hot path's miss: answered directly, without building (and catching) an Error.
      if (!row) return relinkAnswer(c, { code: 'not_linked', message: notLinkedMessage(known.displayName) }, userId, provider, requireScopes);
      // Scopes the bot needs that the user did not grant: a link URL that asks for them.
      const missing = requireScopes?.filter((scope) => !row.scopes.includes(scope)) ?? [];
      if (row.status === 'active' && missing.length > 0) {
        return relinkAnswer(c, { code: 'insufficient_scope', message: `the link lacks ${missing.length === 1 ? 'a scope' : `${missing.length} scopes`} the bot requires: ${missing.join(' ')}` }, userId, provider, missing);
      }
      return c.json(toApiLink(row));
    });
  });

  /**
   * Long-poll until the user has an active link: at once if they already
   * do (also when they finished before this call), else as soon as any
   * instance stores it, or 204 after `timeoutSeconds` (1–60, default 30).
   */
  app.get('/users/:userId/links/:provider/wait', async (c) => {
    const { userId, provider } = parseInput(LinkParams, c.req.param());
    const { timeoutSeconds, since } = parseInput(WaitQuery, { timeoutSeconds: c.req.query('timeoutSeconds'), since: c.req.query('since') });
    const known = await tenantProvider(c, provider);
    const key = { tenant: c.get('tenant'), userId, provider };
    // Nobody can finish linking a provider that is not configured: say so now rather than after the timeout.
    if (!known.instance) {
      const row = await deps.links.get(key);
      if (row?.status === 'active') return c.json(toApiLink(row));
      throw unconfigured(known);
    }
    // A cancellation since `since` (default: now) ends the wait: the user will not link this time.
    const cancelledFrom = since ?? new Date(deps.now());
    const cancelled = () =>
      c.json({ error: { code: 'link_cancelled', message: 'the user cancelled linking' } }, 409);
    // The caller leaving and the gateway shutting down end the wait early, answered as a timeout.
    const ended = deps.stopping ? AbortSignal.any([c.req.raw.signal, deps.stopping]) : c.req.raw.signal;
    // Subscribe first, then read: a link stored in between still wakes us.
    let subscription = await deps.events.subscribe(key);
    // One abort listener for the whole wait, removed when it ends: a keep-alive
    // connection's signal outlives this request.
    let onAbort!: () => void;
    const aborted = new Promise<'timeout'>((resolve) => (onAbort = () => resolve('timeout')));
    if (ended.aborted) onAbort();
    else ended.addEventListener('abort', onAbort, { once: true });
    try {
      const deadline = deps.now() + timeoutSeconds * 1000;
      for (let first = true; ; first = false) {
        const row = await deps.links.get(key);
        if (row?.status === 'active') return c.json(toApiLink(row));
        // Asked at once only when the bot gave a `since`; otherwise only a change can be one.
        if ((!first || since) && (await deps.cancelledSince(key, cancelledFrom))) return cancelled();
        const left = deadline - deps.now();
        if (left <= 0) return c.body(null, 204);
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), left)));
        const woke = await Promise.race([subscription.changed.then(() => 'changed' as const), timedOut, aborted]);
        clearTimeout(timer);
        if (woke === 'timeout') {
          const last = await deps.links.get(key);
          return last?.status === 'active' ? c.json(toApiLink(last)) : c.body(null, 204);
        }
        subscription.stop();
        subscription = await deps.events.subscribe(key);
      }
    } finally {
      ended.removeEventListener('abort', onAbort);
      subscription.stop();
    }
  });

  /**
   * What happened to the link, newest first: linked, relinked, refreshed,
   * refresh_failed, needs_reauth, token_served (one row per hour with its
   * count), unlinked. Kept after an unlink, until the retention passes.
   */
  app.get('/users/:userId/links/:provider/events', async (c) => {
    const { userId, provider } = parseInput(LinkParams, c.req.param());
    const { cursor, limit } = parseInput(LinkEventsQuery, { cursor: c.req.query('cursor'), limit: c.req.query('limit') });
    await tenantProvider(c, provider);
    // This instance's counts are current; another instance's arrive within its flush interval (5 s).
    await deps.tokensServed?.flush();
    return c.json(await listLinkEvents(deps.db, { tenant: c.get('tenant'), userId, provider }, { limit, ...(cursor ? { cursor } : {}) }));
  });

  app.post('/users/:userId/links/:provider/token', async (c) => {
    const { userId, provider } = parseInput(LinkParams, c.req.param());
    await tenantProvider(c, provider);
    const key = { tenant: c.get('tenant'), userId, provider };
    return orRelink(c, userId, provider, async () => c.json(await deps.tokens.token(key)));
  });

  /**
   * ATProto's tokens are bound to a key that never leaves the gateway, so a
   * bot calls the user's PDS through here instead: the query (GET) or JSON
   * body (POST) goes upstream as it is, and the answer comes back as it is.
   */
  app.on(['GET', 'POST'], '/users/:userId/links/:provider/xrpc/:nsid', async (c) => {
    const { userId, provider, nsid } = parseInput(XrpcParams, c.req.param());
    await tenantProvider(c, provider);
    const url = new URL(c.req.url);
    parseInput(UpstreamQuery, [...url.searchParams]);
    const method = c.req.method === 'POST' ? 'POST' : 'GET';
    const body = method === 'POST' ? parseInput(XrpcBody, await readJsonBody(c)) : undefined;
    const key = { tenant: c.get('tenant'), userId, provider };
    return orRelink(c, userId, provider, async () => {
      const result = await deps.tokens.xrpc(key, { method, nsid, query: url.searchParams, ...(body === undefined ? {} : { body: body as Json }) });
      // The body is the upstream server's: nothing in it may run if a browser ever shows it.
      return c.body(result.body as Uint8Array<ArrayBuffer>, result.status as 200, {
        'content-type': passedContentType(result.contentType),
        'content-security-policy': "default-src 'none'; sandbox",
      });
    });
  });

  /**
   * The provider's own API with the user's credentials, for the calls the
   * operator allows (`<ID>_PROXY_ALLOW`, src/core/proxy.ts; nothing by
   * default): refused before any upstream request otherwise. The bot never
   * holds the token; the upstream status and body come back as they are
   * (`Retry-After` too), at most 1 MiB.
   */
  app.on([...PROXY_METHODS], '/users/:userId/links/:provider/proxy/*', async (c) => {
    const { userId, provider } = parseInput(LinkParams, { userId: c.req.param('userId'), provider: c.req.param('provider') });
    const known = await tenantProvider(c, provider);
    if (!known.instance) throw unconfigured(known);
    const url = new URL(c.req.url);
    const marker = `/links/${provider}/proxy/`;
    const rawPath = url.pathname.slice(url.pathname.indexOf(marker) + marker.length);
    const method = c.req.method as ApiCall['method'];
    const key = { tenant: c.get('tenant'), userId, provider };
    // Checked before the body is read: a refused call costs nothing more.
    const request = { method, rawPath, query: url.searchParams, headers: { 'content-type': c.req.header('content-type'), accept: c.req.header('accept') } };
    checkProxyCall(known, request);
    const body = method === 'GET' || method === 'DELETE' ? undefined : new Uint8Array(await c.req.arrayBuffer());
    return orRelink(c, userId, provider, async () => {
      const answer = await callProvider(deps.tokens, known, key, { ...request, body });
      return c.body(answer.body as Uint8Array<ArrayBuffer>, answer.status as 200, {
        'content-type': answer.contentType,
        'content-security-policy': "default-src 'none'; sandbox",
        ...(answer.retryAfter ? { 'retry-after': answer.retryAfter } : {}),
      });
    });
  });

  /**
   * Links from JSON lines (or a sealed export with its passphrase), each
   * line validated and answered on its own: created, updated, unchanged or
   * invalid with the reason. Importing the same lines again changes nothing.
   */
  app.post('/links:import', async (c) => importRoute(c, c.get('tenant')));

  /** The webhook delivery log, newest first. */
  app.get('/webhooks/deliveries', async (c) => {
    const { status, limit } = parseInput(DeliveriesQuery, { status: c.req.query('status'), limit: c.req.query('limit') });
    const rows = await listDeliveries(deps.db, { tenant: c.get('tenant'), ...(status ? { status } : {}), limit });
    return c.json({ deliveries: rows.map(toApiDelivery) });
  });

  /** Sends a delivery again as soon as a worker is free (a dead one gets a fresh set of attempts). */
  app.post('/webhooks/deliveries/:id/retry', async (c) => {
    const { id } = parseInput(DeliveryParams, c.req.param());
    const row = await retryDelivery(deps.db, c.get('tenant'), id, new Date(deps.now()));
    if (!row) throw new LinkgateError('not_found', 'there is no undelivered delivery with this id');
    return c.json(toApiDelivery(row), 202);
  });

  app.delete('/users/:userId/links/:provider', async (c) => {
    const { userId, provider } = parseInput(LinkParams, c.req.param());
    const known = await tenantProvider(c, provider);
    const deleted = await unlink(deps, { tenant: c.get('tenant'), userId, provider }, c.get('log')(), 'api');
    if (!deleted) throw new LinkgateError('not_linked', `this user has not linked ${known.displayName}`, { provider });
    // What the provider said, for a bot that tells its user (`revoked`, `not_supported`, `failed`, `provider_unavailable`).
    return c.body(null, 204, { 'Linkgate-Revocation': deleted.revocation });
  });

  return app;
}
