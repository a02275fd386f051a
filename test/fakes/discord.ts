/**
 * A fake Discord on 127.0.0.1 that speaks Discord's real OAuth2 + user HTTP API, so a provider module can be
 * tested by swapping only its origins: `${origin}/oauth2/authorize`, `${apiBaseUrl}/oauth2/token`,
 * `${apiBaseUrl}/oauth2/token/revoke`, `${apiBaseUrl}/users/@me` (a version segment such as `/api/v10/…` works too).
 *
 * Where the behaviour comes from (checked against stored copies, see the report in the PR):
 * - docs: https://discord.com/developers/docs/topics/oauth2 (repo discord/discord-api-docs, docs/topics/oauth2.mdx):
 *   the three URLs above; token and revoke endpoints accept only application/x-www-form-urlencoded ("JSON content
 *   is not permitted and will return an error"); client auth by HTTP Basic or client_id/client_secret in the body;
 *   token answer {access_token, token_type: "Bearer", expires_in: 604800, refresh_token, scope}; the redirect
 *   carries `code` and `state` (no `iss` in any documented example); revoke takes `token` + optional
 *   `token_type_hint` and "any active access or refresh tokens associated with that authorization will be revoked".
 * - docs (community): discord-userdoccers pages/topics/oauth2.mdx#pkce: PKCE is supported, S256 only, verifier
 *   43–128 chars of [A-Za-z0-9-._~]; revoke "Returns an empty object on success" and invalidates all of the
 *   application's tokens for that user. discord/discord-api-docs PR #7046 notes: S256 only, verifier length enforced.
 * - issues: discord/discord-api-docs#5579, reboxer/discord-oauth2#92: bad/spent code → 400
 *   `{"error": "invalid_grant", "error_description": "Invalid \"code\" in request."}`; #2526: codes are single use.
 * - issues: discord/discord-api-docs#5942: refresh tokens rotate, reusing the old one → `invalid_grant`
 *   (member-gentei#18 shows the description `Invalid "refresh_token" in request.`).
 * - issues: discord/discord-api-docs#5531: wrong/missing client secret → `{"error": "invalid_client"}`.
 * - issues: discord/discord-api-docs#5254, nextauthjs/next-auth#10352: `{"error": "invalid_request",
 *   "error_description": "Invalid \"code_verifier\""}`; pilcrowonpaper/arctic#167: `Missing "code_verifier"`.
 * - issues: discord/discord-api-docs PR #6356 (comments): revoke answers 200 `{}`; a token_type_hint other than
 *   access_token/refresh_token → `unsupported_token_type`.
 * - issues: nhost/hasura-auth#125 (+ discord-api-docs#685 for state): cancel → redirect_uri?error=access_denied
 *   &error_description=The+resource+owner+or+authorization+server+denied+the+request&state=…
 * - issues: victornpb/undiscord#32, codetheweb/aoede#35: bad token on /users/@me → 401 `{"message": "401: Unauthorized", "code": 0}`.
 * - docs: docs/resources/user.mdx: user object fields; /users/@me needs `identify`, `email` adds email/verified.
 *
 * Not confirmed (fake's choice): HTTP status of invalid_client (401, RFC 6749 §5.2); the exact error for a JSON
 * body (we treat it as an empty form); the error for a verifier that is well-formed but does not match (we reuse
 * `Invalid "code_verifier"`); the redirect_uri-mismatch description (`Invalid "redirect_uri" in request.`, an older
 * report shows "Invalid redirect_uri in request."); whether a refresh also kills the previous access token (we keep
 * it valid until it expires); code lifetime (we use 10 minutes; a Discord engineer wrote "100 seconds" in
 * discord/discord-api-docs#2526).
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { basicCredentials, bearerToken, listenLocal, randomAlnum, readBody, redirectUriAllowed, send, sendJson } from './http.ts';

/**
 * `oversized`: a 200 JSON answer of 2 MiB with its Content-Length; `oversizedChunked`: the same streamed
 * without a length (as a guild list of a user in many large guilds could be).
 */
export type FakeFault = 'http500' | 'http401' | 'http429' | 'malformed' | 'hang' | 'oversized' | 'oversizedChunked';
export type FakeDiscordEndpoint = 'token' | 'revoke' | 'me' | 'guilds';

