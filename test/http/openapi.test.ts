/**
 * The OpenAPI document against the app: every API route is in it, and every
 * documented answer (status and shape) is what a real request gets.
 */
import { fileURLToPath } from 'node:url';
import * as v from 'valibot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { openApiDocument, operations, type Operation } from '../../src/http/openapi.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';

const API_FIXTURES = fileURLToPath(new URL('../fixtures/api-providers', import.meta.url));

let database: Database;
let gateway: TestGateway;
/** The real providers: atproto configured (loopback), anilist not. */
let standard: TestGateway;
let offline: TestGateway;

/** Links `userId` to the `token` fixture as the account named `mode`. */
async function link(userId: string, mode: string) {
  const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
  const form = await browser.openLink(`/oauth/token/start?context=${await mintContext('token', userId)}`);
  const state = /name="state" value="([^"]+)"/.exec(await form.text())![1]!;
  expect((await browser.post('/oauth/token/callback', { state, mode })).status).toBe(200);
}

beforeAll(async () => {
  database = await createTestDatabase();
  gateway = await createTestGateway(database, {
    providersDir: API_FIXTURES,
    env: { LINKGATE_WEBHOOK_URL: 'http://127.0.0.1:9/hooks', LINKGATE_WEBHOOK_SECRET: 'whsec_openapi_0123456789abcdefghijklmnop', TOKEN_PROXY_ALLOW: 'GET echo, POST echo, PUT echo, PATCH echo, DELETE echo, GET refuse, POST refuse, PUT refuse, PATCH refuse, DELETE refuse, GET huge, POST huge, PUT huge, PATCH huge, DELETE huge' },
  });
  standard = await createTestGateway(database);
  for (const mode of ['ok', 'down', 'slow', 'revoked']) await link(`u-${mode}`, mode);
  // For the proxy's 409: links whose refresh is refused (the fixture's unknown modes), one per method.
  for (const method of ['get', 'post', 'put', 'patch', 'delete']) await link(`u-proxy-${method}`, `proxy-${method}`);
  const closed = await createTestDatabase();
  offline = await createTestGateway(closed);
  await closed.close();
});
afterAll(async () => {
  await database?.close();
});

const json = { 'content-type': 'application/json' };

