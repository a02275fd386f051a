/**
 * The account page (issue #21, done-when 5): a person signs in at `/me` with
 * the tenant's user provider (Discord's fake), sees the accounts they linked
 * through the bot's links (AniList's fake, Jellyfin's fake), unlinks one
 * (revoked upstream; the bot API answers 404 after), links a missing one, and
 * can reach nobody else's links by changing anything they send: form fields,
 * the tenant in the path, or another kind of session's cookie. CSRF, sign-out
 * and the idle timeout are checked with the cookie a thief would have.
 *
 * The browser is a cookie-keeping client of the gateway that never follows a
 * provider's redirect by itself; the gateway is `https://link.example`, so its
 * cookies carry the `__Host-` prefix.
 */
import { and, eq } from '../../src/db/orm.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../src/core/crypto.ts';
import { createLinkStore } from '../../src/core/links.ts';
import { createWebSessions } from '../../src/core/web-sessions.ts';
import type { Database } from '../../src/db/client.ts';
import { linkEvents, webSessions } from '../../src/db/schema.ts';
import { startFakeAniList, type FakeAniList } from '../fakes/anilist.ts';
import { startFakeDiscord, type FakeDiscord } from '../fakes/discord.ts';
import { startFakeJellyfin, type FakeJellyfin } from '../fakes/jellyfin.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { atFake, createTestGateway, reroute, type TestGateway } from '../helpers/gateway.ts';

const BASE = 'https://link.example';
const ADMIN_KEY = 'admin_0123456789abcdefghijklmnopqrstuvwxyz';
const ENV = {
  PUBLIC_BASE_URL: BASE,
  LINKGATE_ADMIN_KEYS: ADMIN_KEY,
  DISCORD_CLIENT_ID: '1100000000000000001',
  DISCORD_CLIENT_SECRET: 'discord-client-secret-0123456789',
  DISCORD_SCOPES: 'identify',
  ANILIST_CLIENT_ID: '12345',
  ANILIST_CLIENT_SECRET: 'anilist-client-secret-0123456789',
};
const COOKIE = '__Host-linkgate_account';
const QUIZ_COOKIE = '__Host-linkgate_account_quizbot';
const MINUTE = 60_000;

let database: Database;
let discord: FakeDiscord;
let anilist: FakeAniList;
let jellyfin: FakeJellyfin;
let gateway: TestGateway;
/** The same gateway's code and database on a clock of the test's own, for the timeouts. */
let timed: TestGateway;
let clock = Date.now();
let quizKey: string;

/** Discord ids of the people in these tests, one per test so none depends on another's order. */
let nextId = 80351110224678900n;
function person(name: string): string {
  const id = String(nextId++);
  discord.users.set(id, { id, username: name.toLowerCase(), global_name: name });
  return id;
}
let nextAniList = 7000;
let nextJellyfin = 0;

