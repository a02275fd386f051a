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
import { LinkgateError } from './errors.ts';

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
