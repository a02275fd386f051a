/**
 * The web-session API in Chromium: a link on the app's page starts the
 * sign-in (`mode=redirect`), the person signs in on the gateway's form and
 * waits for the approval, the wait page sends them to `postLoginRedirect`,
 * and the app's page (same origin, as behind one reverse proxy) reads the
 * session with `fetch` and logs out. The browser, not a test helper, decides
 * which cookies it keeps and sends.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { getRequestListener } from '@hono/node-server';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway } from '../helpers/gateway.ts';
import { launchChromium } from './browser.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/providers', import.meta.url));
const ADMIN_KEY = 'admin_0123456789abcdefghijklmnopqrstuvwxyz';

let database: Database;
let browser: Browser;
let server: Server;
let base: string;
let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.writeHead(503).end();

beforeAll(async () => {
  database = await createTestDatabase();
  // PUBLIC_BASE_URL is where the browser reaches the gateway: the port first, then the gateway.
  server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const gateway = await createTestGateway(database, { providersDir: FIXTURES, env: { PUBLIC_BASE_URL: base, LINKGATE_ADMIN_KEYS: ADMIN_KEY } });
  handler = getRequestListener(gateway.app.fetch);
  const created = await gateway.app.request('/api/admin/v1/tenants/default/apps', {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'Dashboard', redirectUris: [`${base}/dashboard`], type: 'public' }),
  });
  expect(created.status).toBe(201);
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await database?.close();
});

describe('a web session in Chromium', () => {
  it('signs in through the gateway\'s form and wait page, lands on postLoginRedirect with an HttpOnly SameSite=Lax cookie the app\'s page can use but not read, and logs out', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/api/auth/pin/start?mode=redirect&postLoginRedirect=${encodeURIComponent(`${base}/dashboard`)}`);
    await page.getByRole('heading', { name: 'Sign in to Pin' }).waitFor();
    await page.getByLabel('Username').fill('ada-web');
    await page.getByLabel('Password').fill('correct horse');
    await page.getByRole('button', { name: 'Sign in' }).click();
    // The wait page polls; the fixture approves on the second poll, and the page goes to postLoginRedirect.
    await page.waitForURL(`${base}/dashboard`);

    const cookie = (await context.cookies(base)).find((c) => c.name === 'linkgate_session');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/', secure: false });
    expect(cookie!.expires * 1000).toBeGreaterThan(Date.now() + 8 * 3600 * 1000 - 120_000);

    const read = () =>
      page.evaluate(async () => {
        const answer = await fetch('/api/auth/session');
        return { status: answer.status, body: (await answer.json()) as unknown, visible: (globalThis as unknown as { document: { cookie: string } }).document.cookie };
      });
    const signedIn = await read();
    expect(signedIn.status).toBe(200);
    expect(signedIn.body).toMatchObject({ tenant: 'default', user: { id: expect.stringMatching(/^usr_/) }, identity: { provider: 'pin', name: 'ada-web' } });
    // HttpOnly: the page's script cannot read it.
    expect(signedIn.visible).not.toContain('linkgate_session');

    const loggedOut = await page.evaluate(async () => (await fetch('/api/auth/logout', { method: 'POST' })).status);
    expect(loggedOut).toBe(204);
    expect((await context.cookies(base)).some((c) => c.name === 'linkgate_session')).toBe(false);
    expect((await read()).status).toBe(401);

    // The cookie the browser had, sent again by hand: ended on the server too.
    const replayed = await fetch(`${base}/api/auth/session`, { headers: { cookie: `linkgate_session=${cookie!.value}` } });
    expect(replayed.status).toBe(401);
    await context.close();
  });
});
