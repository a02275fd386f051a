/**
 * The status API's plain request is answered beside Hono (src/http/status-path.ts).
 * Each request here goes to two listeners of one gateway: the port as
 * src/server.ts serves it, and Hono's route alone. Their answers must be the
 * same, and the plain ones must not have reached the route.
 */
import { getRequestListener } from '@hono/node-server';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyring } from '../../src/core/crypto.ts';
import { createLinkStore } from '../../src/core/links.ts';
import { createTenantStore } from '../../src/core/tenants.ts';
import type { Database } from '../../src/db/client.ts';
import { createListener, type RequestHandler } from '../../src/http/listener.ts';
import { serveRpc } from '../../src/rpc/serve.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, createTestGateway, TEST_SECRETS, type TestGateway } from '../helpers/gateway.ts';

const OIDC_ENV = { OIDC_PROVIDERS: 'corp', CORP_ISSUER: 'https://idp.example', CORP_CLIENT_ID: 'client' };
const ENV = { ...OIDC_ENV, LOG_LEVEL: 'info', LINKGATE_METRICS: 'true', PUBLIC_BASE_URL: 'https://gateway.example' };
const LINKED = '123456789012345678901';
const REAUTH = 'reauth-user';
const STATUS_ROUTE = '/api/v1/users/:userId/links/:provider';

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request over HTTP/1.1 with exactly these header lines (repeats included), as a bot's client sends it. */
function send(port: number, method: string, path: string, headers: Array<[string, string]>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // A raw list keeps repeated headers as sent; node adds no Host to one.
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers: [['Host', `127.0.0.1:${port}`], ...headers].flat() }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** What must be equal between the two answers: the date and a generated request id are each answer's own, a link URL's context its own token. */
async function comparable(answer: Answer, secret: string = TEST_SECRETS.OAUTH_CONTEXT_SIGNING_SECRET) {
  const { date, ['x-request-id']: requestId, ...headers } = answer.headers;
  expect(date).toBeTypeOf('string');
  let body: unknown = answer.body;
  if (answer.body !== '' && answer.headers['content-type']?.startsWith('application/json')) {
    const parsed = JSON.parse(answer.body) as { linkUrl?: string };
    if (parsed.linkUrl) {
      const url = new URL(parsed.linkUrl);
      const { payload } = await jwtVerify(url.searchParams.get('context')!, new TextEncoder().encode(secret));
      const { jti, iat, exp, ...claims } = payload;
      expect(jti).toMatch(/^[\w-]{16,}$/);
      expect(exp! - iat!).toBeGreaterThan(0);
      url.searchParams.delete('context');
      body = { ...parsed, linkUrl: { url: url.href, claims } };
    } else {
      body = parsed;
    }
  }
  return { status: answer.status, headers, body, requestId: /^[0-9a-f-]{36}$/.test(String(requestId)) ? 'generated' : requestId };
}

let database: Database;
let gateway: TestGateway;
let both: Awaited<ReturnType<typeof serveCounting>>;
let routeOnly: { port: number; close: () => Promise<void> };

async function serve(handler: RequestHandler) {
  const listener = createListener({ handler, http1: { headersTimeout: 10_000, requestTimeout: 30_000 }, firstBytesTimeoutMs: 10_000, http2Settings: {}, http2IdleTimeoutMs: 60_000 });
  await new Promise<void>((resolve) => listener.server.listen(0, '127.0.0.1', resolve));
  return {
    port: (listener.server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => (listener.closeAll(), listener.server.close(() => resolve()))),
  };
}

/** The port as src/server.ts serves it, counting the requests that reach Hono's route. */
async function serveCounting(gateway: TestGateway) {
  const hono = getRequestListener(gateway.app.fetch);
  let routes = 0;
  const port = await serve(
    serveRpc(
      gateway.rpc,
      gateway.serveStatus((req, res) => {
        routes += 1;
        return hono(req, res);
      }),
    ),
  );
  return { ...port, routed: () => routes };
}

