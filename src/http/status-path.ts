/**
 * The status API's plain request, answered beside Hono: `GET
 * /api/v1/users/:userId/links/:provider` over HTTP/1.1, without a query,
 * from a key and a tenant known in memory. Bots ask it before every command
 * that needs a link, so it is the gateway's hot path; going through Hono's
 * router, context and middleware chain cost it about half again as much CPU
 * as the bare query (bench/README.md, issue #24).
 *
 * It is the same answer by the same parts, not a second implementation: the
 * key is checked by `authenticateBot`, counted by the rate limiter, the link
 * read by `LinkStore.status` and shown by `toApiLink`, a missing link
 * answered by `relinkBody` with a link URL from `signLinkUrl`, and the
 * request id, answer headers, log line and metrics are the ones
 * `requestScope` and `requestMetrics` give every other request.
 *
 * Whatever is not plain goes to the Hono route, which stays the whole
 * definition of the route: another method, a query (`verify`,
 * `requireScopes`), an escaped path, HTTP/2, a key or a tenant that needs
 * the database, a header that would make the answer an error, an unknown or
 * unconfigured provider, a request the rate limiter refuses, and any
 * failure (a database error included). Nothing is decided here before
 * that: the only side effect before the read is the rate limiter's count
 * of a request it lets through, and a failure after it is answered by the
 * route, which counts the request again (one extra count, in an outage).
 * test/http/status-path.test.ts sends each case both ways and compares the
 * answers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import * as v from 'valibot';
import { authenticateBot } from '../core/callers.ts';
import type { LinkStore } from '../core/links.ts';
import { toApiLink } from '../core/links.ts';
import type { Metrics } from '../core/metrics.ts';
import type { RateLimiter } from '../core/rate-limit.ts';
import type { ProviderDirectory } from '../core/tenant-providers.ts';
import type { TenantStore } from '../core/tenants.ts';
import { databaseFailure, logCause } from '../db/errors.ts';
import { LinkParams, notLinkedMessage, relinkBody, signLinkUrl } from './api.ts';
import type { RequestHandler } from './listener.ts';
import { requestIdOf } from './middleware.ts';

/** The route, as the log line, the metrics and tracing name it. */
export const STATUS_ROUTE = '/api/v1/users/:userId/links/:provider';
const TRACE_NAME = `GET ${STATUS_ROUTE}`;
const PLAIN_PATH = /^\/api\/v1\/users\/([^/?#%]+)\/links\/([^/?#%]+)$/;

export interface StatusPathDeps {
  tenants: Pick<TenantStore, 'resolveApiKey' | 'settings' | 'signingSecret'>;
  providers: ProviderDirectory;
  links: Pick<LinkStore, 'status'>;
  limiter: RateLimiter;
  logger: Logger;
  now: () => number;
  publicBaseUrl: URL;
  contextTtlSeconds: number;
  /** The headers every answer carries (`answerHeaders`). */
  headers: Readonly<Record<string, string>>;
  metrics?: Metrics | undefined;
  nameRoute?: ((name: string) => void) | undefined;
  stopping?: AbortSignal | undefined;
}

/** The headers the status request is decided by, as Hono reads them: repeated ones joined by ", ". */
function requestHeaders(raw: string[]): { authorization?: string; tenant?: string; requestId?: string } {
  const found: { authorization?: string; tenant?: string; requestId?: string } = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    // Length first: most headers are none of the three.
    const field = name.length === 13 ? 'authorization' : name.length === 11 ? 'tenant' : name.length === 12 ? 'requestId' : undefined;
    if (field === undefined || name.toLowerCase() !== (field === 'tenant' ? 'x-tenant-id' : field === 'requestId' ? 'x-request-id' : 'authorization')) continue;
    const value = raw[i + 1]!;
    found[field] = found[field] === undefined ? value : `${found[field]}, ${value}`;
  }
  return found;
}

export function statusPath(deps: StatusPathDeps, route: RequestHandler): RequestHandler {
  const { logger, now } = deps;
  const tenantOf = (presented: string) => deps.tenants.resolveApiKey(presented);

  async function answer(response: ServerResponse, started: number, requestId: string | undefined, tenant: string, userId: string, provider: { id: string; displayName: string }) {
    const row = await deps.links.status({ tenant, userId, provider: provider.id });
    let status: number;
    let body: string;
    if (row) {
      status = 200;
      body = JSON.stringify(toApiLink(row));
    } else {
      const { url } = await signLinkUrl(deps, tenant, userId, provider.id);
      status = 404;
      body = JSON.stringify(relinkBody({ code: 'not_linked', message: notLinkedMessage(provider.displayName) }, url));
    }
    const reqId = requestIdOf(requestId);
    // All in writeHead, which writes the head at once when nothing was set on the response before.
    const headers: Record<string, string | number> = { 'X-Request-Id': reqId, ...deps.headers, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) };
    if (deps.stopping?.aborted) headers.Connection = 'close';
    response.writeHead(status, headers).end(body);
    const seconds = (now() - started) / 1000;
    deps.metrics?.observeRequest({ method: 'GET', route: STATUS_ROUTE, status: String(status) }, seconds);
    if (logger.isLevelEnabled('info')) logger.info({ reqId, method: 'GET', route: STATUS_ROUTE, status, ms: now() - started }, 'request');
  }

  return (request, response) => {
    if (request.method !== 'GET' || request.httpVersionMajor !== 1) return route(request, response);
    const path = PLAIN_PATH.exec(request.url ?? '');
    if (!path) return route(request, response);
    const started = now();
    const params = v.safeParse(LinkParams, { userId: path[1], provider: path[2] });
    if (!params.success) return route(request, response);
    const headers = requestHeaders((request as IncomingMessage).rawHeaders);
    const bot = authenticateBot(tenantOf, headers.authorization);
    if (bot instanceof Promise) {
      // The route looks the key up itself (and answers a database failure); this lookup fills the cache.
      bot.catch(() => {});
      return route(request, response);
    }
    if (bot === undefined) return route(request, response);
    if (headers.tenant !== undefined && headers.tenant !== bot.tenant) return route(request, response);
    const settings = deps.tenants.settings(bot.tenant);
    const registry = deps.providers.of(bot.tenant);
    if (settings instanceof Promise || registry instanceof Promise) return route(request, response);
    const provider = registry.get(params.output.provider);
    if (!provider?.instance) return route(request, response);
    const plain = response as ServerResponse;
    const { userId } = params.output;
    const taken = deps.limiter.take('api', bot.key, settings.apiRateLimit);
    if (taken instanceof Promise) {
      // Waiting for the counters to sync: a refusal is the route's to answer (a refusal counts nothing).
      taken.then(
        (decision) => (decision.allowed ? serve(request, plain, started, headers.requestId, bot.tenant, userId, provider) : route(request, response)),
        () => route(request, response),
      );
      return;
    }
    if (!taken.allowed) return route(request, response);
    serve(request, plain, started, headers.requestId, bot.tenant, userId, provider);
  };

  /**
   * Answers a plain request the limiter let through; a failure is the route's to answer. A function of
   * its own rather than a closure per request: under tsx (keepNames) each named one costs a defineProperty.
   */
  function serve(request: Parameters<RequestHandler>[0], response: ServerResponse, started: number, requestId: string | undefined, tenant: string, userId: string, provider: { id: string; displayName: string }) {
    deps.nameRoute?.(TRACE_NAME);
    answer(response, started, requestId, tenant, userId, provider).catch((error: unknown) => {
      // The route logs and answers a database failure; anything else would be ours, and the route's answer would hide it.
      if (!databaseFailure(error)) logger.error({ cause: logCause(error) }, 'the status API beside Hono failed; the route answered');
      if (!response.headersSent) route(request, response);
    });
  }
}
