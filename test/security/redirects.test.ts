import { fileURLToPath } from 'node:url';
import { count } from '../../src/db/orm.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { flows, links, usedContexts } from '../../src/db/schema.ts';
import { confirmationForm, TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';

/**
 * Where the gateway sends a browser: `return_to` only to an origin listed in
 * LINKGATE_RETURN_TO_ORIGINS, judged after URL parsing, whichever way it
 * arrives (a bot's `POST /api/v1/link-urls` or a context the bot signed);
 * every redirect answering a POST is a 303; and every page, whatever it says,
 * carries the headers that keep URLs (states, codes) out of referrers, caches
 * and frames.
 */
const FIXTURES = fileURLToPath(new URL('../fixtures/providers', import.meta.url));
const INSTANT = fileURLToPath(new URL('../fixtures/instant-providers', import.meta.url));
const ORIGINS = { LINKGATE_RETURN_TO_ORIGINS: 'https://bot.example,http://localhost:3000' };

let database: Database;
/** The form-and-wait `pin` fixture provider. */
let pin: TestGateway;
/** `instant`: links on Continue, so a return_to is followed at once. */
let instant: TestGateway;
/** The real providers; Discord configured (its start redirects to discord.com), the others not. */
let real: TestGateway;

beforeAll(async () => {
  database = await createTestDatabase();
  pin = await createTestGateway(database, { providersDir: FIXTURES, env: ORIGINS });
  instant = await createTestGateway(database, { providersDir: INSTANT, env: { ...ORIGINS, LINK_ALLOW_SHARED_ACCOUNTS: 'true' } });
  real = await createTestGateway(database, { env: { ...ORIGINS, DISCORD_CLIENT_ID: '1100000000000000007', DISCORD_CLIENT_SECRET: 'redirects-discord-secret-0123456789' } });
});
afterAll(() => database.close());

const browserOn = (g: TestGateway) => new TestBrowser((path, init) => g.app.request(path, init));

async function stored() {
  const [f] = await database.db.select({ n: count() }).from(flows);
  const [l] = await database.db.select({ n: count() }).from(links);
  const [u] = await database.db.select({ n: count() }).from(usedContexts);
  return { flows: f!.n, links: l!.n, spentContexts: u!.n };
}

/** Each a way to point `return_to` elsewhere than it looks, or to smuggle something through it. */
const REFUSED: Array<[string, string]> = [
  ['scheme-relative', '//evil.example/'],
  ['scheme-relative to an allowed host', '//bot.example/'],
  ['scheme without slashes', 'https:evil.example'],
  ['scheme without slashes, backslashes', 'https:\\\\evil.example'],
  ['backslashes for slashes', 'https:\\\\bot.example\\'],
  ['backslash before @', 'https://bot.example\\@evil.example/'],
  ['a slash-backslash path', '/\\evil.example/'],
  ['userinfo naming the allowed host', 'https://bot.example@evil.example/'],
  ['userinfo with a port', 'https://bot.example:443@evil.example/'],
  ['userinfo on the allowed host', 'https://user:pass@bot.example/'],
  ['an encoded @ before the host', 'https://bot.example%40evil.example/'],
  ['the allowed host as a subdomain', 'https://bot.example.evil.example/'],
  ['the allowed host with a trailing dot', 'https://bot.example./'],
  ['the allowed host in the fragment', 'https://evil.example/#@bot.example'],
  ['the allowed host in the query', 'https://evil.example/?@bot.example'],
  ['the allowed URL in the path', 'https://evil.example/https://bot.example/'],
  ['another scheme on the allowed host', 'http://bot.example/'],
  ['another port on the allowed host', 'https://bot.example:8443/'],
  ['javascript:', 'javascript:alert(1)//https://bot.example/'],
  ['data:', 'data:text/html,<script>alert(1)</script>'],
  ['a relative path', '/linked'],
  ['leading whitespace', ' https://bot.example/'],
  ['a raw newline', 'https://bot.example/\nSet-Cookie:x=1'],
  ['a raw tab in the host', 'https://bot.exa\tmple/'],
  ['an encoded CRLF', 'https://bot.example/%0d%0aSet-Cookie:%20x=1'],
  ['an encoded LF in the query', 'https://bot.example/done?next=%0ALocation:%20https://evil.example'],
  ['an encoded CR in the fragment', 'https://bot.example/done#%0D'],
  ['an encoded NUL', 'https://bot.example/%00'],
  ['an encoded Unicode line separator', 'https://bot.example/%E2%80%A8'],
  ['a raw Unicode line separator', 'https://bot.example/\u2028'],
  ['an encoded newline in the host', 'https://bot.example%0d%0a.evil.example/'],
];

describe('return_to with LINKGATE_RETURN_TO_ORIGINS set', () => {
  it.each(REFUSED)('POST /api/v1/link-urls refuses %s (%s) with 400 return_to_not_allowed', async (_name, returnTo) => {
    const response = await pin.api('/link-urls', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ userId: 'return-to-user', provider: 'pin', returnTo }),
    });
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('return_to_not_allowed');
    // The message says what is wrong, never the value.
    expect(body.error.message).not.toContain('evil');
  });

  it.each(REFUSED)('a link context carrying %s (%s) is refused with a 400 page; nothing is started or spent', async (_name, returnTo) => {
    const before = await stored();
    const context = await mintContext('instant', 'return-to-user', { claims: { return_to: returnTo } });
    const browser = browserOn(instant);
    const page = await browser.get(`/oauth/instant/start?context=${encodeURIComponent(context)}`);
    expect(page.status).toBe(400);
    const html = await page.text();
    expect(html).toMatch(/id="error-code">return_to_not_allowed</);
    expect(html).not.toContain('evil.example');
    // Nor can Continue be posted anyway, from a browser that has the cookie: the context is refused before anything is spent.
    expect((await browser.get(`/oauth/instant/start?context=${await mintContext('instant', 'return-to-user')}`)).status).toBe(200);
    const posted = await browser.post('/oauth/instant/start', { context, csrf: 'x'.repeat(43) });
    expect(posted.status).toBe(400);
    expect(await posted.text()).toMatch(/id="error-code">return_to_not_allowed</);
    expect(posted.headers.get('location')).toBeNull();
    expect(await stored()).toEqual(before);
  });

  it.each([
    ['https://bot.example/linked?ok=1', 'https://bot.example/linked?ok=1'],
    ['HTTPS://BOT.EXAMPLE/linked', 'https://bot.example/linked'],
    ['https://bot.example', 'https://bot.example/'],
    ['http://localhost:3000/done#tab', 'http://localhost:3000/done#tab'],
    // Double-encoded: the browser decodes once and sees the text "%0d", not a newline.
    ['https://bot.example/a%250d', 'https://bot.example/a%250d'],
  ])('sends the browser to an allowed %s, exactly, with a 303 after the Continue POST', async (returnTo, location) => {
    const made = await instant.api('/link-urls', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ userId: `allowed-${Buffer.from(returnTo).toString('hex').slice(0, 40)}`, provider: 'instant', returnTo }),
    });
    expect(made.status).toBe(201);
    const browser = browserOn(instant);
    const page = await browser.get(((await made.json()) as { url: string }).url);
    const { action, fields } = confirmationForm(await page.text());
    const done = await browser.post(action, fields);
    expect(done.status).toBe(303);
    expect(done.headers.get('location')).toBe(location);
  });
});

