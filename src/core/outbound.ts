import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { LinkgateError } from './errors.ts';

/**
 * Addresses a user-supplied URL must not reach unless the operator allows
 * private servers: loopback, private, shared, link-local, multicast and
 * reserved ranges (RFC 6890), for IPv4 and IPv6 (v4-mapped ones included).
 */
const privateRanges = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24],
  ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) privateRanges.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [
  ['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96], ['2001:db8::', 32], ['100::', 64],
] as const) privateRanges.addSubnet(net, prefix, 'ipv6');

export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return privateRanges.check(address, 'ipv4');
  if (family === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    return mapped ? privateRanges.check(mapped[1]!, 'ipv4') : privateRanges.check(address, 'ipv6');
  }
  return true;
}

export interface UntrustedFetchOptions {
  /** Let the request reach loopback and private addresses (a LAN-only server). */
  allowPrivate?: boolean;
  timeoutMs?: number;
  /** Larger answers are cut off with an error. */
  maxBytes?: number;
}

export interface UntrustedRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
}

const refused = (message: string) => new LinkgateError('bad_request', message, { status: 400 });

/**
 * A request to a URL a user typed. Only http(s); the host is resolved and
 * every address checked at connect time (so a DNS answer cannot change
 * between the check and the connection); redirects are returned, never
 * followed; a short timeout; the answer is capped in size.
 */
export async function untrustedFetch(url: string | URL, init: UntrustedRequest = {}, options: UntrustedFetchOptions = {}): Promise<Response> {
  const target = new URL(url);
  if (target.protocol !== 'http:' && target.protocol !== 'https:') throw refused('the server address must start with http:// or https://');
  if (target.username || target.password) throw refused('the server address must not contain a user name or password');
  const allowPrivate = options.allowPrivate ?? false;
  const host = target.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) && !allowPrivate && isPrivateAddress(host)) throw refused('that server address is on a private network');

  const lookup: LookupFunction = (hostname, lookupOptions, callback) => {
    dnsLookup(hostname, { ...lookupOptions, all: true }, (error, addresses: LookupAddress[]) => {
      if (error) return callback(error, '', 0);
      const blocked = !allowPrivate && addresses.some((a) => isPrivateAddress(a.address));
      if (blocked || addresses.length === 0) {
        return callback(Object.assign(new Error('that server address is on a private network'), { code: 'EPRIVATE' }), '', 0);
      }
      if (lookupOptions.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
      callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };

  const timeoutMs = options.timeoutMs ?? 5000;
  const maxBytes = options.maxBytes ?? 1024 * 1024;
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<Response>((resolve, reject) => {
    const headers = { ...init.headers, ...(init.body !== undefined ? { 'content-length': String(Buffer.byteLength(init.body)) } : {}) };
    const request = send(target, { method: init.method ?? 'GET', headers, lookup, timeout: timeoutMs }, (response: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
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
    request.on('timeout', () => request.destroy(Object.assign(new Error('the server did not answer in time'), { name: 'TimeoutError' })));
    request.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPRIVATE') reject(refused('that server address is on a private network'));
      else reject(error);
    });
    if (init.body !== undefined) request.write(init.body);
    request.end();
  });
}
