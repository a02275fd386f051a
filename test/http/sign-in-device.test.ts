/**
 * Sign-in (issue #20): the device authorization grant (RFC 8628) for CLIs
 * and bots, and the consent page of third-party apps. The app is panva's
 * openid-client; the person is a cookie-keeping browser on the real
 * listener, signing in upstream at the in-process OpenID provider.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import * as client from 'openid-client';
import * as v from 'valibot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { AppsAnswer, CreatedAppAnswer } from '../../src/http/admin.ts';
import { startTestIdp, type TestIdp } from '../fakes/oidc-idp.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, reroute, type TestGateway } from '../helpers/gateway.ts';
import { authorizationRequest } from '../helpers/openid.ts';

const ADMIN_KEY = 'admin_0123456789abcdefghijklmnopqrstuvwxyz';
const CORP_SECRET = 'corp-client-secret-0123456789abcdef';
const APP_REDIRECT = 'https://app.example/callback';
/** The second gateway's device codes last this long: the expiry test waits for it. */
const SHORT_TTL_SECONDS = 2;

interface Listening {
  base: string;
  gateway: TestGateway;
  server: Server;
}

let database: Database;
let idp: TestIdp;
let main: Listening;
let short: Listening;
let cli: { clientId: string };
let thirdParty: { clientId: string; clientSecret: string };

/** A loopback listener whose handler comes later: the gateway needs its address as PUBLIC_BASE_URL. */
async function openListener() {
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.writeHead(503).end();
  const server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { base, server, serve: (next: typeof handler) => (handler = next) };
}

async function startGateway(listener: Awaited<ReturnType<typeof openListener>>, env: Record<string, string>): Promise<Listening> {
  const gateway = await createTestGateway(database, {
    env: {
      PUBLIC_BASE_URL: listener.base,
      LINKGATE_ADMIN_KEYS: ADMIN_KEY,
      OIDC_PROVIDERS: 'corp',
      CORP_ISSUER: idp.issuer,
      CORP_CLIENT_ID: 'linkgate',
      CORP_CLIENT_SECRET: CORP_SECRET,
      CORP_SCOPES: 'openid profile',
      CORP_DISPLAY_NAME: 'Corp SSO',
      ...env,
    },
    fetch: reroute({ [idp.issuer]: idp.issuer }),
  });
  listener.serve(getRequestListener(gateway.app.fetch));
  return { base: listener.base, gateway, server: listener.server };
}

const admin = (path: string, body?: unknown) =>
  main.gateway.app.request(`/api/admin/v1${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });

/**
 * The CLI polls for its tokens. The gateway sends no `interval`, so a real
 * client waits RFC 8628's default 5 s between polls; this one waits 0.2 s,
 * which the gateway allows (it never answers `slow_down`), to keep the file
 * from spending most of its time asleep.
 */
const poll = (config: client.Configuration, device: client.DeviceAuthorizationResponse, options?: { signal?: AbortSignal }) =>
  client.pollDeviceAuthorizationGrant(config, { ...device, interval: 0.2 }, undefined, options);

const browserAt = (base: string) => new TestBrowser((path, init) => fetch(`${base}${path}`, { ...init, redirect: 'manual' }));

/** The CLI app as openid-client sees it: public, no secret. */
const cliConfig = (base: string) => client.discovery(new URL(base), cli.clientId, undefined, client.None(), { execute: [client.allowInsecureRequests] });

/** Follows redirects on the gateway until one leaves it (to the IdP or the app) or a page answers. */
async function follow(browser: TestBrowser, base: string, start: string | URL): Promise<{ url: URL; page?: Response }> {
  let url = new URL(start, base);
  for (let hop = 0; hop < 12; hop++) {
    if (url.origin !== base) return { url };
    const answer = await browser.get(url, { follow: false });
    const location = answer.headers.get('location');
    if (answer.status < 300 || answer.status >= 400 || !location) return { url, page: answer };
    url = new URL(location, url);
  }
  throw new Error('too many redirects');
}

const field = (html: string, name: string) => new RegExp(`name="${name}"[^>]*value="([^"]*)"`).exec(html)?.[1];
const actionOf = (html: string) => new URL(/<form method="post" action="([^"]+)"/.exec(html)![1]!.replaceAll('&amp;', '&'), 'http://gateway.invalid');