beforeAll(async () => {
  database = await createTestDatabase();
  discord = await startFakeDiscord({ clientId: ENV.DISCORD_CLIENT_ID, clientSecret: ENV.DISCORD_CLIENT_SECRET, redirectUris: [`${BASE}/oauth/discord/callback`] });
  anilist = await startFakeAniList({ clientId: ENV.ANILIST_CLIENT_ID, clientSecret: ENV.ANILIST_CLIENT_SECRET, redirectUris: [`${BASE}/oauth/anilist/callback`] });
  jellyfin = await startFakeJellyfin({ serverName: 'Home' });
  const fetch = reroute({
    'https://discord.com': discord.origin,
    'https://anilist.co': anilist.origin,
    'https://graphql.anilist.co': anilist.graphqlUrl,
    [new URL(jellyfin.url).origin]: new URL(jellyfin.url).origin,
  });
  const env = { ...ENV, JELLYFIN_SERVER_URL: jellyfin.url };
  gateway = await createTestGateway(database, { env, fetch });
  timed = await createTestGateway(database, { env, fetch, now: () => clock });

  // A second tenant, with its own Discord app settings and bot key.
  expect((await admin('/tenants', { id: 'quizbot', name: 'Quiz Bot' })).status).toBe(201);
  quizKey = ((await (await admin('/tenants/quizbot/api-keys', { name: 'bot' })).json()) as { key: string }).key;
  expect((await admin('/tenants/quizbot/context-secrets', {})).status).toBe(201);
  for (const [provider, settings] of [
    ['discord', { DISCORD_CLIENT_ID: ENV.DISCORD_CLIENT_ID, DISCORD_CLIENT_SECRET: ENV.DISCORD_CLIENT_SECRET, DISCORD_SCOPES: 'identify' }],
    ['jellyfin', { JELLYFIN_SERVER_URL: jellyfin.url }],
  ] as const) {
    const configured = await gateway.app.request(`/api/admin/v1/tenants/quizbot/providers/${provider}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ env: settings }),
    });
    expect(configured.status, await configured.clone().text()).toBe(200);
  }
});
afterAll(async () => {
  await discord?.close();
  await anilist?.close();
  await jellyfin?.close();
  await database?.close();
});

const admin = (path: string, body: unknown) =>
  gateway.app.request(`/api/admin/v1${path}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

const newBrowser = (on: TestGateway = gateway) => new TestBrowser((path, init) => on.app.request(path, { ...init, redirect: 'manual' }));
const cookieHeader = (cookies: Record<string, string>) => Object.entries(cookies).map(([name, value]) => `${name}=${value}`).join('; ');
/** A request made by hand with exactly these cookies (a thief's, a forger's). */
const send = (path: string, init: { method?: string; cookies?: Record<string, string>; headers?: Record<string, string>; form?: Record<string, string> } = {}, on: TestGateway = gateway) =>
  on.app.request(path, {
    method: init.method ?? (init.form ? 'POST' : 'GET'),
    redirect: 'manual',
    headers: {
      ...(init.cookies ? { cookie: cookieHeader(init.cookies) } : {}),
      ...(init.form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      ...init.headers,
    },
    ...(init.form ? { body: new URLSearchParams(init.form).toString() } : {}),
  });
const botApi = (path: string, init: RequestInit = {}, key?: string) =>
  key ? gateway.app.request(`/api/v1${path}`, { ...init, headers: { authorization: `Bearer ${key}`, ...init.headers } }) : gateway.api(path, init);

/** The bot mints a link URL for its user, as `POST /api/v1/link-urls` does. */
async function botLinkUrl(userId: string, provider: string, key?: string): Promise<string> {
  const answer = await botApi('/link-urls', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId, provider }) }, key);
  expect(answer.status, await answer.clone().text()).toBe(201);
  return ((await answer.json()) as { url: string }).url;
}

/** The user opens the bot's AniList link, approves at AniList's fake, and lands on "Account linked". */
async function linkAniList(userId: string, name: string): Promise<void> {
  const id = nextAniList++;
  anilist.users.set(id, { id, name });
  const browser = newBrowser();
  const atProvider = await browser.openLink(await botLinkUrl(userId, 'anilist'));
  expect(atProvider.status).toBe(303);
  const back = anilist.approve(atFake(new URL(atProvider.headers.get('location')!), anilist.origin), id);
  const linked = await browser.get(back.pathname + back.search);
  expect(await linked.text()).toContain('Account linked');
}

/** The user opens the bot's Jellyfin link, approves its Quick Connect code in their app, and the page's poll sees it linked. */
async function linkJellyfin(userId: string, name: string): Promise<string> {
  const id = (nextJellyfin++).toString(16).padStart(32, 'a');
  jellyfin.users.set(id, { id, name, password: 'pw' });
  const browser = newBrowser();
  const waiting = await (await browser.openLink(await botLinkUrl(userId, 'jellyfin'))).text();
  jellyfin.approve(/class="code"[^>]*>(\d{6})</.exec(waiting)![1]!, id);
  const state = /name="state" value="([^"]+)"/.exec(waiting)![1]!;
  expect(await (await browser.get(`/oauth/jellyfin/poll?state=${encodeURIComponent(state)}`)).json()).toEqual({ status: 'linked' });
  return id;
}

