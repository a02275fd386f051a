import { fileURLToPath } from 'node:url';
import { count } from '../../src/db/orm.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { flows, usedContexts } from '../../src/db/schema.ts';
import { startFakeJellyfin, type FakeJellyfin } from '../fakes/jellyfin.ts';
import { confirmationForm, TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';

let database: Database;
let jellyfin: FakeJellyfin;
let gateway: TestGateway;
/** The same gateway as deployed behind https. */
let secure: TestGateway;

const JELLYFIN_USER = '4f6a1b2c3d4e5f60718293a4b5c6d7e8';

beforeAll(async () => {
  database = await createTestDatabase();
  jellyfin = await startFakeJellyfin({ serverName: 'Home' });
  jellyfin.users.set(JELLYFIN_USER, { id: JELLYFIN_USER, name: 'Ada', password: 'ada-password' });
  const env = { JELLYFIN_SERVER_URL: jellyfin.url, LINK_ALLOW_SHARED_ACCOUNTS: 'true' };
  gateway = await createTestGateway(database, { env });
  secure = await createTestGateway(database, { env: { ...env, PUBLIC_BASE_URL: 'https://link.example' } });
});
afterAll(async () => {
  await jellyfin?.close();
  await database?.close();
});

const browserOn = (g: TestGateway) => new TestBrowser((path, init) => g.app.request(path, init));
const linkUrl = async (userId: string) => `/oauth/jellyfin/start?context=${await mintContext('jellyfin', userId)}`;

/** What opening a link could have set in motion: requests to the provider, flows, spent contexts. */
async function sideEffects() {
  const [f] = await database.db.select({ n: count() }).from(flows);
  const [u] = await database.db.select({ n: count() }).from(usedContexts);
  return { providerRequests: jellyfin.requests.length, flows: f!.n, spentContexts: u!.n };
}

describe('opening a link', () => {
  it('shows a confirmation page and starts nothing: no provider request, no flow, the link still unspent', async () => {
    const userId = '80351110224678912';
    const url = await linkUrl(userId);
    const browser = browserOn(gateway);
    const before = await sideEffects();
    const page = await browser.get(url);
    expect(page.status).toBe(200);
    expect(page.headers.get('cache-control')).toBe('no-store');
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    const html = await page.text();
    expect(html).toContain('Link your Jellyfin account?');
    expect(html).toContain('>Continue</button>');
    expect(html).not.toContain(userId);
    expect(html).not.toContain('name="state"');
    expect(await sideEffects()).toEqual(before);

    // A reload shows the same page, bound to the same browser.
    const again = await browser.get(url);
    expect(again.status).toBe(200);
    expect(confirmationForm(await again.text()).fields.csrf).toBe(confirmationForm(html).fields.csrf);
    expect(await sideEffects()).toEqual(before);
  });

  it('names the bot’s user by the display name the link carries, and by nothing else', async () => {
    const context = await mintContext('jellyfin', '80351110224678913', { claims: { name: 'Ada <Lovelace>' } });
    const html = await (await browserOn(gateway).get(`/oauth/jellyfin/start?context=${context}`)).text();
    expect(html).toContain('Asked for by <strong>Ada &lt;Lovelace&gt;</strong> in the chat.');
    expect(html).not.toContain('80351110224678913');

    const made = await gateway.api('/link-urls', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ userId: '80351110224678913', provider: 'jellyfin', userName: 'Grace' }),
    });
    expect(made.status).toBe(201);
    const fromApi = await (await browserOn(gateway).get(((await made.json()) as { url: string }).url)).text();
    expect(fromApi).toContain('Asked for by <strong>Grace</strong> in the chat.');
  });

  it('logs which claim of a refused context is wrong, never the context itself', async () => {
    const context = await mintContext('jellyfin', '80351110224678914', { jti: 'short' });
    const first = gateway.logs.length;
    const page = await browserOn(gateway).get(`/oauth/jellyfin/start?context=${context}`);
    expect(page.status).toBe(400);
    expect(await page.text()).toMatch(/id="error-code">context_invalid</);
    const logs = gateway.logs.slice(first).join('\n');
    expect(logs).toContain('the link context has a bad claim: jti must be at least 8 characters');
    expect(logs).not.toContain(context);
    expect(logs).not.toContain('80351110224678914');
  });

  it.each<[string, (form: Record<string, string>, victim: TestBrowser) => Promise<[TestBrowser, Record<string, string>]>]>([
    ['without a CSRF token', async ({ csrf: _, ...rest }, victim) => [victim, rest]],
    ['with a wrong CSRF token', async (form, victim) => [victim, { ...form, csrf: `${form.csrf!.slice(0, -2)}AA` }]],
    ['from a browser without the cookie', async (form) => [browserOn(gateway), form]],
    [
      'from another browser (its own cookie)',
      async (form) => {
        const attacker = browserOn(gateway);
        await attacker.get(await linkUrl('someone-else'));
        return [attacker, form];
      },
    ],
  ])('refuses the confirmation %s with a 403 page, and the link still works afterwards', async (_name, forge) => {
    const victim = browserOn(gateway);
    const { action, fields } = confirmationForm(await (await victim.get(await linkUrl('csrf-target'))).text());
    const before = await sideEffects();
    const [sender, form] = await forge(fields, victim);
    const refused = await sender.post(action, form);
    expect(refused.status).toBe(403);
    const page = await refused.text();
    expect(page).toContain('Please continue from the link in this browser');
    expect(page).toMatch(/id="error-code">csrf_failed</);
    expect(refused.headers.get('location')).toBeNull();
    expect(await sideEffects()).toEqual(before);

    // Nothing was spent: the person's own Continue still starts the flow.
    const continued = await victim.post(action, fields);
    expect(continued.status).toBe(303);
  });

  it('links after Continue; the link is spent: its own browser reopening it sees its flow, then its result; any other browser is told it was used', async () => {
    const url = await linkUrl('happy-user');
    const browser = browserOn(gateway);
    const { action, fields } = confirmationForm(await (await browser.get(url)).text());
    const before = await sideEffects();
    const continued = await browser.post(action, fields);
    expect(continued.status).toBe(303);
    const next = continued.headers.get('location')!;
    expect(next).toMatch(/^\/oauth\/jellyfin\/continue\?state=[A-Za-z0-9_-]{43}$/);
    expect((await sideEffects()).providerRequests).toBeGreaterThan(before.providerRequests);

    const page = await browser.get(next);
    expect(page.status).toBe(200);
    const html = await page.text();
    const code = /class="code"[^>]*>(\d{6})</.exec(html)![1]!;
    // The flow's page survives a reload.
    expect(await (await browser.get(next)).text()).toContain(code);
    // Tapping the chat message again (or pressing Continue twice) lands in the same flow: no second flow, no new code.
    const flowsBefore = (await sideEffects()).flows;
    const reopened = await browser.get(url);
    expect(reopened.status).toBe(303);
    expect(reopened.headers.get('location')).toBe(next);
    const pressedAgain = await browser.post(action, fields);
    expect(pressedAgain.status).toBe(303);
    expect(pressedAgain.headers.get('location')).toBe(next);
    expect((await sideEffects()).flows).toBe(flowsBefore);

    jellyfin.approve(code, JELLYFIN_USER);
    const state = new URL(next, 'http://x').searchParams.get('state')!;
    expect(await (await browser.get(`/oauth/jellyfin/poll?state=${state}`)).json()).toEqual({ status: 'linked' });
    expect(await (await gateway.api('/users/happy-user/links/jellyfin')).json()).toMatchObject({ externalId: JELLYFIN_USER, status: 'active' });
    expect(await (await browser.get(next)).text()).toContain('Account linked');

    // Once linked, the same browser opening the link again sees the result.
    const linkedAgain = await browser.get(url);
    expect(linkedAgain.status).toBe(200);
    const linkedPage = await linkedAgain.text();
    expect(linkedPage).toContain('Account linked');
    expect(linkedPage).toContain('Ada');
    expect(await (await browser.post(action, fields)).text()).toContain('Account linked');

    // Another browser (the link forwarded, another phone) learns only that it was used.
    const stranger = browserOn(gateway);
    const refused = await stranger.get(url);
    expect(refused.status).toBe(400);
    const refusedPage = await refused.text();
    expect(refusedPage).toMatch(/id="error-code">context_replayed</);
    expect(refusedPage).toContain('This link was already used');
    expect(refusedPage).toContain('Your account may already be linked: check with the bot.');
    expect(refusedPage).not.toContain('Ada');

    // And once the user unlinks, the old link shows nothing of the old account to anyone.
    expect((await gateway.api('/users/happy-user/links/jellyfin', { method: 'DELETE' })).status).toBe(204);
    const afterUnlink = await browser.get(url);
    expect(afterUnlink.status).toBe(400);
    expect(await afterUnlink.text()).toMatch(/id="error-code">context_replayed</);
  });
});

