/**
 * The web-session API (issue #20, seed 002): `GET /api/auth/:provider/start`,
 * the provider's callback ending in a cookie session, `GET /api/auth/session`
 * and `POST /api/auth/logout`. People sign in at Discord's fake, at the
 * in-process OpenID provider (through the generic OIDC module) and on the
 * gateway's own Jellyfin form; the browser is a cookie-keeping client of the
 * gateway that never follows a redirect by itself.
 */
import { eq } from '../../src/db/orm.ts';
import * as v from 'valibot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../src/core/crypto.ts';
import { createWebSessions } from '../../src/core/web-sessions.ts';
import type { Database } from '../../src/db/client.ts';
import { flows, webSessions } from '../../src/db/schema.ts';
import { SessionAnswer, StartAnswer } from '../../src/http/web-session.ts';
import { startFakeDiscord, type FakeDiscord } from '../fakes/discord.ts';
import { startFakeJellyfin, type FakeJellyfin } from '../fakes/jellyfin.ts';
import { startTestIdp, type TestIdp } from '../fakes/oidc-idp.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { atFake, createTestGateway, reroute, type TestGateway } from '../helpers/gateway.ts';

const BASE = 'https://link.example';
const PLAIN_BASE = 'http://127.0.0.1:8000';
const ADMIN_KEY = 'admin_0123456789abcdefghijklmnopqrstuvwxyz';
const CORP_SECRET = 'corp-client-secret-0123456789abcdef';
const DISCORD = { DISCORD_CLIENT_ID: '1100000000000000001', DISCORD_CLIENT_SECRET: 'discord-client-secret-0123456789', DISCORD_SCOPES: 'identify' };
const NELLY = '80351110224678912';
const JELLYFIN_USER = '4f6a1b2c3d4e5f60718293a4b5c6d7e8';
const JELLYFIN_PASSWORD = 'tr0ub4dor&3-jellyfin';
/** The corp IdP's access tokens live 30 minutes: shorter than a web session's 8 hours. */
const CORP_TOKEN_SECONDS = 1800;
const EIGHT_HOURS = 8 * 3600 * 1000;
const DASHBOARD = 'https://app.example/dashboard';
const QUIZ_HOME = 'https://quiz.example/home';
const DISCORD_ONLY = 'https://app.example/discord-only';
const THIRD_PARTY = 'https://someone-else.example/callback';

let database: Database;
let idp: TestIdp;
let discord: FakeDiscord;
let jellyfin: FakeJellyfin;
let gateway: TestGateway;
let plain: TestGateway;
/** Every request the gateways sent to a provider. */
const outbound: string[] = [];
/** Every session token handed out: none may appear in a log line. */
const tokens: string[] = [];

const env = (base: string) => ({
  PUBLIC_BASE_URL: base,
  LINKGATE_ADMIN_KEYS: ADMIN_KEY,
  OIDC_PROVIDERS: 'corp',
  CORP_ISSUER: idp.issuer,
  CORP_CLIENT_ID: 'linkgate',
  CORP_CLIENT_SECRET: CORP_SECRET,
  CORP_SCOPES: 'openid profile',
  ...DISCORD,
  JELLYFIN_SERVER_URL: jellyfin.url,
});

/** The providers' real origins sent to the fakes, every request counted. */
function countingFetch(): typeof fetch {
  const rerouted = reroute({ 'https://discord.com': discord.origin, [idp.issuer]: idp.issuer, [new URL(jellyfin.url).origin]: new URL(jellyfin.url).origin });
  return (input, init) => {
    outbound.push(input instanceof Request ? input.url : String(input));
    return rerouted(input, init);
  };
}

