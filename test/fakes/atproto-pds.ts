/**
 * A real ATProto network running in-process, for tests that need a genuine ATProto OAuth peer:
 * a PLC directory (`@did-plc/server` on its in-memory database) and a PDS (`@atproto/pds`) whose
 * built-in OAuth authorization server is on (PAR, PKCE, DPoP with nonces, single-use refresh
 * tokens, revocation). No app view, moderation service, e-mail or invites.
 *
 * Hostnames: both services answer on `http://localhost:<port>` (listening on 127.0.0.1 and, when
 * the machine has it, ::1). It has to be `localhost`, not 127.0.0.1:
 * - the PDS derives its public URL, OAuth issuer and DID-document service endpoint from
 *   `hostname: 'localhost'` as `http://localhost:<port>` (any other hostname becomes `https://…`);
 * - the PDS fetches DID documents from the PLC through its "safe fetch", which refuses IP hosts.
 *
 * For `@atproto/oauth-client-node` (see atproto-pds.test.ts): `allowHttp: true`,
 * `handleResolver: network.pdsUrl` (its `com.atproto.identity.resolveHandle` answers for the PDS's
 * own `.test` handles; DNS and `/.well-known/atproto-did` cannot work locally) and
 * `plcDirectoryUrl: network.plcUrl`.
 *
 * `authorizeInBrowserless()` drives the PDS's sign-in and consent the way its web UI does: the
 * authorization page (which sets the device and CSRF cookies), then the UI's JSON API
 * (`/@atproto/oauth-provider/~api/sign-in`, `/consent`) with the same-origin fetch metadata,
 * `Referer`, `x-csrf-token` header and ephemeral bearer token the browser would send, then the
 * `/oauth/authorize/redirect` hop, returning the redirect to the client without following it.
 * Each call is one fresh browser (its own cookie jar): the PDS binds a request to the device that
 * first opened it, so a second call on the same authorization URL gets `error=access_denied`.
 *
 * Cost: importing @atproto/pds takes ~2 s and ~230 MiB RSS per test worker; each network then
 * starts in well under a second. Keep ATProto tests in few files.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type RequestListener,
  type Server,
} from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Database as PlcDatabase, PlcServer } from '@did-plc/server';
import { envToCfg, envToSecrets, PDS } from '@atproto/pds';

/** The OAuth provider's default access-token lifetime (`TOKEN_MAX_AGE` in @atproto/oauth-provider). */
const DEFAULT_TOKEN_MAX_AGE_MS = 60 * 60 * 1000;
/** `TokenManager.createTokenExpiry` refuses lifetimes of 250 ms or less ("Session expired"). */
const MIN_TOKEN_TTL_MS = 1000;
const API_PREFIX = '/@atproto/oauth-provider/~api';
const USER_AGENT = 'Mozilla/5.0 (X11; Linux x86_64) linkgate-test-harness';

export interface AtprotoAccount {
  did: string;
  handle: string;
}

export interface AtprotoRecord {
  uri: string;
  cid: string;
  value: Record<string, unknown>;
}

export interface AtprotoNetwork {
  /** `http://localhost:<port>`: the PDS, its OAuth issuer, and the handle resolver to give the client. */
  pdsUrl: string;
  /** `http://localhost:<port>`: the PLC directory, the client's `plcDirectoryUrl`. */
  plcUrl: string;
  /** Creates an account through `com.atproto.server.createAccount`; `handle` must end in `.test`. */
  createAccount(input: { handle: string; email: string; password: string }): Promise<AtprotoAccount>;
  /** Refresh-token grants the PDS completed (a new token pair was issued). */
  refreshCount(): number;
  /** Refresh-token grants that reached the PDS's token manager, including refused ones (replays, revoked). */
  refreshAttemptCount(): number;
  /**
   * Lifetime of access tokens issued from now on (code exchange and refresh), in ms; `undefined`
   * restores the default (1 h). Tokens already issued keep their expiry. See `tokenMaxAgeSetter`.
   */
  setAccessTokenTtl(ms: number | undefined): void;
  /** OAuth sessions (token families) the PDS holds for `did`; 0 after revocation. */
  oauthSessionCount(did: string): Promise<number>;
  /** `com.atproto.repo.listRecords` (public, unauthenticated), newest first. */
  listRecords(repo: string, collection: string): Promise<AtprotoRecord[]>;
  /** `com.atproto.repo.getRecord`; `undefined` when the record does not exist. */
  getRecord(repo: string, collection: string, rkey: string): Promise<AtprotoRecord | undefined>;
  close(): Promise<void>;
}

