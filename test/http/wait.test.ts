import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/client.ts';
import { mintContext } from '../helpers/context.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { fileURLToPath } from 'node:url';

const FIXTURES = fileURLToPath(new URL('../fixtures/providers', import.meta.url));
let database: Database & { url: string | undefined };
let second: Database | undefined;
let gateway: TestGateway;
let other: TestGateway;

beforeAll(async () => {
  database = await createTestDatabase();
  gateway = await createTestGateway(database, { providersDir: FIXTURES });
  // Another instance: its own pool (and LISTEN connection) on PostgreSQL; the same PGlite otherwise.
  second = database.url ? await openDatabase({ url: database.url }) : undefined;
  other = await createTestGateway(second ?? database, { providersDir: FIXTURES });
});
afterAll(async () => {
  await second?.close();
  await database.close();
});

/** Links `userId` to the pin fixture provider through the browser flow on `via`. */
async function link(via: TestGateway, userId: string) {
  const browser = new TestBrowser((path, init) => via.app.request(path, init));
  const form = await (await browser.openLink(`/oauth/pin/start?context=${await mintContext('pin', userId)}`)).text();
  const state = /name="state" value="([^"]+)"/.exec(form)![1]!;
  await browser.post('/oauth/pin/callback', { state, username: userId, password: 'correct horse' });
  await browser.get(`/oauth/pin/poll?state=${state}`);
  expect(await (await browser.get(`/oauth/pin/poll?state=${state}`)).json()).toEqual({ status: 'linked' });
}

describe('waiting for a link', () => {
  it('answers 200 with the link the moment the user finishes on another instance', async () => {
    const started = Date.now();
    const waiting = other.api('/users/waiter-1/links/pin/wait?timeoutSeconds=20');
    await new Promise((r) => setTimeout(r, 300));
    await link(gateway, 'waiter-1');
    const response = await waiting;
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ userId: 'waiter-1', provider: 'pin', externalId: 'waiter-1', status: 'active' });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('answers at once when the user had already finished', async () => {
    await link(gateway, 'waiter-2');
    const response = await other.api('/users/waiter-2/links/pin/wait?timeoutSeconds=30');
    expect(response.status).toBe(200);
  });

  it('answers 204 on timeout', async () => {
    const response = await gateway.api('/users/nobody/links/pin/wait?timeoutSeconds=1');
    expect(response.status).toBe(204);
  });

  it.each(['0', '61', 'soon', '-1'])('refuses timeoutSeconds=%s with 400', async (value) => {
    const response = await gateway.api(`/users/nobody/links/pin/wait?timeoutSeconds=${value}`);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: 'bad_request' } });
  });
});
