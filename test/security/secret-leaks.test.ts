import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as Sentry from '@sentry/node';
import { serve, type ServerType } from '@hono/node-server';
import { eq } from '../../src/db/orm.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flowAad } from '../../src/core/flows.ts';
import { createLinkStore, linkAad } from '../../src/core/links.ts';
import { flows, links } from '../../src/db/schema.ts';
import { startFakeAniList, type FakeAniList } from '../fakes/anilist.ts';
import { startFakeDiscord, type FakeDiscord } from '../fakes/discord.ts';
import { startFakeJellyfin, type FakeJellyfin } from '../fakes/jellyfin.ts';
import { startTestIdp, type TestIdp } from '../fakes/oidc-idp.ts';
import { confirmationForm, TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, atFake, createTestGateway, reroute, TEST_SECRETS, type TestGateway } from '../helpers/gateway.ts';
import { captureSentry, type SentryCapture } from '../helpers/sentry.ts';
import { everyStoredValue, leaksIn } from './leaks.ts';

/**
 * Every kind of sign-in Linkgate runs (OpenID Connect, AniList, Discord,
 * Jellyfin by password and by Quick Connect, a web-session sign-in), end to end over a real socket
 * with Sentry on (tracing at 100 %), each followed by token requests that
 * refresh; plus the ways they fail (a tampered link, a denied sign-in, a
 * replayed callback, a provider down during the exchange, an unexpected
 * error). Every secret the flows handled is collected, and then looked for,
 * in every encoding, in every column of every table, in a real `pg_dump`, in
 * the logs and in everything the Sentry SDK would have sent. ATProto has its
 * own storage check against a real PDS (test/providers/atproto.test.ts).
 */
const BASE = 'http://127.0.0.1:8000';
const OIDC_CLIENT_SECRET = 'leak-oidc-client-secret-0123456789abcdef';
const DISCORD_CLIENT_SECRET = 'leak-discord-client-secret-0123456789';
const ANILIST_CLIENT_SECRET = 'leak-anilist-client-secret-0123456789';
const WEBHOOK_SECRET = 'leak-webhook-secret-0123456789abcdefghij';
const ADMIN_KEY = 'leak-admin-key-0123456789abcdefghijklmnopq';
const JELLYFIN_USER = '5e6f708192a3b4c5d6e7f8091a2b3c4d';
const JELLYFIN_PASSWORD = 'c0rrect-h0rse-jellyfin-Pa55';
const JELLYFIN_WRONG_PASSWORD = 'wr0ng-h0rse-jellyfin-Pa55';

/** What must not leak, by name (the failure message names it). */
const secrets = new Map<string, string>();
/** Raw user ids: stored (they are the links' keys) but never logged or sent to Sentry. */
const userIds = new Map<string, string>();
const remember = (name: string, value: string | undefined | null) => {
  expect(value, name).toBeTruthy();
  secrets.set(name, value!);
};

let sentry: SentryCapture;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let idp: TestIdp;
let discord: FakeDiscord;
let anilist: FakeAniList;
let jellyfin: FakeJellyfin;
let gateway: TestGateway;
let server: ServerType;
let base: string;

/** A snowflake-like id nothing else in a log line or a dump could contain by chance. */
function newUserId(name: string): string {
  const id = `7${BigInt(`0x${randomBytes(8).toString('hex')}`).toString().padStart(19, '0')}`;
  userIds.set(name, id);
  return id;
}

/** Providers at their real origins go to the fakes; the IdP and Jellyfin are already local. */
function providerFetch(): typeof fetch {
  const map = { 'https://discord.com': discord.origin, 'https://anilist.co': anilist.origin, 'https://graphql.anilist.co': anilist.graphqlUrl };
  const rerouted = reroute(map);
  return (input, init) => {
    const origin = new URL(input instanceof Request ? input.url : String(input)).origin;
    return origin in map ? rerouted(input, init) : fetch(input, init);
  };
}

/** A browser talking to the gateway over its listening socket. */
const newBrowser = () => new TestBrowser((path, init) => fetch(`${base}${path}`, { ...init, redirect: 'manual' }));

