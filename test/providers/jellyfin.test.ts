import { createServer, type Server } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { sql } from '../../src/db/orm.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcileAccountIds } from '../../src/core/account-ids.ts';
import { createLinkStore } from '../../src/core/links.ts';
import { webhookDeliveries } from '../../src/db/schema.ts';
import { createLogger } from '../../src/observability.ts';
import type { Database } from '../../src/db/client.ts';
import { startFakeJellyfin, type FakeJellyfin } from '../fakes/jellyfin.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { mintContext } from '../helpers/context.ts';

let database: Database;
let jellyfin: FakeJellyfin;
let gateway: TestGateway;

const USER_ID = '4f6a1b2c3d4e5f60718293a4b5c6d7e8';
const PASSWORD = 'tr0ub4dor&3-jellyfin';
const LAN_USER_ID = '0a1b2c3d4e5f60718293a4b5c6d7e8f9';

beforeAll(async () => {
  database = await createTestDatabase();
  jellyfin = await startFakeJellyfin({ serverName: 'Home' });
  jellyfin.users.set(USER_ID, { id: USER_ID, name: 'Ada', password: PASSWORD });
  jellyfin.users.set(LAN_USER_ID, { id: LAN_USER_ID, name: 'Grace', password: 'grace-password' });
  // One Jellyfin account is linked by several bot users in this file.
  gateway = await createTestGateway(database, { env: { JELLYFIN_SERVER_URL: jellyfin.url, LINK_ALLOW_SHARED_ACCOUNTS: 'true' } });
});
afterAll(async () => {
  await jellyfin?.close();
  await database?.close();
});

const mint = (userId: string) => mintContext('jellyfin', userId);

const state = (html: string) => /name="state" value="([^"]+)"/.exec(html)![1]!;
const formError = (html: string) => /<p class="error" role="alert" id="form-error">([^<]*)<\/p>/.exec(html)?.[1];
const browserFor = (g: TestGateway) => new TestBrowser((path, init) => g.app.request(path, init));

async function dumpAllTables(): Promise<string> {
  const tables = ['flows', 'used_contexts', 'links', 'kv'];
  const rows = await Promise.all(tables.map((t) => database.db.execute(sql.raw(`select * from ${t}`))));
  return JSON.stringify(rows);
}