beforeAll(async () => {
  database = await createTestDatabase();
  gateway = await createTestGateway(database, { env: ENV });
  const links = createLinkStore(database.db, gateway.keyring);
  const credentials = { accessToken: 'at-secret', refreshToken: 'rt-secret', tokenType: 'Bearer', expiresAt: Date.parse('2030-01-01T00:00:00Z'), scopes: ['openid', 'email'] };
  const options = { allowShared: false, now: new Date('2026-11-23T10:00:00Z') };
  await links.store({ tenant: 'default', userId: LINKED, provider: 'corp' }, { id: 'sub-1', name: 'Ada' }, credentials, options);
  const reauth = await links.store({ tenant: 'default', userId: REAUTH, provider: 'corp' }, { id: 'sub-2' }, credentials, options);
  await links.setStatus(reauth, 'needs_reauth', new Date('2026-11-24T10:00:00Z'), 'refresh refused');
  both = await serveCounting(gateway);
  routeOnly = await serve(serveRpc(gateway.rpc, getRequestListener(gateway.app.fetch)));
});
afterAll(async () => {
  await both.close();
  await routeOnly.close();
  await database.close();
});

const key: [string, string] = ['Authorization', `Bearer ${API_KEY}`];

/** Sends the request both ways; returns the port's answer once it matched the route's. */
async function same(path: string, headers: Array<[string, string]>, options: { plain: boolean; method?: string }) {
  const before = both.routed();
  const answer = await send(both.port, options.method ?? 'GET', path, headers);
  expect(both.routed() - before, options.plain ? 'answered beside the route' : 'answered by the route').toBe(options.plain ? 0 : 1);
  const reference = await send(routeOnly.port, options.method ?? 'GET', path, headers);
  expect(await comparable(answer)).toEqual(await comparable(reference));
  return answer;
}

