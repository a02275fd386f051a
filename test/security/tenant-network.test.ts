/**
 * In production a tenant's configuration (made through the operator API or
 * the admin console, by someone the operator trusts with that tenant only)
 * never makes the gateway reach loopback or a private network: its OpenID
 * provider's discovery, its API base for the proxy and its webhook endpoint
 * are refused there, and it cannot switch on a provider's private servers.
 * The default tenant, configured by the environment, is the operator's own.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publicOnlyFetch, type Resolve } from '../../src/core/outbound.ts';
import { createTenantStore } from '../../src/core/tenants.ts';
import { createWebhookWorker } from '../../src/core/webhooks.ts';
import type { Database } from '../../src/db/client.ts';
import { webhookDeliveries } from '../../src/db/schema.ts';
import { eq } from '../../src/db/orm.ts';
import { startTestIdp, type TestIdp } from '../fakes/oidc-idp.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, TEST_SECRETS, type TestGateway } from '../helpers/gateway.ts';

const ADMIN_KEY = 'admin_0123456789abcdefghijklmnopqrstuvwxyz';
const CORP_SECRET = 'corp-client-secret-0123456789abcdef';

let database: Database;
let idp: TestIdp;
let gateway: TestGateway;
let internal: Server;
let internalUrl: string;
const hits: string[] = [];

const admin = (path: string, method = 'GET', body?: unknown) =>
  gateway.app.request(`/api/admin/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });

beforeAll(async () => {
  // A service only the gateway's own network should reach (think cloud metadata).
  internal = createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    res.writeHead(200, { 'content-type': 'text/plain' }).end('INTERNAL-ONLY');
  });
  await new Promise<void>((resolve) => internal.listen(0, '127.0.0.1', resolve));
  internalUrl = `http://127.0.0.1:${(internal.address() as AddressInfo).port}`;
  database = await createTestDatabase();
  idp = await startTestIdp({ redirectUris: ['https://link.example/oauth/corp/callback'], clientId: 'linkgate', clientSecret: CORP_SECRET });
  gateway = await createTestGateway(database, { env: { ...TEST_SECRETS, NODE_ENV: 'production', PUBLIC_BASE_URL: 'https://link.example', LINKGATE_ADMIN_KEYS: ADMIN_KEY } });
  expect((await admin('/tenants', 'POST', { id: 'quizbot', name: 'Quiz Bot' })).status).toBe(201);
});
afterAll(async () => {
  internal?.close();
  await idp?.close();
  await database?.close();
});

describe("a tenant's configuration in production", () => {
  it('cannot make the gateway fetch an OpenID provider on loopback: a link through it stops before any request', async () => {
    await admin('/tenants/quizbot/providers/corp', 'PUT', { env: { CORP_ISSUER: internalUrl, CORP_CLIENT_ID: 'linkgate', CORP_CLIENT_SECRET: CORP_SECRET } });
    const key = ((await (await admin('/tenants/quizbot/api-keys', 'POST', { name: 'bot' })).json()) as { key: string }).key;
    expect((await admin('/tenants/quizbot/context-secrets', 'POST')).status).toBe(201);
    const made = await gateway.app.request('/api/v1/link-urls', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ userId: '333333333333333333', provider: 'corp' }) });
    if (made.status === 201) {
      const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
      const opened = await browser.openLink(((await made.json()) as { url: string }).url);
      expect(opened.status).toBeGreaterThanOrEqual(400);
    } else {
      expect(made.status).toBeGreaterThanOrEqual(400);
    }
    expect(hits).toEqual([]);
  });

  it('cannot let a provider reach private servers', async () => {
    const answer = await admin('/tenants/quizbot/providers/jellyfin', 'PUT', { env: { JELLYFIN_ALLOW_USER_SERVER: 'true', JELLYFIN_ALLOW_PRIVATE_SERVERS: 'true' } });
    expect(answer.status).toBe(400);
    expect(await answer.json()).toMatchObject({ error: { message: expect.stringContaining("JELLYFIN_ALLOW_PRIVATE_SERVERS: only the gateway's own configuration") } });
  });

  it('sends no webhook to a private address: the delivery fails, and the service hears nothing', async () => {
    const store = createTenantStore({ database, keyring: gateway.keyring, environment: { apiKeys: [], contextSigningSecret: 'unused', webhook: undefined } });
    expect((await admin('/tenants/quizbot/webhook', 'PUT', { url: `${internalUrl}/hook`, secret: 'whsec_quizbot_0123456789abcdefghijklmnopqrstuv' })).status).toBe(200);
    const event = 'evt_00000000-0000-4000-8000-000000000001';
    await database.db.insert(webhookDeliveries).values({ id: event, tenant: 'quizbot', type: 'link.created', payload: '{}', status: 'pending', attempts: 0, nextAttemptAt: new Date(), createdAt: new Date() });
    const worker = createWebhookWorker({ database, endpoint: (tenant) => store.webhook(tenant), maxAttempts: 1, retryBaseMs: 10, logger: pino({ level: 'silent' }), publicOnlyForTenants: true });
    await worker.runOnce();
    const [row] = await database.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, event));
    expect(row).toMatchObject({ status: 'dead', lastStatus: null });
    expect(hits).toEqual([]);
  });
});

describe('publicOnlyFetch', () => {
  it('refuses loopback, private, link-local and IPv6 loopback addresses before sending, and passes a public one on with its checking dispatcher', async () => {
    const sent: Array<{ url: string; dispatcher: unknown }> = [];
    const guarded = publicOnlyFetch(async (input, init) => {
      sent.push({ url: String(input), dispatcher: (init as { dispatcher?: unknown } | undefined)?.dispatcher });
      return new Response('ok');
    });
    for (const url of [`${internalUrl}/`, 'http://169.254.169.254/latest/meta-data', 'http://10.0.0.7/', 'http://[::1]:8080/', 'http://192.168.1.20/']) {
      await expect(guarded(url)).rejects.toMatchObject({ code: 'provider_unavailable' });
    }
    expect(sent).toEqual([]);
    expect(await (await guarded('https://93.184.215.14/data')).text()).toBe('ok');
    expect(sent).toEqual([{ url: 'https://93.184.215.14/data', dispatcher: expect.any(Object) }]);
  });

  it('checks a name when its connection is made: localhost, and a name whose DNS answer is the service, reach nothing', async () => {
    const port = new URL(internalUrl).port;
    await expect(publicOnlyFetch(fetch)(`http://localhost:${port}/`)).rejects.toMatchObject({ code: 'provider_unavailable' });
    // DNS rebinding: whatever a check before the connection saw, the connection uses its own answer, and that is checked.
    const asked: string[] = [];
    const rebinding: Resolve = (hostname, _options, callback) => {
      asked.push(hostname);
      callback(null, [{ address: '127.0.0.1', family: 4 }]);
    };
    await expect(publicOnlyFetch(fetch, { resolve: rebinding })(`http://rebind.example:${port}/latest/meta-data`)).rejects.toMatchObject({ code: 'provider_unavailable' });
    expect(asked).toEqual(['rebind.example']);
    // An answer with a public address among private ones is refused too.
    const mixed: Resolve = (_hostname, _options, callback) => callback(null, [{ address: '93.184.215.14', family: 4 }, { address: '10.0.0.7', family: 4 }]);
    await expect(publicOnlyFetch(fetch, { resolve: mixed })(`http://mixed.example:${port}/`)).rejects.toMatchObject({ code: 'provider_unavailable' });
    expect(hits).toEqual([]);
  });
});