describe('Jellyfin', () => {
  it('links through Quick Connect with a MediaBrowser header and a fresh device id per link', async () => {
    const browser = browserFor(gateway);
    const start = await browser.openLink(`/oauth/jellyfin/start?context=${await mint('qc-user')}`);
    expect(start.status).toBe(200);
    const page = await start.text();
    const code = /class="code"[^>]*>(\d{6})</.exec(page)![1]!;
    expect(page).toContain('Settings → Quick Connect → enter this code');
    // The server keeps a code ten minutes, but the sign-in lives OAUTH_STATE_TTL_SECONDS (5 minutes): the page promises the shorter.
    expect(page).toContain('The code works for about 4 minutes.');
    const s = state(page);

    expect(await (await browser.get(`/oauth/jellyfin/poll?state=${s}`)).json()).toMatchObject({ status: 'pending' });
    jellyfin.approve(code, USER_ID);
    expect(await (await browser.get(`/oauth/jellyfin/poll?state=${s}`)).json()).toEqual({ status: 'linked' });
    expect(await (await gateway.api('/users/qc-user/links/jellyfin')).json()).toMatchObject({ externalId: USER_ID, externalName: 'Ada', status: 'active' });

    for (const header of jellyfin.authHeaders) {
      expect(header).toMatchObject({ Client: 'Linkgate', Device: 'Linkgate', Version: expect.any(String), DeviceId: expect.stringMatching(/^[0-9a-f]{32}$/) });
    }
    const token = await gateway.api('/users/qc-user/links/jellyfin/token', { method: 'POST' });
    expect(token.status).toBe(200);
    const body = (await token.json()) as { accessToken: string; serverUrl: string; externalUserId: string };
    expect(body).toMatchObject({ serverUrl: jellyfin.url, externalUserId: USER_ID });
    expect(jellyfin.isActive(body.accessToken)).toBe(true);
  });

  it('keeps two links of the same Jellyfin user apart (one device id each)', async () => {
    const tokens: string[] = [];
    const shared = gateway;
    for (const user of ['twin-a', 'twin-b']) {
      const browser = browserFor(shared);
      const start = await browser.openLink(`/oauth/jellyfin/start?context=${await mint(user)}`);
      const s = state(await start.text());
      const form = await browser.post('/oauth/jellyfin/callback', { state: s, linkgate_action: 'password' });
      expect(await form.text()).toContain('Sign in to Jellyfin');
      const done = await browser.post('/oauth/jellyfin/callback', { state: s, username: 'Ada', password: PASSWORD });
      expect(done.status).toBe(200);
      tokens.push(((await (await shared.api(`/users/${user}/links/jellyfin/token`, { method: 'POST' })).json()) as { accessToken: string }).accessToken);
    }
    expect(tokens[0]).not.toBe(tokens[1]);
    expect(tokens.every((t) => jellyfin.isActive(t))).toBe(true);
  });

  it('re-shows the form on a wrong password, and the password appears nowhere: database, logs, responses', async () => {
    const browser = browserFor(gateway);
    const start = await browser.openLink(`/oauth/jellyfin/start?context=${await mint('pw-user')}`);
    const s = state(await start.text());
    const responses: string[] = [];
    const form = await browser.post('/oauth/jellyfin/callback', { state: s, linkgate_action: 'password' });
    responses.push(await form.text());
    const wrong = await browser.post('/oauth/jellyfin/callback', { state: s, username: 'Ada', password: `${PASSWORD}-wrong` });
    expect(wrong.status).toBe(200);
    const wrongPage = await wrong.text();
    responses.push(wrongPage);
    expect(wrongPage).toContain('Wrong username or password.');
    expect(wrongPage).toContain('value="Ada"');
    responses.push(await (await browser.get(`/oauth/jellyfin/poll?state=${s}`)).text());
    const right = await browser.post('/oauth/jellyfin/callback', { state: s, username: 'Ada', password: PASSWORD });
    expect(right.status).toBe(200);
    responses.push(await right.text());
    responses.push(await (await gateway.api('/users/pw-user/links/jellyfin')).text());
    responses.push(await (await gateway.api('/users/pw-user/links/jellyfin/token', { method: 'POST' })).text());

    const everything = [await dumpAllTables(), gateway.logs.join('\n'), ...responses].join('\n');
    for (const secret of [PASSWORD, `${PASSWORD}-wrong`]) {
      expect(everything).not.toContain(secret);
      expect(everything).not.toContain(encodeURIComponent(secret));
    }
  });

  it('goes straight to the password form when Quick Connect is disabled', async () => {
    jellyfin.quickConnectEnabled = false;
    try {
      const start = await browserFor(gateway).openLink(`/oauth/jellyfin/start?context=${await mint('no-qc')}`);
      const page = await start.text();
      expect(page).toContain('Sign in to Jellyfin');
      expect(page).toContain('autocomplete="current-password"');
    } finally {
      jellyfin.quickConnectEnabled = true;
    }
  });

  it('keeps waiting through a server hiccup while the user approves the code', async () => {
    const browser = browserFor(gateway);
    const page = await (await browser.openLink(`/oauth/jellyfin/start?context=${await mint('hiccup')}`)).text();
    const code = /class="code"[^>]*>(\d{6})</.exec(page)![1]!;
    const s = state(page);
    jellyfin.failNext('connect', 'http500');
    expect(await (await browser.get(`/oauth/jellyfin/poll?state=${s}`)).json()).toMatchObject({ status: 'pending' });
    jellyfin.approve(code, USER_ID);
    expect(await (await browser.get(`/oauth/jellyfin/poll?state=${s}`)).json()).toEqual({ status: 'linked' });
  });

  it('says so and offers a new code when a Quick Connect code expires', async () => {
    const browser = browserFor(gateway);
    const page = await (await browser.openLink(`/oauth/jellyfin/start?context=${await mint('expiring')}`)).text();
    const code = /class="code"[^>]*>(\d{6})</.exec(page)![1]!;
    const s = state(page);
    jellyfin.expireQuickConnect(code);
    const expired = await browser.post('/oauth/jellyfin/callback', { state: s, linkgate_action: 'poll' });
    const expiredPage = await expired.text();
    expect(expiredPage).toContain('The code expired or was refused');
    expect(expiredPage).toContain('Get a new code');
    const again = await browser.post('/oauth/jellyfin/callback', { state: s });
    const newCode = /class="code"[^>]*>(\d{6})</.exec(await again.text())![1]!;
    expect(newCode).not.toBe(code);
  });

  it('verify checks the token on the server, and DELETE logs the session out', async () => {
    const browser = browserFor(gateway);
    const s = state(await (await browser.openLink(`/oauth/jellyfin/start?context=${await mint('del-user')}`)).text());
    await browser.post('/oauth/jellyfin/callback', { state: s, linkgate_action: 'password' });
    expect((await browser.post('/oauth/jellyfin/callback', { state: s, username: 'Ada', password: PASSWORD })).status).toBe(200);
    const store = createLinkStore(database.db, gateway.keyring);
    const token = store.openCredentials((await store.get({ tenant: 'default', userId: 'del-user', provider: 'jellyfin' }))!).accessToken!;
    expect(await (await gateway.api('/users/del-user/links/jellyfin?verify=true')).json()).toMatchObject({ status: 'active' });

    const logouts = jellyfin.counts.logout;
    expect((await gateway.api('/users/del-user/links/jellyfin', { method: 'DELETE' })).status).toBe(204);
    expect(jellyfin.counts.logout).toBe(logouts + 1);
    expect(jellyfin.isActive(token)).toBe(false);
  });

  it('turns a token the server no longer accepts into needs_reauth on verify', async () => {
    const browser = browserFor(gateway);
    const s = state(await (await browser.openLink(`/oauth/jellyfin/start?context=${await mint('stale-user')}`)).text());
    await browser.post('/oauth/jellyfin/callback', { state: s, linkgate_action: 'password' });
    await browser.post('/oauth/jellyfin/callback', { state: s, username: 'Ada', password: PASSWORD });
    const store = createLinkStore(database.db, gateway.keyring);
    const token = store.openCredentials((await store.get({ tenant: 'default', userId: 'stale-user', provider: 'jellyfin' }))!).accessToken!;
    await fetch(`${jellyfin.url}/Sessions/Logout`, { method: 'POST', headers: { authorization: `MediaBrowser Client="x", Device="x", DeviceId="x", Version="1", Token="${token}"` } });
    expect(await (await gateway.api('/users/stale-user/links/jellyfin?verify=true')).json()).toMatchObject({ status: 'needs_reauth' });
  });
});