describe('every redirect answering a POST is a 303', () => {
  it('Continue to the provider, Continue to the flow page, and the finished form to return_to', async () => {
    // To the provider's authorization page.
    const toProvider = browserOn(real);
    const page = await toProvider.get(`/oauth/discord/start?context=${await mintContext('discord', 'post-303-a')}`);
    const confirmation = confirmationForm(await page.text());
    const continued = await toProvider.post(confirmation.action, confirmation.fields);
    expect(continued.status).toBe(303);
    expect(new URL(continued.headers.get('location')!).origin).toBe('https://discord.com');

    // To the gateway's own page for a form step; then the last form post lands on return_to.
    const browser = browserOn(pin);
    const form = await browser.get(`/oauth/pin/start?context=${await mintContext('pin', 'post-303-b', { claims: { return_to: 'https://bot.example/back' } })}`);
    const pinConfirmation = confirmationForm(await form.text());
    const toForm = await browser.post(pinConfirmation.action, pinConfirmation.fields);
    expect(toForm.status).toBe(303);
    expect(toForm.headers.get('location')).toMatch(/^\/oauth\/pin\/continue\?state=/);
    const state = new URL(toForm.headers.get('location')!, 'http://x').searchParams.get('state')!;
    expect((await browser.post('/oauth/pin/callback', { state, username: 'ada', password: 'correct horse' })).status).toBe(200);
    expect((await browser.post('/oauth/pin/callback', { state, linkgate_action: 'poll' })).status).toBe(200);
    const back = await browser.post('/oauth/pin/callback', { state, linkgate_action: 'poll' });
    expect(back.status).toBe(303);
    expect(back.headers.get('location')).toBe('https://bot.example/back');
  });
});