export interface StartAtprotoNetworkOptions {
  /** Initial access-token lifetime in ms (default: the provider's 1 h). */
  accessTokenTtlMs?: number;
}

/** The PDS answered a harness request with an error. */
export class AtprotoHarnessError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(message: string, code: string, status: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
  }
}

/** The PDS's authorization UI refused the sign-in or consent (wrong password, unknown account, …). */
export class AtprotoSignInError extends Error {
  readonly code: string;
  readonly status: number;
  /** The provider's JSON error body (`error`, `error_description`). */
  override readonly cause: unknown;
  constructor(message: string, code: string, status: number, cause: unknown) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.cause = cause;
  }
}

// ---------------------------------------------------------------------------------------------
// Loopback listening: one handler on 127.0.0.1:<port> and [::1]:<same port>, so `localhost`
// reaches it whichever address family the resolver returns first.
// ---------------------------------------------------------------------------------------------

interface LoopbackServer {
  port: number;
  origin: string; // http://localhost:<port>
  setHandler(handler: RequestListener): void;
  close(): Promise<void>;
}

async function listen(server: Server, port: number, host: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function trackedServer(handler: RequestListener): { server: Server; sockets: Set<Socket> } {
  const server = createServer(handler);
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  return { server, sockets };
}

async function listenLoopback(): Promise<LoopbackServer> {
  let handler: RequestListener = (_req, res) => {
    res.statusCode = 503;
    res.end('starting');
  };
  const dispatch: RequestListener = (req, res) => handler(req, res);

  for (let attempt = 0; attempt < 5; attempt++) {
    const v4 = trackedServer(dispatch);
    await listen(v4.server, 0, '127.0.0.1');
    const { port } = v4.server.address() as AddressInfo;
    const servers = [v4];
    const v6 = trackedServer(dispatch);
    try {
      await listen(v6.server, port, '::1');
      servers.push(v6);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE') {
        // Someone else holds [::1]:port, and `localhost` might reach them: pick another port.
        await closeServers(servers);
        continue;
      }
      if (code !== 'EADDRNOTAVAIL' && code !== 'EAFNOSUPPORT') {
        await closeServers(servers);
        throw err;
      }
      // No IPv6 loopback on this machine: `localhost` can only mean 127.0.0.1.
    }
    let closed: Promise<void> | undefined;
    return {
      port,
      origin: `http://localhost:${port}`,
      setHandler(next) {
        handler = next;
      },
      close() {
        closed ??= closeServers(servers);
        return closed;
      },
    };
  }
  throw new Error('could not find a port free on both 127.0.0.1 and ::1');
}

async function closeServers(servers: { server: Server; sockets: Set<Socket> }[]): Promise<void> {
  await Promise.all(
    servers.map(
      ({ server, sockets }) =>
        new Promise<void>((resolve, reject) => {
          server.close((err) => (err ? reject(err) : resolve()));
          server.closeAllConnections();
          for (const socket of sockets) socket.destroy();
        }),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// The network
// ---------------------------------------------------------------------------------------------

/** Data directories of networks not closed yet, removed if the process exits first (a test without `close()`). */
const liveDataDirectories = new Set<string>();
let exitHookInstalled = false;

function removeOnExit(directory: string): void {
  liveDataDirectories.add(directory);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const dir of liveDataDirectories) rmSync(dir, { recursive: true, force: true });
  });
}

/** A fresh secp256k1 private key as 64 hex chars (the PDS's PLC rotation key). */
function secp256k1PrivateKeyHex(): string {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
  const d = privateKey.export({ format: 'jwk' }).d;
  if (!d) throw new Error('secp256k1 key export has no private scalar');
  return Buffer.from(d, 'base64url').toString('hex').padStart(64, '0');
}