describe('Jellyfin with a server the user types', () => {
  let userGateway: TestGateway;
  let redirector: Server;
  let redirectorUrl: string;
  let redirectorHits = 0;

  beforeAll(async () => {
    userGateway = await createTestGateway(database, { env: { JELLYFIN_ALLOW_USER_SERVER: 'true' } });
    redirector = createServer((_req, res) => {
      redirectorHits += 1;
      res.writeHead(302, { location: 'http://169.254.169.254/System/Info/Public' }).end();
    });
    await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.1', resolve));
    redirectorUrl = `http://127.0.0.1:${(redirector.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    redirector.closeAllConnections();
    redirector.close();
  });

  it.each([
    ['127.0.0.1', () => jellyfin.url],
    ['10.0.0.1', () => 'http://10.0.0.1:8096'],
    ['169.254.169.254', () => 'http://169.254.169.254'],
    ['[::1]', () => `http://[::1]:${new URL(jellyfin.url).port}`],
    ['a name resolving to loopback', () => jellyfin.url.replace('127.0.0.1', 'localhost')],
  ])('refuses a server at %s before sending it anything', async (_name, url) => {
    const browser = browserFor(userGateway);
    const start = await browser.openLink(`/oauth/jellyfin/start?context=${await mint('ssrf-user')}`);
    const page = await start.text();
    expect(page).toContain('Which Jellyfin server do you use?');
    const headersBefore = jellyfin.authHeaders.length;
    const answer = await browser.post('/oauth/jellyfin/callback', { state: state(page), server: url() });
    expect(answer.status).toBe(200);
    expect(formError(await answer.text())).toBe('No Jellyfin server answered at that address.');
    expect(jellyfin.authHeaders.length).toBe(headersBefore);
  });

  it('says the same for an address on a private network and one where nothing answers, so the form tells nobody which internal names exist', async () => {
    const closed = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const answers = new Map<string, string | undefined>();
    for (const server of [
      'localhost', // resolves, to loopback
      'http://10.1.2.3:8096', // a private address
      'no-such-jellyfin.invalid', // resolves to nothing (RFC 2606)
      `http://no-such-jellyfin.invalid:${closed}/jellyfin`,
    ]) {
      const browser = browserFor(userGateway);
      const page = await (await browser.openLink(`/oauth/jellyfin/start?context=${await mint('oracle-user')}`)).text();
      const answer = await browser.post('/oauth/jellyfin/callback', { state: state(page), server });
      expect(answer.status).toBe(200);
      answers.set(server, formError(await answer.text()));
    }
    expect(new Set(answers.values())).toEqual(new Set(['No Jellyfin server answered at that address.']));
    // And one served by the LAN gateway, that may reach private addresses: nothing listens there.
    const lan = await createTestGateway(database, { env: { JELLYFIN_ALLOW_USER_SERVER: 'true', JELLYFIN_ALLOW_PRIVATE_SERVERS: 'true' } });
    const browser = browserFor(lan);
    const page = await (await browser.openLink(`/oauth/jellyfin/start?context=${await mint('oracle-user')}`)).text();
    expect(formError(await (await browser.post('/oauth/jellyfin/callback', { state: state(page), server: `http://127.0.0.1:${closed}` })).text())).toBe(
      'No Jellyfin server answered at that address.',
    );
  });

  it('does not follow a redirect to a private address', async () => {
    // The redirector itself is on loopback too, so allow private servers to reach it, and check the redirect is not followed.
    const lan = await createTestGateway(database, { env: { JELLYFIN_ALLOW_USER_SERVER: 'true', JELLYFIN_ALLOW_PRIVATE_SERVERS: 'true' } });
    const browser = browserFor(lan);
    const page = await (await browser.openLink(`/oauth/jellyfin/start?context=${await mint('redirect-user')}`)).text();
    const answer = await browser.post('/oauth/jellyfin/callback', { state: state(page), server: redirectorUrl });
    expect(await answer.text()).toContain('No Jellyfin server answered at that address.');
    expect(redirectorHits).toBe(1);
  });

  it('links with a typed server when private servers are allowed (a LAN deployment)', async () => {
    const lan = await createTestGateway(database, { env: { JELLYFIN_ALLOW_USER_SERVER: 'true', JELLYFIN_ALLOW_PRIVATE_SERVERS: 'true' } });
    const browser = browserFor(lan);
    const page = await (await browser.openLink(`/oauth/jellyfin/start?context=${await mint('lan-user')}`)).text();
    const s = state(page);
    const wait = await browser.post('/oauth/jellyfin/callback', { state: s, server: jellyfin.url });
    const code = /class="code"[^>]*>(\d{6})</.exec(await wait.text())![1]!;
    jellyfin.approve(code, LAN_USER_ID);
    expect(await (await browser.get(`/oauth/jellyfin/poll?state=${s}`)).json()).toEqual({ status: 'linked' });
    const token = (await (await lan.api('/users/lan-user/links/jellyfin/token', { method: 'POST' })).json()) as { serverUrl: string; externalUserId: string };
    expect(token).toMatchObject({ serverUrl: jellyfin.url, externalUserId: LAN_USER_ID });
  });
  it('tells the same user id on two typed servers apart: the origin the gateway reached is part of the account id', async () => {
    const other = await startFakeJellyfin({ serverName: 'Elsewhere' });
    other.users.set(USER_ID, { id: USER_ID, name: 'Ada', password: `${PASSWORD}-elsewhere` });
    try {
      expect(other.serverId).not.toBe(jellyfin.serverId);
      // One account per user here: a second bot user linking the same account is refused.
      const strict = await createTestGateway(database, { env: { JELLYFIN_ALLOW_USER_SERVER: 'true', JELLYFIN_ALLOW_PRIVATE_SERVERS: 'true' } });
      const linkOn = async (server: string, user: string, password: string) => {
        const browser = browserFor(strict);
        const s = state(await (await browser.openLink(`/oauth/jellyfin/start?context=${await mint(user)}`)).text());
        await browser.post('/oauth/jellyfin/callback', { state: s, server });
        await browser.post('/oauth/jellyfin/callback', { state: s, linkgate_action: 'password' });
        return browser.post('/oauth/jellyfin/callback', { state: s, username: 'Ada', password });
      };
      const linked = async (answer: Response) => {
        expect(answer.status).toBe(200);
        expect(await answer.text()).toContain('Account linked');
      };

      await linked(await linkOn(jellyfin.url, 'two-servers-a', PASSWORD));
      await linked(await linkOn(other.url, 'two-servers-b', `${PASSWORD}-elsewhere`));
      expect(await (await strict.api('/users/two-servers-a/links/jellyfin')).json()).toMatchObject({ externalId: `${USER_ID}@${jellyfin.url}`, externalName: 'Ada' });
      expect(await (await strict.api('/users/two-servers-b/links/jellyfin')).json()).toMatchObject({ externalId: `${USER_ID}@${other.url}`, externalName: 'Ada' });
      const token = (await (await strict.api('/users/two-servers-b/links/jellyfin/token', { method: 'POST' })).json()) as Record<string, string>;
      expect(token).toMatchObject({ serverUrl: other.url, externalUserId: USER_ID });
      expect(other.isActive(token.accessToken!)).toBe(true);

      // The same account on the same server is still one account.
      const again = await linkOn(other.url, 'two-servers-c', `${PASSWORD}-elsewhere`);
      expect(again.status).toBe(409);
      expect(await again.text()).toContain('already linked to another user');
    } finally {
      await other.close();
    }
  });
  it('keeps serving a link stored before the server id was part of the account id', async () => {
    const lan = await createTestGateway(database, { env: { JELLYFIN_ALLOW_USER_SERVER: 'true', JELLYFIN_ALLOW_PRIVATE_SERVERS: 'true' } });
    const deviceId = 'a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5';
    const accessToken = jellyfin.issueToken(LAN_USER_ID, deviceId);
    // What earlier versions stored for a typed server: the bare user id, no server id in extra.
    await createLinkStore(database.db, lan.keyring).store(
      { tenant: 'default', userId: 'legacy-typed', provider: 'jellyfin' },
      { id: LAN_USER_ID, name: 'Grace' },
      { accessToken, tokenType: 'MediaBrowser', extra: { serverUrl: jellyfin.url, deviceId, userId: LAN_USER_ID } },
      { allowShared: true, now: new Date() },
    );
    expect(await (await lan.api('/users/legacy-typed/links/jellyfin?verify=true')).json()).toMatchObject({ externalId: LAN_USER_ID, status: 'active' });
    expect(await (await lan.api('/users/legacy-typed/links/jellyfin/token', { method: 'POST' })).json()).toMatchObject({
      accessToken,
      serverUrl: jellyfin.url,
      externalUserId: LAN_USER_ID,
    });
  });
});

