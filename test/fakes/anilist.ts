/**
 * A fake AniList on 127.0.0.1 that speaks AniList's real HTTP API, so a provider module can be tested
 * by swapping only its base URLs: `${oauthBaseUrl}/api/v2/oauth/{authorize,token}` and `graphqlUrl`.
 *
 * Where the behaviour comes from (checked against stored copies, see the report in the PR):
 * - docs: https://docs.anilist.co/guide/auth/authorization-code (repo AniList/ApiV2-GraphQL-Docs,
 *   docs/guide/auth/authorization-code.md + snippets/auth/authorization-code/javascript.js):
 *   authorize at `/api/v2/oauth/authorize?client_id&redirect_uri&response_type=code`; the token request is
 *   `POST /api/v2/oauth/token` with a JSON body {grant_type, client_id, client_secret, redirect_uri, code};
 *   the answer holds a JWT `access_token`.
 * - docs: https://docs.anilist.co/guide/auth/ (docs/guide/auth/index.md): no scopes; access tokens live
 *   1 year; refresh tokens are not supported.
 * - docs: https://docs.anilist.co/guide/auth/authenticated-requests and .../graphql/queries/user:
 *   `POST https://graphql.anilist.co` JSON {query}, `Authorization: Bearer <token>`, `query { Viewer { id name } }`;
 *   the JWT's `sub` is the user id.
 * - AniList's OAuth server is Laravel Passport, i.e. thephpleague/oauth2-server. Its 7.0–7.3 sources
 *   (src/Exception/OAuthServerException.php, src/Grant/AuthCodeGrant.php, AbstractGrant.php,
 *   ResponseTypes/BearerTokenResponse.php) give: error bodies `{error, message, hint?}` (no error_description,
 *   which only 7.4+ adds), `invalid_client` = 401 "Client authentication failed" (also for a redirect_uri that
 *   is not registered), other errors 400; a spent code → invalid_request, hint "Authorization code has been
 *   revoked"; `state` returned on the redirect; deny → redirect with error=access_denied + message + hint;
 *   token answer {token_type: "Bearer", expires_in, access_token, refresh_token} with Cache-Control: no-store;
 *   JWT claims aud/jti/iat/nbf/exp/sub/scopes, RS256. Laravel parses both JSON and form bodies.
 * - issues: github.com/vosmiic/jellyfin-ani-sync/issues/36 and github.com/AniList/docs/issues/143 show AniList
 *   answering exactly `{"error":"invalid_client","message":"Client authentication failed"}`.
 * - issues: github.com/z411/trackma/issues/555 (and yuzono/anime-extensions#557): a bad/expired token →
 *   HTTP 400 `{"errors":[{"message":"Invalid token","status":400,"locations":[…]}],"data":{"<Field>":null}}`.
 * - issues: github.com/AniList/docs/issues/33: Viewer without a token →
 *   `{"data":{"Viewer":null},"errors":[{"message":"Unauthorized.","status":401,"locations":[…]}]}`.
 * - docs: docs/guide/graphql/errors.md: GraphQL errors are `{data: null, errors: [{message, status, locations}]}`.
 *
 * Not confirmed (fake's choice): the HTTP status of the "Unauthorized." answer (we send 401, matching its
 * `status`), what AniList's token endpoint does with grant_type=refresh_token (we answer
 * unsupported_grant_type, as the docs say refresh is not supported), and whether the deny button really
 * redirects (league's code does).
 *
 * Only the `Viewer` root field of GraphQL is implemented (fields id, name, __typename).
 */
import { generateKeyPair, randomBytes, sign, type KeyObject } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import { basicCredentials, bearerToken, listenLocal, randomAlnum, readBody, redirectUriAllowed, send, sendJson } from './http.ts';

export type FakeFault = 'http500' | 'malformed' | 'hang';
export type FakeAniListEndpoint = 'token' | 'graphql';

export interface FakeAniListUser {
  id: number;
  name: string;
}

