import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLinkStore } from '../../src/core/links.ts';
import { providerStepBudgetMs } from '../../src/core/tools.ts';
import { openDatabase, type Database } from '../../src/db/client.ts';
import { startFakeDiscord, type FakeDiscord } from '../fakes/discord.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { atFake, createTestGateway, reroute, type TestGateway } from '../helpers/gateway.ts';
import { mintContext } from '../helpers/context.ts';

const ENV = {
  DISCORD_CLIENT_ID: '1100000000000000001',
  DISCORD_CLIENT_SECRET: 'discord-client-secret-0123456789',
  DISCORD_SCOPES: 'identify guilds',
};

let database: Database & { url: string | undefined };
let second: Database | undefined;
let discord: FakeDiscord;
let gateway: TestGateway;
let other: TestGateway;
let clock = Date.now();

beforeAll(async () => {
  database = await createTestDatabase();
  discord = await startFakeDiscord({ clientId: ENV.DISCORD_CLIENT_ID, clientSecret: ENV.DISCORD_CLIENT_SECRET, redirectUris: ['http://127.0.0.1:8000/oauth/discord/callback'] });
  for (const [id, username, global_name] of [
    ['80351110224678912', 'nelly', 'Nelly'],
    ['80351110224678913', 'plain', null],
    ['80351110224678914', 'racer', 'Racer'],
    ['80351110224678915', 'gone', 'Gone'],
    ['80351110224678916', 'flaky', 'Flaky'],
    ['80351110224678917', 'verifier', 'Verifier'],
  ] as const) {
    discord.users.set(id, { id, username, global_name });
  }
  const options = {
    env: ENV,
    fetch: reroute({ 'https://discord.com': discord.origin }),
    now: () => clock,
  };
  gateway = await createTestGateway(database, options);
  // A second instance: its own connection pool on PostgreSQL; on PGlite, the same in-process database.
  second = database.url ? await openDatabase({ url: database.url, maxConnections: 10 }) : undefined;
  other = await createTestGateway(second ?? database, options);
});
afterAll(async () => {
  await discord?.close();
  await second?.close();
  await database?.close();
});

const mint = (userId: string) => mintContext('discord', userId, { now: clock });

async function link(userId: string, discordUserId: string) {
  const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
  const start = await browser.openLink(`/oauth/discord/start?context=${await mint(userId)}`);
  expect(start.status).toBe(303);
  const authorize = new URL(start.headers.get('location')!);
  const done = await browser.get(discord.approve(atFake(authorize, discord.origin), discordUserId));
  expect(done.status).toBe(200);
  return authorize;
}

const stored = async (userId: string) => {
  const store = createLinkStore(database.db, gateway.keyring);
  const row = await store.get({ tenant: 'default', userId, provider: 'discord' });
  return row && { row, credentials: store.openCredentials(row) };
};