/** Signs in with a password through a typed server address (or the fixed server, `server` undefined); the last page. */
async function passwordLink(g: TestGateway, server: string | undefined, userId: string, username: string, password: string): Promise<Response> {
  const browser = browserFor(g);
  let page = await (await browser.openLink(`/oauth/jellyfin/start?context=${await mint(userId)}`)).text();
  const s = state(page);
  if (server !== undefined) {
    const answer = await browser.post('/oauth/jellyfin/callback', { state: s, server });
    page = await answer.text();
    if (!page.includes('Quick Connect') && !page.includes('Sign in to Jellyfin')) return new Response(page, { status: answer.status });
  }
  await browser.post('/oauth/jellyfin/callback', { state: s, linkgate_action: 'password' });
  return browser.post('/oauth/jellyfin/callback', { state: s, username, password });
}

const linkedAs = async (g: TestGateway, userId: string) => ((await (await g.api(`/users/${userId}/links/jellyfin`)).json()) as { externalId?: string }).externalId;

describe('Jellyfin account ids come from the address the gateway reached', () => {
  const VICTIM_ID = '5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a';
  let real: FakeJellyfin;
  let impostor: FakeJellyfin;
  beforeAll(async () => {
    real = await startFakeJellyfin({ serverName: 'Real' });
    real.users.set(VICTIM_ID, { id: VICTIM_ID, name: 'Victim', password: 'victim-password' });
    // Claims to be the real server, and has an account with the victim's id and a password its owner knows.
    impostor = await startFakeJellyfin({ serverName: 'Real', serverId: real.serverId });
    impostor.users.set(VICTIM_ID, { id: VICTIM_ID, name: 'Victim', password: 'impostor-password' });
  });
  afterAll(async () => {
    await real?.close();
    await impostor?.close();
  });

  it('a server claiming a real server’s SystemId and a user’s id links only an account at its own address; the owner still links theirs', async () => {
    const strict = await createTestGateway(database, { env: { JELLYFIN_ALLOW_USER_SERVER: 'true', JELLYFIN_ALLOW_PRIVATE_SERVERS: 'true' } });
    const squatted = await passwordLink(strict, impostor.url, 'squatter', 'Victim', 'impostor-password');
    expect(await squatted.text()).toContain('Account linked');
    expect(await linkedAs(strict, 'squatter')).toBe(`${VICTIM_ID}@${impostor.url}`);

    const owned = await passwordLink(strict, real.url, 'owner', 'Victim', 'victim-password');
    expect(owned.status).toBe(200);
    expect(await owned.text()).toContain('Account linked');
    expect(await linkedAs(strict, 'owner')).toBe(`${VICTIM_ID}@${real.url}`);
  });

  it('links keyed by what a typed server said about itself are keyed by the address they were made with at start-up, and keep working', async () => {
    // A database of its own: the start-up pass reads every Jellyfin link there is.
    const own = await createTestDatabase();
    try {
      const typedOnly = await createTestGateway(own, { env: { JELLYFIN_ALLOW_USER_SERVER: 'true', JELLYFIN_ALLOW_PRIVATE_SERVERS: 'true', LINKGATE_WEBHOOK_URL: 'https://hooks.example/jf', LINKGATE_WEBHOOK_SECRET: 'jellyfin-hooks-secret-0123456789abcdef' } });
      const store = createLinkStore(own.db, typedOnly.keyring);
      const legacy = async (userId: string, id: string, fake: FakeJellyfin, extra: Record<string, string> = {}) => {
        const deviceId = `${userId.replaceAll('-', '').padEnd(32, '0')}`.slice(0, 32);
        const accessToken = fake.issueToken(VICTIM_ID, deviceId);
        await store.store(
          { tenant: 'default', userId, provider: 'jellyfin' },
          { id, name: 'Victim' },
          { accessToken, tokenType: 'MediaBrowser', extra: { serverUrl: fake.url, deviceId, userId: VICTIM_ID, ...extra } },
          { allowShared: true, now: new Date() },
        );
        return accessToken;
      };
      // What earlier versions stored: `<SystemId>:<user id>` for the owner and for an impostor claiming the same SystemId,
      // and before that the bare user id.
      const tokens = {
        'legacy-owner': await legacy('legacy-owner', `${real.serverId}:${VICTIM_ID}`, real, { serverId: real.serverId }),
        'legacy-squatter': await legacy('legacy-squatter', `${real.serverId}:${VICTIM_ID}`, impostor, { serverId: real.serverId }),
        'legacy-bare': await legacy('legacy-bare', VICTIM_ID, real),
      };

      const logger = createLogger('silent');
      expect(await reconcileAccountIds({ db: own.db, keyring: typedOnly.keyring, registry: typedOnly.registry, logger, webhookEvents: true })).toBe(3);
      expect(await linkedAs(typedOnly, 'legacy-owner')).toBe(`${VICTIM_ID}@${real.url}`);
      expect(await linkedAs(typedOnly, 'legacy-squatter')).toBe(`${VICTIM_ID}@${impostor.url}`);
      expect(await linkedAs(typedOnly, 'legacy-bare')).toBe(`${VICTIM_ID}@${real.url}`);
      for (const [userId, accessToken] of Object.entries(tokens)) {
        expect(await (await typedOnly.api(`/users/${userId}/links/jellyfin/token`, { method: 'POST' })).json()).toMatchObject({ accessToken, externalUserId: VICTIM_ID });
      }
      // Bots hear of the new ids; a second start changes nothing.
      const events = await own.db.select().from(webhookDeliveries);
      expect(events.map((e) => [e.type, (JSON.parse(e.payload) as { link: { userId: string; externalId: string } }).link.externalId]).sort()).toEqual(
        [['link.updated', `${VICTIM_ID}@${impostor.url}`], ['link.updated', `${VICTIM_ID}@${real.url}`], ['link.updated', `${VICTIM_ID}@${real.url}`]].sort(),
      );
      expect(await reconcileAccountIds({ db: own.db, keyring: typedOnly.keyring, registry: typedOnly.registry, logger, webhookEvents: true })).toBe(0);

      // With a JELLYFIN_SERVER_URL: a link made by typing that server's address is an account on it; a bare id
      // on another address may be the operator's server under an earlier URL, and is left alone.
      const operator = await createTestGateway(own, { env: { JELLYFIN_SERVER_URL: `${real.url}/`, JELLYFIN_ALLOW_USER_SERVER: 'true' } });
      await legacy('legacy-operator-typed', `${real.serverId}:${VICTIM_ID}`, real, { serverId: real.serverId });
      await legacy('legacy-elsewhere', VICTIM_ID, impostor);
      expect(await reconcileAccountIds({ db: own.db, keyring: operator.keyring, registry: operator.registry, logger, webhookEvents: false })).toBe(3);
      for (const onOperator of ['legacy-operator-typed', 'legacy-owner', 'legacy-bare']) expect(await linkedAs(operator, onOperator)).toBe(VICTIM_ID);
      expect(await linkedAs(operator, 'legacy-elsewhere')).toBe(VICTIM_ID);
      expect(await linkedAs(operator, 'legacy-squatter')).toBe(`${VICTIM_ID}@${impostor.url}`);
    } finally {
      await own.close();
    }
  });
});

