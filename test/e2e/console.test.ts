/**
 * The admin console in Chromium (issue #21), at phone (390 px) and desktop
 * (1280 px) widths, on a gateway served over real HTTP: an owner signs in
 * through the in-process OpenID provider, creates a tenant, configures a
 * provider, creates an API key (shown once), finds a link by its account's
 * name, opens it, sees its events and unlinks it; a support admin sees the
 * pages with no secret and no write control, and a forced write is refused;
 * an owner manages admins (an invite shown once, then revoked); support has no Admins page;
 * a person not in LINKGATE_ADMINS is refused, and that is audited. Every page:
 * no axe-core violation of any impact (the issue asks for no serious or
 * critical one), nothing wider than the screen,
 * and a screenshot in test/.tmp/screenshots/console/ (and, with
 * UPDATE_DOCS_SCREENSHOTS=1, the ones the README shows in docs/images/console/).
 */
import { copyFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import * as v from 'valibot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { list as listAudit } from '../../src/core/audit.ts';
import type { Database } from '../../src/db/client.ts';
import { startFakeDiscord, type FakeDiscord } from '../fakes/discord.ts';
import { startTestIdp, type TestIdp } from '../fakes/oidc-idp.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { atFake, createTestGateway, reroute, type TestGateway } from '../helpers/gateway.ts';
import { inspectPage, launchChromium, listen, WIDTHS, type Width } from './browser.ts';

const SHOTS = fileURLToPath(new URL('../.tmp/screenshots/console', import.meta.url));
const DOC_SHOTS = fileURLToPath(new URL('../../docs/images/console', import.meta.url));
/** The pictures README's "Operating Linkgate from the browser" shows. */
const IN_README = new Set(['tenants-desktop', 'provider-desktop', 'api-key-desktop', 'link-desktop', 'audit-desktop', 'admins-desktop', 'link-support-phone', 'refused-phone']);
const CORP_SECRET = 'corp-client-secret-0123456789abcdef';
const TENANT_CORP_SECRET = 'tenant-corp-secret-abcdefghijklmnopqrstuv';
const DISCORD = { DISCORD_CLIENT_ID: '1100000000000000001', DISCORD_CLIENT_SECRET: 'discord-client-secret-0123456789', DISCORD_SCOPES: 'identify' };
const OWNER = 'owner-ada';
const SUPPORT = 'support-sam';
const STRANGER = 'stranger-steve';

let database: Database;
let browser: Browser;
let idp: TestIdp;
let discord: FakeDiscord;
let gateway: TestGateway;
let server: { url: string; close(): Promise<void> };
/** Every secret the tests made: none may be on a page support sees. */
const secrets: string[] = [CORP_SECRET, TENANT_CORP_SECRET, DISCORD.DISCORD_CLIENT_SECRET];

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  database = await createTestDatabase();
  // The port first: the providers must know the gateway's callback URLs before it exists.
  // The server's bindings go through too: the gateway reads the client's address from them.
  let handler: (request: Request, env?: unknown) => Response | Promise<Response> = () => new Response('starting', { status: 503 });
  server = await listen((request: Request, env?: unknown) => handler(request, env));
  idp = await startTestIdp({ redirectUris: [`${server.url}/oauth/corp/callback`], clientId: 'linkgate', clientSecret: CORP_SECRET });
  discord = await startFakeDiscord({ clientId: DISCORD.DISCORD_CLIENT_ID, clientSecret: DISCORD.DISCORD_CLIENT_SECRET, redirectUris: [`${server.url}/oauth/discord/callback`] });
  gateway = await createTestGateway(database, {
    env: {
      PUBLIC_BASE_URL: server.url,
      LINKGATE_ADMINS: `owner=corp:${OWNER},support=corp:${SUPPORT}`,
      OIDC_PROVIDERS: 'corp',
      CORP_DISPLAY_NAME: 'Corp SSO',
      CORP_ISSUER: idp.issuer,
      CORP_CLIENT_ID: 'linkgate',
      CORP_CLIENT_SECRET: CORP_SECRET,
      CORP_SCOPES: 'openid profile',
      ...DISCORD,
    },
    fetch: reroute({ 'https://discord.com': discord.origin, [idp.issuer]: idp.issuer }),
  });
  handler = (request, env) => gateway.app.fetch(request, env);
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await Promise.all([idp?.close(), discord?.close()]);
  await database?.close();
});

