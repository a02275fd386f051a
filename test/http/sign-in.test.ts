/**
 * Sign-in (issue #20, slice 1): Linkgate as an OpenID Provider per tenant.
 * The relying party is panva's openid-client, as an app would use it; the
 * people sign in upstream at the in-process OpenID provider (through the
 * generic OIDC module) or at the Discord fake; everything runs over real
 * HTTP on loopback, as a browser and an app would reach the gateway.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import * as client from 'openid-client';
import * as v from 'valibot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { oidcPayloads, oidcSigningKeys, oidcApps } from '../../src/db/schema.ts';
import { AppsAnswer, CreatedAppAnswer, CreatedApiKeyAnswer, SigningKeyAnswer, SigningKeysAnswer, TenantDetailAnswer } from '../../src/http/admin.ts';
import { startFakeDiscord, type FakeDiscord } from '../fakes/discord.ts';
import { startTestIdp, type TestIdp } from '../fakes/oidc-idp.ts';
import { startFakeJellyfin, type FakeJellyfin } from '../fakes/jellyfin.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, atFake, createTestGateway, reroute, type TestGateway } from '../helpers/gateway.ts';
import { authorizationRequest } from '../helpers/openid.ts';

const ADMIN_KEY = 'admin_0123456789abcdefghijklmnopqrstuvwxyz';
const CORP_SECRET = 'corp-client-secret-0123456789abcdef';
const DISCORD = { DISCORD_CLIENT_ID: '1100000000000000001', DISCORD_CLIENT_SECRET: 'discord-client-secret-0123456789', DISCORD_SCOPES: 'identify' };
const APP_REDIRECT = 'https://app.example/callback';

let database: Database;
let server: Server;
let base: string;
let idp: TestIdp;
let discord: FakeDiscord;
let jellyfin: FakeJellyfin;
const JELLYFIN_USER = '4f6a1b2c3d4e5f60718293a4b5c6d7e8';
const JELLYFIN_PASSWORD = 'tr0ub4dor&3-jellyfin';
let gateway: TestGateway;
let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.writeHead(503).end();
const apps: Record<string, { clientId: string; clientSecret: string }> = {};
let quizbotKey: string;
/** The gateway's clock runs this far ahead of the real one (the key rotation test moves it). */
let clockOffset = 0;
/** Every token and code the app received: none may appear in a log line. */
const issued: string[] = [];

const admin = (path: string, init: { method?: string; body?: unknown } = {}) =>
  gateway.app.request(`/api/admin/v1${path}`, {
    method: init.method ?? 'GET',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });

/** A browser on the real listener: keeps cookies, and never follows a redirect by itself. */
const newBrowser = () => new TestBrowser((path, init) => fetch(`${base}${path}`, { ...init, redirect: 'manual' }));

/** Follows the gateway's own redirects (its issuer, /oauth, the interaction) until one leaves it. */
async function follow(browser: TestBrowser, start: string | URL): Promise<URL> {
  let url = new URL(start, base);
  for (let hop = 0; hop < 12; hop++) {
    if (url.origin !== base) return url;
    const answer = await browser.get(url, { follow: false });
    const location = answer.headers.get('location');
    if (answer.status < 300 || answer.status >= 400 || !location) throw new Error(`expected a redirect from ${url.pathname}, got ${answer.status}: ${(await answer.text()).slice(0, 300)}`);
    url = new URL(location, url);
  }
  throw new Error('too many redirects');
}

/** An app of `tenant` as openid-client sees it, from the tenant's discovery document. */
async function relyingParty(tenant: string) {
  const issuer = new URL(tenant === 'default' ? base : `${base}/t/${tenant}`);
  const app = apps[tenant]!;
  return client.discovery(issuer, app.clientId, undefined, client.ClientSecretBasic(app.clientSecret), { execute: [client.allowInsecureRequests] });
}