export interface FakeDiscordUser {
  id: string;
  username: string;
  global_name: string | null;
}

export interface FakeDiscord {
  /** `http://127.0.0.1:<port>`, stand-in for `https://discord.com`; serves `/oauth2/authorize`. */
  origin: string;
  /** `${origin}/api`, stand-in for `https://discord.com/api`. */
  apiBaseUrl: string;
  clientId: string;
  clientSecret: string;
  /** Accounts by snowflake; approve() adds a default one for an unknown id. Edit freely. */
  users: Map<string, FakeDiscordUser>;
  /** HTTP requests received per endpoint (faulted ones included); tokenByGrant is keyed by grant_type ("(none)" if absent). */
  counts: { token: number; tokenByGrant: Record<string, number>; revoke: number; me: number; guilds: number };
  /** Simulates the user clicking "Authorize": validates the authorize URL (response_type=code, client_id, registered redirect_uri, scope, PKCE S256), issues a one-time code for `userId`, returns the redirect URL (code, state, and iss if sendIss) without calling it. Throws on a request Discord would refuse. */
  approve(authorizeUrl: string | URL, userId: string): URL;
  /** Same validation, user clicks "Cancel": redirect_uri?error=access_denied&error_description=…&state=… */
  deny(authorizeUrl: string | URL): URL;
  /** Whether a token (access or refresh) is currently usable: issued, not revoked/rotated, not expired. */
  isActive(token: string): boolean;
  /** Expire an access token now (as if its expires_in passed). */
  expire(accessToken: string): void;
  /** Fault injection for the next N requests (default 1) to an endpoint: 500, 200 with a non-JSON body, or no answer until close(). */
  failNext(kind: FakeDiscordEndpoint, fault: FakeFault, times?: number): void;
  /** Delay (ms) added to token responses, after the fake has applied the request (codes spent, refresh tokens rotated), to widen race windows in concurrency tests. */
  tokenDelayMs: number;
  close(): Promise<void>;
}

export interface StartFakeDiscordOptions {
  /** Default "1100000000000000001" (a snowflake). */
  clientId?: string;
  clientSecret?: string;
  /** Registered redirect URIs, compared exactly. When omitted, any absolute http(s) redirect_uri is accepted (but one must be sent). */
  redirectUris?: string[];
  /** Default 604800 (7 days), Discord's. */
  accessTokenTtlSeconds?: number;
  /** Add RFC 9207 `iss` to the authorization response: `true` sends the fake's origin, a string sends that value. Discord does not (default false). */
  sendIss?: boolean | string;
  /** Refuse authorize URLs without code_challenge (S256). Default true; real Discord only requires PKCE of public clients. */
  requirePkce?: boolean;
}

const AUTHORIZE_PATHS = new Set(['/oauth2/authorize', '/api/oauth2/authorize']);
const TOKEN_PATH = '/api/oauth2/token';
const REVOKE_PATH = '/api/oauth2/token/revoke';
const ME_PATH = '/api/users/@me';
const GUILDS_PATH = '/api/users/@me/guilds';
const SEVEN_DAYS = 604_800;
const CODE_TTL_MS = 10 * 60_000;
const PKCE_VALUE = /^[A-Za-z0-9\-._~]{43,128}$/;
const ACCESS_DENIED_DESCRIPTION = 'The resource owner or authorization server denied the request';

/** An RFC 6749 §5.2 error as Discord sends it: `{error, error_description?}`. */
class OAuthError extends Error {
  readonly status: number;
  readonly error: string;
  readonly description: string | undefined;
  constructor(status: number, error: string, description?: string) {
    super(description ?? error);
    this.status = status;
    this.error = error;
    this.description = description;
  }
  get payload(): Record<string, string> {
    return { error: this.error, ...(this.description === undefined ? {} : { error_description: this.description }) };
  }
}

interface CodeRecord {
  userId: string;
  scope: string;
  redirectUri: string | undefined;
  codeChallenge: string | undefined;
  expiresAt: number;
  used: boolean;
}

/** One user's authorization of the app; every token hangs off one. */
interface Grant {
  userId: string;
  scope: string;
}

