/**
 * The web-session API (seed 002; docs/sign-in.md#the-web-session-api): for an
 * app served behind the same reverse proxy as the gateway, a sign-in that
 * ends in a cookie session instead of an ID token.
 *
 * `GET /api/auth/:provider/start` checks `postLoginRedirect` against the
 * tenant's allowlist (the redirect URIs of its apps) before any provider is
 * contacted, then opens a sign-in flow bound to this browser (the linking
 * core's `startWebSignIn`). The provider's callback (src/http/oauth.tsx)
 * hands the finished flow to `finish`, which stores the session
 * (src/core/web-sessions.ts), sets its cookie and says where to go.
 * `GET /api/auth/session` reads it; `POST /api/auth/logout` ends it.
 */
import { Hono, type Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import * as v from 'valibot';
import { randomToken } from '../core/crypto.ts';
import { LinkgateError } from '../core/errors.ts';
import { DEFAULT_TENANT, ProviderId } from '../core/ids.ts';
import type { Linking, Outcome } from '../core/linking.ts';
import type { LinkStore } from '../core/links.ts';
import type { OpenIdApps } from '../core/openid-storage.ts';
import { TenantId, type TenantStore } from '../core/tenants.ts';
import { parseInput } from '../core/validation.ts';
import type { WebSession, WebSessions } from '../core/web-sessions.ts';
import type { AppEnv } from './middleware.ts';
import { readBrowserCookie, setBrowserCookie } from './oauth.tsx';

/**
 * The session cookie. Over https `__Host-linkgate_session`: Secure, `Path=/`,
 * no `Domain`, so no sibling subdomain can set or shadow it (RFC 6265bis
 * §4.1.3.2). Over plain http (loopback development) the prefix is not
 * allowed and it keeps its bare name.
 */
export const SESSION_COOKIE = 'linkgate_session';

export interface WebSessionRoutesDeps {
  linking: Linking;
  apps: OpenIdApps;
  tenants: TenantStore;
  links: LinkStore;
  sessions: WebSessions;
  publicBaseUrl: URL;
  secureCookies: boolean;
  stateTtlSeconds: number;
}

export const StartParams = v.object({ provider: v.pipe(ProviderId, v.description('a provider the tenant offers (discord, corp, …)')) });
export const StartQuery = v.object({
  postLoginRedirect: v.pipe(
    v.string('postLoginRedirect is required'),
    v.maxLength(2048, 'postLoginRedirect is too long'),
    v.check((url) => URL.canParse(url), 'postLoginRedirect must be an absolute URL'),
    v.description('where the browser goes once signed in: exactly a redirect URI of one of the tenant\'s first-party apps'),
  ),
  mode: v.optional(v.picklist(['json', 'redirect'], 'mode must be "json" or "redirect"'), 'json'),
  tenantId: v.optional(v.pipe(TenantId, v.description('the tenant (else x-tenant-id, else the current session\'s, else default)'))),
});
/** The tenant a request may name by header (it must agree with `tenantId`). */
export const TenantHeaders = v.object({ 'x-tenant-id': v.optional(v.pipe(TenantId, v.description('the tenant; must agree with tenantId when both are given'))) });
export const SessionQuery = v.object({ tenantId: v.optional(v.pipe(TenantId, v.description('the tenant the app expects: a session of another tenant answers 401'))) });

/** What `GET /api/auth/:provider/start` answers in JSON mode. */
export const StartAnswer = v.strictObject({ authorizationUrl: v.pipe(v.string(), v.url()), state: v.string() });

/** What `GET /api/auth/session` answers. */
export const SessionAnswer = v.strictObject({
  tenant: v.string(),
  user: v.strictObject({ id: v.string() }),
  identity: v.strictObject({ provider: v.string(), externalId: v.string(), name: v.nullable(v.string()) }),
  createdAt: v.string(),
  expiresAt: v.string(),
});

const noSession = () => new LinkgateError('not_signed_in', 'not signed in: no session, or it ended');

export function webSessionRoutes(deps: WebSessionRoutesDeps) {
  const { sessions } = deps;
  const ownOrigin = deps.publicBaseUrl.origin;

  const readToken = (c: Context<AppEnv>) => getCookie(c, SESSION_COOKIE, deps.secureCookies ? 'host' : undefined);
  const cookieOptions = () => (deps.secureCookies ? { prefix: 'host' as const, secure: true } : {});

  /** The tenant a request names: the `x-tenant-id` header or the `tenantId` query (which must agree), else undefined. */
  function namedTenant(c: Context<AppEnv>, query: string | undefined): string | undefined {
    const header = parseInput(TenantHeaders.entries['x-tenant-id'], c.req.header('x-tenant-id'));
    if (header !== undefined && query !== undefined && header !== query) throw new LinkgateError('bad_request', 'the x-tenant-id header and the tenantId query name different tenants');
    return header ?? query;
  }

  /** The live session of this browser, if any. */
  const currentSession = (c: Context<AppEnv>): Promise<WebSession | undefined> => sessions.find(readToken(c));

  /**
   * The allowlist: `postLoginRedirect` must be, character for character, a
   * redirect URI of one of the tenant's first-party apps that offers this
   * provider (exact matching, as for OAuth redirect URIs: RFC 9700 §4.1.3).
   * A third-party app signs people in through the OpenID Provider, with
   * consent; a session of the gateway's own is not its to start.
   */
  async function allowed(tenant: string, provider: string, postLoginRedirect: string): Promise<boolean> {
    const apps = await deps.apps.list(tenant);
    return apps.some((app) => app.firstParty && app.redirectUris.includes(postLoginRedirect) && (app.providers === null || app.providers.includes(provider)));
  }

  /**
   * A POST that changes the session must come from the gateway's own pages or
   * from the tenant's apps: Fetch Metadata says `same-origin`, or the Origin
   * is ours or an app's. A request with neither header is not a browser's
   * (or one too old to send them), as Go's net/http CrossOriginProtection
   * also assumes; it carries no ambient cookie an attacker could borrow.
   */
  async function checkOrigin(c: Context<AppEnv>, tenant: string | undefined): Promise<void> {
    const site = c.req.header('sec-fetch-site');
    const origin = c.req.header('origin');
    if (site === 'same-origin' || site === 'none') return;
    if (site === undefined && origin === undefined) return;
    if (origin !== undefined && origin !== 'null') {
      if (origin === ownOrigin) return;
      const apps = tenant ? await deps.apps.list(tenant) : [];
      if (apps.some((app) => app.firstParty && app.redirectUris.some((uri) => URL.canParse(uri) && new URL(uri).origin === origin))) return;
    }
    throw new LinkgateError('csrf_failed', 'this request came from another site', { status: 403 });
  }

  const app = new Hono<AppEnv>();

  app.get('/:provider/start', async (c) => {
    const provider = parseInput(StartParams.entries.provider, c.req.param('provider'));
    const query = parseInput(StartQuery, { postLoginRedirect: c.req.query('postLoginRedirect'), mode: c.req.query('mode'), tenantId: c.req.query('tenantId') });
    const tenant = namedTenant(c, query.tenantId) ?? (await currentSession(c))?.tenant ?? DEFAULT_TENANT;
    await deps.tenants.require(tenant);
    // Before any provider is contacted: a sign-in that would end somewhere else does not start.
    if (!(await allowed(tenant, provider, query.postLoginRedirect))) {
      throw new LinkgateError('redirect_not_allowed', 'postLoginRedirect is not a redirect URI of this tenant\'s apps (for this provider)', { provider });
    }
    // The flow is bound to this browser: the callback must come back to the browser that started it.
    const browser = readBrowserCookie(c, deps.secureCookies) ?? randomToken(32);
    const started = await deps.linking.startWebSignIn(tenant, provider, browser, query.postLoginRedirect);
    setBrowserCookie(c, browser, deps);
    const authorizationUrl =
      started.kind === 'redirect' ? started.url : new URL(`/oauth/${provider}/continue?state=${encodeURIComponent(started.state)}`, deps.publicBaseUrl);
    if (query.mode === 'redirect') return c.redirect(authorizationUrl.href, 302);
    return c.json({ authorizationUrl: authorizationUrl.href, state: started.state } satisfies v.InferOutput<typeof StartAnswer>);
  });

  app.get('/session', async (c) => {
    const session = await currentSession(c);
    const named = namedTenant(c, parseInput(SessionQuery, { tenantId: c.req.query('tenantId') }).tenantId);
    // One tenant's session is not another's.
    if (!session || (named !== undefined && named !== session.tenant)) throw noSession();
    const link = await deps.links.get({ tenant: session.tenant, userId: session.userId, provider: session.provider });
    if (!link || link.externalId !== session.externalId) {
      // Unlinked (or linked to another account) since: the sign-in ends with it, as the OpenID Provider's refresh tokens do.
      await sessions.revoke(readToken(c));
      throw noSession();
    }
    return c.json({
      tenant: session.tenant,
      user: { id: session.userId },
      identity: { provider: session.provider, externalId: session.externalId, name: link.externalName },
      createdAt: session.createdAt.toISOString(),
      expiresAt: session.expiresAt.toISOString(),
    } satisfies v.InferOutput<typeof SessionAnswer>);
  });

  app.post('/logout', async (c) => {
    const token = readToken(c);
    const session = await sessions.find(token);
    await checkOrigin(c, session?.tenant);
    await sessions.revoke(token);
    deleteCookie(c, SESSION_COOKIE, { path: '/', ...cookieOptions() });
    return c.body(null, 204);
  });

  return {
    routes: app,

    /**
     * A web-session sign-in ended with the person known: their session is
     * stored and its cookie set on this answer (the callback's redirect, or
     * the wait page's poll). Where the browser goes next: `postLoginRedirect`,
     * checked again, since the app may have been deleted while the person was
     * at the provider.
     */
    async finish(c: Context<AppEnv>, outcome: Extract<Outcome, { kind: 'web_signed_in' }>): Promise<URL> {
      if (!(await allowed(outcome.tenant, outcome.provider.id, outcome.postLoginRedirect))) {
        throw new LinkgateError('redirect_not_allowed', 'postLoginRedirect is no longer a redirect URI of this tenant\'s apps', { provider: outcome.provider.id });
      }
      // A browser signing in again leaves its old session behind: it ends here.
      await sessions.revoke(readToken(c));
      const { token, session } = await sessions.create({
        tenant: outcome.tenant,
        userId: outcome.userId,
        provider: outcome.provider.id,
        externalId: outcome.externalId,
        notAfter: outcome.credentialsExpireAt,
      });
      setCookie(c, SESSION_COOKIE, token, {
        httpOnly: true,
        // Sent on top-level navigations from the app's pages (and back from the provider), not on cross-site POSTs.
        sameSite: 'Lax',
        path: '/',
        expires: session.expiresAt,
        ...cookieOptions(),
      });
      return new URL(outcome.postLoginRedirect);
    },
  };
}

export type WebSessionApi = ReturnType<typeof webSessionRoutes>;