/** The person opens `verification_uri_complete`, checks the code and presses Continue: the confirm page. */
async function enterCode(browser: TestBrowser, base: string, verificationUriComplete: string) {
  const input = await browser.get(new URL(verificationUriComplete).pathname + new URL(verificationUriComplete).search);
  expect(input.status).toBe(200);
  const html = await input.text();
  const xsrf = field(html, 'xsrf')!;
  return browser.post(actionOf(html).pathname, { xsrf, user_code: field(html, 'user_code')! });
}

beforeAll(async () => {
  database = await createTestDatabase();
  const listeners = [await openListener(), await openListener()] as const;
  idp = await startTestIdp({ redirectUris: listeners.map((l) => `${l.base}/oauth/corp/callback`), clientId: 'linkgate', clientSecret: CORP_SECRET });
  main = await startGateway(listeners[0], {});
  // The same database, the same tenant and apps: only its device codes expire sooner.
  short = await startGateway(listeners[1], { LINKGATE_DEVICE_CODE_TTL_SECONDS: String(SHORT_TTL_SECONDS) });
}, 30_000);

afterAll(async () => {
  await idp?.close();
  for (const listening of [main, short]) if (listening) await new Promise<void>((resolve) => listening.server.close(() => resolve()));
  await database?.close();
});

describe('the device authorization grant (RFC 8628)', () => {
  it('creates a CLI app with no redirect URI that may use the device grant', async () => {
    const created = await admin('/tenants/default/apps', { name: 'Quiz CLI', type: 'public', deviceFlow: true });
    expect(created.status).toBe(201);
    cli = v.parse(CreatedAppAnswer, await created.json());
    expect(cli).not.toHaveProperty('clientSecret');
    const listed = v.parse(AppsAnswer, await (await admin('/tenants/default/apps')).json());
    expect(listed.apps.find((app) => app.clientId === cli.clientId)).toMatchObject({ name: 'Quiz CLI', type: 'public', redirectUris: [], deviceFlow: true, firstParty: true });
    const metadata = (await cliConfig(main.base)).serverMetadata();
    expect(metadata.device_authorization_endpoint).toBe(`${main.base}/oidc/device/auth`);
    expect(metadata.grant_types_supported).toContain('urn:ietf:params:oauth:grant-type:device_code');
  });
});

