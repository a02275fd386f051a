import { randomUUID } from 'node:crypto';
import { ServerResponse } from 'node:http';
import { Http2ServerResponse } from 'node:http2';
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit as honoBodyLimit } from 'hono/body-limit';
import { createMiddleware } from 'hono/factory';
import { matchedRoutes } from 'hono/route';
import type { Metrics } from '../core/metrics.ts';
import { NONCE, secureHeaders } from 'hono/secure-headers';
import type { Logger } from 'pino';
import { authenticateBot, bearerOf, environmentKeys, type Bot } from '../core/callers.ts';
import { LinkgateError } from '../core/errors.ts';

export type AppEnv = {
  Variables: {
    requestId: string;
    secureHeadersNonce?: string;
    /**
     * The request's logger, whose lines carry the request id. Made on first
     * call: most requests log nothing but their closing line, and a pino
     * child per request was a visible share of the status API's CPU.
     */
    log: () => Logger;
    /** How the link being opened tells its users to get a new one, for the error pages of this request. */
    nextStep?: string;
    /** The tenant the request's API key belongs to (bot API routes). */
    tenant: string;
    /** Who is calling the operator API: its key's public id (`keyDigestId`), for the audit trail. */
    operatorKeyId?: string;
  };
};

/**
 * What every request gets first, in one middleware (each layer costs every
 * request a promise and a dispatch, and the status API is the hot path):
 *
 * - an id: the caller's `X-Request-Id` when it is a short token (letters,
 *   digits, `_`, `-`, `=`, at most 64), else a new UUID; echoed back;
 * - `c.get('log')()`, a logger whose lines carry that id;
 * - one closing log line naming the route pattern, never the path or query:
 *   paths carry user ids and queries carry contexts, states and codes;
 * - once the process is stopping (`stopping` aborted), `Connection: close`,
 *   so a client cannot send another request on it while the server drains;
 * - `headers` on every answer, errors and 404s included (see `answerHeaders`).
 */
export function requestScope(options: { logger: Logger; now: () => number; stopping?: AbortSignal | undefined; headers?: Readonly<Record<string, string>> }): MiddlewareHandler<AppEnv> {
  const { logger, now, stopping } = options;
  const headers = Object.entries(options.headers ?? {});
  return createMiddleware<AppEnv>(async function requestScope(c, next) {
    const started = now();
    const reqId = requestIdOf(c.req.header('x-request-id'));
    c.set('requestId', reqId);
    let child: Logger | undefined;
    c.set('log', () => (child ??= logger.child({ reqId })));
    // On the Node response when there is one: it merges them with the answer's own when it sends
    // the head (a header the answer sets itself wins), whoever writes it (the Node adapter, or a
    // library writing to the response directly), and the answer's Response is left as it was made
    // (see setAnswerHeaders). Without one (`app.request()`), on the answer after the handler.
    const outgoing = (c.env as { outgoing?: unknown } | undefined)?.outgoing;
    const node = outgoing instanceof ServerResponse || outgoing instanceof Http2ServerResponse ? outgoing : undefined;
    if (node) {
      node.setHeader('X-Request-Id', reqId);
      for (const [name, value] of headers) node.setHeader(name, value);
    }
    await next();
    if (!node) setAnswerHeaders(c, [['X-Request-Id', reqId], ...headers]);
    // Only on HTTP/1.1: HTTP/2 has no Connection header (RFC 9113 §8.2.2); its connections get a GOAWAY.
    if (stopping?.aborted && outgoing instanceof ServerResponse && !outgoing.headersSent) outgoing.setHeader('Connection', 'close');
    if (logger.isLevelEnabled('info')) logger.info({ reqId, method: c.req.method, route: c.req.routePath, status: c.res.status, ms: now() - started }, 'request');
  });
}

/** The request's id: the caller's `X-Request-Id` when it is a short token (letters, digits, `_`, `-`, `=`, at most 64), else a new UUID. */
export function requestIdOf(asked: string | null | undefined): string {
  return asked !== undefined && asked !== null && asked.length <= 64 && /^[\w=-]+$/.test(asked) ? asked : randomUUID();
}