/** The app sends the browser to sign in (code + PKCE); `login` does the upstream part and returns the provider's callback URL. */
async function signIn(tenant: string, extra: Record<string, string>, login: (authorize: URL) => URL | Promise<URL>) {
  const config = await relyingParty(tenant);
  const { url: authorization, codeVerifier, state } = await authorizationRequest(config, APP_REDIRECT, extra);
  const browser = newBrowser();
  const upstream = await follow(browser, authorization);
  const back = await follow(browser, await login(upstream));
  expect(back.origin + back.pathname).toBe(APP_REDIRECT);
  const tokens = await client.authorizationCodeGrant(config, back, { pkceCodeVerifier: codeVerifier, expectedState: state });
  issued.push(back.searchParams.get('code')!, tokens.access_token, tokens.refresh_token!, tokens.id_token!);
  return { config, tokens, browser };
}

const jwksOf = async (issuer: string): Promise<JSONWebKeySet> => (await (await fetch(`${issuer}/oidc/jwks`)).json()) as JSONWebKeySet;

beforeAll(async () => {
  database = await createTestDatabase();
  server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  idp = await startTestIdp({ redirectUris: [`${base}/oauth/corp/callback`], clientId: 'linkgate', clientSecret: CORP_SECRET });
  discord = await startFakeDiscord({ clientId: DISCORD.DISCORD_CLIENT_ID, clientSecret: DISCORD.DISCORD_CLIENT_SECRET, redirectUris: [`${base}/oauth/discord/callback`] });
  discord.users.set('80351110224678912', { id: '80351110224678912', username: 'nelly', global_name: 'Nelly' });
  jellyfin = await startFakeJellyfin({ serverName: 'Home' });
  jellyfin.users.set(JELLYFIN_USER, { id: JELLYFIN_USER, name: 'Ada', password: JELLYFIN_PASSWORD });
  gateway = await createTestGateway(database, {
    env: {
      PUBLIC_BASE_URL: base,
      LINKGATE_ADMIN_KEYS: ADMIN_KEY,
      OIDC_PROVIDERS: 'corp',
      CORP_ISSUER: idp.issuer,
      CORP_CLIENT_ID: 'linkgate',
      CORP_CLIENT_SECRET: CORP_SECRET,
      CORP_SCOPES: 'openid profile',
      CORP_DISPLAY_NAME: 'Corp SSO',
      ...DISCORD,
      JELLYFIN_SERVER_URL: jellyfin.url,
      LINKGATE_METRICS: 'true',
    },
    fetch: reroute({ 'https://discord.com': discord.origin, [idp.issuer]: idp.issuer, [new URL(jellyfin.url).origin]: new URL(jellyfin.url).origin }),
    now: () => Date.now() + clockOffset,
  });
  handler = getRequestListener(gateway.app.fetch);

  // A second tenant with its own app at the same IdP.
  expect((await admin('/tenants', { method: 'POST', body: { id: 'quizbot', name: 'Quiz Bot' } })).status).toBe(201);
  const configured = await admin('/tenants/quizbot/providers/corp', {
    method: 'PUT',
    body: { env: { CORP_ISSUER: idp.issuer, CORP_CLIENT_ID: 'linkgate', CORP_CLIENT_SECRET: CORP_SECRET, CORP_SCOPES: 'openid profile' } },
  });
  expect(configured.status).toBe(200);
  quizbotKey = v.parse(CreatedApiKeyAnswer, await (await admin('/tenants/quizbot/api-keys', { method: 'POST', body: { name: 'bot' } })).json()).key;
  for (const tenant of ['default', 'quizbot']) {
    const created = await admin(`/tenants/${tenant}/apps`, { method: 'POST', body: { name: `${tenant} dashboard`, redirectUris: [APP_REDIRECT], postLogoutRedirectUris: ['https://app.example/'], type: 'confidential' } });
    expect(created.status).toBe(201);
    const answer = v.parse(CreatedAppAnswer, await created.json());
    apps[tenant] = { clientId: answer.clientId, clientSecret: answer.clientSecret! };
  }
});

afterAll(async () => {
  await Promise.all([idp?.close(), discord?.close(), jellyfin?.close()]);
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await database?.close();
});

