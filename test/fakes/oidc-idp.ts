/**
 * A real OpenID Provider (panva's `oidc-provider` v9) running in-process on 127.0.0.1,
 * for tests that need a genuine authorization-code + PKCE + refresh + revocation peer.
 *
 * - Issuer `http://127.0.0.1:<random port>`, discovery at `/.well-known/openid-configuration`.
 * - One confidential client (`client_secret_basic`), grant types authorization_code + refresh_token;
 *   a refresh token is issued on every code exchange (no `offline_access` needed).
 * - PKCE (S256) is required for every authorization request; `nonce` and RFC 9207 `iss` supported.
 * - No browser: `login()` / `deny()` walk the authorization redirects with a per-call cookie jar and
 *   answer our own tiny interaction endpoints (`/interaction/:uid[/login|/confirm|/abort]`).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

import { exportJWK, generateKeyPair } from 'jose';
import Provider, {
  type Adapter,
  type AdapterPayload,
  type InteractionDetails,
  type KoaContextLike,
} from 'oidc-provider';
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
}

const STANDARD_CLAIMS: Record<string, string[]> = {
  openid: ['sub'],
  profile: [
    'name', 'given_name', 'family_name', 'middle_name', 'nickname', 'preferred_username',
    'profile', 'picture', 'website', 'gender', 'birthdate', 'zoneinfo', 'locale', 'updated_at',
  ],
  email: ['email', 'email_verified'],
  phone: ['phone_number', 'phone_number_verified'],
  address: ['address'],
};

const INTERACTION_PREFIX = '/interaction/';
const MAX_HOPS = 20;

function defaultClaims(sub: string): Record<string, unknown> {
  return { name: `Test User ${sub}`, preferred_username: sub, email: `${sub}@example.test` };
}

// ---------------------------------------------------------------------------------------------
// Storage: a small per-IdP in-memory adapter (avoids oidc-provider's dev-adapter warning and
// keeps separate IdP instances fully isolated). Payloads are cloned in and out like a real DB.
// ---------------------------------------------------------------------------------------------

interface Stored {
  payload: AdapterPayload;
  expiresAt: number | undefined; // epoch ms
}

class MemoryStore {
  readonly #rows = new Map<string, Stored>();
  readonly #byGrant = new Map<string, Set<string>>();
  readonly #sessionByUid = new Map<string, string>();
  readonly #byUserCode = new Map<string, string>();

  adapterFor(model: string): Adapter {
    const key = (id: string) => `${model}:${id}`;
    return {
      upsert: async (id, payload, expiresIn) => {
        const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
        this.#rows.set(key(id), { payload: structuredClone(payload), expiresAt });
        if (payload.grantId) {
          let set = this.#byGrant.get(payload.grantId);
          if (!set) this.#byGrant.set(payload.grantId, (set = new Set()));
          set.add(key(id));
        }
        if (model === 'Session' && payload.uid) this.#sessionByUid.set(payload.uid, id);
        if (payload.userCode) this.#byUserCode.set(payload.userCode, id);
      },
      find: async (id) => this.#get(key(id)),
      findByUid: async (uid) => {
        const id = this.#sessionByUid.get(uid);
        return id === undefined ? undefined : this.#get(key(id));
      },
      findByUserCode: async (userCode) => {
        const id = this.#byUserCode.get(userCode);
        return id === undefined ? undefined : this.#get(key(id));
      },
      consume: async (id) => {
        const row = this.#rows.get(key(id));
        if (row) row.payload.consumed = Math.floor(Date.now() / 1000);
      },
      destroy: async (id) => {
        this.#rows.delete(key(id));
      },
      revokeByGrantId: async (grantId) => {
        for (const k of this.#byGrant.get(grantId) ?? []) this.#rows.delete(k);
        this.#byGrant.delete(grantId);
      },
    };
  }

  #get(k: string): AdapterPayload | undefined {
    const row = this.#rows.get(k);
    if (!row) return undefined;
    if (row.expiresAt !== undefined && row.expiresAt <= Date.now()) {
      this.#rows.delete(k);
      return undefined;
    }
    return structuredClone(row.payload);
  }
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

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > 64 * 1024) throw new Error('interaction form too large');
    chunks.push(buf);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

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
      return provider.interactionFinished(req, res, { login: { accountId: sub } }, { mergeWithLastSubmission: false });
    }
    case 'confirm': {
      if (details.prompt.name !== 'consent') {
        return sendJson(res, 400, { error: 'invalid_interaction', error_description: `prompt is ${details.prompt.name}` });
      }
      const accountId = details.session?.accountId;
      const clientId = details.params.client_id;
      if (!accountId || !clientId) {
        return sendJson(res, 400, { error: 'invalid_interaction', error_description: 'no session or client' });
      }
      const existing = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
      const grant = existing ?? new provider.Grant({ accountId, clientId });
      const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = details.prompt.details;
      if (missingOIDCScope?.length) grant.addOIDCScope(missingOIDCScope.join(' '));
      if (missingOIDCClaims?.length) grant.addOIDCClaims(missingOIDCClaims);
      for (const [resource, scopes] of Object.entries(missingResourceScopes ?? {})) {
        grant.addResourceScope(resource, scopes.join(' '));
      }
      const grantId = await grant.save();
      return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    }
    case 'abort':
      return provider.interactionFinished(
        req,
        res,
        { error: 'access_denied', error_description: 'End-User aborted interaction' },
        { mergeWithLastSubmission: false },
      );
    default:
      return sendJson(res, 404, { error: 'not_found' });
  }
}

// ---------------------------------------------------------------------------------------------

export async function startTestIdp(opts: StartTestIdpOptions): Promise<TestIdp> {
  const clientId = opts.clientId ?? 'linkgate-test-client';
  const clientSecret = opts.clientSecret ?? randomBytes(24).toString('base64url');
  const accessTokenTtl = opts.accessTokenTtlSeconds ?? 3600;
  const claimsFor = opts.claims ?? defaultClaims;
  const redirectUris = opts.redirectUris.map((u) => new URL(u));

  const local = await listenLocal();
  const { server, origin: issuer } = local;

  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const signingJwk = { ...(await exportJWK(privateKey)), kid: randomUUID(), alg: 'RS256', use: 'sig' };

  const store = new MemoryStore();
  const provider = new Provider(issuer, {
    adapter: (model) => store.adapterFor(model),
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: opts.redirectUris,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'RS256',
      },
    ],
    jwks: { keys: [signingJwk] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: STANDARD_CLAIMS,
    // Put scope-granted claims (name, email, ...) in the ID token too, like most real IdPs do.
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: false },
      revocation: {
        enabled: true,
        // A client may revoke only its own tokens (same as the default, minus the console notice).
        allowedPolicy: async (_ctx: unknown, client: { clientId: string }, token: { clientId?: string }) =>
          token.clientId === client.clientId,
      },
      resourceIndicators: { enabled: false },
      // Keep the surface small; nothing in our tests needs these.
      rpInitiatedLogout: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
    },
    pkce: { required: () => true },
    interactions: { url: (_ctx, interaction) => `${INTERACTION_PREFIX}${interaction.uid}` },
    findAccount: async (_ctx, sub) => ({
      accountId: sub,
      claims: async () => ({ ...claimsFor(sub), sub }),
    }),
    // Always hand this client a refresh token (scope `openid` alone is enough).
    issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    // Tokens outlive the (headless, throwaway) browser session.
    expiresWithSession: () => false,
    clientBasedCORS: () => false,
    renderError: (ctx, out) => {
      ctx.type = 'application/json';
      ctx.body = JSON.stringify(out);
    },
    // Explicit TTLs (seconds) also keep oidc-provider from printing "you SHOULD change it" notices.
    ttl: {
      AccessToken: accessTokenTtl,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 14 * 24 * 3600,
      Interaction: 600,
      Session: 3600,
      Grant: 14 * 24 * 3600,
    },
  });

  provider.on('server_error', (_ctx: KoaContextLike, err: Error) => {
    console.error('[test-idp] oidc-provider server_error:', err);
  });

  const counts: TestIdp['counts'] = { token: 0, tokenByGrant: {}, userinfo: 0, revocation: 0 };
  const tokenPath = provider.pathFor('token');
  const userinfoPath = provider.pathFor('userinfo');
  const revocationPath = provider.pathFor('revocation');

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