/**
 * Sets headers on the answer a handler has already made. Hono's `c.header`
 * at that point copies the Response first (a fetch() answer's headers are
 * immutable), and the copy turns the Node adapter's plain string body into
 * a stream read chunk by chunk and written apart from the head (most of what
 * took the status API from 119.6 to 102.9 µs of CPU, bench/README.md). The
 * answers we make have mutable headers, so they are set in place; an
 * immutable one is still copied.
 */
export function setAnswerHeaders(c: Context<AppEnv>, headers: ReadonlyArray<readonly [string, string]>): void {
  // As on the Node response (requestScope): a header the answer sets itself wins.
  const answer = c.res.headers;
  const missing = headers.filter(([name]) => !answer.has(name));
  try {
    for (const [name, value] of missing) answer.set(name, value);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    for (const [name, value] of missing) c.header(name, value);
  }
}

/** RFC 6797: a year; subdomains are the operator's to decide, so `includeSubDomains` is left out. */
export const HSTS = 'max-age=31536000';

/**
 * What every answer carries, API and pages alike: nothing is stored by a
 * cache (token answers hold access tokens, link answers and the delivery log
 * personal data), no content sniffing, and HSTS when browsers reach the
 * gateway over https (they ignore it over plain http, RFC 6797 §8.1).
 */