describe('an OpenID Provider per tenant', () => {
  it('publishes discovery at PUBLIC_BASE_URL for the default tenant and at /t/<tenant> for another, with code + PKCE S256 and ES256', async () => {
    const [own, other] = await Promise.all([relyingParty('default'), relyingParty('quizbot')]);
    expect(own.serverMetadata().issuer).toBe(base);
    expect(other.serverMetadata().issuer).toBe(`${base}/t/quizbot`);
    for (const metadata of [own.serverMetadata(), other.serverMetadata()]) {
      expect(metadata.response_types_supported).toEqual(['code']);
      expect(metadata.code_challenge_methods_supported).toEqual(['S256']);
      expect(metadata.id_token_signing_alg_values_supported).toEqual(['ES256']);
      expect(metadata.end_session_endpoint).toMatch(/\/oidc\/session\/end$/);
    }
    expect(other.serverMetadata().token_endpoint).toBe(`${base}/t/quizbot/oidc/token`);
  });

  it('answers 404 for a tenant that does not exist', async () => {
    const answer = await fetch(`${base}/t/nosuch/.well-known/openid-configuration`);
    expect(answer.status).toBe(404);
    await answer.body?.cancel();
  });

  it('signs a person in through the upstream OpenID provider: an ID token verified against the JWKS, with sub, idp and external_id, and refresh works', async () => {
    const { config, tokens } = await signIn('default', { idp: 'corp' }, (authorize) => {
      expect(authorize.origin).toBe(idp.issuer);
      return idp.login(authorize, 'corp-person-1');
    });
    const { payload, protectedHeader } = await jwtVerify(tokens.id_token!, createRemoteJWKSet(new URL(`${base}/oidc/jwks`)), { issuer: base, audience: apps.default!.clientId });
    expect(protectedHeader.alg).toBe('ES256');
    expect(payload.sub).toMatch(/^usr_[A-Za-z0-9_-]{22}$/);
    expect(payload.idp).toBe('corp');
    expect(payload.external_id).toBe('corp-person-1');
    expect(payload.name).toBe('Test User corp-person-1');

    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!);
    expect(refreshed.access_token).not.toBe(tokens.access_token);
    expect(refreshed.claims()?.sub).toBe(payload.sub);
    expect(refreshed.claims()?.idp).toBe('corp');

    // The same account signs in again: the same user.
    const again = await signIn('default', { idp: 'corp' }, (authorize) => idp.login(authorize, 'corp-person-1'));
    expect(again.tokens.claims()?.sub).toBe(payload.sub);
  });

  it('signs a person in with Discord: sub is the Discord user id, and the bot API then shows that user\'s Discord link', async () => {
    const { tokens } = await signIn('default', { idp: 'discord' }, (authorize) => discord.approve(atFake(authorize, discord.origin), '80351110224678912'));
    const claims = tokens.claims()!;
    expect(claims.sub).toBe('80351110224678912');
    expect(claims.idp).toBe('discord');
    expect(claims.external_id).toBe('80351110224678912');
    expect(claims.name).toBe('Nelly');
    const link = await gateway.api('/users/80351110224678912/links/discord');
    expect(link.status).toBe(200);
    expect(await link.json()).toMatchObject({ userId: '80351110224678912', provider: 'discord', externalId: '80351110224678912', externalName: 'Nelly', status: 'active' });
  });

  it('ends the sign-in when the account is unlinked: its refresh token stops working', async () => {
    const { config, tokens } = await signIn('default', { idp: 'corp' }, (authorize) => idp.login(authorize, 'corp-person-5'));
    const sub = tokens.claims()!.sub;
    expect((await gateway.api(`/users/${sub}/links/corp`, { method: 'DELETE' })).status).toBe(204);
    await expect(client.refreshTokenGrant(config, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  it('shows a chooser of the tenant\'s providers without idp=, and a choice continues at that provider', async () => {
    const config = await relyingParty('default');
    const authorization = client.buildAuthorizationUrl(config, {
      redirect_uri: APP_REDIRECT,
      scope: 'openid',
      code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
    });
    const browser = newBrowser();
    const first = await browser.get(authorization, { follow: false });
    const interaction = new URL(first.headers.get('location')!, base);
    expect(interaction.pathname).toMatch(/^\/oidc\/interaction\/[A-Za-z0-9_-]+$/);
    const page = await browser.get(interaction);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'nonce-/);
    const html = await page.text();
    expect(html).toContain('Sign in to default dashboard');
    expect(html).toContain('Continue with Corp SSO');
    expect(html).toContain('Continue with Discord');
    const chosen = await browser.post(interaction.pathname, { provider: 'corp' }, { follow: false });
    expect(chosen.status).toBe(303);
    expect(new URL(chosen.headers.get('location')!).origin).toBe(idp.issuer);

    // Another browser (no interaction cookie) cannot use this sign-in.
    const stranger = await newBrowser().post(interaction.pathname, { provider: 'corp' }, { follow: false });
    expect(stranger.status).toBe(400);
    expect(await stranger.text()).toContain('sign_in_expired');
  });

  it('signs a person in with Jellyfin\'s password form, rendered by the gateway, and back to the app', async () => {
    // No redirect upstream: the gateway's own page for the flow, whose wait step offers the password form.
    const config = await relyingParty('default');
    const codeVerifier = client.randomPKCECodeVerifier();
    const authorization = client.buildAuthorizationUrl(config, { redirect_uri: APP_REDIRECT, scope: 'openid profile', code_challenge: await client.calculatePKCECodeChallenge(codeVerifier), code_challenge_method: 'S256', idp: 'jellyfin' });
    const browser = newBrowser();
    let url = new URL(authorization);
    while (!url.pathname.startsWith('/oauth/jellyfin/continue')) url = new URL((await browser.get(url, { follow: false })).headers.get('location')!, base);
    const waiting = await (await browser.get(url)).text();
    const state = /name="state" value="([^"]+)"/.exec(waiting)![1]!;
    expect(await (await browser.post('/oauth/jellyfin/callback', { state, linkgate_action: 'password' })).text()).toContain('Sign in to Jellyfin');
    const done = await browser.post('/oauth/jellyfin/callback', { state, username: 'Ada', password: JELLYFIN_PASSWORD }, { follow: false });
    expect(done.status).toBe(303);
    const back = await follow(browser, new URL(done.headers.get('location')!, base));
    expect(back.origin + back.pathname).toBe(APP_REDIRECT);
    const granted = await client.authorizationCodeGrant(config, back, { pkceCodeVerifier: codeVerifier });
    const claims = granted.claims()!;
    expect(claims.idp).toBe('jellyfin');
    expect(claims.name).toBe('Ada');
    expect(claims.sub).toMatch(/^usr_/);
    expect((await gateway.api(`/users/${claims.sub}/links/jellyfin`)).status).toBe(200);
  });

  it('signs a person in with Jellyfin Quick Connect: the waiting page\'s poll sends it back to the app', async () => {
    const config = await relyingParty('default');
    const codeVerifier = client.randomPKCECodeVerifier();
    const authorization = client.buildAuthorizationUrl(config, { redirect_uri: APP_REDIRECT, scope: 'openid', code_challenge: await client.calculatePKCECodeChallenge(codeVerifier), code_challenge_method: 'S256', idp: 'jellyfin' });
    const browser = newBrowser();
    let url = new URL(authorization);
    while (!url.pathname.startsWith('/oauth/jellyfin/continue')) url = new URL((await browser.get(url, { follow: false })).headers.get('location')!, base);
    const waiting = await (await browser.get(url)).text();
    const state = /name="state" value="([^"]+)"/.exec(waiting)![1]!;
    jellyfin.approve(/class="code"[^>]*>(\d{6})</.exec(waiting)![1]!, JELLYFIN_USER);
    const polled = (await (await browser.get(`/oauth/jellyfin/poll?state=${encodeURIComponent(state)}`)).json()) as { status: string; returnTo: string };
    expect(polled.status).toBe('linked');
    const back = await follow(browser, polled.returnTo);
    expect(back.origin + back.pathname).toBe(APP_REDIRECT);
    const granted = await client.authorizationCodeGrant(config, back, { pkceCodeVerifier: codeVerifier });
    expect(granted.claims()).toMatchObject({ idp: 'jellyfin' });
  });

  it('gives an app with subject "external" the provider\'s account id as sub', async () => {
    const created = v.parse(CreatedAppAnswer, await (await admin('/tenants/default/apps', { method: 'POST', body: { name: 'Atlas', redirectUris: [APP_REDIRECT], type: 'confidential', subject: 'external' } })).json());
    const saved = apps.default!;
    apps.default = { clientId: created.clientId, clientSecret: created.clientSecret! };
    try {
      const { tokens, config } = await signIn('default', { idp: 'corp' }, (authorize) => idp.login(authorize, 'corp-person-3'));
      expect(tokens.claims()).toMatchObject({ sub: 'corp-person-3', idp: 'corp', external_id: 'corp-person-3' });
      expect((await client.refreshTokenGrant(config, tokens.refresh_token!)).claims()?.sub).toBe('corp-person-3');
    } finally {
      apps.default = saved;
    }
  });

  it('signs out (RP-initiated logout): the next sign-in asks again', async () => {
    const { config, tokens, browser } = await signIn('default', { idp: 'corp' }, (authorize) => idp.login(authorize, 'corp-person-4'));
    const again = () =>
      client.buildAuthorizationUrl(config, { redirect_uri: APP_REDIRECT, scope: 'openid', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' });
    // Signed in: straight back to the app.
    expect((await follow(browser, again())).origin + (await follow(browser, again())).pathname).toBe(APP_REDIRECT);

    const logout = await browser.get(client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: 'https://app.example/' }), { follow: false });
    expect(logout.status).toBe(200);
    // oidc-provider writes this page itself; it carries our page headers all the same.
    expect(logout.headers.get('content-security-policy')).toMatch(/style-src 'nonce-[^']+'.*frame-ancestors 'none'/);
    expect(logout.headers.get('cache-control')).toBe('no-store');
    const page = await logout.text();
    const action = /<form[^>]*action="([^"]+)"/.exec(page)![1]!;
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(page)![1]!;
    const confirmed = await browser.post(new URL(action, base).pathname, { xsrf, logout: 'yes' }, { follow: false });
    expect(confirmed.status).toBe(303);
    expect(confirmed.headers.get('location')).toBe('https://app.example/');
    // Signed out: the app's next request lands on the chooser.
    const interaction = await follow(browser, again()).catch((error: unknown) => error);
    expect(String(interaction)).toMatch(/expected a redirect from \/oidc\/interaction\//);
  });

  it('keeps tenants apart: a second tenant\'s sign-in makes its own user, and its tokens do not verify against the default tenant\'s JWKS', async () => {
    const { tokens } = await signIn('quizbot', { idp: 'corp' }, (authorize) => idp.login(authorize, 'corp-person-2'));
    const idToken = tokens.id_token!;
    const own = await jwtVerify(idToken, createLocalJWKSet(await jwksOf(`${base}/t/quizbot`)), { issuer: `${base}/t/quizbot` });
    expect(own.payload.idp).toBe('corp');
    await expect(jwtVerify(idToken, createLocalJWKSet(await jwksOf(base)))).rejects.toThrow();
    const defaults = await signIn('default', { idp: 'corp' }, (authorize) => idp.login(authorize, 'corp-person-2'));
    await expect(jwtVerify(defaults.tokens.id_token!, createLocalJWKSet(await jwksOf(`${base}/t/quizbot`)))).rejects.toThrow();
    // Its bot sees its user's link; the default tenant's bot does not.
    const sub = String(own.payload.sub);
    const mine = await gateway.app.request(`/api/v1/users/${sub}/links/corp`, { headers: { authorization: `Bearer ${quizbotKey}` } });
    expect(mine.status).toBe(200);
    expect((await gateway.api(`/users/${sub}/links/corp`)).status).toBe(404);
  });

  it('takes a tenant\'s own user provider: with it, the account id is the user id', async () => {
    expect((await admin('/tenants/default', { method: 'PATCH', body: { userProvider: 'corp' } })).status).toBe(400);
    const bad = await admin('/tenants/quizbot', { method: 'PATCH', body: { userProvider: 'Not An Id' } });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toContain('userProvider');
    const patched = await admin('/tenants/quizbot', { method: 'PATCH', body: { userProvider: 'corp' } });
    expect(v.parse(TenantDetailAnswer, await patched.json()).userProvider).toBe('corp');
    try {
      const { tokens } = await signIn('quizbot', { idp: 'corp' }, (authorize) => idp.login(authorize, 'corp-person-6'));
      expect(tokens.claims()).toMatchObject({ sub: 'corp-person-6', idp: 'corp', external_id: 'corp-person-6' });
    } finally {
      expect((await admin('/tenants/quizbot', { method: 'PATCH', body: { userProvider: null } })).status).toBe(200);
    }
  });

  it('labels its requests\' metrics with the route pattern of the issuer\'s endpoints', async () => {
    const text = await (await gateway.app.request('/metrics', { headers: { authorization: `Bearer ${API_KEY}` } })).text();
    expect(text).toMatch(/linkgate_http_request_duration_seconds_count\{method="GET",route="\/\.well-known\/openid-configuration",status="200"\} \d+/);
    expect(text).toMatch(/linkgate_http_request_duration_seconds_count\{method="GET",route="\/t\/:tenant\/\.well-known\/openid-configuration",status="200"\} \d+/);
    expect(text).toMatch(/linkgate_http_request_duration_seconds_count\{method="POST",route="\/oidc\/\*",status="200"\} \d+/);
    expect(text).not.toContain('route="(no route)",status="200"');
  });

  it('logs no token, code, app secret or upstream secret', async () => {
    expect(issued.length).toBeGreaterThan(8);
    const secrets = [...issued, ...Object.values(apps).map((app) => app.clientSecret), CORP_SECRET, DISCORD.DISCORD_CLIENT_SECRET, JELLYFIN_PASSWORD];
    for (const line of gateway.logs) for (const secret of secrets) expect(line).not.toContain(secret);
  });

  it('stores no token, code or key in the clear', async () => {
    const rows = await database.db.select().from(oidcPayloads);
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) expect(row.payload).toMatch(/^v1\./);
    for (const key of await database.db.select().from(oidcSigningKeys)) {
      expect(key.privateJwk).toMatch(/^v1\./);
      expect(key.publicJwk).not.toHaveProperty('d');
    }
    for (const app of await database.db.select().from(oidcApps)) expect(app.secret).toMatch(/^v1\./);
  });
});

