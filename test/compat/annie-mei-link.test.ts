/**
 * The Annie Mei bot's `/register` link, byte for byte as the bot builds it
 * (annie-mei/annie-mei `src/utils/oauth/mod.rs`), built here with
 * node:crypto, not with Linkgate's code, and the refusals of the auth
 * service it replaces (annie-mei/auth `verify_oauth_context`).
 */
import { createHmac, randomBytes } from 'node:crypto';
import { blake3 } from '@noble/hashes/blake3.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { startFakeAniList, type FakeAniList } from '../fakes/anilist.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { atFake, createTestGateway, reroute, type TestGateway } from '../helpers/gateway.ts';

/** The variables of the old service's .env (annie-mei/auth .env.example), as a deployment fills them in. */
const SERVICE_ENV = {
  PUBLIC_BASE_URL: 'https://auth.annie-mei.example',
  ANILIST_CLIENT_ID: '23456',
  ANILIST_CLIENT_SECRET: 'anilist-client-secret-from-the-old-env',
  ANILIST_REDIRECT_URI: 'https://auth.annie-mei.example/oauth/anilist/callback',
  // Shared with the bot, at the bot's length: shorter than Linkgate's own secrets.
  OAUTH_CONTEXT_SIGNING_SECRET: 'bot-shared-signing-secret',
  USERID_HASH_SALT: 'bot-shared-salt',
  OAUTH_CONTEXT_TTL_SECONDS: '300',
  OAUTH_STATE_TTL_SECONDS: '300',
  ROCKET_SECRET_KEY: 'hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=',
};

const DISCORD_USER = '80351110224678912';
const ANILIST_USER = 7001;

let database: Database;
let anilist: FakeAniList;
let gateway: TestGateway;
let clock = Date.now();
const nowSeconds = () => Math.floor(clock / 1000);

beforeAll(async () => {
  database = await createTestDatabase();
  anilist = await startFakeAniList({ clientId: SERVICE_ENV.ANILIST_CLIENT_ID, clientSecret: SERVICE_ENV.ANILIST_CLIENT_SECRET, redirectUris: [SERVICE_ENV.ANILIST_REDIRECT_URI] });
  anilist.users.set(ANILIST_USER, { id: ANILIST_USER, name: 'Mei' });
  gateway = await createTestGateway(database, {
    env: SERVICE_ENV,
    fetch: reroute({ 'https://anilist.co': anilist.origin, 'https://graphql.anilist.co': anilist.graphqlUrl }),
    now: () => clock,
  });
});
afterAll(async () => {
  await anilist?.close();
  await database?.close();
});

interface BotPayload {
  v?: unknown;
  discord_user_id?: unknown;
  guild_id?: unknown;
  interaction_id?: unknown;
  nonce?: unknown;
  iat?: unknown;
  exp?: unknown;
}

/** The bot's payload, in the bot's field order (serde writes struct fields in order; `guild_id` skipped in DMs). */
function payload(userId: string, change: BotPayload = {}): BotPayload {
  const iat = nowSeconds();
  return {
    v: 1,
    discord_user_id: userId,
    guild_id: '987654321098765432',
    interaction_id: '1222233334444555566',
    nonce: randomBytes(16).toString('base64url'),
    iat,
    exp: iat + 300,
    ...change,
  };
}

/** `AUTH_SERVICE_BASE_URL` + `/oauth/anilist/start?ctx=<payload>.<signature>`, both base64url without padding. */
function botLink(body: BotPayload | string, secret = SERVICE_ENV.OAUTH_CONTEXT_SIGNING_SECRET): string {
  const segment = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body), 'utf8').toString('base64url');
  const signature = createHmac('sha256', Buffer.from(secret, 'utf8')).update(segment, 'ascii').digest('base64url');
  return `/oauth/anilist/start?ctx=${segment}.${signature}`;
}

const browserOn = () => new TestBrowser((path, init) => gateway.app.request(path, init));

/** What the old service would log for this user: BLAKE3(salt ‖ id), first 16 hex characters. */
const fingerprint = (userId: string) => Buffer.from(blake3(new TextEncoder().encode(SERVICE_ENV.USERID_HASH_SALT + userId))).toString('hex').slice(0, 16);

