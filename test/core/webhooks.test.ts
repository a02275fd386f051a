/**
 * Webhooks from the outbox: events written with their change, signed
 * deliveries to a real HTTP receiver, retries with backoff through a
 * receiver that is down, a restart in between, dead letters and the
 * delivery log API.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createWebhookWorker, type WebhookWorker } from '../../src/core/webhooks.ts';
import { openDatabase, type Database } from '../../src/db/client.ts';
import { webhookDeliveries } from '../../src/db/schema.ts';
import { createLogger } from '../../src/observability.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/providers', import.meta.url));
const API_FIXTURES = fileURLToPath(new URL('../fixtures/api-providers', import.meta.url));
const SECRET = 'whsec_test_0123456789abcdefghijklmnopqrstuv';

interface Received {
  id: string;
  type: string;
  signature: string;
  body: string;
}

/** A webhook receiver that answers `failures` times with 503, then 200. */
class Receiver {
  received: Received[] = [];
  failures = 0;
  private server!: Server;
  url!: URL;

  async start() {
    this.server = createServer((req: IncomingMessage, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      req.on('end', () => {
        this.received.push({ id: String(req.headers['linkgate-event-id']), type: String(req.headers['linkgate-event-type']), signature: String(req.headers['linkgate-signature']), body });
        if (this.failures > 0) {
          this.failures -= 1;
          res.writeHead(503).end('down for maintenance');
        } else {
          res.writeHead(200).end('ok');
        }
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = new URL(`http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks/linkgate`);
  }

  close() {
    return new Promise((resolve) => this.server.close(resolve));
  }
}

/** The README's verification, as a receiver would write it. */
function verify(secret: string, header: string, rawBody: string, nowSeconds: number): boolean {
  const { t, v1 } = Object.fromEntries(header.split(',').map((part) => part.split('='))) as { t: string; v1: string };
  const expected = createHmac('sha256', secret).update(`${t}.${rawBody}`).digest('hex');
  return v1.length === expected.length && timingSafeEqual(Buffer.from(v1, 'hex'), Buffer.from(expected, 'hex')) && Math.abs(nowSeconds - Number(t)) <= 300;
}

let database: Database & { url: string | undefined };
let receiver: Receiver;
let clock: number;
const logger = createLogger('silent');

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});
beforeEach(async () => {
  receiver = new Receiver();
  await receiver.start();
  // Ahead of the wall clock: the token fixture stores links due by Date.now(), and they must be due by this clock too
  // (a fixed date here passed only until the wall clock overtook it).
  clock = Date.now() + 3_600_000;
  await database.db.delete(webhookDeliveries);
});
afterEach(async () => {
  await receiver.close();
});

const webhookEnv = () => ({ LINKGATE_WEBHOOK_URL: receiver.url.href, LINKGATE_WEBHOOK_SECRET: SECRET });
const workerOn = (db: Database, options: { maxAttempts?: number } = {}): WebhookWorker =>
  createWebhookWorker({ database: db, url: receiver.url, secret: SECRET, maxAttempts: options.maxAttempts ?? 10, retryBaseMs: 1000, logger, now: () => clock });

async function linkPin(gateway: TestGateway, userId: string, username: string) {
  const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
  const form = await browser.openLink(`/oauth/pin/start?context=${await mintContext('pin', userId, { now: clock })}`);
  const state = /name="state" value="([^"]+)"/.exec(await form.text())![1]!;
  await browser.post('/oauth/pin/callback', { state, username, password: 'correct horse' });
  for (let i = 0; i < 2; i++) await browser.get(`/oauth/pin/poll?state=${encodeURIComponent(state)}`);
}

/** Runs worker rounds, moving the clock past each backoff, until nothing is pending. */
async function drain(worker: WebhookWorker, rounds = 12) {
  for (let i = 0; i < rounds; i++) {
    await worker.runOnce();
    clock += 70_000; // past any claim and the backoffs used here
    const pending = await database.db.select().from(webhookDeliveries);
    if (pending.every((row) => row.status !== 'pending')) return;
  }
}

describe('link events', () => {
  it('are written with each change: created, updated on relink, needs_reauth, deleted — and hold no credential', async () => {
    const gateway = await createTestGateway(database, { providersDir: FIXTURES, env: webhookEnv(), now: () => clock });
    await linkPin(gateway, 'u-events', 'ada');
    await linkPin(gateway, 'u-events', 'ada');
    expect((await gateway.api('/users/u-events/links/pin', { method: 'DELETE' })).status).toBe(204);

    const tokens = await createTestGateway(database, { providersDir: API_FIXTURES, env: webhookEnv(), now: () => clock });
    const browser = new TestBrowser((path, init) => tokens.app.request(path, init));
    const form = await browser.openLink(`/oauth/token/start?context=${await mintContext('token', 'u-revoked', { now: clock })}`);
    await browser.post('/oauth/token/callback', { state: /name="state" value="([^"]+)"/.exec(await form.text())![1]!, mode: 'revoked' });
    expect((await tokens.api('/users/u-revoked/links/token/token', { method: 'POST' })).status).toBe(409);
    // Asking again does not make a second event: the link already needs reauth.
    expect((await tokens.api('/users/u-revoked/links/token/token', { method: 'POST' })).status).toBe(409);

    const rows = await database.db.select().from(webhookDeliveries).orderBy(webhookDeliveries.createdAt);
    expect(rows.map((r) => [r.type, (JSON.parse(r.payload) as { link: { userId: string } }).link.userId])).toEqual([
      ['link.created', 'u-events'],
      ['link.updated', 'u-events'],
      ['link.deleted', 'u-events'],
      ['link.created', 'u-revoked'],
      ['link.needs_reauth', 'u-revoked'],
    ]);
    const payloads = rows.map((r) => r.payload).join('\n');
    for (const secret of ['pin-access-token', 'access-revoked']) expect(payloads).not.toContain(secret);
    expect(JSON.parse(rows[0]!.payload)).toMatchObject({ id: rows[0]!.id, type: 'link.created', link: { provider: 'pin', externalId: 'ada', status: 'active' } });
  });

  it('are not written when no webhook is configured', async () => {
    const gateway = await createTestGateway(database, { providersDir: FIXTURES, now: () => clock });
    await linkPin(gateway, 'u-quiet', 'grace');
    expect(await database.db.select().from(webhookDeliveries)).toEqual([]);
  });
});