/** One real request per documented answer: `METHOD path status`. */
const scenarios: Record<string, () => Promise<Response>> = {
  'get /api/v1/providers 200': () => gateway.api('/providers'),
  'get /api/v1/providers 401': () => gateway.api('/providers', { headers: { authorization: 'Bearer nope' } }),
  'post /api/v1/link-urls 201': () => gateway.api('/link-urls', { method: 'POST', headers: json, body: JSON.stringify({ userId: 'u-new', provider: 'token' }) }),
  'post /api/v1/link-urls 400': () => gateway.api('/link-urls', { method: 'POST', headers: json, body: JSON.stringify({ userId: '', provider: 'token' }) }),
  'post /api/v1/link-urls 401': () => gateway.api('/link-urls', { method: 'POST', headers: { ...json, authorization: 'Bearer nope' }, body: '{}' }),
  'post /api/v1/link-urls 404': () => gateway.api('/link-urls', { method: 'POST', headers: json, body: JSON.stringify({ userId: 'u-new', provider: 'nope' }) }),
  'post /api/v1/link-urls 503': () => standard.api('/link-urls', { method: 'POST', headers: json, body: JSON.stringify({ userId: 'u-new', provider: 'anilist' }) }),
  'get /api/v1/users/:userId/links 200': () => gateway.api('/users/u-ok/links'),
  'get /api/v1/users/:userId/links 400': () => gateway.api(`/users/${'x'.repeat(200)}/links`),
  'get /api/v1/users/:userId/links 401': () => gateway.api('/users/u-ok/links', { headers: { authorization: 'Bearer nope' } }),
  'get /api/v1/users/:userId/links/:provider 200': () => gateway.api('/users/u-ok/links/token'),
  'get /api/v1/users/:userId/links/:provider 400': () => gateway.api('/users/u-ok/links/token?verify=maybe'),
  'get /api/v1/users/:userId/links/:provider 401': () => gateway.api('/users/u-ok/links/token', { headers: { authorization: 'Bearer nope' } }),
  'get /api/v1/users/:userId/links/:provider 409': () => gateway.api('/users/u-ok/links/token?requireScopes=read:lists'),
  'get /api/v1/users/:userId/links/:provider 404': () => gateway.api('/users/u-none/links/token'),
  'get /api/v1/users/:userId/links/:provider 503': () => standard.api('/users/u-none/links/anilist'),
  'delete /api/v1/users/:userId/links/:provider 204': async () => {
    await link('u-gone', 'gone');
    return gateway.api('/users/u-gone/links/token', { method: 'DELETE' });
  },
  'delete /api/v1/users/:userId/links/:provider 400': () => gateway.api('/users/u-ok/links/Not-A-Provider', { method: 'DELETE' }),
  'delete /api/v1/users/:userId/links/:provider 401': () => gateway.api('/users/u-ok/links/token', { method: 'DELETE', headers: { authorization: 'Bearer nope' } }),
  'delete /api/v1/users/:userId/links/:provider 404': () => gateway.api('/users/u-none/links/token', { method: 'DELETE' }),
  'get /api/v1/users/:userId/links/:provider/events 200': () => gateway.api('/users/u-ok/links/token/events?limit=5'),
  'get /api/v1/users/:userId/links/:provider/events 400': () => gateway.api('/users/u-ok/links/token/events?cursor=nope'),
  'get /api/v1/users/:userId/links/:provider/events 401': () => gateway.api('/users/u-ok/links/token/events', { headers: { authorization: 'Bearer nope' } }),
  'get /api/v1/users/:userId/links/:provider/events 404': () => gateway.api('/users/u-ok/links/nope/events'),
  'post /api/v1/users/:userId/links/:provider/token 200': () => gateway.api('/users/u-ok/links/token/token', { method: 'POST' }),
  'post /api/v1/users/:userId/links/:provider/token 400': () => gateway.api('/users/u%00x/links/token/token', { method: 'POST' }),
  'post /api/v1/users/:userId/links/:provider/token 401': () => gateway.api('/users/u-ok/links/token/token', { method: 'POST', headers: { authorization: 'Bearer nope' } }),
  'post /api/v1/users/:userId/links/:provider/token 404': () => gateway.api('/users/u-none/links/token/token', { method: 'POST' }),
  'post /api/v1/users/:userId/links/:provider/token 409': () => gateway.api('/users/u-revoked/links/token/token', { method: 'POST' }),
  'post /api/v1/users/:userId/links/:provider/token 503': () => standard.api('/users/u-none/links/anilist/token', { method: 'POST' }),
  'post /api/v1/users/:userId/links/:provider/token 502': () => gateway.api('/users/u-down/links/token/token', { method: 'POST' }),
  'post /api/v1/users/:userId/links/:provider/token 504': () => gateway.api('/users/u-slow/links/token/token', { method: 'POST' }),
  'get /api/v1/users/:userId/links/:provider/wait 200': () => gateway.api('/users/u-ok/links/token/wait?timeoutSeconds=1'),
  'get /api/v1/users/:userId/links/:provider/wait 204': () => gateway.api('/users/u-none/links/token/wait?timeoutSeconds=1'),
  'get /api/v1/users/:userId/links/:provider/wait 400': () => gateway.api('/users/u-ok/links/token/wait?timeoutSeconds=61'),
  'get /api/v1/users/:userId/links/:provider/wait 503': () => standard.api('/users/u-none/links/anilist/wait?timeoutSeconds=1'),
  'get /api/v1/users/:userId/links/:provider/wait 401': () => gateway.api('/users/u-ok/links/token/wait', { headers: { authorization: 'Bearer nope' } }),
  'get /api/v1/users/:userId/links/:provider/wait 409': async () => {
    const since = new Date().toISOString();
    const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
    const form = await browser.openLink(`/oauth/token/start?context=${await mintContext('token', 'u-cancels')}`);
    const state = /name="state" value="([^"]+)"/.exec(await form.text())![1]!;
    await browser.post('/oauth/token/cancel', { state });
    return gateway.api(`/users/u-cancels/links/token/wait?timeoutSeconds=1&since=${since}`);
  },
  // The XRPC proxy's upstream answers (200, 403, 409) need a PDS: test/providers/atproto.test.ts checks them against these schemas.
  'get /api/v1/users/:userId/links/:provider/xrpc/:nsid 400': () => standard.api('/users/u-ok/links/atproto/xrpc/not..an.nsid'),
  'get /api/v1/users/:userId/links/:provider/xrpc/:nsid 401': () => standard.api('/users/u-ok/links/atproto/xrpc/com.atproto.server.getSession', { headers: { authorization: 'Bearer nope' } }),
  'get /api/v1/users/:userId/links/:provider/xrpc/:nsid 404': () => standard.api('/users/u-none/links/atproto/xrpc/com.atproto.server.getSession'),
  'post /api/v1/users/:userId/links/:provider/xrpc/:nsid 400': () => standard.api('/users/u-ok/links/atproto/xrpc/com.atproto.repo.createRecord', { method: 'POST', headers: json, body: '[1]' }),
  'post /api/v1/users/:userId/links/:provider/xrpc/:nsid 401': () => standard.api('/users/u-ok/links/atproto/xrpc/com.atproto.repo.createRecord', { method: 'POST', headers: { ...json, authorization: 'Bearer nope' }, body: '{}' }),
  'get /api/v1/users/:userId/links/:provider/xrpc/:nsid 503': () => standard.api('/users/u-none/links/anilist/xrpc/com.atproto.server.getSession'),
  'post /api/v1/users/:userId/links/:provider/xrpc/:nsid 503': () => standard.api('/users/u-none/links/anilist/xrpc/com.atproto.repo.createRecord', { method: 'POST', headers: json, body: '{}' }),
  'post /api/v1/users/:userId/links/:provider/xrpc/:nsid 404': () => standard.api('/users/u-none/links/atproto/xrpc/com.atproto.repo.createRecord', { method: 'POST', headers: json, body: '{}' }),
  'get /api/v1/webhooks/deliveries 200': () => gateway.api('/webhooks/deliveries?limit=5'),
  'get /api/v1/webhooks/deliveries 400': () => gateway.api('/webhooks/deliveries?status=lost'),
  'get /api/v1/webhooks/deliveries 401': () => gateway.api('/webhooks/deliveries', { headers: { authorization: 'Bearer nope' } }),
  'post /api/v1/webhooks/deliveries/:id/retry 202': async () => {
    const { deliveries } = (await (await gateway.api('/webhooks/deliveries?status=pending&limit=1')).json()) as { deliveries: Array<{ id: string }> };
    return gateway.api(`/webhooks/deliveries/${deliveries[0]!.id}/retry`, { method: 'POST' });
  },
  'post /api/v1/webhooks/deliveries/:id/retry 400': () => gateway.api('/webhooks/deliveries/nope/retry', { method: 'POST' }),
  'post /api/v1/webhooks/deliveries/:id/retry 401': () => gateway.api('/webhooks/deliveries/nope/retry', { method: 'POST', headers: { authorization: 'Bearer nope' } }),
  'post /api/v1/webhooks/deliveries/:id/retry 404': () => gateway.api('/webhooks/deliveries/evt_00000000-0000-0000-0000-000000000000/retry', { method: 'POST' }),
  ...Object.fromEntries(
    (['get', 'post', 'put', 'patch', 'delete'] as const).flatMap((method) => {
      const call = (g: TestGateway, userId: string, path: string, headers: Record<string, string> = {}) =>
        g.api(`/users/${userId}/links/token/proxy/${path}`, { method: method.toUpperCase(), headers: { ...(method === 'get' || method === 'delete' ? {} : json), ...headers }, ...(method === 'get' || method === 'delete' ? {} : { body: '{"a":1}' }) });
      const route = `${method} /api/v1/users/:userId/links/:provider/proxy/*`;
      return [
        [`${route} 200`, () => call(gateway, 'u-ok', 'echo?x=1')],
        [`${route} 400`, () => call(gateway, 'u-ok', 'echo//x')],
        [`${route} 401`, () => call(gateway, 'u-ok', 'echo', { authorization: 'Bearer nope' })],
        [`${route} 403`, () => call(gateway, 'u-ok', 'elsewhere')],
        [`${route} 404`, () => call(gateway, 'u-none', 'echo')],
        [`${route} 409`, () => call(gateway, `u-proxy-${method}`, 'refuse')],
        [`${route} 502`, () => call(gateway, 'u-ok', 'huge')],
        [`${route} 503`, () => standard.api(`/users/u-none/links/anilist/proxy/x`, { method: method.toUpperCase(), ...(method === 'get' || method === 'delete' ? {} : { headers: json, body: '{}' }) })],
      ] as Array<[string, () => Promise<Response>]>;
    }),
  ),
  'post /api/v1/links:import 200': () =>
    gateway.api('/links:import', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: `${JSON.stringify({ userId: 'u-imported', provider: 'token', externalId: 'imported', credentials: { accessToken: 'a' } })}\n{ not json\n` }),
  'post /api/v1/links:import 400': () => gateway.api('/links:import', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' }),
  'post /api/v1/links:import 401': () => gateway.api('/links:import', { method: 'POST', headers: { 'content-type': 'application/x-ndjson', authorization: 'Bearer nope' }, body: '' }),
  'post /api/v1/links:import 413': () => gateway.api('/links:import', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: '{}\n'.repeat(10_001) }),
  'get /healthz 200': async () => gateway.app.request('/healthz'),
  'get /readyz 200': async () => gateway.app.request('/readyz'),
  'get /readyz 503': async () => offline.app.request('/readyz'),
};
const UPSTREAM_ONLY = new Set([
  'get /api/v1/users/:userId/links/:provider/xrpc/:nsid 200',
  'get /api/v1/users/:userId/links/:provider/xrpc/:nsid 403',
  'get /api/v1/users/:userId/links/:provider/xrpc/:nsid 409',
  'post /api/v1/users/:userId/links/:provider/xrpc/:nsid 200',
  'post /api/v1/users/:userId/links/:provider/xrpc/:nsid 403',
  'post /api/v1/users/:userId/links/:provider/xrpc/:nsid 409',
]);

