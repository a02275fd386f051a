import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import type { Dispatcher } from 'undici';
import { LinkgateError } from './errors.ts';

/**
 * Addresses a user-supplied URL must not reach unless the operator allows
 * private servers: loopback, private, shared, link-local, multicast and
 * reserved ranges (RFC 6890), for IPv4 and IPv6. An IPv4-mapped IPv6 address
 * (`::ffff:a.b.c.d`) is judged by its IPv4 address. Prefixes that carry an
 * IPv4 address to a translator or tunnel (IPv4-compatible `::/96`,
 * IPv4-translated `::ffff:0:0:0/96`, NAT64 `64:ff9b::/96` and
 * `64:ff9b:1::/48`, 6to4 `2002::/16`, Teredo and the rest of `2001::/23`)
 * are refused whole, whatever IPv4 address they embed: where the translator
 * delivers it (a private network of the operator's) cannot be seen from here.
 */
const privateRanges = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24],
  ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) privateRanges.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [
  ['::', 96], // unspecified, loopback and IPv4-compatible (RFC 4291 §2.5.5.1, deprecated)
  ['::ffff:0:0:0', 96], // IPv4-translated (RFC 2765)
  ['64:ff9b::', 96], ['64:ff9b:1::', 48], // NAT64 (RFC 6052, RFC 8215)
  ['100::', 64], // discard-only
  ['2001::', 23], // IETF protocol assignments: Teredo, benchmarking, ORCHID
  ['2001:db8::', 32], // documentation
  ['2002::', 16], // 6to4 (RFC 3056, deprecated by RFC 7526)
  ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8], // unique-local, link-local, site-local (RFC 3879), multicast
] as const) privateRanges.addSubnet(net, prefix, 'ipv6');

/** `::ffff:a.b.c.d` or `::ffff:xxxx:xxxx` (any spelling): the IPv4 address inside, else undefined. */
function mappedIPv4(address: string): string | undefined {
  const words = ipv6Words(address);
  if (!words || words.slice(0, 5).some((w) => w !== 0) || words[5] !== 0xffff) return undefined;
  return [words[6]! >> 8, words[6]! & 0xff, words[7]! >> 8, words[7]! & 0xff].join('.');
}

/** The eight 16-bit words of an IPv6 address (zone id dropped), or undefined if it does not parse. */
function ipv6Words(address: string): number[] | undefined {
  let text = address.split('%')[0]!.toLowerCase();
  const dotted = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string | undefined) => (part ? part.split(':').map((w) => Number.parseInt(w, 16)) : []);
  const head = parse(halves[0]);
  const tail = parse(halves[1]);
  const words = halves.length === 2 ? [...head, ...Array<number>(8 - head.length - tail.length).fill(0), ...tail] : head;
  return words.length === 8 && words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffff) ? words : undefined;
}

export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return privateRanges.check(address, 'ipv4');
  if (family === 6) {
    const mapped = mappedIPv4(address);
    if (mapped !== undefined) return privateRanges.check(mapped, 'ipv4');
    return ipv6Words(address) === undefined || privateRanges.check(address.split('%')[0]!, 'ipv6');
  }
  return true;
}