describe('the operator’s own Jellyfin server, typed', () => {
  const OWN_ID = '6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b';
  let operator: FakeJellyfin;
  let forwarder: NetServer;
  let forwarderUrl: string;
  beforeAll(async () => {
    operator = await startFakeJellyfin({ serverName: 'Operator', quickConnectEnabled: false });
    operator.users.set(OWN_ID, { id: OWN_ID, name: 'Owner', password: 'owner-password' });
    // The same server at another address (another name or port for it).
    const port = Number(new URL(operator.url).port);
    forwarder = createNetServer((socket) => socket.pipe(connect(port, '127.0.0.1')).pipe(socket));
    await new Promise<void>((resolve) => forwarder.listen(0, '127.0.0.1', resolve));
    forwarderUrl = `http://127.0.0.1:${(forwarder.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    forwarder?.close();
    await operator?.close();
  });

  it('is that server in any spelling, and in any other name answering with its SystemId: LINK_ALLOW_SHARED_ACCOUNTS=false holds', async () => {
    const env = { JELLYFIN_SERVER_URL: operator.url, JELLYFIN_ALLOW_USER_SERVER: 'true' };
    const strict = await createTestGateway(database, { env });
    expect(await (await passwordLink(strict, operator.url, 'own-first', 'Owner', 'owner-password')).text()).toContain('Account linked');
    expect(await linkedAs(strict, 'own-first')).toBe(OWN_ID);

    const port = new URL(operator.url).port;
    const spellings = [`${operator.url}/.`, `${operator.url}/`, `${operator.url}//`, `${operator.url}/web/index.html#!/home.html`, `${operator.url}/some/path?x=1`, `HTTP://127.0.0.1:${port}/`];
    // With private servers allowed, each spelling reaches the server as a typed one would; without, only the operator's may.
    const lan = await createTestGateway(database, { env: { ...env, JELLYFIN_ALLOW_PRIVATE_SERVERS: 'true' } });
    for (const [name, g] of [['strict', strict], ['lan', lan]] as const) {
      for (const [i, spelling] of spellings.entries()) {
        const again = await passwordLink(g, spelling, `own-again-${name}-${i}`, 'Owner', 'owner-password');
        expect(again.status, spelling).toBe(409);
        expect(await again.text()).toContain('already linked to another user');
      }
    }
    // Another address for it: only reachable with private servers allowed; its SystemId gives it away.
    const aliased = await passwordLink(lan, forwarderUrl, 'own-alias', 'Owner', 'owner-password');
    expect(aliased.status).toBe(409);
    expect(await lan.api('/users/own-alias/links/jellyfin').then((r) => r.status)).toBe(404);
  });
});