export interface FakeAniList {
  /** `http://127.0.0.1:<port>`; serves `/api/v2/oauth/authorize`, `/api/v2/oauth/token` and `/graphql`. */
  origin: string;
  /** Stand-in for `https://anilist.co`: the module builds `${oauthBaseUrl}/api/v2/oauth/token`. */
  oauthBaseUrl: string;
  /** Stand-in for `https://graphql.anilist.co`: `${origin}/graphql`. */
  graphqlUrl: string;
  clientId: string;
  clientSecret: string;
  /** Accounts by id; approve() adds a default one for an unknown id. Edit freely (e.g. rename). */
  users: Map<number, FakeAniListUser>;
  /** HTTP requests received per endpoint (faulted ones included). */
  counts: { token: number; graphql: number };
  /** Simulates the user approving at AniList: validates client_id/redirect_uri/response_type of the authorize URL, issues a one-time code for `userId`, returns the redirect URL (redirect_uri?code=…&state=…) without calling it. Throws on a request AniList would refuse. */
  approve(authorizeUrl: string | URL, userId: number): URL;
  /** Same validation, but the user clicks "Deny": redirect_uri?state=…&error=access_denied&message=…&hint=… */
  deny(authorizeUrl: string | URL): URL;
  /** Make an issued access token invalid (as if revoked/expired upstream). */
  invalidate(accessToken: string): void;
  /** Fault injection for the next N requests (default 1) to an endpoint: 500, 200 with a non-JSON body, or no answer until close(). */
  failNext(kind: FakeAniListEndpoint, fault: FakeFault, times?: number): void;
  close(): Promise<void>;
}

export interface StartFakeAniListOptions {
  /** Default "4242" (AniList client ids are numeric). */
  clientId?: string;
  clientSecret?: string;
  /** Registered redirect URIs, compared exactly. When omitted, any absolute http(s) redirect_uri is accepted (but one must be sent). */
  redirectUris?: string[];
  /** Access-token lifetime; AniList's is one year (31536000). */
  tokenTtlSeconds?: number;
}

const AUTHORIZE_PATH = '/api/v2/oauth/authorize';
const TOKEN_PATH = '/api/v2/oauth/token';
const GRAPHQL_PATH = '/graphql';
const ONE_YEAR = 31_536_000;
/** Passport's default authorization-code lifetime (Passport::$authCodesExpireIn = 10 minutes). */
const CODE_TTL_MS = 10 * 60_000;

// league/oauth2-server 7.x wording (src/Exception/OAuthServerException.php).
const MSG_INVALID_REQUEST =
  'The request is missing a required parameter, includes an invalid parameter value, includes a parameter more than once, or is otherwise malformed.';
const MSG_INVALID_CLIENT = 'Client authentication failed';
const MSG_UNSUPPORTED_GRANT = 'The authorization grant type is not supported by the authorization server.';
const MSG_ACCESS_DENIED = 'The resource owner or authorization server denied the request.';

/** A league/oauth2-server 7.0–7.3 error: JSON body `{error, message, hint?}`. */
class OAuthError extends Error {
  readonly status: number;
  readonly error: string;
  readonly hint: string | undefined;
  constructor(status: number, error: string, message: string, hint?: string) {
    super(message);
    this.status = status;
    this.error = error;
    this.hint = hint;
  }
  get payload(): Record<string, string> {
    return { error: this.error, message: this.message, ...(this.hint === undefined ? {} : { hint: this.hint }) };
  }
}
const invalidRequest = (parameter: string, hint?: string) =>
  new OAuthError(400, 'invalid_request', MSG_INVALID_REQUEST, hint ?? `Check the \`${parameter}\` parameter`);
const invalidClient = () => new OAuthError(401, 'invalid_client', MSG_INVALID_CLIENT);
const unsupportedGrantType = () =>
  new OAuthError(400, 'unsupported_grant_type', MSG_UNSUPPORTED_GRANT, 'Check that all required parameters have been provided');

interface CodeRecord {
  userId: number;
  clientId: string;
  /** The redirect_uri sent at authorize (league stores the request's value, undefined when omitted). */
  redirectUri: string | undefined;
  expiresAt: number;
  revoked: boolean;
}