const admin = (on: TestGateway, path: string, body?: unknown) =>
  on.app.request(`/api/admin/v1${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
const put = (on: TestGateway, path: string, body: unknown) =>
  on.app.request(`/api/admin/v1${path}`, { method: 'PUT', headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

const newBrowser = (on: TestGateway = gateway) => new TestBrowser((path, init) => on.app.request(path, { ...init, redirect: 'manual' }));
/** What the browser sends as its Cookie header, for requests made by hand. */
const cookieHeader = (browser: TestBrowser) => [...browser.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
/** The session cookie a browser holds (its name depends on https). */
const sessionToken = (browser: TestBrowser) => browser.cookies.get('__Host-linkgate_session') ?? browser.cookies.get('linkgate_session');

/** `GET /api/auth/:provider/start` in JSON mode, from the app's page in this browser. */
async function startJson(browser: TestBrowser, provider: string, query: Record<string, string>, headers: Record<string, string> = {}) {
  const path = `/api/auth/${provider}/start?${new URLSearchParams(query)}`;
  const answer = headers['x-tenant-id'] ? await gateway.app.request(path, { headers: { ...headers, cookie: cookieHeader(browser) } }) : await browser.get(path);
  if (headers['x-tenant-id']) for (const line of answer.headers.getSetCookie()) browser.cookies.set(line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1, line.indexOf(';')));
  expect(answer.status, await answer.clone().text()).toBe(200);
  return v.parse(StartAnswer, await answer.json());
}

/** Back from the provider: the callback's answer, which must be the 303 to postLoginRedirect. */
async function callback(browser: TestBrowser, url: URL, postLoginRedirect: string) {
  expect(url.origin + url.pathname).toMatch(/\/oauth\/[a-z]+\/callback$/);
  const answer = await browser.get(url.pathname + url.search, { follow: false });
  expect(answer.status, await answer.clone().text()).toBe(303);
  expect(answer.headers.get('location')).toBe(postLoginRedirect);
  tokens.push(sessionToken(browser)!);
  return answer;
}

/** Signs in with Discord as `userId`, started in JSON mode. */
async function discordSignIn(browser: TestBrowser, userId: string, postLoginRedirect = DASHBOARD) {
  const { authorizationUrl } = await startJson(browser, 'discord', { postLoginRedirect });
  return callback(browser, discord.approve(atFake(new URL(authorizationUrl), discord.origin), userId), postLoginRedirect);
}

const session = (browser: TestBrowser, headers: Record<string, string> = {}, on: TestGateway = gateway) =>
  on.app.request('/api/auth/session', { headers: { cookie: cookieHeader(browser), ...headers } });
const errorCode = async (answer: Response) => ((await answer.json()) as { error: { code: string } }).error.code;

/** The attributes of the `Set-Cookie` line for `name`: lower-cased names, `true` for flags. */
function cookieAttributes(answer: Response, name: string): Record<string, string | true> | undefined {
  const line = answer.headers.getSetCookie().find((l) => l.startsWith(`${name}=`));
  if (!line) return undefined;
  return Object.fromEntries(
    line
      .split(';')
      .slice(1)
      .map((part) => {
        const at = part.indexOf('=');
        return at < 0 ? [part.trim().toLowerCase(), true] : [part.slice(0, at).trim().toLowerCase(), part.slice(at + 1).trim()];
      }),
  );
}

beforeAll(async () => {
  database = await createTestDatabase();
  idp = await startTestIdp({ redirectUris: [`${BASE}/oauth/corp/callback`], clientId: 'linkgate', clientSecret: CORP_SECRET, accessTokenTtlSeconds: CORP_TOKEN_SECONDS });
  discord = await startFakeDiscord({ clientId: DISCORD.DISCORD_CLIENT_ID, clientSecret: DISCORD.DISCORD_CLIENT_SECRET, redirectUris: [`${BASE}/oauth/discord/callback`, `${PLAIN_BASE}/oauth/discord/callback`] });
  discord.users.set(NELLY, { id: NELLY, username: 'nelly', global_name: 'Nelly' });
  jellyfin = await startFakeJellyfin({ serverName: 'Home' });
  jellyfin.users.set(JELLYFIN_USER, { id: JELLYFIN_USER, name: 'Ada', password: JELLYFIN_PASSWORD });
  gateway = await createTestGateway(database, { env: env(BASE), fetch: countingFetch() });
  plain = await createTestGateway(database, { env: env(PLAIN_BASE), fetch: countingFetch() });

  // The allowlist: the redirect URIs of each tenant's apps.
  expect((await admin(gateway, '/tenants/default/apps', { name: 'Dashboard', redirectUris: [DASHBOARD], type: 'public' })).status).toBe(201);
  expect((await admin(gateway, '/tenants/default/apps', { name: 'Discord corner', redirectUris: [DISCORD_ONLY], type: 'public', providers: ['discord'] })).status).toBe(201);
  expect((await admin(gateway, '/tenants/default/apps', { name: 'Someone else', redirectUris: [THIRD_PARTY], type: 'public', firstParty: false })).status).toBe(201);
  expect((await admin(gateway, '/tenants', { id: 'quizbot', name: 'Quiz Bot' })).status).toBe(201);
  const configured = await put(gateway, '/tenants/quizbot/providers/corp', { env: { CORP_ISSUER: idp.issuer, CORP_CLIENT_ID: 'linkgate', CORP_CLIENT_SECRET: CORP_SECRET, CORP_SCOPES: 'openid profile' } });
  expect(configured.status).toBe(200);
  expect((await admin(gateway, '/tenants/quizbot/apps', { name: 'Quiz', redirectUris: [QUIZ_HOME], type: 'public' })).status).toBe(201);
});

afterAll(async () => {
  await Promise.all([idp?.close(), discord?.close(), jellyfin?.close()]);
  await database?.close();
});

describe('GET /api/auth/:provider/start', () => {
  it('answers { authorizationUrl, state } in JSON; the callback ends with a session cookie (__Host-, HttpOnly, Secure, SameSite=Lax) and a 303 to postLoginRedirect', async () => {
    const browser = newBrowser();
    const started = await startJson(browser, 'discord', { postLoginRedirect: DASHBOARD });
    const authorization = new URL(started.authorizationUrl);
    expect(authorization.origin + authorization.pathname).toBe('https://discord.com/oauth2/authorize');
    expect(authorization.searchParams.get('state')).toBe(started.state);
    expect(authorization.searchParams.get('redirect_uri')).toBe(`${BASE}/oauth/discord/callback`);

    const signedInAt = Date.now();
    const back = await callback(browser, discord.approve(atFake(authorization, discord.origin), NELLY), DASHBOARD);
    const cookie = cookieAttributes(back, '__Host-linkgate_session');
    expect(cookie).toMatchObject({ path: '/', httponly: true, secure: true, samesite: 'Lax' });
    expect(cookie).not.toHaveProperty('domain');
    // Discord's token lives 7 days: the session its 8 hours.
    expect(Date.parse(String(cookie!.expires))).toBeGreaterThan(signedInAt + EIGHT_HOURS - 60_000);
    expect(Date.parse(String(cookie!.expires))).toBeLessThanOrEqual(signedInAt + EIGHT_HOURS + 1000);

    const answer = await session(browser);
    expect(answer.status).toBe(200);
    expect(answer.headers.get('cache-control')).toBe('no-store');
    const body = v.parse(SessionAnswer, await answer.json());
    expect(body).toMatchObject({ tenant: 'default', user: { id: NELLY }, identity: { provider: 'discord', externalId: NELLY, name: 'Nelly' } });
    expect(Math.abs(Date.parse(body.expiresAt) - (signedInAt + EIGHT_HOURS))).toBeLessThan(60_000);

    // Stored as the digest of the cookie's value only, with the identity and both times.
    const token = sessionToken(browser)!;
    const [row] = await database.db.select().from(webSessions).where(eq(webSessions.idHash, sha256(token)));
    expect(row).toMatchObject({ purpose: 'web', tenant: 'default', userId: NELLY, provider: 'discord', externalId: NELLY, revokedAt: null });
    expect(JSON.stringify(await database.db.select().from(webSessions))).not.toContain(token);
    // The sign-in stored the account as the user's link, as every sign-in does.
    expect((await gateway.api(`/users/${NELLY}/links/discord`)).status).toBe(200);
  });

  it('with mode=redirect answers a 302 to the provider; the session ends with the provider token when that is sooner than 8 hours', async () => {
    const browser = newBrowser();
    const started = await browser.get(`/api/auth/corp/start?${new URLSearchParams({ postLoginRedirect: DASHBOARD, mode: 'redirect' })}`, { follow: false });
    expect(started.status).toBe(302);
    const authorization = new URL(started.headers.get('location')!);
    expect(authorization.origin).toBe(idp.issuer);
    const signedInAt = Date.now();
    await callback(browser, await idp.login(authorization, 'corp-web-1'), DASHBOARD);
    const body = v.parse(SessionAnswer, await (await session(browser)).json());
    expect(body.user.id).toMatch(/^usr_/);
    expect(body.identity).toEqual({ provider: 'corp', externalId: 'corp-web-1', name: 'Test User corp-web-1' });
    expect(Math.abs(Date.parse(body.expiresAt) - (signedInAt + CORP_TOKEN_SECONDS * 1000))).toBeLessThan(60_000);
  });

  it('signs in on the gateway\'s own Jellyfin password form and ends with the session and the 303', async () => {
    const browser = newBrowser();
    const { authorizationUrl, state } = await startJson(browser, 'jellyfin', { postLoginRedirect: DASHBOARD });
    const page = new URL(authorizationUrl);
    expect(page.origin + page.pathname).toBe(`${BASE}/oauth/jellyfin/continue`);
    expect(await (await browser.get(page.pathname + page.search)).text()).toContain(`value="${state}"`);
    expect(await (await browser.post('/oauth/jellyfin/callback', { state, linkgate_action: 'password' })).text()).toContain('Sign in to Jellyfin');
    const done = await browser.post('/oauth/jellyfin/callback', { state, username: 'Ada', password: JELLYFIN_PASSWORD }, { follow: false });
    expect(done.status).toBe(303);
    expect(done.headers.get('location')).toBe(DASHBOARD);
    expect(cookieAttributes(done, '__Host-linkgate_session')).toMatchObject({ httponly: true, secure: true, samesite: 'Lax' });
    expect(v.parse(SessionAnswer, await (await session(browser)).json()).identity).toEqual({ provider: 'jellyfin', externalId: JELLYFIN_USER, name: 'Ada' });
  });

  it('signs in with Jellyfin Quick Connect: the waiting page\'s poll answer carries the session cookie and sends the page to postLoginRedirect', async () => {
    const browser = newBrowser();
    const { authorizationUrl, state } = await startJson(browser, 'jellyfin', { postLoginRedirect: DASHBOARD });
    const waiting = await (await browser.get(new URL(authorizationUrl).pathname + new URL(authorizationUrl).search)).text();
    jellyfin.approve(/class="code"[^>]*>(\d{6})</.exec(waiting)![1]!, JELLYFIN_USER);
    const polled = await browser.get(`/oauth/jellyfin/poll?state=${encodeURIComponent(state)}`);
    expect(await polled.json()).toEqual({ status: 'linked', returnTo: DASHBOARD });
    expect(cookieAttributes(polled, '__Host-linkgate_session')).toMatchObject({ httponly: true, secure: true, samesite: 'Lax', path: '/' });
    tokens.push(sessionToken(browser)!);
    expect(v.parse(SessionAnswer, await (await session(browser)).json()).identity).toMatchObject({ provider: 'jellyfin', externalId: JELLYFIN_USER });
  });

  it.each([
    ['not an allowed URI', { postLoginRedirect: 'https://evil.example/dashboard' }, 400, 'redirect_not_allowed'],
    ['an allowed URI with a query added', { postLoginRedirect: `${DASHBOARD}?next=https://evil.example` }, 400, 'redirect_not_allowed'],
    ['an allowed URI with a path added', { postLoginRedirect: `${DASHBOARD}/../../evil` }, 400, 'redirect_not_allowed'],
    ['an allowed URI of an app that does not offer this provider', { postLoginRedirect: DISCORD_ONLY }, 400, 'redirect_not_allowed'],
    ['another tenant\'s allowed URI', { postLoginRedirect: QUIZ_HOME }, 400, 'redirect_not_allowed'],
    ['a redirect URI of a third-party app', { postLoginRedirect: THIRD_PARTY }, 400, 'redirect_not_allowed'],
    ['a javascript: URL', { postLoginRedirect: 'javascript:alert(1)' }, 400, 'redirect_not_allowed'],
    ['no postLoginRedirect', {}, 400, 'bad_request'],
    ['a relative postLoginRedirect', { postLoginRedirect: '/dashboard' }, 400, 'bad_request'],
    ['a tenant that does not exist', { postLoginRedirect: DASHBOARD, tenantId: 'nosuch' }, 404, 'tenant_not_found'],
    ['an unknown mode', { postLoginRedirect: DASHBOARD, mode: 'popup' }, 400, 'bad_request'],
  ])('refuses %s before any provider is contacted', async (_name, query: Record<string, string>, status, code) => {
    // A gateway of its own, so that the corp provider has not fetched its discovery document yet.
    const fresh = await createTestGateway(database, { env: env(BASE), fetch: countingFetch() });
    const flowsBefore = (await database.db.select().from(flows)).length;
    const sent = outbound.length;
    const answer = await fresh.app.request(`/api/auth/corp/start?${new URLSearchParams(query)}`);
    expect(answer.status).toBe(status);
    expect(await errorCode(answer)).toBe(code);
    expect(outbound.length - sent).toBe(0);
    expect((await database.db.select().from(flows)).length).toBe(flowsBefore);
    expect(answer.headers.getSetCookie()).toEqual([]);

    // The same start with an allowed URI does contact the provider (its discovery): the count above would have seen it.
    const allowed = await fresh.app.request(`/api/auth/corp/start?${new URLSearchParams({ postLoginRedirect: DASHBOARD })}`);
    expect(allowed.status).toBe(200);
    expect(outbound.slice(sent).some((url) => url.startsWith(idp.issuer))).toBe(true);
  });

  it('answers 404 for a provider the tenant does not have, and 400 for a provider id that is not one', async () => {
    const unknown = await gateway.app.request(`/api/auth/nosuch/start?postLoginRedirect=${encodeURIComponent(DASHBOARD)}`);
    expect(unknown.status).toBe(404);
    expect(await errorCode(unknown)).toBe('unknown_provider');
    const bad = await gateway.app.request(`/api/auth/NOT-ONE/start?postLoginRedirect=${encodeURIComponent(DASHBOARD)}`);
    expect(bad.status).toBe(400);
    expect(await errorCode(bad)).toBe('bad_request');
  });
});

