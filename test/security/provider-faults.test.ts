import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { eq } from '../../src/db/orm.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { flows, links } from '../../src/db/schema.ts';
import { startFakeAniList, type FakeAniList } from '../fakes/anilist.ts';
import { startFakeDiscord, type FakeDiscord } from '../fakes/discord.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { atFake, createTestGateway, reroute, type TestGateway } from '../helpers/gateway.ts';
import { ROOT, startGatewayProcess, type GatewayProcess } from '../helpers/process.ts';

/**
 * The provider fails while the authorization code is exchanged: a 5xx, an
 * answer that is not the JSON it should be, or no answer at all. The browser
 * gets a page saying so (502, or 504 for a timeout), nothing is linked, and
 * the code is exchanged once: the flow ends, so reloading the callback (or
 * the provider redirecting twice) cannot spend it again.
 */
const BASE = 'http://127.0.0.1:8000';
const DISCORD = { DISCORD_CLIENT_ID: '1100000000000000003', DISCORD_CLIENT_SECRET: 'faults-discord-client-secret-0123' };
const ANILIST = { ANILIST_CLIENT_ID: '4545', ANILIST_CLIENT_SECRET: 'faults-anilist-client-secret-0123' };

let database: Database;
let discord: FakeDiscord;
let anilist: FakeAniList;
let gateway: TestGateway;

beforeAll(async () => {
  database = await createTestDatabase();
  discord = await startFakeDiscord({ clientId: DISCORD.DISCORD_CLIENT_ID, clientSecret: DISCORD.DISCORD_CLIENT_SECRET, redirectUris: [`${BASE}/oauth/discord/callback`] });
  anilist = await startFakeAniList({ clientId: ANILIST.ANILIST_CLIENT_ID, clientSecret: ANILIST.ANILIST_CLIENT_SECRET, redirectUris: [`${BASE}/oauth/anilist/callback`] });
  // Test gateways give up on a provider after 2 s (see createTestGateway).
  gateway = await createTestGateway(database, {
    env: { ...DISCORD, ...ANILIST },
    fetch: reroute({ 'https://discord.com': discord.origin, 'https://anilist.co': anilist.origin, 'https://graphql.anilist.co': anilist.graphqlUrl }),
  });
});
afterAll(async () => {
  await discord?.close();
  await anilist?.close();
  await database?.close();
});

const PROVIDERS = {
  discord: {
    name: 'Discord',
    fake: () => discord,
    exchanges: () => discord.counts.tokenByGrant.authorization_code ?? 0,
    approve: (authorize: URL, n: number) => discord.approve(atFake(authorize, discord.origin), `8035111022467${String(n).padStart(4, '0')}`),
  },
  anilist: {
    name: 'AniList',
    fake: () => anilist,
    // AniList has no refresh: every token request is a code exchange.
    exchanges: () => anilist.counts.token,
    approve: (authorize: URL, n: number) => anilist.approve(atFake(authorize, anilist.origin), 9000 + n),
  },
} as const;

let serial = 0;