interface TokenRecord {
  kind: 'access' | 'refresh';
  grant: Grant;
  /** Epoch ms; refresh tokens do not expire here. */
  expiresAt: number | undefined;
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------------




/** Discord reads only form bodies on the OAuth2 endpoints; anything else is an empty form here. */
function parseForm(req: IncomingMessage, body: Buffer): URLSearchParams {
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  return type.startsWith('application/x-www-form-urlencoded') ? new URLSearchParams(body.toString('utf8')) : new URLSearchParams();
}




const s256 = (verifier: string) => createHash('sha256').update(verifier, 'ascii').digest('base64url');

// ---------------------------------------------------------------------------------------------

export async function startFakeDiscord(opts: StartFakeDiscordOptions = {}): Promise<FakeDiscord> {
  const clientId = opts.clientId ?? '1100000000000000001';
  const clientSecret = opts.clientSecret ?? randomAlnum(32);
  const registered = opts.redirectUris;
  const accessTtlMs = (opts.accessTokenTtlSeconds ?? SEVEN_DAYS) * 1000;
  const requirePkce = opts.requirePkce ?? true;

  const users = new Map<string, FakeDiscordUser>();
  const counts: FakeDiscord['counts'] = { token: 0, tokenByGrant: {}, revoke: 0, me: 0, guilds: 0 };
  const codes = new Map<string, CodeRecord>();
  const tokens = new Map<string, TokenRecord>();
  const faults: Record<FakeDiscordEndpoint, FakeFault[]> = { token: [], revoke: [], me: [], guilds: [] };
  const closing = new AbortController();

  const local = await listenLocal();
  const { server, origin } = local;
  const iss = opts.sendIss === true ? origin : typeof opts.sendIss === 'string' ? opts.sendIss : undefined;

  const isRegistered = (uri: string) => redirectUriAllowed(registered, uri);

  const isLive = (record: TokenRecord | undefined): record is TokenRecord =>
    record !== undefined && (record.expiresAt === undefined || Date.now() < record.expiresAt);

  /** Validate an authorize URL the way Discord's consent page would before showing "Authorize". */
  function validateAuthorizeRequest(authorizeUrl: string | URL) {
    const url = new URL(authorizeUrl);
    const path = url.pathname.replace(/^\/api\/v\d+\//, '/api/');
    if (url.origin !== origin || !AUTHORIZE_PATHS.has(path)) {
      throw new Error(`fake Discord: not an authorize URL of this fake (${origin}/oauth2/authorize): ${url.href}`);
    }
    const q = url.searchParams;
    const refuse = (what: string) => new Error(`fake Discord refused the authorization request: ${what}`);
    if (q.get('client_id') !== clientId) throw refuse(`unknown client_id ${JSON.stringify(q.get('client_id'))}`);
    const responseType = q.get('response_type');
    if (responseType !== 'code') throw refuse(`response_type must be "code" for this fake, got ${JSON.stringify(responseType)}`);
    const redirectUri = q.get('redirect_uri') ?? undefined;
    let finalRedirectUri: string;
    if (redirectUri !== undefined) {
      if (!isRegistered(redirectUri)) throw refuse(`Invalid OAuth2 redirect_uri ${JSON.stringify(redirectUri)}`);
      finalRedirectUri = redirectUri;
    } else if (registered?.[0] !== undefined) {
      finalRedirectUri = registered[0]; // "redirected to the first registered redirect URI" (userdoccers)
    } else {
      throw refuse('no redirect_uri and none registered');
    }
    const scope = (q.get('scope') ?? '').split(' ').filter(Boolean).join(' ');
    if (!scope) throw refuse('scope is required');
    const codeChallenge = q.get('code_challenge') ?? undefined;
    const method = q.get('code_challenge_method') ?? undefined;
    if (codeChallenge === undefined) {
      if (requirePkce) throw refuse('code_challenge (PKCE, S256) is required by this fake');
      if (method !== undefined) throw refuse('code_challenge_method without code_challenge');
    } else {
      if (method !== 'S256') throw refuse(`invalid_request: Unsupported "code_challenge_method" ${JSON.stringify(method)}`);
      if (!PKCE_VALUE.test(codeChallenge)) throw refuse('invalid_request: Invalid "code_challenge"');
    }
    return { redirectUri, finalRedirectUri, scope, codeChallenge, state: q.get('state') ?? undefined };
  }

  function issueTokens(grant: Grant) {
    // Newer Discord access tokens look like "<base64 user id>.<random>" (userdoccers example); refresh tokens are random.
    const accessToken = `${Buffer.from(grant.userId).toString('base64url')}.${randomAlnum(30)}`;
    const refreshToken = randomAlnum(30);
    tokens.set(accessToken, { kind: 'access', grant, expiresAt: Date.now() + accessTtlMs });
    tokens.set(refreshToken, { kind: 'refresh', grant, expiresAt: undefined });
    return {
      token_type: 'Bearer',
      access_token: accessToken,
      expires_in: Math.round(accessTtlMs / 1000),
      refresh_token: refreshToken,
      scope: grant.scope,
    };
  }

  /** Client authentication shared by the token and revoke endpoints. */
  function authenticateClient(req: IncomingMessage, form: URLSearchParams): void {
    const basic = basicCredentials(req);
    const bodyId = form.get('client_id') ?? undefined;
    const bodySecret = form.get('client_secret') ?? undefined;
    if (basic && bodyId !== undefined && bodyId !== basic[0]) throw new OAuthError(401, 'invalid_client');
    const id = basic?.[0] ?? bodyId;
    const secret = basic?.[1] ?? bodySecret;
    if (id !== clientId || secret !== clientSecret) throw new OAuthError(401, 'invalid_client');
  }

  // -------------------------------------------------------------------------------------------

  function tokenAnswer(form: URLSearchParams, req: IncomingMessage): { status: number; body: unknown } {
    try {
      authenticateClient(req, form);
      const grantType = form.get('grant_type');
      if (grantType === 'authorization_code') {
        const code = form.get('code');
        const record = code ? codes.get(code) : undefined;
        if (!code || !record || record.used || Date.now() > record.expiresAt) {
          throw new OAuthError(400, 'invalid_grant', 'Invalid "code" in request.');
        }
        const redirectUri = form.get('redirect_uri') ?? undefined;
        if (record.redirectUri !== undefined ? redirectUri !== record.redirectUri : redirectUri !== undefined && !isRegistered(redirectUri)) {
          throw new OAuthError(400, 'invalid_grant', 'Invalid "redirect_uri" in request.');
        }
        const verifier = form.get('code_verifier') ?? undefined;
        if (record.codeChallenge !== undefined) {
          if (verifier === undefined) throw new OAuthError(400, 'invalid_request', 'Missing "code_verifier"');
          if (!PKCE_VALUE.test(verifier) || s256(verifier) !== record.codeChallenge) {
            throw new OAuthError(400, 'invalid_request', 'Invalid "code_verifier"');
          }
        } else if (verifier !== undefined) {
          throw new OAuthError(400, 'invalid_request', 'Invalid "code_verifier"');
        }
        record.used = true;
        return { status: 200, body: issueTokens({ userId: record.userId, scope: record.scope }) };
      }
      if (grantType === 'refresh_token') {
        const refreshToken = form.get('refresh_token');
        if (!refreshToken) throw new OAuthError(400, 'invalid_request', 'Missing "refresh_token"');
        const record = tokens.get(refreshToken);
        if (!isLive(record) || record.kind !== 'refresh') {
          throw new OAuthError(400, 'invalid_grant', 'Invalid "refresh_token" in request.');
        }
        tokens.delete(refreshToken); // rotation: the spent refresh token is dead from now on
        return { status: 200, body: issueTokens(record.grant) };
      }
      throw new OAuthError(400, 'unsupported_grant_type');
    } catch (err) {
      if (!(err instanceof OAuthError)) throw err;
      return { status: err.status, body: err.payload };
    }
  }

  async function handleToken(req: IncomingMessage, res: ServerResponse, form: URLSearchParams): Promise<void> {
    if (req.method !== 'POST') return sendJson(res, 405, { message: '405: Method Not Allowed', code: 0 });
    const { status, body } = tokenAnswer(form, req); // state changes happen here, before the delay
    if (fake.tokenDelayMs > 0) {
      try {
        await sleep(fake.tokenDelayMs, undefined, { signal: closing.signal });
      } catch {
        return; // closed meanwhile
      }
    }
    sendJson(res, status, body, { 'Cache-Control': 'no-store', Pragma: 'no-cache' });
  }

  function handleRevoke(req: IncomingMessage, res: ServerResponse, form: URLSearchParams): void {
    if (req.method !== 'POST') return sendJson(res, 405, { message: '405: Method Not Allowed', code: 0 });
    try {
      authenticateClient(req, form);
      const token = form.get('token');
      if (!token) throw new OAuthError(400, 'invalid_request', 'Missing "token"');
      const hint = form.get('token_type_hint');
      if (hint !== null && hint !== 'access_token' && hint !== 'refresh_token') throw new OAuthError(400, 'unsupported_token_type');
      const record = tokens.get(token);
      if (record) {
        // Revoking any token invalidates all of this application's tokens for that user.
        for (const [t, r] of tokens) if (r.grant.userId === record.grant.userId) tokens.delete(t);
      }
      sendJson(res, 200, {}); // RFC 7009: unknown tokens are a 200 as well
    } catch (err) {
      if (!(err instanceof OAuthError)) throw err;
      sendJson(res, err.status, err.payload);
    }
  }

  function handleMe(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'GET') return sendJson(res, 405, { message: '405: Method Not Allowed', code: 0 });
    const token = bearerToken(req);
    const record = token === undefined ? undefined : tokens.get(token);
    const scopes = record?.grant.scope.split(' ') ?? [];
    const user = isLive(record) && record.kind === 'access' && scopes.includes('identify') ? users.get(record.grant.userId) : undefined;
    if (!user) return sendJson(res, 401, { message: '401: Unauthorized', code: 0 });
    sendJson(res, 200, {
      id: user.id,
      username: user.username,
      avatar: null,
      discriminator: '0',
      public_flags: 0,
      flags: 0,
      banner: null,
      accent_color: null,
      global_name: user.global_name,
      avatar_decoration_data: null,
      mfa_enabled: false,
      locale: 'en-US',
      premium_type: 0,
      ...(scopes.includes('email') ? { email: `${user.username}@users.discord.test`, verified: true } : {}),
    });
  }

  /** GET /users/@me/guilds (scope `guilds`): the servers the user is in, partial guild objects as Discord answers them. */
  function handleGuilds(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'GET') return sendJson(res, 405, { message: '405: Method Not Allowed', code: 0 });
    const token = bearerToken(req);
    const record = token === undefined ? undefined : tokens.get(token);
    if (!isLive(record) || record.kind !== 'access') return sendJson(res, 401, { message: '401: Unauthorized', code: 0 });
    if (!record.grant.scope.split(' ').includes('guilds')) return sendJson(res, 403, { message: 'Missing Access', code: 50001 });
    sendJson(res, 200, [
      { id: '613425648685547541', name: 'Annie Mei Support', icon: null, owner: false, permissions: '104320577', features: [] },
      { id: `${record.grant.userId.slice(0, 10)}00000001`, name: `${users.get(record.grant.userId)?.username ?? 'user'}'s server`, icon: null, owner: true, permissions: '2147483647', features: [] },
    ]);
  }