export async function startAtprotoNetwork(options: StartAtprotoNetworkOptions = {}): Promise<AtprotoNetwork> {
  const cleanups: (() => Promise<void>)[] = [];
  const runCleanups = async () => {
    const errors: unknown[] = [];
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, 'closing the ATProto network failed');
  };

  try {
    // PLC directory, in memory.
    const plcListener = await listenLoopback();
    cleanups.push(() => plcListener.close());
    const plc = PlcServer.create({ db: PlcDatabase.mock(), port: plcListener.port });
    plcListener.setHandler(plc.app);
    // Stop taking requests before closing what serves them (listener close is idempotent).
    cleanups.push(async () => {
      await plcListener.close();
      await plc.ctx.db.close();
    });

    // PDS, on a temporary data directory.
    const pdsListener = await listenLoopback();
    cleanups.push(() => pdsListener.close());
    const dataDirectory = await mkdtemp(join(tmpdir(), 'linkgate-pds-'));
    removeOnExit(dataDirectory);
    cleanups.push(async () => {
      await rm(dataDirectory, { recursive: true, force: true });
      liveDataDirectories.delete(dataDirectory);
    });

    const env = {
      devMode: true,
      hostname: 'localhost',
      port: pdsListener.port,
      serviceName: 'Linkgate test PDS',
      dataDirectory,
      blobstoreDiskLocation: join(dataDirectory, 'blobs'),
      didPlcUrl: plcListener.origin,
      serviceHandleDomains: ['.test'],
      inviteRequired: false,
      disableSsrfProtection: true,
      plcRotationKeyK256PrivateKeyHex: secp256k1PrivateKeyHex(),
      jwtSecret: randomBytes(32).toString('hex'),
      dpopSecret: randomBytes(32).toString('hex'),
      adminPassword: randomBytes(16).toString('hex'),
    };
    const pds = await PDS.create(envToCfg(env), envToSecrets(env));
    cleanups.push(async () => {
      await pdsListener.close();
      await pds.destroy();
    });
    // What PDS.start() does, minus listening: we already listen (no port race, loopback only).
    await pds.ctx.sequencer.start();
    pdsListener.setHandler(pds.app);

    const provider = pds.ctx.oauthProvider;
    if (!provider) throw new Error('the PDS has no OAuth provider (is an entryway configured?)');
    const tokenManager = provider.tokenManager;

    // Refresh counting: wrap the token manager's two public refresh steps on this instance.
    // `consumeRefreshToken` runs for every refresh grant (and throws on a replayed or unknown
    // token); `rotateToken` issues the new pair. Counting here, rather than parsing HTTP bodies,
    // sees exactly what the authorization server did.
    let refreshAttempts = 0;
    let refreshes = 0;
    const consumeRefreshToken = tokenManager.consumeRefreshToken.bind(tokenManager);
    tokenManager.consumeRefreshToken = (token) => {
      refreshAttempts++;
      return consumeRefreshToken(token);
    };
    const rotateToken = tokenManager.rotateToken.bind(tokenManager);
    tokenManager.rotateToken = async (...args) => {
      const response = await rotateToken(...args);
      refreshes++;
      return response;
    };

    const setTokenMaxAge = tokenMaxAgeSetter(tokenManager);
    if (options.accessTokenTtlMs !== undefined) setTokenMaxAge(options.accessTokenTtlMs);

    const pdsUrl = pdsListener.origin;
    if (pds.ctx.cfg.service.publicUrl !== pdsUrl || provider.issuer !== pdsUrl) {
      throw new Error(`PDS public URL ${pds.ctx.cfg.service.publicUrl} / issuer ${provider.issuer} differ from ${pdsUrl}`);
    }

    return {
      pdsUrl,
      plcUrl: plcListener.origin,
      async createAccount({ handle, email, password }) {
        const body = await xrpc(pdsUrl, 'com.atproto.server.createAccount', { method: 'POST', body: { handle, email, password } });
        const did = stringField(body, 'did');
        const createdHandle = stringField(body, 'handle');
        return { did, handle: createdHandle };
      },
      refreshCount: () => refreshes,
      refreshAttemptCount: () => refreshAttempts,
      setAccessTokenTtl(ms) {
        setTokenMaxAge(ms ?? DEFAULT_TOKEN_MAX_AGE_MS);
      },
      async oauthSessionCount(did) {
        if (!did.startsWith('did:')) throw new TypeError('oauthSessionCount expects a DID');
        const tokens = await tokenManager.listAccountTokens(did as `did:${string}:${string}`);
        return tokens.length;
      },
      async listRecords(repo, collection) {
        const body = await xrpc(pdsUrl, 'com.atproto.repo.listRecords', { query: { repo, collection, limit: '100' } });
        const records = (body as { records?: unknown }).records;
        if (!Array.isArray(records)) throw new AtprotoHarnessError('listRecords answered without records', 'ERR_BAD_RESPONSE', 200);
        return records.map(toRecord);
      },
      async getRecord(repo, collection, rkey) {
        try {
          return toRecord(await xrpc(pdsUrl, 'com.atproto.repo.getRecord', { query: { repo, collection, rkey } }));
        } catch (err) {
          if (err instanceof AtprotoHarnessError && err.code === 'RecordNotFound') return undefined;
          throw err;
        }
      },
      close: runCleanups,
    };
  } catch (err) {
    await runCleanups().catch(() => undefined);
    throw err;
  }
}

