import { getEventListeners } from 'node:events';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLinkEvents } from '../../src/core/events.ts';
import { openDatabase, type Database } from '../../src/db/client.ts';
import { createLogger } from '../../src/observability.ts';
import { mintContext } from '../helpers/context.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase, pgliteSnapshot } from '../helpers/database.ts';
import { API_KEY, createTestGateway, type TestGateway } from '../helpers/gateway.ts';
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

  it('adds one abort listener to the request for the whole wait, however often it wakes, and removes it', async () => {
    const controller = new AbortController();
    const request = new Request('http://gateway.test/api/v1/users/restless/links/pin/wait?timeoutSeconds=30', {
      headers: { authorization: `Bearer ${API_KEY}` },
      signal: controller.signal,
    });
    const waiting = gateway.app.fetch(request);
    // Changes to the link that do not make it active wake the waiter, which looks and waits again.
    const events = createLinkEvents(database, createLogger('silent'));
    for (let i = 0; i < 5; i += 1) {
      await new Promise((r) => setTimeout(r, 60));
      await events.publish({ tenant: 'default', userId: 'restless', provider: 'pin' });
    }
    await new Promise((r) => setTimeout(r, 60));
    expect(getEventListeners(request.signal, 'abort')).toHaveLength(1);
    controller.abort();
    expect((await waiting).status).toBe(204);
    expect(getEventListeners(request.signal, 'abort')).toHaveLength(0);
  });
});

describe('waiting when the database cannot LISTEN', () => {
  it('answers 503 database_unavailable, not 500, when the database is gone', async () => {
    const gone = database.url ? await openDatabase({ url: database.url, maxConnections: 1 }) : await openDatabase({ dataDir: 'memory://', loadDataDir: await pgliteSnapshot() });
    const instance = await createTestGateway(gone, { providersDir: FIXTURES });
    await gone.close();
    const response = await instance.api('/users/nobody/links/pin/wait?timeoutSeconds=1');
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ error: { code: 'database_unavailable' } });
  });

  it.skipIf(!process.env.TEST_DATABASE_URL)('answers 503 when PostgreSQL refuses the LISTEN connection, and serves the rest of the API', async () => {
    // A role allowed one connection: the pool has it, so the LISTEN connection is refused (53300).
    const role = `linkgate_one_${randomBytes(4).toString('hex')}`;
    const admin = postgres(database.url!, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create role ${role} login connection limit 1`);
    await admin.unsafe(`grant all on all tables in schema public to ${role}`);
    const url = new URL(database.url!);
    url.username = role;
    const limited = await openDatabase({ url: url.href, maxConnections: 1 });
    try {
      const instance = await createTestGateway(limited, { providersDir: FIXTURES });
      expect((await instance.api('/users/nobody/links/pin')).status).toBe(404);
      const response = await instance.api('/users/nobody/links/pin/wait?timeoutSeconds=1');
      expect(response.status).toBe(503);
      expect(await response.json()).toMatchObject({ error: { code: 'database_unavailable' } });
      expect(instance.logs.join('\n')).toContain('too many connections');
      expect((await instance.api('/users/nobody/links/pin')).status).toBe(404);
    } finally {
      await limited.close();
      await admin.unsafe(`drop owned by ${role}`);
      await admin.unsafe(`drop role ${role}`);
      await admin.end();
    }
  });
});
