import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { operations } from '../../src/http/openapi.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, createTestGateway, type TestGateway } from '../helpers/gateway.ts';

/**
 * Path tricks in every path parameter of every API route, the bot API's, the
 * operator API's and the web-session API's (the routes come
 * from the OpenAPI operations, which test/http/openapi.test.ts keeps equal to
 * the app's routes, so a new route is tried too). Requests go over a real
 * socket as raw bytes (node:http does not normalise the path), so the server
 * sees exactly what an attacker sends.
 *
 * Every trick that reaches a route is refused with 400 `bad_request`. A `.`
 * or `..` segment (also percent-encoded: `%2E%2E`) and an empty segment never
 * reach one: the WHATWG URL parsing that turns the request line into a URL
 * (in @hono/node-server, as in every browser and HTTP client) removes dot
 * segments, so the router sees a shorter path, which has no route (404
 * `not_found`) or, for `…/links/./wait`, is `…/links/:provider` with the
 * provider "wait" (404 `unknown_provider`), or, for the operator's
 * `/tenants/./api-keys`, `/tenants/:tenant` with the tenant "api-keys" (404
 * `tenant_not_found`; 400 `bad_request` for `/tenants/./links:export`, as
 * "links:export" cannot be a tenant id). Neither is ever a 500, and
 * neither reaches another route's data.
 */
const TRICKS: Array<[string, string]> = [
  ['an encoded slash', 'a%2Fb'],
  ['an encoded slash alone', '%2F'],
  ['an encoded traversal', '..%2F..%2Fproviders'],
  ['an encoded backslash', '%5C'],
  ['10 kB', 'x'.repeat(10 * 1024)],
  ['an overlong UTF-8 slash (%C0%AF)', '%C0%AF'],
  ['an overlong UTF-8 dot (%E0%80%AE)', '%E0%80%AE'],
  ['a lone %FF', '%FF'],
  ['%FF%FE', '%FF%FE'],
  ['an encoded UTF-16 surrogate', '%ED%A0%80'],
  ['an encoded NUL', 'a%00b'],
  ['an encoded newline', 'a%0Ab'],
  ['an encoded CRLF', 'a%0D%0Ab'],
  ['a right-to-left override', 'a%E2%80%AEb'],
  ['a percent sign', 'a%25b'],
  ['an encoded question mark', 'a%3Fb'],
  ['an encoded hash', 'a%23b'],
  ['an encoded space', 'a%20b'],
  ['a semicolon parameter', 'a;b=c'],
];
/** Bytes Node's HTTP parser refuses in a request line: a bare 400 before any route runs. */
const UNPARSEABLE: Array<[string, string]> = [['a raw backslash', 'a\\b']];
/** Segments the URL parser removes before routing (see above). */
const NORMALISED = ['..', '.', '%2E%2E', '%2e', ''];

let database: Database;
let gateway: TestGateway;
let server: ServerType;
let port: number;

beforeAll(async () => {
  database = await createTestDatabase();
  // The operator API on, and the console open (its invite routes answer 409 while it is closed).
  gateway = await createTestGateway(database, {
    env: { OIDC_PROVIDERS: 'corp', CORP_ISSUER: 'https://idp.example', CORP_CLIENT_ID: 'c', LINKGATE_ADMIN_KEYS: ADMIN_KEY, LINKGATE_ADMINS: 'owner=discord:80351110224678912' },
  });
  server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: gateway.app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await database?.close();
});

/** Sends `path` byte for byte. */
function send(method: string, path: string): Promise<{ status: number; contentType: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method, path, headers: { authorization: `Bearer ${path.startsWith('/api/admin/') ? ADMIN_KEY : API_KEY}`, 'content-type': 'application/json' } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, contentType: String(res.headers['content-type'] ?? ''), body }));
      },
    );
    req.on('error', reject);
    req.end(method === 'POST' ? '{}' : undefined);
  });
}

const ADMIN_KEY = 'lg_admin_paths_0123456789abcdefghijklmnop';
const VALID: Record<string, string> = { userId: '80351110224678912', provider: 'corp', nsid: 'app.bsky.actor.getProfile', id: 'evt_00000000-0000-0000-0000-000000000000', tenant: 'default', clientId: 'app_0000000000000000' };
const CASES = operations
  .filter((op) => op.path.startsWith('/api/'))
  // Path parameters are whole segments (`/links:import` is a literal name).
  .flatMap((op) => [...op.path.matchAll(/\/:(\w+)/g)].map((m) => ({ method: op.method.toUpperCase(), route: op.path, param: m[1]! })));