/** A DNS resolver as `node:dns`'s `lookup` (the tests give one whose answers they choose). */
export type Resolve = (hostname: string, options: LookupAllOptions, callback: (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void;

/**
 * A `lookup` for sockets that refuses, unless `allowPrivate`, a name any of
 * whose addresses is private: the addresses checked are the ones connected
 * to, so a DNS answer cannot change between the check and the connection.
 */
function checkedLookup(allowPrivate: boolean, resolve: Resolve = dnsLookup): LookupFunction {
  return (hostname, lookupOptions, callback) => {
    resolve(hostname, { ...lookupOptions, all: true }, (error, addresses) => {
      if (error) return callback(error, '', 0);
      const blocked = !allowPrivate && addresses.some((a) => isPrivateAddress(a.address));
      if (blocked || addresses.length === 0) {
        return callback(Object.assign(new Error('that server address is on a private network'), { code: 'EPRIVATE' }), '', 0);
      }
      if (lookupOptions.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
      callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}

export interface UntrustedFetchOptions {
  /** Let the request reach loopback and private addresses (a LAN-only server). */
  allowPrivate?: boolean;
  /** Gives up when the server sends nothing for this long (default 5 s). */
  timeoutMs?: number;
  /**
   * Gives up when the whole exchange (connect, headers and body) takes longer,
   * however steadily the server trickles bytes. Default: `timeoutMs`.
   */
  deadlineMs?: number;
  /** Larger answers are cut off with an error (default 1 MiB). */
  maxBytes?: number;
}

export interface UntrustedRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
}

const refused = (message: string) => new LinkgateError('bad_request', message, { status: 400 });
const timedOut = (message: string) => Object.assign(new Error(message), { name: 'TimeoutError' });

/**
 * A request to a URL a user typed. Only http(s); the host is resolved and
 * every address checked at connect time (so a DNS answer cannot change
 * between the check and the connection); redirects are returned, never
 * followed; an idle timeout and a total deadline; the answer is capped in
 * size.
 */
export async function untrustedFetch(url: string | URL, init: UntrustedRequest = {}, options: UntrustedFetchOptions = {}): Promise<Response> {
  const target = new URL(url);
  if (target.protocol !== 'http:' && target.protocol !== 'https:') throw refused('the server address must start with http:// or https://');
  if (target.username || target.password) throw refused('the server address must not contain a user name or password');
  const allowPrivate = options.allowPrivate ?? false;
  const host = target.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) && !allowPrivate && isPrivateAddress(host)) throw refused('that server address is on a private network');

  const lookup = checkedLookup(allowPrivate);

  const timeoutMs = options.timeoutMs ?? 5000;
  const deadlineMs = options.deadlineMs ?? timeoutMs;
  const maxBytes = options.maxBytes ?? 1024 * 1024;
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  let deadline: NodeJS.Timeout | undefined;
  return new Promise<Response>((resolve, reject) => {
    const headers = { ...init.headers, ...(init.body !== undefined ? { 'content-length': String(Buffer.byteLength(init.body)) } : {}) };
    const request = send(target, { method: init.method ?? 'GET', headers, lookup, timeout: timeoutMs }, (response: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      if (Number(response.headers['content-length']) > maxBytes) {
        request.destroy();
        reject(new LinkgateError('provider_response_invalid', `the server's answer is larger than ${maxBytes} bytes`));
        return;
      }
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) {
          request.destroy();
          reject(new LinkgateError('provider_response_invalid', `the server's answer is larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      response.on('end', () => {
        // A hostile server's odd status (205 with a body, 600–999) must not throw outside this promise.
        try {
        const headers = new Headers();
        for (const [name, value] of Object.entries(response.headers)) {
          if (typeof value === 'string') headers.set(name, value);
          else if (Array.isArray(value)) for (const v of value) headers.append(name, v);
        }
        const status = response.statusCode ?? 502;
        const body = status === 204 || status === 304 ? null : Buffer.concat(chunks);
        if (status < 200 || status > 599) throw new Error(`status ${status}`);
        resolve(new Response(status === 205 ? null : body, { status, headers }));
        } catch (cause) {
          reject(new LinkgateError('provider_response_invalid', 'the server sent an answer that is not valid HTTP', { cause }));
        }
      });
      response.on('error', reject);
    });
    // The socket's idle timeout restarts with every byte; the deadline does not.
    deadline = setTimeout(() => {
      reject(timedOut('the server did not finish answering in time'));
      request.destroy();
    }, deadlineMs);
    request.on('timeout', () => request.destroy(timedOut('the server did not answer in time')));
    request.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPRIVATE') reject(refused('that server address is on a private network'));
      else reject(error);
    });
    if (init.body !== undefined) request.write(init.body);
    request.end();
  }).finally(() => clearTimeout(deadline));
}

/**
 * `fetch` for addresses an operator's tenant chose (its provider
 * configuration's issuer and API base, its webhook URL) in production: the
 * host, an address or every address its name resolves to, must not be on
 * loopback or a private network, so a tenant's admin cannot make the gateway
 * read its own network (cloud metadata, internal services). A name is
 * checked when its connection is made (undici's `Agent` with a checking
 * `lookup`, passed to `fetch` as its dispatcher): the addresses checked are
 * the ones connected to, so a DNS answer that changes after a check (DNS
 * rebinding) is caught too. `resolve` replaces DNS in the tests.
 */
export function publicOnlyFetch(fetchImpl: typeof fetch, options: { resolve?: Resolve } = {}): typeof fetch {
  let dispatcher: Promise<Dispatcher> | undefined;
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    // An address is connected to without a lookup: it is checked here.
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (isIP(host) && isPrivateAddress(host)) throw tenantRefused();
    // undici is loaded on the first request a tenant's configuration makes (most gateways never do).
    dispatcher ??= options.resolve ? checkingAgent(options.resolve) : (publicOnlyAgent ??= checkingAgent(dnsLookup));
    try {
      return await fetchImpl(input, { ...init, dispatcher: await dispatcher } as RequestInit);
    } catch (error) {
      if (causedBy(error, 'EPRIVATE')) throw tenantRefused();
      throw error;
    }
  };
}

/** A connection pool whose every connection is made to addresses `resolve` gave and the check passed. */
async function checkingAgent(resolve: Resolve): Promise<Dispatcher> {
  const { Agent } = await import('undici');
  return new Agent({ connect: { lookup: checkedLookup(false, resolve) } });
}

let publicOnlyAgent: Promise<Dispatcher> | undefined;

const tenantRefused = () => new LinkgateError('provider_unavailable', "that address is on a private network, which a tenant's configuration may not reach");

/** Whether `error` or one of its causes (fetch wraps what the connection threw) has `code`. */
function causedBy(error: unknown, code: string): boolean {
  for (let at = error, depth = 0; at instanceof Error && depth < 5; at = at.cause, depth += 1) {
    if ((at as NodeJS.ErrnoException).code === code) return true;
  }
  return false;
}
