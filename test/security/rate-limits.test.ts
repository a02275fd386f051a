import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { purgeExpired } from '../../src/core/purge.ts';
import { SYNC_MS } from '../../src/core/rate-limit.ts';
import type { Database } from '../../src/db/client.ts';
import { rateLimits } from '../../src/db/schema.ts';
import { listen } from '../e2e/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, createTestGateway, TEST_SECRETS, type TestGateway } from '../helpers/gateway.ts';

/**
 * Two gateway instances on one database, as behind a load balancer: the
 * limits hold for their sum. Limits here are small; the clock is ours so
 * windows pass without waiting (the syncs between instances run in real time).
 */
const API_LIMIT = 20;
const BROWSER_LIMIT = 10;
const OTHER_KEY = 'lg_test_other_api_key_0123456789abcdefghij';

let database: Database;
let clock = Date.parse('2026-11-23T10:00:00Z');
const now = () => clock;
let a: TestGateway;
let b: TestGateway;
const servers: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  const env = {
    LINKGATE_API_KEYS: `${API_KEY},${OTHER_KEY}`,
    LINKGATE_API_RATE_LIMIT: String(API_LIMIT),
    LINKGATE_API_RATE_WINDOW_SECONDS: '60',
    LINKGATE_BROWSER_RATE_LIMIT: String(BROWSER_LIMIT),
    LINKGATE_BROWSER_RATE_WINDOW_SECONDS: '60',
    LINKGATE_TRUST_PROXY: '1',
    LINKGATE_METRICS: 'true',
  };
  a = await createTestGateway(database, { env, now });
  b = await createTestGateway(database, { env, now });
});
afterAll(async () => {
  for (const server of servers) await server.close();
  await database?.close();
});

/** Serves an app on a real socket, so the client address is the socket's. */
async function serveOnSocket(gateway: TestGateway): Promise<string> {
  const served = await listen(gateway.app.fetch);
  servers.push(served);
  return served.url;
}

/** Every API request the instances accepted so far. */
let apiAccepted = 0;
const status = (key: string) => async (gateway: TestGateway) => {
  const response = await gateway.api('/users/80351110224678912/links', { headers: { authorization: `Bearer ${key}` } });
  if (response.status !== 429) apiAccepted += 1;
  return response;
};

/** `count` requests, alternating between the instances, `parallel` at a time. */
async function hammer(send: (gateway: TestGateway) => Promise<Response>, count: number, parallel: number): Promise<Response[]> {
  const answers: Response[] = [];
  for (let i = 0; i < count; i += parallel) {
    const round = Array.from({ length: Math.min(parallel, count - i) }, (_, j) => send((i + j) % 2 === 0 ? a : b));
    answers.push(...(await Promise.all(round)));
  }
  return answers;
}

const accepted = (answers: Response[]) => answers.filter((r) => r.status !== 429).length;

/** Lets the instances' background syncs run (they give back claims nobody used). */
const settle = () => new Promise((resolve) => setTimeout(resolve, 4 * SYNC_MS));