  function applyFault(kind: FakeDiscordEndpoint, res: ServerResponse): boolean {
    const fault = faults[kind].shift();
    if (!fault) return false;
    switch (fault) {
      case 'http500':
        sendJson(res, 500, { message: '500: Internal Server Error', code: 0 });
        break;
      case 'http401':
        sendJson(res, 401, { message: '401: Unauthorized', code: 0 });
        break;
      case 'http429':
        // Discord's rate limit answer (https://discord.com/developers/docs/topics/rate-limits).
        res.setHeader('retry-after', '2');
        sendJson(res, 429, { message: 'You are being rate limited.', retry_after: 1.5, global: false });
        break;
      case 'malformed':
        // 200 claiming JSON, body cut off mid-way (as through a broken proxy).
        send(res, 200, 'application/json', kind === 'me' ? '{"id": "80351110224678912", "usern' : '{"token_type": "Bearer", "access_tok');
        break;
      case 'hang':
        break; // never answer; close() destroys the socket
      case 'oversized':
        send(res, 200, 'application/json', oversizedGuildList());
        break;
      case 'oversizedChunked': {
        const body = Buffer.from(oversizedGuildList());
        res.writeHead(200, { 'content-type': 'application/json' });
        res.on('error', () => {}); // the reader may stop reading and close the connection
        for (let at = 0; at < body.length; at += 64 * 1024) res.write(body.subarray(at, at + 64 * 1024));
        res.end();
        break;
      }
    }
    return true;
  }

