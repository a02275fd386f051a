/**
 * A real OpenID Provider (panva's `oidc-provider` v9) running in-process on 127.0.0.1,
 * for tests that need a genuine authorization-code + PKCE + refresh + revocation peer.
 *
 * - Issuer `http://127.0.0.1:<random port>`, discovery at `/.well-known/openid-configuration`.
 * - One confidential client (`client_secret_basic`), grant types authorization_code + refresh_token;
 *   a refresh token is issued on every code exchange (no `offline_access` needed).
 * - PKCE (S256) is required for every authorization request; `nonce` and RFC 9207 `iss` supported.
 * - The provider itself is the demo's (src/demo/openid-provider.ts); this file adds the test driver.
 * - No browser: `login()` / `deny()` walk the authorization redirects with a per-call cookie jar and
 *   answer our own tiny interaction endpoints (`/interaction/:uid[/login|/confirm|/abort]`).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

import type Provider from 'oidc-provider';
import type { InteractionDetails, KoaContextLike } from 'oidc-provider';
import {
  abortInteraction,
  createLocalOpenIdProvider,
  finishConsent,
  finishLogin,
  INTERACTION_PREFIX,
  readForm,
} from '../../src/demo/openid-provider.ts';
import { listenLocal } from './http.ts';

export interface TestIdp {
  issuer: string; // e.g. http://127.0.0.1:<port>
  clientId: string;
  clientSecret: string;
  counts: { token: number; tokenByGrant: Record<string, number>; userinfo: number; revocation: number }; // incremented per HTTP request received on those endpoints
  /** Drives the IdP's login + consent without a browser, as user `sub`: fetch the authorization URL, follow the interaction redirects, submit login and consent, and return the final redirect URL to the client's redirect_uri (with code, state, iss) WITHOUT calling it. Keep cookies per call. */
  login(authorizationUrl: string | URL, sub: string): Promise<URL>;
  /** Same but the user cancels/denies: returns the redirect URL carrying error=access_denied. */
  deny(authorizationUrl: string | URL): Promise<URL>;
  /** Whether a refresh_token grant answers with a new id_token (oidc-provider's default, true); OIDC Core §12.2 lets an IdP leave it out. */
  idTokenOnRefresh: boolean;
  close(): Promise<void>;
}

export interface StartTestIdpOptions {
  redirectUris: string[];
  clientId?: string;
  clientSecret?: string;
  accessTokenTtlSeconds?: number;
  claims?: (sub: string) => Record<string, unknown>;
  /** How the client must authenticate at the token endpoint (default `client_secret_basic`). */
  tokenEndpointAuthMethod?: 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';
  /** The client's public keys, for `private_key_jwt`. */
  clientJwks?: { keys: Array<Record<string, unknown>> };
  /** What the IdP accepts and lists in `token_endpoint_auth_methods_supported` (default: all five of oidc-provider). */
  clientAuthMethods?: string[];
  /** false: no revocation endpoint (none in discovery). */
  revocation?: boolean;
  /**
   * Compare a secret sent in a Basic header as it is, without the form
   * decoding RFC 6749 §2.3.1 asks for, as some providers do (glewlwyd 2.7):
   * a secret with characters the form encoding changes never matches.
   */
  undecodedBasicSecrets?: boolean;
}

const MAX_HOPS = 20;

function defaultClaims(sub: string): Record<string, unknown> {
  return { name: `Test User ${sub}`, preferred_username: sub, email: `${sub}@example.test` };
}

// ---------------------------------------------------------------------------------------------
// A tiny cookie jar for the headless user agent (one per login()/deny() call).
// ---------------------------------------------------------------------------------------------

class CookieJar {
  readonly #cookies = new Map<string, { name: string; value: string; path: string }>();

  store(requestUrl: URL, setCookieHeaders: string[]): void {
    for (const header of setCookieHeaders) {
      const [pair = '', ...attributes] = header.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = defaultCookiePath(requestUrl.pathname);
      let expired = value === '';
      for (const attribute of attributes) {
        const [rawKey = '', ...rest] = attribute.split('=');
        const attrKey = rawKey.trim().toLowerCase();
        const attrValue = rest.join('=').trim();
        if (attrKey === 'path' && attrValue.startsWith('/')) path = attrValue;
        else if (attrKey === 'max-age' && Number(attrValue) <= 0) expired = true;
        else if (attrKey === 'expires' && Date.parse(attrValue) <= Date.now()) expired = true;
      }
      const id = `${name}\u0000${path}`;
      if (expired) this.#cookies.delete(id);
      else this.#cookies.set(id, { name, value, path });
    }
  }