interface AccessRecord {
  userId: number;
  expiresAt: number;
  invalidated: boolean;
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------------




/** Laravel reads JSON bodies and form bodies alike into the request parameters. */
function parseParams(req: IncomingMessage, body: Buffer): Record<string, string> {
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  const text = body.toString('utf8');
  const out: Record<string, string> = {};
  if (type.includes('json')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return out;
    }
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
      for (const [k, v] of Object.entries(parsed)) {
        if (typeof v === 'string') out[k] = v;
        else if (typeof v === 'number' || typeof v === 'boolean') out[k] = String(v);
      }
    }
    return out;
  }
  if (type.includes('application/x-www-form-urlencoded') || text.includes('=')) {
    for (const [k, v] of new URLSearchParams(text)) out[k] ??= v;
  }
  return out;
}



const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');


/** league encrypts codes and refresh tokens with defuse/php-encryption: opaque hex that starts with def50200. */
const opaqueLeagueToken = (bytes: number) => `def50200${randomBytes(bytes).toString('hex')}`;

// ---------------------------------------------------------------------------------------------
// A very small GraphQL reader: enough to find the root fields and their sub-selections, with
// line/column locations like graphql-php reports them. Fragments and multiple operations are
// refused as "not implemented by the fake".
// ---------------------------------------------------------------------------------------------

interface GqlToken {
  kind: 'name' | 'punct' | 'value' | 'eof';
  value: string;
  line: number;
  column: number;
}

interface GqlField {
  alias: string | undefined;
  name: string;
  line: number;
  column: number;
  selections: GqlField[] | undefined;
}

class GqlError extends Error {
  readonly status: number;
  readonly location: { line: number; column: number } | undefined;
  constructor(message: string, status: number, location?: { line: number; column: number }) {
    super(message);
    this.status = status;
    this.location = location;
  }
}

