/**
 * The OpenAPI document against the app: every route of the bot API, the
 * operator API and the web-session API is in it (and nothing else), and every
 * documented answer (status, shape, error codes, headers) is what a real
 * request gets.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { inspectRoutes } from 'hono/dev';
import * as v from 'valibot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { openApiDocument, openApiPath, operations, operatorOperations, type Operation } from '../../src/http/openapi.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';

const API_FIXTURES = fileURLToPath(new URL('../fixtures/api-providers', import.meta.url));

let database: Database;
let gateway: TestGateway;
/** The real providers: atproto configured (loopback), anilist not. */
let standard: TestGateway;
/** With an owner in LINKGATE_ADMINS: the console is open, so invites can be made. */
let consoleOpen: TestGateway;
let offline: TestGateway;
/** The web-session API's upstream failures: an OpenID provider nobody answers for (`down`), one that never answers (`slow`). */
let upstream: TestGateway;
let silent: Server;
const sockets = new Set<Socket>();

const ADMIN_KEY = 'lg_admin_openapi_0123456789abcdefghijklmnop';
/** A redirect URI of an app of the default tenant: web-session sign-ins may end there. */
const AFTER = 'https://app.example/after';

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
    env: { LINKGATE_ADMIN_KEYS: ADMIN_KEY, LINKGATE_WEBHOOK_URL: 'http://127.0.0.1:9/hooks', LINKGATE_WEBHOOK_SECRET: 'whsec_openapi_0123456789abcdefghijklmnop', TOKEN_PROXY_ALLOW: 'GET echo, POST echo, PUT echo, PATCH echo, DELETE echo, GET refuse, POST refuse, PUT refuse, PATCH refuse, DELETE refuse, GET huge, POST huge, PUT huge, PATCH huge, DELETE huge' },
  });
  standard = await createTestGateway(database);
  consoleOpen = await createTestGateway(database, { env: { LINKGATE_ADMIN_KEYS: ADMIN_KEY, LINKGATE_ADMINS: 'owner=discord:80351110224678912' } });
  for (const mode of ['ok', 'down', 'slow', 'revoked']) await link(`u-${mode}`, mode);
  // For the proxy's 409: links whose refresh is refused (the fixture's unknown modes), one per method.
  for (const method of ['get', 'post', 'put', 'patch', 'delete']) await link(`u-proxy-${method}`, `proxy-${method}`);
  const closed = await createTestDatabase();
  offline = await createTestGateway(closed);
  await closed.close();
  // The operator API's objects the scenarios read, and the app web-session sign-ins of the default tenant end at.
  expect((await admin('/tenants', { method: 'POST', body: { id: 'oa', name: 'OpenAPI' } })).status).toBe(201);
  expect((await admin('/tenants/default/apps', { method: 'POST', body: { name: 'After', redirectUris: [AFTER], type: 'public' } })).status).toBe(201);
  silent = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const port = (silent.address() as { port: number }).port;
  upstream = await createTestGateway(database, {
    // A fetch of the test's own: the providers' requests time out after 2 seconds.
    fetch: (input, init) => fetch(input, init),
    env: {
      OIDC_PROVIDERS: 'down,slow',
      DOWN_ISSUER: 'http://127.0.0.1:9',
      DOWN_CLIENT_ID: 'linkgate',
      DOWN_CLIENT_SECRET: 'down-client-secret-0123456789',
      SLOW_ISSUER: `http://127.0.0.1:${port}`,
      SLOW_CLIENT_ID: 'linkgate',
      SLOW_CLIENT_SECRET: 'slow-client-secret-0123456789',
    },
  });
});
afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => (silent ? silent.close(() => resolve()) : resolve()));
  await database?.close();
});

