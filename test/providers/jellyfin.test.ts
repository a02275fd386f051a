import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from '../../src/db/orm.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLinkStore } from '../../src/core/links.ts';
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
    expect(await answer.text()).toContain('That address cannot be used: that server address is on a private network.');
    expect(jellyfin.authHeaders.length).toBe(headersBefore);
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
  it('tells the same user id on two typed servers apart: the server id is part of the account id', async () => {
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
      expect(await (await strict.api('/users/two-servers-a/links/jellyfin')).json()).toMatchObject({ externalId: `${jellyfin.serverId}:${USER_ID}`, externalName: 'Ada' });
      expect(await (await strict.api('/users/two-servers-b/links/jellyfin')).json()).toMatchObject({ externalId: `${other.serverId}:${USER_ID}`, externalName: 'Ada' });
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