/** A bot's user links Discord account `account` in the default tenant, as the bot flow does it (over real HTTP). */
async function linkDiscord(userId: string, account: string, name: string) {
  discord.users.set(account, { id: account, username: name.toLowerCase().replaceAll(' ', ''), global_name: name });
  const made = await gateway.api('/link-urls', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId, provider: 'discord' }) });
  const { url } = v.parse(v.object({ url: v.string() }), await made.json());
  const person = new TestBrowser((path, init) => fetch(new URL(path, server.url), { ...init, redirect: 'manual' }));
  const opened = await person.openLink(url);
  const back = discord.approve(atFake(new URL(opened.headers.get('location')!), discord.origin), account);
  expect((await person.get(back.pathname + back.search)).status).toBe(200);
}

/** Checks the page as it is now and saves its picture (inspectPage); the README's pictures are copied when asked. */
async function inspect(page: Page, name: string, width: Width): Promise<void> {
  const file = `${SHOTS}/${name}-${width}.png`;
  await inspectPage(page, file, name, width);
  if (process.env.UPDATE_DOCS_SCREENSHOTS === '1' && IN_README.has(`${name}-${width}`)) {
    mkdirSync(DOC_SHOTS, { recursive: true });
    copyFileSync(file, `${DOC_SHOTS}/${name}-${width}.png`);
  }
}

/**
 * Signs in at /admin as `sub`: the console's chooser in Chromium, the IdP's
 * login and consent by its headless driver (the test IdP has no pages), then
 * Chromium back at the gateway's callback, where the flow's browser cookie is.
 */
async function signIn(context: BrowserContext, sub: string): Promise<Page> {
  const page = await context.newPage();
  let authorization: string | undefined;
  // The first request of the redirect chain at the IdP is its authorization request.
  page.on('request', (request) => {
    if (authorization === undefined && request.url().startsWith(`${idp.issuer}/`)) authorization = request.url();
  });
  await page.goto(`${server.url}/admin`);
  await page.getByRole('heading', { name: 'Sign in to the Linkgate console' }).waitFor();
  await page.getByRole('button', { name: 'Continue with Corp SSO' }).click();
  await expect.poll(() => authorization).toBeDefined();
  const back = await idp.login(authorization!, sub);
  await page.goto(back.href);
  return page;
}

