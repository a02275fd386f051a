/**
 * The provider API proxy's rules (`ANY /api/v1/users/:userId/links/:provider/proxy/*`):
 * which calls an operator allows, per provider and tenant, and the path a
 * bot may ask for. Deny by default: a provider without `<ID>_PROXY_ALLOW`
 * proxies nothing.
 *
 * `<ID>_PROXY_ALLOW` lists `METHOD path-prefix` entries, comma-separated:
 * `DISCORD_PROXY_ALLOW="GET users/@me, GET users/@me/guilds"`. A prefix
 * matches itself and what lies under it segment by segment (`users/@me`
 * allows `users/@me/guilds`, not `users/@meow`); `/` is the API's root
 * itself (AniList's GraphQL endpoint: `ANILIST_PROXY_ALLOW="POST /"`).
 */
import * as v from 'valibot';
import type { ApiCall } from '../provider.ts';
import type { RegisteredProvider } from '../registry.ts';
import { LinkgateError } from './errors.ts';
import type { LinkKey } from './links.ts';
import type { TokenService } from './tokens.ts';
import { parseInput } from './validation.ts';

export const PROXY_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
export type ProxyMethod = (typeof PROXY_METHODS)[number];

export interface ProxyRule {
  method: ProxyMethod;
  /** Segments of the prefix; empty for the API's root. */
  prefix: string[];
}

/** The variable that holds a provider's allowlist: `DISCORD_PROXY_ALLOW`, `CORP_PROXY_ALLOW`. */
export const proxyAllowName = (providerId: string) => `${providerId.toUpperCase().replace(/-/g, '_')}_PROXY_ALLOW`;

const Entry = v.pipe(
  v.string(),
  v.regex(/^(GET|POST|PUT|PATCH|DELETE) +\S+$/, 'each entry must be METHOD path-prefix, like "GET users/@me"'),
  v.transform((entry): ProxyRule => {
    const [method, path] = entry.split(/ +/) as [ProxyMethod, string];
    return { method, prefix: path === '/' ? [] : path.replace(/^\/+|\/+$/g, '').split('/') };
  }),
  v.check((rule) => rule.prefix.every((segment) => segment !== '' && segment !== '.' && segment !== '..'), 'a path prefix must not contain empty, . or .. segments'),
);

/** `<ID>_PROXY_ALLOW`, parsed; its problem in words (never the value). */
export const ProxyAllow = v.pipe(
  v.string(),
  v.transform((text) => text.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '')),
  v.maxLength(100, 'at most 100 entries'),
  v.array(Entry),
);

/**
 * The path a bot asked for, relative to the API base, as segments: no `.` or
 * `..`, no empty segment (`a//b`), no backslash, no encoded slash or dot
 * segment that a server could read as one — refused (400), never "fixed".
 */
export function proxyPath(raw: string): string[] {
  if (raw === '') return [];
  const segments = raw.split('/');
  for (const segment of segments) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      throw new LinkgateError('bad_request', 'the proxied path is not valid percent-encoding');
    }
    if (segment === '' || decoded === '.' || decoded === '..' || /[\\/]/.test(decoded) || /[\u0000-\u001f\u007f]/.test(decoded)) {
      throw new LinkgateError('bad_request', 'the proxied path must not contain empty, . or .. segments, slashes or backslashes in a segment, or control characters');
    }
  }
  return segments;
}

/** Whether `rules` allow `method` on `path` (segments). */
export function proxyAllowed(rules: readonly ProxyRule[], method: ApiCall['method'], path: readonly string[]): boolean {
  return rules.some((rule) => rule.method === method && (rule.prefix.length === 0 ? path.length === 0 : rule.prefix.length <= path.length && rule.prefix.every((segment, i) => segment === path[i])));
}

/** Query parameters passed upstream (XRPC and the proxy): bounded in number and size. */
export const UpstreamQuery = v.pipe(
  v.array(v.tuple([v.pipe(v.string(), v.maxLength(128, 'a query parameter name is too long')), v.pipe(v.string(), v.maxLength(4096, 'a query parameter is too long'))])),
  v.maxLength(64, 'too many query parameters'),
);

/**
 * Media types an upstream answer is passed on with: data (JSON, CBOR, CAR
 * files, plain text, blobs' images, audio and video), never a type a browser
 * renders as a document or runs (HTML, SVG, XML, scripts).
 */