describe('single-use state', () => {
  it('refuses a replayed callback, and the replay makes no second session', async () => {
    const browser = newBrowser();
    const { authorizationUrl } = await startJson(browser, 'discord', { postLoginRedirect: DASHBOARD });
    const back = discord.approve(atFake(new URL(authorizationUrl), discord.origin), NELLY);
    await callback(browser, back, DASHBOARD);
    const sessionsBefore = (await database.db.select().from(webSessions)).length;

    const replayed = await browser.get(back.pathname + back.search, { follow: false });
    expect(replayed.status).toBe(400);
    expect(await replayed.text()).toContain('flow_not_found');
    expect(replayed.headers.getSetCookie().some((line) => line.includes('linkgate_session'))).toBe(false);
    // In another browser it is refused too.
    const stranger = await newBrowser().get(back.pathname + back.search, { follow: false });
    expect(stranger.status).toBe(400);
    expect((await database.db.select().from(webSessions)).length).toBe(sessionsBefore);
  });

  it('refuses a callback in a browser other than the one that started the sign-in', async () => {
    const { authorizationUrl } = await startJson(newBrowser(), 'discord', { postLoginRedirect: DASHBOARD });
    const back = discord.approve(atFake(new URL(authorizationUrl), discord.origin), NELLY);
    const elsewhere = await newBrowser().get(back.pathname + back.search, { follow: false });
    expect(elsewhere.status).toBe(400);
    expect(await elsewhere.text()).toContain('flow_browser_mismatch');
  });
});