/** Signs in at the account page (`/me` or `/t/:tenant/me`) with Discord as `discordId`: the callback's 303 goes back to the page. */
async function signIn(browser: TestBrowser, discordId: string, page = '/me'): Promise<void> {
  const start = await browser.get(page);
  expect(start.status).toBe(200);
  expect(await start.text()).toContain('Sign in with Discord');
  const toDiscord = await browser.post(`${page}/sign-in`, {});
  expect(toDiscord.status).toBe(303);
  const back = discord.approve(atFake(new URL(toDiscord.headers.get('location')!), discord.origin), discordId);
  const landed = await browser.get(back.pathname + back.search, { follow: false });
  expect(landed.status, await landed.clone().text()).toBe(303);
  expect(landed.headers.get('location')).toBe(`${BASE}${page}`);
}

/** The page as the browser sees it now, and the CSRF token its forms carry. */
async function accountPage(browser: TestBrowser, page = '/me'): Promise<{ status: number; html: string; csrf: string | undefined }> {
  const answer = await browser.get(page);
  const html = await answer.text();
  return { status: answer.status, html, csrf: /name="csrf" value="([^"]+)"/.exec(html)?.[1] };
}

const signedIn = (html: string) => html.includes('Sign out');

const linkOf = (userId: string, provider: string, tenant = 'default') => createLinkStore(database.db, gateway.keyring).get({ tenant, userId, provider });

