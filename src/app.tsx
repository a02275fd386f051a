/** @jsxRuntime automatic @jsxImportSource hono/jsx */
import { Hono, type Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { Logger } from 'pino';
import type { Brand, Config } from './config.ts';
import { createApiKeyCheck, createUserIdHasher, type Keyring } from './core/crypto.ts';
import { isLinkgateError, LinkgateError } from './core/errors.ts';
import { createEventChannel, createLinkEvents } from './core/events.ts';
import { createLoginSessions } from './core/logins.ts';
import { createOpenIdApps, createSigningKeys } from './core/openid-storage.ts';
import { createFlowStore } from './core/flows.ts';
import { createLinking } from './core/linking.ts';
import { jwtContextFormat } from './core/link-context.ts';
import { annieMeiContextFormat } from './compat/annie-mei/context.ts';
import { createLinkStore } from './core/links.ts';
import { createTokenServedCounter } from './core/link-events.ts';
import { createMetrics, type Metrics } from './core/metrics.ts';
import { createRateLimiter } from './core/rate-limit.ts';
import { createTokenService } from './core/tokens.ts';
import { providerStepBudgetMs } from './core/tools.ts';
import type { Database } from './db/client.ts';
import { databaseFailure, logCause } from './db/errors.ts';
import { adminRoutes } from './http/admin.ts';
import { apiRoutes } from './http/api.ts';
import { mcpRoutes } from './http/mcp.ts';
import { homeRoutes } from './http/home.tsx';
import { healthRoutes } from './http/health.ts';
import { answerHeaders, apiKeyAuth, pageHeaders, requestMetrics, requestScope, traceRoute, type ApiKeys, type AppEnv } from './http/middleware.ts';
import { oauthRoutes } from './http/oauth.tsx';
import type { RequestHandler } from './http/listener.ts';
import { statusPath } from './http/status-path.ts';
import { createOpenIdProviders } from './http/openid-provider.tsx';
import { webSessionRoutes } from './http/web-session.ts';
import { CONSOLE_SESSION, consoleRoutes, type Console } from './http/console/index.tsx';
import { accountRoutes, ACCOUNT_SESSION } from './http/account.tsx';
import { createWebSessions } from './core/web-sessions.ts';
import { DEFAULT_TENANT } from './core/ids.ts';
import { describeError, MessagePage } from './http/pages.tsx';
import { clientAddress, countRequest, rateLimit } from './http/rate-limit.ts';
import type { Registry, ToolsFor } from './registry.ts';
import { createProviderDirectory } from './core/tenant-providers.ts';
import { createTenantStore, type TenantStore } from './core/tenants.ts';
import { providerToolsFactory } from './core/tools.ts';
import type { RpcDeps } from './rpc/routes.ts';

export interface AppDeps {
  config: Config;
  database: Database;
  keyring: Keyring;
  registry: Registry;
  logger: Logger;
  now?: () => number;
  /** Unexpected errors go here too (Sentry in production). */
  reportError?: (error: unknown) => void;
  /** Names each request's trace after its route pattern (Sentry in production). */
  nameRoute?: (name: string) => void;
  /** Shared with the webhook worker so /metrics shows its deliveries too. */
  metrics?: Metrics;
  /** Aborted when the process starts shutting down: long polls answer at once instead of holding it open. */
  stopping?: AbortSignal;
  /** The tenants (made here from the configuration when not given). */
  tenants?: TenantStore;
  /** Makes tenants' provider instances; the registry's own tools when given (tests reroute their fetch). */
  toolsFor?: ToolsFor;
  /** How often an RPC wait (WaitForLink) sends a heartbeat; 15 s. */
  rpcHeartbeatMs?: number;
}

/** The link-context formats bots may sign links with: ours (`?context=`) and the Annie Mei bot's (`?ctx=`). */
const LINK_CONTEXT_FORMATS = [jwtContextFormat, annieMeiContextFormat] as const;

/** Builds the gateway's HTTP app. No I/O happens here; tests call `app.request()`. */
export function createApp(deps: AppDeps) {
  return createGateway(deps).app;
}

/**
 * The HTTP app and the RPC services (src/rpc/), over one set of stores,
 * rate limiter and link events, so both surfaces count, wake and answer alike.
 */
export function createGateway(deps: AppDeps) {
  const { config, registry, logger } = deps;
  const now = deps.now ?? Date.now;
  const db = deps.database.db;
  const hashUserId = createUserIdHasher(config.userIdHashSalt);
  const metrics = config.metrics ? (deps.metrics ?? createMetrics()) : undefined;
  const webhookEvents = config.webhook !== undefined;
  const links = createLinkStore(db, deps.keyring, { webhookEvents });
  const tenants =
    deps.tenants ??
    createTenantStore({
      database: deps.database,
      keyring: deps.keyring,
      environment: { apiKeys: config.apiKeys, contextSigningSecret: config.contextSigningSecret, webhook: config.webhook && { url: config.webhook.url, secret: config.webhook.secret } },
      now,
    });
  const toolsFor = deps.toolsFor ?? providerToolsFactory({
      database: deps.database,
      keyring: deps.keyring,
      logger,
      publicBaseUrl: config.publicBaseUrl,
      timeoutMs: config.providerTimeoutMs,
      publicOnlyForTenants: config.nodeEnv === 'production',
    });
  const providers = createProviderDirectory({ registry, tenants, toolsFor, logger });
  /** A tenant's own branding on its pages, else the gateway's. */
  const brandOf = (tenant: string): Brand | Promise<Brand> => {
    const settings = tenants.settings(tenant);
    return settings instanceof Promise ? settings.then((found) => found.brand ?? config.brand) : (settings.brand ?? config.brand);
  };
  const events = createLinkEvents(deps.database, logger);
  const apps = createOpenIdApps(db, deps.keyring, now);
  // Sign-ins apps start over RPC (LoginService), woken across instances on their own channel.
  const loginEvents = createEventChannel(deps.database, logger, 'linkgate_logins');
  const logins = createLoginSessions({
    db,
    keyring: deps.keyring,
    apps,
    signingKeys: createSigningKeys(db, deps.keyring, now),
    events: loginEvents,
    publicBaseUrl: config.publicBaseUrl,
    logger,
    now,
    ttlSeconds: config.loginSessionTtlSeconds,
  });
  // The default tenant's is the environment's; another tenant's its setting (PATCH …/tenants/:tenant), else Discord.
  const userProviderOf = async (tenant: string) => (tenant === DEFAULT_TENANT ? config.userProvider : ((await tenants.settings(tenant)).userProvider ?? 'discord'));
  const linking = createLinking({
    db,
    ...(metrics ? { metrics } : {}),
    providers,
    flows: createFlowStore(db, deps.keyring, { claimMs: providerStepBudgetMs(config.providerTimeoutMs) }),
    links,
    events,
    logger,
    now,
    context: { secret: config.contextSigningSecret, secretsFor: (tenant) => tenants.contextSecrets(tenant), ttlSeconds: config.contextTtlSeconds, returnToOrigins: config.returnToOrigins },
    stateTtlSeconds: config.stateTtlSeconds,
    publicBaseUrl: config.publicBaseUrl,
    allowSharedAccounts: config.allowSharedAccounts,
    hashUserId,
    webhookEvents,
    userProviderOf,
    logins: logins.outcomes,
    // A console sign-in only says who the admin is: no link is stored, no token kept.
    identifyOnly: [CONSOLE_SESSION.purpose],
  });
  const openId = createOpenIdProviders({
    db,
    keyring: deps.keyring,
    tenants,
    providers,
    links,
    linking,
    publicBaseUrl: config.publicBaseUrl,
    cookieSecret: config.contextSigningSecret,
    secureCookies: config.publicBaseUrl.protocol === 'https:',
    stateTtlSeconds: config.stateTtlSeconds,
    deviceCodeTtlSeconds: config.deviceCodeTtlSeconds,
    brand: config.brand,
    brandOf,
    logger,
    now,
  });

  const app = new Hono<AppEnv>();
  app.use('*', requestScope({ logger, now, stopping: deps.stopping, headers: answerHeaders(config.publicBaseUrl.protocol === 'https:') }));
  if (deps.nameRoute) app.use('*', traceRoute(deps.nameRoute));
  // Counted in memory and shared through the database every quarter second (see core/rate-limit.ts).
  const limiter = createRateLimiter({ db, rules: config.rateLimits, secret: config.userIdHashSalt, logger, now });
  const addressOf = (c: Context<AppEnv>) => clientAddress(c, config.trustProxyHops);
  // A request without a valid key counts against its client address, under the browser limit.
  const apiKeys: ApiKeys = { check: createApiKeyCheck(config.apiKeys), countRefused: (c) => countRequest(c, limiter, 'browser', addressOf(c)) };

  if (metrics) {
    app.use('*', requestMetrics(metrics, now));
    // Protected like the API: the counts say who uses which provider how much.
    app.get('/metrics', apiKeyAuth(apiKeys), (c) => c.body(metrics.render(), 200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }));
  }

  // Every HTML page gets the page headers, the 404 page for any path included; the API and health checks answer JSON.
  const pages = pageHeaders();
  const notPage = (path: string) => path.startsWith('/api/') || path === '/mcp' || path === '/healthz' || path === '/readyz' || path === '/openapi.json' || path === '/metrics';
  app.use('*', (c, next) => (notPage(c.req.path) ? next() : pages(c, next)));
  const browserLimit = rateLimit({ limiter, scope: 'browser', keyOf: addressOf });
  app.use('/oauth/*', browserLimit);
  // The sign-in pages people's browsers load; apps' servers calling the token endpoint are not counted as browsers.
  // The device code page too: guessing codes there is what RFC 8628 §5.1 asks to limit.
  for (const path of ['/oidc/auth/*', '/oidc/interaction/*', '/oidc/device', '/t/:tenant/oidc/auth/*', '/t/:tenant/oidc/interaction/*', '/t/:tenant/oidc/device']) app.use(path, browserLimit);
  // The API reference is made on its first request: its document converts every route's schemas,
  // time and memory a gateway nobody asks for it would spend at every start for nothing.
  let docs: Promise<ReturnType<typeof import('./http/docs.tsx').docsHandlers>> | undefined;
  const docsHandlers = () =>
    (docs ??= import('./http/docs.tsx')
      .then((module) => module.docsHandlers(config.publicBaseUrl))
      .catch((error: unknown) => {
        // Tried again on the next request, not cached as a failure.
        docs = undefined;
        throw error;
      }));
  app.get('/openapi.json', async (c) => (await docsHandlers()).openapi(c, async () => {}));
  app.get('/docs', async (c) => (await docsHandlers()).docs(c, async () => {}));
  app.route('/', homeRoutes({ config, registry, databaseKind: deps.database.kind }));
  app.route('/', healthRoutes({ database: deps.database }));
  // The web-session API (seed 002): sign-ins that end in a cookie session for same-site apps.
  let adminConsole: Console | undefined;
  const webSessions = webSessionRoutes({
    linking,
    apps: openId.apps,
    tenants,
    links,
    sessions: createWebSessions(db, { purpose: 'web', ...config.webSession, now }),
    publicBaseUrl: config.publicBaseUrl,
    secureCookies: config.publicBaseUrl.protocol === 'https:',
    stateTtlSeconds: config.stateTtlSeconds,
  });
  app.use('/api/auth/*', browserLimit);
  app.route('/api/auth', webSessions.routes);
  // The account page (issue #21): a person's own links, per tenant, behind a sign-in with the tenant's user provider.
  const account = accountRoutes({
    linking,
    links,
    providers,
    tenants,
    sessions: createWebSessions(db, { ...ACCOUNT_SESSION, now }),
    userProviderOf,
    brandOf,
    publicBaseUrl: config.publicBaseUrl,
    secureCookies: config.publicBaseUrl.protocol === 'https:',
    stateTtlSeconds: config.stateTtlSeconds,
    contextTtlSeconds: config.contextTtlSeconds,
    hashUserId,
    now,
    metrics,
  });
  // ('/me/*' matches '/me' too.)
  for (const path of ['/me/*', '/t/:tenant/me/*']) app.use(path, browserLimit);
  app.route('/', account.routes);
  app.route(
    '/oauth',
    oauthRoutes({
      linking,
      formats: LINK_CONTEXT_FORMATS,
      registry,
      stateTtlSeconds: config.stateTtlSeconds,
      secureCookies: config.publicBaseUrl.protocol === 'https:',
      brand: config.brand,
      brandOf,
      finishSignIn: openId.finishSignIn,
      // Each kind of cookie session is started by its own module.
      finishWebSession: (c, outcome) => {
        if (outcome.purpose === ACCOUNT_SESSION.purpose) return account.finish(c, outcome);
        if (outcome.purpose === CONSOLE_SESSION.purpose) {
          // A console sign-in that ends after LINKGATE_ADMINS was emptied (and the gateway restarted) ends nowhere.
          if (!adminConsole) throw new LinkgateError('not_found', 'the admin console is closed');
          return adminConsole.finish(c, outcome);
        }
        return webSessions.finish(c, outcome);
      },
    }),
  );
  // Each tenant's OpenID Provider: /.well-known/openid-configuration and /oidc/… (default), /t/:tenant/… (others).
  app.route('/', openId.routes());
  // Tokens served, counted per link and hour in memory and written every few seconds, never in the request.
  const tokensServed = createTokenServedCounter({ db, logger, now });
  const tokens = createTokenService({
    tokenServed: tokensServed.served,
    database: deps.database,
    ...(metrics ? { metrics } : {}),
    webhookEvents,
    keyring: deps.keyring,
    providers,
    logger,
    now,
    refreshMarginSeconds: config.refreshMarginSeconds,
    refreshLeaseMs: providerStepBudgetMs(config.providerTimeoutMs),
    hashUserId,
  });
  app.route(
    '/api/v1',
    apiRoutes({
      providers,
      tenants,
      db,
      links,
      events,
      tokens,
      apiKeys,
      now,
      publicBaseUrl: config.publicBaseUrl,
      contextTtlSeconds: config.contextTtlSeconds,
      returnToOrigins: config.returnToOrigins,
      hashUserId,
      limiter,
      allowSharedAccounts: config.allowSharedAccounts,
      stopping: deps.stopping,
      metrics,
      cancelledSince: linking.cancelledSince,
      tokensServed,
    }),
  );

  // The same questions as MCP tools, for agents (src/http/mcp.ts), behind the same gate.
  app.route('/mcp', mcpRoutes({ providers, tenants, links, tokens, apiKeys, limiter, now, publicBaseUrl: config.publicBaseUrl, contextTtlSeconds: config.contextTtlSeconds }));

  app.route(
    '/api/admin/v1',
    adminRoutes({
      adminKeys: config.adminKeys,
      tenants,
      providers,
      links,
      db,
      publicBaseUrl: config.publicBaseUrl,
      production: config.nodeEnv === 'production',
      hashUserId,
      countRefused: apiKeys.countRefused,
      addressOf,
      logger,
      allowSharedAccounts: config.allowSharedAccounts,
      now,
      apps: openId.apps,
      signingKeys: openId.signingKeys,
      consoleOpen: config.admins.length > 0,
      metrics,
    }),
  );

  // The admin console (LINKGATE_ADMINS): without an admin it is not mounted, so every /admin URL is the 404 below.
  if (config.admins.length > 0) {
    adminConsole = consoleRoutes({
      admins: config.admins,
      db,
      tenants,
      providers,
      links,
      apps: openId.apps,
      tokens,
      linking,
      publicBaseUrl: config.publicBaseUrl,
      production: config.nodeEnv === 'production',
      secureCookies: config.publicBaseUrl.protocol === 'https:',
      stateTtlSeconds: config.stateTtlSeconds,
      contextTtlSeconds: config.contextTtlSeconds,
      hashUserId,
      addressOf,
      brand: config.brand,
      logger,
      metrics,
      now,
    });
    app.use('/admin', browserLimit);
    app.use('/admin/*', browserLimit);
    app.route('/admin', adminConsole.routes);
  }

  const wantsJson = (path: string) => path.startsWith('/api/') || path === '/mcp' || path.endsWith('/poll') || path === '/healthz' || path === '/readyz';

  app.notFound((c) => {
    if (wantsJson(c.req.path)) return c.json({ error: { code: 'not_found', message: 'no such route' } }, 404);
    const { title, lines } = describeError('not_found', undefined);
    return c.html(<MessagePage frame={{ nonce: c.get('secureHeadersNonce') ?? '', brand: config.brand }} title={title} lines={lines} code="not_found" />, 404);
  });

  app.onError((error, c) => {
    const log = c.get('log')?.() ?? logger;
    let failure: LinkgateError;
    const database = databaseFailure(error);
    if (database?.unavailable) {
      failure = new LinkgateError('database_unavailable', 'the database is not answering; try again shortly', { cause: database.summary });
    } else if (isLinkgateError(error)) {
      failure = error;
      // A 500 of ours (stored data that does not open: a missing or wrong key) is for the operator, like any fault.
      if (failure.status === 500) deps.reportError?.(error);
    } else if (error instanceof HTTPException && error.status < 500) {
      failure = new LinkgateError('bad_request', 'the request could not be read', { status: error.status, cause: error });
    } else {
      failure = new LinkgateError('internal_error', 'internal error', { cause: database?.summary ?? error });
      deps.reportError?.(database ? new Error(`database: ${database.summary.code ?? database.summary.name}`) : error);
    }
    const { code } = failure;
    const fields = {
      errorCode: code,
      status: failure.status,
      // Safe by LinkgateError's contract (no token, code, state or user id); says which claim or field was bad.
      message: failure.message,
      provider: failure.provider,
      cause: failure.cause === undefined ? undefined : failure.cause instanceof Error ? logCause(failure.cause) : failure.cause,
    };
    if (failure.status >= 500) log.error(fields, 'request failed');
    else log.info(fields, 'request refused');

    if (wantsJson(c.req.path)) {
      return c.json({ error: { code, message: failure.message } }, failure.status as 400);
    }
    const providerName = failure.provider ? registry.get(failure.provider)?.displayName : undefined;
    const { title, lines } = describeError(code, providerName, c.get('nextStep'), failure.retryAfterSeconds);
    return c.html(<MessagePage frame={{ nonce: c.get('secureHeadersNonce') ?? '', brand: config.brand }} title={title} lines={lines} code={code} />, failure.status as 400);
  });

  // What the RPC services are made of: src/rpc/serve.ts makes them on the first RPC request.
  const rpc: RpcDeps = {
    providers,
    tenants,
    links,
    events,
    tokens,
    now,
    publicBaseUrl: config.publicBaseUrl,
    contextTtlSeconds: config.contextTtlSeconds,
    returnToOrigins: config.returnToOrigins,
    hashUserId,
    logger,
    stopping: deps.stopping,
    metrics,
    cancelledSince: linking.cancelledSince,
    limiter,
    trustProxyHops: config.trustProxyHops,
    reportError: deps.reportError,
    ...(deps.rpcHeartbeatMs ? { heartbeatMs: deps.rpcHeartbeatMs } : {}),
    login: { linking, logins, apps, stateTtlSeconds: config.stateTtlSeconds },
    answerHeaders: answerHeaders(config.publicBaseUrl.protocol === 'https:'),
  };

  /** The port's request handler around `route` (Hono's): the status API's plain request answered beside it (src/http/status-path.ts). */
  const serveStatus = (route: RequestHandler) =>
    statusPath(
      {
        tenants,
        providers,
        links,
        limiter,
        logger,
        now,
        publicBaseUrl: config.publicBaseUrl,
        contextTtlSeconds: config.contextTtlSeconds,
        headers: answerHeaders(config.publicBaseUrl.protocol === 'https:'),
        metrics,
        nameRoute: deps.nameRoute,
        stopping: deps.stopping,
      },
      route,
    );

  return { app, rpc, events, limiter, tokensServed, tokens, logins, serveStatus };
}

export type App = ReturnType<typeof createApp>;
