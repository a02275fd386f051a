/**
 * Webhooks from the outbox: events written with their change, signed
 * deliveries to a real HTTP receiver, retries with backoff through a
 * receiver that is down, a restart in between, dead letters and the
 * delivery log API.
 */
import { spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createWebhookWorker, enqueueCancelEvent, type WebhookWorker } from '../../src/core/webhooks.ts';
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

/**
 * The receiver code in docs/webhooks.md, exactly as it is written there (between its
 * `webhook-receiver` markers): saved as a module and imported, so what the
 * page tells receivers to run is what these tests run.
 */
interface LinkgateEvent {
  id: string;
  type: string;
  link?: { userId: string };
  cancellation?: { userId: string };
}
interface ReadmeReceiver {
  verifyLinkgateSignature(secret: string, header: unknown, rawBody: string, nowMs?: number): boolean;
  receiveLinkgateEvent(
    request: { headers: Record<string, string | string[] | undefined>; rawBody: string },
    options: { secret: string; handled: { has(id: string): boolean; add(id: string): unknown }; handle(event: LinkgateEvent): Promise<void> },
  ): Promise<number>;
}
async function readmeReceiver(): Promise<ReadmeReceiver> {
  const readme = readFileSync(fileURLToPath(new URL('../../docs/webhooks.md', import.meta.url)), 'utf8');
  const snippet = /<!-- webhook-receiver:start -->\s*```ts\n([\s\S]*?)```\s*<!-- webhook-receiver:end -->/.exec(readme)?.[1];
  if (!snippet) throw new Error('docs/webhooks.md has no webhook-receiver snippet');
  const file = fileURLToPath(new URL('../.tmp/readme-webhook-receiver.ts', import.meta.url));
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, snippet);
  return (await import(`${pathToFileURL(file).href}?${Date.now()}`)) as ReadmeReceiver;
}
let readme: ReadmeReceiver;
const verify = (secret: string, header: unknown, rawBody: string, nowSeconds: number) => readme.verifyLinkgateSignature(secret, header, rawBody, nowSeconds * 1000);

let database: Database & { url: string | undefined };
let receiver: Receiver;
let clock: number;
const logger = createLogger('silent');

