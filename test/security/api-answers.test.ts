import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLinkStore } from '../../src/core/links.ts';
import type { Database } from '../../src/db/client.ts';
import { botOperations as operations } from '../../src/http/openapi.ts';
import { startFakeDiscord, type FakeDiscord } from '../fakes/discord.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, atFake, createTestGateway, reroute, type TestGateway } from '../helpers/gateway.ts';
import { leaksIn } from './leaks.ts';

/**
 * No answer of the bot API carries a refresh token. Every route of the bot API
 * (from its OpenAPI operations, which test/http/openapi.test.ts keeps equal
 * to the app's routes; the operator API's export hands credentials over on
 * purpose, to the operator) is called, with every variant that changes what it
 * answers, for two linked users: one linked to Discord through the real flow
 * (a 30-second token, so each token request refreshes and Discord rotates the
 * refresh token) and one whose stored credentials hold a known refresh token.
 * Every refresh token the links ever held, and the ID token and client
 * secret, are then looked for in every status line, header and body.
 */
const DISCORD = { DISCORD_CLIENT_ID: '1100000000000000005', DISCORD_CLIENT_SECRET: 'answers-discord-client-secret-0123' };
const DISCORD_USER = '80351110224671111';
const STORED_USER = '80351110224672222';
const KNOWN_REFRESH = 'known-refresh-token-0123456789abcdefghij';
const KNOWN_ID_TOKEN = 'eyJhbGciOiJSUzI1NiJ9.known-id-token-payload-0123456789.signature';

let database: Database;
let discord: FakeDiscord;
let gateway: TestGateway;
const refreshTokens = new Map<string, string>();
const answers: Array<{ request: string; text: string }> = [];