const documented = operations.flatMap((op) => Object.entries(op.responses).map(([status, response]) => ({ op, status: Number(status), response })));

describe('GET /openapi.json', () => {
  it('is OpenAPI 3.1 and lists every route of the API and health checks, no more', async () => {
    const response = await gateway.app.request('/openapi.json');
    expect(response.status).toBe(200);
    const doc = (await response.json()) as ReturnType<typeof openApiDocument>;
    expect(doc.openapi).toBe('3.1.0');
    const inDoc = Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((method) => `${method} ${path}`));
    const inApp = gateway.app.routes
      .filter((r) => (r.path.startsWith('/api/v1/') || r.path === '/healthz' || r.path === '/readyz') && r.method !== 'ALL')
      .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/\/:([A-Za-z]+)/g, '/{$1}')}`);
    expect(new Set(inApp).size).toBeGreaterThan(8);
    expect([...new Set(inDoc)].sort()).toEqual([...new Set(inApp)].sort());
  });

  it('describes parameters and bodies from the schemas the routes validate with', async () => {
    const doc = (await (await gateway.app.request('/openapi.json')).json()) as { paths: Record<string, Record<string, { parameters: Array<{ name: string; in: string; required: boolean; schema: Record<string, unknown> }>; requestBody?: { content: Record<string, { schema: { properties: Record<string, unknown>; required: string[] } }> } }>> };
    const wait = doc.paths['/api/v1/users/{userId}/links/{provider}/wait']!.get!;
    expect(wait.parameters.map((p) => [p.name, p.in, p.required])).toEqual([
      ['userId', 'path', true],
      ['provider', 'path', true],
      ['timeoutSeconds', 'query', false],
      ['since', 'query', false],
    ]);
    const body = doc.paths['/api/v1/link-urls']!.post!.requestBody!.content['application/json']!.schema;
    expect(Object.keys(body.properties).sort()).toEqual(['provider', 'returnTo', 'scopes', 'userId', 'userName']);
    expect(body.required.sort()).toEqual(['provider', 'userId']);
  });
});

describe('every documented answer is a real answer', () => {
  it('has a scenario for each documented status (or is an upstream answer checked with a PDS)', () => {
    const keys = documented.map(({ op, status }) => `${op.method} ${op.path} ${status}`);
    expect(keys.filter((k) => !(k in scenarios) && !UPSTREAM_ONLY.has(k))).toEqual([]);
    expect(Object.keys(scenarios).filter((k) => !keys.includes(k))).toEqual([]);
  });

  it.each(documented.filter(({ op, status }) => `${op.method} ${op.path} ${status}` in scenarios).map((d) => [`${d.op.method.toUpperCase()} ${d.op.path} → ${d.status}`, d] as const))(
    '%s',
    async (_name, { op, status, response }: { op: Operation; status: number; response: Operation['responses'][number] }) => {
      const answer = await scenarios[`${op.method} ${op.path} ${status}`]!();
      expect(answer.status).toBe(status);
      if (!response.schema) {
        expect(await answer.text()).toBe('');
        return;
      }
      const body: unknown = await answer.json();
      const parsed = v.safeParse(response.schema, body);
      expect(parsed.issues?.map((i) => `${v.getDotPath(i)}: ${i.message}`) ?? []).toEqual([]);
    },
  );
});

describe('GET /docs', () => {
  it('renders every operation as a readable page, with the page security headers', async () => {
    const response = await gateway.app.request('/docs');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-security-policy')).toContain("default-src 'none'");
    const html = await response.text();
    for (const op of operations) expect(html).toContain(`${op.method.toUpperCase()}</span><code>${op.path}</code>`);
    expect(html).toContain('href="/openapi.json"');
  });
});
