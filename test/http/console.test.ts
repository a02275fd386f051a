/**
 * The admin console, /admin (issue #21), over the gateway's HTTP app: closed
 * without LINKGATE_ADMINS, sign-in through the gateway's own sign-in (the
 * in-process OpenID provider as the admins' identity provider), sessions that
 * end at logout and after 30 idle minutes (the gateway's injectable clock),
 * roles, CSRF on every write, and the audit rows of console changes.
 */
import * as v from 'valibot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { list as listAudit } from '../../src/core/audit.ts';
import { createInvite, inviteOpen } from '../../src/core/console-invites.ts';
import { purgeExpired } from '../../src/core/purge.ts';
import type { Database } from '../../src/db/client.ts';
import { eq, isNull } from '../../src/db/orm.ts';
import { consoleInvites, webhookDeliveries, webSessions } from '../../src/db/schema.ts';
import { startFakeDiscord, type FakeDiscord } from '../fakes/discord.ts';
import { startTestIdp, type TestIdp } from '../fakes/oidc-idp.ts';
import { hiddenFields, TestBrowser } from '../helpers/browser.ts';
import { cliEnv, createCliDatabase, runCliHere } from '../helpers/cli.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { atFake, createTestGateway, listen, reroute, TEST_SECRETS, type TestGateway } from '../helpers/gateway.ts';
import { parseConfig } from '../../src/config.ts';
import { CreatedInviteAnswer, InvitesAnswer } from '../../src/http/admin.ts';

const BASE = 'https://link.example';
const CORP_SECRET = 'corp-client-secret-0123456789abcdef';
const QUIZ_CORP_SECRET = 'quiz-corp-secret-abcdefghijklmnopqrstuvwxyz';
const WEBHOOK_SECRET = 'webhook-secret-0123456789abcdefghijklmnop';
const DISCORD = { DISCORD_CLIENT_ID: '1100000000000000001', DISCORD_CLIENT_SECRET: 'discord-client-secret-0123456789', DISCORD_SCOPES: 'identify' };
const OWNER = 'owner-ada';
const SUPPORT = 'support-sam';
const QUIZ_ADMIN = 'quiz-admin-quinn';
const STRANGER = 'stranger-steve';
const ADMINS = `owner=corp:${OWNER},support=corp:${SUPPORT},admin@quizbot=corp:${QUIZ_ADMIN}`;
const BOT_USER = '222222222222222222';
const DISCORD_ACCOUNT = '80351110224678912';
const UA = 'Mozilla/5.0 (console test)';

let database: Database;
let idp: TestIdp;
let discord: FakeDiscord;
let gateway: TestGateway;
/** The gateway's clock: tests move it to play time passing. */
let clock = Date.now();
/** Every secret, key and token the tests saw: none may appear in an audit row or the CSV. */
const secrets: string[] = [CORP_SECRET, QUIZ_CORP_SECRET, WEBHOOK_SECRET, DISCORD.DISCORD_CLIENT_SECRET];

const env = () => ({
  PUBLIC_BASE_URL: BASE,
  LINKGATE_ADMINS: ADMINS,
  OIDC_PROVIDERS: 'corp',
  CORP_ISSUER: idp.issuer,
  CORP_CLIENT_ID: 'linkgate',
  CORP_CLIENT_SECRET: CORP_SECRET,
  CORP_SCOPES: 'openid profile',
  ...DISCORD,
  // The default tenant's events are queued for this receiver (no worker runs here: they stay pending).
  LINKGATE_WEBHOOK_URL: 'https://hooks.example/default',
  LINKGATE_WEBHOOK_SECRET: WEBHOOK_SECRET,
  LINKGATE_METRICS: 'true',
});

/** A browser whose every request carries a user agent; `extra` headers (Origin, Sec-Fetch-Site) too when given. */
const newBrowser = (extra: Record<string, string> = {}, on: (path: string, init: RequestInit) => Response | Promise<Response> = (path, init) => gateway.app.request(path, init)) =>
  new TestBrowser((path, init = {}) => {
    const headers = new Headers(init.headers);
    headers.set('user-agent', UA);
    for (const [name, value] of Object.entries(extra)) headers.set(name, value);
    return on(path, { ...init, headers, redirect: 'manual' });
  });
const consoleCookie = (browser: TestBrowser) => browser.cookies.get('__Host-linkgate_console');
const csrfOf = (html: string) => /name="csrf" value="([^"]+)"/.exec(html)?.[1];

/** Signs in at /admin as `sub` of the corp IdP: the chooser, the IdP, the callback. Returns the callback's answer. */
async function signIn(browser: TestBrowser, sub: string): Promise<Response> {
  const chooser = await browser.get('/admin');
  expect(chooser.status).toBe(200);
  expect(await chooser.text()).toContain('Continue with');
  const started = await browser.post('/admin/sign-in', { provider: 'corp' }, { follow: false });
  expect(started.status, await started.clone().text()).toBe(303);
  const authorization = new URL(started.headers.get('location')!);
  expect(authorization.origin).toBe(idp.issuer);
  const back = await idp.login(authorization, sub);
  return browser.get(back.pathname + back.search, { follow: false });
}

async function signedInAs(sub: string): Promise<{ browser: TestBrowser; csrf: string }> {
  const browser = newBrowser();
  const answer = await signIn(browser, sub);
  expect(answer.status).toBe(303);
  expect(answer.headers.get('location')).toBe(`${BASE}/admin/tenants`);
  const page = await browser.get('/admin/tenants');
  expect(page.status).toBe(200);
  const csrf = csrfOf(await page.text());
  expect(csrf).toBeDefined();
  secrets.push(consoleCookie(browser)!, csrf!);
  return { browser, csrf: csrf! };
}

/** Links Discord account `account` to bot user `userId` in the default tenant, as a bot's user does. */
async function linkDiscord(userId: string, account: string) {
  const made = await gateway.api('/link-urls', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId, provider: 'discord' }) });
  expect(made.status).toBe(201);
  const { url } = v.parse(v.object({ url: v.string() }), await made.json());
  const browser = newBrowser();
  const opened = await browser.openLink(url);
  expect(opened.status).toBe(303);
  const back = discord.approve(atFake(new URL(opened.headers.get('location')!), discord.origin), account);
  const linked = await browser.get(back.pathname + back.search);
  expect(linked.status).toBe(200);
}

async function auditRows(filter: Parameters<typeof listAudit>[1] = {}) {
  return (await listAudit(database.db, { limit: 500, ...filter })).events;
}

beforeAll(async () => {
  database = await createTestDatabase();
  idp = await startTestIdp({ redirectUris: [`${BASE}/oauth/corp/callback`], clientId: 'linkgate', clientSecret: CORP_SECRET });
  discord = await startFakeDiscord({ clientId: DISCORD.DISCORD_CLIENT_ID, clientSecret: DISCORD.DISCORD_CLIENT_SECRET, redirectUris: [`${BASE}/oauth/discord/callback`] });
  discord.users.set(DISCORD_ACCOUNT, { id: DISCORD_ACCOUNT, username: 'nelly', global_name: 'Nelly Quizmaster' });
  gateway = await createTestGateway(database, {
    env: env(),
    fetch: reroute({ 'https://discord.com': discord.origin, [idp.issuer]: idp.issuer }),
    now: () => clock,
  });
  await linkDiscord(BOT_USER, DISCORD_ACCOUNT);
});

afterAll(async () => {
  await Promise.all([idp?.close(), discord?.close()]);
  await database?.close();
});