/** Revokes a refresh token the way Discord's revoke endpoint does for an app the user removed. */
async function revokeAtDiscord(refreshToken: string) {
  await fetch(`${discord.origin}/api/oauth2/token/revoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${ENV.DISCORD_CLIENT_ID}:${ENV.DISCORD_CLIENT_SECRET}`).toString('base64')}` },
    body: new URLSearchParams({ token: refreshToken, token_type_hint: 'refresh_token' }),
  });
}

/** Moves the clock to just inside the refresh margin of the stored token. */
async function makeDue(userId: string) {
  const { credentials } = (await stored(userId))!;
  clock = credentials.expiresAt! - 30_000;
}

describe('Discord', () => {
  it('sends PKCE S256, stores the @me id and display name, and revokes on DELETE', async () => {
    const authorize = await link('u-nelly', '80351110224678912');
    expect(authorize.origin + authorize.pathname).toBe('https://discord.com/oauth2/authorize');
    expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authorize.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(authorize.searchParams.get('scope')).toBe('identify guilds');
    expect(await (await gateway.api('/users/u-nelly/links/discord')).json()).toMatchObject({
      externalId: '80351110224678912',
      externalName: 'Nelly',
      scopes: ['identify', 'guilds'],
    });

    const { credentials } = (await stored('u-nelly'))!;
    const revokes = discord.counts.revoke;
    expect((await gateway.api('/users/u-nelly/links/discord', { method: 'DELETE' })).status).toBe(204);
    expect(discord.counts.revoke).toBeGreaterThan(revokes);
    expect(discord.isActive(credentials.accessToken!)).toBe(false);
    expect(discord.isActive(credentials.refreshToken!)).toBe(false);
    expect((await gateway.api('/users/u-nelly/links/discord')).status).toBe(404);
  });

  it.each([
    ['accepts', 'https://discord.com', 200],
    ['refuses, without exchanging the code,', 'https://evil.example', 502],
  ] as const)('%s an authorization response whose iss is %s (RFC 9207)', async (_verb, iss, status) => {
    const issuing = await startFakeDiscord({ clientId: ENV.DISCORD_CLIENT_ID, clientSecret: ENV.DISCORD_CLIENT_SECRET, sendIss: iss });
    issuing.users.set('80351110224678930', { id: '80351110224678930', username: 'iss', global_name: null });
    try {
      const instance = await createTestGateway(database, { env: ENV, fetch: reroute({ 'https://discord.com': issuing.origin }), now: () => clock });
      const browser = new TestBrowser((path, init) => instance.app.request(path, init));
      const start = await browser.openLink(`/oauth/discord/start?context=${await mint(`u-iss-${status}`)}`);
      const callback = issuing.approve(atFake(new URL(start.headers.get('location')!), issuing.origin), '80351110224678930');
      expect(callback.searchParams.get('iss')).toBe(iss);
      const done = await browser.get(callback);
      expect(done.status).toBe(status);
      expect(issuing.counts.tokenByGrant.authorization_code ?? 0).toBe(status === 200 ? 1 : 0);
      if (status === 200) await instance.api(`/users/u-iss-${status}/links/discord`, { method: 'DELETE' });
    } finally {
      await issuing.close();
    }
  });

  it('does not store the link of a request whose hold on the flow lapsed and was taken over', async () => {
    discord.users.set('80351110224678962', { id: '80351110224678962', username: 'lapse', global_name: null });
    const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
    const start = await browser.openLink(`/oauth/discord/start?context=${await mint('u-lapse')}`);
    const callback = discord.approve(atFake(new URL(start.headers.get('location')!), discord.origin), '80351110224678962');
    const exchanges = discord.counts.tokenByGrant.authorization_code ?? 0;
    discord.tokenDelayMs = 500;
    const startedAt = clock;
    try {
      const first = browser.get(callback);
      while ((discord.counts.tokenByGrant.authorization_code ?? 0) === exchanges) await new Promise((r) => setTimeout(r, 5));
      // The first request's claim runs out while Discord is still answering; a second request takes the flow over.
      clock = startedAt + providerStepBudgetMs(gateway.config.providerTimeoutMs) + 1000;
      const second = browser.get(callback);
      const [late, takeover] = await Promise.all([first, second]);
      expect(late.status).toBe(409);
      expect(takeover.status).toBe(400); // Discord refuses the spent code
      expect(await stored('u-lapse')).toBeUndefined();
    } finally {
      discord.tokenDelayMs = 0;
      clock = startedAt;
    }
  });

  it('falls back to the username when there is no global name', async () => {
    await link('u-plain', '80351110224678913');
    expect(await (await gateway.api('/users/u-plain/links/discord')).json()).toMatchObject({ externalName: 'plain' });
  });

  it('refreshes once for fifty concurrent token requests over two instances, and all get the new token', async () => {
    await link('u-racer', '80351110224678914');
    const before = (await stored('u-racer'))!.credentials;
    await makeDue('u-racer');
    const refreshes = discord.counts.tokenByGrant.refresh_token ?? 0;
    discord.tokenDelayMs = 200;
    try {
      const answers = await Promise.all(
        Array.from({ length: 50 }, (_, i) => (i % 2 ? other : gateway).api('/users/u-racer/links/discord/token', { method: 'POST' })),
      );
      expect(answers.map((a) => a.status)).toEqual(Array(50).fill(200));
      const bodies = (await Promise.all(answers.map((a) => a.json()))) as Array<{ accessToken: string; refreshToken?: string }>;
      expect(discord.counts.tokenByGrant.refresh_token).toBe(refreshes + 1);
      const tokens = new Set(bodies.map((b) => b.accessToken));
      expect(tokens.size).toBe(1);
      const [fresh] = tokens;
      expect(fresh).not.toBe(before.accessToken);
      expect(discord.isActive(fresh!)).toBe(true);
      for (const body of bodies) expect(body).not.toHaveProperty('refreshToken');
      const after = (await stored('u-racer'))!.credentials;
      expect(after.accessToken).toBe(fresh);
      expect(after.refreshToken).not.toBe(before.refreshToken);
    } finally {
      discord.tokenDelayMs = 0;
    }
  });

  it('loses neither a relink nor a refresh that run at the same time', async () => {
    discord.users.set('80351110224678940', { id: '80351110224678940', username: 'relinker', global_name: null });
    discord.users.set('80351110224678941', { id: '80351110224678941', username: 'second-account', global_name: null });
    await link('u-relink', '80351110224678940');
    await makeDue('u-relink');
    const refreshes = discord.counts.tokenByGrant.refresh_token ?? 0;
    discord.tokenDelayMs = 400;
    try {
      // The refresh is in flight at Discord while the user finishes a relink on the other instance.
      const refreshing = gateway.api('/users/u-relink/links/discord/token', { method: 'POST' });
      await new Promise((r) => setTimeout(r, 100));
      const browser = new TestBrowser((path, init) => other.app.request(path, init));
      const start = await browser.openLink(`/oauth/discord/start?context=${await mint('u-relink')}`);
      // Relinked to another Discord account, so a lost relink would show.
      const relinked = browser.get(discord.approve(atFake(new URL(start.headers.get('location')!), discord.origin), '80351110224678941'));
      const [token, page] = await Promise.all([refreshing, relinked]);
      expect(token.status).toBe(200);
      expect(page.status).toBe(200);
      const answered = ((await token.json()) as { accessToken: string }).accessToken;
      expect(discord.isActive(answered)).toBe(true);
      expect(discord.counts.tokenByGrant.refresh_token).toBe(refreshes + 1);
      // The relink is what is stored: its account, and a token Discord says belongs to it.
      const after = (await stored('u-relink'))!;
      expect(after.row).toMatchObject({ status: 'active', externalId: '80351110224678941' });
      const me = await fetch(`${discord.origin}/api/users/@me`, { headers: { authorization: `Bearer ${after.credentials.accessToken}` } });
      expect(((await me.json()) as { id: string }).id).toBe('80351110224678941');
      expect(discord.isActive(after.credentials.refreshToken!)).toBe(true);
      const again = await gateway.api('/users/u-relink/links/discord/token', { method: 'POST' });
      expect(again.status).toBe(200);
    } finally {
      discord.tokenDelayMs = 0;
    }
  });

  it('keeps serving the status API while refreshes of several links wait on a slow Discord, with a pool of 3 connections', async () => {
    // On PostgreSQL a refresh that held a pooled connection for the provider's answer would starve this pool.
    const small = database.url ? await openDatabase({ url: database.url, maxConnections: 3 }) : undefined;
    try {
      const narrow = await createTestGateway(small ?? database, { env: ENV, fetch: reroute({ 'https://discord.com': discord.origin }), now: () => clock });
      const users = ['u-pool-0', 'u-pool-1', 'u-pool-2', 'u-pool-3', 'u-pool-4'];
      for (const [i, user] of users.entries()) {
        const id = `8035111022467895${i}`;
        discord.users.set(id, { id, username: user, global_name: null });
        await link(user, id);
      }
      await makeDue(users[0]!);
      const before = await Promise.all(users.map(async (user) => (await stored(user))!.credentials.accessToken));
      const refreshes = discord.counts.tokenByGrant.refresh_token ?? 0;
      discord.tokenDelayMs = 1500;
      try {
        const tokens = Promise.all(users.map((user) => narrow.api(`/users/${user}/links/discord/token`, { method: 'POST' })));
        // Once as many refreshes as the pool has connections are waiting on Discord, ask for a status.
        while ((discord.counts.tokenByGrant.refresh_token ?? 0) < refreshes + 3) await new Promise((r) => setTimeout(r, 10));
        const asked = performance.now();
        const status = await narrow.api('/users/u-pool-0/links/discord');
        const statusMs = performance.now() - asked;
        expect(status.status).toBe(200);
        expect(statusMs).toBeLessThan(500);
        const answers = await tokens;
        expect(answers.map((a) => a.status)).toEqual(users.map(() => 200));
        const fresh = (await Promise.all(answers.map((a) => a.json()))) as Array<{ accessToken: string }>;
        fresh.forEach((body, i) => {
          expect(body.accessToken).not.toBe(before[i]);
          expect(discord.isActive(body.accessToken)).toBe(true);
        });
        expect(discord.counts.tokenByGrant.refresh_token).toBe(refreshes + users.length);
      } finally {
        discord.tokenDelayMs = 0;
      }
    } finally {
      await small?.close();
    }
  });

  it('does not mark a relink needs_reauth when it lands between a refused refresh and the status write', async () => {
    discord.users.set('80351110224678960', { id: '80351110224678960', username: 'cas', global_name: null });
    await link('u-cas', '80351110224678960');
    const { credentials } = (await stored('u-cas'))!;
    await makeDue('u-cas');
    // Discord no longer accepts the stored refresh token…
    await revokeAtDiscord(credentials.refreshToken!);
    discord.tokenDelayMs = 500;
    try {
      // …and the user relinks: their code exchange is at Discord first, so the relink is stored
      // while the refused refresh's answer is still on its way.
      const browser = new TestBrowser((path, init) => other.app.request(path, init));
      const start = await browser.openLink(`/oauth/discord/start?context=${await mint('u-cas')}`);
      const exchanges = discord.counts.tokenByGrant.authorization_code ?? 0;
      const relinked = browser.get(discord.approve(atFake(new URL(start.headers.get('location')!), discord.origin), '80351110224678960'));
      while ((discord.counts.tokenByGrant.authorization_code ?? 0) === exchanges) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 150));
      const token = await gateway.api('/users/u-cas/links/discord/token', { method: 'POST' });
      expect((await relinked).status).toBe(200);
      expect(token.status).toBe(200);
      const answered = ((await token.json()) as { accessToken: string }).accessToken;
      const after = (await stored('u-cas'))!;
      expect(after.row.status).toBe('active');
      expect(answered).toBe(after.credentials.accessToken);
      expect(discord.isActive(answered)).toBe(true);
    } finally {
      discord.tokenDelayMs = 0;
    }
  });

  it('answers 502 refresh_failed when Discord refuses our client (invalid_client), and keeps the credentials', async () => {
    discord.users.set('80351110224678961', { id: '80351110224678961', username: 'client', global_name: null });
    await link('u-client', '80351110224678961');
    const before = (await stored('u-client'))!;
    await makeDue('u-client');
    const misconfigured = await createTestGateway(database, {
      env: { ...ENV, DISCORD_CLIENT_SECRET: 'not-the-discord-client-secret-0123' },
      fetch: reroute({ 'https://discord.com': discord.origin }),
      now: () => clock,
    });
    const token = await misconfigured.api('/users/u-client/links/discord/token', { method: 'POST' });
    expect(token.status).toBe(502);
    expect(await token.json()).toMatchObject({ error: { code: 'refresh_failed', message: expect.stringContaining('invalid_client') } });
    const after = (await stored('u-client'))!;
    expect(after.row.credentials).toBe(before.row.credentials);
    expect(after.row.status).toBe('active');
    expect((await gateway.api('/users/u-client/links/discord/token', { method: 'POST' })).status).toBe(200);
  });

  it('marks the link needs_reauth on invalid_grant and answers 409 with a working link URL', async () => {
    await link('u-gone', '80351110224678915');
    const { credentials } = (await stored('u-gone'))!;
    await makeDue('u-gone');
    // Someone revoked the app on Discord's side: the refresh token no longer works.
    await revokeAtDiscord(credentials.refreshToken!);
    const token = await gateway.api('/users/u-gone/links/discord/token', { method: 'POST' });
    expect(token.status).toBe(409);
    const body = (await token.json()) as { error: { code: string }; linkUrl: string };
    expect(body.error.code).toBe('needs_reauth');
    expect(await (await gateway.api('/users/u-gone/links/discord')).json()).toMatchObject({ status: 'needs_reauth' });

    const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
    const start = await browser.openLink(body.linkUrl);
    expect((await browser.get(discord.approve(atFake(new URL(start.headers.get('location')!), discord.origin), '80351110224678915'))).status).toBe(200);
    const relinked = await gateway.api('/users/u-gone/links/discord/token', { method: 'POST' });
    expect(relinked.status).toBe(200);
  });

  it.each([
    ['a 500', 'http500', 502, 'provider_unavailable'],
    ['a malformed answer', 'malformed', 502, 'provider_response_invalid'],
    ['a timeout', 'hang', 504, 'provider_timeout'],
  ] as const)('keeps the stored credentials after %s (%s) and answers %i', async (_name, fault, status, code) => {
    await link('u-flaky', '80351110224678916');
    const before = (await stored('u-flaky'))!;
    await makeDue('u-flaky');
    discord.failNext('token', fault);
    const token = await gateway.api('/users/u-flaky/links/discord/token', { method: 'POST' });
    expect(token.status).toBe(status);
    expect(await token.json()).toMatchObject({ error: { code } });
    const after = (await stored('u-flaky'))!;
    expect(after.row.credentials).toBe(before.row.credentials);
    expect(after.row.status).toBe('active');
    // Once Discord is back, the same stored refresh token works.
    const retry = await gateway.api('/users/u-flaky/links/discord/token', { method: 'POST' });
    expect(retry.status).toBe(200);
  });

  it('?verify=true asks @me and turns a refused token into needs_reauth', async () => {
    await link('u-verify', '80351110224678917');
    expect(await (await gateway.api('/users/u-verify/links/discord?verify=true')).json()).toMatchObject({ status: 'active' });
    const { credentials } = (await stored('u-verify'))!;
    discord.expire(credentials.accessToken!);
    expect(await (await gateway.api('/users/u-verify/links/discord?verify=true')).json()).toMatchObject({ status: 'needs_reauth' });
  });
});
