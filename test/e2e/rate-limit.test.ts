import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { startFakeJellyfin, type FakeJellyfin } from '../fakes/jellyfin.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { launchChromium, listen } from './browser.ts';

const USER_ID = 'b7e1c2d3e4f5061728394a5b6c7d8e9f';

let database: Database;
let jellyfin: FakeJellyfin;
let gateway: TestGateway;
let server: { url: string; close(): Promise<void> };
let browser: Browser;

beforeAll(async () => {
  database = await createTestDatabase();
  jellyfin = await startFakeJellyfin({ serverName: 'Home' });
  jellyfin.users.set(USER_ID, { id: USER_ID, name: 'Ada', password: 'not used here' });
  // Two browser requests per address in any 3 s: the page load and one poll, then 429s.
  gateway = await createTestGateway(database, {
    env: { JELLYFIN_SERVER_URL: jellyfin.url, LINKGATE_BROWSER_RATE_LIMIT: '2', LINKGATE_BROWSER_RATE_WINDOW_SECONDS: '3' },
  });
  server = await listen(gateway.app.fetch);
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
  await jellyfin?.close();
  await database?.close();
});

describe('a rate-limited wait page', () => {
  it('backs off for Retry-After when its poll is refused, stays on the code, and still turns to success', async () => {
    const page = await (await browser.newContext()).newPage();
    const refusedPolls: number[] = [];
    page.on('response', (response) => {
      if (response.url().includes('/poll') && response.status() === 429) refusedPolls.push(Number(response.headers()['retry-after']));
    });
    await page.goto(`${server.url}/oauth/jellyfin/start?context=${await mintContext('jellyfin', 'rl-user')}`);
    const code = (await page.locator('.code').textContent())!.trim();
    let navigations = 0;
    page.on('framenavigated', () => (navigations += 1));

    await expect.poll(() => refusedPolls.length, { timeout: 15_000 }).toBeGreaterThan(0);
    expect(refusedPolls[0]).toBeGreaterThanOrEqual(1);
    expect(await page.locator('.code').textContent()).toContain(code);

    jellyfin.approve(code, USER_ID);
    await page.getByRole('heading', { name: 'Account linked' }).waitFor({ timeout: 20_000 });
    expect(navigations).toBe(0);
    expect((await gateway.api('/users/rl-user/links/jellyfin')).status).toBe(200);
    await page.context().close();
  }, 40_000);
});