/** Every refresh token stored right now, remembered for good (rotated ones included). */
async function collectRefreshTokens() {
  const store = createLinkStore(database.db, gateway.keyring);
  for (const [userId, provider] of [[DISCORD_USER, 'discord'], [STORED_USER, 'corp']] as const) {
    const row = await store.get({ tenant: 'default', userId, provider });
    const refreshToken = row && store.openCredentials(row).refreshToken;
    if (refreshToken) refreshTokens.set(`${provider} refresh token #${refreshTokens.size + 1}`, refreshToken);
  }
}

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = { authorization: `Bearer ${API_KEY}` }) {
  const response = await gateway.app.request(path, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = `${response.status}\n${[...response.headers].map(([k, v]) => `${k}: ${v}`).join('\n')}\n\n${await response.clone().text()}`;
  answers.push({ request: `${method} ${path}`, text });
  await collectRefreshTokens();
  return response;
}

beforeAll(async () => {
  database = await createTestDatabase();
  discord = await startFakeDiscord({ clientId: DISCORD.DISCORD_CLIENT_ID, clientSecret: DISCORD.DISCORD_CLIENT_SECRET, accessTokenTtlSeconds: 30 });
  discord.users.set('80351110224679999', { id: '80351110224679999', username: 'answers', global_name: 'Answers' });
  gateway = await createTestGateway(database, {
    env: {
      ...DISCORD,
      OIDC_PROVIDERS: 'corp',
      CORP_ISSUER: 'https://idp.example',
      CORP_CLIENT_ID: 'corp-client',
      LINKGATE_WEBHOOK_URL: 'https://hooks.bot.example/linkgate',
      LINKGATE_WEBHOOK_SECRET: 'answers-webhook-secret-0123456789abcdef',
      LINKGATE_METRICS: 'true',
    },
    fetch: reroute({ 'https://discord.com': discord.origin }),
  });
  const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
  const start = await browser.openLink(`/oauth/discord/start?context=${await mintContext('discord', DISCORD_USER)}`);
  expect((await browser.get(discord.approve(atFake(new URL(start.headers.get('location')!), discord.origin), '80351110224679999'))).status).toBe(200);
  await createLinkStore(database.db, gateway.keyring, { webhookEvents: true }).store(
    { tenant: 'default', userId: STORED_USER, provider: 'corp' },
    { id: 'corp-sub-answers', name: 'Corp Answers' },
    { accessToken: 'known-access-token-0123456789', refreshToken: KNOWN_REFRESH, expiresAt: Date.now() + 3600_000, extra: { idToken: KNOWN_ID_TOKEN } },
    { allowShared: false, now: new Date() },
  );
  await collectRefreshTokens();
});
afterAll(async () => {
  await discord?.close();
  await database?.close();
});

/** The requests that exercise one operation: every variant that changes what it answers. */
function requestsFor(method: string, route: string): Array<[string, string, unknown?]> {
  const fill = (userId: string, provider: string, extra: Record<string, string> = {}) =>
    // Path parameters are whole segments (`/links:import` is a literal name).
    route.replace(/\/:(\w+)/g, (_, name: string) => {
      const value = { userId, provider, nsid: 'app.bsky.actor.getProfile', ...extra }[name];
      if (value === undefined) throw new Error(`no value for :${name} in ${route}: extend this test`);
      return `/${value}`;
    });
  const M = method.toUpperCase();
  const pairs = [[DISCORD_USER, 'discord'], [STORED_USER, 'corp']] as const;
  switch (`${M} ${route}`) {
    case 'POST /api/v1/link-urls':
      return pairs.map(([userId, provider]) => [M, route, { userId, provider }]);
    case 'GET /api/v1/users/:userId/links/:provider':
      return pairs.flatMap(([u, p]) => [[M, fill(u, p)], [M, `${fill(u, p)}?verify=true`]] as Array<[string, string]>);
    case 'GET /api/v1/users/:userId/links/:provider/wait':
      return pairs.map(([u, p]) => [M, `${fill(u, p)}?timeoutSeconds=1`]);
    case 'POST /api/v1/users/:userId/links/:provider/token':
      // Twice each: Discord's token is always due, so each call refreshes and rotates.
      return pairs.flatMap(([u, p]) => [[M, fill(u, p)], [M, fill(u, p)]] as Array<[string, string]>);
    case 'POST /api/v1/users/:userId/links/:provider/xrpc/:nsid':
      return pairs.map(([u, p]) => [M, fill(u, p), {}]);
    case 'GET /api/v1/webhooks/deliveries':
      return [[M, route], [M, `${route}?status=pending&limit=100`]];
    case 'POST /api/v1/webhooks/deliveries/:id/retry':
      return [[M, 'retry-each-listed-delivery']];
    default:
      if (!route.includes('/:')) return [[M, route]];
      return pairs.map(([u, p]) => [M, fill(u, p)]);
  }
}

describe('the bot API never answers a refresh token', () => {
  it('on any route, for links holding one, through refreshes and unlinking', async () => {
    const visited = new Set<string>();
    // DELETE last: it removes the links the other routes read.
    const ordered = [...operations].sort((a, b) => Number(a.method === 'delete') - Number(b.method === 'delete'));
    for (const op of ordered) {
      for (const [method, path, body] of requestsFor(op.method, op.path)) {
        if (path === 'retry-each-listed-delivery') {
          const listed = (await (await call('GET', '/api/v1/webhooks/deliveries?limit=100')).json()) as { deliveries: Array<{ id: string }> };
          expect(listed.deliveries.length).toBeGreaterThan(0);
          for (const { id } of listed.deliveries) expect((await call(method, `/api/v1/webhooks/deliveries/${id}/retry`)).status).toBe(202);
        } else {
          const response = await call(method, path, body);
          expect(response.status, `${method} ${path}`).toBeLessThan(500);
        }
      }
      visited.add(`${op.method} ${op.path}`);
    }
    // Outside the operations: metrics, the API description, and the same routes with a wrong key.
    await call('GET', '/metrics');
    await call('GET', '/openapi.json');
    await call('GET', '/docs');
    await call('POST', `/api/v1/users/${DISCORD_USER}/links/discord/token`, undefined, { authorization: 'Bearer wrong-key-0123456789abcdef' });

    expect(visited.size).toBe(operations.length);
    // The walk really went through refreshes: Discord rotated its refresh token several times.
    expect([...refreshTokens.keys()].filter((name) => name.startsWith('discord')).length).toBeGreaterThanOrEqual(4);
    expect(discord.counts.tokenByGrant.refresh_token).toBeGreaterThanOrEqual(3);
    // And the token answers did carry access tokens: the check below is not passing on empty answers.
    expect(answers.some((a) => a.request.endsWith('/discord/token') && a.text.startsWith('200') && a.text.includes('"accessToken"'))).toBe(true);

    const forbidden = new Map([
      ...refreshTokens,
      ['known ID token', KNOWN_ID_TOKEN],
      ['Discord client secret', DISCORD.DISCORD_CLIENT_SECRET],
      ['webhook secret', 'answers-webhook-secret-0123456789abcdef'],
    ]);
    const leaks = answers.flatMap(({ request, text }) => leaksIn(text, forbidden, request));
    expect(leaks).toEqual([]);
    // Nor an API answer with a field that looks like one, whatever its value.
    for (const { request, text } of answers.filter((a) => a.request.includes(' /api/'))) {
      expect(`${request}: ${/"(refresh_?token|id_?token)"/i.test(text)}`).toBe(`${request}: false`);
    }
  });
});