describe('apps through the operator API', () => {
  it('lists apps without their secrets, and a deleted app can no longer sign anyone in', async () => {
    const created = v.parse(CreatedAppAnswer, await (await admin('/tenants/default/apps', { method: 'POST', body: { name: 'Web', redirectUris: ['http://127.0.0.1:9999/cb'], type: 'public', providers: ['discord'] } })).json());
    expect(created.clientSecret).toBeUndefined();
    const listed = v.parse(AppsAnswer, await (await admin('/tenants/default/apps')).json());
    expect(listed.apps.find((app) => app.clientId === created.clientId)).toMatchObject({ name: 'Web', type: 'public', providers: ['discord'], subject: 'user', firstParty: true });
    expect(JSON.stringify(listed)).not.toContain(apps.default!.clientSecret);
    expect((await admin(`/tenants/default/apps/${created.clientId}`, { method: 'DELETE' })).status).toBe(204);
    expect((await admin(`/tenants/default/apps/${created.clientId}`, { method: 'DELETE' })).status).toBe(404);
    const authorize = await fetch(`${base}/oidc/auth?client_id=${created.clientId}&response_type=code&scope=openid&redirect_uri=${encodeURIComponent('http://127.0.0.1:9999/cb')}`, { redirect: 'manual' });
    expect(authorize.status).toBe(400);
    await authorize.body?.cancel();
    // oidc-provider wrote the answer itself; the request's log line still says what it was.
    expect(gateway.logs.map((line) => JSON.parse(line) as { msg: string; route?: string; status?: number }).some((line) => line.msg === 'request' && line.route === '/oidc/*' && line.status === 400)).toBe(true);
  });

  it('refuses a public app\'s authorization request without PKCE', async () => {
    const created = v.parse(CreatedAppAnswer, await (await admin('/tenants/default/apps', { method: 'POST', body: { name: 'SPA', redirectUris: ['http://127.0.0.1:9999/cb'], type: 'public' } })).json());
    const authorize = await fetch(`${base}/oidc/auth?client_id=${created.clientId}&response_type=code&scope=openid&redirect_uri=${encodeURIComponent('http://127.0.0.1:9999/cb')}`, { redirect: 'manual' });
    expect(authorize.status).toBe(303);
    const location = new URL(authorize.headers.get('location')!);
    expect(location.searchParams.get('error')).toBe('invalid_request');
    expect(location.searchParams.get('error_description')).toMatch(/PKCE/);
  });

  it.each([
    [{ redirectUris: [APP_REDIRECT], type: 'confidential' }, 'name'],
    [{ name: 'x', type: 'confidential' }, 'redirectUris'],
    [{ name: 'x', redirectUris: [], type: 'confidential' }, 'redirectUris'],
    [{ name: 'x', redirectUris: ['http://app.example/cb'], type: 'confidential' }, 'redirectUris'],
    [{ name: 'x', redirectUris: ['https://app.example/cb#frag'], type: 'confidential' }, 'redirectUris'],
    [{ name: 'x', redirectUris: [APP_REDIRECT], type: 'spa' }, 'type'],
    [{ name: 'x', redirectUris: [APP_REDIRECT], type: 'public', subject: 'email' }, 'subject'],
    [{ name: 'x', redirectUris: [APP_REDIRECT], type: 'public', providers: ['nosuch'] }, 'providers'],
    [{ name: 'x', redirectUris: [APP_REDIRECT], type: 'public', firstParty: 'no' }, 'firstParty'],
    [{ name: 'x', redirectUris: [APP_REDIRECT], type: 'public', deviceFlow: 'yes' }, 'deviceFlow'],
    [{ name: 'x', redirectUris: [APP_REDIRECT], type: 'public', postLogoutRedirectUris: ['nope'] }, 'postLogoutRedirectUris'],
    [{ name: 'x', redirectUris: [APP_REDIRECT], type: 'public', legacyJwtSecret: 'too-short-for-hs256' }, 'legacyJwtSecret'],
    [{ name: 'x', redirectUris: [APP_REDIRECT], type: 'public', legacyJwtSecret: 42 }, 'legacyJwtSecret'],
  ])('refuses %j with a 400 naming %s', async (body, field) => {
    const answer = await admin('/tenants/default/apps', { method: 'POST', body });
    expect(answer.status).toBe(400);
    const { error } = (await answer.json()) as { error: { code: string; message: string } };
    expect(error.code).toBe('bad_request');
    expect(error.message).toContain(field);
  });

  it('answers 404 for a tenant that does not exist', async () => {
    expect((await admin('/tenants/nosuch/apps')).status).toBe(404);
  });

  it('deletes a tenant\'s apps, keys and OpenID Provider with the tenant', async () => {
    expect((await admin('/tenants', { method: 'POST', body: { id: 'gone', name: 'Gone' } })).status).toBe(201);
    expect((await admin('/tenants/gone/apps', { method: 'POST', body: { name: 'x', redirectUris: [APP_REDIRECT], type: 'public' } })).status).toBe(201);
    const jwks = await fetch(`${base}/t/gone/oidc/jwks`);
    expect(jwks.status).toBe(200);
    expect(((await jwks.json()) as JSONWebKeySet).keys).toHaveLength(1);
    expect((await admin('/tenants/gone', { method: 'DELETE' })).status).toBe(204);
    const after = await fetch(`${base}/t/gone/.well-known/openid-configuration`);
    expect(after.status).toBe(404);
    await after.body?.cancel();
    expect((await database.db.select().from(oidcSigningKeys)).some((key) => key.tenant === 'gone')).toBe(false);
    expect((await database.db.select().from(oidcApps)).some((app) => app.tenant === 'gone')).toBe(false);
  });
});