describe('the account page', () => {
  it('signs a person in with Discord and lists the AniList and Jellyfin accounts they linked through the bot: provider, name, since, status', async () => {
    const nelly = person('Nelly');
    await linkAniList(nelly, 'NellyReads');
    await linkJellyfin(nelly, 'Nelly at home');
    const browser = newBrowser();
    await signIn(browser, nelly);

    const { status, html } = await accountPage(browser);
    expect(status).toBe(200);
    expect(html).toContain('Signed in as <strong>Nelly</strong> (Discord)');
    for (const [provider, name] of [['AniList', 'NellyReads'], ['Jellyfin', 'Nelly at home'], ['Discord', 'Nelly']] as const) {
      expect(html).toMatch(new RegExp(`<h2>${provider}</h2><dl><dt>Account</dt><dd>${name}</dd><dt>Since</dt><dd><time datetime="[^"]+">[^<]+</time></dd><dt>Status</dt><dd>Active</dd>`));
    }
    const linkedAt = (await linkOf(nelly, 'anilist'))!.linkedAt;
    expect(html).toContain(`<time datetime="${linkedAt.toISOString()}">`);
    // Nothing of the gateway's own: no user id of ours, no token, no scopes.
    const credentials = createLinkStore(database.db, gateway.keyring).openCredentials((await linkOf(nelly, 'anilist'))!);
    expect(html).not.toContain(credentials.accessToken!);
  });

  it('sets its session cookie __Host-, HttpOnly, Secure, Path=/, SameSite=Lax, for at most 8 hours', async () => {
    const nelly = person('Nelly');
    const browser = newBrowser();
    const toDiscord = await browser.post('/me/sign-in', {});
    const back = discord.approve(atFake(new URL(toDiscord.headers.get('location')!), discord.origin), nelly);
    const landed = await browser.get(back.pathname + back.search, { follow: false });
    const line = landed.headers.getSetCookie().find((l) => l.startsWith(`${COOKIE}=`))!;
    expect(line).toMatch(/; Path=\//);
    expect(line).toMatch(/; HttpOnly/);
    expect(line).toMatch(/; Secure/);
    expect(line).toMatch(/; SameSite=Lax/);
    expect(line).not.toMatch(/Domain=/i);
    const expires = new Date(/Expires=([^;]+)/.exec(line)![1]!).getTime();
    expect(expires).toBeGreaterThan(Date.now() + 8 * 3600_000 - 5 * MINUTE);
    expect(expires).toBeLessThanOrEqual(Date.now() + 8 * 3600_000);
    // Stored as its digest only, under its own purpose.
    const [row] = await database.db.select().from(webSessions).where(eq(webSessions.idHash, sha256(browser.cookies.get(COOKIE)!)));
    expect(row).toMatchObject({ purpose: 'account', tenant: 'default', userId: nelly, provider: 'discord', externalId: nelly });
  });

  it('unlinks an account the way the bot API does: revoked at Jellyfin, an unlinked event, and the bot API answers 404 after', async () => {
    const nelly = person('Nelly');
    const jellyfinId = await linkJellyfin(nelly, 'Nelly at home');
    await linkAniList(nelly, 'NellyReads');
    const token = createLinkStore(database.db, gateway.keyring).openCredentials((await linkOf(nelly, 'jellyfin'))!).accessToken!;
    expect(jellyfin.isActive(token)).toBe(true);
    expect((await gateway.api(`/users/${nelly}/links/jellyfin`)).status).toBe(200);

    const browser = newBrowser();
    await signIn(browser, nelly);
    const { csrf } = await accountPage(browser);
    const unlinked = await browser.post('/me/unlink', { provider: 'jellyfin', csrf: csrf! });
    expect(unlinked.status).toBe(303);
    expect(unlinked.headers.get('location')).toBe('/me?unlinked=jellyfin');
    const after = await accountPage(browser, unlinked.headers.get('location')!);
    expect(after.html).toContain('Jellyfin was unlinked.');
    // The notice is only said while true.
    expect((await accountPage(browser, '/me?unlinked=anilist')).html).not.toContain('was unlinked');
    expect(after.html).not.toContain('<h2>Jellyfin</h2>');
    expect(after.html).toContain('<h2>AniList</h2>');

    expect((await gateway.api(`/users/${nelly}/links/jellyfin`)).status).toBe(404);
    expect((await gateway.api(`/users/${nelly}/links/anilist`)).status).toBe(200);
    expect(jellyfin.isActive(token)).toBe(false);
    const events = await database.db.select().from(linkEvents).where(and(eq(linkEvents.userId, nelly), eq(linkEvents.provider, 'jellyfin'), eq(linkEvents.kind, 'unlinked')));
    expect(events).toHaveLength(1);
    expect(events[0]!.detail).toMatchObject({ externalId: jellyfinId, via: 'account' });
    // Still signed in: it was not the account they signed in with.
    expect(signedIn(after.html)).toBe(true);
  });

  it('links a missing provider with a fresh link URL for the signed-in user, as the bot would mint it', async () => {
    const nelly = person('Nelly');
    const browser = newBrowser();
    await signIn(browser, nelly);
    const { html, csrf } = await accountPage(browser);
    expect(html).toContain('Link AniList</button>');
    expect(html).toContain('Link Jellyfin</button>');

    const toLink = await browser.post('/me/link', { provider: 'anilist', csrf: csrf! });
    expect(toLink.status).toBe(303);
    const url = new URL(toLink.headers.get('location')!);
    expect(url.origin + url.pathname).toBe(`${BASE}/oauth/anilist/start`);
    // The bot's own kind of link: its confirmation page names the person, pressing Continue goes to AniList.
    const confirmation = await browser.get(url.pathname + url.search);
    expect(await confirmation.clone().text()).toContain('Nelly');
    anilist.users.set(7999, { id: 7999, name: 'NellyLater' });
    const atProvider = await browser.openLink(url.pathname + url.search);
    const back = anilist.approve(atFake(new URL(atProvider.headers.get('location')!), anilist.origin), 7999);
    expect(await (await browser.get(back.pathname + back.search)).text()).toContain('Account linked');

    expect(await (await gateway.api(`/users/${nelly}/links/anilist`)).json()).toMatchObject({ externalName: 'NellyLater', status: 'active' });
    const again = await accountPage(browser);
    expect(again.html).toContain('<h2>AniList</h2>');
    expect(again.html).not.toContain('Link AniList</button>');
  });

  it('unlinking the account they signed in with signs them out', async () => {
    const nelly = person('Nelly');
    const browser = newBrowser();
    await signIn(browser, nelly);
    const stolen = browser.cookies.get(COOKIE)!;
    const { csrf } = await accountPage(browser);
    const answer = await browser.post('/me/unlink', { provider: 'discord', csrf: csrf! });
    expect(answer.headers.get('location')).toBe('/me?signed_out=');
    expect((await gateway.api(`/users/${nelly}/links/discord`)).status).toBe(404);
    expect(signedIn(await (await send('/me', { cookies: { [COOKIE]: stolen } })).text())).toBe(false);
  });
});

describe('nobody else’s links', () => {
  it('shows and unlinks only the signed-in user’s links, whatever user, tenant or id the form adds', async () => {
    const nelly = person('Nelly');
    const bob = person('Bob');
    await linkAniList(nelly, 'NellyReads');
    await linkAniList(bob, 'BobReads');
    await linkJellyfin(bob, 'Bob at home');
    const browser = newBrowser();
    await signIn(browser, nelly);
    const { html, csrf } = await accountPage(browser);
    expect(html).not.toContain('BobReads');
    expect(html).not.toContain(bob);

    // Bob's Jellyfin, named in every way a form could: Nelly has no Jellyfin link, so nothing is unlinked.
    const forged = { provider: 'jellyfin', csrf: csrf!, userId: bob, user: bob, user_id: bob, tenant: 'default', externalId: 'x' };
    expect((await browser.post('/me/unlink', forged)).status).toBe(303);
    expect((await gateway.api(`/users/${bob}/links/jellyfin`)).status).toBe(200);
    // With a provider both have, only Nelly's goes.
    expect((await browser.post('/me/unlink', { ...forged, provider: 'anilist' })).status).toBe(303);
    expect((await gateway.api(`/users/${nelly}/links/anilist`)).status).toBe(404);
    expect((await gateway.api(`/users/${bob}/links/anilist`)).status).toBe(200);
    // A link URL is always for the session's user.
    const toLink = await browser.post('/me/link', { ...forged, provider: 'jellyfin' });
    const context = new URL(toLink.headers.get('location')!).searchParams.get('context')!;
    expect(JSON.parse(Buffer.from(context.split('.')[1]!, 'base64url').toString()).sub).toBe(nelly);
  });

  it('keeps each tenant’s links behind that tenant’s own sign-in: a session moved to another tenant’s page or cookie opens nothing', async () => {
    const nelly = person('Nelly');
    await linkAniList(nelly, 'NellyReads');
    // The same Discord id is a user of the quiz bot too, with a Jellyfin link there.
    await linkJellyfinFor(nelly, 'Nelly on quiz night', quizKey);

    const browser = newBrowser();
    await signIn(browser, nelly);
    const defaultToken = browser.cookies.get(COOKIE)!;
    // The quiz bot's page does not take the default tenant's session, under either cookie name.
    for (const cookies of [{ [COOKIE]: defaultToken }, { [QUIZ_COOKIE]: defaultToken }] as Array<Record<string, string>>) {
      const page = await (await send('/t/quizbot/me', { cookies })).text();
      expect(signedIn(page)).toBe(false);
      expect(page).not.toContain('Nelly on quiz night');
      const refused = await send('/t/quizbot/me/unlink', { cookies, form: { provider: 'jellyfin', csrf: /name="csrf" value="([^"]+)"/.exec((await accountPage(browser)).html)![1]! } });
      expect(refused.status).toBe(401);
    }
    expect((await botApi(`/users/${nelly}/links/jellyfin`, {}, quizKey)).status).toBe(200);

    // Signed in at the quiz bot's own page: its links, and only its.
    await signIn(browser, nelly, '/t/quizbot/me');
    const quiz = await accountPage(browser, '/t/quizbot/me');
    expect(quiz.html).toContain('Nelly on quiz night');
    expect(quiz.html).not.toContain('NellyReads');
    // Both sessions live side by side, each under its own cookie.
    expect((await accountPage(browser)).html).toContain('NellyReads');
    expect(browser.cookies.get(COOKIE)).toBe(defaultToken);

    // A tenant that does not exist, or the default one under /t/, has no page.
    expect((await send('/t/nosuchbot/me')).status).toBe(404);
    expect((await send('/t/default/me')).status).toBe(404);
    expect((await send('/t/NOT_A_TENANT/me')).status).toBe(400);
  });

  it('does not take a session of another purpose: the web-session API’s cookie opens no account page, and the other way round', async () => {
    const nelly = person('Nelly');
    await linkAniList(nelly, 'NellyReads');
    const browser = newBrowser();
    await signIn(browser, nelly); // links Discord as the sign-in does
    const web = await createWebSessions(database.db, { purpose: 'web', ttlSeconds: 3600 }).create({ tenant: 'default', userId: nelly, provider: 'discord', externalId: nelly });
    const page = await (await send('/me', { cookies: { [COOKIE]: web.token } })).text();
    expect(signedIn(page)).toBe(false);
    expect(page).not.toContain('NellyReads');
    expect((await send('/me/unlink', { cookies: { [COOKIE]: web.token }, form: { provider: 'anilist' } })).status).toBe(401);
    // The account session is not a web-session API session either.
    expect((await send('/api/auth/session', { cookies: { '__Host-linkgate_session': browser.cookies.get(COOKIE)! } })).status).toBe(401);
  });

  it('reaches no operator data: the operator API refuses the account cookie', async () => {
    const browser = newBrowser();
    await signIn(browser, person('Nelly'));
    const cookies = { [COOKIE]: browser.cookies.get(COOKIE)! };
    expect((await send('/api/admin/v1/tenants', { cookies })).status).toBe(401);
    expect((await send('/api/v1/users/x/links', { cookies })).status).toBe(401);
  });
});

describe('CSRF and the end of a session', () => {
  it('refuses a cross-site post (Origin or Fetch Metadata), a missing token and another session’s token', async () => {
    const nelly = person('Nelly');
    await linkAniList(nelly, 'NellyReads');
    const browser = newBrowser();
    await signIn(browser, nelly);
    const other = newBrowser();
    await signIn(other, person('Bob'));
    const { csrf } = await accountPage(browser);
    const otherCsrf = (await accountPage(other)).csrf!;
    const cookies = { [COOKIE]: browser.cookies.get(COOKIE)! };

    for (const [headers, token] of [
      [{ origin: 'https://evil.example' }, csrf!],
      [{ origin: 'null' }, csrf!],
      [{ 'sec-fetch-site': 'cross-site' }, csrf!],
      [{ 'sec-fetch-site': 'same-site', origin: 'https://sub.link.example' }, csrf!],
      [{ 'sec-fetch-site': 'same-origin', origin: BASE }, ''],
      [{ 'sec-fetch-site': 'same-origin', origin: BASE }, otherCsrf],
    ] as const) {
      for (const action of ['unlink', 'link', 'sign-out']) {
        const answer = await send(`/me/${action}`, { cookies, headers, form: { provider: 'anilist', csrf: token } });
        expect(answer.status, `${action} ${JSON.stringify(headers)}`).toBe(403);
        expect(await answer.text()).toContain('id="error-code">csrf_failed<');
      }
    }
    expect((await gateway.api(`/users/${nelly}/links/anilist`)).status).toBe(200);
    expect(signedIn((await accountPage(browser)).html)).toBe(true);
    // The same post from our own page goes through: as Chromium sends it (our pages' no-referrer policy makes its Origin `null`).
    const ours = await send('/me/unlink', { cookies, headers: { 'sec-fetch-site': 'same-origin', origin: 'null' }, form: { provider: 'anilist', csrf: csrf! } });
    expect(ours.status).toBe(303);
    expect((await gateway.api(`/users/${nelly}/links/anilist`)).status).toBe(404);
  });

  it('signing out ends the session on the server: the stolen cookie opens nothing after', async () => {
    const nelly = person('Nelly');
    await linkAniList(nelly, 'NellyReads');
    const browser = newBrowser();
    await signIn(browser, nelly);
    const stolen = browser.cookies.get(COOKIE)!;
    const { csrf } = await accountPage(browser);
    const out = await browser.post('/me/sign-out', { csrf: csrf! });
    expect(out.status).toBe(303);
    expect(out.headers.get('location')).toBe('/me?signed_out=');
    expect(out.headers.getSetCookie().find((l) => l.startsWith(`${COOKIE}=`))).toMatch(/Max-Age=0|Expires=Thu, 01 Jan 1970/);
    expect(await (await browser.get('/me?signed_out=')).text()).toContain('You are signed out.');

    const [row] = await database.db.select().from(webSessions).where(eq(webSessions.idHash, sha256(stolen)));
    expect(row!.revokedAt).not.toBeNull();
    const cookies = { [COOKIE]: stolen };
    expect(signedIn(await (await send('/me', { cookies })).text())).toBe(false);
    const refused = await send('/me/unlink', { cookies, form: { provider: 'anilist', csrf: csrf! } });
    expect(refused.status).toBe(401);
    expect(await refused.text()).toContain('You are signed out');
    expect((await gateway.api(`/users/${nelly}/links/anilist`)).status).toBe(200);
  });

  it('ends a session after 30 minutes without use, and after 8 hours however used', async () => {
    const nelly = person('Nelly');
    const browser = newBrowser(timed);
    await signIn(browser, nelly);
    const cookies = { [COOKIE]: browser.cookies.get(COOKIE)! };
    const open = async () => signedIn(await (await send('/me', { cookies }, timed)).text());

    // Used every 29 minutes, it lives on…
    for (let i = 0; i < 3; i++) {
      clock += 29 * MINUTE;
      expect(await open()).toBe(true);
    }
    // …left 30 minutes, it is over, even for a thief who kept the cookie.
    clock += 30 * MINUTE;
    expect(await open()).toBe(false);
    expect((await send('/me/sign-out', { cookies, form: { csrf: 'x' } }, timed)).status).toBe(401);

    // Kept busy, it still ends 8 hours after sign-in.
    await signIn(browser, nelly);
    const busy = { [COOKIE]: browser.cookies.get(COOKIE)! };
    const started = clock;
    while (clock + 25 * MINUTE < started + 8 * 3600_000) {
      clock += 25 * MINUTE;
      expect(signedIn(await (await send('/me', { cookies: busy }, timed)).text())).toBe(true);
    }
    clock = started + 8 * 3600_000;
    expect(signedIn(await (await send('/me', { cookies: busy }, timed)).text())).toBe(false);
  });
});

/** As `linkJellyfin`, for a tenant's bot (its API key). */
async function linkJellyfinFor(userId: string, name: string, key: string): Promise<void> {
  const id = (nextJellyfin++).toString(16).padStart(32, 'b');
  jellyfin.users.set(id, { id, name, password: 'pw' });
  const browser = newBrowser();
  const waiting = await (await browser.openLink(await botLinkUrl(userId, 'jellyfin', key))).text();
  jellyfin.approve(/class="code"[^>]*>(\d{6})</.exec(waiting)![1]!, id);
  const state = /name="state" value="([^"]+)"/.exec(waiting)![1]!;
  expect(await (await browser.get(`/oauth/jellyfin/poll?state=${encodeURIComponent(state)}`)).json()).toEqual({ status: 'linked' });
}