describe('an app deleted during the sign-in', () => {
  it('ends the sign-in at the callback without a session: its redirect URI is no longer allowed', async () => {
    const LATE = 'https://app.example/late';
    const created = (await (await admin(gateway, '/tenants/default/apps', { name: 'Late', redirectUris: [LATE], type: 'public' })).json()) as { clientId: string };
    const browser = newBrowser();
    const { authorizationUrl } = await startJson(browser, 'discord', { postLoginRedirect: LATE });
    const deleted = await gateway.app.request(`/api/admin/v1/tenants/default/apps/${created.clientId}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    expect(deleted.status).toBe(204);
    const back = discord.approve(atFake(new URL(authorizationUrl), discord.origin), NELLY);
    const answer = await browser.get(back.pathname + back.search, { follow: false });
    expect(answer.status).toBe(400);
    expect(await answer.text()).toContain('This app no longer takes sign-ins here');
    expect(answer.headers.getSetCookie().some((line) => line.includes('linkgate_session'))).toBe(false);
    expect((await session(browser)).status).toBe(401);
  });
});

describe('GET /api/auth/session', () => {
  it('answers 401 not_signed_in without a session cookie or with one that is not a session', async () => {
    for (const cookie of ['', '__Host-linkgate_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', '__Host-linkgate_session=not-a-token']) {
      const answer = await gateway.app.request('/api/auth/session', { headers: cookie ? { cookie } : {} });
      expect(answer.status).toBe(401);
      expect(await errorCode(answer)).toBe('not_signed_in');
    }
  });

  it('ends the session when the account is unlinked', async () => {
    const browser = newBrowser();
    const { authorizationUrl } = await startJson(browser, 'corp', { postLoginRedirect: DASHBOARD });
    await callback(browser, await idp.login(new URL(authorizationUrl), 'corp-web-2'), DASHBOARD);
    const user = v.parse(SessionAnswer, await (await session(browser)).json()).user.id;
    expect((await gateway.api(`/users/${user}/links/corp`, { method: 'DELETE' })).status).toBe(204);
    expect((await session(browser)).status).toBe(401);
  });
});

describe('POST /api/auth/logout', () => {
  it('refuses a cross-site POST (Origin and Sec-Fetch-Site) and keeps the session', async () => {
    const browser = newBrowser();
    await discordSignIn(browser, NELLY);
    for (const headers of [
      { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
      { origin: 'https://evil.example' },
      { origin: 'null', 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'cross-site' },
    ]) {
      const answer = await gateway.app.request('/api/auth/logout', { method: 'POST', headers: { cookie: cookieHeader(browser), ...headers } });
      expect(answer.status).toBe(403);
      expect(await errorCode(answer)).toBe('csrf_failed');
    }
    expect((await session(browser)).status).toBe(200);
  });

  it.each([
    ['the gateway\'s own page', { origin: BASE, 'sec-fetch-site': 'same-origin' }],
    ['an app of the tenant on a sibling host', { origin: 'https://app.example', 'sec-fetch-site': 'same-site' }],
  ])('from %s ends the session server-side and clears the cookie: the old cookie no longer works', async (_name, headers) => {
    const browser = newBrowser();
    await discordSignIn(browser, NELLY);
    const token = sessionToken(browser)!;
    const cookie = cookieHeader(browser);
    const answer = await gateway.app.request('/api/auth/logout', { method: 'POST', headers: { cookie, ...headers } });
    expect(answer.status).toBe(204);
    const cleared = cookieAttributes(answer, '__Host-linkgate_session');
    expect(cleared).toMatchObject({ path: '/', secure: true, 'max-age': '0' });
    const [row] = await database.db.select().from(webSessions).where(eq(webSessions.idHash, sha256(token)));
    expect(row!.revokedAt).toBeInstanceOf(Date);
    // The browser kept the old cookie anyway (a copy of it): the server no longer accepts it.
    const after = await gateway.app.request('/api/auth/session', { headers: { cookie } });
    expect(after.status).toBe(401);
    expect(await errorCode(after)).toBe('not_signed_in');
  });
});

describe('tenants', () => {
  it('starts a sign-in for the tenant named by x-tenant-id; its session is not accepted as another tenant\'s', async () => {
    const browser = newBrowser();
    const { authorizationUrl } = await startJson(browser, 'corp', { postLoginRedirect: QUIZ_HOME }, { 'x-tenant-id': 'quizbot' });
    await callback(browser, await idp.login(new URL(authorizationUrl), 'corp-quiz-1'), QUIZ_HOME);
    const own = await session(browser, { 'x-tenant-id': 'quizbot' });
    expect(own.status).toBe(200);
    expect(v.parse(SessionAnswer, await own.json())).toMatchObject({ tenant: 'quizbot', identity: { provider: 'corp', externalId: 'corp-quiz-1' } });
    for (const other of [{ 'x-tenant-id': 'default' }]) {
      const answer = await session(browser, other);
      expect(answer.status).toBe(401);
      expect(await errorCode(answer)).toBe('not_signed_in');
    }
    const byQuery = await gateway.app.request('/api/auth/session?tenantId=default', { headers: { cookie: cookieHeader(browser) } });
    expect(byQuery.status).toBe(401);

    // Without a tenant named, a start is for the session's tenant: its allowlist, not the default tenant's.
    const again = await browser.get(`/api/auth/corp/start?${new URLSearchParams({ postLoginRedirect: QUIZ_HOME })}`);
    expect(again.status).toBe(200);
    const refused = await browser.get(`/api/auth/corp/start?${new URLSearchParams({ postLoginRedirect: DASHBOARD })}`);
    expect(refused.status).toBe(400);
    expect(await errorCode(refused)).toBe('redirect_not_allowed');
    // The header and the query must agree.
    const conflict = await gateway.app.request(`/api/auth/corp/start?${new URLSearchParams({ postLoginRedirect: QUIZ_HOME, tenantId: 'default' })}`, { headers: { 'x-tenant-id': 'quizbot' } });
    expect(conflict.status).toBe(400);
  });
});

describe('configuration', () => {
  it('takes the session lifetime from LINKGATE_WEB_SESSION_TTL_SECONDS and ends an unused session after LINKGATE_WEB_SESSION_IDLE_SECONDS', async () => {
    let clock = Date.now();
    const short = await createTestGateway(database, {
      env: { ...env(BASE), LINKGATE_WEB_SESSION_TTL_SECONDS: '3600', LINKGATE_WEB_SESSION_IDLE_SECONDS: '600' },
      fetch: countingFetch(),
      now: () => clock,
    });
    const browser = newBrowser(short);
    const started = await browser.get(`/api/auth/discord/start?${new URLSearchParams({ postLoginRedirect: DASHBOARD })}`);
    const { authorizationUrl } = v.parse(StartAnswer, await started.json());
    const back = discord.approve(atFake(new URL(authorizationUrl), discord.origin), NELLY);
    expect((await browser.get(back.pathname + back.search, { follow: false })).status).toBe(303);
    tokens.push(sessionToken(browser)!);
    const body = v.parse(SessionAnswer, await (await session(browser, {}, short)).json());
    expect(Date.parse(body.expiresAt)).toBe(clock + 3600 * 1000);
    // Used within the idle timeout: still there; then unused for longer than it: ended.
    clock += 9 * 60_000;
    expect((await session(browser, {}, short)).status).toBe(200);
    clock += 9 * 60_000;
    expect((await session(browser, {}, short)).status).toBe(200);
    clock += 11 * 60_000;
    const idle = await session(browser, {}, short);
    expect(idle.status).toBe(401);
    expect(await errorCode(idle)).toBe('not_signed_in');
  });

  it.each([['LINKGATE_WEB_SESSION_TTL_SECONDS', '60'], ['LINKGATE_WEB_SESSION_TTL_SECONDS', 'eight hours'], ['LINKGATE_WEB_SESSION_IDLE_SECONDS', '0']])('refuses %s=%s at start-up, naming it', async (name, value) => {
    await expect(createTestGateway(database, { env: { ...env(BASE), [name]: value } })).rejects.toThrow(name);
  });
});

describe('a deleted tenant', () => {
  it('takes its web sessions with it', async () => {
    expect((await admin(gateway, '/tenants', { id: 'short-lived', name: 'Short lived' })).status).toBe(201);
    const store = createWebSessions(database.db, { purpose: 'web', ttlSeconds: 3600 });
    const { token } = await store.create({ tenant: 'short-lived', userId: 'u-gone', provider: 'corp', externalId: 'c-gone' });
    expect(await store.find(token)).toBeDefined();
    const deleted = await gateway.app.request('/api/admin/v1/tenants/short-lived', { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    expect(deleted.status).toBe(204);
    expect(await database.db.select().from(webSessions).where(eq(webSessions.tenant, 'short-lived'))).toEqual([]);
  });
});

describe('over plain http (loopback development)', () => {
  it('sets the session cookie without the __Host- prefix and without Secure, still HttpOnly and SameSite=Lax', async () => {
    const browser = newBrowser(plain);
    const started = await browser.get(`/api/auth/discord/start?${new URLSearchParams({ postLoginRedirect: DASHBOARD })}`);
    expect(started.status).toBe(200);
    const { authorizationUrl } = v.parse(StartAnswer, await started.json());
    const back = discord.approve(atFake(new URL(authorizationUrl), discord.origin), NELLY);
    const answer = await browser.get(back.pathname + back.search, { follow: false });
    expect(answer.status).toBe(303);
    const cookie = cookieAttributes(answer, 'linkgate_session');
    expect(cookie).toMatchObject({ path: '/', httponly: true, samesite: 'Lax' });
    expect(cookie).not.toHaveProperty('secure');
    expect(answer.headers.getSetCookie().some((line) => line.startsWith('__Host-'))).toBe(false);
    expect((await session(browser, {}, plain)).status).toBe(200);
  });
});

it('logs no session token or secret', () => {
  expect(tokens.length).toBeGreaterThan(5);
  const secrets = [...tokens, CORP_SECRET, DISCORD.DISCORD_CLIENT_SECRET, JELLYFIN_PASSWORD];
  for (const line of [...gateway.logs, ...plain.logs]) for (const secret of secrets) expect(line).not.toContain(secret);
});
