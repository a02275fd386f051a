import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { API_KEY } from '../helpers/gateway.ts';
import { ROOT, startGatewayProcess, type GatewayProcess } from '../helpers/process.ts';

/**
 * The embedded database runs inside the gateway's process, without fsync
 * (src/db/pglite.ts): a COMMIT has written its WAL to the OS when it
 * returns. So a crash of the process (kill -9, the OOM killer) in the middle
 * of a burst of sign-ins loses no link whose sign-in was answered, and the
 * gateway starts again on the same data. Always on PGlite, also in CI.
 */
const BROWSERS = 8;
const KILL_AFTER = 40;

/** A plain OAuth 2 server for the bench provider (bench/providers/bench.ts): each code is a new account. */
async function startOAuth(): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/authorize') {
      const target = new URL(url.searchParams.get('redirect_uri')!);
      target.search = new URLSearchParams({ code: `code-${randomBytes(8).toString('hex')}`, state: url.searchParams.get('state') ?? '' }).toString();
      res.writeHead(302, { location: target.href }).end();
      return;
    }
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const code = new URLSearchParams(body).get('code');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ access_token: `at-${code}`, refresh_token: `rt-${code}`, expires_in: 3600, user: `ext-${code}` }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

describe('kill -9 during a burst of link writes, on the embedded database', () => {
  let oauth: Awaited<ReturnType<typeof startOAuth>>;
  let crashed: GatewayProcess;
  let restarted: GatewayProcess | undefined;
  const env = () => ({ LINKGATE_PROVIDERS_DIR: join(ROOT, 'bench/providers'), BENCH_OAUTH_URL: oauth.url, LINKGATE_BROWSER_RATE_LIMIT: '1000000' });

  beforeAll(async () => {
    oauth = await startOAuth();
    crashed = await startGatewayProcess(env(), { embedded: true });
  }, 60_000);
  afterAll(async () => {
    oauth?.server.close();
    await restarted?.cleanup();
    await crashed?.cleanup();
  });

  it('loses no link whose sign-in was answered, and starts again on the same data', async () => {
    const { base, child, exited } = crashed;
    /** Users whose sign-in ended on the "linked" page: their link is committed. */
    const linked = new Map<string, string>();
    let started = 0;
    let killed = false;
    let reachedKill!: () => void;
    const enough = new Promise<void>((resolve) => (reachedKill = resolve));

    async function browserLoop(): Promise<void> {
      while (!killed) {
        const userId = `9${String((started += 1)).padStart(16, '0')}`;
        try {
          const browser = new TestBrowser((path, init) => fetch(new URL(path, base), { ...init, redirect: 'manual' }));
          const start = await browser.openLink(`/oauth/bench/start?context=${await mintContext('bench', userId)}`);
          if (start.status !== 303) continue;
          const authorize = await fetch(start.headers.get('location')!, { redirect: 'manual' });
          const callback = new URL(authorize.headers.get('location')!);
          const done = await browser.get(`${callback.pathname}${callback.search}`, { follow: false });
          if (done.status === 303 && done.headers.get('location') === '/oauth/bench/linked') {
            linked.set(userId, `ext-${callback.searchParams.get('code')}`);
            if (linked.size >= KILL_AFTER) reachedKill();
          }
        } catch {
          // The process is gone: this sign-in was not answered.
        }
      }
    }

    const loops = Array.from({ length: BROWSERS }, browserLoop);
    await enough;
    // Sign-ins are still in flight: some are between their provider's answer and the commit.
    child.kill('SIGKILL');
    killed = true;
    expect(await exited).toBeNull();
    await Promise.all(loops);
    expect(started).toBeGreaterThan(linked.size);

    restarted = await startGatewayProcess(env(), { embedded: true, dataDir: crashed.dataDir });
    const api = (path: string) => fetch(`${restarted!.base}/api/v1${path}`, { headers: { authorization: `Bearer ${API_KEY}` } });
    for (const [userId, externalId] of linked) {
      const response = await api(`/users/${userId}/links/bench`);
      expect(response.status, `the link of ${userId}`).toBe(200);
      expect(await response.json()).toMatchObject({ userId, provider: 'bench', externalId, status: 'active' });
    }
  }, 120_000);
});
