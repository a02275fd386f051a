/**
 * What a person sees at the end of linking, and what the bot hears: the
 * success page at an address of its own, Cancel on every page (and a refusal
 * at the provider) as `link.cancelled` and `link_cancelled`, and the
 * confirmation page that names who asks and what they will be able to do.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import type { Database } from '../../src/db/client.ts';
import { webhookDeliveries } from '../../src/db/schema.ts';
import { startTestIdp, type TestIdp } from '../fakes/oidc-idp.ts';
import { confirmationForm, TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, TEST_SECRETS, type TestGateway } from '../helpers/gateway.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/providers', import.meta.url));
const BASE = 'http://127.0.0.1:8000';
const CLIENT_SECRET = 'corp-client-secret-0123456789abcdef';
const ICON = `data:image/png;base64,${Buffer.from('not really a png, but base64').toString('base64')}`;
const BRAND = { LINKGATE_BRAND_NAME: 'Annie Mei', LINKGATE_BRAND_ICON_URL: ICON, LINKGATE_BRAND_COLOR: '#F5C2E7', LINKGATE_SUPPORT_URL: 'https://annie-mei.example/support' };

let database: Database;
let idp: TestIdp;
let clock = Date.now();
/** The OpenID provider `corp` and the form/wait fixture `pin`, with webhooks on (the outbox is read directly). */
let gateway: TestGateway;
let pin: TestGateway;

beforeAll(async () => {
  database = await createTestDatabase();
  idp = await startTestIdp({ redirectUris: [`${BASE}/oauth/corp/callback`], clientId: 'linkgate', clientSecret: CLIENT_SECRET });
  const webhook = { LINKGATE_WEBHOOK_URL: 'http://127.0.0.1:9/hooks', LINKGATE_WEBHOOK_SECRET: 'whsec_outcomes_0123456789abcdefghijklmn' };
  gateway = await createTestGateway(database, {
    env: { OIDC_PROVIDERS: 'corp', CORP_ISSUER: idp.issuer, CORP_CLIENT_ID: 'linkgate', CORP_CLIENT_SECRET: CLIENT_SECRET, CORP_SCOPES: 'openid profile email offline_access', CORP_DISPLAY_NAME: 'Corp SSO', ...webhook, ...BRAND },
    now: () => clock,
  });
  pin = await createTestGateway(database, { providersDir: FIXTURES, env: webhook, now: () => clock });
});
afterAll(async () => {
  await idp?.close();
  await database?.close();
});

const browserOn = (g: TestGateway) => new TestBrowser((path, init) => g.app.request(path, init));
const corpLink = async (userId: string, claims: Record<string, unknown> = {}) => `/oauth/corp/start?context=${await mintContext('corp', userId, { now: clock, claims })}`;
const pinLink = async (userId: string) => `/oauth/pin/start?context=${await mintContext('pin', userId, { now: clock })}`;

/** The `link.cancelled` events in the outbox for a user, as receivers will get them. */
async function cancelEvents(userId: string) {
  const rows = await database.db.select().from(webhookDeliveries);
  return rows
    .filter((r) => r.type === 'link.cancelled')
    .map((r) => JSON.parse(r.payload) as { type: string; cancellation: { userId: string; provider: string; reason: string } })
    .filter((e) => e.cancellation.userId === userId);
}

describe('the success page', () => {
  it('has an address of its own: the callback answers 303 to it, code and state leave the address bar, and a reload shows it again', async () => {
    const browser = browserOn(gateway);
    const started = await browser.openLink(await corpLink('result-user'));
    const callback = await idp.login(new URL(started.headers.get('location')!), 'idp-result');
    const answer = await browser.get(callback, { follow: false });
    expect(answer.status).toBe(303);
    expect(answer.headers.get('location')).toBe('/oauth/corp/linked');
    for (let reload = 0; reload < 2; reload += 1) {
      const page = await browser.get('/oauth/corp/linked');
      expect(page.status).toBe(200);
      expect(page.headers.get('cache-control')).toBe('no-store');
      expect(await page.text()).toContain('is now linked');
    }
    // The code cannot be spent twice: the old callback URL (a back button) is refused, the result page still shows.
    expect((await browser.get(callback, { follow: false })).status).toBe(400);
    expect((await browser.get('/oauth/corp/linked')).status).toBe(200);
  });

  it('shows another browser nothing, and says so once the flow is gone', async () => {
    const browser = browserOn(gateway);
    const started = await browser.openLink(await corpLink('result-later'));
    await browser.get(await idp.login(new URL(started.headers.get('location')!), 'idp-result-later'));
    const stranger = await browserOn(gateway).get('/oauth/corp/linked');
    expect(stranger.status).toBe(404);
    expect(await stranger.text()).toContain('id="error-code">result_gone<');
    const saved = clock;
    clock += 301_000; // past OAUTH_STATE_TTL_SECONDS
    try {
      const later = await browser.get('/oauth/corp/linked');
      expect(later.status).toBe(404);
      expect(await later.text()).toContain('If you linked your account a while ago, you are done: check with the bot.');
    } finally {
      clock = saved;
    }
  });
});