describe('delivery', () => {
  it('survives a receiver that is down for the first three tries and a restart in between: signed, verifiable, delivered once it is up', async () => {
    const gateway = await createTestGateway(database, { providersDir: FIXTURES, env: webhookEnv(), now: () => clock });
    await linkPin(gateway, 'u-down', 'down-user');
    receiver.failures = 3;

    // The first instance tries once and goes away.
    const other = database.url ? await openDatabase({ url: database.url, maxConnections: 3 }) : database;
    const first = workerOn(other);
    expect(await first.runOnce()).toBe(1);
    await first.stop();
    if (other !== database) await other.close();
    const [afterFirst] = await database.db.select().from(webhookDeliveries);
    expect(afterFirst).toMatchObject({ status: 'pending', attempts: 1, lastStatus: 503 });
    // The next attempt waits for the backoff.
    expect(await workerOn(database).runOnce()).toBe(0);

    // A new process picks it up from the database.
    await drain(workerOn(database));
    expect(receiver.received.map((r) => r.type)).toEqual(['link.created', 'link.created', 'link.created', 'link.created']);
    expect(new Set(receiver.received.map((r) => r.id)).size).toBe(1);
    const last = receiver.received.at(-1)!;
    expect(verify(SECRET, last.signature, last.body, clock / 1000)).toBe(true);
    expect(verify('another-secret-0123456789abcdefghijklmnop', last.signature, last.body, clock / 1000)).toBe(false);
    expect(verify(SECRET, last.signature, last.body.replace('down-user', 'eve'), clock / 1000)).toBe(false);

    const log = await gateway.api('/webhooks/deliveries?status=delivered');
    expect(log.status).toBe(200);
    const { deliveries } = (await log.json()) as { deliveries: Array<Record<string, unknown>> };
    expect(deliveries).toHaveLength(1);
    expect(deliveries[0]).toMatchObject({ id: last.id, type: 'link.created', status: 'delivered', attempts: 4, lastStatus: 200, lastError: null, nextAttemptAt: null });
    expect(deliveries[0]!.event).toEqual(JSON.parse(last.body));
  });

  it('backs off exponentially between attempts', async () => {
    const gateway = await createTestGateway(database, { providersDir: FIXTURES, env: webhookEnv(), now: () => clock });
    await linkPin(gateway, 'u-backoff', 'backoff-user');
    receiver.failures = 100;
    const worker = workerOn(database);
    const start = clock;
    const waits: number[] = [];
    for (let attempt = 1; attempt <= 4; attempt++) {
      expect(await worker.runOnce()).toBe(1);
      const [row] = await database.db.select().from(webhookDeliveries);
      waits.push(row!.nextAttemptAt.getTime() - clock);
      clock = row!.nextAttemptAt.getTime();
    }
    expect(waits).toEqual([1000, 2000, 4000, 8000]);
    expect(clock - start).toBe(15_000);
  });

  it('gives up after the last attempt (dead), and the retry API queues it again', async () => {
    const gateway = await createTestGateway(database, { providersDir: FIXTURES, env: webhookEnv(), now: () => clock });
    await linkPin(gateway, 'u-dead', 'dead-user');
    receiver.failures = 3;
    await drain(workerOn(database, { maxAttempts: 3 }));
    const dead = (await (await gateway.api('/webhooks/deliveries?status=dead')).json()) as { deliveries: Array<{ id: string; attempts: number; lastError: string }> };
    expect(dead.deliveries).toHaveLength(1);
    expect(dead.deliveries[0]).toMatchObject({ attempts: 3, lastError: 'the receiver answered 503' });

    const retried = await gateway.api(`/webhooks/deliveries/${dead.deliveries[0]!.id}/retry`, { method: 'POST' });
    expect(retried.status).toBe(202);
    expect(await retried.json()).toMatchObject({ status: 'pending', attempts: 0 });
    await drain(workerOn(database, { maxAttempts: 3 }));
    expect((await (await gateway.api('/webhooks/deliveries?status=delivered')).json()) as unknown).toMatchObject({ deliveries: [{ id: dead.deliveries[0]!.id }] });
    expect(receiver.received).toHaveLength(4);
    expect((await gateway.api('/webhooks/deliveries/evt_00000000-0000-0000-0000-000000000000/retry', { method: 'POST' })).status).toBe(404);
  });

  it('sends each event once when two instances deliver at the same time', async () => {
    const gateway = await createTestGateway(database, { providersDir: FIXTURES, env: webhookEnv(), now: () => clock });
    for (let i = 0; i < 8; i++) await linkPin(gateway, `u-many-${i}`, `user${i}`);
    const other = database.url ? await openDatabase({ url: database.url, maxConnections: 3 }) : database;
    await Promise.all([workerOn(database).runOnce(), workerOn(other).runOnce(), workerOn(database).runOnce()]);
    if (other !== database) await other.close();
    expect(receiver.received).toHaveLength(8);
    expect(new Set(receiver.received.map((r) => r.id)).size).toBe(8);
  });
});