/**
 * The PDS builds its `OAuthProvider` itself and passes no `tokenMaxAge`, so access tokens live the
 * provider's default hour. `TokenManager` keeps the value as a plain instance property
 * (`this.tokenMaxAge`, declared `protected readonly` in its types only) and reads it on every
 * issuance in `createTokenExpiry()` — so setting it on the live instance changes the lifetime of
 * every token issued afterwards, by code exchange or refresh, with the real expiry logic
 * (capped by the session lifetime, `expires_in` in the response, `exp` in the JWT, `expiresAt`
 * in the PDS's token table that stateful access-token mode checks on every request).
 * Checked at start-up so an upgrade that moves the property fails loudly here.
 */
function tokenMaxAgeSetter(tokenManager: object): (ms: number) => void {
  if (typeof Reflect.get(tokenManager, 'tokenMaxAge') !== 'number') {
    throw new Error('@atproto/oauth-provider TokenManager has no numeric tokenMaxAge: the harness needs updating');
  }
  return (ms) => {
    if (!Number.isInteger(ms) || ms < MIN_TOKEN_TTL_MS) {
      throw new RangeError(`access-token TTL must be an integer of at least ${MIN_TOKEN_TTL_MS} ms`);
    }
    Reflect.set(tokenManager, 'tokenMaxAge', ms);
  };
}

async function xrpc(
  origin: string,
  nsid: string,
  { method = 'GET', query, body }: { method?: 'GET' | 'POST'; query?: Record<string, string>; body?: unknown },
): Promise<unknown> {
  const url = new URL(`/xrpc/${nsid}`, origin);
  for (const [key, value] of Object.entries(query ?? {})) url.searchParams.set(key, value);
  const response = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!response.ok) {
    const error = json && typeof json === 'object' ? (json as { error?: unknown; message?: unknown }) : {};
    const code = typeof error.error === 'string' ? error.error : `HTTP_${response.status}`;
    const message = typeof error.message === 'string' ? error.message : text.slice(0, 200);
    throw new AtprotoHarnessError(`${nsid} failed (${response.status} ${code}): ${message}`, code, response.status, { cause: json });
  }
  return json;
}

function stringField(body: unknown, field: string): string {
  const value = body && typeof body === 'object' ? (body as Record<string, unknown>)[field] : undefined;
  if (typeof value !== 'string') throw new AtprotoHarnessError(`response has no string "${field}"`, 'ERR_BAD_RESPONSE', 200);
  return value;
}

function toRecord(raw: unknown): AtprotoRecord {
  const value = raw && typeof raw === 'object' ? (raw as Record<string, unknown>).value : undefined;
  if (!value || typeof value !== 'object') throw new AtprotoHarnessError('record has no value', 'ERR_BAD_RESPONSE', 200);
  return { uri: stringField(raw, 'uri'), cid: stringField(raw, 'cid'), value: value as Record<string, unknown> };
}

// ---------------------------------------------------------------------------------------------
// Headless sign-in through the PDS's authorization UI API
// ---------------------------------------------------------------------------------------------

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/**
 * A plain node:http request. Not `fetch`: undici sets `Sec-Fetch-Mode: cors` on every request and
 * ignores ours, and the provider insists on `navigate` for pages and `same-origin` for its API.
 */