describe('a device signs in', () => {
  it('gets tokens once the person enters the code, confirms and signs in: the ID token verifies against the JWKS with the user as sub', async () => {
    const config = await cliConfig(main.base);
    const device = await client.initiateDeviceAuthorization(config, { scope: 'openid profile' });
    expect(device.user_code).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    expect(device.verification_uri).toBe(`${main.base}/oidc/device`);
    expect(device.expires_in).toBe(600);
    // The CLI polls while the person is busy in the browser.
    const polled = poll(config, device);

    const browser = browserAt(main.base);
    const input = await browser.get(new URL(device.verification_uri_complete!).pathname + new URL(device.verification_uri_complete!).search);
    expect(input.headers.get('content-security-policy')).toMatch(/style-src 'nonce-[^']+'.*frame-ancestors 'none'/);
    expect(input.headers.get('x-frame-options')).toBe('DENY');
    const inputHtml = await input.text();
    // Prefilled, not submitted: the person checks it and presses Continue.
    expect(inputHtml).toContain('Connect a device');
    expect(field(inputHtml, 'user_code')).toBe(device.user_code);
    const confirm = await browser.post(actionOf(inputHtml).pathname, { xsrf: field(inputHtml, 'xsrf')!, user_code: device.user_code });
    const confirmHtml = await confirm.text();
    expect(confirmHtml).toContain('Sign in to Quiz CLI on your device?');
    expect(confirmHtml).toContain(device.user_code);
    const confirmed = await browser.post(actionOf(confirmHtml).pathname, { xsrf: field(confirmHtml, 'xsrf')!, user_code: device.user_code, confirm: 'yes' }, { follow: false });
    expect(confirmed.status).toBe(303);

    // The same chooser as an app's sign-in, then the provider.
    const chooser = await follow(browser, main.base, confirmed.headers.get('location')!);
    expect(chooser.url.pathname).toMatch(/^\/oidc\/interaction\//);
    expect(await chooser.page!.text()).toContain('Continue with Corp SSO');
    const chosen = await browser.post(chooser.url.pathname, { provider: 'corp' }, { follow: false });
    const callback = await idp.login(new URL(chosen.headers.get('location')!), 'device-person-1');
    const done = await follow(browser, main.base, callback);
    expect(done.url.pathname).toMatch(/^\/oidc\/device\/[A-Za-z0-9_-]+$/);
    expect(done.page!.status).toBe(200);
    const doneHtml = await done.page!.text();
    expect(doneHtml).toContain('Device connected');
    expect(doneHtml).toContain('Quiz CLI');

    const tokens = await polled;
    const { payload } = await jwtVerify(tokens.id_token!, createRemoteJWKSet(new URL(`${main.base}/oidc/jwks`)), { issuer: main.base, audience: cli.clientId });
    expect(payload.sub).toMatch(/^usr_/);
    expect(payload).toMatchObject({ idp: 'corp', external_id: 'device-person-1', name: 'Test User device-person-1' });
    // The person is a Linkgate user with that link, as for any sign-in; and the CLI can refresh.
    expect((await main.gateway.api(`/users/${String(payload.sub)}/links/corp`)).status).toBe(200);
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!);
    expect(refreshed.claims()?.sub).toBe(payload.sub);

    // The same browser, signed in to Linkgate now, confirms another device's code: it is asked who signs in again.
    const next = await client.initiateDeviceAuthorization(config, { scope: 'openid' });
    const nextConfirm = await (await enterCode(browser, main.base, next.verification_uri_complete!)).text();
    const nextConfirmed = await browser.post(actionOf(nextConfirm).pathname, { xsrf: field(nextConfirm, 'xsrf')!, user_code: next.user_code, confirm: 'yes' }, { follow: false });
    const asked = await follow(browser, main.base, nextConfirmed.headers.get('location')!);
    expect(asked.url.pathname).toMatch(/^\/oidc\/interaction\//);
    expect(await asked.page!.text()).toContain('Continue with Corp SSO');
  }, 30_000);

  it('ends an unapproved code with expired_token', async () => {
    const config = await cliConfig(short.base);
    const device = await client.initiateDeviceAuthorization(config, { scope: 'openid' });
    expect(device.expires_in).toBe(SHORT_TTL_SECONDS);
    // openid-client would give up by itself at expires_in: poll past it, to hear the server say so.
    const error = await poll(config, device, { signal: AbortSignal.timeout(20_000) }).catch((cause: unknown) => cause);
    expect(error).toBeInstanceOf(client.ResponseBodyError);
    expect((error as client.ResponseBodyError).error).toBe('expired_token');

    // The person who arrives late reads that the code has expired.
    const browser = browserAt(short.base);
    const late = await (await enterCode(browser, short.base, device.verification_uri_complete!)).text();
    expect(late).toContain('That code has expired');
    expect(late).toContain('Start the sign-in again on your device');
  }, 30_000);

  it('tells the device access_denied when the person presses Cancel', async () => {
    const config = await cliConfig(main.base);
    const device = await client.initiateDeviceAuthorization(config, { scope: 'openid' });
    const polled = poll(config, device).catch((cause: unknown) => cause);
    const browser = browserAt(main.base);
    const confirmHtml = await (await enterCode(browser, main.base, device.verification_uri_complete!)).text();
    const cancelled = await browser.post(actionOf(confirmHtml).pathname, { xsrf: field(confirmHtml, 'xsrf')!, user_code: device.user_code, abort: 'yes' });
    expect(await cancelled.text()).toContain('Sign-in cancelled');
    const error = await polled;
    expect(error).toBeInstanceOf(client.ResponseBodyError);
    expect((error as client.ResponseBodyError).error).toBe('access_denied');
  }, 30_000);

  it('says so when the code is unknown, and keeps the form to try again', async () => {
    const browser = browserAt(main.base);
    const input = await (await browser.get('/oidc/device')).text();
    expect(field(input, 'user_code')).toBeUndefined();
    const wrong = await browser.post(actionOf(input).pathname, { xsrf: field(input, 'xsrf')!, user_code: 'BCDF-GHJK' });
    const html = await wrong.text();
    expect(html).toContain('That code is not right');
    expect(html).toContain('aria-invalid="true"');
    expect(field(html, 'user_code')).toBe('BCDF-GHJK');
    // A stale form (its secret replaced since): a fresh one.
    const stale = await (await browser.post(actionOf(input).pathname, { xsrf: 'f'.repeat(48), user_code: 'BCDF-GHJK' })).text();
    expect(stale).toContain('Please enter the code again');
    expect(field(stale, 'xsrf')).toMatch(/^[0-9a-f]{48}$/);
    // A form from another browser (no session, no xsrf) starts nothing.
    const forged = await browserAt(main.base).post(actionOf(input).pathname, { xsrf: field(input, 'xsrf')!, user_code: 'BCDF-GHJK' });
    expect(forged.status).toBe(400);
    expect(await forged.text()).toContain('Please enter the code again');
  });

  it('limits how often one address may try codes, but not how often devices ask for them', async () => {
    const limited = await startGateway(await openListener(), { LINKGATE_BROWSER_RATE_LIMIT: '3', LINKGATE_BROWSER_RATE_WINDOW_SECONDS: '600' });
    try {
      for (let i = 0; i < 5; i++) {
        const asked = await fetch(`${limited.base}/oidc/device/auth`, { method: 'POST', body: new URLSearchParams({ client_id: cli.clientId, scope: 'openid' }) });
        expect(asked.status).toBe(200);
        await asked.body?.cancel();
      }
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) {
        const tried = await fetch(`${limited.base}/oidc/device`, { method: 'POST', body: new URLSearchParams({ user_code: `BCDF-GHJ${'KLMN'[i]}` }) });
        statuses.push(tried.status);
        await tried.body?.cancel();
      }
      expect(statuses.slice(0, 3)).not.toContain(429);
      expect(statuses[3]).toBe(429);
    } finally {
      await new Promise<void>((resolve) => limited.server.close(() => resolve()));
    }
  });

  it('refuses the device grant to an app that was not allowed it', async () => {
    const web = v.parse(CreatedAppAnswer, await (await admin('/tenants/default/apps', { name: 'Web', type: 'public', redirectUris: ['http://127.0.0.1:9999/cb'] })).json());
    const config = await client.discovery(new URL(main.base), web.clientId, undefined, client.None(), { execute: [client.allowInsecureRequests] });
    await expect(client.initiateDeviceAuthorization(config, { scope: 'openid' })).rejects.toMatchObject({ error: 'invalid_request', error_description: expect.stringMatching(/device_code is not allowed/) });
  });

  it('answers a bad request from a browser with our error page and its headers', async () => {
    const answer = await fetch(`${main.base}/oidc/auth?client_id=app_nosuch&response_type=code&scope=openid`, { headers: { accept: 'text/html' } });
    expect(answer.status).toBe(400);
    expect(answer.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
    expect(answer.headers.get('x-frame-options')).toBe('DENY');
    expect(await answer.text()).toContain('Sign-in could not start');
  });

  it('refuses an app with neither redirect URIs nor the device grant', async () => {
    const answer = await admin('/tenants/default/apps', { name: 'Nothing', type: 'public' });
    expect(answer.status).toBe(400);
    expect(((await answer.json()) as { error: { message: string } }).error.message).toMatch(/redirectUris.*deviceFlow/);
  });
});

describe('a third-party app asks for consent', () => {
  const relyingParty = () =>
    client.discovery(new URL(main.base), thirdParty.clientId, undefined, client.ClientSecretBasic(thirdParty.clientSecret), { execute: [client.allowInsecureRequests] });

  /** The app sends a browser to sign in; the person signs in at the IdP as `sub`; the consent page comes next. */
  async function signInToConsent(sub: string) {
    const config = await relyingParty();
    const { url: authorization, codeVerifier, state } = await authorizationRequest(config, APP_REDIRECT, { idp: 'corp' });
    const browser = browserAt(main.base);
    const upstream = await follow(browser, main.base, authorization);
    const consent = await follow(browser, main.base, await idp.login(upstream.url, sub));
    expect(consent.url.pathname).toMatch(/^\/oidc\/interaction\/[A-Za-z0-9_-]+$/);
    return { config, codeVerifier, state, browser, consentUrl: consent.url, html: await consent.page!.text() };
  }

  it('creates a third-party app', async () => {
    const created = await admin('/tenants/default/apps', { name: 'Trivia Stats', type: 'confidential', redirectUris: [APP_REDIRECT], firstParty: false });
    expect(created.status).toBe(201);
    const answer = v.parse(CreatedAppAnswer, await created.json());
    thirdParty = { clientId: answer.clientId, clientSecret: answer.clientSecret! };
  });

  it('names the app and what it receives; Allow gives it tokens, and the next sign-in does not ask again', async () => {
    const { config, codeVerifier, state, browser, html } = await signInToConsent('consent-person-1');
    expect(html).toContain('Allow Trivia Stats to sign you in?');
    expect(html).toContain('Who you are');
    expect(html).toContain('Your name at that service');
    const allowed = await browser.post(actionOf(html).pathname, { decision: 'allow', csrf: field(html, 'csrf')! }, { follow: false });
    expect(allowed.status).toBe(303);
    const back = await follow(browser, main.base, allowed.headers.get('location')!);
    expect(back.url.origin + back.url.pathname).toBe(APP_REDIRECT);
    const tokens = await client.authorizationCodeGrant(config, back.url, { pkceCodeVerifier: codeVerifier, expectedState: state });
    expect(tokens.claims()).toMatchObject({ idp: 'corp', external_id: 'consent-person-1', name: 'Test User consent-person-1' });

    // Signed in, and the app was allowed: straight back to it.
    const again = client.buildAuthorizationUrl(config, { redirect_uri: APP_REDIRECT, scope: 'openid profile', code_challenge: await client.calculatePKCECodeChallenge(codeVerifier), code_challenge_method: 'S256' });
    const straight = await follow(browser, main.base, again);
    expect(straight.url.origin + straight.url.pathname).toBe(APP_REDIRECT);
    expect(straight.url.searchParams.get('code')).toBeTruthy();
  });

  it('sends the app access_denied on Deny', async () => {
    const { config, codeVerifier, state, browser, html } = await signInToConsent('consent-person-2');
    const denied = await browser.post(actionOf(html).pathname, { decision: 'deny', csrf: field(html, 'csrf')! }, { follow: false });
    const back = await follow(browser, main.base, denied.headers.get('location')!);
    expect(back.url.origin + back.url.pathname).toBe(APP_REDIRECT);
    expect(back.url.searchParams.get('error')).toBe('access_denied');
    await expect(client.authorizationCodeGrant(config, back.url, { pkceCodeVerifier: codeVerifier, expectedState: state })).rejects.toMatchObject({ error: 'access_denied' });
  });

  it('refuses a consent without the page\'s token, or from another browser', async () => {
    const { browser, consentUrl, html } = await signInToConsent('consent-person-3');
    const action = actionOf(html).pathname;
    const forged = await browser.post(action, { decision: 'allow', csrf: 'x'.repeat(43) }, { follow: false });
    expect(forged.status).toBe(403);
    expect(await forged.text()).toContain('csrf_failed');
    const missing = await browser.post(action, { decision: 'allow' }, { follow: false });
    expect(missing.status).toBe(400);
    const stranger = await browserAt(main.base).post(action, { decision: 'allow', csrf: field(html, 'csrf')! }, { follow: false });
    expect(stranger.status).toBe(400);
    expect(await stranger.text()).toContain('sign_in_expired');
    // Nothing was granted: the page still asks.
    expect(await (await browser.get(consentUrl)).text()).toContain('Allow Trivia Stats to sign you in?');
  });

  it('asks on a device sign-in too, and Deny ends the device\'s poll with access_denied', async () => {
    const tool = v.parse(CreatedAppAnswer, await (await admin('/tenants/default/apps', { name: 'Stats CLI', type: 'public', deviceFlow: true, firstParty: false })).json());
    const config = await client.discovery(new URL(main.base), tool.clientId, undefined, client.None(), { execute: [client.allowInsecureRequests] });
    const device = await client.initiateDeviceAuthorization(config, { scope: 'openid', idp: 'corp' });
    const polled = poll(config, device).catch((cause: unknown) => cause);
    const browser = browserAt(main.base);
    const confirmHtml = await (await enterCode(browser, main.base, device.verification_uri_complete!)).text();
    const confirmed = await browser.post(actionOf(confirmHtml).pathname, { xsrf: field(confirmHtml, 'xsrf')!, user_code: device.user_code, confirm: 'yes' }, { follow: false });
    const upstream = await follow(browser, main.base, confirmed.headers.get('location')!);
    const consent = await follow(browser, main.base, await idp.login(upstream.url, 'consent-person-4'));
    const html = await consent.page!.text();
    expect(html).toContain('Allow Stats CLI to sign you in?');
    expect(html).not.toContain('Your name at that service');
    const denied = await browser.post(actionOf(html).pathname, { decision: 'deny', csrf: field(html, 'csrf')! }, { follow: false });
    const ended = await follow(browser, main.base, denied.headers.get('location')!);
    expect(await ended.page!.text()).toContain('Sign-in cancelled');
    const error = await polled;
    expect(error).toBeInstanceOf(client.ResponseBodyError);
    expect((error as client.ResponseBodyError).error).toBe('access_denied');
  }, 30_000);
});