beforeAll(async () => {
  database = await createTestDatabase();
  readme = await readmeReceiver();
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

describe('the receiver in docs/webhooks.md', () => {
  it('types every event the gateway sends: its LinkgateEvent type checks (tsc, strict) against real payloads, a cancelled one without a link', async () => {
    const gateway = await createTestGateway(database, { providersDir: FIXTURES, env: webhookEnv(), now: () => clock });
    await linkPin(gateway, 'u-typed', 'typed-user');
    expect((await gateway.api('/users/u-typed/links/pin', { method: 'DELETE' })).status).toBe(204);
    await enqueueCancelEvent(database.db, { tenant: 'default', userId: 'u-typed', provider: 'pin', reason: 'user' }, new Date(clock), true);
    const payloads = (await database.db.select().from(webhookDeliveries)).map((row) => row.payload);
    const types = payloads.map((payload) => (JSON.parse(payload) as { type: string }).type);
    expect(new Set(types)).toEqual(new Set(['link.created', 'link.deleted', 'link.cancelled']));
    expect(JSON.parse(payloads[types.indexOf('link.cancelled')]!)).not.toHaveProperty('link');

    // The payloads as a receiver gets them, assigned to the page's type: tsc refuses any the type does not describe.
    const dir = fileURLToPath(new URL('../.tmp/', import.meta.url));
    writeFileSync(
      `${dir}webhook-event-types.ts`,
      `import type { LinkgateEvent } from './readme-webhook-receiver.ts';\nexport const events: LinkgateEvent[] = [\n${payloads.join(',\n')}\n];\n` +
        // And a receiver narrowing on `type` reads what each kind has.
        `export const users = events.map((e) => (e.type === 'link.cancelled' ? e.cancellation.userId : e.link.userId));\n`,
    );
    const tsc = fileURLToPath(new URL('../../node_modules/.bin/tsc', import.meta.url));
    const checked = spawnSync(
      tsc,
      ['--ignoreConfig', '--noEmit', '--strict', '--target', 'ES2023', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--allowImportingTsExtensions', '--skipLibCheck', '--types', 'node', `${dir}webhook-event-types.ts`],
      { encoding: 'utf8', cwd: fileURLToPath(new URL('../..', import.meta.url)) },
    );
    expect(checked.stdout + checked.stderr).toBe('');
    expect(checked.status).toBe(0);
  });

  const body = JSON.stringify({ id: 'evt_00000000-0000-4000-8000-000000000000', type: 'link.created', link: { userId: 'u' } });
  const nowSeconds = Math.floor(Date.now() / 1000);
  /** A signature made the way a sender would, with node:crypto directly. */
  const sign = (t: number, signed = body, secret = SECRET) => `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${signed}`).digest('hex')}`;
  const genuine = sign(nowSeconds);
  const v1 = genuine.slice(genuine.indexOf('v1=') + 3);

  it('accepts a genuine signature made now', () => {
    expect(readme.verifyLinkgateSignature(SECRET, genuine, body, nowSeconds * 1000)).toBe(true);
  });

  it.each<[string, unknown]>([
    ['no header', undefined],
    ['null', null],
    ['an empty header', ''],
    ['a number', 42],
    ['the header twice (an array)', [genuine, genuine]],
    ['the header twice (joined by a proxy)', `${genuine}, ${genuine}`],
    ['only t', `t=${nowSeconds}`],
    ['only v1', `v1=${v1}`],
    ['v1 before t', `v1=${v1},t=${nowSeconds}`],
    ['a t that is not a number', `t=soon,v1=${v1}`],
    ['a t with a fraction', `t=${nowSeconds}.5,v1=${v1}`],
    ['a v1 one digit short', `t=${nowSeconds},v1=${v1.slice(1)}`],
    ['a v1 that is not hex', `t=${nowSeconds},v1=${'z'.repeat(64)}`],
    ['a v1 in upper case', `t=${nowSeconds},v1=${v1.toUpperCase()}`],
    ['a second scheme appended', `${genuine},v0=${v1}`],
    ['spaces around the parts', `t=${nowSeconds}, v1=${v1}`],
    ['another secret', sign(nowSeconds, body, 'another-secret-0123456789abcdefghijklmnop')],
    ['another body', sign(nowSeconds, body.replace('"u"', '"eve"'))],
    ['another time than the one signed', genuine.replace(`t=${nowSeconds}`, `t=${nowSeconds - 1}`)],
  ])('fails closed on %s: false, never an exception', (_name, header) => {
    expect(readme.verifyLinkgateSignature(SECRET, header, body, nowSeconds * 1000)).toBe(false);
  });

  it.each([
    [-301, false],
    [-299, true],
    [299, true],
    [301, false],
    [-86_400, false],
  ])('checks the time: a signature made %i s from now is %s', (offset, accepted) => {
    expect(readme.verifyLinkgateSignature(SECRET, sign(nowSeconds + offset), body, nowSeconds * 1000)).toBe(accepted);
  });

  it('handles each delivery once, by its id: a retry after a lost answer and a replay are answered 200 without running again; forgeries get 401', async () => {
    // Signed close to the wall clock, which is what the documented receiver checks against.
    clock = Date.now();
    const handledIds = new Set<string>();
    const handledEvents: LinkgateEvent[] = [];
    const requests: Array<{ headers: IncomingMessage['headers']; rawBody: string }> = [];
    let loseNextAnswer = true;
    const server = createServer((req, res) => {
      let rawBody = '';
      req.on('data', (chunk: Buffer) => (rawBody += chunk.toString('utf8')));
      req.on('end', () => {
        requests.push({ headers: req.headers, rawBody });
        void readme
          .receiveLinkgateEvent({ headers: req.headers, rawBody }, { secret: SECRET, handled: handledIds, handle: async (event) => void handledEvents.push(event) })
          .then((status) => {
            // The first answer never arrives (the receiver handled the event, then its connection broke).
            if (loseNextAnswer) {
              loseNextAnswer = false;
              req.socket.destroy();
            } else res.writeHead(status).end();
          });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`);
    try {
      const gateway = await createTestGateway(database, { providersDir: FIXTURES, env: { LINKGATE_WEBHOOK_URL: url.href, LINKGATE_WEBHOOK_SECRET: SECRET }, now: () => clock });
      await linkPin(gateway, 'u-readme', 'readme-user');
      const worker = createWebhookWorker({ database, url, secret: SECRET, maxAttempts: 10, retryBaseMs: 1000, logger, now: () => clock });
      expect(await worker.runOnce()).toBe(1);
      expect((await database.db.select().from(webhookDeliveries))[0]).toMatchObject({ status: 'pending', lastError: 'the receiver could not be reached' });
      await drain(worker);

      // Sent twice, handled once; the payload carries the delivery id, the same as the header's and the log's.
      expect(requests).toHaveLength(2);
      expect(handledEvents).toHaveLength(1);
      const id = String(requests[0]!.headers['linkgate-event-id']);
      expect(requests[1]!.headers['linkgate-event-id']).toBe(id);
      expect(handledEvents[0]).toMatchObject({ id, type: 'link.created', link: { userId: 'u-readme' } });
      const log = (await (await gateway.api('/webhooks/deliveries?status=delivered')).json()) as { deliveries: Array<{ id: string; event: { id: string } }> };
      expect(log.deliveries).toEqual([expect.objectContaining({ id, event: expect.objectContaining({ id }) })]);

      // Someone who captured the request sends it again within the signature window: answered, not handled.
      const captured = requests[1]!;
      const replay = (headers: Record<string, string>, rawBody: string) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: rawBody });
      const signed = { 'linkgate-event-id': id, 'linkgate-signature': String(captured.headers['linkgate-signature']) };
      expect((await replay(signed, captured.rawBody)).status).toBe(200);
      expect((await replay(signed, captured.rawBody.replace('u-readme', 'u-eve'))).status).toBe(401);
      expect((await replay({ 'linkgate-event-id': id }, captured.rawBody)).status).toBe(401);
      expect((await replay({ ...signed, 'linkgate-signature': 'garbage' }, captured.rawBody)).status).toBe(401);
      expect(handledEvents).toHaveLength(1);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
