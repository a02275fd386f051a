import type { RateLimitRule } from '../config.ts';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { Context, MiddlewareHandler } from 'hono';
import { createMiddleware } from 'hono/factory';
import { LinkgateError } from '../core/errors.ts';
import type { RateDecision, RateLimiter, RateScope } from '../core/rate-limit.ts';
import type { AppEnv } from './middleware.ts';

/**
 * Counts each request against `scope` under the key `keyOf` gives, and
 * refuses it with 429 `rate_limited` and `Retry-After` (seconds) when the
 * key is over its limit.
 */
export function rateLimit(options: { limiter: RateLimiter; scope: RateScope; keyOf: (c: Context<AppEnv>) => string }): MiddlewareHandler<AppEnv> {
  const { limiter, scope, keyOf } = options;
  // Not async: a request the counter lets through at once costs no promise of its own.
  return createMiddleware<AppEnv>(function rateLimit(c, next) {
    const counted = countRequest(c, limiter, scope, keyOf(c));
    return counted ? counted.then(() => next()) : next();
  });
}

/**
 * Counts one request under `key`: nothing to wait for when the counter lets
 * it through at once, a promise when it waits for the counters to sync, and
 * a 429 `rate_limited` with `Retry-After` (seconds) when `key` is over its limit.
 */
export function countRequest(c: Context<AppEnv>, limiter: RateLimiter, scope: RateScope, key: string, rule?: RateLimitRule): void | Promise<void> {
  const taken = limiter.take(scope, key, rule);
  return taken instanceof Promise ? taken.then((decision) => admit(c, decision)) : admit(c, taken);
}

function admit(c: Context<AppEnv>, decision: RateDecision): void {
  if (!decision.allowed) {
    c.header('Retry-After', String(decision.retryAfterSeconds));
    throw rateLimited(decision.retryAfterSeconds);
  }
}

/** The refusal of a request over its limit, on every surface: 429 `rate_limited` (RPC: RESOURCE_EXHAUSTED with RetryInfo). */
export function rateLimited(retryAfterSeconds: number): LinkgateError {
  return new LinkgateError('rate_limited', `too many requests; try again in ${retryAfterSeconds} s`, { retryAfterSeconds });
}

/**
 * The address a request comes from, as a rate-limit key: the socket's peer,
 * or, behind `trustedHops` reverse proxies, the X-Forwarded-For entry the
 * outermost trusted proxy wrote (entries further left are whatever the
 * client sent, and are ignored). An IPv6 address counts as its /64, the
 * block one host usually gets. Without a socket (`app.request()` in
 * tests) every request shares the key `unknown`.
 */
export function clientAddress(c: Context<AppEnv>, trustedHops: number): string {
  const env = c.env as { incoming?: IncomingMessage } | undefined;
  return clientAddressOf(env?.incoming?.socket.remoteAddress, trustedHops === 0 ? undefined : c.req.header('x-forwarded-for'), trustedHops);
}

/** `clientAddress` from the socket's peer and the X-Forwarded-For header, wherever they were read (HTTP or RPC). */
export function clientAddressOf(socketPeer: string | undefined, forwardedFor: string | undefined, trustedHops: number): string {
  const peer = socketPeer ?? 'unknown';
  if (trustedHops === 0) return addressKey(peer);
  const forwarded = (forwardedFor ?? '').split(',').map((part) => part.trim()).filter((part) => part !== '');
  const chain = [...forwarded, peer];
  const client = hopAddress(chain[Math.max(0, chain.length - 1 - trustedHops)]!);
  // A trusted proxy writes addresses; anything else means the header is not what we were told.
  return client === undefined ? addressKey(peer) : addressKey(client);
}

/**
 * The address in one X-Forwarded-For hop, as proxies write it: `1.2.3.4`,
 * `2001:db8::1`, or with the client's port, `1.2.3.4:5678`, `[2001:db8::1]`,
 * `[2001:db8::1]:443` (Azure, IIS, some load balancers). Anything else is
 * not an address: undefined.
 */
export function hopAddress(hop: string): string | undefined {
  if (isIP(hop)) return hop;
  const bracketed = /^\[([0-9A-Fa-f:.]+(?:%[\w.-]+)?)\](?::\d{1,5})?$/.exec(hop);
  if (bracketed) return isIP(bracketed[1]!) === 6 ? bracketed[1] : undefined;
  const withPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(hop);
  if (withPort) return isIP(withPort[1]!) === 4 ? withPort[1] : undefined;
  return undefined;
}

function addressKey(address: string): string {
  if (isIP(address) !== 6) return address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  return `${ipv6Groups(address.replace(/%.*$/, '')).slice(0, 4).join(':')}::/64`;
}

/** The eight 16-bit groups of an IPv6 address (valid per `isIP`), as hex without leading zeros. */
function ipv6Groups(address: string): string[] {
  const [head = '', tail] = address.split('::');
  const part = (s: string | undefined) => (s ? s.split(':') : []);
  const expand = (groups: string[]) =>
    groups.flatMap((g) => {
      if (!g.includes('.')) return [g];
      const [a = 0, b = 0, c = 0, d = 0] = g.split('.').map(Number);
      return [((a << 8) | b).toString(16), ((c << 8) | d).toString(16)];
    });
  const left = expand(part(head));
  const right = expand(part(tail));
  const zeros = tail === undefined ? [] : Array.from({ length: 8 - left.length - right.length }, () => '0');
  return [...left, ...zeros, ...right].map((g) => parseInt(g, 16).toString(16));
}
