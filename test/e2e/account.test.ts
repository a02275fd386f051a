/**
 * The account page in Chromium (issue #21, done-when 6), at phone (390 px)
 * and desktop (1280 px) width: signed out, signed in with Discord (the fake,
 * reached by the browser through a route and by the gateway through a fetch
 * reroute), after an unlink, on the way to linking AniList again, and signed
 * out. Each page: no axe-core violation of any impact, nothing wider
 * than the screen, a screenshot in test/.tmp/screenshots/account/.
 */
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { startFakeDiscord, type FakeDiscord } from '../fakes/discord.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, reroute, type TestGateway } from '../helpers/gateway.ts';
import { inspectPage, launchChromium, listen, WIDTHS, type Width } from './browser.ts';

const SHOTS = fileURLToPath(new URL('../.tmp/screenshots/account', import.meta.url));
const DISCORD = { DISCORD_CLIENT_ID: '1100000000000000001', DISCORD_CLIENT_SECRET: 'discord-client-secret-0123456789', DISCORD_SCOPES: 'identify' };
const PEOPLE = { phone: '80351110224678390', desktop: '80351110224671280' } as const;

let database: Database;
let browser: Browser;
let discord: FakeDiscord;
let gateway: TestGateway;
let server: { url: string; close(): Promise<void> };

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  database = await createTestDatabase();
  // The gateway's address is its PUBLIC_BASE_URL (the Origin its forms are checked against): listen first, then build it.
  let app: TestGateway['app'] | undefined;
  server = await listen((request) => app!.fetch(request));
  discord = await startFakeDiscord({ clientId: DISCORD.DISCORD_CLIENT_ID, clientSecret: DISCORD.DISCORD_CLIENT_SECRET, redirectUris: [`${server.url}/oauth/discord/callback`] });
  for (const [width, id] of Object.entries(PEOPLE)) discord.users.set(id, { id, username: `nelly-${width}`, global_name: `Nelly (${width})` });
  gateway = await createTestGateway(database, {
    env: { PUBLIC_BASE_URL: server.url, ...DISCORD, ANILIST_CLIENT_ID: '12345', ANILIST_CLIENT_SECRET: 'anilist-client-secret-0123456789', LINKGATE_BRAND_NAME: 'Quiz Bot' },
    fetch: reroute({ 'https://discord.com': discord.origin }),
  });
  app = gateway.app;
  // Each person's AniList account, linked before (imported as a bot moving from another system would).
  const lines = Object.entries(PEOPLE).map(([width, id], n) =>
    JSON.stringify({ userId: id, provider: 'anilist', externalId: String(5000 + n), externalName: `NellyReads-${width}`, credentials: { accessToken: `anilist-access-${width}-0123456789` } }),
  );
  const imported = await gateway.api('/links:import', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: lines.join('\n') });
  expect(imported.status, await imported.clone().text()).toBe(200);
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
  await discord?.close();
  await database?.close();
});

/** Checks the page as it is now and saves its picture (inspectPage). */
async function inspect(page: Page, name: string, width: Width): Promise<void> {
  await inspectPage(page, `${SHOTS}/${name}-${width}.png`, name, width);
}

describe.each(Object.keys(WIDTHS) as Width[])('the account page at %s width', (width) => {
  it('signed out, signed in with Discord, after an unlink, linking again, signed out', async () => {
    // axe is injected as a script of its own: only the test's context lets it past the pages' strict CSP.
    const context = await browser.newContext({ viewport: WIDTHS[width], bypassCSP: true });
    // The person approves at Discord: its authorize page is the fake's approval, answered as a redirect back.
    await context.route('https://discord.com/**', (route) => {
      const asked = new URL(route.request().url());
      return route.fulfill({ status: 302, headers: { location: discord.approve(new URL(asked.pathname + asked.search, discord.origin), PEOPLE[width]).href } });
    });
    const page = await context.newPage();
    await page.goto(`${server.url}/me`);
    await page.getByRole('heading', { name: 'Your linked accounts' }).waitFor();
    await inspect(page, 'account-sign-in', width);

    await page.getByRole('button', { name: 'Sign in with Discord' }).click();
    await page.getByText(`Signed in as Nelly (${width})`).waitFor();
    expect(new URL(page.url()).pathname).toBe('/me');
    expect(await page.getByRole('heading', { name: 'AniList' }).count()).toBe(1);
    expect(await page.getByText(`NellyReads-${width}`).count()).toBe(1);
    await inspect(page, 'account', width);

    await page.getByRole('button', { name: 'Unlink AniList' }).click();
    await page.getByRole('status').filter({ hasText: 'AniList was unlinked.' }).waitFor();
    expect((await gateway.api(`/users/${PEOPLE[width]}/links/anilist`)).status).toBe(404);
    await inspect(page, 'account-unlinked', width);

    // Linking it again starts the bot's own kind of link: its confirmation page.
    await page.getByRole('button', { name: 'Link AniList' }).click();
    await page.getByRole('heading', { name: 'Link your AniList account?' }).waitFor();
    await page.goBack();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByText('You are signed out.').waitFor();
    await inspect(page, 'account-signed-out', width);
    await context.close();
  });
});