const api = (path: string, init: RequestInit = {}) =>
  fetch(`${base}/api/v1${path}`, { ...init, headers: { authorization: `Bearer ${API_KEY}`, 'user-agent': 'leak-test/1.0', ...init.headers } });

/** Opens a link URL, remembering the context, the confirmation token and the browser cookie; answers the Continue response. */
async function confirm(browser: TestBrowser, url: string, name: string): Promise<Response> {
  const context = new URL(url, BASE).searchParams.get('context')!;
  remember(`${name} context`, context);
  const page = await browser.get(url);
  expect(page.status).toBe(200);
  const { action, fields } = confirmationForm(await page.text());
  remember(`${name} confirmation token`, fields.csrf);
  remember(`${name} browser cookie`, browser.cookies.get('linkgate_browser'));
  const continued = await browser.post(action, fields);
  expect(continued.status).toBe(303);
  return continued;
}

/** Remembers the PKCE verifier sealed in the user's open flow. */
async function rememberFlowSecrets(userId: string, name: string) {
  const [row] = await database.db.select().from(flows).where(eq(flows.userId, userId));
  const sealed = JSON.parse(gateway.keyring.open(row!.data!, flowAad(row!.stateHash))) as { codeVerifier: string };
  remember(`${name} PKCE verifier`, sealed.codeVerifier);
}

/** Remembers every credential stored for the link, decrypted. */
async function rememberCredentials(userId: string, provider: string, name: string) {
  const store = createLinkStore(database.db, gateway.keyring);
  const row = await store.get({ tenant: 'default', userId, provider });
  expect(row, `${name} link`).toBeDefined();
  const credentials = store.openCredentials(row!);
  remember(`${name} access token`, credentials.accessToken);
  if (credentials.refreshToken) remember(`${name} refresh token`, credentials.refreshToken);
  if (typeof credentials.extra?.idToken === 'string') remember(`${name} ID token`, credentials.extra.idToken);
}

/** The token API twice: the provider's short token lifetime is inside the refresh margin, so each call refreshes. */
async function refreshTwice(userId: string, provider: string, name: string) {
  for (const round of [1, 2]) {
    const answer = await api(`/users/${userId}/links/${provider}/token`, { method: 'POST' });
    expect(answer.status).toBe(200);
    await rememberCredentials(userId, provider, `${name} (refresh ${round})`);
  }
}

beforeAll(async () => {
  sentry = await captureSentry();
  database = await createTestDatabase();
  idp = await startTestIdp({ redirectUris: [`${BASE}/oauth/corp/callback`], clientId: 'linkgate', clientSecret: OIDC_CLIENT_SECRET, accessTokenTtlSeconds: 30 });
  discord = await startFakeDiscord({ clientId: '1100000000000000009', clientSecret: DISCORD_CLIENT_SECRET, redirectUris: [`${BASE}/oauth/discord/callback`], accessTokenTtlSeconds: 30 });
  anilist = await startFakeAniList({ clientId: '4343', clientSecret: ANILIST_CLIENT_SECRET, redirectUris: [`${BASE}/oauth/anilist/callback`] });
  jellyfin = await startFakeJellyfin({ serverName: 'Leaks' });
  jellyfin.users.set(JELLYFIN_USER, { id: JELLYFIN_USER, name: 'Hopper', password: JELLYFIN_PASSWORD });
  gateway = await createTestGateway(database, {
    env: {
      OIDC_PROVIDERS: 'corp',
      CORP_ISSUER: idp.issuer,
      CORP_CLIENT_ID: 'linkgate',
      CORP_CLIENT_SECRET: OIDC_CLIENT_SECRET,
      CORP_SCOPES: 'openid profile email offline_access',
      DISCORD_CLIENT_ID: '1100000000000000009',
      DISCORD_CLIENT_SECRET,
      ANILIST_CLIENT_ID: '4343',
      ANILIST_CLIENT_SECRET,
      JELLYFIN_SERVER_URL: jellyfin.url,
      LINK_ALLOW_SHARED_ACCOUNTS: 'true',
      LINKGATE_RETURN_TO_ORIGINS: 'https://bot.example',
      // Link events are written to the outbox (nobody delivers them here): their payloads are scanned too.
      LINKGATE_WEBHOOK_URL: 'https://hooks.bot.example/linkgate',
      LINKGATE_WEBHOOK_SECRET: WEBHOOK_SECRET,
      LINKGATE_METRICS: 'true',
      LINKGATE_ADMIN_KEYS: ADMIN_KEY,
    },
    fetch: providerFetch(),
    observe: sentry.observer,
  });
  server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: gateway.app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  for (const [name, value] of Object.entries(TEST_SECRETS)) secrets.set(name, value);
  secrets.set('encryption key', TEST_SECRETS.LINKGATE_ENCRYPTION_KEYS.slice(3));
  for (const [name, value] of [
    ['OIDC client secret', OIDC_CLIENT_SECRET],
    ['Discord client secret', DISCORD_CLIENT_SECRET],
    ['AniList client secret', ANILIST_CLIENT_SECRET],
    ['webhook secret', WEBHOOK_SECRET],
    ['admin key', ADMIN_KEY],
    ['Jellyfin password', JELLYFIN_PASSWORD],
    ['Jellyfin wrong password', JELLYFIN_WRONG_PASSWORD],
  ]) {
    secrets.set(name!, value!);
  }

  await runEveryFlow();
  expect(await Sentry.flush(5000)).toBe(true);
}, 120_000);

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await Sentry.close(2000);
  for (const fake of [idp, discord, anilist, jellyfin]) await fake?.close();
  await database?.close();
});