const PASSED_TYPES = /^(application\/(json|cbor|octet-stream|vnd\.ipld\.car)|text\/plain|image\/(png|jpeg|gif|webp|avif|heic)|(video|audio)\/[a-z0-9][a-z0-9.+-]{0,62})$/;

/** The upstream content type if it is one of those (with its charset, nothing else), else `application/octet-stream`. */
export function passedContentType(upstream: string | undefined): string {
  const [essence = '', ...parameters] = (upstream ?? '').split(';').map((part) => part.trim());
  const type = essence.toLowerCase();
  if (!PASSED_TYPES.test(type)) return 'application/octet-stream';
  const charset = parameters.map((p) => /^charset="?([A-Za-z0-9._-]{1,40})"?$/i.exec(p)?.[1]).find((c) => c !== undefined);
  return charset ? `${type}; charset=${charset.toLowerCase()}` : type;
}

/** The most of a provider API's answer the proxy passes on. */
export const PROXY_ANSWER_MAX = 1024 * 1024;

/** A response body of at most `max` bytes; more is a 502 (the rest is not read). */
async function readCapped(response: Response, max: number, provider: string): Promise<Uint8Array> {
  const declared = Number(response.headers.get('content-length'));
  const tooLarge = () => new LinkgateError('provider_response_too_large', `the provider's answer is larger than ${max} bytes`, { provider });
  if (declared > max) {
    await response.body?.cancel().catch(() => {});
    throw tooLarge();
  }
  if (!response.body) return new Uint8Array();
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return Buffer.concat(chunks);
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(value);
  }
}

/** A bot's call through the proxy, before any check: the path as it came, relative to the API base. */
export interface ProxyRequest {
  method: ApiCall['method'];
  /** Still percent-encoded, without a leading slash; `''` is the API's root. */
  rawPath: string;
  query: URLSearchParams;
  /** Only `content-type` and `accept` go on, each at most 256 characters. */
  headers: Record<string, string | undefined>;
  body?: Uint8Array | undefined;
}

/** The upstream answer as the bot gets it. */
export interface ProxyAnswer {
  status: number;
  body: Uint8Array;
  /** A data type (`passedContentType`), never one a browser would render. */
  contentType: string;
  /** The upstream `Retry-After`, when it is seconds or an HTTP date. */
  retryAfter?: string;
}

/** The call's path as segments, if the provider's allowlist allows it: else 400 (the path) or 403 (not allowed). */
export function checkProxyCall(provider: RegisteredProvider, request: Pick<ProxyRequest, 'method' | 'rawPath' | 'query'>): string[] {
  const path = proxyPath(request.rawPath);
  if (!proxyAllowed(provider.proxyAllow ?? [], request.method, path)) {
    throw new LinkgateError('proxy_not_allowed', `this call is not in ${proxyAllowName(provider.id)}`, { provider: provider.id });
  }
  parseInput(UpstreamQuery, [...request.query]);
  return path;
}

/**
 * The proxy itself, for the REST route and the MCP tool `call_provider`
 * alike: the path checked (400) and the call checked against the provider's
 * allowlist (403) before anything goes upstream, then `tokens.proxy` with
 * the link's credentials, and at most `PROXY_ANSWER_MAX` bytes of the answer.
 */
export async function callProvider(tokens: TokenService, provider: RegisteredProvider, key: LinkKey, request: ProxyRequest): Promise<ProxyAnswer> {
  const path = checkProxyCall(provider, request);
  const headers: Record<string, string> = {};
  for (const name of ['content-type', 'accept']) {
    const value = request.headers[name];
    if (value !== undefined && value.length <= 256) headers[name] = value;
  }
  const body = request.method === 'GET' || request.method === 'DELETE' ? undefined : request.body;
  const upstream = await tokens.proxy(key, { method: request.method, path: path.join('/'), query: request.query, headers, ...(body ? { body } : {}) });
  if (upstream.status < 200 || upstream.status > 599) throw new LinkgateError('provider_unavailable', `the provider answered ${upstream.status}`, { provider: provider.id });
  const answer = await readCapped(upstream, PROXY_ANSWER_MAX, provider.id);
  const retryAfter = upstream.headers.get('retry-after');
  return {
    status: upstream.status,
    body: answer,
    contentType: passedContentType(upstream.headers.get('content-type') ?? undefined),
    ...(retryAfter && /^(\d{1,6}|[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT)$/.test(retryAfter) ? { retryAfter } : {}),
  };
}
