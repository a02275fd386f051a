import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { launchChromium, listen } from './browser.ts';
import { mintContext } from '../helpers/context.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/providers', import.meta.url));
const SHOTS = fileURLToPath(new URL('../.tmp/screenshots', import.meta.url));

let database: Database;
let gateway: TestGateway;
let server: { url: string; close(): Promise<void> };
let browser: Browser;

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  database = await createTestDatabase();
  gateway = await createTestGateway(database, { providersDir: FIXTURES });
  server = await listen(gateway.app.fetch);
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
  await database?.close();
});

const mint = (userId: string) => mintContext('pin', userId);

describe('gateway pages in Chromium', () => {
  it('signs in through the form, shows the code, and the page finishes by itself once approved', async () => {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const page = await context.newPage();
    const violations: string[] = [];
    page.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text())) violations.push(message.text());
    });
    await page.goto(`${server.url}/oauth/pin/start?context=${await mint('e2e-1')}`);
    await page.getByRole('heading', { name: 'Link your Pin account?' }).waitFor();
    await page.screenshot({ path: `${SHOTS}/confirm.png`, fullPage: true });
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('heading', { name: 'Sign in to Pin' }).waitFor();
    await page.screenshot({ path: `${SHOTS}/form.png`, fullPage: true });

    await page.getByLabel('Username').fill('ada');
    await page.getByLabel('Password').fill('wrong-5ecret');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor();
    expect(await page.getByRole('alert').textContent()).toContain('Wrong username or password.');
    expect(await page.content()).not.toContain('wrong-5ecret');
    await page.screenshot({ path: `${SHOTS}/form-error.png`, fullPage: true });

    await page.getByLabel('Password').fill('correct horse');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('ABC123').waitFor();
    await page.screenshot({ path: `${SHOTS}/wait.png`, fullPage: true });
    // The page's script polls (pollMs 1000) and shows success by itself on the second poll, without a reload.
    let navigations = 0;
    page.on('framenavigated', () => (navigations += 1));
    await page.getByRole('heading', { name: 'Account linked' }).waitFor({ timeout: 10_000 });
    expect(navigations).toBe(0);
    await page.screenshot({ path: `${SHOTS}/linked.png`, fullPage: true });
    expect(violations).toEqual([]);
    expect(await (await gateway.api('/users/e2e-1/links/pin')).json()).toMatchObject({ externalId: 'ada' });
    await context.close();
  });

  it('works with JavaScript off: the button checks the code', async () => {
    const context = await browser.newContext({ javaScriptEnabled: false });
    const page = await context.newPage();
    await page.goto(`${server.url}/oauth/pin/start?context=${await mint('e2e-2')}`);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByLabel('Username').fill('grace');
    await page.getByLabel('Password').fill('correct horse');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'I have approved it' }).click();
    await page.getByRole('button', { name: 'I have approved it' }).click();
    await page.getByRole('heading', { name: 'Account linked' }).waitFor();
    expect(await (await gateway.api('/users/e2e-2/links/pin')).json()).toMatchObject({ externalId: 'grace' });
    await context.close();
  });

  it('shows an error page a person can act on for an expired link', async () => {
    const page = await browser.newPage();
    const response = await page.goto(`${server.url}/oauth/pin/start?context=not-a-jwt`);
    expect(response!.status()).toBe(400);
    await expect(page.getByRole('heading').textContent()).resolves.toBe('This link is not valid');
    await expect(page.getByText('Ask the bot for a new link').isVisible()).resolves.toBe(true);
    await page.screenshot({ path: `${SHOTS}/error.png`, fullPage: true });
    await page.close();
  });

  it('refuses a confirmation posted from another site: the page says so, and nothing starts', async () => {
    const link = `${server.url}/oauth/pin/start?context=${await mint('e2e-csrf')}`;
    // The victim's browser has opened the link (and holds our cookie).
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(link);
    const csrf = await page.locator('form[action="/oauth/pin/start"] input[name="csrf"]').getAttribute('value');
    // An attacker's page on another origin of the same site (another port: SameSite lets our cookie through,
    // so only the token stops it) auto-submits the form with the context and a guessed token.
    const attacker = await listen(() => new Response(`<!doctype html><form id="f" method="post" action="${server.url}/oauth/pin/start"><input name="context" value="${new URL(link).searchParams.get('context')}"><input name="csrf" value="${csrf!.slice(0, -2)}AA"></form><script>document.getElementById('f').submit()</script>`, { headers: { 'content-type': 'text/html' } }));
    try {
      const evil = await context.newPage();
      const [response] = await Promise.all([evil.waitForResponse((r) => r.url().endsWith('/oauth/pin/start')), evil.goto(attacker.url)]);
      expect(response.status()).toBe(403);
      await evil.getByRole('heading', { name: 'Please continue from the link in this browser' }).waitFor();
      await evil.screenshot({ path: `${SHOTS}/csrf-refused.png`, fullPage: true });
      // The person's own Continue still works.
      await page.getByRole('button', { name: 'Continue' }).click();
      await page.getByRole('heading', { name: 'Sign in to Pin' }).waitFor();
    } finally {
      await attacker.close();
      await context.close();
    }
  });
});