  headerFor(url: URL): string | undefined {
    const matching = [...this.#cookies.values()]
      .filter(({ path }) => pathMatches(url.pathname, path))
      .sort((a, b) => b.path.length - a.path.length); // RFC 6265: longer paths first
    return matching.length ? matching.map(({ name, value }) => `${name}=${value}`).join('; ') : undefined;
  }
}

function defaultCookiePath(requestPath: string): string {
  const lastSlash = requestPath.lastIndexOf('/');
  return lastSlash <= 0 ? '/' : requestPath.slice(0, lastSlash);
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

// ---------------------------------------------------------------------------------------------
// Interaction endpoints (our stand-in for a login/consent UI).
// ---------------------------------------------------------------------------------------------

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}

async function handleInteraction(
  provider: Provider,
  req: IncomingMessage,
  res: ServerResponse,
  pathname: string,
): Promise<void> {
  const [uid, action, ...extra] = pathname.slice(INTERACTION_PREFIX.length).split('/');
  if (!uid || extra.length) return sendJson(res, 404, { error: 'not_found' });

  let details: InteractionDetails;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    return sendJson(res, 400, { error: 'invalid_interaction', error_description: (err as Error).message });
  }
  if (details.uid !== uid) {
    return sendJson(res, 400, { error: 'invalid_interaction', error_description: 'interaction uid mismatch' });
  }

  if (action === undefined) {
    if (req.method !== 'GET') return sendJson(res, 405, { error: 'method_not_allowed' });
    // What a login/consent page would render, as JSON for the headless driver.
    return sendJson(res, 200, {
      uid: details.uid,
      prompt: details.prompt,
      params: details.params,
      accountId: details.session?.accountId,
    });
  }

  if (req.method !== 'POST') return sendJson(res, 405, { error: 'method_not_allowed' });
  const form = await readForm(req);

  switch (action) {
    case 'login': {
      if (details.prompt.name !== 'login') {
        return sendJson(res, 400, { error: 'invalid_interaction', error_description: `prompt is ${details.prompt.name}` });
      }
      const sub = form.get('sub');
      if (!sub) return sendJson(res, 400, { error: 'invalid_request', error_description: 'sub is required' });
      return finishLogin(provider, req, res, sub);
    }
    case 'confirm': {
      if (details.prompt.name !== 'consent') {
        return sendJson(res, 400, { error: 'invalid_interaction', error_description: `prompt is ${details.prompt.name}` });
      }
      if (!(await finishConsent(provider, req, res, details))) {
        return sendJson(res, 400, { error: 'invalid_interaction', error_description: 'no session or client' });
      }
      return;
    }
    case 'abort':
      return abortInteraction(provider, req, res);
    default:
      return sendJson(res, 404, { error: 'not_found' });
  }
}

// ---------------------------------------------------------------------------------------------