export function answerHeaders(https: boolean): Record<string, string> {
  return { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff', ...(https ? { 'Strict-Transport-Security': HSTS } : {}) };
}

/** Times every request into the latency histogram, labelled by route pattern (never the path). */
export function requestMetrics(metrics: Metrics, now: () => number): MiddlewareHandler<AppEnv> {
  return createMiddleware<AppEnv>(async function requestMetrics(c, next) {
    const started = now();
    try {
      await next();
    } finally {
      const route = matchedRoutes(c).findLast((r) => r.method !== 'ALL');
      metrics.observeRequest({ method: c.req.method, route: route ? route.path : '(no route)', status: String(c.res.status) }, (now() - started) / 1000);
    }
  });
}

/**
 * Tells tracing which route answers the request, before the handler runs
 * (so an error it reports is named too): `GET /api/v1/users/:userId/links`,
 * the pattern, never the path, which carries user ids. Requests no route
 * answers share one name, whatever path they asked for.
 */
export function traceRoute(name: (route: string) => void): MiddlewareHandler<AppEnv> {
  return createMiddleware<AppEnv>(async function traceRoute(c, next) {
    // Middleware is registered for ALL methods; the handler for the request's own.
    const route = matchedRoutes(c).findLast((r) => r.method !== 'ALL');
    name(`${c.req.method} ${route ? route.path : '(no route)'}`);
    await next();
  });
}

/** How API keys are checked, on the API and on /metrics alike. */
export interface ApiKeys {
  /** Constant-time check against the configured keys (createApiKeyCheck). */
  check: (presented: string) => boolean;
  /**
   * Counts a request without a valid key (per client address): nothing to
   * wait for, a promise to, or a 429 thrown once the address is over its
   * limit. Guessing keys, or a bot stuck on a wrong one, turns from endless
   * 401s into 429s.
   */
  countRefused: (c: Context<AppEnv>) => void | Promise<void>;
}

/** Bearer API keys: a wrong or missing key is counted and answered 401. */
export function apiKeyAuth(keys: ApiKeys): MiddlewareHandler<AppEnv> {
  // Not async: passing a request on is one call, not one more promise and microtask per request.
  return createMiddleware<AppEnv>(function apiKeyAuth(c, next) {
    return validApiKey(c, keys) === undefined ? refuseApiKey(c, keys) : next();
  });
}

/** The request's API key, when it is one of the environment's (`/metrics`; the bot API resolves any tenant's in its gate). */
export function validApiKey(c: Context<AppEnv>, keys: ApiKeys): string | undefined {
  return (authenticateBot(environmentKeys(keys.check), c.req.header('authorization')) as Bot | undefined)?.key;
}

/** A request without a valid key: counted against its address, then 401 `unauthorized` (or the count's 429). */
export function refuseApiKey(c: Context<AppEnv>, keys: ApiKeys): never | Promise<never> {
  const refuse = (): never => {
    c.header('WWW-Authenticate', 'Bearer realm="linkgate"');
    throw new LinkgateError('unauthorized', 'a valid API key is required (Authorization: Bearer <key>)');
  };
  const counted = keys.countRefused(c);
  return counted ? counted.then(refuse) : refuse();
}

/** The key in `Authorization: Bearer <key>`, if the header has that shape. */
export function bearerToken(c: Context<AppEnv>): string | undefined {
  return bearerOf(c.req.header('authorization'));
}

/**
 * Request bodies over `maxSize` bytes are refused with 413 before they are
 * read. GET, HEAD and DELETE skip the check: looking for a body makes the
 * Node adapter build a full Request, a tenth of the status API's CPU.
 */
export function bodyLimit(maxSize: number): MiddlewareHandler<AppEnv> {
  const limit = honoBodyLimit({
    maxSize,
    onError: (c) => {
      // The rest of the body is left unread: the connection cannot carry another request.
      c.header('Connection', 'close');
      throw new LinkgateError('payload_too_large', `the request body is larger than ${maxSize} bytes`);
    },
  });
  return createMiddleware<AppEnv>(function bodyLimit(c, next) {
    const method = c.req.method;
    if (method === 'GET' || method === 'HEAD' || method === 'DELETE') return next();
    return limit(c, next);
  });
}

/**
 * Headers for every browser page: a nonce-only CSP (no inline anything),
 * no caching, no referrer (URLs carry states and codes), no framing.
 */
/** The pages' Content-Security-Policy, directive by directive (`NONCE`: the request's nonce). */
const PAGE_CSP = {
  defaultSrc: ["'none'"],
  styleSrc: [NONCE],
  scriptSrc: [NONCE],
  connectSrc: ["'self'"],
  // data: for an operator's icon given inline (LINKGATE_BRAND_ICON_URL).
  imgSrc: ["'self'", 'data:'],
  baseUri: ["'none'"],
  frameAncestors: ["'none'"],
  // No form-action: Chrome applies it to the redirect after a POST, and a
  // provider form may legitimately continue at the provider.
};

/**
 * The headers of `pageHeaders` for a page answered outside Hono's middleware
 * (oidc-provider writes its own pages): the same policy, with `nonce`.
 */
export function pageHeadersFor(nonce: string): Record<string, string> {
  const policy = Object.entries(PAGE_CSP)
    .map(([name, sources]) => `${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} ${sources.map((source) => (source === NONCE ? `'nonce-${nonce}'` : source)).join(' ')}`)
    .join('; ');
  return {
    'Content-Security-Policy': policy,
    'X-Frame-Options': 'DENY',
    'Referrer-Policy': 'no-referrer',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'X-Content-Type-Options': 'nosniff',
    'Cache-Control': 'no-store',
  };
}

export function pageHeaders(): MiddlewareHandler<AppEnv> {
  const secure = secureHeaders({
    contentSecurityPolicy: PAGE_CSP,
    referrerPolicy: 'no-referrer',
    xFrameOptions: 'DENY',
    crossOriginOpenerPolicy: 'same-origin',
    strictTransportSecurity: false,
  });
  return createMiddleware<AppEnv>(async function pageHeaders(c, next) {
    await secure(c, async () => {
      await next();
      c.header('Cache-Control', 'no-store');
    });
  });
}

/** The request's JSON body: 400 `bad_request` unless it is declared and parses as JSON. */
export async function readJsonBody(c: Context<AppEnv>): Promise<unknown> {
  if (!/^application\/json\b/i.test(c.req.header('content-type') ?? '')) throw new LinkgateError('bad_request', 'expected a JSON body (Content-Type: application/json)');
  try {
    return await c.req.json();
  } catch {
    throw new LinkgateError('bad_request', 'the body is not valid JSON');
  }
}