describe('a provider that needs no interaction', () => {
  it('links on Continue, then shows "Account linked", or goes to return_to', async () => {
    const instant = await createTestGateway(database, {
      providersDir: fileURLToPath(new URL('../fixtures/instant-providers', import.meta.url)),
      env: { LINKGATE_RETURN_TO_ORIGINS: 'https://bot.example', LINK_ALLOW_SHARED_ACCOUNTS: 'true' },
    });
    const browser = browserOn(instant);
    const page = await browser.openLink(`/oauth/instant/start?context=${await mintContext('instant', 'instant-user')}`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('Account linked');
    expect(await (await instant.api('/users/instant-user/links/instant')).json()).toMatchObject({ externalId: 'instant-account' });

    const made = await instant.api('/link-urls', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ userId: 'instant-user-2', provider: 'instant', returnTo: 'https://bot.example/done' }),
    });
    const back = await browser.openLink(((await made.json()) as { url: string }).url);
    expect(back.status).toBe(303);
    expect(back.headers.get('location')).toBe('https://bot.example/done');
  });
});

describe('the browser cookie', () => {
  it('over plain http on loopback is linkgate_browser, Path=/oauth, not Secure', async () => {
    const page = await browserOn(gateway).get(await linkUrl('cookie-http'));
    const [cookie] = page.headers.getSetCookie();
    expect(cookie).toMatch(/^linkgate_browser=[A-Za-z0-9_-]{43}; /);
    expect(cookie).toMatch(/; Path=\/oauth(;|$)/);
    expect(cookie).toMatch(/; HttpOnly/);
    expect(cookie).toMatch(/; SameSite=Lax/);
    expect(cookie).not.toMatch(/Secure|Domain/);
  });

  it('over https is __Host-linkgate_browser (Secure, Path=/, no Domain), and the unprefixed name is not honoured', async () => {
    const browser = browserOn(secure);
    const page = await browser.get(await linkUrl('cookie-https'));
    const [cookie] = page.headers.getSetCookie();
    expect(cookie).toMatch(/^__Host-linkgate_browser=[A-Za-z0-9_-]{43}; /);
    expect(cookie).toMatch(/; Path=\/(;|$)/);
    expect(cookie).toMatch(/; Secure/);
    expect(cookie).toMatch(/; HttpOnly/);
    expect(cookie).not.toMatch(/Domain/i);
    const { action, fields } = confirmationForm(await page.text());

    // The same value under the unprefixed name (as a sibling subdomain could set it) does not count.
    const planted = browserOn(secure);
    planted.cookies.set('linkgate_browser', browser.cookies.get('__Host-linkgate_browser')!);
    expect((await planted.post(action, fields)).status).toBe(403);

    const continued = await browser.post(action, fields);
    expect(continued.status).toBe(303);
    expect(continued.headers.getSetCookie()[0]).toMatch(/^__Host-linkgate_browser=/);
    expect((await browser.get(continued.headers.get('location')!)).status).toBe(200);
  });
});