describe('rate limits across two instances on one database', () => {
  it('per API key: hammered on both instances at once, they never pass the limit together; once their claims settle they serve exactly the limit', async () => {
    const burst = await hammer(status(API_KEY), 80, 8);
    const inBurst = accepted(burst);
    expect(inBurst).toBeLessThanOrEqual(API_LIMIT);
    // Refused early only by a claim the other instance has not used yet.
    expect(inBurst).toBeGreaterThanOrEqual(API_LIMIT / 2);
    const servedBy = (g: TestGateway) => burst.filter((r, i) => r.status === 200 && (i % 2 === 0 ? a : b) === g).length;
    expect(servedBy(a)).toBeGreaterThan(0);
    expect(servedBy(b)).toBeGreaterThan(0);

    const refused = burst.filter((r) => r.status === 429);
    expect(refused.length).toBe(80 - inBurst);
    for (const response of refused) {
      expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(Number(response.headers.get('retry-after'))).toBeLessThanOrEqual(120);
    }
    const body = (await refused[0]!.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('rate_limited');
    expect(body.error.message).toMatch(/try again in \d+ s/);

    // Unused claims go back within a few syncs; then one request at a time fills the limit exactly.
    await settle();
    const trickle = await hammer(status(API_KEY), 2 * API_LIMIT, 1);
    expect(inBurst + accepted(trickle)).toBe(API_LIMIT);
    const last = trickle.at(-1)!;
    expect(last.status).toBe(429);
    expect(Number(last.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);

    // The other key has its own budget, on both instances.
    expect((await status(OTHER_KEY)(a)).status).toBe(200);
    expect((await status(OTHER_KEY)(b)).status).toBe(200);
  });

  it('per API key: the key works again after Retry-After, and the whole limit is back after two windows', async () => {
    expect((await status(API_KEY)(b)).status).toBe(429);
    await settle(); // the refusal made b read the counts again
    const refused = await status(API_KEY)(b);
    expect(refused.status).toBe(429);
    clock += Number(refused.headers.get('retry-after')) * 1000;
    expect((await status(API_KEY)(a)).status).toBe(200);

    clock += 120_000;
    const burst = await hammer(status(API_KEY), 40, 4);
    await settle();
    const trickle = await hammer(status(API_KEY), API_LIMIT, 1);
    expect(accepted(burst)).toBeLessThanOrEqual(API_LIMIT);
    expect(accepted(burst) + accepted(trickle)).toBe(API_LIMIT);
  });

  it('stores only keyed hashes and a count per window, and the purge job removes old windows', async () => {
    await settle();
    const rows = await database.db.select().from(rateLimits);
    expect(rows.length).toBeGreaterThan(0);
    const dump = JSON.stringify(rows);
    expect(dump).not.toContain(API_KEY);
    expect(dump).not.toContain(OTHER_KEY);
    expect(dump).not.toContain('203.0.113');
    expect(dump).not.toContain('127.0.0.1');
    for (const row of rows) expect(row.keyHash).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // Every accepted request reached the table, from whichever instance took it; refused ones are not
    // counted. Beyond them, each instance holds at most one request claimed ahead per key and window.
    const counted = rows.reduce((sum, row) => sum + row.count, 0);
    expect(counted).toBeGreaterThanOrEqual(apiAccepted);
    expect(counted - apiAccepted).toBeLessThanOrEqual(2 * rows.length);

    const purged = await purgeExpired(database.db, new Date(clock + 10 * 60_000));
    expect(purged.rateLimits).toBe(rows.length);
    expect(await database.db.select().from(rateLimits)).toEqual([]);
  });

  it('per client address on the browser routes: a small 429 page with Retry-After, across both instances; other addresses are unaffected', async () => {
    const [urlA, urlB] = [await serveOnSocket(a), await serveOnSocket(b)];
    // One trusted proxy in front (LINKGATE_TRUST_PROXY=1): it appended the client's address.
    const open = (base: string, forwardedFor: string) =>
      fetch(`${base}/oauth/corp/start?context=not-a-jwt`, { headers: { 'x-forwarded-for': forwardedFor } });
    const answers: Response[] = [];
    for (let i = 0; i < 30; i += 2) answers.push(...(await Promise.all([open(urlA, '203.0.113.7'), open(urlB, '203.0.113.7')])));
    const ok = answers.filter((r) => r.status !== 429);
    expect(ok.length).toBeGreaterThanOrEqual(BROWSER_LIMIT / 2);
    expect(ok.length).toBeLessThanOrEqual(BROWSER_LIMIT);
    for (const response of ok) expect(response.status).toBe(404); // `corp` is not configured here: the route ran

    const refused = await open(urlB, '203.0.113.7');
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(refused.headers.get('content-type')).toMatch(/^text\/html/);
    expect(refused.headers.get('cache-control')).toBe('no-store');
    expect(refused.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
    const page = await refused.text();
    expect(page).toContain('Too many attempts');
    expect(page).not.toMatch(/at .*\.ts:\d+/);

    // Whatever the client put before the proxy's entry is not believed.
    expect((await open(urlA, '198.51.100.99, 203.0.113.7')).status).toBe(429);
    // Another address, another budget.
    expect((await open(urlA, '203.0.113.8')).status).toBe(404);
    expect((await open(urlB, '198.51.100.99')).status).toBe(404);
  });

  it('per client address, API and /metrics requests without a valid key: 401s up to the address limit, then 429; a valid key from there still works', async () => {
    const base = await serveOnSocket(a);
    const call = (authorization: string | undefined, path = '/api/v1/users/80351110224678912/links') =>
      fetch(`${base}${path}`, { headers: { 'x-forwarded-for': '203.0.113.60', ...(authorization ? { authorization } : {}) } });
    const statuses: number[] = [];
    // Both routes that take an API key count refusals against the one address budget.
    for (let i = 0; i < BROWSER_LIMIT + 5; i += 1) statuses.push((await call(i % 2 ? 'Bearer lg_guess_0123456789' : undefined, i % 3 ? undefined : '/metrics')).status);
    const unauthorized = statuses.filter((s) => s === 401).length;
    expect(unauthorized).toBeGreaterThanOrEqual(BROWSER_LIMIT / 2);
    expect(unauthorized).toBeLessThanOrEqual(BROWSER_LIMIT);
    // Once refused, refused: no mix of answers that would let guessing go on.
    expect(statuses.slice(unauthorized)).toEqual(Array(statuses.length - unauthorized).fill(429));
    const refused = await call('Bearer lg_guess_again_0123456789');
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(await refused.json()).toMatchObject({ error: { code: 'rate_limited' } });
    // The bot with the right key behind the same address is counted by its key, not refused.
    expect((await call(`Bearer ${OTHER_KEY}`)).status).toBe(200);
    expect((await call(`Bearer ${OTHER_KEY}`, '/metrics')).status).toBe(200);
    expect((await call('Bearer lg_guess_on_metrics', '/metrics')).status).toBe(429);
  });

  it('counts an IPv6 client by its /64', async () => {
    const base = await serveOnSocket(a);
    const open = (forwardedFor: string) => fetch(`${base}/oauth/corp/start?context=x`, { headers: { 'x-forwarded-for': forwardedFor } });
    for (let i = 0; i < BROWSER_LIMIT; i += 1) expect((await open(`2001:db8:1:2::${(i + 1).toString(16)}`)).status).toBe(404);
    expect((await open('2001:0db8:0001:0002:ffff:1:2:3')).status).toBe(429);
    expect((await open('2001:db8:1:3::1')).status).toBe(404);
  });

  it('reads a forwarded hop with a port or in brackets as its client, not the proxy: each client its own budget', async () => {
    const base = await serveOnSocket(a);
    const open = (forwardedFor: string) => fetch(`${base}/oauth/corp/start?context=x`, { headers: { 'x-forwarded-for': forwardedFor } });
    // One client, seen through its changing source ports: one budget.
    for (let i = 0; i < BROWSER_LIMIT; i += 1) expect((await open(`198.51.100.20:${40000 + i}`)).status).toBe(404);
    expect((await open('198.51.100.20:50000')).status).toBe(429);
    expect((await open('198.51.100.20')).status).toBe(429);
    // The others behind the same proxy still have theirs (they used to share the proxy's).
    expect((await open('198.51.100.21:443')).status).toBe(404);
    expect((await open('[2001:db8:7::1]')).status).toBe(404);
    expect((await open('[2001:db8:8::1]:443')).status).toBe(404);
    // Bracketed IPv6 counts by its /64 like any other spelling.
    for (let i = 0; i < BROWSER_LIMIT - 1; i += 1) expect((await open(`[2001:db8:9::${i + 1}]:${1000 + i}`)).status).toBe(404);
    expect((await open('2001:db8:9::ffff')).status).toBe(404);
    expect((await open('[2001:db8:9::abcd]:80')).status).toBe(429);
  });
});

describe('the client address without a trusted proxy', () => {
  let gateway: TestGateway;
  let base: string;
  beforeAll(async () => {
    gateway = await createTestGateway(database, {
      env: { ...TEST_SECRETS, LINKGATE_BROWSER_RATE_LIMIT: '5', LINKGATE_BROWSER_RATE_WINDOW_SECONDS: '60' },
      now,
    });
    base = await serveOnSocket(gateway);
  });

  it('is the socket address: X-Forwarded-For cannot buy a new budget', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 8; i += 1) {
      const response = await fetch(`${base}/oauth/corp/start?context=x`, { headers: { 'x-forwarded-for': `192.0.2.${i}` } });
      statuses.push(response.status);
    }
    expect(statuses.filter((s) => s === 404).length).toBe(5);
    expect(statuses.slice(5)).toEqual([429, 429, 429]);
  });
});

describe('a limit of 0', () => {
  it('turns that limit off and leaves the other on', async () => {
    const gateway = await createTestGateway(database, {
      env: { ...TEST_SECRETS, LINKGATE_API_RATE_LIMIT: '0', LINKGATE_BROWSER_RATE_LIMIT: '3' },
      now,
    });
    const api = await Promise.all(Array.from({ length: 150 }, () => gateway.api('/providers')));
    expect(api.map((r) => r.status)).toEqual(Array.from({ length: 150 }, () => 200));
    const pages = [];
    for (let i = 0; i < 5; i += 1) pages.push((await gateway.app.request('/oauth/corp/start?context=x')).status);
    expect(pages).toEqual([404, 404, 404, 429, 429]);
  });
});

describe('instances configured with different windows (a rolling config change)', () => {
  it('count apart: rows that start at the same moment but span different times are not added together', async () => {
    // 11:00:00 starts both a 60 s window and a 3 s window.
    let at = Date.parse('2026-11-23T11:00:00Z');
    const wide = await createTestGateway(database, { env: { ...TEST_SECRETS, LINKGATE_BROWSER_RATE_LIMIT: '100', LINKGATE_BROWSER_RATE_WINDOW_SECONDS: '60' }, now: () => at });
    const narrow = await createTestGateway(database, { env: { ...TEST_SECRETS, LINKGATE_BROWSER_RATE_LIMIT: '2', LINKGATE_BROWSER_RATE_WINDOW_SECONDS: '3' }, now: () => at });
    const open = (gateway: TestGateway) => gateway.app.request('/oauth/corp/start?context=x');
    for (let i = 0; i < 5; i += 1) expect((await open(wide)).status).toBe(404);
    await settle(); // the wide instance's counts reach the table
    at += 500;
    expect([(await open(narrow)).status, (await open(narrow)).status, (await open(narrow)).status]).toEqual([404, 404, 429]);
  });
});

describe('an instance shutting down', () => {
  it('gives its unused claims back (flush), so the table holds exactly what it served', async () => {
    const { createRateLimiter } = await import('../../src/core/rate-limit.ts');
    const { createLogger } = await import('../../src/observability.ts');
    const at = Date.parse('2026-11-23T12:00:00Z');
    const limiter = createRateLimiter({ db: database.db, rules: { api: { limit: 1000, windowSeconds: 60 }, browser: { limit: 1000, windowSeconds: 60 } }, secret: 'flush-test-secret', logger: createLogger('silent'), now: () => at });
    const taken = await Promise.all(Array.from({ length: 40 }, () => limiter.take('api', 'flushing-key')));
    expect(taken.every((d) => d.allowed)).toBe(true);
    await limiter.sync();
    const count = async () => (await database.db.select().from(rateLimits)).filter((row) => row.windowStart.getTime() === at).reduce((sum, row) => sum + row.count, 0);
    expect(await count()).toBeGreaterThan(40); // claimed ahead: this instance expected more
    await limiter.flush();
    expect(await count()).toBe(40);
  });
});
