import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { startFakeJellyfin, type FakeJellyfin } from '../fakes/jellyfin.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { launchChromium, listen } from './browser.ts';
import { mintContext } from '../helpers/context.ts';

/** Screenshots of every page, phone and desktop, land here (git-ignored). */
const SHOTS = fileURLToPath(new URL('../.tmp/screenshots/jellyfin', import.meta.url));
const VIEWPORTS = { phone: { width: 390, height: 844 }, desktop: { width: 1280, height: 800 } } as const;
const USER_ID = '4f6a1b2c3d4e5f60718293a4b5c6d7e8';
const PASSWORD = 'correct horse battery staple';

let database: Database;
let jellyfin: FakeJellyfin;
let gateway: TestGateway;
let server: { url: string; close(): Promise<void> };
let browser: Browser;

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  database = await createTestDatabase();
  jellyfin = await startFakeJellyfin({ serverName: 'Home' });
  jellyfin.users.set(USER_ID, { id: USER_ID, name: 'Ada', password: PASSWORD });
  // One Jellyfin account, several bot users in this file.
  gateway = await createTestGateway(database, { env: { JELLYFIN_SERVER_URL: jellyfin.url, LINK_ALLOW_SHARED_ACCOUNTS: 'true' } });
  server = await listen(gateway.app.fetch);
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
  await jellyfin?.close();
  await database?.close();
});

const mint = (userId: string) => mintContext('jellyfin', userId);

async function open(userId: string, viewport: keyof typeof VIEWPORTS, javaScriptEnabled = true): Promise<Page> {
  const context = await browser.newContext({ viewport: VIEWPORTS[viewport], javaScriptEnabled });
  const page = await context.newPage();
  await page.goto(`${server.url}/oauth/jellyfin/start?context=${await mint(userId)}`);
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL(/\/oauth\/jellyfin\/continue\?/);
  return page;
}

const shoot = (page: Page, name: string) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
const linked = async (userId: string) => (await gateway.api(`/users/${userId}/links/jellyfin`)).status === 200;

describe.each(Object.keys(VIEWPORTS) as Array<keyof typeof VIEWPORTS>)('Jellyfin pages on a %s', (viewport) => {
  it('Quick Connect: the code is approved on the server and the page turns to success without a reload', async () => {
    const userId = `qc-${viewport}`;
    const page = await open(userId, viewport);
    const code = (await page.locator('.code').textContent())!.trim();
    expect(code).toMatch(/^\d{6}$/);
    await shoot(page, `${viewport}-quick-connect`);
    let navigations = 0;
    page.on('framenavigated', () => (navigations += 1));
    jellyfin.approve(code, USER_ID);
    await page.getByRole('heading', { name: 'Account linked' }).waitFor({ timeout: 15_000 });
    expect(navigations).toBe(0);
    await shoot(page, `${viewport}-linked`);
    expect(await linked(userId)).toBe(true);
    await page.context().close();
  });

  it('password path with JavaScript off, after a wrong password', async () => {
    const userId = `pw-${viewport}`;
    const page = await open(userId, viewport, false);
    await page.getByRole('button', { name: 'Sign in with a password instead' }).click();
    await page.getByLabel('Username').fill('Ada');
    await page.getByLabel('Password').fill('not the password');
    await shoot(page, `${viewport}-password`);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('alert').waitFor();
    expect(await page.getByRole('alert').textContent()).toContain('Wrong username or password.');
    expect(await page.getByLabel('Password').inputValue()).toBe('');
    await shoot(page, `${viewport}-wrong-password`);
    expect(await linked(userId)).toBe(false);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('heading', { name: 'Account linked' }).waitFor();
    expect(await linked(userId)).toBe(true);
    await page.context().close();
  });

  it('Quick Connect disabled: the password form comes first', async () => {
    jellyfin.quickConnectEnabled = false;
    try {
      const page = await open(`noqc-${viewport}`, viewport);
      await page.getByRole('heading', { name: 'Sign in to Jellyfin' }).waitFor();
      await shoot(page, `${viewport}-quick-connect-disabled`);
      await page.context().close();
    } finally {
      jellyfin.quickConnectEnabled = true;
    }
  });
});

describe('Jellyfin unreachable', () => {
  it('shows a page saying the server is not answering, and stores nothing', async () => {
    const down = await createTestGateway(database, { env: { JELLYFIN_SERVER_URL: 'http://127.0.0.1:9' } });
    const downServer = await listen(down.app.fetch);
    try {
      for (const [name, size] of Object.entries(VIEWPORTS)) {
        const context = await browser.newContext({ viewport: size });
        const page = await context.newPage();
        await page.goto(`${downServer.url}/oauth/jellyfin/start?context=${await mint(`down-${name}`)}`);
        const [response] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.getByRole('button', { name: 'Continue' }).click()]);
        expect(response.status()).toBe(502);
        await page.getByRole('heading', { name: 'Jellyfin is not answering properly' }).waitFor();
        await shoot(page, `${name}-unreachable`);
        expect((await down.api(`/users/down-${name}/links/jellyfin`)).status).toBe(404);
        await context.close();
      }
    } finally {
      await downServer.close();
    }
  });
});

describe('Jellyfin wait page behind a busy address', () => {
  it('backs off for Retry-After when its poll is refused, stays on the code, and still turns to success', async () => {
    // Two browser requests per address in any 3 s: the page load and one poll, then 429s.
    const limited = await createTestGateway(database, {
      env: { JELLYFIN_SERVER_URL: jellyfin.url, LINK_ALLOW_SHARED_ACCOUNTS: 'true', LINKGATE_BROWSER_RATE_LIMIT: '2', LINKGATE_BROWSER_RATE_WINDOW_SECONDS: '3' },
    });
    const limitedServer = await listen(limited.app.fetch);
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const refusedPolls: number[] = [];
      page.on('response', (response) => {
        if (response.url().includes('/poll') && response.status() === 429) refusedPolls.push(Number(response.headers()['retry-after']));
      });
      // Confirmed on an unlimited instance; the wait page then runs on the limited one (same
      // database, same host: the browser's cookie goes to both ports).
      await page.goto(`${server.url}/oauth/jellyfin/start?context=${await mint('rate-limited')}`);
      await page.getByRole('button', { name: 'Continue' }).click();
      await page.waitForURL(/\/oauth\/jellyfin\/continue\?/);
      await page.goto(`${limitedServer.url}${new URL(page.url()).pathname}${new URL(page.url()).search}`);
      const code = (await page.locator('.code').textContent())!.trim();
      let navigations = 0;
      page.on('framenavigated', () => (navigations += 1));

      await expect.poll(() => refusedPolls.length, { timeout: 15_000 }).toBeGreaterThan(0);
      expect(refusedPolls[0]).toBeGreaterThanOrEqual(1);
      expect(await page.locator('.code').textContent()).toContain(code);

      jellyfin.approve(code, USER_ID);
      await page.getByRole('heading', { name: 'Account linked' }).waitFor({ timeout: 20_000 });
      expect(navigations).toBe(0);
      expect((await limited.api('/users/rate-limited/links/jellyfin')).status).toBe(200);
    } finally {
      await context.close();
      await limitedServer.close();
    }
  }, 40_000);
});