export async function startTestIdp(opts: StartTestIdpOptions): Promise<TestIdp> {
  const clientId = opts.clientId ?? 'linkgate-test-client';
  const clientSecret = opts.clientSecret ?? randomBytes(24).toString('base64url');
  const claimsFor = opts.claims ?? defaultClaims;
  const redirectUris = opts.redirectUris.map((u) => new URL(u));

  const local = await listenLocal();
  const { server, origin: issuer } = local;

  const provider = await createLocalOpenIdProvider({
    issuer,
    clientId,
    clientSecret,
    redirectUris: opts.redirectUris,
    claims: claimsFor,
    accessTokenTtlSeconds: opts.accessTokenTtlSeconds ?? 3600,
    ...(opts.tokenEndpointAuthMethod ? { tokenEndpointAuthMethod: opts.tokenEndpointAuthMethod } : {}),
    ...(opts.clientJwks ? { clientJwks: opts.clientJwks } : {}),
    ...(opts.clientAuthMethods ? { clientAuthMethods: opts.clientAuthMethods } : {}),
    ...(opts.revocation === false ? { revocation: false } : {}),
    renderError: (ctx, out) => {
      ctx.type = 'application/json';
      ctx.body = JSON.stringify(out);
    },
  });

  provider.on('server_error', (_ctx: KoaContextLike, err: Error) => {
    console.error('[test-idp] oidc-provider server_error:', err);
  });

  const counts: TestIdp['counts'] = { token: 0, tokenByGrant: {}, userinfo: 0, revocation: 0 };
  const tokenPath = provider.pathFor('token');
  const userinfoPath = provider.pathFor('userinfo');
  const revocationPath = opts.revocation === false ? undefined : provider.pathFor('revocation');

  // oidc-provider takes a secret by Basic or in the body whichever the client is registered for;
  // a provider that lists only client_secret_post refuses a Basic header (RFC 6749 §5.2 invalid_client).
  const refuseBasic = opts.clientAuthMethods !== undefined && !opts.clientAuthMethods.includes('client_secret_basic');
  if (refuseBasic || opts.undecodedBasicSecrets) {
    provider.use(async (ctx, next) => {
      const basic = /^Basic (.+)$/i.exec(String(ctx.headers.authorization ?? ''))?.[1];
      if ((ctx.path !== tokenPath && ctx.path !== revocationPath) || basic === undefined) return next();
      const decoded = Buffer.from(basic, 'base64').toString('utf8');
      const refused = refuseBasic || decoded.slice(decoded.indexOf(':') + 1) !== clientSecret;
      if (!refused) return next();
      ctx.status = 401;
      ctx.type = 'application/json';
      ctx.body = { error: 'invalid_client', error_description: refuseBasic ? 'client_secret_basic is not supported' : 'invalid secret provided' };
    });
  }

  provider.use(async (ctx, next) => {
    if (ctx.path === userinfoPath) counts.userinfo += 1;
    else if (ctx.path === revocationPath) counts.revocation += 1;
    else if (ctx.path !== tokenPath) return next();
    else counts.token += 1;

    try {
      await next();
    } finally {
      if (ctx.path === tokenPath) {
        const grantType = ctx.oidc?.body?.grant_type;
        const key = typeof grantType === 'string' && grantType ? grantType : '(none)';
        counts.tokenByGrant[key] = (counts.tokenByGrant[key] ?? 0) + 1;
        const answer: unknown = ctx.body;
        if (key === 'refresh_token' && !idp.idTokenOnRefresh && answer && typeof answer === 'object' && 'id_token' in answer) delete answer.id_token;
      }
    }
  });

  const oidcHandler = provider.callback();
  server.on('request', (req, res) => {
    const pathname = new URL(req.url ?? '/', issuer).pathname;
    const handled = pathname.startsWith(INTERACTION_PREFIX)
      ? handleInteraction(provider, req, res, pathname)
      : oidcHandler(req, res);
    Promise.resolve(handled).catch((err: unknown) => {
      console.error('[test-idp] request handler failed:', err);
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error' });
      else res.destroy();
    });
  });

  const isRedirectUri = (url: URL) =>
    redirectUris.some((r) => r.origin === url.origin && r.pathname === url.pathname);

  /** The headless user agent shared by login() and deny(). */
  async function drive(authorizationUrl: string | URL, decision: { sub: string } | 'deny'): Promise<URL> {
    const jar = new CookieJar();
    let url = new URL(authorizationUrl);
    let method: 'GET' | 'POST' = 'GET';
    let body: URLSearchParams | undefined;

    for (let hop = 0; hop < MAX_HOPS; hop++) {
      if (isRedirectUri(url)) return url;
      if (url.origin !== issuer) throw new Error(`test IdP: redirected off the IdP to an unregistered URL: ${url.href}`);

      const headers = new Headers({ accept: 'application/json, text/html;q=0.9' });
      const cookie = jar.headerFor(url);
      if (cookie) headers.set('cookie', cookie);
      if (body) headers.set('content-type', 'application/x-www-form-urlencoded');
      const res = await fetch(url, { method, headers, body, redirect: 'manual' });
      jar.store(url, res.headers.getSetCookie());

      if (res.status >= 300 && res.status < 400) {
        await res.body?.cancel();
        const location = res.headers.get('location');
        if (!location) throw new Error(`test IdP: ${res.status} without Location at ${url.href}`);
        url = new URL(location, url);
        method = 'GET';
        body = undefined;
        continue;
      }

      const text = await res.text();
      if (res.status !== 200 || method !== 'GET' || !url.pathname.startsWith(INTERACTION_PREFIX)) {
        throw new Error(`test IdP: unexpected ${res.status} from ${method} ${url.href}: ${text.slice(0, 500)}`);
      }

      // We are on an interaction "page": decide what the user does.
      const page = JSON.parse(text) as { uid: string; prompt: { name: string } };
      const base = `${issuer}${INTERACTION_PREFIX}${encodeURIComponent(page.uid)}`;
      method = 'POST';
      if (decision === 'deny') {
        url = new URL(`${base}/abort`);
        body = new URLSearchParams();
      } else if (page.prompt.name === 'login') {
        url = new URL(`${base}/login`);
        body = new URLSearchParams({ sub: decision.sub });
      } else if (page.prompt.name === 'consent') {
        url = new URL(`${base}/confirm`);
        body = new URLSearchParams();
      } else {
        throw new Error(`test IdP: unsupported interaction prompt "${page.prompt.name}"`);
      }
    }
    throw new Error(`test IdP: too many redirects starting from ${new URL(authorizationUrl).href}`);
  }

  const idp: TestIdp = {
    issuer,
    clientId,
    clientSecret,
    counts,
    login: (authorizationUrl, sub) => drive(authorizationUrl, { sub }),
    deny: (authorizationUrl) => drive(authorizationUrl, 'deny'),
    idTokenOnRefresh: true,
    close: () => local.close(),
  };
  return idp;
}