/**
 * A new bot user confirms a link to `provider` (from `url`, or a context of
 * its own); the browser is left at the provider's authorization page. The
 * context, confirmation token, cookie, state and nonce are remembered.
 */
async function toProvider(provider: string, name: string, url?: (userId: string) => Promise<string>) {
  const userId = newUserId(`${name} user`);
  const browser = newBrowser();
  const continued = await confirm(browser, url ? await url(userId) : `/oauth/${provider}/start?context=${await mintContext(provider, userId)}`, name);
  const authorize = new URL(continued.headers.get('location')!);
  remember(`${name} state`, authorize.searchParams.get('state'));
  if (authorize.searchParams.has('nonce')) remember(`${name} nonce`, authorize.searchParams.get('nonce'));
  return { userId, browser, authorize };
}

/** The provider sends the browser back to `callback`; its code is remembered. */
function comeBack(browser: TestBrowser, callback: URL, name: string): Promise<Response> {
  if (callback.searchParams.has('code')) remember(`${name} authorization code`, callback.searchParams.get('code'));
  return browser.get(callback.pathname + callback.search);
}

async function runEveryFlow() {
  // OpenID Connect, from a link URL the API made, back to return_to; then refreshes.
  {
    const { userId, browser, authorize } = await toProvider('corp', 'OIDC', async (userId) => {
      const made = await api('/link-urls', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ userId, provider: 'corp', returnTo: 'https://bot.example/linked', userName: 'Ada' }),
      });
      expect(made.status).toBe(201);
      return ((await made.json()) as { url: string }).url;
    });
    await rememberFlowSecrets(userId, 'OIDC');
    const callback = await idp.login(authorize, 'idp-leak-sub');
    const done = await comeBack(browser, callback, 'OIDC');
    expect(done.status).toBe(303);
    expect(done.headers.get('location')).toBe('https://bot.example/linked');
    await rememberCredentials(userId, 'corp', 'OIDC');
    await refreshTwice(userId, 'corp', 'OIDC');
    // The same callback again: refused, nothing exchanged.
    expect((await comeBack(browser, callback, 'OIDC')).status).toBe(400);
  }

  // OpenID Connect, left open at the IdP: its sealed flow stays in the database for the scans.
  {
    const { userId } = await toProvider('corp', 'OIDC open flow');
    await rememberFlowSecrets(userId, 'OIDC open flow');
  }

  // Discord, then refreshes (rotating refresh tokens); then Discord down while a code is exchanged (502, nothing stored).
  discord.users.set('80351110224670001', { id: '80351110224670001', username: 'leaky', global_name: 'Leaky' });
  {
    const { userId, browser, authorize } = await toProvider('discord', 'Discord');
    await rememberFlowSecrets(userId, 'Discord');
    expect((await comeBack(browser, discord.approve(atFake(authorize, discord.origin), '80351110224670001'), 'Discord')).status).toBe(200);
    await rememberCredentials(userId, 'discord', 'Discord');
    await refreshTwice(userId, 'discord', 'Discord');
  }
  // A web-session sign-in with Discord (GET /api/auth/discord/start): the session cookie's token is stored only as its digest.
  {
    const dashboard = 'https://bot.example/dashboard';
    const app = await fetch(`${base}/api/admin/v1/tenants/default/apps`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Leak dashboard', redirectUris: [dashboard], type: 'public' }),
    });
    expect(app.status).toBe(201);
    const browser = newBrowser();
    const started = await browser.get(`/api/auth/discord/start?postLoginRedirect=${encodeURIComponent(dashboard)}`);
    expect(started.status).toBe(200);
    const { authorizationUrl, state } = (await started.json()) as { authorizationUrl: string; state: string };
    remember('web session state', state);
    remember('web session browser cookie', browser.cookies.get('linkgate_browser'));
    const done = await comeBack(browser, discord.approve(atFake(new URL(authorizationUrl), discord.origin), '80351110224670001'), 'web session');
    expect(done.status).toBe(303);
    remember('web session token', browser.cookies.get('linkgate_session'));
    expect((await browser.get('/api/auth/session')).status).toBe(200);
    await rememberCredentials('80351110224670001', 'discord', 'web session');
  }
  {
    const { browser, authorize } = await toProvider('discord', 'Discord outage');
    const callback = discord.approve(atFake(authorize, discord.origin), '80351110224670001');
    discord.failNext('token', 'http500');
    expect((await comeBack(browser, callback, 'Discord outage')).status).toBe(502);
  }

  // AniList; then a user who denies access.
  {
    const { userId, browser, authorize } = await toProvider('anilist', 'AniList');
    expect((await comeBack(browser, anilist.approve(atFake(authorize, anilist.origin), 7001), 'AniList')).status).toBe(200);
    await rememberCredentials(userId, 'anilist', 'AniList');
    expect((await api(`/users/${userId}/links/anilist/token`, { method: 'POST' })).status).toBe(200);

    const denier = await toProvider('anilist', 'AniList denied');
    expect((await comeBack(denier.browser, anilist.deny(atFake(denier.authorize, anilist.origin)), 'AniList denied')).status).toBe(400);
  }

  // Jellyfin by password, after a wrong one.
  {
    const userId = newUserId('Jellyfin password user');
    const browser = newBrowser();
    const continued = await confirm(browser, `/oauth/jellyfin/start?context=${await mintContext('jellyfin', userId)}`, 'Jellyfin password');
    const page = await browser.get(continued.headers.get('location')!);
    const state = /name="state" value="([^"]+)"/.exec(await page.text())![1]!;
    remember('Jellyfin password state', state);
    await browser.post('/oauth/jellyfin/callback', { state, linkgate_action: 'password' });
    const wrong = await browser.post('/oauth/jellyfin/callback', { state, username: 'Hopper', password: JELLYFIN_WRONG_PASSWORD });
    expect(await wrong.text()).toContain('Wrong username or password.');
    expect((await browser.post('/oauth/jellyfin/callback', { state, username: 'Hopper', password: JELLYFIN_PASSWORD })).status).toBe(200);
    await rememberCredentials(userId, 'jellyfin', 'Jellyfin password');
    expect((await api(`/users/${userId}/links/jellyfin/token`, { method: 'POST' })).status).toBe(200);
  }

  // Jellyfin by Quick Connect: one finished, one left waiting (its secret sealed in the open flow).
  for (const finish of [true, false]) {
    const name = finish ? 'Jellyfin Quick Connect' : 'Jellyfin open Quick Connect';
    const userId = newUserId(`${name} user`);
    const browser = newBrowser();
    const continued = await confirm(browser, `/oauth/jellyfin/start?context=${await mintContext('jellyfin', userId)}`, name);
    const page = await (await browser.get(continued.headers.get('location')!)).text();
    const state = /name="state" value="([^"]+)"/.exec(page)![1]!;
    remember(`${name} state`, state);
    const code = /class="code"[^>]*>(\d{6})</.exec(page)![1]!;
    if (finish) {
      jellyfin.approve(code, JELLYFIN_USER);
      expect(await (await browser.get(`/oauth/jellyfin/poll?state=${state}`)).json()).toEqual({ status: 'linked' });
      const secret = new URLSearchParams(jellyfin.requests.findLast((r) => r.path.toLowerCase() === '/quickconnect/connect')!.search).get('secret');
      remember(`${name} secret`, secret);
      await rememberCredentials(userId, 'jellyfin', name);
    } else {
      expect(await (await browser.get(`/oauth/jellyfin/poll?state=${state}`)).json()).toMatchObject({ status: 'pending' });
      const polled = jellyfin.requests.findLast((r) => r.path.toLowerCase() === '/quickconnect/connect');
      remember(`${name} secret`, new URLSearchParams(polled!.search).get('secret'));
    }
  }

  // A tampered link, and one signed with another secret.
  {
    const tampered = `${(await mintContext('corp', newUserId('tampered-context user'))).slice(0, -4)}AAAA`;
    remember('tampered context', tampered);
    expect((await newBrowser().get(`/oauth/corp/start?context=${tampered}`)).status).toBe(400);
    const foreign = await mintContext('corp', newUserId('foreign-secret user'), { secret: 'another-bots-signing-secret-0123456789' });
    remember('context signed with another secret', foreign);
    expect((await newBrowser().get(`/oauth/corp/start?context=${foreign}`)).status).toBe(400);
  }

  // An unexpected error (credentials that no longer parse) reaches Sentry as an event.
  {
    const userId = newUserId('broken-credentials user');
    const key = { tenant: 'default', userId, provider: 'corp' };
    await createLinkStore(database.db, gateway.keyring).store(key, { id: 'idp-broken' }, { accessToken: 'placeholder-access' }, { allowShared: true, now: new Date() });
    const brokenRefresh = `broken-refresh-${randomBytes(12).toString('hex')}`;
    remember('refresh token in broken credentials', brokenRefresh);
    await database.db
      .update(links)
      .set({ credentials: gateway.keyring.seal(JSON.stringify({ accessToken: 42, refreshToken: brokenRefresh }), linkAad(key)) })
      .where(eq(links.userId, userId));
    const failed = await api(`/users/${userId}/links/corp/token`, { method: 'POST' });
    expect(failed.status).toBe(500);
    // The answer names no cause: no stack, no validation detail, no value.
    expect(await failed.json()).toEqual({ error: { code: 'internal_error', message: 'internal error' } });
  }

  // The bot reads and lists links, and unlinks one (revocation at the IdP).
  for (const [name, userId] of userIds) {
    if (!name.includes('open') && !name.includes('context')) {
      expect((await api(`/users/${userId}/links`)).status).toBe(200);
    }
  }
  expect((await api(`/users/${userIds.get('AniList user')}/links/anilist`, { method: 'DELETE' })).status).toBe(204);
}

