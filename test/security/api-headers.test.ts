import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { operations } from '../../src/http/openapi.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, createTestGateway, type TestGateway } from '../helpers/gateway.ts';

/**
 * Answers that no cache keeps and no browser sniffs: every API answer (token
 * answers carry access tokens; links and the delivery log personal data),
 * errors and 404s included, is `Cache-Control: no-store` and
 * `X-Content-Type-Options: nosniff`; over https every answer, pages included,
 * carries HSTS. The XRPC proxy passes an upstream content type on only when
 * it is data, never one a browser renders or runs.
 */
const XRPC_FIXTURES = fileURLToPath(new URL('../fixtures/xrpc-providers', import.meta.url));
const USER = 'u-headers';
const ACTIVE_CONTENT = '<html><script>alert(document.domain)</script></html>';

let database: Database;
let upstream: Server;
let upstreamUrl: string;
let secure: TestGateway;
let plain: TestGateway;

beforeAll(async () => {
  database = await createTestDatabase();
  // Answers with the content type the query asks for, verbatim, as a hostile server would.
  upstream = createServer((req, res) => {
    const type = new URL(req.url ?? '/', 'http://x').searchParams.get('type');
    if (type !== null) res.setHeader('content-type', type);
    res.end(ACTIVE_CONTENT);
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const env = { RELAY_UPSTREAM_URL: upstreamUrl, LINKGATE_METRICS: 'true', LINK_ALLOW_SHARED_ACCOUNTS: 'true' };
  secure = await createTestGateway(database, { providersDir: XRPC_FIXTURES, env: { ...env, PUBLIC_BASE_URL: 'https://link.example' } });
  plain = await createTestGateway(database, { providersDir: XRPC_FIXTURES, env });
  await link(secure, USER);
});

/** The relay provider links on Continue. */
async function link(gateway: TestGateway, userId: string) {
  const linked = await new TestBrowser((path, init) => gateway.app.request(path, init)).openLink(`/oauth/relay/start?context=${await mintContext('relay', userId)}`);
  expect(await linked.text()).toContain('Account linked');
}
afterAll(async () => {
  upstream?.closeAllConnections();
  upstream?.close();
  await database?.close();
});

function expectUncacheable(response: Response, what: string, https: boolean) {
  expect(response.headers.get('cache-control'), what).toBe('no-store');
  expect(response.headers.get('x-content-type-options'), what).toBe('nosniff');
  expect(response.headers.get('strict-transport-security'), what).toBe(https ? 'max-age=31536000' : null);
}

/** Each API operation with real parameters, a wrong key and a bad parameter: success, refusals and errors alike. */
function requestsFor(method: string, path: string, userId: string): Array<[string, string, RequestInit]> {
  const M = method.toUpperCase();
  const fill = (values: Record<string, string>) => path.replace(/:(\w+)/g, (_, name: string) => values[name] ?? 'x') + (path.endsWith('/wait') ? '?timeoutSeconds=1' : '');
  const good = fill({ userId, provider: 'relay', nsid: 'com.example.echo', id: 'evt_00000000-0000-0000-0000-000000000000' });
  const bad = fill({ userId: 'a%2Fb', provider: 'Relay!', nsid: 'not-an-nsid', id: 'evt_x' });
  const json = (body: unknown): RequestInit => ({ method: M, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const init: RequestInit = path === '/api/v1/link-urls' ? json({ userId, provider: 'relay' }) : M === 'POST' && path.includes('/xrpc/') ? json({}) : { method: M };
  return [
    ['valid', good, init],
    ['wrong key', good, { ...init, headers: { ...(init.headers as Record<string, string>), authorization: 'Bearer lg_wrong_key_0123456789abcdef' } }],
    ['bad parameter', bad, init],
  ];
}

describe('API answers', () => {
  it.each([
    ['over https', true],
    ['over plain http', false],
  ] as const)('every operation, errors included, answers no-store and nosniff, %s with HSTS only there', async (_name, https) => {
    const gateway = https ? secure : plain;
    const userId = `u-walk-${https}`;
    await link(gateway, userId);
    const statuses = new Set<number>();
    // DELETE last: the other operations read the link.
    const ordered = [...operations].sort((a, b) => Number(a.method === 'delete') - Number(b.method === 'delete'));
    for (const op of ordered) {
      for (const [variant, path, init] of requestsFor(op.method, op.path, userId)) {
        const headers = new Headers(init.headers);
        if (!headers.has('authorization')) headers.set('authorization', `Bearer ${API_KEY}`);
        const response = await gateway.app.request(path, { ...init, headers });
        statuses.add(response.status);
        expectUncacheable(response, `${variant} ${op.method} ${path} → ${response.status}`, https);
      }
    }
    // Beyond the operations: an unknown API route, a body over the cap, the metrics and health answers.
    const extra = [
      await gateway.api('/no/such/route'),
      await gateway.api('/link-urls', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pad: 'x'.repeat(70_000) }) }),
      await gateway.app.request('/metrics', { headers: { authorization: `Bearer ${API_KEY}` } }),
      await gateway.app.request('/healthz'),
      await gateway.app.request('/readyz'),
      await gateway.app.request('/openapi.json'),
    ];
    for (const response of extra) {
      statuses.add(response.status);
      expectUncacheable(response, `${response.url} → ${response.status}`, https);
    }
    // The walk met successes, refusals and errors, not one kind of answer.
    for (const status of [200, 201, 400, 401, 404, 413]) expect([...statuses]).toContain(status);
  });

  it('a rate-limited API answer is no-store and nosniff too', async () => {
    const limited = await createTestGateway(database, { providersDir: XRPC_FIXTURES, env: { RELAY_UPSTREAM_URL: upstreamUrl, LINKGATE_API_RATE_LIMIT: '1' } });
    await limited.api('/providers');
    const refused = await limited.api('/providers');
    expect(refused.status).toBe(429);
    expectUncacheable(refused, '429', false);
  });
});

describe('the XRPC proxy', () => {
  const xrpc = (type: string | undefined) =>
    secure.api(`/users/${USER}/links/relay/xrpc/com.example.echo${type === undefined ? '' : `?type=${encodeURIComponent(type)}`}`);

  it.each([
    ['text/html', 'application/octet-stream'],
    ['text/html; charset=utf-8', 'application/octet-stream'],
    ['TEXT/HTML', 'application/octet-stream'],
    ['application/xhtml+xml', 'application/octet-stream'],
    ['image/svg+xml', 'application/octet-stream'],
    ['text/xml', 'application/octet-stream'],
    ['application/javascript', 'application/octet-stream'],
    ['multipart/x-mixed-replace; boundary=x', 'application/octet-stream'],
    ['nonsense', 'application/octet-stream'],
    [undefined, 'application/octet-stream'],
    ['application/json', 'application/json'],
    ['application/json; charset=utf-8', 'application/json; charset=utf-8'],
    ['Application/JSON; charset="UTF-8"; profile=x', 'application/json; charset=utf-8'],
    ['application/vnd.ipld.car', 'application/vnd.ipld.car'],
    ['image/png', 'image/png'],
    ['video/mp4', 'video/mp4'],
    ['text/plain; charset=utf-8', 'text/plain; charset=utf-8'],
  ])('passes an upstream %j on as %j, sandboxed, uncacheable and never sniffed', async (upstreamType, expected) => {
    const response = await xrpc(upstreamType);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe(expected);
    expect(response.headers.get('content-security-policy')).toBe("default-src 'none'; sandbox");
    expectUncacheable(response, String(upstreamType), true);
    // The body itself is passed on unchanged.
    expect(await response.text()).toBe(ACTIVE_CONTENT);
  });
});

describe('pages over https', () => {
  it('carry HSTS, and do not over plain http', async () => {
    for (const [gateway, https] of [[secure, true], [plain, false]] as const) {
      const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
      const pages = [
        await browser.get(`/oauth/relay/start?context=${await mintContext('relay', 'u-hsts')}`),
        await browser.get('/oauth/relay/start?context=not-a-context'),
        await browser.get('/no/such/page'),
        await gateway.app.request('/docs'),
      ];
      for (const page of pages) {
        expect(page.headers.get('content-type')).toMatch(/^text\/html/);
        expectUncacheable(page, `page ${page.status}`, https);
      }
    }
  });
});
