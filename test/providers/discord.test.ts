import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLinkStore } from '../../src/core/links.ts';
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

  it('marks the link needs_reauth on invalid_grant and answers 409 with a working link URL', async () => {
    await link('u-gone', '80351110224678915');
    const { credentials } = (await stored('u-gone'))!;
    await makeDue('u-gone');
    // Someone revoked the app on Discord's side: the refresh token no longer works.
    await fetch(`${discord.origin}/api/oauth2/token/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${ENV.DISCORD_CLIENT_ID}:${ENV.DISCORD_CLIENT_SECRET}`).toString('base64')}` },
      body: new URLSearchParams({ token: credentials.refreshToken!, token_type_hint: 'refresh_token' }),
    });
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
