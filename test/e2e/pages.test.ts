/**
 * Every page a person or an operator can see, in Chromium at phone width
 * (390 px) and desktop width: no axe-core violation, nothing wider than the
 * screen, and a screenshot of each in test/.tmp/screenshots/pages/.
 */
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { createHmac, randomBytes } from 'node:crypto';
import { startFakeDiscord, type FakeDiscord } from '../fakes/discord.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, reroute, TEST_SECRETS, type TestGateway } from '../helpers/gateway.ts';
import { inspectPage, launchChromium, listen, listenFirst, WIDTHS, type Width } from './browser.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/providers', import.meta.url));
const SHOTS = fileURLToPath(new URL('../.tmp/screenshots/pages', import.meta.url));
const ADMIN_KEY = 'admin_0123456789abcdefghijklmnopqrstuvwxyz';
const BRAND = { LINKGATE_BRAND_NAME: 'Annie Mei', LINKGATE_BRAND_COLOR: '#f5c2e7', LINKGATE_SUPPORT_URL: 'https://annie-mei.example/support' };
const DISCORD = { DISCORD_CLIENT_ID: '1100000000000000001', DISCORD_CLIENT_SECRET: 'discord-client-secret-0123456789', DISCORD_SCOPES: 'identify' };
const DISCORD_PEOPLE = { phone: '80351110224678391', desktop: '80351110224671281' } as const;

let database: Database;
let browser: Browser;
const servers: Array<{ url: string; close(): Promise<void> }> = [];
/** The `pin` form/wait fixture and AniList (branded), on a development gateway; and a production one for `/`. */
let pin: { url: string };
let branded: { url: string };
let production: { url: string };
/** A gateway with an app to sign in to (its OpenID Provider's chooser page), and that app's client id. */
let signIn: { url: string };
let appClientId: string;
/** A gateway at its own PUBLIC_BASE_URL (a device's sign-in comes back to it), with a first-party and a third-party CLI app. */
let devices: { url: string };
let deviceApps: { cli: string; thirdParty: string };
/** A redirect provider: the fake Discord, reached by the browser through a route, on a gateway at its own PUBLIC_BASE_URL. */
let discord: FakeDiscord;
let redirecting: { url: string };
/** A gateway that lets a browser open one page a minute, on a database of its own (the limiter's counts are in it). */
let limited: { url: string };
let limitedDatabase: Database;

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  database = await createTestDatabase();
  const serve = async (gateway: TestGateway) => {
    const server = await listen(gateway.app.fetch);
    servers.push(server);
    return server;
  };
  pin = await serve(await createTestGateway(database, { providersDir: FIXTURES }));
  branded = await serve(await createTestGateway(database, { env: { ANILIST_CLIENT_ID: '1', ANILIST_CLIENT_SECRET: 'x', OAUTH_CONTEXT_SIGNING_SECRET: 'bot-secret', ...BRAND } }));
  production = await serve(await createTestGateway(database, { env: { NODE_ENV: 'production', PUBLIC_BASE_URL: 'https://link.example', ...BRAND } }));
  const withApps = await createTestGateway(database, { providersDir: FIXTURES, env: { LINKGATE_ADMIN_KEYS: ADMIN_KEY } });
  signIn = await serve(withApps);
  const created = await withApps.app.request('/api/admin/v1/tenants/default/apps', {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'Quiz dashboard', redirectUris: ['https://app.example/callback'], type: 'public' }),
  });
  appClientId = ((await created.json()) as { clientId: string }).clientId;
  const deviceServer = await listenFirst();
  servers.push(deviceServer);
  const withDevices = await createTestGateway(database, { providersDir: FIXTURES, env: { LINKGATE_ADMIN_KEYS: ADMIN_KEY, PUBLIC_BASE_URL: deviceServer.url } });
  deviceServer.serve(withDevices.app.fetch);
  devices = deviceServer;
  const createApp = async (body: Record<string, unknown>) =>
    (
      (await (
        await withDevices.app.request('/api/admin/v1/tenants/default/apps', {
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify({ type: 'public', deviceFlow: true, ...body }),
        })
      ).json()) as { clientId: string }
    ).clientId;
  deviceApps = { cli: await createApp({ name: 'Quiz CLI' }), thirdParty: await createApp({ name: 'Stats CLI', firstParty: false }) };
  const discordServer = await listenFirst();
  servers.push(discordServer);
  discord = await startFakeDiscord({ clientId: DISCORD.DISCORD_CLIENT_ID, clientSecret: DISCORD.DISCORD_CLIENT_SECRET, redirectUris: [`${discordServer.url}/oauth/discord/callback`] });
  for (const [width, id] of Object.entries(DISCORD_PEOPLE)) discord.users.set(id, { id, username: `redirected-${width}`, global_name: null });
  discordServer.serve((await createTestGateway(database, { env: { PUBLIC_BASE_URL: discordServer.url, ...DISCORD }, fetch: reroute({ 'https://discord.com': discord.origin }) })).app.fetch);
  redirecting = discordServer;
  limitedDatabase = await createTestDatabase();
  limited = await serve(await createTestGateway(limitedDatabase, { providersDir: FIXTURES, env: { LINKGATE_BROWSER_RATE_LIMIT: '1', LINKGATE_BROWSER_RATE_WINDOW_SECONDS: '600' } }));
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  for (const server of servers) await server.close();
  await discord?.close();
  await limitedDatabase?.close();
  await database?.close();
});