describe('after every kind of flow', () => {
  it('collected the secrets it looks for', () => {
    // Each flow's own secrets, so a flow that stopped early cannot pass by having nothing to find.
    for (const name of [
      'OIDC refresh token',
      'OIDC (refresh 2) refresh token',
      'OIDC ID token',
      'OIDC PKCE verifier',
      'OIDC open flow PKCE verifier',
      'Discord (refresh 2) refresh token',
      'Discord authorization code',
      'AniList access token',
      'Jellyfin password access token',
      'Jellyfin Quick Connect secret',
      'Jellyfin open Quick Connect secret',
      'web session token',
      'web session authorization code',
    ]) {
      expect(secrets.has(name), name).toBe(true);
    }
    expect(secrets.size).toBeGreaterThan(60);
  });

  it('no column of any table holds a token, code, state, verifier, password, context, cookie or configured secret, in any encoding', async () => {
    const stored = await everyStoredValue(database.db);
    const tables = new Set(stored.map((s) => s.table));
    // Every table the gateway writes to was found and has rows (the scan reads what is really there).
    for (const table of ['public.flows', 'public.links', 'public.used_contexts', 'public.kv', 'public.webhook_deliveries', 'public.rate_limits', 'public.web_sessions']) {
      if (table === 'public.kv' && !tables.has(table)) continue; // no provider in this file uses the key-value store
      expect(tables, table).toContain(table);
    }
    // The sealed values are there to be found: both open flows' data, and a credential envelope per link.
    expect(stored.filter((s) => s.table === 'public.flows' && s.column === 'data')).toHaveLength(2);
    expect(stored.filter((s) => s.table === 'public.links' && s.column === 'credentials').every((s) => s.value.startsWith('v1.k1.'))).toBe(true);
    // The scan sees plain values: the raw user ids are stored (they key the links).
    expect(stored.some((s) => s.value === userIds.get('Discord user'))).toBe(true);

    const leaks = stored.flatMap((s) => leaksIn(s.value, secrets, `${s.table}.${s.column}`));
    expect(leaks).toEqual([]);
  });

  const onPostgres = process.env.TEST_DATABASE_URL !== undefined;
  // PGlite is an in-process database: there is no server for pg_dump to connect to.
  it.skipIf(!onPostgres)('a pg_dump of the database holds none of them (PostgreSQL only: PGlite has no server for pg_dump)', () => {
    const pgDump = ['/usr/bin/pg_dump', ...(process.env.PATH ?? '').split(':').map((dir) => `${dir}/pg_dump`)].find((path) => existsSync(path));
    expect(pgDump, 'pg_dump is needed to run this test on PostgreSQL').toBeDefined();
    const dumped = spawnSync(pgDump!, ['--no-owner', '--no-privileges', database.url!], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    expect(dumped.stderr).toBe('');
    expect(dumped.status).toBe(0);
    const dump = dumped.stdout;
    // A real dump of this database: every table's data is in it.
    for (const table of ['flows', 'links', 'used_contexts', 'webhook_deliveries', 'rate_limits']) expect(dump).toContain(`COPY public.${table} `);
    expect(dump).toContain(userIds.get('OIDC user')!);
    expect(leaksIn(dump, secrets, 'pg_dump')).toEqual([]);
  });

  it('the logs hold none of them, nor a raw user id', () => {
    const logs = gateway.logs.join('\n');
    expect(logs).toContain('link stored');
    expect(logs).toContain('request failed');
    expect(leaksIn(logs, new Map([...secrets, ...userIds]), 'logs')).toEqual([]);
  });

  it('nothing the Sentry SDK would send (error events and every traced span) holds them, nor a raw user id', () => {
    const sent = sentry.envelopes.join('\n');
    const items = sentry.itemTypes();
    expect(items).toContain('event');
    expect(items).toContain('span');
    // Spans of the flows' own routes were sent: the scan covers them.
    for (const route of ['GET /oauth/:provider/callback', 'POST /oauth/:provider/start', 'POST /api/v1/users/:userId/links/:provider/token']) {
      expect(sent).toContain(`"${route}"`);
    }
    expect(leaksIn(sent, new Map([...secrets, ...userIds]), 'Sentry envelopes')).toEqual([]);
  });

  it('the bot API answered no refresh token, ID token or PKCE verifier on any call the flows made', async () => {
    // Read back every link and token answer now (the calls above only checked statuses).
    const refreshOnly = new Map([...secrets].filter(([name]) => /refresh token|ID token|PKCE verifier|client secret|password$/.test(name)));
    for (const [name, userId] of userIds) {
      for (const path of [`/users/${userId}/links`, ...['corp', 'discord', 'jellyfin'].map((p) => `/users/${userId}/links/${p}`)]) {
        const text = await (await api(path)).text();
        expect(leaksIn(text, refreshOnly, `GET ${path} (${name})`)).toEqual([]);
      }
    }
    const deliveries = await (await api('/webhooks/deliveries?limit=100')).text();
    expect(JSON.parse(deliveries).deliveries.length).toBeGreaterThan(0);
    expect(leaksIn(deliveries, secrets, 'GET /webhooks/deliveries')).toEqual([]);
    const metrics = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${API_KEY}` } })).text();
    expect(metrics).toContain('linkgate_flows_completed_total');
    expect(leaksIn(metrics, new Map([...secrets, ...userIds]), 'GET /metrics')).toEqual([]);
  });
});