function tokenize(source: string): GqlToken[] {
  const tokens: GqlToken[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const at = () => ({ line, column: i - lineStart + 1 });
  while (i < source.length) {
    const ch = source[i]!;
    if (ch === '\n') {
      i++;
      line++;
      lineStart = i;
      continue;
    }
    if (ch === ' ' || ch === '\t' || ch === '\r' || ch === ',' || ch === '\uFEFF') {
      i++;
      continue;
    }
    if (ch === '#') {
      while (i < source.length && source[i] !== '\n') i++;
      continue;
    }
    const pos = at();
    if (source.startsWith('...', i)) {
      tokens.push({ kind: 'punct', value: '...', ...pos });
      i += 3;
      continue;
    }
    if ('{}():$!=[]@'.includes(ch)) {
      tokens.push({ kind: 'punct', value: ch, ...pos });
      i++;
      continue;
    }
    const name = /^[_A-Za-z][_0-9A-Za-z]*/.exec(source.slice(i));
    if (name) {
      tokens.push({ kind: 'name', value: name[0], ...pos });
      i += name[0].length;
      continue;
    }
    const num = /^-?\d+(\.\d+)?([eE][+-]?\d+)?/.exec(source.slice(i));
    if (num) {
      tokens.push({ kind: 'value', value: num[0], ...pos });
      i += num[0].length;
      continue;
    }
    if (ch === '"') {
      let j = i + 1;
      while (j < source.length && source[j] !== '"' && source[j] !== '\n') j += source[j] === '\\' ? 2 : 1;
      if (source[j] !== '"') throw new GqlError('Syntax Error: Unterminated string.', 400, pos);
      tokens.push({ kind: 'value', value: source.slice(i, j + 1), ...pos });
      i = j + 1;
      continue;
    }
    throw new GqlError(`Syntax Error: Cannot parse the unexpected character "${ch}".`, 400, pos);
  }
  tokens.push({ kind: 'eof', value: '<EOF>', line, column: i - lineStart + 1 });
  return tokens;
}

function parseOperation(source: string): { operation: string; fields: GqlField[] } {
  const tokens = tokenize(source);
  let p = 0;
  const peek = () => tokens[p]!;
  const next = () => tokens[p++]!;
  const describe = (t: GqlToken) => (t.kind === 'eof' ? '<EOF>' : t.kind === 'name' ? `Name "${t.value}"` : `"${t.value}"`);
  const expect = (value: string) => {
    const t = next();
    if (t.value !== value || t.kind === 'value') throw new GqlError(`Syntax Error: Expected "${value}", found ${describe(t)}.`, 400, t);
    return t;
  };
  /** Skips a balanced (…) or […] group; argument values are not interpreted. */
  const skipGroup = (open: string, close: string) => {
    expect(open);
    let depth = 1;
    while (depth > 0) {
      const t = next();
      if (t.kind === 'eof') throw new GqlError(`Syntax Error: Expected "${close}", found <EOF>.`, 400, t);
      if (t.kind === 'punct' && t.value === open) depth++;
      else if (t.kind === 'punct' && t.value === close) depth--;
      else if (t.kind === 'punct' && t.value === '{' && open === '(') {
        // object values inside arguments: skip them as a nested group
        p--;
        skipGroup('{', '}');
      }
    }
  };
  const skipDirectives = () => {
    while (peek().kind === 'punct' && peek().value === '@') {
      next();
      const name = next();
      if (name.kind !== 'name') throw new GqlError(`Syntax Error: Expected Name, found ${describe(name)}.`, 400, name);
      if (peek().value === '(' && peek().kind === 'punct') skipGroup('(', ')');
    }
  };
  const selectionSet = (): GqlField[] => {
    expect('{');
    const fields: GqlField[] = [];
    while (!(peek().kind === 'punct' && peek().value === '}')) {
      const t = next();
      if (t.kind === 'punct' && t.value === '...') {
        throw new GqlError('fake AniList: fragments are not implemented', 400, t);
      }
      if (t.kind !== 'name') throw new GqlError(`Syntax Error: Expected Name, found ${describe(t)}.`, 400, t);
      let alias: string | undefined;
      let nameToken = t;
      if (peek().kind === 'punct' && peek().value === ':') {
        next();
        const real = next();
        if (real.kind !== 'name') throw new GqlError(`Syntax Error: Expected Name, found ${describe(real)}.`, 400, real);
        alias = t.value;
        nameToken = real;
      }
      if (peek().kind === 'punct' && peek().value === '(') skipGroup('(', ')');
      skipDirectives();
      const selections = peek().kind === 'punct' && peek().value === '{' ? selectionSet() : undefined;
      fields.push({ alias, name: nameToken.value, line: t.line, column: t.column, selections });
    }
    expect('}');
    if (fields.length === 0) throw new GqlError('Syntax Error: Expected Name, found "}".', 400, tokens[p - 1]);
    return fields;
  };

  let operation = 'query';
  const first = peek();
  if (first.kind === 'eof') throw new GqlError('Syntax Error: Unexpected <EOF>', 400, first);
  if (first.kind === 'name') {
    if (!['query', 'mutation', 'subscription'].includes(first.value)) {
      throw new GqlError(
        first.value === 'fragment' ? 'fake AniList: fragments are not implemented' : `Syntax Error: Unexpected Name "${first.value}"`,
        400,
        first,
      );
    }
    operation = next().value;
    if (peek().kind === 'name') next(); // operation name
    if (peek().kind === 'punct' && peek().value === '(') skipGroup('(', ')'); // variable definitions
    skipDirectives();
  }
  const fields = selectionSet();
  const rest = peek();
  if (rest.kind !== 'eof') throw new GqlError('fake AniList: documents with several definitions are not implemented', 400, rest);
  return { operation, fields };
}

/** One RS256 key for every fake in the process (like Passport's oauth-private.key); generated once. */
let signingKeyPromise: Promise<KeyObject> | undefined;
function signingKey(): Promise<KeyObject> {
  signingKeyPromise ??= promisify(generateKeyPair)('rsa', { modulusLength: 2048 }).then(({ privateKey }) => privateKey);
  return signingKeyPromise;
}

// ---------------------------------------------------------------------------------------------

export async function startFakeAniList(opts: StartFakeAniListOptions = {}): Promise<FakeAniList> {
  const clientId = opts.clientId ?? '4242';
  const clientSecret = opts.clientSecret ?? randomAlnum(40);
  const registered = opts.redirectUris;
  const tokenTtlSeconds = opts.tokenTtlSeconds ?? ONE_YEAR;

  const privateKey = await signingKey();

  const users = new Map<number, FakeAniListUser>();
  const counts = { token: 0, graphql: 0 };
  const codes = new Map<string, CodeRecord>();
  const accessTokens = new Map<string, AccessRecord>();
  const faults: Record<FakeAniListEndpoint, FakeFault[]> = { token: [], graphql: [] };
  const closing = new AbortController();

  const local = await listenLocal();
  const { server, origin } = local;

  const isRegistered = (uri: string) => redirectUriAllowed(registered, uri);

  /** league's AuthCodeGrant::validateAuthorizationRequest, for the authorize URL. */
  function validateAuthorizeRequest(authorizeUrl: string | URL): {
    redirectUri: string | undefined;
    finalRedirectUri: string;
    state: string | undefined;
  } {
    const url = new URL(authorizeUrl);
    if (url.origin !== origin || url.pathname !== AUTHORIZE_PATH) {
      throw new Error(`fake AniList: not an authorize URL of this fake (${origin}${AUTHORIZE_PATH}): ${url.href}`);
    }
    const q = url.searchParams;
    const responseType = q.get('response_type');
    const requestClientId = q.get('client_id');
    // AuthorizationServer picks a grant by response_type=code (or token, the implicit grant) and a client_id.
    if (responseType !== 'code' || !requestClientId) {
      if (responseType === 'token') throw new Error('fake AniList: the implicit grant (response_type=token) is not implemented');
      throw refusal(unsupportedGrantType());
    }
    if (requestClientId !== clientId) throw refusal(invalidClient());
    const redirectUri = q.get('redirect_uri') ?? undefined;
    let finalRedirectUri: string;
    if (redirectUri !== undefined) {
      if (!isRegistered(redirectUri)) throw refusal(invalidClient());
      finalRedirectUri = redirectUri;
    } else if (registered?.length === 1) {
      finalRedirectUri = registered[0]!;
    } else {
      throw refusal(invalidClient());
    }
    return { redirectUri, finalRedirectUri, state: q.get('state') ?? undefined };
  }

  function refusal(err: OAuthError): Error {
    return new Error(`fake AniList refused the authorization request: HTTP ${err.status} ${JSON.stringify(err.payload)}`, {
      cause: err,
    });
  }

  function issueAccessToken(userId: number): string {
    const now = Math.floor(Date.now() / 1000);
    const jti = randomBytes(40).toString('hex');
    const header = { typ: 'JWT', alg: 'RS256', jti };
    const claims = { aud: clientId, jti, iat: now, nbf: now, exp: now + tokenTtlSeconds, sub: String(userId), scopes: [] };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = sign('sha256', Buffer.from(signingInput), privateKey).toString('base64url');
    const token = `${signingInput}.${signature}`;
    accessTokens.set(token, { userId, expiresAt: Date.now() + tokenTtlSeconds * 1000, invalidated: false });
    return token;
  }

  // -------------------------------------------------------------------------------------------

  function handleToken(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    const params = parseParams(req, body);
    const basic = basicCredentials(req);
    const withBasicChallenge = basic ? { 'WWW-Authenticate': 'Basic realm="OAuth"' } : undefined;
    try {
      if (req.method !== 'POST') {
        return sendJson(res, 405, { message: 'The GET method is not supported for this route. Supported methods: POST.' });
      }
      // AuthorizationServer::respondToAccessTokenRequest: only grant types it knows (AniList: authorization_code).
      if (params.grant_type !== 'authorization_code') throw unsupportedGrantType();

      // AbstractGrant::validateClient
      const requestClientId = params.client_id ?? basic?.[0];
      if (!requestClientId) throw invalidRequest('client_id');
      const requestSecret = params.client_secret ?? basic?.[1];
      if (requestClientId !== clientId || requestSecret !== clientSecret) throw invalidClient();
      const redirectUri = params.redirect_uri;
      if (redirectUri !== undefined && !isRegistered(redirectUri)) throw invalidClient();

      // AuthCodeGrant::respondToAccessTokenRequest
      const code = params.code;
      if (!code) throw invalidRequest('code');
      const record = codes.get(code);
      if (!record) throw invalidRequest('code', 'Cannot decrypt the authorization code');
      if (Date.now() > record.expiresAt) throw invalidRequest('code', 'Authorization code has expired');
      if (record.revoked) throw invalidRequest('code', 'Authorization code has been revoked');
      if (record.clientId !== requestClientId) throw invalidRequest('code', 'Authorization code was not issued to this client');
      if (record.redirectUri !== undefined && redirectUri === undefined) throw invalidRequest('redirect_uri');
      if (record.redirectUri !== redirectUri) throw invalidRequest('redirect_uri', 'Invalid redirect URI');

      record.revoked = true; // single use
      const accessToken = issueAccessToken(record.userId);
      // BearerTokenResponse::generateHttpResponse
      const answer = {
        token_type: 'Bearer',
        expires_in: tokenTtlSeconds,
        access_token: accessToken,
        refresh_token: opaqueLeagueToken(300),
      };
      return send(res, 200, 'application/json; charset=UTF-8', JSON.stringify(answer), {
        Pragma: 'no-cache',
        'Cache-Control': 'no-store',
      });
    } catch (err) {
      if (!(err instanceof OAuthError)) throw err;
      return sendJson(res, err.status, err.payload, err.error === 'invalid_client' ? withBasicChallenge : undefined);
    }
  }

  function handleAuthorizePage(req: IncomingMessage, res: ServerResponse): void {
    // What a browser would get: the consent page, or league's JSON error for a bad request.
    try {
      validateAuthorizeRequest(new URL(req.url ?? '/', origin));
    } catch (err) {
      const cause = (err as Error).cause;
      if (cause instanceof OAuthError) return sendJson(res, cause.status, cause.payload);
      return sendJson(res, 400, { error: 'invalid_request', message: (err as Error).message });
    }
    send(res, 200, 'text/html; charset=UTF-8', '<!doctype html><title>AniList</title><p>Authorize application (fake AniList)</p>');
  }

  function handleGraphql(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    const gqlError = (status: number, message: string, location?: { line: number; column: number }, data: unknown = null) =>
      sendJson(res, status, {
        errors: [{ message, status, ...(location ? { locations: [{ line: location.line, column: location.column }] } : {}) }],
        data,
      });

    if (req.method !== 'POST') return gqlError(405, 'fake AniList: only POST is implemented for GraphQL');

    let query: unknown;
    const type = (req.headers['content-type'] ?? '').toLowerCase();
    const text = body.toString('utf8');
    if (type.includes('application/x-www-form-urlencoded')) {
      query = new URLSearchParams(text).get('query') ?? undefined;
    } else {
      try {
        const parsed: unknown = JSON.parse(text);
        query = parsed && typeof parsed === 'object' ? (parsed as { query?: unknown }).query : undefined;
      } catch {
        return gqlError(400, 'Syntax error, malformed JSON');
      }
    }
    if (typeof query !== 'string' || query.trim() === '') return gqlError(400, 'GraphQL Request must include at least one of those two parameters: "query" or "queryId"');

    let parsed: ReturnType<typeof parseOperation>;
    try {
      parsed = parseOperation(query);
    } catch (err) {
      if (err instanceof GqlError) return gqlError(err.status, err.message, err.location);
      throw err;
    }
    if (parsed.operation !== 'query') return gqlError(400, `fake AniList: ${parsed.operation} operations are not implemented`);

    // Validation (before execution): only what the fake implements.
    for (const field of parsed.fields) {
      if (field.name === '__typename') continue;
      if (field.name !== 'Viewer') return gqlError(400, `fake AniList: root field "${field.name}" is not implemented (only Viewer)`, field);
      if (!field.selections) return gqlError(400, 'Field "Viewer" of type "User" must have a sub selection.', field);
      for (const sub of field.selections) {
        if (!['id', 'name', '__typename'].includes(sub.name)) {
          return gqlError(400, `fake AniList: User.${sub.name} is not implemented (only id, name)`, sub);
        }
      }
    }

    // Execution: the Viewer resolver needs a valid bearer token.
    const token = bearerToken(req);
    const record = token === undefined ? undefined : accessTokens.get(token);
    const user =
      record && !record.invalidated && Date.now() < record.expiresAt ? users.get(record.userId) : undefined;
    const data: Record<string, unknown> = {};
    for (const field of parsed.fields) {
      const key = field.alias ?? field.name;
      if (field.name === '__typename') {
        data[key] = 'Query';
        continue;
      }
      if (token === undefined) return gqlError(401, 'Unauthorized.', field, { ...data, [key]: null });
      if (!user) return gqlError(400, 'Invalid token', field, { ...data, [key]: null });
      const viewer: Record<string, unknown> = {};
      for (const sub of field.selections ?? []) {
        viewer[sub.alias ?? sub.name] = sub.name === '__typename' ? 'User' : sub.name === 'id' ? user.id : user.name;
      }
      data[key] = viewer;
    }
    sendJson(res, 200, { data });
  }

  function applyFault(kind: FakeAniListEndpoint, res: ServerResponse): boolean {
    const fault = faults[kind].shift();
    if (!fault) return false;
    switch (fault) {
      case 'http500':
        if (kind === 'graphql') sendJson(res, 500, { errors: [{ message: 'Internal Server Error', status: 500 }], data: null });
        else send(res, 500, 'text/html; charset=UTF-8', '<!doctype html><title>Server Error</title><h1>500 | Server Error</h1>');
        break;
      case 'malformed':
        // 200 claiming JSON, body cut off mid-way (as through a broken proxy).
        send(res, 200, 'application/json', kind === 'graphql' ? '{"data":{"Viewer":{"id":' : '{"token_type":"Bearer","expires_in":315');
        break;
      case 'hang':
        // Never answer; close() destroys the socket.
        break;
    }
    return true;
  }

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const pathname = new URL(req.url ?? '/', origin).pathname;
    const handled = (async () => {
      if (pathname === TOKEN_PATH) {
        counts.token += 1;
        const body = await readBody(req);
        if (applyFault('token', res)) return;
        return handleToken(req, res, body);
      }
      if (pathname === GRAPHQL_PATH) {
        counts.graphql += 1;
        const body = await readBody(req);
        if (applyFault('graphql', res)) return;
        return handleGraphql(req, res, body);
      }
      if (pathname === AUTHORIZE_PATH && (req.method === 'GET' || req.method === 'HEAD')) {
        await readBody(req);
        return handleAuthorizePage(req, res);
      }
      await readBody(req);
      sendJson(res, 404, { error: 'not_found', message: `fake AniList has no ${req.method} ${pathname}` });
    })();
    handled.catch((err: unknown) => {
      if (closing.signal.aborted) return;
      console.error('[fake-anilist] request handler failed:', err);
      if (!res.headersSent) sendJson(res, 500, { error: 'fake_failure', message: String(err) });
      else res.destroy();
    });
  });


  return {
    origin,
    oauthBaseUrl: origin,
    graphqlUrl: `${origin}${GRAPHQL_PATH}`,
    clientId,
    clientSecret,
    users,
    counts,

    approve(authorizeUrl, userId) {
      const { redirectUri, finalRedirectUri, state } = validateAuthorizeRequest(authorizeUrl);
      if (!users.has(userId)) users.set(userId, { id: userId, name: `AniListUser${userId}` });
      const code = opaqueLeagueToken(400);
      codes.set(code, { userId, clientId, redirectUri, expiresAt: Date.now() + CODE_TTL_MS, revoked: false });
      // AuthCodeGrant::completeAuthorizationRequest → makeRedirectUri(finalRedirectUri, {code, state})
      const url = new URL(finalRedirectUri);
      url.searchParams.append('code', code);
      if (state !== undefined) url.searchParams.append('state', state);
      return url;
    },

    deny(authorizeUrl) {
      const { finalRedirectUri, state } = validateAuthorizeRequest(authorizeUrl);
      // OAuthServerException::accessDenied('The user denied the request', makeRedirectUri(final, {state}))
      const url = new URL(finalRedirectUri);
      if (state !== undefined) url.searchParams.append('state', state);
      url.searchParams.append('error', 'access_denied');
      url.searchParams.append('message', MSG_ACCESS_DENIED);
      url.searchParams.append('hint', 'The user denied the request');
      return url;
    },

    invalidate(accessToken) {
      const record = accessTokens.get(accessToken);
      if (!record) throw new Error('fake AniList: invalidate() got a token this fake never issued');
      record.invalidated = true;
    },

    failNext(kind, fault, times = 1) {
      for (let i = 0; i < times; i++) faults[kind].push(fault);
    },

    close() {
      closing.abort();
      return local.close();
    },
  };
}