function rawRequest(url: URL, { method = 'GET', headers, body }: { method?: string; headers: OutgoingHttpHeaders; body?: string }): Promise<RawResponse> {
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, { method, headers: body === undefined ? headers : { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.setTimeout(15_000, () => req.destroy(new Error(`${method} ${url.pathname} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

class CookieJar {
  readonly #cookies = new Map<string, string>();

  store(response: RawResponse): void {
    for (const header of response.headers['set-cookie'] ?? []) {
      const [pair = '', ...attributes] = header.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired =
        value === '' ||
        attributes.some((attribute) => {
          const [key = '', ...rest] = attribute.split('=');
          const attrValue = rest.join('=').trim();
          const attrKey = key.trim().toLowerCase();
          return (attrKey === 'max-age' && Number(attrValue) <= 0) || (attrKey === 'expires' && Date.parse(attrValue) <= Date.now());
        });
      // Every cookie the provider sets has Path=/ on the issuer's host: one flat jar is enough.
      if (expired) this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }

  get(name: string): string | undefined {
    const value = this.#cookies.get(name);
    return value === undefined ? undefined : decodeURIComponent(value);
  }

  header(): { cookie?: string } {
    if (this.#cookies.size === 0) return {};
    return { cookie: [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ') };
  }
}

export interface SignInOptions {
  /** Handle, DID or e-mail to sign in with; it may differ from the request's login_hint. */
  identifier: string;
  password: string;
}

/**
 * Signs in and consents at the PDS for the authorization request in `authorizationUrl` (what
 * `client.authorize()` returned), and returns the redirect to the client's `redirect_uri` — with
 * `code`, `state` and `iss`, or `error` — without following it. Throws `AtprotoSignInError` when
 * the PDS refuses the sign-in (code `ERR_SIGN_IN_REFUSED`), the consent, or the page itself.
 */
export async function authorizeInBrowserless(authorizationUrl: URL | string, { identifier, password }: SignInOptions): Promise<URL> {
  const page = await openAuthorizationPage(authorizationUrl);
  if (page instanceof URL) return page; // the PDS answered without a page (SSO, or an error redirect)

  // remember: false, as the UI's default inside an OAuth request: no device session is kept, and
  // the consent call authenticates with the ephemeral token instead.
  const signIn = await page.api('/sign-in', { locale: 'en', username: identifier, password, remember: false });
  if (!signIn.ok) {
    throw new AtprotoSignInError(
      `the PDS refused the sign-in as ${identifier} (${signIn.status} ${errorCode(signIn.body)}): ${errorDescription(signIn.body)}`,
      'ERR_SIGN_IN_REFUSED',
      signIn.status,
      signIn.body,
    );
  }
  const account = (signIn.body as { account?: { did?: unknown } }).account;
  const ephemeralToken = (signIn.body as { ephemeralToken?: unknown }).ephemeralToken;
  if (typeof account?.did !== 'string' || typeof ephemeralToken !== 'string') {
    throw new AtprotoSignInError('sign-in answered without an account DID or ephemeral token', 'ERR_BAD_RESPONSE', signIn.status, undefined);
  }

  const consent = await page.api('/consent', { did: account.did }, { authorization: `Bearer ${ephemeralToken}` });
  return page.finish(consent, 'consent');
}

/** The user cancels on the PDS's authorization page: returns the redirect carrying `error=access_denied`. */
export async function rejectInBrowserless(authorizationUrl: URL | string): Promise<URL> {
  const page = await openAuthorizationPage(authorizationUrl);
  if (page instanceof URL) return page;
  return page.finish(await page.api('/reject', {}), 'reject');
}

interface ApiResult {
  ok: boolean;
  status: number;
  body: unknown;
}

interface AuthorizationPage {
  /** A call the page's scripts make to the provider's UI API. */
  api(endpoint: string, body: unknown, headers?: Record<string, string>): Promise<ApiResult>;
  /** Navigates to the `{ url }` an API call answered (`/oauth/authorize/redirect`) and returns its redirect. */
  finish(result: ApiResult, step: string): Promise<URL>;
}

async function openAuthorizationPage(authorizationUrl: URL | string): Promise<AuthorizationPage | URL> {
  const pageUrl = new URL(authorizationUrl);
  const origin = pageUrl.origin;
  const jar = new CookieJar();

  // The browser navigating from the client's site to the authorization endpoint. The page sets the
  // device cookies (dev-id, ses-id) and the CSRF cookie.
  const page = await rawRequest(pageUrl, {
    headers: {
      accept: 'text/html',
      'user-agent': USER_AGENT,
      'sec-fetch-mode': 'navigate',
      'sec-fetch-dest': 'document',
      'sec-fetch-site': 'cross-site',
    },
  });
  jar.store(page);
  if (page.status >= 300 && page.status < 400) return redirectLocation(page, pageUrl);
  if (page.status !== 200) {
    const error = pageErrorData(page.text);
    throw new AtprotoSignInError(
      `the authorization page answered ${page.status} (${errorCode(error)}): ${errorDescription(error)}`,
      'ERR_AUTHORIZATION_PAGE',
      page.status,
      error,
    );
  }

  // The provider checks the fetch metadata, the Origin, that the Referer is this authorization page
  // (it reads the request_uri from it), and that the x-csrf-token header equals the csrf-token cookie.
  const api: AuthorizationPage['api'] = async (endpoint, body, headers = {}) => {
    const csrf = jar.get('csrf-token');
    const response = await rawRequest(new URL(`${API_PREFIX}${endpoint}`, origin), {
      method: 'POST',
      headers: {
        accept: 'application/json',
        'content-type': 'application/json',
        'user-agent': USER_AGENT,
        origin,
        referer: pageUrl.href,
        'sec-fetch-mode': 'same-origin',
        'sec-fetch-site': 'same-origin',
        'sec-fetch-dest': 'empty',
        ...(csrf ? { 'x-csrf-token': csrf } : {}),
        ...jar.header(),
        ...headers,
      },
      body: JSON.stringify(body),
    });
    jar.store(response);
    let json: unknown;
    try {
      json = JSON.parse(response.text);
    } catch {
      json = response.text.slice(0, 200);
    }
    return { ok: response.status >= 200 && response.status < 300, status: response.status, body: json };
  };

  const finish: AuthorizationPage['finish'] = async (result, step) => {
    const url = (result.body as { url?: unknown } | undefined)?.url;
    if (!result.ok || typeof url !== 'string') {
      throw new AtprotoSignInError(
        `the PDS refused the ${step} (${result.status} ${errorCode(result.body)}): ${errorDescription(result.body)}`,
        `ERR_${step.toUpperCase()}_REFUSED`,
        result.status,
        result.body,
      );
    }
    const hop = new URL(url);
    if (hop.origin !== origin) {
      throw new AtprotoSignInError(`the ${step} redirect leaves the PDS: ${hop.origin}`, 'ERR_BAD_RESPONSE', result.status, result.body);
    }
    const redirect = await rawRequest(hop, {
      headers: {
        accept: 'text/html',
        'user-agent': USER_AGENT,
        referer: pageUrl.href,
        'sec-fetch-mode': 'navigate',
        'sec-fetch-dest': 'document',
        'sec-fetch-site': 'same-origin',
        ...jar.header(),
      },
    });
    if (redirect.status < 300 || redirect.status >= 400) {
      const error = pageErrorData(redirect.text);
      throw new AtprotoSignInError(
        `the authorization redirect answered ${redirect.status} (${errorCode(error)}): ${errorDescription(error)}`,
        'ERR_BAD_RESPONSE',
        redirect.status,
        error,
      );
    }
    return redirectLocation(redirect, hop);
  };

  return { api, finish };
}

function redirectLocation(response: RawResponse, base: URL): URL {
  const location = response.headers.location;
  if (!location) throw new AtprotoSignInError(`redirect ${response.status} without Location`, 'ERR_BAD_RESPONSE', response.status, undefined);
  return new URL(location, base);
}

/** The provider's error page carries its error as `window["__errorData"]=JSON.parse("…")`. */
function pageErrorData(html: string): unknown {
  const match = /window\["__errorData"\]=JSON\.parse\(("(?:[^"\\]|\\.)*")\)/.exec(html);
  if (!match?.[1]) return html.slice(0, 200);
  try {
    return JSON.parse(JSON.parse(match[1]) as string);
  } catch {
    return html.slice(0, 200);
  }
}

function errorCode(body: unknown): string {
  const error = body && typeof body === 'object' ? (body as { error?: unknown }).error : undefined;
  return typeof error === 'string' ? error : 'unknown_error';
}

function errorDescription(body: unknown): string {
  if (typeof body === 'string') return body;
  const description = body && typeof body === 'object' ? (body as { error_description?: unknown }).error_description : undefined;
  return typeof description === 'string' ? description : 'no description';
}