describe('Cancel', () => {
  it('on the confirmation page: nothing starts, the link is spent, the bot gets link.cancelled and its wait ends with 409', async () => {
    const since = new Date(clock - 1000).toISOString();
    const link = await corpLink('cancel-user');
    const browser = browserOn(gateway);
    const page = await (await browser.get(link)).text();
    const cancelForm = /<form method="post" action="(\/oauth\/corp\/cancel)">([\s\S]*?)<\/form>/.exec(page)!;
    const fields = Object.fromEntries([...cancelForm[2]!.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    const tokenRequests = idp.counts.token;

    const waiting = gateway.api(`/users/cancel-user/links/corp/wait?timeoutSeconds=10`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const cancelled = await browser.post(cancelForm[1]!, fields, { follow: false });
    expect(cancelled.status).toBe(303);
    expect(cancelled.headers.get('location')).toBe('/oauth/corp/cancelled');
    const shown = await (await browser.get('/oauth/corp/cancelled')).text();
    expect(shown).toContain('You cancelled, so your Corp SSO account was not linked. The bot has been told.');
    expect(shown).not.toContain('did not grant');

    const waited = await waiting;
    expect(waited.status).toBe(409);
    expect(await waited.json()).toEqual({ error: { code: 'link_cancelled', message: 'the user cancelled linking' } });
    // A wait that starts later hears of it only when it asks from before the cancel.
    expect((await gateway.api(`/users/cancel-user/links/corp/wait?timeoutSeconds=1&since=${since}`)).status).toBe(409);
    expect((await gateway.api('/users/cancel-user/links/corp/wait?timeoutSeconds=1')).status).toBe(204);
    expect(await cancelEvents('cancel-user')).toEqual([expect.objectContaining({ type: 'link.cancelled', cancellation: { userId: 'cancel-user', provider: 'corp', reason: 'user' } })]);
    expect(idp.counts.token).toBe(tokenRequests);

    // Continue on the same page now does nothing: the link was spent by Cancel.
    const { action, fields: continueFields } = confirmationForm(page);
    const late = await browser.post(action, continueFields, { follow: false });
    expect(late.status).toBe(409);
    expect(await late.text()).toContain('id="error-code">link_cancelled<');
    expect((await gateway.api('/users/cancel-user/links/corp')).status).toBe(404);
  });

  it('on a form or code page: the flow ends, its page and poll say so, and the bot gets link.cancelled', async () => {
    const browser = browserOn(pin);
    const form = await (await browser.openLink(await pinLink('cancel-form'))).text();
    const state = /name="state" value="([^"]+)"/.exec(form)![1]!;
    expect(form).toContain('action="/oauth/pin/cancel"');
    const cancelled = await browser.post('/oauth/pin/cancel', { state });
    expect(cancelled.status).toBe(200);
    expect(await cancelled.text()).toContain('Linking cancelled');
    expect(await (await browser.get(`/oauth/pin/poll?state=${state}`)).json()).toEqual({ status: 'cancelled' });
    const late = await browser.post('/oauth/pin/callback', { state, username: 'ada', password: 'correct horse' });
    expect(late.status).toBe(409);
    expect(await late.text()).toContain('id="error-code">link_cancelled<');
    expect(await cancelEvents('cancel-form')).toHaveLength(1);
    // Someone else's state cannot be cancelled.
    const other = browserOn(pin);
    const otherForm = await (await other.openLink(await pinLink('cancel-other'))).text();
    const otherState = /name="state" value="([^"]+)"/.exec(otherForm)![1]!;
    expect((await browser.post('/oauth/pin/cancel', { state: otherState })).status).toBe(400);
    expect(await cancelEvents('cancel-other')).toHaveLength(0);
  });

  it('refusing access at the provider is a cancel too, and the page does not blame the provider', async () => {
    const browser = browserOn(gateway);
    const started = await browser.openLink(await corpLink('denies'));
    const denied = await browser.get(await idp.deny(new URL(started.headers.get('location')!)));
    expect(denied.status).toBe(400);
    const html = await denied.text();
    expect(html).toContain('Linking cancelled');
    expect(html).toContain('Access was not allowed at Corp SSO, so nothing was linked. The bot has been told.');
    expect(await cancelEvents('denies')).toEqual([expect.objectContaining({ cancellation: { userId: 'denies', provider: 'corp', reason: 'provider_denied' } })]);
  });
});