describe.each(Object.keys(WIDTHS) as Width[])('the console at %s width', (width) => {
  const tenant = `quiz-${width}`;
  const botUser = width === 'phone' ? '300000000000000001' : '300000000000000002';
  const account = width === 'phone' ? '90000000000000001' : '90000000000000002';
  const accountName = width === 'phone' ? 'Phoebe Quizmaster' : 'Desmond Quizmaster';
  const open = () => browser.newContext({ viewport: WIDTHS[width], bypassCSP: true });

  beforeAll(async () => {
    await linkDiscord(botUser, account, accountName);
  });

  it('an owner signs in, creates a tenant, configures a provider, creates an API key (shown once), finds a link by name, sees its events and unlinks it', async () => {
    const context = await open();
    const chooser = await context.newPage();
    await chooser.goto(`${server.url}/admin`);
    await inspect(chooser, 'sign-in', width);
    await chooser.close();

    const page = await signIn(context, OWNER);
    await page.getByRole('heading', { name: 'Tenants' }).waitFor();
    expect(await page.locator('#signed-in-as').textContent()).toBe(`corp:${OWNER} · owner`);
    await inspect(page, 'tenants', width);

    await page.getByLabel('Id').fill(tenant);
    await page.getByLabel('Name').fill(`Quiz Bot (${width})`);
    await page.getByRole('button', { name: 'Create tenant' }).click();
    await page.getByRole('heading', { name: `Quiz Bot (${width})` }).waitFor();
    await inspect(page, 'tenant', width);

    await page.getByLabel('Another provider, by id').fill('corp');
    await page.getByRole('button', { name: 'Configure', exact: true }).click();
    await page.getByLabel('Other variables').fill(`CORP_ISSUER=${idp.issuer}\nCORP_CLIENT_ID=quiz\nCORP_CLIENT_SECRET=${TENANT_CORP_SECRET}\nCORP_SCOPES=openid profile`);
    await page.getByRole('button', { name: 'Save configuration' }).click();
    await page.getByLabel('CORP_CLIENT_SECRET').waitFor();
    // Write-only: the secret's field is empty, the page never holds it.
    expect(await page.getByLabel('CORP_CLIENT_SECRET').inputValue()).toBe('');
    expect(await page.content()).not.toContain(TENANT_CORP_SECRET);
    expect(await page.locator('#callback-url').textContent()).toBe(`${server.url}/oauth/corp/callback`);
    await page.getByRole('button', { name: 'Test the configuration' }).click();
    await page.locator('#test-result').waitFor();
    await inspect(page, 'provider', width);

    await page.getByRole('link', { name: 'API keys' }).click();
    await page.getByLabel('Name').fill('quiz bot');
    await page.getByRole('button', { name: 'Create key' }).click();
    const key = (await page.locator('#new-api-key').textContent())!;
    secrets.push(key);
    expect((await gateway.app.request('/api/v1/providers', { headers: { authorization: `Bearer ${key}`, 'x-tenant-id': tenant } })).status).toBe(200);
    await inspect(page, 'api-key', width);
    // Reloading the answer sends the form again: it makes no second key, and says so.
    await page.reload();
    await page.locator('#error-code').waitFor();
    expect(await page.locator('#error-code').textContent()).toBe('form_already_sent');
    expect(await page.content()).not.toContain(key);
    await inspect(page, 'form-already-sent', width);
    // Shown once: the list shows the key's name and use, never the key again.
    await page.getByRole('link', { name: 'Back to the page' }).click();
    await page.getByRole('cell', { name: 'quiz bot' }).waitFor();
    expect(await page.getByRole('cell', { name: 'quiz bot' }).count()).toBe(1);
    expect(await page.content()).not.toContain(key);

    await page.goto(`${server.url}/admin/t/default/links`);
    await page.getByLabel('User id, external id or name').fill(accountName.split(' ')[0]!.toLowerCase());
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('link', { name: botUser }).click();
    await page.getByRole('heading', { name: `discord link of ${botUser}` }).waitFor();
    expect(await page.locator('#link-account').textContent()).toContain(accountName);
    await page.getByRole('cell', { name: 'linked', exact: true }).waitFor();
    await inspect(page, 'link', width);
    await page.getByRole('button', { name: 'Unlink' }).click();
    await page.getByRole('heading', { name: 'Links' }).waitFor();
    expect((await gateway.api(`/users/${botUser}/links/discord`)).status).toBe(404);

    await page.getByRole('link', { name: 'Audit trail' }).click();
    await page.getByRole('cell', { name: 'link.delete' }).first().waitFor();
    await inspect(page, 'audit', width);
    const [row] = (await listAudit(database.db, { action: 'link.delete', tenant: 'default' })).events;
    expect(row).toMatchObject({ actor: `admin:corp:${OWNER}`, target: `link:${botUser}/discord`, outcome: 'ok' });
    await context.close();
    await linkDiscord(botUser, account, accountName);
  });

  it('an owner opens Admins: LINKGATE_ADMINS read-only, creates an invite shown once, and revokes it', async () => {
    const context = await open();
    const page = await signIn(context, OWNER);
    await page.getByRole('heading', { name: 'Tenants' }).waitFor();
    await page.getByRole('link', { name: 'Admins' }).click();
    await page.getByRole('heading', { name: 'Admins', exact: true }).waitFor();
    expect(await page.getByText('from LINKGATE_ADMINS', { exact: true }).count()).toBe(2);
    await page.getByRole('button', { name: 'Create an invite' }).click();
    const url = (await page.locator('#invite-url').textContent())!;
    expect(url).toMatch(new RegExp(`^${server.url}/admin/invite/[A-Za-z0-9_-]{43}$`));
    secrets.push(url.slice(url.lastIndexOf('/') + 1));
    await page.getByRole('region', { name: 'Open invites' }).waitFor();
    await inspect(page, 'admins', width);
    // Revoked: the list has one fewer, and the link is refused.
    const revocable = await page.getByRole('button', { name: 'Revoke' }).count();
    await page.getByRole('button', { name: 'Revoke' }).last().click();
    await page.getByRole('heading', { name: 'Admins', exact: true }).waitFor();
    expect(await page.getByRole('button', { name: 'Revoke' }).count()).toBe(revocable - 1);
    expect((await fetch(url)).status).toBe(404);
    const [row] = (await listAudit(database.db, { action: 'admin.invite_revoke' })).events;
    expect(row).toMatchObject({ actor: `admin:corp:${OWNER}`, outcome: 'ok' });
    await context.close();
  });

  it('a support admin sees the same pages without any secret or write control, and a forced write is refused', async () => {
    const context = await open();
    const page = await signIn(context, SUPPORT);
    await page.getByRole('heading', { name: 'Tenants' }).waitFor();
    const pages: Array<[string, string]> = [
      ['tenants-support', '/admin/tenants'],
      ['provider-support', `/admin/t/${tenant}/providers/corp`],
      ['api-keys-support', `/admin/t/${tenant}/api-keys`],
      ['link-support', `/admin/t/default/links/discord/${botUser}`],
      ['audit-support', `/admin/audit?tenant=${tenant}`],
    ];
    for (const [name, path] of pages) {
      await page.goto(`${server.url}${path}`);
      await page.locator('#signed-in-as').waitFor();
      const html = await page.content();
      for (const secret of secrets) expect(html, path).not.toContain(secret);
      // No control that changes anything: the only form that posts is signing out.
      expect(await page.locator('form[method="post"]').count(), path).toBe(1);
      expect(await page.getByRole('button', { name: /Create|Save|Revoke|Unlink|Refresh|Retire|Delete|Test/ }).count(), path).toBe(0);
      expect(await page.getByRole('link', { name: 'Admins' }).count(), path).toBe(0);
      await inspect(page, name, width);
    }
    // Forced: the page's own token, posted by hand from the page to the unlink it does not show.
    const status = await page.evaluate(async (path) => {
      const doc = (globalThis as unknown as { document: { querySelector(s: string): { value: string } } }).document;
      const csrf = doc.querySelector('input[name="csrf"]').value;
      const answer = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `csrf=${encodeURIComponent(csrf)}` });
      return answer.status;
    }, `/admin/t/default/links/discord/${botUser}/unlink`);
    expect(status).toBe(403);
    expect((await gateway.api(`/users/${botUser}/links/discord`)).status).toBe(200);
    await page.goto(`${server.url}/admin/admins`);
    await page.getByRole('heading', { name: 'Not allowed' }).waitFor();
    await context.close();
  });

  it('a person not in LINKGATE_ADMINS is refused, and the refusal is audited', async () => {
    const context = await open();
    const before = (await listAudit(database.db, { action: 'admin.sign_in_refused' })).events.length;
    const page = await signIn(context, `${STRANGER}-${width}`);
    await page.getByRole('heading', { name: 'You are not an admin here' }).waitFor();
    await inspect(page, 'refused', width);
    await page.goto(`${server.url}/admin/tenants`);
    await page.getByRole('heading', { name: 'Sign in to the Linkgate console' }).waitFor();
    const rows = (await listAudit(database.db, { action: 'admin.sign_in_refused' })).events;
    expect(rows.length).toBe(before + 1);
    expect(rows[0]).toMatchObject({ actor: `admin:corp:${STRANGER}-${width}`, outcome: 'refused', clientAddress: '127.0.0.1' });
    expect(rows[0]!.userAgent).toContain('Chrome');
    await context.close();
  });
});