describe('every page a browser can be shown', () => {
  async function pinFlow() {
    const browser = browserOn(pin);
    const confirm = await browser.get(`/oauth/pin/start?context=${await mintContext('pin', `headers-${Math.random().toString(36).slice(2)}`)}`);
    const { action, fields } = confirmationForm(await confirm.clone().text());
    const continued = await browser.post(action, fields);
    const state = new URL(continued.headers.get('location')!, 'http://x').searchParams.get('state')!;
    return { browser, confirm, continued, state };
  }

  const PAGES: Array<[string, () => Response | Promise<Response>]> = [
    ['the confirmation page', async () => (await pinFlow()).confirm],
    ['the 303 after Continue', async () => (await pinFlow()).continued],
    ['a form step', async () => {
      const { browser, continued } = await pinFlow();
      return browser.get(continued.headers.get('location')!);
    }],
    ['a form shown again with an error', async () => {
      const { browser, state } = await pinFlow();
      return browser.post('/oauth/pin/callback', { state, username: 'ada', password: 'wrong' });
    }],
    ['a wait step', async () => {
      const { browser, state } = await pinFlow();
      return browser.post('/oauth/pin/callback', { state, username: 'ada', password: 'correct horse' });
    }],
    ['the linked page', async () => {
      const { browser, state } = await pinFlow();
      await browser.post('/oauth/pin/callback', { state, username: 'ada', password: 'correct horse' });
      await browser.post('/oauth/pin/callback', { state, linkgate_action: 'poll' });
      return browser.post('/oauth/pin/callback', { state, linkgate_action: 'poll' });
    }],
    ['a refused link (400)', () => browserOn(pin).get('/oauth/pin/start?context=not-a-context')],
    ['a forged confirmation (403)', async () => {
      const { action, fields } = confirmationForm(await (await browserOn(pin).get(`/oauth/pin/start?context=${await mintContext('pin', 'headers-403')}`)).text());
      return browserOn(pin).post(action, fields);
    }],
    ['an unknown provider (404)', () => browserOn(pin).get('/oauth/nope/start?context=x')],
    ['an unknown path outside /oauth (404)', () => browserOn(pin).get('/nothing/here')],
    ['the site root (404)', () => browserOn(pin).get('/')],
    ['an unconfigured provider (503)', async () => browserOn(real).get(`/oauth/anilist/start?context=${await mintContext('anilist', 'headers-503')}`)],
    ['a form post over the size cap (413)', () => browserOn(pin).post('/oauth/pin/callback', { state: 'x', pad: 'x'.repeat(20_000) })],
    ['a refused form content type (400)', () => pin.app.request('/oauth/pin/callback', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })],
    ['the rate-limit page (429)', async () => {
      const limited = await createTestGateway(database, { providersDir: FIXTURES, env: { LINKGATE_BROWSER_RATE_LIMIT: '1' } });
      await limited.app.request('/oauth/pin/start?context=x');
      return limited.app.request('/oauth/pin/start?context=x');
    }],
    ['the API documentation', () => pin.app.request('/docs')],
  ];

  it.each(PAGES)('%s sends no-referrer, no-store, nosniff and frame-ancestors none', async (_name, open) => {
    const response = await open();
    if (response.status !== 303) expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('x-frame-options')).toBe('DENY');
    const csp = response.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toContain('unsafe-inline');
    // And the page is a page a person can act on, never a stack trace.
    if (response.status >= 400) expect(await response.text()).not.toMatch(/\bat \S+ \(|node_modules|\.ts:\d+/);
  });
});