/** The Annie Mei bot's own link (annie-mei/annie-mei), signed with node:crypto. */
function annieMeiLink(): string {
  const iat = Math.floor(Date.now() / 1000);
  const payload = Buffer.from(JSON.stringify({ v: 1, discord_user_id: '80351110224678912', interaction_id: '1', nonce: randomBytes(16).toString('base64url'), iat, exp: iat + 300 })).toString('base64url');
  return `/oauth/anilist/start?ctx=${payload}.${createHmac('sha256', 'bot-secret').update(payload).digest('base64url')}`;
}

/** Checks the page as it is now and saves its picture (inspectPage). */
async function inspect(page: Page, name: string, width: Width): Promise<void> {
  await inspectPage(page, `${SHOTS}/${name}-${width}.png`, name, width);
}

describe.each(Object.keys(WIDTHS) as Width[])('every page at %s width', (width) => {
  const open = async () => {
    // axe is injected as a script of its own: only the test's context lets it past the pages' strict CSP.
    const context = await browser.newContext({ viewport: WIDTHS[width], bypassCSP: true });
    return context.newPage();
  };

  it('a sign-in: confirmation, form, form error, code page, then linked (reloaded)', async () => {
    const page = await open();
    await page.goto(`${pin.url}/oauth/pin/start?context=${await mintContext('pin', `pages-${width}`, { claims: { name: 'Ada' } })}`);
    await inspect(page, 'confirm', width);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('heading', { name: 'Sign in to Pin' }).waitFor();
    await inspect(page, 'form', width);
    // One account per width: the same one linked to two users would be refused (account_already_linked).
    await page.getByLabel('Username').fill(`ada-${width}`);
    await page.getByLabel('Password').fill('wrong');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor();
    await inspect(page, 'form-error', width);
    await page.getByLabel('Password').fill('correct horse');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('ABC123').waitFor();
    await inspect(page, 'wait', width);
    // The page polls; the fixture approves on the second poll, and the page says so in place.
    await page.getByRole('heading', { name: 'Account linked' }).waitFor();
    // The result's own address, as after a redirect provider's callback, and again on reload.
    await page.goto(`${pin.url}/oauth/pin/linked`);
    await page.reload();
    await page.getByRole('heading', { name: 'Account linked' }).waitFor();
    expect(await page.getByText(`Your Pin account ada-${width} is now linked.`).count()).toBe(1);
    await inspect(page, 'linked', width);
    await page.context().close();
  });

  it('a redirect provider: its callback answers 303 to the result, which a reload shows again, as does the used link reopened', async () => {
    // axe is injected as a script of its own: only the test's context lets it past the pages' strict CSP.
    const context = await browser.newContext({ viewport: WIDTHS[width], bypassCSP: true });
    // The person approves at Discord: its authorize page is the fake's approval, answered as a redirect back.
    await context.route('https://discord.com/**', (route) => {
      const asked = new URL(route.request().url());
      return route.fulfill({ status: 302, headers: { location: discord.approve(new URL(asked.pathname + asked.search, discord.origin), DISCORD_PEOPLE[width]).href } });
    });
    const page = await context.newPage();
    const callbacks: Array<{ status: number; location: string | null }> = [];
    page.on('response', (response) => {
      if (new URL(response.url()).pathname === '/oauth/discord/callback') callbacks.push({ status: response.status(), location: response.headers()['location'] ?? null });
    });
    const link = `${redirecting.url}/oauth/discord/start?context=${await mintContext('discord', `redirected-${width}`)}`;
    await page.goto(link);
    await page.getByRole('heading', { name: 'Link your Discord account?' }).waitFor();
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('heading', { name: 'Account linked' }).waitFor();
    expect(callbacks).toEqual([{ status: 303, location: '/oauth/discord/linked' }]);
    expect(new URL(page.url()).pathname).toBe('/oauth/discord/linked');
    await page.reload();
    await page.getByRole('heading', { name: 'Account linked' }).waitFor();
    expect(await page.getByText(`Your Discord account redirected-${width} is now linked.`).count()).toBe(1);
    await inspect(page, 'linked-redirect', width);
    // The same browser opens the bot's link again: it is used, and this browser is told the account is linked.
    await page.goto(link);
    await page.getByRole('heading', { name: 'Account linked' }).waitFor();
    expect(await page.getByText(`Your Discord account redirected-${width} is now linked.`).count()).toBe(1);
    expect(callbacks).toHaveLength(1);
    await inspect(page, 'linked-reopened', width);
    await context.close();
  });

  it('the page of a browser over its rate limit', async () => {
    const page = await open();
    // One page a minute for this address: the first (for whichever width runs first) is served, then the limit answers.
    for (let i = 0; i < 2; i++) {
      const answer = await page.goto(`${limited.url}/oauth/pin/start?context=${await mintContext('pin', `limited-${width}`)}`);
      if (answer?.status() === 429) break;
    }
    await page.getByRole('heading', { name: 'Too many attempts' }).waitFor();
    expect(await page.getByText(/^Please wait .+, then reload this page\.$/).count()).toBe(1);
    await inspect(page, 'rate-limited', width);
    await page.context().close();
  });

  it('Cancel, and the page after it', async () => {
    const page = await open();
    await page.goto(`${pin.url}/oauth/pin/start?context=${await mintContext('pin', `pages-cancel-${width}`)}`);
    await page.getByRole('button', { name: 'Cancel' }).click();
    await page.getByRole('heading', { name: 'Linking cancelled' }).waitFor();
    await inspect(page, 'cancelled', width);
    await page.context().close();
  });

  it('the Annie Mei bot’s link on a branded gateway, and that link used again elsewhere', async () => {
    const link = annieMeiLink();
    const page = await open();
    await page.goto(`${branded.url}${link}`);
    await page.getByRole('heading', { name: 'Link your AniList account?' }).waitFor();
    expect(await page.getByText('Annie Mei will be able to:').count()).toBe(1);
    await inspect(page, 'confirm-branded', width);
    await page.getByRole('button', { name: 'Cancel' }).click();
    await page.getByRole('heading', { name: 'Linking cancelled' }).waitFor();
    const other = await open();
    await other.goto(`${branded.url}${link}`);
    await other.getByRole('heading', { name: 'This link was already used' }).waitFor();
    expect(await other.getByText('If it is not, run /register in Discord again to get a new link.').count()).toBe(1);
    await inspect(other, 'used', width);
    await page.context().close();
    await other.context().close();
  });

  it('an app\'s sign-in page: a button per provider', async () => {
    const page = await open();
    const query = new URLSearchParams({ client_id: appClientId, response_type: 'code', scope: 'openid', redirect_uri: 'https://app.example/callback', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' });
    await page.goto(`${signIn.url}/oidc/auth?${query}`);
    await page.getByRole('heading', { name: 'Sign in to Quiz dashboard' }).waitFor();
    expect(await page.getByRole('button', { name: /^Continue with / }).count()).toBeGreaterThan(0);
    await inspect(page, 'sign-in-chooser', width);
    await page.context().close();
  });

  /** A device asks for a code (RFC 8628 §3.1), as a CLI does. */
  const deviceCode = async (clientId: string) => {
    const answer = await fetch(`${devices.url}/oidc/device/auth`, { method: 'POST', body: new URLSearchParams({ client_id: clientId, scope: 'openid profile' }) });
    expect(answer.status).toBe(200);
    return (await answer.json()) as { user_code: string; verification_uri: string; verification_uri_complete: string };
  };

  /** The chooser, Pin's password form and its wait page, as in a link; the page's poll moves on by itself. */
  const signInWithPin = async (page: Page, username: string) => {
    await page.getByRole('button', { name: 'Continue with Pin' }).click();
    await page.getByLabel('Username').fill(username);
    await page.getByLabel('Password').fill('correct horse');
    await page.getByRole('button', { name: 'Sign in' }).click();
  };

  it('a device\'s sign-in: the code page, a wrong code, the confirmation, then connected', async () => {
    const device = await deviceCode(deviceApps.cli);
    const page = await open();
    await page.goto(device.verification_uri);
    await page.getByRole('heading', { name: 'Connect a device' }).waitFor();
    await inspect(page, 'device-code', width);
    // oidc-provider writes this page itself: its own CSP must still let our style in (without the test's bypass).
    const strict = await browser.newContext({ viewport: WIDTHS[width] });
    const plain = await strict.newPage();
    await plain.goto(device.verification_uri);
    expect(await plain.getByRole('button', { name: 'Continue' }).evaluate((button) => (globalThis as unknown as { getComputedStyle(element: unknown): { backgroundColor: string } }).getComputedStyle(button).backgroundColor)).toBe('rgb(41, 82, 204)');
    await strict.close();
    await page.getByLabel('Code').fill('BCDF-GHJK');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('heading', { name: 'That code is not right' }).waitFor();
    await inspect(page, 'device-code-wrong', width);
    await page.getByLabel('Code').fill(device.user_code);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('heading', { name: 'Sign in to Quiz CLI on your device?' }).waitFor();
    await inspect(page, 'device-confirm', width);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('heading', { name: 'Sign in to Quiz CLI' }).waitFor();
    await signInWithPin(page, `device-${width}`);
    await page.getByRole('heading', { name: 'Device connected' }).waitFor();
    await inspect(page, 'device-connected', width);
    await page.context().close();
  });

  it('a third-party app\'s consent page, and Deny on a device\'s sign-in', async () => {
    const device = await deviceCode(deviceApps.thirdParty);
    const page = await open();
    // The link with the code in it: prefilled, waiting for Continue.
    await page.goto(device.verification_uri_complete);
    await page.getByRole('heading', { name: 'Connect a device' }).waitFor();
    expect(await page.getByLabel('Code').inputValue()).toBe(device.user_code);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('button', { name: 'Continue' }).click();
    await signInWithPin(page, `consent-${width}`);
    await page.getByRole('heading', { name: 'Allow Stats CLI to sign you in?' }).waitFor();
    await inspect(page, 'consent', width);
    await page.getByRole('button', { name: 'Deny' }).click();
    await page.getByRole('heading', { name: 'Sign-in cancelled' }).waitFor();
    await inspect(page, 'device-cancelled', width);
    await page.context().close();
  });

  it('error pages: an expired link, a page that is not there', async () => {
    const page = await open();
    await page.goto(`${pin.url}/oauth/pin/start?context=${await mintContext('pin', 'expired', { now: Date.now() - 3600_000 })}`);
    await page.getByRole('heading', { name: 'This link has expired' }).waitFor();
    await inspect(page, 'expired', width);
    await page.goto(`${pin.url}/nothing/here`);
    await page.getByRole('heading', { name: 'Page not found' }).waitFor();
    await inspect(page, 'not-found', width);
    await page.context().close();
  });

  it('/docs, / in development and in production', async () => {
    const page = await open();
    await page.goto(`${pin.url}/docs`);
    await page.getByRole('heading', { name: 'Linkgate API reference' }).waitFor();
    await inspect(page, 'docs', width);
    await page.goto(`${pin.url}/`);
    await page.getByRole('heading', { name: 'Linkgate is running' }).waitFor();
    await inspect(page, 'home-development', width);
    await page.goto(`${production.url}/`);
    await page.getByRole('heading', { name: 'Account linking' }).waitFor();
    await inspect(page, 'home-production', width);
    expect(await page.content()).not.toContain(TEST_SECRETS.LINKGATE_API_KEYS);
    await page.context().close();
  });
});