function pathWith(route: string, param: string, value: string): string {
  const path = route.replace(/\/:(\w+)/g, (_, name: string) => `/${name === param ? value : VALID[name]!}`);
  return route.endsWith('/wait') ? `${path}?timeoutSeconds=1` : path;
}

describe('path parameters of every API route', () => {
  it('covers every parameter the API has', () => {
    expect(new Set(CASES.map((c) => c.param))).toEqual(new Set(['userId', 'provider', 'nsid', 'id', 'tenant', 'clientId']));
    expect(CASES.length).toBeGreaterThanOrEqual(12);
  });

  it.each(CASES)('$method $route: every trick in :$param is answered 400 bad_request, never echoed', async ({ method, route, param }) => {
    const answers: string[] = [];
    for (const [name, value] of TRICKS) {
      const { status, contentType, body } = await send(method, pathWith(route, param, value));
      const error = contentType.startsWith('application/json') ? (JSON.parse(body) as { error?: { code?: string; message?: string } }).error : undefined;
      answers.push(`${name}: ${status} ${error?.code}`);
      expect(`${name}: ${status} ${error?.code}`).toBe(`${name}: 400 bad_request`);
      // The message names the parameter, never the value (it may be a 10 kB string or a control character).
      for (const fragment of ['xxxxxxxxxx', 'providers', 'a/b', 'a\\b', '\u0000', '\n', '\u202e', 'a;b', '%']) expect(error!.message).not.toContain(fragment);
      expect(body).not.toMatch(/\bat \S+ \(|node_modules|\.ts:\d+/);
    }
    expect(answers).toHaveLength(TRICKS.length);
  });

  it.each(CASES)('$method $route: a dot or empty segment in :$param never reaches a route (404; 400 for an impossible tenant of an operator route), never a 500', async ({ method, route, param }) => {
    for (const value of NORMALISED) {
      const { status, body } = await send(method, pathWith(route, param, value));
      // On the operator API, `/tenants/./api-keys` is `/tenants/:tenant` with the tenant "api-keys": the operator's own
      // request, for a tenant that is not one (404), and `/tenants/./links:export` one with a tenant id that cannot be (400).
      const { code } = (JSON.parse(body) as { error: { code: string } }).error;
      expect(`${status} ${code}`, `${param}=${JSON.stringify(value)}`).toMatch(/^(404 (not_found|unknown_provider|tenant_not_found)|400 bad_request)$/);
      if (status === 400) expect(route.startsWith('/api/admin/v1/tenants/:tenant/')).toBe(true);
    }
  });

  it.each(CASES)('$method $route: bytes no HTTP request line may hold in :$param get 400 from the HTTP parser', async ({ method, route, param }) => {
    for (const [name, value] of UNPARSEABLE) {
      const { status } = await send(method, pathWith(route, param, value));
      expect(`${name}: ${status}`).toBe(`${name}: 400`);
    }
  });

  it('a provider id that is not lower-case letters, digits, _ or - is 400, not a lookup', async () => {
    for (const provider of ['CORP', 'corp.', 'c'.repeat(33), '-corp']) {
      const { status, body } = await send('GET', `/api/v1/users/${VALID.userId}/links/${provider}`);
      expect(`${provider}: ${status}`).toBe(`${provider}: 400`);
      expect(JSON.parse(body)).toMatchObject({ error: { code: 'bad_request' } });
    }
  });

  it('the browser routes refuse the same tricks in :provider with a 4xx page, never a 500', async () => {
    for (const [name, value] of TRICKS) {
      for (const path of [`/oauth/${value}/start?context=x`, `/oauth/${value}/callback?state=x`, `/oauth/${value}/poll?state=x`]) {
        const { status, body } = await send('GET', path);
        expect(`${name} ${path.slice(0, 60)}: ${status >= 400 && status < 500}`).toBe(`${name} ${path.slice(0, 60)}: true`);
        expect(body).not.toMatch(/\bat \S+ \(|node_modules|\.ts:\d+/);
      }
    }
  });

  it('the web-session start refuses the same tricks in :provider with 400 bad_request, never echoed', async () => {
    for (const [name, value] of TRICKS) {
      const { status, contentType, body } = await send('GET', `/api/auth/${value}/start?postLoginRedirect=https%3A%2F%2Fapp.example%2F`);
      const error = contentType.startsWith('application/json') ? (JSON.parse(body) as { error?: { code?: string; message?: string } }).error : undefined;
      expect(`${name}: ${status} ${error?.code}`).toBe(`${name}: 400 bad_request`);
      for (const fragment of ['xxxxxxxxxx', 'a/b', '\u0000', '\n', '\u202e', 'a;b', '%']) expect(error!.message).not.toContain(fragment);
    }
  });
});