describe('the status API beside Hono', () => {
  it('answers a linked user as the route does', async () => {
    const answer = await same(`/api/v1/users/${LINKED}/links/corp`, [key], { plain: true });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({
      userId: LINKED,
      provider: 'corp',
      externalId: 'sub-1',
      externalName: 'Ada',
      status: 'active',
      scopes: ['openid', 'email'],
      linkedAt: '2026-11-23T10:00:00.000Z',
      updatedAt: '2026-11-23T10:00:00.000Z',
      expiresAt: '2030-01-01T00:00:00.000Z',
    });
    // Every answer's headers: no caching, no sniffing, HSTS behind https, a request id.
    expect(answer.headers).toMatchObject({ 'content-type': 'application/json', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'strict-transport-security': 'max-age=31536000' });
    expect(answer.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(answer.body).not.toContain('secret');
  });

  it('answers a link that needs reauthorisation as the route does', async () => {
    const answer = await same(`/api/v1/users/${REAUTH}/links/corp`, [key], { plain: true });
    expect(JSON.parse(answer.body)).toMatchObject({ status: 'needs_reauth' });
  });

  it('answers a user without the link 404 not_linked with a fresh link URL', async () => {
    const answer = await same('/api/v1/users/nobody/links/corp', [key], { plain: true });
    expect(answer.status).toBe(404);
    const body = JSON.parse(answer.body) as { error: unknown; linkUrl: string };
    expect(body.error).toEqual({ code: 'not_linked', message: 'this user has not linked corp' });
    const context = new URL(body.linkUrl).searchParams.get('context')!;
    const { payload } = await jwtVerify(context, new TextEncoder().encode(TEST_SECRETS.OAUTH_CONTEXT_SIGNING_SECRET));
    expect(payload).toMatchObject({ sub: 'nobody', provider: 'corp' });
    expect(new URL(body.linkUrl).origin + new URL(body.linkUrl).pathname).toBe('https://gateway.example/oauth/corp/start');
  });

  it('echoes a caller request id, takes a matching X-Tenant-Id and a repeated harmless header', async () => {
    const answer = await same(`/api/v1/users/${LINKED}/links/corp`, [key, ['X-Request-Id', 'bot-req_42'], ['X-Tenant-Id', 'default'], ['Accept', 'application/json'], ['Accept', 'text/plain']], { plain: true });
    expect(answer.headers['x-request-id']).toBe('bot-req_42');
    // Not a short token: a new id, as the route makes.
    const made = await same(`/api/v1/users/${LINKED}/links/corp`, [key, ['X-Request-Id', 'has spaces']], { plain: true });
    expect(made.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it.each([
    ['no key', `/api/v1/users/${LINKED}/links/corp`, []],
    ['a wrong key', `/api/v1/users/${LINKED}/links/corp`, [['Authorization', `Bearer ${API_KEY}x`]]],
    ['the key twice', `/api/v1/users/${LINKED}/links/corp`, [key, key]],
    ['another tenant named', `/api/v1/users/${LINKED}/links/corp`, [key, ['X-Tenant-Id', 'acme']]],
    ['a user id that is not one', `/api/v1/users/${'x'.repeat(129)}/links/corp`, [key]],
    ['a user id with a character ids never have', '/api/v1/users/a!b/links/corp', [key]],
    ['an escaped user id', `/api/v1/users/${encodeURIComponent('a:b')}/links/corp`, [key]],
    ['a dot segment (the URL the route sees is another path)', '/api/v1/users/./links/corp', [key]],
    ['a dot-dot segment', '/api/v1/users/../links/corp', [key]],
    ['an unknown provider', `/api/v1/users/${LINKED}/links/nope`, [key]],
    ['a provider that is not configured', '/api/v1/users/nobody/links/discord', [key]],
    ['a query', `/api/v1/users/${LINKED}/links/corp?verify=false`, [key]],
    ['an empty query', `/api/v1/users/${LINKED}/links/corp?`, [key]],
    ['a query asking for scopes the link lacks', `/api/v1/users/${LINKED}/links/corp?requireScopes=admin`, [key]],
    ['a trailing slash', `/api/v1/users/${LINKED}/links/corp/`, [key]],
  ] as Array<[string, string, Array<[string, string]>]>)('leaves %s to the route', async (_case, path, headers) => {
    const answer = await same(path, headers, { plain: false });
    expect(answer.status).toBeGreaterThanOrEqual(200);
  });

  it('leaves other methods to the route', async () => {
    const head = await same(`/api/v1/users/${LINKED}/links/corp`, [key], { plain: false, method: 'HEAD' });
    expect(head.status).toBe(200);
    const post = await same(`/api/v1/users/${LINKED}/links/corp`, [key], { plain: false, method: 'POST' });
    expect(post.status).toBe(404);
  });

  it('writes the same log line and metrics as the route', async () => {
    const lines = () => gateway.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.msg === 'request' && line.route === STATUS_ROUTE);
    const seen = lines().length;
    const before = both.routed();
    await send(both.port, 'GET', `/api/v1/users/${LINKED}/links/corp`, [key, ['X-Request-Id', 'beside-1']]);
    await send(routeOnly.port, 'GET', `/api/v1/users/${LINKED}/links/corp`, [key, ['X-Request-Id', 'route-1']]);
    expect(both.routed()).toBe(before);
    const [beside, route] = lines().slice(seen);
    const shape = ({ time, pid, hostname, ms, reqId, ...rest }: Record<string, unknown>) => ({ ...rest, ms: typeof ms, reqId: typeof reqId });
    expect(beside).toMatchObject({ reqId: 'beside-1', method: 'GET', status: 200 });
    expect(route).toMatchObject({ reqId: 'route-1' });
    expect(shape(beside!)).toEqual(shape(route!));

    const count = async () => {
      const metrics = await send(routeOnly.port, 'GET', '/metrics', [key]);
      const line = metrics.body.split('\n').find((l) => l.startsWith('linkgate_http_request_duration_seconds_count') && l.includes(`route="${STATUS_ROUTE}"`) && l.includes('status="404"'));
      return Number(line?.split(' ').at(-1) ?? 0);
    };
    const counted = await count();
    await send(both.port, 'GET', '/api/v1/users/nobody-2/links/corp', [key]);
    await send(both.port, 'GET', '/api/v1/users/nobody-3/links/corp', [key]);
    expect(await count()).toBe(counted + 2);
  });

  it('answers a tenant key as the route does, once the tenant is known in memory, and shows only its links', async () => {
    const keyring = createKeyring(gateway.config.encryptionKeys);
    const tenants = createTenantStore({ database, keyring, environment: { apiKeys: gateway.config.apiKeys, contextSigningSecret: gateway.config.contextSigningSecret, webhook: undefined } });
    await tenants.create('acme', 'Acme');
    const { key: acmeKey } = await tenants.createApiKey('acme', 'bot');
    const { secret } = await tenants.createContextSecret('acme');
    await tenants.putProviderConfig('acme', 'discord', { DISCORD_CLIENT_ID: '123456789012345678', DISCORD_CLIENT_SECRET: 'very-secret-value-0123456789' });
    await createLinkStore(database.db, gateway.keyring).store(
      { tenant: 'acme', userId: 'acme-user', provider: 'discord' },
      { id: 'sub-9' },
      { accessToken: 'at', tokenType: 'Bearer' },
      { allowShared: false, now: new Date('2026-11-25T10:00:00Z') },
    );
    const acme: [string, string] = ['Authorization', `Bearer ${acmeKey}`];
    // The first request finds the key in the database: the route's.
    await send(both.port, 'GET', '/api/v1/users/acme-user/links/discord', [acme]);
    const before = both.routed();
    const linked = await send(both.port, 'GET', '/api/v1/users/acme-user/links/discord', [acme]);
    expect(both.routed()).toBe(before);
    expect(JSON.parse(linked.body)).toMatchObject({ userId: 'acme-user', externalId: 'sub-9' });
    expect(await comparable(linked)).toEqual(await comparable(await send(routeOnly.port, 'GET', '/api/v1/users/acme-user/links/discord', [acme])));
    // The default tenant's user is not acme's: not linked, with a link URL signed by acme's secret.
    const other = await send(both.port, 'GET', `/api/v1/users/${LINKED}/links/discord`, [acme]);
    expect(both.routed()).toBe(before);
    expect(other.status).toBe(404);
    const { payload } = await jwtVerify(new URL((JSON.parse(other.body) as { linkUrl: string }).linkUrl).searchParams.get('context')!, new TextEncoder().encode(secret));
    expect(payload).toMatchObject({ sub: LINKED, tenant: 'acme' });
    expect(await comparable(other, secret)).toEqual(await comparable(await send(routeOnly.port, 'GET', `/api/v1/users/${LINKED}/links/discord`, [acme]), secret));
  });
});

describe('the status API beside Hono, at its limits', () => {
  it('counts each request once and leaves the refusal to the route', async () => {
    const port = await serveCounting(await createTestGateway(database, { env: { ...OIDC_ENV, LINKGATE_API_RATE_LIMIT: '3', LINKGATE_API_RATE_WINDOW_SECONDS: '60' } }));
    try {
      const statuses = [];
      for (let i = 0; i < 5; i += 1) statuses.push((await send(port.port, 'GET', `/api/v1/users/${LINKED}/links/corp`, [key])).status);
      expect(statuses).toEqual([200, 200, 200, 429, 429]);
      expect(port.routed()).toBe(2);
      const refused = await send(port.port, 'GET', `/api/v1/users/${LINKED}/links/corp`, [key]);
      expect(JSON.parse(refused.body)).toMatchObject({ error: { code: 'rate_limited' } });
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    } finally {
      await port.close();
    }
  });

  it('closes the connection once the gateway is stopping, as the route does', async () => {
    const stopping = new AbortController();
    const stopped = await createTestGateway(database, { env: OIDC_ENV, stopping: stopping.signal });
    const hono = getRequestListener(stopped.app.fetch);
    const port = await serve(stopped.serveStatus(hono));
    const reference = await serve(hono);
    try {
      stopping.abort();
      const answer = await send(port.port, 'GET', `/api/v1/users/${LINKED}/links/corp`, [key]);
      expect(answer.status).toBe(200);
      expect(answer.headers.connection).toBe('close');
      expect(await comparable(answer)).toEqual(await comparable(await send(reference.port, 'GET', `/api/v1/users/${LINKED}/links/corp`, [key])));
    } finally {
      await port.close();
      await reference.close();
    }
  });

  it('leaves a database failure to the route, which answers it', async () => {
    const own = await createTestDatabase();
    const port = await serveCounting(await createTestGateway(own, { env: OIDC_ENV }));
    try {
      expect((await send(port.port, 'GET', '/api/v1/users/nobody/links/corp', [key])).status).toBe(404);
      expect(port.routed()).toBe(0);
      await own.close();
      const answer = await send(port.port, 'GET', '/api/v1/users/nobody/links/corp', [key]);
      expect(port.routed()).toBe(1);
      expect(answer.status).toBeGreaterThanOrEqual(500);
      expect(JSON.parse(answer.body)).toMatchObject({ error: { code: expect.stringMatching(/^(database_unavailable|internal_error)$/) } });
      // A key that is not the environment's is looked up in the database, which fails: the route answers, nothing is left unhandled.
      const unknownKey = await send(port.port, 'GET', '/api/v1/users/nobody/links/corp', [['Authorization', `Bearer lg_${'z'.repeat(40)}`]]);
      expect(port.routed()).toBe(2);
      expect(unknownKey.status).toBeGreaterThanOrEqual(500);
    } finally {
      await port.close();
    }
  });
});