describe('the provider fails during the code exchange', () => {
  it.each([
    ['discord', 'http500', 502, 'is not answering properly'],
    ['discord', 'malformed', 502, 'is not answering properly'],
    ['discord', 'hang', 504, 'is too slow right now'],
    ['anilist', 'http500', 502, 'is not answering properly'],
    ['anilist', 'malformed', 502, 'is not answering properly'],
    ['anilist', 'hang', 504, 'is too slow right now'],
  ] as const)('%s answering %s: a %i page, nothing linked, the code exchanged once even when the callback comes again', async (id, fault, status, title) => {
    const provider = PROVIDERS[id];
    const userId = `faults-${id}-${fault}`;
    const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
    const start = await browser.openLink(`/oauth/${id}/start?context=${await mintContext(id, userId)}`);
    expect(start.status).toBe(303);
    const callback = provider.approve(new URL(start.headers.get('location')!), ++serial);
    const fake = provider.fake();
    const exchanges = provider.exchanges();
    fake.failNext('token', fault);

    const failed = await browser.get(callback);
    expect(failed.status).toBe(status);
    expect(failed.headers.get('content-type')).toMatch(/^text\/html/);
    const page = await failed.text();
    expect(page).toContain(`${provider.name} ${title}`);
    expect(page).toContain('Nothing was linked');
    expect(page).not.toMatch(/\bat \S+ \(|node_modules|\.ts:\d+|ECONNRESET|SyntaxError/);
    expect(provider.exchanges()).toBe(exchanges + 1);

    // The same callback again (a reload, a provider redirecting twice): refused without a second exchange.
    const again = await browser.get(callback);
    expect(again.status).toBe(400);
    expect(await again.text()).toContain('This sign-in has expired');
    expect(provider.exchanges()).toBe(exchanges + 1);

    expect(await database.db.select().from(links).where(eq(links.userId, userId))).toEqual([]);
    const [flow] = await database.db.select({ status: flows.status, data: flows.data }).from(flows).where(eq(flows.userId, userId));
    expect(flow).toEqual({ status: 'failed', data: null });
  });
});

/** An OAuth server for the bench provider (bench/providers/bench.ts) whose token endpoint never answers. */
async function startSilentOAuth(): Promise<{ url: string; server: Server; tokenRequests: () => number; close: () => void }> {
  let tokenRequests = 0;
  const held: ServerResponse[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/authorize') {
      const target = new URL(url.searchParams.get('redirect_uri')!);
      target.search = new URLSearchParams({ code: `silent-code-${tokenRequests}-${Date.now()}`, state: url.searchParams.get('state') ?? '' }).toString();
      res.writeHead(302, { location: target.href }).end();
      return;
    }
    tokenRequests += 1;
    req.resume();
    held.push(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    tokenRequests: () => tokenRequests,
    close: () => {
      for (const res of held) res.destroy();
      server.close();
    },
  };
}

/**
 * The timeout is LINKGATE_PROVIDER_TIMEOUT_SECONDS, 10 s unless set: two
 * real gateway processes (`src/server.ts`, as `npm start` runs it), one with
 * it set to 1 and one with no setting, sign in against a provider whose
 * token endpoint never answers.
 */
describe('the provider timeout of the real process', () => {
  let oauth: Awaited<ReturnType<typeof startSilentOAuth>>;
  const gateways: GatewayProcess[] = [];

  beforeAll(async () => {
    oauth = await startSilentOAuth();
  });
  afterAll(async () => {
    for (const g of gateways) await g.cleanup();
    oauth?.close();
  });

  /** Signs in through `gateway`; how long the callback took, and what it answered. */
  async function timedSignIn(gateway: GatewayProcess, userId: string) {
    const browser = new TestBrowser((path, init) => fetch(new URL(path, gateway.base), { ...init, redirect: 'manual' }));
    const start = await browser.openLink(`/oauth/bench/start?context=${await mintContext('bench', userId)}`);
    expect(start.status).toBe(303);
    const authorize = await fetch(start.headers.get('location')!, { redirect: 'manual' });
    const callback = new URL(authorize.headers.get('location')!);
    const started = Date.now();
    const answer = await browser.get(callback.pathname + callback.search);
    const ms = Date.now() - started;
    const again = await browser.get(callback.pathname + callback.search);
    return { ms, status: answer.status, page: await answer.text(), againStatus: again.status };
  }

  it('gives up after LINKGATE_PROVIDER_TIMEOUT_SECONDS (1 s here) and after 10 s unless set, with a 504 page; the code is sent once', { timeout: 90_000 }, async () => {
    const bench = { LINKGATE_PROVIDERS_DIR: join(ROOT, 'bench/providers'), BENCH_OAUTH_URL: oauth.url };
    const [configured, defaulted] = await Promise.all([startGatewayProcess({ ...bench, LINKGATE_PROVIDER_TIMEOUT_SECONDS: '1' }), startGatewayProcess(bench)]);
    gateways.push(configured, defaulted);
    const [fast, slow] = await Promise.all([timedSignIn(configured, '80351110224673331'), timedSignIn(defaulted, '80351110224673332')]);

    for (const result of [fast, slow]) {
      expect(result.status).toBe(504);
      expect(result.page).toContain('Bench is too slow right now');
      // The failed flow is over: the same callback is not sent to the provider again.
      expect(result.againStatus).toBe(400);
    }
    expect(fast.ms).toBeGreaterThanOrEqual(900);
    expect(fast.ms).toBeLessThan(5000);
    expect(slow.ms).toBeGreaterThanOrEqual(9900);
    expect(slow.ms).toBeLessThan(15_000);
    expect(oauth.tokenRequests()).toBe(2);
    for (const g of [configured, defaulted]) expect(g.output()).toContain('"errorCode":"provider_timeout"');
  });
});