describe('rotating a tenant\'s signing keys', () => {
  const TENANT = 'rotating';
  const kidOf = (idToken: string) => v.parse(v.object({ kid: v.string() }), JSON.parse(Buffer.from(idToken.split('.')[0]!, 'base64url').toString())).kid;
  const keys = async () => v.parse(SigningKeysAnswer, await (await admin(`/tenants/${TENANT}/signing-keys`)).json()).signingKeys;
  const published = async () => (await jwksOf(`${base}/t/${TENANT}`)).keys.map((key) => key.kid);
  const signInHere = async (person: string) => (await signIn(TENANT, { idp: 'corp' }, (authorize) => idp.login(authorize, person))).tokens.id_token!;
  /** Verifies against the JWKS as it is now (no cache between the calls). */
  const verify = (idToken: string) => jwtVerify(idToken, createRemoteJWKSet(new URL(`${base}/t/${TENANT}/oidc/jwks`)), { issuer: `${base}/t/${TENANT}`, audience: apps[TENANT]!.clientId });

  afterAll(() => {
    clockOffset = 0;
  });

  it('publishes the next key before it signs, signs with it from then on, and keeps verifying the old key\'s tokens until it is retired', async () => {
    expect((await admin('/tenants', { method: 'POST', body: { id: TENANT, name: 'Rotating' } })).status).toBe(201);
    expect((await admin(`/tenants/${TENANT}/providers/corp`, { method: 'PUT', body: { env: { CORP_ISSUER: idp.issuer, CORP_CLIENT_ID: 'linkgate', CORP_CLIENT_SECRET: CORP_SECRET, CORP_SCOPES: 'openid profile' } } })).status).toBe(200);
    const created = v.parse(CreatedAppAnswer, await (await admin(`/tenants/${TENANT}/apps`, { method: 'POST', body: { name: 'Rotating', redirectUris: [APP_REDIRECT], type: 'confidential' } })).json());
    apps[TENANT] = { clientId: created.clientId, clientSecret: created.clientSecret! };
    expect(await keys()).toEqual([]); // a key is made on the first sign-in

    const first = await signInHere('rotating-person-1');
    const [a] = await keys();
    expect(a).toMatchObject({ state: 'signing', retiredAt: null, expiresAt: null });
    expect(kidOf(first)).toBe(a!.kid);

    // The next key: published at once, signing ten minutes later.
    const rotated = await admin(`/tenants/${TENANT}/signing-keys`, { method: 'POST', body: { publishSeconds: 600 } });
    expect(rotated.status).toBe(201);
    const b = v.parse(SigningKeyAnswer, await rotated.json());
    expect(b.state).toBe('next');
    expect(Date.parse(b.signsFrom) - Date.now()).toBeGreaterThan(590_000);
    expect(await published()).toEqual([a!.kid, b.kid]);
    expect(kidOf(await signInHere('rotating-person-2'))).toBe(a!.kid);
    // One rotation at a time.
    const again = await admin(`/tenants/${TENANT}/signing-keys`, { method: 'POST', body: {} });
    expect(again.status).toBe(409);
    expect(await again.json()).toMatchObject({ error: { code: 'key_rotation_pending' } });

    // Ten minutes on: the next key signs, the old one is retired and still published, and its token still verifies.
    clockOffset = 601_000;
    const second = await signInHere('rotating-person-3');
    expect(kidOf(second)).toBe(b.kid);
    expect(await published()).toEqual([b.kid, a!.kid]);
    expect((await keys()).map((k) => [k.kid, k.state])).toEqual([
      [a!.kid, 'retired'],
      [b.kid, 'signing'],
    ]);
    expect((await verify(first)).payload.sub).toMatch(/^usr_/);
    expect((await verify(second)).payload.sub).toMatch(/^usr_/);

    // An ID token's lifetime after it stopped signing, the old key leaves the JWKS.
    clockOffset = 601_000 + 3600_000 + 300_000 + 1000;
    expect(await published()).toEqual([b.kid]);
    await expect(verify(first)).rejects.toMatchObject({ code: 'ERR_JWKS_NO_MATCHING_KEY' });
  });

  it('refuses a bad publishSeconds with a code, and a tenant that does not exist with 404', async () => {
    for (const publishSeconds of [-1, 1.5, '60', 31 * 24 * 3600]) {
      const answer = await admin(`/tenants/${TENANT}/signing-keys`, { method: 'POST', body: { publishSeconds } });
      expect(answer.status).toBe(400);
      expect(await answer.json()).toMatchObject({ error: { code: 'bad_request', message: expect.stringContaining('publishSeconds') } });
    }
    expect((await admin('/tenants/nosuch/signing-keys')).status).toBe(404);
  });
});