describe('Jellyfin password tries', () => {
  let server: FakeJellyfin;
  let clock = Date.parse('2026-11-23T12:00:00Z');
  let a: TestGateway;
  let b: TestGateway;
  const USERS = ['Tries1', 'Tries2', 'Tries3', 'Tries4'];
  beforeAll(async () => {
    server = await startFakeJellyfin({ serverName: 'Tries', quickConnectEnabled: false });
    for (const [i, name] of USERS.entries()) server.users.set(`7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7${i}`, { id: `7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7${i}`, name, password: `${name}-password` });
    // Two instances on one database.
    const env = { JELLYFIN_SERVER_URL: server.url, LINK_ALLOW_SHARED_ACCOUNTS: 'true' };
    a = await createTestGateway(database, { env, now: () => clock });
    b = await createTestGateway(database, { env, now: () => clock });
  });
  afterAll(() => server?.close());

  /** A sign-in on the password form, ready to take tries. */
  async function passwordForm(g: TestGateway, userId: string) {
    const browser = browserFor(g);
    const s = state(await (await browser.openLink(`/oauth/jellyfin/start?context=${await mintContext('jellyfin', userId, { now: clock })}`)).text());
    return { browser, s, attempt: (username: string, password: string) => browser.post('/oauth/jellyfin/callback', { state: s, username, password }) };
  }

  it('end a sign-in after 5 wrong passwords, with a page that says so; the right one then links nothing', async () => {
    const asked = server.counts.authenticateByName;
    const flow = await passwordForm(a, 'tries-flow');
    for (let left = 4; left >= 1; left -= 1) {
      const wrong = await flow.attempt('Tries1', 'wrong');
      expect(wrong.status).toBe(200);
      expect(formError(await wrong.text())).toBe(`Wrong username or password. ${left} ${left === 1 ? 'try' : 'tries'} left.`);
    }
    const ended = await flow.attempt('Tries1', 'wrong');
    expect(ended.status).toBe(429);
    const page = await ended.text();
    expect(page).toContain('Too many wrong passwords');
    expect(page).toContain('too_many_attempts');
    const right = await flow.attempt('Tries1', 'Tries1-password');
    expect(right.status).toBe(400);
    expect(await right.text()).toContain('flow_not_found');
    expect(server.counts.authenticateByName).toBe(asked + 5);
    expect((await a.api('/users/tries-flow/links/jellyfin')).status).toBe(404);
  });

  it('per username on a server across sign-ins and instances: after 5 wrong, each try waits longer (30 s, then 60 s), without asking the server', async () => {
    const asked = () => server.counts.authenticateByName;
    const first = await passwordForm(a, 'tries-across');
    for (let i = 0; i < 3; i += 1) expect(formError(await (await first.attempt('Tries2', 'wrong')).text())).toMatch(/^Wrong username or password/);
    const second = await passwordForm(b, 'tries-across');
    for (let i = 0; i < 2; i += 1) expect(formError(await (await second.attempt('tries2', 'wrong')).text())).toMatch(/^Wrong username or password/);
    const before = asked();
    // Any spelling of the username, any sign-in, any instance, even with the right password: wait.
    for (const [flow, username] of [[second, 'Tries2'], [first, 'TRIES2'], [await passwordForm(a, 'tries-across'), 'Tries2']] as const) {
      const waited = await flow.attempt(username, 'Tries2-password');
      expect(waited.status).toBe(200);
      expect(formError(await waited.text())).toBe('Too many wrong passwords for this username. Try again in 30 seconds.');
    }
    expect(asked()).toBe(before);
    // Another username on the same server is not held up.
    expect(await (await (await passwordForm(b, 'tries-other')).attempt('Tries3', 'Tries3-password')).text()).toContain('Account linked');

    clock += 30_000;
    expect(formError(await (await second.attempt('Tries2', 'wrong')).text())).toMatch(/^Wrong username or password/);
    expect(formError(await (await second.attempt('Tries2', 'Tries2-password')).text())).toBe('Too many wrong passwords for this username. Try again in 60 seconds.');
    clock += 60_000;
    expect(await (await second.attempt('Tries2', 'Tries2-password')).text()).toContain('Account linked');
    expect(asked()).toBe(before + 3);
    // The right password clears the count.
    const fresh = await passwordForm(a, 'tries-across-2');
    expect(formError(await (await fresh.attempt('Tries2', 'wrong')).text())).toBe('Wrong username or password. 4 tries left.');
  });

  it('tries sent at the same time to both instances are counted one by one: the server sees 5', async () => {
    const flows = await Promise.all(Array.from({ length: 12 }, (_, i) => passwordForm(i % 2 ? a : b, `tries-parallel-${i}`)));
    const before = server.counts.authenticateByName;
    const answers = await Promise.all(flows.map(async (flow) => formError(await (await flow.attempt('Tries4', 'wrong')).text())));
    expect(server.counts.authenticateByName - before).toBe(5);
    expect(answers.filter((text) => text?.startsWith('Wrong username or password'))).toHaveLength(5);
    expect(answers.filter((text) => text?.startsWith('Too many wrong passwords for this username'))).toHaveLength(7);
  });
});