describe("the Annie Mei bot's /register link", () => {
  it("opens AniList's authorize page with the old service's client id and redirect URI, after the confirmation", async () => {
    const browser = browserOn();
    const page = await browser.get(botLink(payload(DISCORD_USER)));
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('Link your AniList account?');
    expect(html).toContain('name="ctx"');
    expect(html).not.toContain(DISCORD_USER);

    const started = await browser.openLink(botLink(payload(DISCORD_USER)));
    expect(started.status).toBe(303);
    const authorize = new URL(started.headers.get('location')!);
    expect(authorize.origin + authorize.pathname).toBe('https://anilist.co/api/v2/oauth/authorize');
    expect(authorize.searchParams.get('client_id')).toBe(SERVICE_ENV.ANILIST_CLIENT_ID);
    expect(authorize.searchParams.get('redirect_uri')).toBe(SERVICE_ENV.ANILIST_REDIRECT_URI);
    expect(authorize.searchParams.get('response_type')).toBe('code');
  });

  it('links the Discord user named in the context, from a DM (no guild_id) too', async () => {
    const dmUser = '80351110224678913';
    const { guild_id: _none, ...dm } = payload(dmUser);
    expect(JSON.stringify(dm)).not.toContain('guild_id');
    const browser = browserOn();
    const started = await browser.openLink(botLink(dm));
    expect(started.status).toBe(303);
    const done = await browser.get(anilist.approve(atFake(new URL(started.headers.get('location')!), anilist.origin), ANILIST_USER + 1));
    expect(done.status).toBe(200);
    expect(await done.text()).toContain('Account linked');
    expect(await (await gateway.api(`/users/${dmUser}/links/anilist`)).json()).toMatchObject({ userId: dmUser, externalId: String(ANILIST_USER + 1), status: 'active' });
  });

  it.each<[string, () => string, string, number]>([
    ['a bad signature', () => botLink(payload(DISCORD_USER), 'another-secret'), 'context_invalid', 400],
    ['a signature cut short', () => botLink(payload(DISCORD_USER)).slice(0, -2), 'context_invalid', 400],
    ['a signature with padding', () => `${botLink(payload(DISCORD_USER))}=`, 'context_invalid', 400],
    ['no signature', () => botLink(payload(DISCORD_USER)).split('.')[0]!, 'context_invalid', 400],
    ['v other than 1', () => botLink(payload(DISCORD_USER, { v: 2 })), 'context_invalid', 400],
    ['an empty discord_user_id', () => botLink(payload('')), 'context_invalid', 400],
    ['a blank discord_user_id', () => botLink(payload('   ')), 'context_invalid', 400],
    ['no discord_user_id', () => botLink(payload(DISCORD_USER, { discord_user_id: undefined })), 'context_invalid', 400],
    ['an empty nonce', () => botLink(payload(DISCORD_USER, { nonce: '' })), 'context_invalid', 400],
    ['no interaction_id', () => botLink(payload(DISCORD_USER, { interaction_id: undefined })), 'context_invalid', 400],
    ['exp in the past, beyond the 30 s of skew', () => botLink(payload(DISCORD_USER, { iat: nowSeconds() - 300, exp: nowSeconds() - 31 })), 'context_expired', 400],
    ['iat more than 60 s ahead', () => botLink(payload(DISCORD_USER, { iat: nowSeconds() + 61, exp: nowSeconds() + 100 })), 'context_invalid', 400],
    ['exp before iat', () => botLink(payload(DISCORD_USER, { iat: nowSeconds(), exp: nowSeconds() - 1 })), 'context_invalid', 400],
    ['a lifetime over OAUTH_CONTEXT_TTL_SECONDS', () => botLink(payload(DISCORD_USER, { iat: nowSeconds(), exp: nowSeconds() + 301 })), 'context_invalid', 400],
    ['a payload that is not JSON', () => botLink('not json'), 'context_invalid', 400],
    ['a payload that is a JSON array', () => botLink('[1]'), 'context_invalid', 400],
  ])('refuses %s with a page and starts nothing', async (_case, link, code, status) => {
    const response = await browserOn().get(link());
    expect(response.status).toBe(status);
    const html = await response.text();
    expect(html).toContain(`id="error-code">${code}<`);
    expect(html).toContain('Run /register in Discord again to get a new link.');
    expect(html).not.toContain(DISCORD_USER);
  });

  it('is never stricter than the old service: iat 60 s ahead and exp up to 30 s ago are accepted', async () => {
    expect((await browserOn().get(botLink(payload(DISCORD_USER, { iat: nowSeconds() + 60, exp: nowSeconds() + 300 })))).status).toBe(200);
    expect((await browserOn().get(botLink(payload(DISCORD_USER, { iat: nowSeconds() - 200, exp: nowSeconds() - 29 })))).status).toBe(200);
    // The old service ignored fields it did not know and read a null guild_id as absent.
    expect((await browserOn().get(botLink({ ...payload(DISCORD_USER), guild_id: null, locale: 'ja' } as BotPayload))).status).toBe(200);
  });

  it('refuses a link carrying both a JWT context and a ctx', async () => {
    const response = await browserOn().get(`${botLink(payload(DISCORD_USER))}&context=x.y.z`);
    expect(response.status).toBe(400);
    expect(await response.text()).toContain('id="error-code">context_invalid<');
  });

  it('reopened by the same browser: back to AniList while signing in, the result once linked; another browser is told to run /register again', async () => {
    const user = '80351110224678914';
    const link = botLink(payload(user));
    const browser = browserOn();
    const started = await browser.openLink(link);
    const authorize = started.headers.get('location')!;
    // The user comes back from AniList without finishing, and taps the message in Discord again.
    const again = await browser.get(link);
    expect(again.status).toBe(303);
    expect(again.headers.get('location')).toBe(authorize);

    expect((await browser.get(anilist.approve(atFake(new URL(authorize), anilist.origin), 7010))).status).toBe(200);
    const linked = await browser.get(link);
    expect(linked.status).toBe(200);
    expect(await linked.text()).toContain('Your AniList account <strong>AniListUser7010</strong> is now linked.');

    const other = await browserOn().get(link);
    expect(other.status).toBe(400);
    const html = await other.text();
    expect(html).toContain('This link was already used');
    expect(html).toContain('If it is not, run /register in Discord again to get a new link.');
    expect(html).not.toContain('AniListUser7010');
  });

  it('logs the BLAKE3 fingerprint the bot logs for the user, and never the user id, the ctx or a token', async () => {
    const user = '80351110224678915';
    const link = botLink(payload(user));
    const ctx = new URL(link, 'http://x').searchParams.get('ctx')!;
    const from = gateway.logs.length;
    const browser = browserOn();
    const started = await browser.openLink(link);
    await browser.get(anilist.approve(atFake(new URL(started.headers.get('location')!), anilist.origin), 7020));
    const token = (await (await gateway.api(`/users/${user}/links/anilist/token`, { method: 'POST' })).json()) as { accessToken: string };
    // A refused link is logged too.
    await browserOn().get(botLink(payload(user), 'another-secret'));
    const lines = gateway.logs.slice(from);
    const flowLines = lines.map((line) => JSON.parse(line) as { msg: string; user?: string }).filter((line) => line.msg === 'flow started' || line.msg === 'link stored');
    expect(flowLines.map((line) => line.msg)).toEqual(['flow started', 'link stored']);
    for (const line of flowLines) expect(line.user).toBe(fingerprint(user));
    const text = lines.join('\n');
    expect(text).not.toContain(user);
    expect(text).not.toContain(ctx);
    expect(text).not.toContain(ctx.split('.')[0]!);
    expect(text).not.toContain(token.accessToken);
  });

  it('warns once about each shared secret shorter than 32 characters, naming it', () => {
    expect(gateway.config.warnings).toEqual([
      expect.stringMatching(/^OAUTH_CONTEXT_SIGNING_SECRET is shorter than 32 characters/),
      expect.stringMatching(/^USERID_HASH_SALT is shorter than 32 characters/),
    ]);
  });
});