describe('the confirmation page', () => {
  it('names the operator, shows its icon, colour and support link, and says what the bot will be able to do', async () => {
    const page = await (await browserOn(gateway).get(await corpLink('branded', { name: 'Ada' }))).text();
    expect(page).toContain('<title>Link your Corp SSO account? · Annie Mei</title>');
    expect(page).toContain(`<img src="${ICON}" alt=""/>`);
    expect(page).toContain('<span>Annie Mei</span>');
    expect(page).toContain('<p>Annie Mei will be able to:</p>');
    for (const sentence of ['confirm who you are', 'see your name and profile', 'see your email address', 'stay connected while you are away']) expect(page).toContain(`<li>${sentence}</li>`);
    expect(page).toContain('Asked for by <strong>Ada</strong> in the chat.');
    expect(page).toContain('<a href="https://annie-mei.example/support">');
    // A light colour gets dark text on its buttons, for contrast.
    expect(page).toContain('background: #f5c2e7; color: #000;');
    expect(page).toContain('>Cancel</button>');
  });

  it('without branding, speaks of the chat bot, and lists a provider’s own access (AniList has no scopes)', async () => {
    const anilist = await createTestGateway(database, { env: { ANILIST_CLIENT_ID: '1', ANILIST_CLIENT_SECRET: 'x' } });
    const page = await (await browserOn(anilist).get(`/oauth/anilist/start?context=${await mintContext('anilist', 'plain')}`)).text();
    expect(page).toContain('The chat bot that gave you this link will be able to:');
    expect(page).toContain('<li>read and change your anime and manga lists, favourites and settings as you</li>');
    expect(page).not.toContain('Need help?');
    expect(page).toContain('<title>Link your AniList account? · Linkgate</title>');
  });

  it.each<[Record<string, string>, RegExp]>([
    [{ LINKGATE_BRAND_ICON_URL: 'https://cdn.example/icon.png' }, /^LINKGATE_BRAND_ICON_URL: must be a data:image\/…;base64 URL or a URL on PUBLIC_BASE_URL/],
    [{ LINKGATE_BRAND_ICON_URL: 'data:text/html;base64,PHNjcmlwdD4=' }, /^LINKGATE_BRAND_ICON_URL: must be a data:image/],
    [{ LINKGATE_BRAND_COLOR: 'pink' }, /^LINKGATE_BRAND_COLOR: must be a colour like #5865f2$/],
    [{ LINKGATE_BRAND_NAME: 'Evil<script>' }, /^LINKGATE_BRAND_NAME: must not contain control characters or < >$/],
    [{ LINKGATE_SUPPORT_URL: 'javascript:alert(1)' }, /^LINKGATE_SUPPORT_URL: must be an http\(s\) or mailto: URL$/],
  ])('refuses branding the pages could not show safely: %o', (env, message) => {
    expect(() => parseConfig({ ...TEST_SECRETS, ...env })).toThrow(message);
  });

  it('accepts an icon served from the gateway’s own origin', () => {
    expect(parseConfig({ ...TEST_SECRETS, LINKGATE_BRAND_ICON_URL: 'http://127.0.0.1:8000/static/icon.png' }).brand.iconUrl).toBe('http://127.0.0.1:8000/static/icon.png');
  });
});

describe('pages that give a time', () => {
  it('the rate-limit page says how long to wait, as Retry-After does', async () => {
    const limited = await createTestGateway(database, { providersDir: FIXTURES, env: { LINKGATE_BROWSER_RATE_LIMIT: '1', LINKGATE_BROWSER_RATE_WINDOW_SECONDS: '600' } });
    const browser = browserOn(limited);
    await browser.get('/oauth/pin/start?context=x');
    const refused = await browser.get('/oauth/pin/start?context=x');
    expect(refused.status).toBe(429);
    const seconds = Number(refused.headers.get('retry-after'));
    expect(seconds).toBeGreaterThan(60);
    expect(await refused.text()).toContain(`Please wait ${Math.ceil(seconds / 60)} minutes, then reload this page.`);
  });
});
