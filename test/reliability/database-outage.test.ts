import { connect, createServer, type Server, type Socket } from 'node:net';
import { and, eq } from '../../src/db/orm.ts';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/client.ts';
import { flows, links } from '../../src/db/schema.ts';
import { startTestIdp, type TestIdp } from '../fakes/oidc-idp.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';

/**
 * The database stops answering in the middle of a link flow. On PostgreSQL a
 * TCP proxy (below) sits between the gateway and the server and is cut: the
 * gateway sees what it would see if the server went down, while the server
 * itself (shared with the other test files) keeps running. PGlite runs inside
 * the gateway's own process and cannot stop while the process runs; there the
 * closest real failure, a closed database, is covered by test/http/health.test.ts.
 */
const onPostgres = process.env.TEST_DATABASE_URL !== undefined;

const BASE = 'http://127.0.0.1:8000';
const CLIENT_SECRET = 'outage-client-secret-0123456789abcdef';

/** A TCP proxy to PostgreSQL that can be cut (port closed, connections dropped) and restored on the same port. */
class DatabaseProxy {
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  port = 0;
  /** Cut the moment the gateway sends a statement containing this text. */
  tripwire: string | undefined;
  trips = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<void> {
    const server = createServer((client) => this.#accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.#server = server;
    this.port = (server.address() as { port: number }).port;
  }

  #accept(client: Socket): void {
    const upstream = connect(this.target.port, this.target.host);
    for (const socket of [client, upstream]) {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      socket.on('error', () => {});
    }
    client.on('data', (chunk: Buffer) => {
      if (this.tripwire && chunk.includes(this.tripwire)) {
        this.tripwire = undefined;
        this.trips += 1;
        this.cut();
        return;
      }
      upstream.write(chunk);
    });
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }

  /** The server is gone: nothing listens on the port and every open connection drops. */
  cut(): void {
    this.#server?.close();
    this.#server = undefined;
    for (const socket of this.#sockets) socket.destroy();
  }

  restore(): Promise<void> {
    return this.start();
  }
}

describe.skipIf(!onPostgres)('when PostgreSQL stops in the middle of a link flow', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let proxy: DatabaseProxy;
  let proxied: Database;
  let idp: TestIdp;
  let gateway: TestGateway;

  /** Errors thrown outside every promise, and rejections nobody handled: in a real server each of them would have ended the process. */
  const uncaught: unknown[] = [];
  const record = (error: unknown) => uncaught.push(error);

  beforeAll(async () => {
    process.on('uncaughtException', record);
    process.on('unhandledRejection', record);
    database = await createTestDatabase();
    const url = new URL(database.url!);
    proxy = new DatabaseProxy({ host: url.hostname, port: Number(url.port || 5432) });
    await proxy.start();
    url.host = `127.0.0.1:${proxy.port}`;
    proxied = await openDatabase({ url: url.href, maxConnections: 5 });
    idp = await startTestIdp({ redirectUris: [`${BASE}/oauth/corp/callback`], clientId: 'linkgate', clientSecret: CLIENT_SECRET });
    gateway = await createTestGateway(proxied, {
      env: { OIDC_PROVIDERS: 'corp', CORP_ISSUER: idp.issuer, CORP_CLIENT_ID: 'linkgate', CORP_CLIENT_SECRET: CLIENT_SECRET, CORP_SCOPES: 'openid profile' },
    });
  });
  afterEach(() => {
    expect(uncaught).toEqual([]);
  });
  afterAll(async () => {
    process.off('uncaughtException', record);
    process.off('unhandledRejection', record);
    proxy?.cut();
    await proxied?.close().catch(() => {});
    await idp?.close();
    await database?.close();
  });

  /** Starts a flow and signs in at the IdP: the browser and the callback URL it is about to open. */
  async function signIn(userId: string, sub: string) {
    const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
    const start = await browser.openLink(`/oauth/corp/start?context=${encodeURIComponent(await mintContext('corp', userId))}`);
    expect(start.status).toBe(303);
    const authorize = new URL(start.headers.get('location')!);
    return { browser, state: authorize.searchParams.get('state')!, callback: await idp.login(authorize, sub) };
  }

  /** What is stored, read straight from PostgreSQL (not through the proxy). */
  const linksOf = (userId: string) => database.db.select().from(links).where(and(eq(links.userId, userId), eq(links.provider, 'corp')));
  const flowCount = async () => (await database.db.select({ status: flows.status }).from(flows)).length;

  async function expectUnavailable(response: Response): Promise<void> {
    expect(response.status).toBe(503);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    const page = await response.text();
    expect(page).toContain('Linkgate is briefly unavailable');
    expect(page).not.toMatch(/at .*\.ts:\d+|ECONNREFUSED|postgres/i);
  }

  it('cut before the callback: 503 page and JSON, the code is not spent, and the same callback links once the database is back', async () => {
    const userId = '80351110224678912';
    const { browser, callback } = await signIn(userId, 'idp-sub-before');
    const tokens = idp.counts.token;

    proxy.cut();
    await expectUnavailable(await browser.get(callback));
    const api = await gateway.api(`/users/${userId}/links/corp`);
    expect(api.status).toBe(503);
    expect(await api.json()).toEqual({ error: { code: 'database_unavailable', message: 'the database is not answering; try again shortly' } });
    // The process is up and says so: alive, not ready.
    expect((await gateway.app.request('/healthz')).status).toBe(200);
    expect((await gateway.app.request('/readyz')).status).toBe(503);
    expect(idp.counts.token).toBe(tokens);
    expect(await linksOf(userId)).toEqual([]);

    await proxy.restore();
    expect((await gateway.app.request('/readyz')).status).toBe(200);
    const done = await browser.get(callback);
    expect(done.status).toBe(200);
    expect(await done.text()).toContain('Account linked');
    expect(idp.counts.token).toBe(tokens + 1);
    expect(await linksOf(userId)).toMatchObject([{ externalId: 'idp-sub-before', status: 'active' }]);
    expect(await (await gateway.api(`/users/${userId}/links/corp`)).json()).toMatchObject({ externalId: 'idp-sub-before' });
  });

  it('cut while the link is being written: 503, no link and no half-written row; a new flow then links without a restart', async () => {
    const userId = '80351110224678913';
    const { browser, callback } = await signIn(userId, 'idp-sub-during');
    const tokens = idp.counts.token;
    const flowsBefore = await flowCount();

    // The connection drops as the INSERT into links goes out, inside the transaction that stores the link.
    proxy.tripwire = 'insert into "links"';
    await expectUnavailable(await browser.get(callback));
    expect(proxy.trips).toBe(1);
    expect(idp.counts.token).toBe(tokens + 1); // the code was exchanged once, and only once
    expect(await linksOf(userId)).toEqual([]);
    const [flow] = await database.db.select({ status: flows.status }).from(flows).where(eq(flows.userId, userId));
    expect(flow?.status).toBe('open'); // not marked completed for a link that does not exist
    expect(await flowCount()).toBe(flowsBefore);

    await proxy.restore();
    // Every pooled connection works again at once (none is left waiting on a write that never goes out).
    const started = Date.now();
    const answers = await Promise.all(Array.from({ length: 20 }, () => gateway.api(`/users/${userId}/links/corp`)));
    expect(answers.map((r) => r.status)).toEqual(Array.from({ length: 20 }, () => 404));
    expect(Date.now() - started).toBeLessThan(5000);
    // The user asks the bot for a new link; that flow links, and nothing else was stored in between.
    const again = await signIn(userId, 'idp-sub-during');
    const done = await again.browser.get(again.callback);
    expect(done.status).toBe(200);
    expect(idp.counts.token).toBe(tokens + 2);
    expect(await linksOf(userId)).toMatchObject([{ externalId: 'idp-sub-during', status: 'active' }]);
  });

  it('a connection lost during its first statement fails that query alone: nothing unhandled, and the next query runs', async () => {
    // A pool of its own, so every connection in it is new. The first statement
    // any of them sends is cut with the connection, as a database restart
    // does during a pool's warm-up. (The tripwire is the proxy's: nothing
    // else sends a select through it meanwhile, the test gateway being idle.)
    const url = new URL(database.url!);
    url.host = `127.0.0.1:${proxy.port}`;
    const fresh = await openDatabase({ url: url.href, maxConnections: 1 });
    const trips = proxy.trips;
    try {
      proxy.tripwire = 'select';
      await expect(fresh.db.select({ status: flows.status }).from(flows)).rejects.toMatchObject({ cause: { code: 'CONNECTION_CLOSED' } });
      expect(proxy.trips).toBe(trips + 1);
      await proxy.restore();
      expect(await fresh.db.select({ status: flows.status }).from(flows)).toEqual(expect.any(Array));
      // A dropped promise would surface on a later turn of the event loop.
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(uncaught).toEqual([]);
    } finally {
      await fresh.close();
    }
  });

  it('wakes a waiting bot again once the database is back (its LISTEN connection comes back)', async () => {
    proxy.cut();
    await new Promise((resolve) => setTimeout(resolve, 200));
    await proxy.restore();
    const userId = '80351110224678914';
    const { browser, callback } = await signIn(userId, 'idp-sub-wait');
    const started = Date.now();
    const waiting = gateway.api(`/users/${userId}/links/corp/wait?timeoutSeconds=20`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await browser.get(callback)).status).toBe(200);
    const answer = await waiting;
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ userId, externalId: 'idp-sub-wait' });
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