describe('closed by default', () => {
  it('without LINKGATE_ADMINS every /admin URL answers 404 and no admin route touches the database', async () => {
    let queries = 0;
    // Counts every query the gateway starts on this database.
    const counted = new Proxy(database.db, {
      get(target, name, receiver) {
        const value = Reflect.get(target, name, receiver);
        if (typeof value !== 'function' || !['select', 'selectDistinctOn', 'insert', 'update', 'delete', 'execute', 'transaction'].includes(String(name))) return value;
        return (...args: unknown[]) => {
          queries++;
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const closed = await createTestGateway({ ...database, db: counted }, { env: { ...env(), LINKGATE_ADMINS: '' } });
    const before = queries;
    const attempts: Array<[string, string]> = [
      ['GET', '/admin'],
      ['GET', '/admin/'],
      ['GET', '/admin/tenants'],
      ['GET', '/admin/t/default/links?q=nelly'],
      ['GET', '/admin/audit.csv'],
      ['GET', '/admin/refused'],
      ['GET', '/admin/invite/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
      ['GET', '/admin/admins'],
      ['POST', '/admin/admins/invites'],
      ['POST', '/admin/admins/remove'],
      ['POST', '/admin/sign-in'],
      ['POST', '/admin/tenants'],
      ['POST', '/admin/t/default/api-keys'],
      ['POST', '/admin/sign-out'],
    ];
    for (const [method, path] of attempts) {
      const answer = await closed.app.request(path, { method, headers: { 'content-type': 'application/x-www-form-urlencoded' }, ...(method === 'POST' ? { body: 'provider=corp&csrf=x' } : {}) });
      expect(answer.status, `${method} ${path}`).toBe(404);
    }
    expect(queries - before).toBe(0);
    // The same gateway with an admin configured serves the console (the count above was able to see queries).
    const open = await createTestGateway({ ...database, db: counted }, { env: env() });
    expect((await open.app.request('/admin/tenants')).status).toBe(303);
    expect((await open.app.request('/admin/tenants', { headers: { cookie: '__Host-linkgate_console=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' } })).status).toBe(303);
    expect(queries - before).toBeGreaterThan(0);
  });

  it('LINKGATE_ADMINS reads role[@tenants]=provider:externalId, the external id being everything after the first colon', () => {
    const config = parseConfig({ ...TEST_SECRETS, NODE_ENV: 'test', LINKGATE_ADMINS: ' owner=discord:80351110224678912, support@quizbot+trivia=atproto:did:plc:abc123 ,admin=corp:alice@example.com' });
    expect(config.admins).toEqual([
      { role: 'owner', provider: 'discord', externalId: '80351110224678912', tenants: null },
      { role: 'support', provider: 'atproto', externalId: 'did:plc:abc123', tenants: ['quizbot', 'trivia'] },
      { role: 'admin', provider: 'corp', externalId: 'alice@example.com', tenants: null },
    ]);
    expect(parseConfig({ ...TEST_SECRETS, NODE_ENV: 'test' }).admins).toEqual([]);
  });

  it('LINKGATE_ADMINS is checked at start-up: a bad entry stops the gateway with the reason', async () => {
    await expect(createTestGateway(database, { env: { ...env(), LINKGATE_ADMINS: 'root=corp:x' } })).rejects.toThrow(/LINKGATE_ADMINS: each entry must look like role=provider:externalId/);
    await expect(createTestGateway(database, { env: { ...env(), LINKGATE_ADMINS: 'owner@quizbot=corp:x' } })).rejects.toThrow(/owner has every tenant/);
    await expect(createTestGateway(database, { env: { ...env(), LINKGATE_ADMINS: 'owner=corp:x,support=corp:x' } })).rejects.toThrow(/each identity may be listed once/);
  });
});

describe('signing in', () => {
  it('an admin signs in through the gateway\'s sign-in and gets a __Host- session cookie (HttpOnly, Secure, SameSite=Lax) of 8 hours; the sign-in is audited', async () => {
    const browser = newBrowser();
    const started = Date.now();
    const answer = await signIn(browser, OWNER);
    expect(answer.status).toBe(303);
    const line = answer.headers.getSetCookie().find((l) => l.startsWith('__Host-linkgate_console='))!;
    expect(line).toMatch(/; Path=\/(;|$)/);
    expect(line).toMatch(/HttpOnly/);
    expect(line).toMatch(/Secure/);
    expect(line).toMatch(/SameSite=Lax/);
    expect(line).not.toMatch(/Domain=/i);
    const expires = Date.parse(/Expires=([^;]+)/.exec(line)![1]!);
    expect(Math.abs(expires - (clock + 8 * 3600_000))).toBeLessThan(60_000 + Math.abs(clock - started));
    const tenants = await browser.get('/admin/tenants');
    expect(tenants.status).toBe(200);
    expect(await tenants.text()).toContain(`corp:${OWNER} · owner`);
    const [row] = await auditRows({ action: 'admin.sign_in', actor: `admin:corp:${OWNER}` });
    expect(row).toMatchObject({ outcome: 'ok', target: 'console', userAgent: UA });
    // Signing in to the console only said who the admin is: their account is no link of the default tenant.
    expect(await (await browser.get(`/admin/t/default/links?q=${OWNER}`)).text()).toContain('No link matches.');
    expect(await (await browser.get('/admin/t/default/links?provider=corp')).text()).toContain('No link matches.');
  });

  it('a person not in LINKGATE_ADMINS is refused with a page, gets no session, and the refusal is audited with address and user agent', async () => {
    const server = await listen(gateway);
    try {
      const browser = newBrowser({}, (path, init) => fetch(new URL(path, server.base), init));
      const answer = await signIn(browser, STRANGER);
      expect(answer.status).toBe(303);
      expect(answer.headers.get('location')).toBe(`${BASE}/admin/refused`);
      expect(consoleCookie(browser)).toBeUndefined();
      const page = await browser.get('/admin/refused');
      expect(page.status).toBe(403);
      expect(await page.text()).toContain('not one of this gateway’s admins');
      expect((await browser.get('/admin/tenants', { follow: false })).headers.get('location')).toBe('/admin');
      const [row] = await auditRows({ action: 'admin.sign_in_refused' });
      expect(row).toMatchObject({ actor: `admin:corp:${STRANGER}`, outcome: 'refused', code: 'not_an_admin', clientAddress: '127.0.0.1', userAgent: UA });
    } finally {
      await server.close();
    }
  });

  it('the sign-in form itself is refused from another site (login CSRF)', async () => {
    const browser = newBrowser({ origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' });
    const answer = await browser.post('/admin/sign-in', { provider: 'corp' }, { follow: false });
    expect(answer.status).toBe(403);
    expect(await answer.text()).toContain('csrf_failed');
  });

  it('a stolen session cookie stops working after sign-out, server-side', async () => {
    const { browser, csrf } = await signedInAs(OWNER);
    const stolen = consoleCookie(browser)!;
    const thief = () => gateway.app.request('/admin/tenants', { headers: { cookie: `__Host-linkgate_console=${stolen}` }, redirect: 'manual' });
    expect((await thief()).status).toBe(200);
    const out = await browser.post('/admin/sign-out', { csrf }, { follow: false });
    expect(out.status).toBe(303);
    expect(out.headers.getSetCookie().some((l) => l.startsWith('__Host-linkgate_console=;'))).toBe(true);
    const after = await thief();
    expect(after.status).toBe(303);
    expect(after.headers.get('location')).toBe('/admin');
    expect((await auditRows({ action: 'admin.sign_out', actor: `admin:corp:${OWNER}` })).length).toBeGreaterThan(0);
  });

  it('a session ends after 30 minutes without use (and lives on while used)', async () => {
    const { browser } = await signedInAs(OWNER);
    const stolen = consoleCookie(browser)!;
    const use = () => gateway.app.request('/admin/tenants', { headers: { cookie: `__Host-linkgate_console=${stolen}` }, redirect: 'manual' });
    const start = clock;
    try {
      clock = start + 29 * 60_000;
      expect((await use()).status).toBe(200);
      clock = start + 58 * 60_000;
      expect((await use()).status).toBe(200);
      clock = start + 58 * 60_000 + 30 * 60_000 + 1000;
      expect((await use()).status).toBe(303);
    } finally {
      clock = start + 90 * 60_000;
    }
  });
});

describe('as owner', () => {
  let owner: { browser: TestBrowser; csrf: string };
  beforeAll(async () => {
    owner = await signedInAs(OWNER);
  });

  it('creates a tenant, configures a provider with a write-only secret, tests it, and sees the callback URL to register', async () => {
    const created = await owner.browser.post('/admin/tenants', { csrf: owner.csrf, id: 'quizbot', name: 'Quiz Bot' }, { follow: false });
    expect(created.status).toBe(303);
    expect(created.headers.get('location')).toBe('/admin/t/quizbot');
    const providers = await (await owner.browser.get('/admin/t/quizbot')).text();
    expect(providers).toContain('Quiz Bot');
    expect(providers).toContain('/admin/t/quizbot/providers/discord');

    const another = await owner.browser.get('/admin/t/quizbot/providers?provider=corp', { follow: false });
    expect(another.headers.get('location')).toBe('/admin/t/quizbot/providers/corp');
    const form = await (await owner.browser.get('/admin/t/quizbot/providers/corp')).text();
    expect(form).toContain(`${BASE}/oauth/corp/callback`);
    expect(form).toContain('name="extra"');
    const saved = await owner.browser.post(
      '/admin/t/quizbot/providers/corp',
      { csrf: owner.csrf, 'v:CORP_ISSUER': idp.issuer, 'v:CORP_CLIENT_ID': 'quiz', 'v:CORP_CLIENT_SECRET': QUIZ_CORP_SECRET, extra: 'CORP_SCOPES=openid profile' },
      { follow: false },
    );
    expect(saved.status, await saved.clone().text()).toBe(303);
    const shown = await (await owner.browser.get('/admin/t/quizbot/providers/corp')).text();
    expect(shown).not.toContain(QUIZ_CORP_SECRET);
    // Write-only: an empty password field, saying a value is stored.
    expect(shown).toMatch(/name="v:CORP_CLIENT_SECRET" type="password" autocomplete="off" placeholder="stored \(unchanged if left empty\)"/);
    expect(shown).toContain('value="quiz"');

    // Saving again with the secret left empty keeps it: the configuration still starts.
    const again = await owner.browser.post('/admin/t/quizbot/providers/corp', { csrf: owner.csrf, 'v:CORP_ISSUER': idp.issuer, 'v:CORP_CLIENT_ID': 'quiz2', 'v:CORP_CLIENT_SECRET': '', extra: 'CORP_SCOPES=openid' }, { follow: false });
    expect(again.status).toBe(303);
    const tested = await owner.browser.post('/admin/t/quizbot/providers/corp/test', { csrf: owner.csrf }, { follow: false });
    expect(tested.status).toBe(303);
    expect(tested.headers.get('location')).toBe('/admin/t/quizbot/providers/corp?test=ok');
    const stored = await gateway.app.request('/api/admin/v1/tenants/quizbot/providers', { headers: { authorization: 'Bearer none' } });
    expect(stored.status).toBe(404); // no operator keys in this gateway: the console is the only door here

    const rows = await auditRows({ action: 'provider.configure', tenant: 'quizbot' });
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({ actor: `admin:corp:${OWNER}`, outcome: 'ok', target: 'provider:corp', detail: { variables: ['CORP_CLIENT_ID', 'CORP_CLIENT_SECRET', 'CORP_ISSUER', 'CORP_SCOPES'], version: 2 } });
  });

  it('a configuration the provider refuses is not stored, and says why', async () => {
    const refused = await owner.browser.post('/admin/t/quizbot/providers/corp', { csrf: owner.csrf, 'v:CORP_ISSUER': 'not a url', 'v:CORP_CLIENT_ID': 'x', 'v:CORP_CLIENT_SECRET': 'y' }, { follow: false });
    expect(refused.status).toBe(400);
    expect(await refused.text()).toContain('CORP_ISSUER');
    const [row] = await auditRows({ action: 'provider.configure', tenant: 'quizbot' });
    expect(row).toMatchObject({ outcome: 'refused', code: 'bad_request' });
  });

  it('creates an API key shown once, lists it with its last use, and revokes it', async () => {
    const created = await owner.browser.submit('/admin/t/quizbot/api-keys', '/admin/t/quizbot/api-keys', { name: 'quiz bot' });
    expect(created.status).toBe(201);
    const html = await created.text();
    const key = /<code id="new-api-key">([^<]+)<\/code>/.exec(html)![1]!;
    secrets.push(key);
    const id = /New API key (key_[A-Za-z0-9_-]+)/.exec(html)![1]!;
    // The key works for the bot API, and the list shows when it was used, never the key again.
    expect((await gateway.app.request('/api/v1/providers', { headers: { authorization: `Bearer ${key}`, 'x-tenant-id': 'quizbot' } })).status).toBe(200);
    const listed = await (await owner.browser.get('/admin/t/quizbot/api-keys')).text();
    expect(listed).toContain(id);
    expect(listed).not.toContain(key);
    expect(listed).not.toMatch(new RegExp(`${id}</code></td><td>quiz bot</td><td>[^<]+</td><td>—`));
    const revoked = await owner.browser.post(`/admin/t/quizbot/api-keys/${id}/revoke`, { csrf: owner.csrf }, { follow: false });
    expect(revoked.status).toBe(303);
    expect((await gateway.app.request('/api/v1/providers', { headers: { authorization: `Bearer ${key}`, 'x-tenant-id': 'quizbot' } })).status).toBe(401);
  });

  it('a form that makes something shown once makes it once: its answer reloaded is a 409 with a link back, audited, and a refused form can be corrected and sent again', async () => {
    const action = '/admin/t/quizbot/api-keys';
    const form = hiddenFields(await (await owner.browser.get(action)).text(), action);
    expect(form.once).toMatch(/^[A-Za-z0-9_-]{22}$/);
    // Refused (no name): nothing was made, so the same form, corrected, goes through.
    expect((await owner.browser.post(action, { ...form, name: '' }, { follow: false })).status).toBe(400);
    const first = await owner.browser.post(action, { ...form, name: 'reloaded' });
    expect(first.status).toBe(201);
    const firstHtml = await first.text();
    const key = /<code id="new-api-key">([^<]+)<\/code>/.exec(firstHtml)![1]!;
    const id = /New API key (key_[A-Za-z0-9_-]+)/.exec(firstHtml)![1]!;
    secrets.push(key);
    // The browser sends the form again when its answer is reloaded (or the button is clicked twice, and then only this answer is shown).
    const again = await owner.browser.post(action, { ...form, name: 'reloaded' });
    expect(again.status).toBe(409);
    const html = await again.text();
    expect(html).toContain('<h1>This form was already sent</h1>');
    expect(html).toContain(
      `<p>Its first send made API key ${id}, shown once in the answer to that send, and nothing new was made. If that answer was not shown (a second click), revoke ${id} and make another from the page.</p>`,
    );
    expect(html).toContain(`<a href="${action}">Back to the page</a>`);
    expect(html).toContain('<code id="error-code">form_already_sent</code>');
    expect(html).not.toContain(key);
    expect((await (await owner.browser.get(action)).text()).match(/<td>reloaded<\/td>/g)).toHaveLength(1);
    const rows = await auditRows({ action: 'api_key.create', tenant: 'quizbot' });
    expect(rows.slice(0, 3).map((row) => [row.outcome, row.code, row.target])).toEqual([
      ['refused', 'form_already_sent', `api_key:${id}`],
      ['ok', null, `api_key:${id}`],
      ['refused', 'bad_request', 'tenant:quizbot'],
    ]);
    // A double click: two sends of one form at once make one key.
    const twice = hiddenFields(await (await owner.browser.get(action)).text(), action);
    const both = await Promise.all([owner.browser.post(action, { ...twice, name: 'double' }), owner.browser.post(action, { ...twice, name: 'double' })]);
    expect(both.map((answer) => answer.status).sort()).toEqual([201, 409]);
    secrets.push(/<code id="new-api-key">([^<]+)<\/code>/.exec(await both.find((answer) => answer.status === 201)!.text())![1]!);
    expect((await (await owner.browser.get(action)).text()).match(/<td>double<\/td>/g)).toHaveLength(1);
    // A form without its token (not one of the console's pages) makes nothing.
    const bare = await owner.browser.post(action, { csrf: owner.csrf, name: 'tokenless' }, { follow: false });
    expect(bare.status).toBe(400);
    expect(await bare.text()).toContain('<p>This form has no valid one-time token: reload its page.</p>');

    // Every form that makes something shown once carries a token, a new one on each load of its page.
    const forms: Array<[string, string]> = [
      [action, action],
      ['/admin/t/quizbot/context-secrets', '/admin/t/quizbot/context-secrets'],
      ['/admin/t/quizbot/apps', '/admin/t/quizbot/apps'],
      ['/admin/admins', '/admin/admins/invites'],
      [`/admin/t/default/links/discord/${BOT_USER}`, `/admin/t/default/links/discord/${BOT_USER}/relink`],
    ];
    for (const [page, posts] of forms) {
      const [one, two] = [hiddenFields(await (await owner.browser.get(page)).text(), posts), hiddenFields(await (await owner.browser.get(page)).text(), posts)];
      expect(one.once, page).toMatch(/^[A-Za-z0-9_-]{22}$/);
      expect(two.once, page).not.toBe(one.once);
    }
    // The invite: one made, the reload refused with the Admins page to go back to.
    const admins = await (await owner.browser.get('/admin/admins')).text();
    const inviteIds = (html: string) => [...html.matchAll(/<code>(inv_[A-Za-z0-9_-]{16})<\/code>/g)].map((m) => m[1]!);
    const invite = hiddenFields(admins, '/admin/admins/invites');
    const made = await owner.browser.post('/admin/admins/invites', invite);
    expect(made.status).toBe(201);
    const madeHtml = await made.text();
    secrets.push(/<code id="invite-url">[^<]+\/admin\/invite\/([^<]+)<\/code>/.exec(madeHtml)![1]!);
    const reloaded = await owner.browser.post('/admin/admins/invites', invite);
    expect(reloaded.status).toBe(409);
    const reloadedHtml = await reloaded.text();
    expect(reloadedHtml).toContain('<a href="/admin/admins">Back to the page</a>');
    const [inviteId, ...more] = inviteIds(await (await owner.browser.get('/admin/admins')).text()).filter((id) => !inviteIds(admins).includes(id));
    expect(more).toEqual([]);
    expect(reloadedHtml).toContain(`Its first send made invite ${inviteId}, shown once in the answer to that send`);
    expect((await owner.browser.post(`/admin/admins/invites/${inviteId}/revoke`, { csrf: owner.csrf }, { follow: false })).status).toBe(303);
  });

  it('creates and retires a context secret, creates and deletes an app, sets a webhook and removes it', async () => {
    const secret = await owner.browser.submit('/admin/t/quizbot/context-secrets', '/admin/t/quizbot/context-secrets');
    expect(secret.status).toBe(201);
    const secretHtml = await secret.text();
    secrets.push(/<code id="new-context-secret">([^<]+)<\/code>/.exec(secretHtml)![1]!);
    const secretId = /New context secret (cs_[A-Za-z0-9_-]+)/.exec(secretHtml)![1]!;

    const app = await owner.browser.submit('/admin/t/quizbot/apps', '/admin/t/quizbot/apps', { name: 'Quiz site', redirectUris: 'https://quiz.example/cb', type: 'confidential' });
    expect(app.status).toBe(201);
    const appHtml = await app.text();
    secrets.push(/<code id="new-client-secret">([^<]+)<\/code>/.exec(appHtml)![1]!);
    const clientId = /Client secret of (app_[A-Za-z0-9_-]+)/.exec(appHtml)![1]!;
    expect((await owner.browser.post(`/admin/t/quizbot/apps/${clientId}/delete`, { csrf: owner.csrf }, { follow: false })).status).toBe(303);

    expect((await owner.browser.post('/admin/t/quizbot/webhook', { csrf: owner.csrf, url: 'https://hooks.example/quiz?token=abc', secret: WEBHOOK_SECRET }, { follow: false })).status).toBe(303);
    expect(await (await owner.browser.get('/admin/t/quizbot/webhook')).text()).toContain('https://hooks.example/quiz?token=abc');
    expect((await owner.browser.post('/admin/t/quizbot/webhook/remove', { csrf: owner.csrf }, { follow: false })).status).toBe(303);
    expect((await owner.browser.post(`/admin/t/quizbot/context-secrets/${secretId}/retire`, { csrf: owner.csrf }, { follow: false })).status).toBe(303);

    const actions = (await auditRows({ tenant: 'quizbot', actor: `admin:corp:${OWNER}` })).map((row) => row.action);
    for (const action of ['context_secret.create', 'app.create', 'app.delete', 'webhook.set', 'webhook.remove', 'context_secret.retire']) expect(actions).toContain(action);
    const [webhook] = await auditRows({ tenant: 'quizbot', action: 'webhook.set' });
    expect(webhook!.detail).toEqual({ origin: 'https://hooks.example' });
  });

  it('finds a link by external name, id or user id, filters by provider and status, opens it with its events, makes a relink URL, refreshes and unlinks it', async () => {
    const byName = await (await owner.browser.get('/admin/t/default/links?q=quizmaster')).text();
    expect(byName).toContain(`/admin/t/default/links/discord/${BOT_USER}`);
    expect(await (await owner.browser.get(`/admin/t/default/links?q=${DISCORD_ACCOUNT}`)).text()).toContain(BOT_USER);
    expect(await (await owner.browser.get(`/admin/t/default/links?q=${BOT_USER}&provider=discord&status=active`)).text()).toContain('Nelly Quizmaster');
    expect(await (await owner.browser.get(`/admin/t/default/links?q=${BOT_USER}&status=needs_reauth`)).text()).toContain('No link matches.');
    expect((await owner.browser.get('/admin/t/default/links?status=bogus')).status).toBe(400);

    const page = await (await owner.browser.get(`/admin/t/default/links/discord/${BOT_USER}`)).text();
    expect(page).toContain('Nelly Quizmaster');
    expect(page).toContain('identify');
    expect(page).toMatch(/<td>linked<\/td>/);

    const refreshed = await owner.browser.post(`/admin/t/default/links/discord/${BOT_USER}/refresh`, { csrf: owner.csrf }, { follow: false });
    expect(refreshed.status, await refreshed.clone().text()).toBe(303);
    expect(await (await owner.browser.get(`/admin/t/default/links/discord/${BOT_USER}`)).text()).toMatch(/<td>refreshed<\/td>/);

    const relink = await owner.browser.submit(`/admin/t/default/links/discord/${BOT_USER}`, `/admin/t/default/links/discord/${BOT_USER}/relink`);
    expect(relink.status).toBe(201);
    const url = /<code id="relink-url">([^<]+)<\/code>/.exec(await relink.text())![1]!.replaceAll('&amp;', '&');
    secrets.push(new URL(url).searchParams.get('context')!);
    expect(url.startsWith(`${BASE}/oauth/discord/start?context=`)).toBe(true);

    const unlinked = await owner.browser.post(`/admin/t/default/links/discord/${BOT_USER}/unlink`, { csrf: owner.csrf }, { follow: false });
    expect(unlinked.status).toBe(303);
    expect((await gateway.api(`/users/${BOT_USER}/links/discord`)).status).toBe(404);
    const [row] = await auditRows({ action: 'link.delete', actor: `admin:corp:${OWNER}` });
    expect(row).toMatchObject({ tenant: 'default', target: `link:${BOT_USER}/discord`, outcome: 'ok', detail: { revocation: 'revoked' } });
    // Counted as every unlink is, by where it came from.
    const metrics = await (await gateway.app.request('/metrics', { headers: { authorization: `Bearer ${TEST_SECRETS.LINKGATE_API_KEYS.split(',')[0]}` } })).text();
    expect(metrics).toContain('linkgate_links_deleted_total{provider="discord",tenant="default",via="console"} 1');
    await linkDiscord(BOT_USER, DISCORD_ACCOUNT);
  });

  it('lists a tenant\'s webhook deliveries and queues one again (retry), audited', async () => {
    const page = await (await owner.browser.get('/admin/t/default/webhook')).text();
    expect(page).toContain('https://hooks.example/default');
    expect(page).toContain('link.created');
    const action = /<form method="post" action="(\/admin\/t\/default\/webhook\/deliveries\/([^/"]+)\/retry)"/.exec(page)!;
    const retried = await owner.browser.post(action[1]!, { csrf: owner.csrf }, { follow: false });
    expect(retried.status).toBe(303);
    const [row] = await auditRows({ action: 'webhook.retry' });
    expect(row).toMatchObject({ actor: `admin:corp:${OWNER}`, tenant: 'default', target: `delivery:${action[2]}`, outcome: 'ok' });
    expect((await owner.browser.post('/admin/t/default/webhook/deliveries/nope/retry', { csrf: owner.csrf }, { follow: false })).status).toBe(404);
    // A delivery a worker is sending right now is not queued again: it would go out twice.
    await database.db.update(webhookDeliveries).set({ status: 'pending', lockedUntil: new Date(clock + 60_000) }).where(eq(webhookDeliveries.id, action[2]!));
    expect((await owner.browser.post(action[1]!, { csrf: owner.csrf }, { follow: false })).status).toBe(404);
  });

  it('reads the audit trail filtered, and exports it as CSV, the export itself audited', async () => {
    const page = await (await owner.browser.get('/admin/audit?tenant=quizbot&action=api_key.create')).text();
    expect(page).toContain('api_key.create');
    expect(page).not.toContain('<td>webhook.set</td>');
    const csv = await owner.browser.get('/admin/audit.csv?tenant=quizbot');
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toContain('text/csv');
    const text = await csv.text();
    const rows = await auditRows({ tenant: 'quizbot' });
    // Every row the filter selects, and the export's own row (written before the rows were read).
    expect(text.trim().split('\r\n')).toHaveLength(rows.length + 1);
    expect(rows[0]).toMatchObject({ action: 'audit.export', actor: `admin:corp:${OWNER}`, detail: { tenant: 'quizbot' } });

    // A link on another site cannot make the admin's browser export (and write an audit row).
    const exports = (await auditRows({ action: 'audit.export' })).length;
    const crossSite = await newBrowser({ 'sec-fetch-site': 'cross-site' }, (path, init) => {
      const headers = new Headers(init.headers);
      headers.set('cookie', `__Host-linkgate_console=${consoleCookie(owner.browser)}`);
      return gateway.app.request(path, { ...init, headers });
    }).get('/admin/audit.csv');
    expect(crossSite.status).toBe(403);
    expect((await auditRows({ action: 'audit.export' })).length).toBe(exports);
  });

  it('takes form posts of 16 KiB at most, as every page of the gateway', async () => {
    const answer = await owner.browser.post('/admin/tenants', { csrf: owner.csrf, id: 'big', name: 'x'.repeat(17 * 1024) }, { follow: false });
    expect(answer.status).toBe(413);
  });
});

describe('roles', () => {
  it('support sees the pages without any secret or write control, and every forced write is refused and audited', async () => {
    const { browser, csrf } = await signedInAs(SUPPORT);
    const pages = [
      '/admin/tenants',
      '/admin/t/quizbot',
      '/admin/t/quizbot/providers/corp',
      '/admin/t/quizbot/api-keys',
      '/admin/t/quizbot/context-secrets',
      '/admin/t/quizbot/apps',
      '/admin/t/quizbot/webhook',
      '/admin/t/default/links',
      `/admin/t/default/links/discord/${BOT_USER}`,
      '/admin/audit?tenant=quizbot',
    ];
    for (const path of pages) {
      const answer = await browser.get(path);
      expect(answer.status, path).toBe(200);
      const html = await answer.text();
      // The one form that posts is signing out.
      expect([...html.matchAll(/<form method="post" action="([^"]+)"/g)].map((m) => m[1]), path).toEqual(['/admin/sign-out']);
      // Every secret of the others (this page carries its own session's CSRF token, of course).
      for (const secret of secrets.filter((s) => s !== csrf)) expect(html, path).not.toContain(secret);
    }
    const forced: Array<[string, Record<string, string>]> = [
      ['/admin/tenants', { id: 'sneaky', name: 'Sneaky' }],
      ['/admin/t/quizbot/api-keys', { name: 'mine' }],
      ['/admin/t/quizbot/context-secrets', {}],
      ['/admin/t/quizbot/providers/corp', { 'v:CORP_ISSUER': idp.issuer, 'v:CORP_CLIENT_ID': 'x', 'v:CORP_CLIENT_SECRET': 'y' }],
      ['/admin/t/quizbot/providers/corp/test', {}],
      ['/admin/t/quizbot/webhook', { url: 'https://evil.example', secret: WEBHOOK_SECRET }],
      [`/admin/t/default/links/discord/${BOT_USER}/unlink`, {}],
      [`/admin/t/default/links/discord/${BOT_USER}/relink`, {}],
    ];
    for (const [path, form] of forced) {
      const answer = await browser.post(path, { csrf, ...form }, { follow: false });
      expect(answer.status, path).toBe(403);
    }
    expect((await gateway.api(`/users/${BOT_USER}/links/discord`)).status).toBe(200);
    const refused = await auditRows({ actor: `admin:corp:${SUPPORT}` });
    expect(refused.filter((row) => row.outcome === 'refused' && row.code === 'forbidden').length).toBe(forced.length - 1); // the test button is not a change
  });

  it('an admin given one tenant writes there, sees no other, and cannot create tenants', async () => {
    const { browser, csrf } = await signedInAs(QUIZ_ADMIN);
    const list = await (await browser.get('/admin/tenants')).text();
    expect(list).toContain('/admin/t/quizbot');
    expect(list).not.toContain('/admin/t/default');
    expect((await browser.get('/admin/t/default/links')).status).toBe(404);
    expect((await browser.post(`/admin/t/default/links/discord/${BOT_USER}/unlink`, { csrf }, { follow: false })).status).toBe(404);
    expect((await browser.post('/admin/tenants', { csrf, id: 'mine', name: 'Mine' }, { follow: false })).status).toBe(403);
    const key = await browser.submit('/admin/t/quizbot/api-keys', '/admin/t/quizbot/api-keys', { name: 'quinn' });
    expect(key.status).toBe(201);
    secrets.push(/<code id="new-api-key">([^<]+)<\/code>/.exec(await key.text())![1]!);
    // Its audit trail is its tenant's.
    expect((await browser.get('/admin/audit', { follow: false })).headers.get('location')).toBe('/admin/audit?tenant=quizbot');
    expect((await browser.get('/admin/audit?tenant=default')).status).toBe(403);
  });
});

describe('CSRF', () => {
  /** Every write of the console, with a form that would otherwise be accepted. */
  const writes = (): Array<[string, Record<string, string>]> => [
    ['/admin/tenants', { id: 'csrf-tenant', name: 'CSRF' }],
    ['/admin/t/quizbot/providers/corp', { 'v:CORP_ISSUER': idp.issuer, 'v:CORP_CLIENT_ID': 'evil', 'v:CORP_CLIENT_SECRET': 'evil-secret' }],
    ['/admin/t/quizbot/providers/corp/test', {}],
    ['/admin/t/quizbot/providers/corp/remove', {}],
    ['/admin/t/quizbot/api-keys', { name: 'evil' }],
    ['/admin/t/quizbot/api-keys/key_abc/revoke', {}],
    ['/admin/t/quizbot/context-secrets', {}],
    ['/admin/t/quizbot/context-secrets/cs_abc/retire', {}],
    ['/admin/t/quizbot/apps', { name: 'Evil', redirectUris: 'https://evil.example/cb', type: 'public' }],
    ['/admin/t/quizbot/apps/app_abc/delete', {}],
    ['/admin/t/quizbot/webhook', { url: 'https://evil.example/hook', secret: WEBHOOK_SECRET }],
    ['/admin/t/quizbot/webhook/remove', {}],
    ['/admin/t/quizbot/webhook/deliveries/abc/retry', {}],
    [`/admin/t/default/links/discord/${BOT_USER}/refresh`, {}],
    [`/admin/t/default/links/discord/${BOT_USER}/relink`, {}],
    [`/admin/t/default/links/discord/${BOT_USER}/unlink`, {}],
    ['/admin/admins/invites', {}],
    ['/admin/admins/invites/inv_AAAAAAAAAAAAAAAA/revoke', {}],
    ['/admin/admins/remove', { identity: 'corp:nobody' }],
    ['/admin/sign-out', {}],
  ];

  it('a cross-site form post to each write endpoint is refused, even with the session cookie and its token', async () => {
    const { browser, csrf } = await signedInAs(OWNER);
    const before = (await auditRows()).length;
    for (const [path, form] of writes()) {
      for (const headers of [{ origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site' }, { origin: 'null' }]) {
        const answer = await gateway.app.request(path, {
          method: 'POST',
          headers: { cookie: `__Host-linkgate_console=${consoleCookie(browser)}`, 'content-type': 'application/x-www-form-urlencoded', ...headers },
          body: new URLSearchParams({ csrf, ...form }).toString(),
          redirect: 'manual',
        });
        expect(answer.status, `${path} ${JSON.stringify(headers)}`).toBe(403);
      }
    }
    expect((await auditRows()).length).toBe(before);
    expect((await browser.get('/admin/tenants')).status).toBe(200);
  });

  it('a post without this session\'s token is refused at each write endpoint', async () => {
    const { browser } = await signedInAs(OWNER);
    const other = await signedInAs(OWNER);
    for (const [path, form] of writes()) {
      for (const token of [undefined, other.csrf, 'x']) {
        const answer = await browser.post(path, { ...(token ? { csrf: token } : {}), ...form }, { follow: false });
        expect(answer.status, `${path} ${token}`).toBe(403);
      }
    }
    expect(await (await browser.get('/admin/tenants')).text()).not.toContain('csrf-tenant');
    expect((await gateway.api(`/users/${BOT_USER}/links/discord`)).status).toBe(200);
  });
});

describe('invites', () => {
  it('`linkgate admin invite` prints a one-time link, stores only its digest and audits that it was made, never the link', async () => {
    const db = await createCliDatabase();
    try {
      const env = cliEnv(db.dataDir, { ...db.env, PUBLIC_BASE_URL: BASE, LINKGATE_ADMINS: ADMINS });
      expect((await runCliHere(['migrate'], env)).code).toBe(0);
      const made = await runCliHere(['admin', 'invite', '--json'], env);
      expect(made.code, made.stderr).toBe(0);
      const { url, expiresAt } = v.parse(v.object({ url: v.string(), expiresAt: v.string() }), JSON.parse(made.stdout));
      const token = url.slice(`${BASE}/admin/invite/`.length);
      expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(Date.parse(expiresAt) - Date.now()).toBeGreaterThan(3500_000);
      await db.use(async (database) => {
        expect(await inviteOpen(database.db, token, new Date())).toBe(true);
        const rows = JSON.stringify(await listAudit(database.db, { limit: 500 }));
        expect(rows).toContain('"action":"admin.invite"');
        expect(rows).toContain('"actor":"cli"');
        expect(rows).toContain(`"target":"invite:inv_`);
        expect(rows).not.toContain(token);
        const dump = JSON.stringify(await database.db.execute('select * from console_invites'));
        expect(dump).not.toContain(token);
      });
      // `admin invites list` shows it by id, never the link; `revoke` takes it back, once.
      const { id } = v.parse(v.object({ id: v.string() }), JSON.parse(made.stdout));
      const listed = await runCliHere(['admin', 'invites', 'list', '--json'], env);
      expect(listed.code, listed.stderr).toBe(0);
      expect(JSON.parse(listed.stdout)).toEqual({ invites: [{ id, createdAt: expect.any(String), expiresAt }] });
      expect((await runCliHere(['admin', 'invites', 'list'], env)).stdout).toMatch(new RegExp(`^${id}  made \\S+  expires ${expiresAt}\n$`));
      expect(listed.stdout).not.toContain(token);
      expect(await runCliHere(['admin', 'invites', 'revoke', id], env)).toEqual({ code: 0, stdout: `revoked invite ${id}: its link no longer works\n`, stderr: '' });
      expect(await runCliHere(['admin', 'invites', 'list'], env)).toMatchObject({ code: 0, stdout: 'no open invites\n' });
      const again = await runCliHere(['admin', 'invites', 'revoke', id, '--json'], env);
      expect(again.code).toBe(3);
      expect(JSON.parse(again.stderr)).toMatchObject({ error: { code: 'not_found' } });
      expect((await runCliHere(['admin', 'invites', 'revoke', 'not-an-id'], env)).code).toBe(2);
      await db.use(async (database) => {
        expect(await inviteOpen(database.db, token, new Date())).toBe(false);
        const revokes = (await listAudit(database.db, { limit: 500 })).events.filter((e) => e.action === 'admin.invite_revoke').reverse();
        expect(revokes.map((e) => [e.actor, e.target, e.outcome, e.code])).toEqual([
          ['cli', `invite:${id}`, 'ok', null],
          ['cli', `invite:${id}`, 'refused', 'not_found'],
        ]);
      });
      // An invite never opens a closed console.
      const closed = await runCliHere(['admin', 'invite'], cliEnv(db.dataDir, { ...db.env, PUBLIC_BASE_URL: BASE }));
      expect(closed.code).not.toBe(0);
      expect(closed.stderr).toContain('LINKGATE_ADMINS is unset');
      expect((await runCliHere(['admin', 'invites', 'list'], cliEnv(db.dataDir, { ...db.env, PUBLIC_BASE_URL: BASE }))).stderr).toContain('LINKGATE_ADMINS is unset');
    } finally {
      await db.close();
    }
  });

  it('an invite link makes the first person who signs in with it an owner, once; a used or expired link is refused', async () => {
    const { token } = await createInvite(database.db, new Date(clock));
    secrets.push(token);
    const invited = newBrowser();
    const page = await invited.get(`/admin/invite/${token}`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('Continue with');
    const answer = await (async () => {
      const started = await invited.post('/admin/sign-in', { provider: 'corp' }, { follow: false });
      expect(started.status).toBe(303);
      const back = await idp.login(new URL(started.headers.get('location')!), 'invited-ivy');
      return invited.get(back.pathname + back.search, { follow: false });
    })();
    expect(answer.headers.get('location')).toBe(`${BASE}/admin/tenants`);
    const tenants = await invited.get('/admin/tenants');
    expect(await tenants.text()).toContain('corp:invited-ivy · owner');
    expect((await auditRows({ action: 'admin.invite_accept' }))[0]).toMatchObject({ actor: 'admin:corp:invited-ivy', outcome: 'ok' });

    // Spent: the next person gets a refusal page, and signing in anyway makes them nothing.
    const late = newBrowser();
    expect((await late.get(`/admin/invite/${token}`)).status).toBe(404);
    expect((await signIn(late, 'late-larry')).headers.get('location')).toBe(`${BASE}/admin/refused`);

    const old = await createInvite(database.db, new Date(clock - 2 * 3600_000));
    expect((await newBrowser().get(`/admin/invite/${old.token}`)).status).toBe(404);

    // The purge forgets the expired invite and keeps the used one: it is what makes its owner one.
    const purged = await purgeExpired(database.db, new Date(clock));
    expect(purged.consoleInvites).toBe(1);
    expect(await (await invited.get('/admin/tenants')).text()).toContain('corp:invited-ivy · owner');
  });

  it('an owner invited with a provider LINKGATE_ADMINS does not name signs in with it again, from any browser', async () => {
    const { token } = await createInvite(database.db, new Date(clock));
    secrets.push(token);
    const discordSignIn = async (browser: TestBrowser) => {
      const started = await browser.post('/admin/sign-in', { provider: 'discord' }, { follow: false });
      expect(started.status).toBe(303);
      const back = discord.approve(atFake(new URL(started.headers.get('location')!), discord.origin), DISCORD_ACCOUNT);
      return browser.get(back.pathname + back.search, { follow: false });
    };
    const invited = newBrowser();
    expect((await invited.get(`/admin/invite/${token}`)).status).toBe(200);
    expect((await discordSignIn(invited)).headers.get('location')).toBe(`${BASE}/admin/tenants`);
    // Later, elsewhere, without the invite: Discord is offered, and works.
    const later = newBrowser();
    expect(await (await later.get('/admin')).text()).toContain('Continue with Discord');
    expect((await discordSignIn(later)).headers.get('location')).toBe(`${BASE}/admin/tenants`);
    expect(await (await later.get('/admin/tenants')).text()).toContain(`discord:${DISCORD_ACCOUNT} · owner`);
    // A second tab that polls the finished sign-in lands on the console, not a 404.
    expect((await later.get('/admin/signed-in', { follow: false })).headers.get('location')).toBe('/admin');
  });
});

describe('admins (owners only)', () => {
  let owner: { browser: TestBrowser; csrf: string };
  beforeAll(async () => {
    owner = await signedInAs(OWNER);
  });

  const openInviteCount = async () => (await database.db.select().from(consoleInvites).where(isNull(consoleInvites.usedAt))).filter((row) => row.expiresAt.getTime() > clock).length;

  it('lists LINKGATE_ADMINS read-only, marked as such, and the owners invites made, each with when invited and accepted', async () => {
    const tenants = await (await owner.browser.get('/admin/tenants')).text();
    expect(tenants).toContain('href="/admin/admins"');
    const page = await owner.browser.get('/admin/admins');
    expect(page.status).toBe(200);
    const html = await page.text();
    for (const identity of [`corp:${OWNER}`, `corp:${SUPPORT}`, `corp:${QUIZ_ADMIN}`]) expect(html).toContain(`<code>${identity}</code>`);
    expect(html.match(/from LINKGATE_ADMINS<\/span>/g)).toHaveLength(3);
    // The environment's entries have no control; each invited owner has Remove.
    const removes = [...html.matchAll(/<form method="post" action="\/admin\/admins\/remove"><input type="hidden" name="csrf" value="[^"]+"\/><input type="hidden" name="identity" value="([^"]+)"\/>/g)].map((m) => m[1]);
    expect(removes.sort()).toEqual([`corp:invited-ivy`, `discord:${DISCORD_ACCOUNT}`]);
    const ivy = /<tr><td><code>corp:invited-ivy<\/code><\/td><td>([^<]+)<\/td><td>([^<]+)<\/td>/.exec(html)!;
    expect(ivy[1]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d UTC$/);
    expect(ivy[2]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d UTC$/);
  });

  it('creates an invite shown once, lists it among the open ones by id, and revokes it: the link stops working; both audited, never the link', async () => {
    const before = await openInviteCount();
    const created = await owner.browser.submit('/admin/admins', '/admin/admins/invites');
    expect(created.status).toBe(201);
    const html = await created.text();
    const url = /<code id="invite-url">([^<]+)<\/code>/.exec(html)![1]!;
    expect(url).toMatch(new RegExp(`^${BASE}/admin/invite/[A-Za-z0-9_-]{43}$`));
    const token = url.slice(`${BASE}/admin/invite/`.length);
    secrets.push(token);
    expect(await openInviteCount()).toBe(before + 1);
    const id = /<code>(inv_[A-Za-z0-9_-]{16})<\/code>/.exec(html)![1]!;
    // Shown once: the list names it by id, never the link.
    const listed = await (await owner.browser.get('/admin/admins')).text();
    expect(listed).toContain(`/admin/admins/invites/${id}/revoke`);
    expect(listed).not.toContain(token);
    expect((await newBrowser().get(`/admin/invite/${token}`)).status).toBe(200);

    const revoked = await owner.browser.post(`/admin/admins/invites/${id}/revoke`, { csrf: owner.csrf }, { follow: false });
    expect(revoked.status).toBe(303);
    expect(revoked.headers.get('location')).toBe('/admin/admins');
    expect((await newBrowser().get(`/admin/invite/${token}`)).status).toBe(404);
    expect(await openInviteCount()).toBe(before);
    expect((await owner.browser.post(`/admin/admins/invites/${id}/revoke`, { csrf: owner.csrf }, { follow: false })).status).toBe(404);
    expect((await owner.browser.post('/admin/admins/invites/not-an-id/revoke', { csrf: owner.csrf }, { follow: false })).status).toBe(400);

    const actor = `admin:corp:${OWNER}`;
    const [made] = await auditRows({ action: 'admin.invite', actor });
    expect(made).toMatchObject({ tenant: null, target: `invite:${id}`, outcome: 'ok', detail: { expiresAt: expect.any(String) } });
    const revokes = await auditRows({ action: 'admin.invite_revoke', actor });
    expect(revokes.slice(0, 3).map((row) => [row.target, row.outcome, row.code])).toEqual([
      [null, 'refused', 'bad_request'],
      [`invite:${id}`, 'refused', 'not_found'],
      [`invite:${id}`, 'ok', null],
    ]);
    expect(JSON.stringify(await auditRows())).not.toContain(token);
  });

  it('removes an owner an invite made: their session stops working at once (revoked server-side), and they are refused when they sign in again', async () => {
    const ivy = await signedInAs('invited-ivy');
    const stolen = consoleCookie(ivy.browser)!;
    const use = () => gateway.app.request('/admin/tenants', { headers: { cookie: `__Host-linkgate_console=${stolen}` }, redirect: 'manual' });
    expect((await use()).status).toBe(200);

    const removed = await owner.browser.post('/admin/admins/remove', { csrf: owner.csrf, identity: 'corp:invited-ivy' }, { follow: false });
    expect(removed.status, await removed.clone().text()).toBe(303);
    expect((await use()).status).toBe(303);
    expect((await ivy.browser.post('/admin/tenants', { csrf: ivy.csrf, id: 'ivy-was-here', name: 'Ivy' }, { follow: false })).status).toBe(401);
    // Every console session of theirs is ended in the table, not only refused while they are no admin.
    const rows = await database.db.select().from(webSessions).where(eq(webSessions.externalId, 'invited-ivy'));
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((row) => row.revokedAt !== null)).toBe(true);
    expect(await (await owner.browser.get('/admin/admins')).text()).not.toContain('corp:invited-ivy');
    expect((await signIn(newBrowser(), 'invited-ivy')).headers.get('location')).toBe(`${BASE}/admin/refused`);

    const [row] = await auditRows({ action: 'admin.remove', actor: `admin:corp:${OWNER}` });
    expect(row).toMatchObject({ tenant: null, target: 'admin:corp:invited-ivy', outcome: 'ok' });
    expect((row!.detail as { sessionsEnded: number }).sessionsEnded).toBeGreaterThanOrEqual(1);

    // Again: nobody to remove. An entry of LINKGATE_ADMINS is the environment's. A bad identity is a 400.
    expect((await owner.browser.post('/admin/admins/remove', { csrf: owner.csrf, identity: 'corp:invited-ivy' }, { follow: false })).status).toBe(404);
    const listed = await owner.browser.post('/admin/admins/remove', { csrf: owner.csrf, identity: `corp:${SUPPORT}` }, { follow: false });
    expect(listed.status).toBe(400);
    expect(await listed.text()).toContain('LINKGATE_ADMINS');
    expect((await owner.browser.post('/admin/admins/remove', { csrf: owner.csrf, identity: 'no colon' }, { follow: false })).status).toBe(400);
    expect((await gateway.app.request('/admin/tenants', { headers: { cookie: `__Host-linkgate_console=${consoleCookie(owner.browser)}` }, redirect: 'manual' })).status).toBe(200);
  });

  it('support and a tenant\'s admin have no Admins page or link, and their forced posts are refused server-side and audited', async () => {
    const { token } = await createInvite(database.db, new Date(clock));
    secrets.push(token);
    const [open] = (await (await owner.browser.get('/admin/admins')).text()).match(/inv_[A-Za-z0-9_-]{16}/g)!.slice(-1);
    for (const sub of [SUPPORT, QUIZ_ADMIN]) {
      const { browser, csrf } = await signedInAs(sub);
      expect(await (await browser.get('/admin/tenants')).text()).not.toContain('/admin/admins');
      const page = await browser.get('/admin/admins');
      expect(page.status, sub).toBe(403);
      const invites = await openInviteCount();
      const forced: Array<[string, Record<string, string>]> = [
        ['/admin/admins/invites', {}],
        [`/admin/admins/invites/${open}/revoke`, {}],
        ['/admin/admins/remove', { identity: `discord:${DISCORD_ACCOUNT}` }],
      ];
      for (const [path, form] of forced) expect((await browser.post(path, { csrf, ...form }, { follow: false })).status, `${sub} ${path}`).toBe(403);
      expect(await openInviteCount()).toBe(invites);
      const refused = (await auditRows({ actor: `admin:corp:${sub}` })).filter((row) => row.action.startsWith('admin.') && row.outcome === 'refused');
      expect(refused.slice(0, 3).map((row) => [row.action, row.code]).sort()).toEqual([
        ['admin.invite', 'forbidden'],
        ['admin.invite_revoke', 'forbidden'],
        ['admin.remove', 'forbidden'],
      ]);
    }
    // The invited Discord owner is still one, and the invite still open.
    expect(await (await owner.browser.get('/admin/admins')).text()).toContain(`discord:${DISCORD_ACCOUNT}`);
    expect((await newBrowser().get(`/admin/invite/${token}`)).status).toBe(200);
  });
});

describe('invites through the operator API', () => {
  const OPERATOR_KEY = 'lg_operator_console_key_0123456789abcdefghij';
  const operator = (on: TestGateway, path: string, method = 'GET') => on.app.request(`/api/admin/v1${path}`, { method, headers: { authorization: `Bearer ${OPERATOR_KEY}`, 'user-agent': UA } });

  it('POST /console/invites makes a one-time link (201, shown once), GET lists the open ones by id, DELETE revokes one; audited as the operator key, never the link', async () => {
    const ops = await createTestGateway(database, { env: { ...env(), LINKGATE_ADMIN_KEYS: OPERATOR_KEY }, now: () => clock });
    const made = await operator(ops, '/console/invites', 'POST');
    expect(made.status).toBe(201);
    const invite = v.parse(CreatedInviteAnswer, await made.json());
    const token = invite.url.slice(`${BASE}/admin/invite/`.length);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    secrets.push(token);
    expect(Date.parse(invite.expiresAt) - clock).toBe(3600_000);
    // The link works on the console (of any instance on this database).
    expect((await newBrowser().get(`/admin/invite/${token}`)).status).toBe(200);

    const listed = v.parse(InvitesAnswer, await (await operator(ops, '/console/invites')).json());
    expect(listed.invites.map((i) => i.id)).toContain(invite.id);
    expect(JSON.stringify(listed)).not.toContain(token);

    expect((await operator(ops, `/console/invites/${invite.id}`, 'DELETE')).status).toBe(204);
    expect((await newBrowser().get(`/admin/invite/${token}`)).status).toBe(404);
    expect(v.parse(InvitesAnswer, await (await operator(ops, '/console/invites')).json()).invites.map((i) => i.id)).not.toContain(invite.id);
    const again = await operator(ops, `/console/invites/${invite.id}`, 'DELETE');
    expect(again.status).toBe(404);
    expect(await again.json()).toEqual({ error: { code: 'not_found', message: 'there is no open invite with this id (it was used, it expired, or it was revoked)' } });
    expect((await operator(ops, '/console/invites/inv_bad', 'DELETE')).status).toBe(400);

    const [createdRow] = await auditRows({ action: 'admin.invite' });
    expect(createdRow).toMatchObject({ actor: expect.stringMatching(/^operator-key:[0-9a-f]{12}$/), tenant: null, target: `invite:${invite.id}`, outcome: 'ok', userAgent: UA, detail: { expiresAt: invite.expiresAt } });
    const revoked = await auditRows({ action: 'admin.invite_revoke', actor: createdRow!.actor });
    expect(revoked.map((row) => [row.target, row.outcome, row.code])).toEqual([
      [null, 'refused', 'bad_request'],
      [`invite:${invite.id}`, 'refused', 'not_found'],
      [`invite:${invite.id}`, 'ok', null],
    ]);
    expect(JSON.stringify(await auditRows())).not.toContain(token);
  });

  it('refuses every invite route while LINKGATE_ADMINS is empty (409 console_closed), and writes no invite', async () => {
    const closed = await createTestGateway(database, { env: { ...env(), LINKGATE_ADMINS: '', LINKGATE_ADMIN_KEYS: OPERATOR_KEY }, now: () => clock });
    const before = (await database.db.select().from(consoleInvites)).length;
    for (const [path, method] of [['/console/invites', 'POST'], ['/console/invites', 'GET'], ['/console/invites/inv_AAAAAAAAAAAAAAAA', 'DELETE']] as const) {
      const answer = await operator(closed, path, method);
      expect(answer.status, `${method} ${path}`).toBe(409);
      expect(((await answer.json()) as { error: { code: string } }).error.code).toBe('console_closed');
    }
    expect((await database.db.select().from(consoleInvites)).length).toBe(before);
    const [row] = await auditRows({ action: 'admin.invite' });
    expect(row).toMatchObject({ outcome: 'refused', code: 'console_closed' });
  });
});

describe('the audit trail of console changes', () => {
  it('holds exactly one row per change made through the console, in order, and the CSV export has the same rows', async () => {
    const { browser, csrf } = await signedInAs(OWNER);
    const actor = `admin:corp:${OWNER}`;
    const since = (await auditRows({ actor }))[0]!.id;
    const key = await browser.submit('/admin/t/quizbot/api-keys', '/admin/t/quizbot/api-keys', { name: 'counted' });
    const html = await key.text();
    secrets.push(/<code id="new-api-key">([^<]+)<\/code>/.exec(html)![1]!);
    const id = /New API key (key_[A-Za-z0-9_-]+)/.exec(html)![1]!;
    await browser.post(`/admin/t/quizbot/api-keys/${id}/revoke`, { csrf }, { follow: false });
    await browser.post('/admin/tenants', { csrf, id: 'counted', name: 'Counted' }, { follow: false });
    await browser.post(`/admin/t/default/links/discord/${BOT_USER}/refresh`, { csrf }, { follow: false });
    const rows = (await auditRows({ actor })).filter((row) => Number(row.id) > Number(since)).reverse();
    expect(rows.map((row) => [row.action, row.tenant, row.target, row.outcome])).toEqual([
      ['api_key.create', 'quizbot', `api_key:${id}`, 'ok'],
      ['api_key.revoke', 'quizbot', `api_key:${id}`, 'ok'],
      ['tenant.create', 'counted', 'tenant:counted', 'ok'],
      ['link.refresh', 'default', `link:${BOT_USER}/discord`, 'ok'],
    ]);
    const csv = await (await browser.get(`/admin/audit.csv?actor=${encodeURIComponent(actor)}`)).text();
    const lines = csv.trim().split('\r\n').slice(1);
    // The export's own row is first (newest); then every row of this actor, as the list reads them.
    const listed = await auditRows({ actor });
    expect(lines).toHaveLength(listed.length);
    expect(lines.map((line) => line.split(',')[0])).toEqual(listed.map((row) => row.id));
    expect(lines[0]).toContain(',audit.export,');
  });

  it('holds no secret, key or token the tests created, in its rows or its CSV (nor does the gateway\'s log)', async () => {
    const rows = JSON.stringify(await auditRows());
    const { browser } = await signedInAs(OWNER);
    const csv = await (await browser.get('/admin/audit.csv')).text();
    expect(csv.split('\r\n').length).toBeGreaterThan(20);
    const logs = gateway.logs.join('\n');
    expect(secrets.length).toBeGreaterThan(20);
    for (const secret of secrets) {
      expect(rows).not.toContain(secret);
      expect(csv).not.toContain(secret);
      expect(logs).not.toContain(secret);
    }
  });
});