  /** 2 MiB of guild objects, as Discord shapes them. */
  function oversizedGuildList(): string {
    const guild = (i: number) => JSON.stringify({ id: String(613425648685547541n + BigInt(i)), name: `Guild ${i} ${'x'.repeat(90)}`, icon: null, owner: false, permissions: '104320577', features: [] });
    const guilds: string[] = [];
    let size = 2;
    for (let i = 0; size < 2 * 1024 * 1024; i++) {
      const item = guild(i);
      guilds.push(item);
      size += item.length + 1;
    }
    return `[${guilds.join(',')}]`;
  }

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const pathname = new URL(req.url ?? '/', origin).pathname.replace(/^\/api\/v\d+\//, '/api/');
    const handled = (async () => {
      const body = await readBody(req);
      if (pathname === TOKEN_PATH) {
        counts.token += 1;
        const form = parseForm(req, body);
        const grantType = form.get('grant_type') || '(none)';
        counts.tokenByGrant[grantType] = (counts.tokenByGrant[grantType] ?? 0) + 1;
        if (applyFault('token', res)) return;
        return handleToken(req, res, form);
      }
      if (pathname === REVOKE_PATH) {
        counts.revoke += 1;
        if (applyFault('revoke', res)) return;
        return handleRevoke(req, res, parseForm(req, body));
      }
      if (pathname === GUILDS_PATH) {
        counts.guilds += 1;
        if (applyFault('guilds', res)) return;
        return handleGuilds(req, res);
      }
      if (pathname === ME_PATH) {
        counts.me += 1;
        if (applyFault('me', res)) return;
        return handleMe(req, res);
      }
      if (AUTHORIZE_PATHS.has(pathname) && (req.method === 'GET' || req.method === 'HEAD')) {
        try {
          validateAuthorizeRequest(new URL(req.url ?? '/', origin));
        } catch (err) {
          return send(res, 400, 'text/plain; charset=utf-8', (err as Error).message);
        }
        return send(res, 200, 'text/html; charset=utf-8', '<!doctype html><title>Discord</title><p>Authorize (fake Discord)</p>');
      }
      sendJson(res, 404, { message: '404: Not Found', code: 0 });
    })();
    handled.catch((err: unknown) => {
      if (closing.signal.aborted) return;
      console.error('[fake-discord] request handler failed:', err);
      if (!res.headersSent) sendJson(res, 500, { message: '500: Internal Server Error', code: 0 });
      else res.destroy();
    });
  });


  const fake: FakeDiscord = {
    origin,
    apiBaseUrl: `${origin}/api`,
    clientId,
    clientSecret,
    users,
    counts,
    tokenDelayMs: 0,

    approve(authorizeUrl, userId) {
      const { redirectUri, finalRedirectUri, scope, codeChallenge, state } = validateAuthorizeRequest(authorizeUrl);
      if (!users.has(userId)) users.set(userId, { id: userId, username: `user${userId}`, global_name: null });
      const code = randomAlnum(30);
      codes.set(code, { userId, scope, redirectUri, codeChallenge, expiresAt: Date.now() + CODE_TTL_MS, used: false });
      const url = new URL(finalRedirectUri);
      url.searchParams.append('code', code);
      if (state !== undefined) url.searchParams.append('state', state);
      if (iss !== undefined) url.searchParams.append('iss', iss);
      return url;
    },

    deny(authorizeUrl) {
      const { finalRedirectUri, state } = validateAuthorizeRequest(authorizeUrl);
      const url = new URL(finalRedirectUri);
      url.searchParams.append('error', 'access_denied');
      url.searchParams.append('error_description', ACCESS_DENIED_DESCRIPTION);
      if (state !== undefined) url.searchParams.append('state', state);
      if (iss !== undefined) url.searchParams.append('iss', iss);
      return url;
    },

    isActive(token) {
      return isLive(tokens.get(token));
    },

    expire(accessToken) {
      const record = tokens.get(accessToken);
      if (!record || record.kind !== 'access') throw new Error('fake Discord: expire() got no access token this fake issued (or it was revoked)');
      record.expiresAt = Date.now() - 1;
    },

    failNext(kind, fault, times = 1) {
      for (let i = 0; i < times; i++) faults[kind].push(fault);
    },

    close() {
      closing.abort();
      return local.close();
    },
  };
  return fake;
}
