import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/client.ts';
import { links } from '../../src/db/schema.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { API_KEY } from '../helpers/gateway.ts';
import { ROOT, startGatewayProcess, type GatewayProcess } from '../helpers/process.ts';

/**
 * SIGTERM while requests are in flight, on the real process (`src/server.ts`
 * as `npm start` runs it): a sign-in waiting on a slow provider, and bots
 * long-polling. Those requests get their normal answers, new connections are
 * refused at once, and the process exits 0 well within its grace period.
 */
const TOKEN_DELAY_MS = 2000;

/** A plain OAuth 2 server for the bench provider (bench/providers/bench.ts) whose token endpoint is slow. */
async function startSlowOAuth(): Promise<{ url: string; server: Server; tokenRequests: () => number; exchanging: Promise<void> }> {
  let tokenRequests = 0;
  let exchanging!: () => void;
  const started = new Promise<void>((resolve) => (exchanging = resolve));
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/authorize') {
      const target = new URL(url.searchParams.get('redirect_uri')!);
      target.search = new URLSearchParams({ code: `code-${randomBytes(8).toString('hex')}`, state: url.searchParams.get('state') ?? '' }).toString();
      res.writeHead(302, { location: target.href }).end();
      return;
    }
    tokenRequests += 1;
    exchanging();
    req.resume();
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ access_token: 'at-slow', refresh_token: 'rt-slow', expires_in: 3600, user: 'ext-slow' }));
    }, TOKEN_DELAY_MS);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, tokenRequests: () => tokenRequests, exchanging: started };
}

/** Whether a TCP connection to the port is accepted. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('SIGTERM with requests in flight', () => {
  let oauth: Awaited<ReturnType<typeof startSlowOAuth>>;
  let gateway: GatewayProcess;

  beforeAll(async () => {
    oauth = await startSlowOAuth();
    gateway = await startGatewayProcess({ LINKGATE_PROVIDERS_DIR: join(ROOT, 'bench/providers'), BENCH_OAUTH_URL: oauth.url });
  }, 60_000);
  afterAll(async () => {
    oauth?.server.close();
    await gateway?.cleanup();
  });

  it('finishes the sign-in and the long polls in flight, refuses new connections, and exits 0', async () => {
    const { child, base, port, database, dataDir, exited } = gateway;
    const output = () => gateway.output();
    const userId = '80351110224678912';
    const context = await mintContext('bench', userId);
    const browser = new TestBrowser((path, init) => fetch(new URL(path, base), { ...init, redirect: 'manual' }));
    const start = await browser.openLink(`/oauth/bench/start?context=${context}`);
    expect(start.status).toBe(303);
    const cookie = [...browser.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const authorize = await fetch(start.headers.get('location')!, { redirect: 'manual' });
    const callback = new URL(authorize.headers.get('location')!);

    const api = (path: string) => fetch(`${base}/api/v1${path}`, { headers: { authorization: `Bearer ${API_KEY}` } });
    // A bot waits for this user's link, another for a user who will not link now.
    const waitLinked = api(`/users/${userId}/links/bench/wait?timeoutSeconds=30`);
    const waitOther = api('/users/80351110224678999/links/bench/wait?timeoutSeconds=30');
    // The browser comes back; the gateway is now waiting on the provider's slow token endpoint.
    const signIn = fetch(`${base}${callback.pathname}${callback.search}`, { headers: { cookie }, redirect: 'manual' });
    await oauth.exchanging;

    const signalled = Date.now();
    child.kill('SIGTERM');
    for (let i = 0; !output().includes('"msg":"shutting down"'); i += 1) {
      if (i > 100) throw new Error(`no shutdown: ${output()}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // The listener is closed while the sign-in is still waiting on the provider.
    expect(await accepts(port)).toBe(false);
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();

    // Long polls end at once with their timeout answer (the bot asks again, reaching another
    // instance), rather than holding the process for 30 s or being cut off at the grace period.
    const waits = await Promise.all([waitLinked, waitOther]);
    expect(waits.map((r) => r.status)).toEqual([204, 204]);
    expect(Date.now() - signalled).toBeLessThan(TOKEN_DELAY_MS);

    // The sign-in finishes normally once the provider answers, and its link is stored.
    const done = await signIn;
    expect(done.status).toBe(303);
    expect(done.headers.get('location')).toMatch(/^\/oauth\/[a-z]+\/linked$/);
    expect(Date.now() - signalled).toBeGreaterThanOrEqual(TOKEN_DELAY_MS - 500); // it really was in flight
    expect(oauth.tokenRequests()).toBe(1);

    expect(await exited).toBe(0);
    expect(Date.now() - signalled).toBeLessThan(TOKEN_DELAY_MS + 4000);
    expect(output()).toContain('"msg":"stopped"');
    expect(output()).not.toContain('requests still open after the grace period');

    const stored = database ?? (await openDatabase({ dataDir: join(dataDir, 'data', 'pgdata') }));
    try {
      expect(await stored.db.select({ userId: links.userId, externalId: links.externalId }).from(links)).toEqual([{ userId, externalId: 'ext-slow' }]);
    } finally {
      if (!database) await stored.close();
    }
  }, 60_000);
});
