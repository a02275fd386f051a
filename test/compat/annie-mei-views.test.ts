/**
 * The Annie Mei bot reading and deleting links through `annie_auth.*`, as a
 * role with exactly the bot's grants (annie-mei/annie-mei
 * docs/database-schemas.md: USAGE on the schema, SELECT and DELETE on the
 * two tables), running the bot's statements verbatim. PostgreSQL only: the
 * bot connects to a database server, which PGlite is not.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countViewUnlinks, takeOver } from '../../src/compat/annie-mei/database.ts';
import { createUserIdHasher, sha256 } from '../../src/core/crypto.ts';
import { createMetrics } from '../../src/core/metrics.ts';
import { createFlowStore } from '../../src/core/flows.ts';
import { createWebhookWorker } from '../../src/core/webhooks.ts';
import { flows } from '../../src/db/schema.ts';
import { eq } from '../../src/db/orm.ts';
import { createLogger } from '../../src/observability.ts';
import { startFakeAniList, type FakeAniList } from '../fakes/anilist.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { atFake, createTestGateway, reroute, type TestGateway } from '../helpers/gateway.ts';

const onPostgres = Boolean(process.env.TEST_DATABASE_URL);
const WEBHOOK_SECRET = 'whsec_annie_mei_0123456789abcdefghijklmnop';
const SERVICE_ENV = {
  PUBLIC_BASE_URL: 'https://auth.annie-mei.example',
  ANILIST_CLIENT_ID: '23456',
  ANILIST_CLIENT_SECRET: 'anilist-client-secret-from-the-old-env',
  ANILIST_REDIRECT_URI: 'https://auth.annie-mei.example/oauth/anilist/callback',
  OAUTH_CONTEXT_SIGNING_SECRET: 'bot-shared-signing-secret',
  USERID_HASH_SALT: 'bot-shared-salt',
  LINKGATE_METRICS: 'true',
};

// The bot's statements, verbatim (src/models/db/oauth_credential.rs, src/commands/unregister.rs).
const WHOAMI = 'SELECT discord_user_id, anilist_id, anilist_username FROM annie_auth.oauth_credentials WHERE discord_user_id = $1';
const GUILD_OVERLAY = 'SELECT discord_user_id, anilist_id, anilist_username FROM annie_auth.oauth_credentials WHERE discord_user_id = ANY($1)';
const DELETE_OAUTH_CREDENTIALS_SQL = 'DELETE FROM annie_auth.oauth_credentials WHERE discord_user_id = $1';
const DELETE_OAUTH_SESSIONS_SQL = 'DELETE FROM annie_auth.oauth_sessions WHERE discord_user_id = $1';
const INT8 = 20;

describe.skipIf(!onPostgres)('the Annie Mei bot on Linkgate’s annie_auth views (PostgreSQL)', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let anilist: FakeAniList;
  let gateway: TestGateway;
  let receiver: Server;
  const received: { body: string; signature: string }[] = [];
  let stopWorker: () => Promise<void>;
  let stopCounting: () => Promise<void>;
  const metrics = createMetrics();
  /** postgres.js as the database owner; `bot()` runs as the bot's role. */
  let admin: postgres.Sql;
  const botRole = `annie_mei_bot_${randomBytes(4).toString('hex')}`;

  /** Runs `work` in one transaction as the bot's role, as the bot's own connection would. */
  const asBot = <T>(work: (sql: postgres.TransactionSql) => Promise<T>) =>
    admin.begin(async (sql) => {
      await sql.unsafe(`set local role ${botRole}`);
      return work(sql);
    }) as Promise<T>;

  beforeAll(async () => {
    database = await createTestDatabase();
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        received.push({ body, signature: String(req.headers['linkgate-signature']) });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const webhookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
    anilist = await startFakeAniList({ clientId: SERVICE_ENV.ANILIST_CLIENT_ID, clientSecret: SERVICE_ENV.ANILIST_CLIENT_SECRET, redirectUris: [SERVICE_ENV.ANILIST_REDIRECT_URI] });
    gateway = await createTestGateway(database, {
      env: { ...SERVICE_ENV, LINKGATE_WEBHOOK_URL: webhookUrl, LINKGATE_WEBHOOK_SECRET: WEBHOOK_SECRET },
      fetch: reroute({ 'https://anilist.co': anilist.origin, 'https://graphql.anilist.co': anilist.graphqlUrl }),
      metrics,
    });
    const logger = createLogger('silent');
    const hash = createUserIdHasher(SERVICE_ENV.USERID_HASH_SALT);
    // What the server does at start-up on PostgreSQL with AniList configured.
    expect(await takeOver({ db: database.db, keyring: gateway.keyring, logger, fingerprint: (id) => hash('default', id), now: Date.now }, { webhooks: true })).toBeUndefined();
    stopCounting = await countViewUnlinks(database, metrics);
    const worker = createWebhookWorker({ database, url: new URL(webhookUrl), secret: WEBHOOK_SECRET, maxAttempts: 3, retryBaseMs: 50, logger, intervalMs: 50 });
    worker.start();
    stopWorker = () => worker.stop();

    admin = postgres(database.url!, { max: 2, onnotice: () => {} });
    // The grants of the bot's role, as annie-mei's docs/database-schemas.md gives them.
    await admin.unsafe(`create role ${botRole} nologin`);
    await admin.unsafe(`grant usage on schema annie_auth to ${botRole}`);
    await admin.unsafe(`grant select, delete on annie_auth.oauth_credentials to ${botRole}`);
    await admin.unsafe(`grant select, delete on annie_auth.oauth_sessions to ${botRole}`);
  });
  afterAll(async () => {
    await stopWorker?.();
    await stopCounting?.();
    await anilist?.close();
    await new Promise((resolve) => receiver?.close(resolve));
    await admin?.unsafe(`drop owned by ${botRole}`).catch(() => {});
    await admin?.end();
    await database?.close();
    // Roles belong to the cluster, not to the test's database.
    const cluster = postgres(process.env.TEST_DATABASE_URL!, { max: 1, onnotice: () => {} });
    await cluster.unsafe(`drop role if exists ${botRole}`);
    await cluster.end();
  });

  async function link(userId: string, anilistId: number, name: string) {
    anilist.users.set(anilistId, { id: anilistId, name });
    const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
    const made = (await (await gateway.api('/link-urls', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId, provider: 'anilist' }) })).json()) as { url: string };
    const started = await browser.openLink(made.url);
    expect((await browser.get(anilist.approve(atFake(new URL(started.headers.get('location')!), anilist.origin), anilistId))).status).toBe(200);
  }

  it("answers /whoami and the guild overlay with the bot's own queries: anilist_id a bigint, anilist_username the AniList name", async () => {
    await link('111111111111111111', 8001, 'Kuromi');
    await link('222222222222222222', 8002, 'Mei');
    const whoami = await asBot((sql) => sql.unsafe(WHOAMI, ['111111111111111111']));
    expect(whoami.columns.map((c) => [c.name, c.type])).toEqual([
      ['discord_user_id', 25],
      ['anilist_id', INT8],
      ['anilist_username', 25],
    ]);
    expect([...whoami]).toEqual([{ discord_user_id: '111111111111111111', anilist_id: '8001', anilist_username: 'Kuromi' }]);
    const overlay = await asBot((sql) => sql.unsafe(GUILD_OVERLAY, [['111111111111111111', '222222222222222222', '333333333333333333']]));
    expect([...overlay].map((r) => r.anilist_username).sort()).toEqual(['Kuromi', 'Mei']);
    expect([...(await asBot((sql) => sql.unsafe(WHOAMI, ['999999999999999999'])))]).toEqual([]);
  });

  it('shows the bot no token and nothing of Linkgate’s own tables', async () => {
    await expect(asBot((sql) => sql.unsafe('SELECT access_token FROM annie_auth.oauth_credentials'))).rejects.toMatchObject({ code: '42703' });
    await expect(asBot((sql) => sql.unsafe('SELECT credentials FROM links'))).rejects.toMatchObject({ code: '42501' });
    await expect(asBot((sql) => sql.unsafe("UPDATE annie_auth.oauth_credentials SET anilist_username = 'x'"))).rejects.toMatchObject({ code: '42501' });
  });

  it("/unregister's transaction unlinks for real: the API answers 404, a signed link.deleted webhook arrives, metrics count it, the open sign-in ends", async () => {
    await link('444444444444444444', 8004, 'Leaving');
    // A sign-in the user left half-way, which the bot's second DELETE is for.
    const made = (await (await gateway.api('/link-urls', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId: '444444444444444444', provider: 'anilist' }) })).json()) as { url: string };
    const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
    const started = await browser.openLink(made.url);
    const sessions = await asBot((sql) => sql.unsafe('SELECT state, discord_user_id, expires_at, used_at FROM annie_auth.oauth_sessions WHERE discord_user_id = $1', ['444444444444444444']));
    expect(sessions).toHaveLength(1);
    // A sign-in at AniList (an app's, whose person is not known yet) is not one of the bot's sessions.
    await createFlowStore(database.db, gateway.keyring, { claimMs: 1000 }).insert({
      state: 'sign-in-state-0123456789', codeVerifier: 'v', browserId: 'b', tenant: 'default', userId: '', provider: 'anilist',
      returnTo: undefined, step: { kind: 'redirect' }, data: {}, expiresAt: new Date(Date.now() + 600_000), signIn: 'interaction-uid',
    });
    expect((await asBot((sql) => sql.unsafe('SELECT discord_user_id FROM annie_auth.oauth_sessions'))).map((row) => row.discord_user_id)).not.toContain('');
    const before = received.length;

    const [credentials, sessionRows] = await asBot(async (sql) => [await sql.unsafe(DELETE_OAUTH_CREDENTIALS_SQL, ['444444444444444444']), await sql.unsafe(DELETE_OAUTH_SESSIONS_SQL, ['444444444444444444'])]);
    expect(credentials.count).toBe(1);
    expect(sessionRows.count).toBe(1);

    const answer = await gateway.api('/users/444444444444444444/links/anilist');
    expect(answer.status).toBe(404);
    expect(await answer.json()).toMatchObject({ error: { code: 'not_linked' } });
    expect([...(await asBot((sql) => sql.unsafe(WHOAMI, ['444444444444444444'])))]).toEqual([]);
    // The sign-in left open cannot finish any more.
    const state = new URL(started.headers.get('location')!).searchParams.get('state')!;
    const [flow] = await database.db.select().from(flows).where(eq(flows.stateHash, sha256(state)));
    expect(flow!.status).toBe('failed');
    expect(flow!.data).toBeNull();
    // Ended now, as a flow the gateway ends itself: the flow history orders by it.
    expect(Date.now() - flow!.endedAt!.getTime()).toBeLessThan(60_000);
    const late = await browser.get(anilist.approve(atFake(new URL(started.headers.get('location')!), anilist.origin), 8004));
    expect(late.status).toBe(400);
    expect((await gateway.api('/users/444444444444444444/links/anilist')).status).toBe(404);
    // The link's event log says so too, as after any unlink.
    const log = (await (await gateway.api('/users/444444444444444444/links/anilist/events')).json()) as { events: Array<{ kind: string; detail: unknown }> };
    expect(log.events[0]).toEqual(expect.objectContaining({ kind: 'unlinked', detail: { externalId: '8004', externalName: 'Leaving', via: 'annie_auth' } }));

    const deletedEvent = () => received.slice(before).find((r) => JSON.parse(r.body).type === 'link.deleted');
    for (let i = 0; i < 200 && !deletedEvent(); i += 1) await new Promise((resolve) => setTimeout(resolve, 50));
    const delivery = deletedEvent();
    expect(delivery).toBeDefined();
    const event = JSON.parse(delivery!.body) as { id: string; type: string; createdAt: string; link: Record<string, unknown> };
    expect(event.id).toMatch(/^evt_[0-9a-f-]{36}$/);
    expect(event.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(event.link).toMatchObject({ userId: '444444444444444444', provider: 'anilist', externalId: '8004', externalName: 'Leaving', status: 'active', scopes: [] });
    expect(event.link.linkedAt).toMatch(/Z$/);
    const [, t, v1] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(delivery!.signature)!;
    expect(createHmac('sha256', WEBHOOK_SECRET).update(`${t}.${delivery!.body}`).digest('hex')).toBe(v1);

    for (let i = 0; i < 50 && !metrics.render().includes('via="annie_auth"'); i += 1) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(metrics.render()).toContain('linkgate_links_deleted_total{provider="anilist",tenant="default",via="annie_auth"} 1');
  });

  it('deletes nothing for a user without a link, and says so (0 rows)', async () => {
    const [gone] = await asBot(async (sql) => [await sql.unsafe(DELETE_OAUTH_CREDENTIALS_SQL, ['555555555555555555'])]);
    expect(gone.count).toBe(0);
  });

  it('keeps the grants when the views are made again at the next start', async () => {
    const hash = createUserIdHasher(SERVICE_ENV.USERID_HASH_SALT);
    await takeOver({ db: database.db, keyring: gateway.keyring, logger: createLogger('silent'), fingerprint: (id) => hash('default', id), now: Date.now }, { webhooks: false });
    expect([...(await asBot((sql) => sql.unsafe(WHOAMI, ['111111111111111111'])))]).toHaveLength(1);
  });
});