/** A request to the operator API of `on` (the gateway with LINKGATE_ADMIN_KEYS by default). */
async function admin(path: string, init: { method?: string; body?: unknown; raw?: string; headers?: Record<string, string>; key?: string; on?: TestGateway } = {}): Promise<Response> {
  const headers: Record<string, string> = { authorization: `Bearer ${init.key ?? ADMIN_KEY}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers };
  const body = init.body === undefined ? init.raw : JSON.stringify(init.body);
  return (init.on ?? gateway).app.request(`/api/admin/v1${path}`, { method: init.method ?? 'GET', headers, ...(body === undefined ? {} : { body }) });
}

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
/** A bot key with an x-tenant-id naming another tenant: refused before the route does anything. */
Object.assign(
  scenarios,
  Object.fromEntries(
    operations
      .filter((op) => op.responses[403]?.codes?.join() === 'tenant_mismatch')
      .map((op) => {
        const path = op.path.slice('/api/v1'.length).replace(':userId', 'u-ok').replace(':provider', 'token').replace(':nsid', 'app.bsky.actor.getProfile').replace(':id', 'evt_x').replace('*', 'echo');
        return [`${op.method} ${op.path} 403`, () => gateway.api(path, { method: op.method.toUpperCase(), headers: { 'x-tenant-id': 'another' } })];
      }),
  ),
);

// ── The operator API ───────────────────────────────────────────────────────

const keyOf = (op: Operation) => `${op.method} ${op.path}`;
const PASSPHRASE = 'openapi export passphrase';
const ndjson = { 'content-type': 'application/x-ndjson' };
const IMPORTED = `${JSON.stringify({ userId: 'u-oa', provider: 'token', externalId: 'oa-account', credentials: { accessToken: 'a' } })}\n`;

/** A concrete path of an operator route in `tenant`, with ids of the right form that name nothing. */
const pathOf = (op: Operation, tenant: string) =>
  op.path
    .slice('/api/admin/v1'.length)
    .replace(':tenant', tenant)
    .replace(':id', op.path.includes('/api-keys/') ? 'key_nothing' : 'cs_nothing')
    .replace(':provider', 'token')
    .replace(':userId', 'u-nobody')
    .replace(':clientId', 'app_nothing');
/** What each operator route accepts, so that a scenario gets wrong only what it means to. */
const ACCEPTED: Record<string, { body?: unknown; raw?: string; headers?: Record<string, string> }> = {
  'post /api/admin/v1/tenants': { body: { id: 'never-made', name: 'Never' } },
  'patch /api/admin/v1/tenants/:tenant': { body: { name: 'Renamed' } },
  'post /api/admin/v1/tenants/:tenant/api-keys': { body: { name: 'bot' } },
  'put /api/admin/v1/tenants/:tenant/providers/:provider': { body: { env: {} } },
  'post /api/admin/v1/tenants/:tenant/apps': { body: { name: 'App', redirectUris: ['https://app.example/cb'], type: 'confidential' } },
  'post /api/admin/v1/tenants/:tenant/signing-keys': { body: { publishSeconds: 0 } },
  'put /api/admin/v1/tenants/:tenant/webhook': { body: { url: 'https://hooks.example/linkgate', secret: 'whsec_openapi_0123456789abcdefghijklmnop' } },
  'post /api/admin/v1/tenants/:tenant/links:import': { raw: IMPORTED, headers: ndjson },
  'get /api/admin/v1/tenants/:tenant/links:export': { headers: { 'linkgate-passphrase': PASSPHRASE } },
};
const operatorCall = (op: Operation, tenant: string, init: { key?: string; on?: TestGateway } = {}) => admin(pathOf(op, tenant), { method: op.method.toUpperCase(), ...ACCEPTED[keyOf(op)], ...init });
const ok = async (answer: Promise<Response> | Response) => {
  const response = await answer;
  expect(response.status, await response.clone().text()).toBeLessThan(300);
  return (await response.json()) as Record<string, string>;
};

/** The answers every operator route gives alike: a wrong key; in a tenant that is not one, or none; the API off. */
const operatorCommon = Object.fromEntries(
  operatorOperations.flatMap((op): Array<[string, () => Promise<Response>]> => [
    [`${keyOf(op)} 401`, () => operatorCall(op, 'oa', { key: 'nope' })],
    ...(op.path.includes('/:tenant')
      ? ([
          [`${keyOf(op)} 400`, () => operatorCall(op, 'Not_A_Tenant')],
          [`${keyOf(op)} 404`, () => operatorCall(op, 'nobody')],
        ] as Array<[string, () => Promise<Response>]>)
      : ([[`${keyOf(op)} 404`, () => operatorCall(op, 'oa', { on: standard })]] as Array<[string, () => Promise<Response>]>)),
  ]),
);

const T = '/api/admin/v1/tenants/:tenant';
const INVITES = '/api/admin/v1/console/invites';
Object.assign(scenarios, operatorCommon, {
  [`post ${INVITES} 201`]: () => admin('/console/invites', { method: 'POST', on: consoleOpen }),
  [`post ${INVITES} 409`]: () => admin('/console/invites', { method: 'POST' }),
  [`get ${INVITES} 200`]: () => admin('/console/invites', { on: consoleOpen }),
  [`get ${INVITES} 409`]: () => admin('/console/invites'),
  [`delete ${INVITES}/:id 204`]: async () => {
    const { id } = await ok(admin('/console/invites', { method: 'POST', on: consoleOpen }));
    return admin(`/console/invites/${id}`, { method: 'DELETE', on: consoleOpen });
  },
  [`delete ${INVITES}/:id 400`]: () => admin('/console/invites/nope', { method: 'DELETE', on: consoleOpen }),
  [`delete ${INVITES}/:id 409`]: () => admin('/console/invites/inv_0000000000000000', { method: 'DELETE' }),
  'get /api/admin/v1/audit 200': () => admin('/audit?limit=5'),
  'get /api/admin/v1/audit 400': () => admin('/audit?limit=0'),
  'get /api/admin/v1/audit.csv 200': () => admin('/audit.csv?tenant=oa'),
  'get /api/admin/v1/audit.csv 400': () => admin('/audit.csv?action=nope'),
  'post /api/admin/v1/tenants 201': () => admin('/tenants', { method: 'POST', body: { id: 'created', name: 'Created' } }),
  'post /api/admin/v1/tenants 400': () => admin('/tenants', { method: 'POST', body: { id: 'Not A Tenant', name: 'x' } }),
  'post /api/admin/v1/tenants 409': () => admin('/tenants', { method: 'POST', body: { id: 'oa', name: 'Again' } }),
  'get /api/admin/v1/tenants 200': () => admin('/tenants'),
  [`get ${T} 200`]: () => admin('/tenants/oa'),
  [`patch ${T} 200`]: () => admin('/tenants/oa', { method: 'PATCH', body: { name: 'OpenAPI, renamed', apiRateLimit: { limit: 100, windowSeconds: 60 } } }),
  [`delete ${T} 204`]: async () => {
    await ok(admin('/tenants', { method: 'POST', body: { id: 'doomed', name: 'Doomed' } }));
    return admin('/tenants/doomed', { method: 'DELETE' });
  },
  [`delete ${T} 400`]: () => admin('/tenants/default', { method: 'DELETE' }),
  [`post ${T}/api-keys 201`]: () => admin('/tenants/oa/api-keys', { method: 'POST', body: { name: 'bot' } }),
  [`get ${T}/api-keys 200`]: () => admin('/tenants/oa/api-keys'),
  [`delete ${T}/api-keys/:id 204`]: async () => {
    const { id } = await ok(admin('/tenants/oa/api-keys', { method: 'POST', body: { name: 'short-lived' } }));
    return admin(`/tenants/oa/api-keys/${id}`, { method: 'DELETE' });
  },
  [`post ${T}/context-secrets 201`]: () => admin('/tenants/oa/context-secrets', { method: 'POST' }),
  [`get ${T}/context-secrets 200`]: () => admin('/tenants/oa/context-secrets'),
  [`delete ${T}/context-secrets/:id 204`]: async () => {
    const { id } = await ok(admin('/tenants/oa/context-secrets', { method: 'POST' }));
    return admin(`/tenants/oa/context-secrets/${id}`, { method: 'DELETE' });
  },
  [`get ${T}/providers 200`]: () => admin('/tenants/oa/providers'),
  [`put ${T}/providers/:provider 200`]: () => admin('/tenants/oa/providers/token', { method: 'PUT', body: { env: {} } }),
  [`put ${T}/providers/:provider 400`]: () => admin('/tenants/oa/providers/token', { method: 'PUT', body: { env: { TOKEN_SECRET: 'not read by the module' } } }),
  [`delete ${T}/providers/:provider 204`]: async () => {
    await ok(admin('/tenants/oa/providers/token', { method: 'PUT', body: { env: {} } }));
    return admin('/tenants/oa/providers/token', { method: 'DELETE' });
  },
  [`delete ${T}/providers/:provider 400`]: () => admin('/tenants/default/providers/token', { method: 'DELETE' }),
  [`post ${T}/apps 201`]: () => admin('/tenants/oa/apps', { method: 'POST', body: { name: 'Dashboard', redirectUris: ['https://app.example/cb'], type: 'confidential' } }),
  [`post ${T}/apps 400`]: () => admin('/tenants/oa/apps', { method: 'POST', body: { name: 'Dashboard', redirectUris: ['http://app.example/cb'], type: 'confidential' } }),
  [`get ${T}/apps 200`]: () => admin('/tenants/oa/apps'),
  [`delete ${T}/apps/:clientId 204`]: async () => {
    const { clientId } = await ok(admin('/tenants/oa/apps', { method: 'POST', body: { name: 'Short-lived', redirectUris: ['https://app.example/cb'], type: 'public' } }));
    return admin(`/tenants/oa/apps/${clientId}`, { method: 'DELETE' });
  },
  [`get ${T}/signing-keys 200`]: () => admin('/tenants/oa/signing-keys'),
  [`post ${T}/signing-keys 201`]: () => admin('/tenants/oa/signing-keys', { method: 'POST', body: { publishSeconds: 0 } }),
  [`post ${T}/signing-keys 409`]: async () => {
    await ok(admin('/tenants', { method: 'POST', body: { id: 'pending', name: 'Pending' } }));
    await ok(admin('/tenants/pending/signing-keys', { method: 'POST', body: { publishSeconds: 3600 } }));
    return admin('/tenants/pending/signing-keys', { method: 'POST', body: { publishSeconds: 3600 } });
  },
  [`put ${T}/webhook 200`]: () => admin('/tenants/oa/webhook', { method: 'PUT', ...ACCEPTED[`put ${T}/webhook`] }),
  [`put ${T}/webhook 400`]: () => admin('/tenants/oa/webhook', { method: 'PUT', body: { url: 'https://hooks.example/linkgate', secret: 'short' } }),
  [`delete ${T}/webhook 204`]: async () => {
    await ok(admin('/tenants/oa/webhook', { method: 'PUT', ...ACCEPTED[`put ${T}/webhook`] }));
    return admin('/tenants/oa/webhook', { method: 'DELETE' });
  },
  [`delete ${T}/users/:userId/links/:provider 200`]: async () => {
    const line = JSON.stringify({ userId: 'u-oa-unlinked', provider: 'token', externalId: 'oa-unlinked', credentials: { accessToken: 'a' } });
    await ok(admin('/tenants/oa/links:import', { method: 'POST', raw: `${line}\n`, headers: ndjson }));
    return admin('/tenants/oa/users/u-oa-unlinked/links/token', { method: 'DELETE' });
  },
  [`post ${T}/links:import 200`]: () => admin('/tenants/oa/links:import', { method: 'POST', raw: `${IMPORTED}{ not json\n`, headers: ndjson }),
  [`post ${T}/links:import 413`]: () => admin('/tenants/oa/links:import', { method: 'POST', raw: '{}\n'.repeat(10_001), headers: ndjson }),
  [`get ${T}/links:export 200`]: () => admin('/tenants/oa/links:export', { headers: { 'linkgate-passphrase': PASSPHRASE } }),
  [`get ${T}/links:export 400`]: () => admin('/tenants/oa/links:export'),
});

// ── The web-session API ────────────────────────────────────────────────────

const start = async (on: TestGateway, provider: string, query = '') => on.app.request(`/api/auth/${provider}/start?postLoginRedirect=${encodeURIComponent(AFTER)}${query}`);

/** A person signs in with the `token` fixture, as the account `mode`; the browser then holds the session cookie. */
async function signIn(mode: string): Promise<TestBrowser> {
  const browser = new TestBrowser((path, init) => gateway.app.request(path, { ...init, redirect: 'manual' }));
  const started = (await (await browser.get(`/api/auth/token/start?postLoginRedirect=${encodeURIComponent(AFTER)}`)).json()) as { authorizationUrl: string; state: string };
  const form = await browser.get(started.authorizationUrl);
  const state = /name="state" value="([^"]+)"/.exec(await form.text())?.[1] ?? started.state;
  const back = await browser.post('/oauth/token/callback', { state, mode }, { follow: false });
  expect(back.status, await back.clone().text()).toBe(303);
  expect(back.headers.get('location')).toBe(AFTER);
  return browser;
}

Object.assign(scenarios, {
  'get /api/auth/:provider/start 200': () => start(gateway, 'token'),
  'get /api/auth/:provider/start 302': () => start(gateway, 'token', '&mode=redirect'),
  'get /api/auth/:provider/start 400': async () => gateway.app.request('/api/auth/token/start?postLoginRedirect=https%3A%2F%2Felsewhere.example%2F'),
  'get /api/auth/:provider/start 404': () => start(gateway, 'token', '&tenantId=nobody'),
  'get /api/auth/:provider/start 502': () => start(upstream, 'down'),
  'get /api/auth/:provider/start 503': () => start(standard, 'anilist'),
  'get /api/auth/:provider/start 504': () => start(upstream, 'slow'),
  'get /api/auth/session 200': async () => (await signIn('signed-in')).get('/api/auth/session'),
  'get /api/auth/session 400': async () => gateway.app.request('/api/auth/session?tenantId=Not_A_Tenant'),
  'get /api/auth/session 401': async () => gateway.app.request('/api/auth/session'),
  'post /api/auth/logout 204': async () => (await signIn('signs-out')).post('/api/auth/logout', {}),
  'post /api/auth/logout 403': async () => gateway.app.request('/api/auth/logout', { method: 'POST', headers: { 'sec-fetch-site': 'cross-site', origin: 'https://elsewhere.example' } }),
});

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
  it('is OpenAPI 3.1 and lists every route of the bot, operator and web-session APIs and the health checks, with their methods, no more', async () => {
    const response = await gateway.app.request('/openapi.json');
    expect(response.status).toBe(200);
    const doc = (await response.json()) as ReturnType<typeof openApiDocument>;
    expect(doc.openapi).toBe('3.1.0');
    const inDoc = Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((method) => `${method} ${path}`));
    // Handlers only (a middleware takes `next`); a route for any method (app.all) must be documented for each.
    const ANY = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options'];
    const inApp = inspectRoutes(gateway.app)
      .filter((r) => !r.isMiddleware && (/^\/api\/(v1|admin\/v1|auth)\//.test(r.path) || r.path === '/healthz' || r.path === '/readyz'))
      .flatMap((r) => (r.method === 'ALL' ? ANY : [r.method.toLowerCase()]).map((method) => `${method} ${openApiPath(r.path)}`));
    for (const prefix of ['/api/v1/', '/api/admin/v1/', '/api/auth/']) expect(inApp.filter((route) => route.includes(` ${prefix}`)).length).toBeGreaterThan(2);
    expect([...new Set(inDoc)].sort()).toEqual([...new Set(inApp)].sort());
    expect(inDoc).toHaveLength(new Set(inDoc).size);
    // The proxy takes exactly the methods it is documented with.
    expect(inApp.filter((route) => route.endsWith('/proxy/*')).map((route) => route.split(' ')[0]).sort()).toEqual(['delete', 'get', 'patch', 'post', 'put']);
    const ids = Object.values(doc.paths).flatMap((item) => Object.values(item).map((op) => (op as { operationId: string }).operationId));
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('says who may call each route: a bot key, an operator key, the session cookie, or anyone', async () => {
    type Described = { security?: Array<Record<string, string[]>>; tags: string[] };
    const doc = (await (await gateway.app.request('/openapi.json')).json()) as { security: unknown; components: { securitySchemes: Record<string, { type: string; in?: string; name?: string }> }; paths: Record<string, Record<string, Described>> };
    expect(doc.security).toEqual([{ apiKey: [] }]);
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(['apiKey', 'operatorKey', 'sessionCookie']);
    expect(doc.components.securitySchemes.sessionCookie).toMatchObject({ type: 'apiKey', in: 'cookie', name: 'linkgate_session' });
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const described of Object.values(item)) {
        if (path.startsWith('/api/admin/v1/')) expect([path, described.security, described.tags]).toEqual([path, [{ operatorKey: [] }], ['operator']]);
        else if (path.startsWith('/api/auth/')) expect([path, described.tags]).toEqual([path, ['sign-in']]);
        else if (path.startsWith('/api/v1/')) expect([path, described.security]).toEqual([path, undefined]);
      }
    }
    expect(doc.paths['/api/auth/session']!.get!.security).toEqual([{ sessionCookie: [] }]);
    expect(doc.paths['/api/auth/{provider}/start']!.get!.security).toEqual([]);
    // Over https the cookie is the __Host- one.
    expect(openApiDocument('https://link.example').components.securitySchemes.sessionCookie.name).toBe('__Host-linkgate_session');
  });

  it('describes parameters and bodies from the schemas the routes validate with', async () => {
    const doc = (await (await gateway.app.request('/openapi.json')).json()) as { paths: Record<string, Record<string, { parameters: Array<{ name: string; in: string; required: boolean; schema: Record<string, unknown> }>; requestBody?: { content: Record<string, { schema: { properties: Record<string, unknown>; required: string[] } }> } }>> };
    const wait = doc.paths['/api/v1/users/{userId}/links/{provider}/wait']!.get!;
    expect(wait.parameters.map((p) => [p.name, p.in, p.required])).toEqual([
      ['userId', 'path', true],
      ['provider', 'path', true],
      ['timeoutSeconds', 'query', false],
      ['since', 'query', false],
      ['x-tenant-id', 'header', false],
    ]);
    const body = doc.paths['/api/v1/link-urls']!.post!.requestBody!.content['application/json']!.schema;
    expect(Object.keys(body.properties).sort()).toEqual(['provider', 'returnTo', 'scopes', 'userId', 'userName']);
    expect(body.required.sort()).toEqual(['provider', 'userId']);
    // The operator API's, from admin.ts's schemas.
    const apps = doc.paths['/api/admin/v1/tenants/{tenant}/apps']!.post!;
    expect(apps.parameters.map((p) => [p.name, p.in, p.required])).toEqual([['tenant', 'path', true]]);
    const app = apps.requestBody!.content['application/json']!.schema;
    expect(app.required.sort()).toEqual(['name', 'type']);
    expect(Object.keys(app.properties)).toContain('legacyJwtSecret');
    const exported = doc.paths['/api/admin/v1/tenants/{tenant}/links:export']!.get!;
    expect(exported.parameters.map((p) => [p.name, p.in, p.required])).toEqual([
      ['tenant', 'path', true],
      ['plaintext', 'query', false],
      ['linkgate-passphrase', 'header', false],
    ]);
    expect(Object.keys(doc.paths['/api/admin/v1/tenants/{tenant}/links:import']!.post!.requestBody!.content)).toEqual(['application/x-ndjson']);
    const started = doc.paths['/api/auth/{provider}/start']!.get!;
    expect(started.parameters.map((p) => [p.name, p.in, p.required])).toEqual([
      ['provider', 'path', true],
      ['postLoginRedirect', 'query', true],
      ['mode', 'query', false],
      ['tenantId', 'query', false],
      ['x-tenant-id', 'header', false],
    ]);
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
      expect(answer.status, await answer.clone().text()).toBe(status);
      for (const name of Object.keys(response.headers ?? {})) expect(answer.headers.get(name), name).not.toBeNull();
      if (!response.schema) {
        expect(await answer.text()).toBe('');
        return;
      }
      const contentType = response.contentType ?? 'application/json';
      expect(answer.headers.get('content-type')).toMatch(new RegExp(`^${contentType.replace('/', '\\/')}\\b`));
      const body: unknown = contentType === 'application/json' ? await answer.json() : await answer.text();
      const parsed = v.safeParse(response.schema, body);
      expect(parsed.issues?.map((i) => `${v.getDotPath(i)}: ${i.message}`) ?? []).toEqual([]);
      if (contentType === 'application/x-ndjson') for (const line of (body as string).trimEnd().split('\n')) expect(() => JSON.parse(line) as unknown).not.toThrow();
      if (response.codes) expect(response.codes).toContain((body as { error: { code: string } }).error.code);
    },
  );
});

describe('the operator API without LINKGATE_ADMIN_KEYS', () => {
  it('answers 404 not_found on every route, as its 404 says, even with a key that works elsewhere', async () => {
    expect(operatorOperations.length).toBeGreaterThan(20);
    for (const op of operatorOperations) {
      expect(op.responses[404]?.codes).toContain('not_found');
      const answer = await operatorCall(op, 'oa', { on: standard });
      expect([keyOf(op), answer.status, ((await answer.json()) as { error: { code: string } }).error.code]).toEqual([keyOf(op), 404, 'not_found']);
    }
  });
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
