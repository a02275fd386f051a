/**
 * The provider API proxy (issue #23): a bot calls Discord's and AniList's own
 * APIs through the gateway with its user's link, for the calls the operator
 * allows and nothing else; the token is refreshed once for many callers,
 * a refused token is retried once and then needs reauthentication, and no
 * token ever reaches the bot or the logs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { createLinkStore } from '../../src/core/links.ts';
import { PROXY_ANSWER_MAX } from '../../src/core/proxy.ts';
import { startFakeAniList, type FakeAniList } from '../fakes/anilist.ts';
import { startFakeDiscord, type FakeDiscord } from '../fakes/discord.ts';
import { startTestIdp, type TestIdp } from '../fakes/oidc-idp.ts';
import { linkAtFake, linkAtFakeDiscord, TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, reroute, type TestGateway } from '../helpers/gateway.ts';

const BASE = 'http://127.0.0.1:8000';
const ENV = {
  DISCORD_CLIENT_ID: '123456789012345678',
  DISCORD_CLIENT_SECRET: 'discord-client-secret-0123456789',
  DISCORD_SCOPES: 'identify guilds',
  DISCORD_PROXY_ALLOW: 'GET users/@me',
  ANILIST_CLIENT_ID: '12345',
  ANILIST_CLIENT_SECRET: 'anilist-client-secret-0123456789',
  ANILIST_PROXY_ALLOW: 'POST /',
};

let database: Database;
let discord: FakeDiscord;
let anilist: FakeAniList;
let gateway: TestGateway;
let clock = Date.now();

beforeAll(async () => {
  database = await createTestDatabase();
  discord = await startFakeDiscord({ clientId: ENV.DISCORD_CLIENT_ID, clientSecret: ENV.DISCORD_CLIENT_SECRET, redirectUris: [`${BASE}/oauth/discord/callback`] });
  anilist = await startFakeAniList({ clientId: ENV.ANILIST_CLIENT_ID, clientSecret: ENV.ANILIST_CLIENT_SECRET, redirectUris: [`${BASE}/oauth/anilist/callback`] });
  for (const id of ['80351110224678920', '80351110224678921', '80351110224678922', '80351110224678923', '80351110224678924']) discord.users.set(id, { id, username: `user${id.slice(-2)}`, global_name: null });
  anilist.users.set(7001, { id: 7001, name: 'Proxied' });
  gateway = await createTestGateway(database, {
    env: ENV,
    fetch: reroute({ 'https://discord.com': discord.origin, 'https://anilist.co': anilist.origin, 'https://graphql.anilist.co': anilist.graphqlUrl }),
    now: () => clock,
  });
});
afterAll(async () => {
  await discord?.close();
  await anilist?.close();
  await database?.close();
});

const linkDiscord = (userId: string, discordId: string) => linkAtFakeDiscord(gateway.app, discord, userId, discordId, { now: clock });

const proxy = (userId: string, provider: string, path: string, init: RequestInit = {}) => gateway.api(`/users/${userId}/links/${provider}/proxy/${path}`, init);
const credentialsOf = async (userId: string, provider: string) => {
  const store = createLinkStore(database.db, gateway.keyring);
  return store.openCredentials((await store.get({ tenant: 'default', userId, provider }))!);
};

describe('the provider API proxy', () => {
  it("answers Discord's own answer for an allowed call, with the user's token and without showing it", async () => {
    await linkDiscord('proxy-discord', '80351110224678920');
    const answer = await proxy('proxy-discord', 'discord', 'users/@me/guilds');
    expect(answer.status).toBe(200);
    expect(answer.headers.get('content-type')).toBe('application/json');
    expect(answer.headers.get('content-security-policy')).toContain('sandbox');
    const guilds = (await answer.json()) as Array<{ name: string; owner: boolean }>;
    expect(guilds.map((g) => g.name)).toEqual(['Annie Mei Support', "user20's server"]);
    const { accessToken } = await credentialsOf('proxy-discord', 'discord');
    expect(JSON.stringify(guilds)).not.toContain(accessToken);
    expect(gateway.logs.join('\n')).not.toContain(accessToken!);
  });

  it("passes an AniList GraphQL query to its API root and the answer back", async () => {
    await linkAtFake(gateway.app, { id: 'anilist', fake: anilist }, 'proxy-anilist', 7001, { now: clock });
    const answer = await proxy('proxy-anilist', 'anilist', '', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'query { Viewer { id name } }' }),
    });
    expect(answer.status).toBe(200);
    expect(await answer.json()).toEqual({ data: { Viewer: { id: 7001, name: 'Proxied' } } });
  });

  it('refuses what the allowlist does not list, before any upstream request (deny by default)', async () => {
    const before = { ...discord.counts };
    for (const [path, init] of [
      ['guilds/613425648685547541', {}],
      ['users/@meow', {}],
      ['users/@me/guilds', { method: 'DELETE' }],
      ['users/@me', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }],
    ] as const) {
      const refused = await proxy('proxy-discord', 'discord', path, init);
      expect(refused.status, path).toBe(403);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('proxy_not_allowed');
    }
    // Paths that could step out of the allowed prefix are refused outright (400); encoded dot
    // segments are resolved by URL parsing before the route sees them, and land outside it (403).
    for (const path of ['users/@me/a%2Fb', 'users//@me', 'users/@me/%5C', 'users/@me/%00']) {
      expect((await proxy('proxy-discord', 'discord', path)).status, path).toBe(400);
    }
    expect((await proxy('proxy-discord', 'discord', 'users/@me/%2e%2e/%2e%2e/guilds/1')).status).toBe(403);
    expect(discord.counts).toEqual(before);
    // A provider the operator allowed nothing for proxies nothing.
    const unconfigured = await createTestGateway(database, { env: { ...ENV, DISCORD_PROXY_ALLOW: '' }, fetch: reroute({ 'https://discord.com': discord.origin }) });
    expect((await unconfigured.api('/users/proxy-discord/links/discord/proxy/users/@me')).status).toBe(403);
    expect(discord.counts).toEqual(before);
  });

  it('refreshes an expired token once for 20 calls at once', async () => {
    await linkDiscord('proxy-expiring', '80351110224678921');
    const { expiresAt } = await credentialsOf('proxy-expiring', 'discord');
    clock = expiresAt! + 1_000;
    const refreshes = discord.counts.tokenByGrant.refresh_token ?? 0;
    const answers = await Promise.all(Array.from({ length: 20 }, () => proxy('proxy-expiring', 'discord', 'users/@me/guilds')));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    expect(discord.counts.tokenByGrant.refresh_token).toBe(refreshes + 1);
    clock = Date.now();
  });

  it('retries a refused token once after a refresh, then marks the link needs_reauth and answers with a link URL', async () => {
    await linkDiscord('proxy-refused', '80351110224678922');
    // Refused once: refreshed and retried, the bot sees the answer.
    discord.failNext('guilds', 'http401');
    const refreshes = discord.counts.tokenByGrant.refresh_token ?? 0;
    expect((await proxy('proxy-refused', 'discord', 'users/@me/guilds')).status).toBe(200);
    expect(discord.counts.tokenByGrant.refresh_token).toBe(refreshes + 1);
    // Refused twice: the link needs the user again.
    discord.failNext('guilds', 'http401', 2);
    const answer = await proxy('proxy-refused', 'discord', 'users/@me/guilds');
    expect(answer.status).toBe(409);
    const body = (await answer.json()) as { error: { code: string }; linkUrl: string };
    expect(body.error.code).toBe('needs_reauth');
    expect(body.linkUrl).toMatch(/\/oauth\/discord\/start\?context=/);
    expect(((await (await gateway.api('/users/proxy-refused/links/discord')).json()) as { status: string }).status).toBe('needs_reauth');
  });

  it('passes an upstream error with its status, and Retry-After on', async () => {
    await linkDiscord('proxy-busy', '80351110224678923');
    discord.failNext('guilds', 'http500');
    const failed = await proxy('proxy-busy', 'discord', 'users/@me/guilds');
    expect(failed.status).toBe(500);
    expect(await failed.json()).toEqual({ message: '500: Internal Server Error', code: 0 });
    discord.failNext('guilds', 'http429');
    const limited = await proxy('proxy-busy', 'discord', 'users/@me/guilds');
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('2');
    expect(((await limited.json()) as { retry_after: number }).retry_after).toBe(1.5);
  });

  it("refuses an answer larger than 1 MiB with 502, whether it says its length or streams it, and passes none of it", async () => {
    await linkDiscord('proxy-large', '80351110224678924');
    for (const fault of ['oversized', 'oversizedChunked'] as const) {
      discord.failNext('guilds', fault);
      const answer = await proxy('proxy-large', 'discord', 'users/@me/guilds');
      expect(answer.status, fault).toBe(502);
      const text = await answer.text();
      expect(JSON.parse(text)).toMatchObject({ error: { code: 'provider_response_too_large', message: `the provider's answer is larger than ${PROXY_ANSWER_MAX} bytes` } });
      expect(text).not.toContain('Guild 0');
    }
    // The link is as it was: the next call is answered.
    expect((await proxy('proxy-large', 'discord', 'users/@me/guilds')).status).toBe(200);
  });

  it('answers not_linked with a link URL for a user without a link', async () => {
    const answer = await proxy('proxy-nobody', 'discord', 'users/@me/guilds');
    expect(answer.status).toBe(404);
    expect(((await answer.json()) as { linkUrl: string }).linkUrl).toMatch(/\/oauth\/discord\/start/);
  });
});

/**
 * An OpenID provider's own API (`<ID>_API_BASE`): the in-process OpenID
 * provider's userinfo endpoint (`/me`) is an API that takes the user's
 * access token. Allowed by the environment for the default tenant, and by
 * a tenant's own provider settings (`CORP_PROXY_ALLOW`) for that tenant.
 */
describe("the proxy to an OpenID provider's own API", () => {
  const CLIENT_SECRET = 'corp-client-secret-0123456789abcdef';
  const ADMIN_KEY = 'admin_0123456789abcdefghijklmnopqrstuvwxyz';
  let idp: TestIdp;
  beforeAll(async () => {
    idp = await startTestIdp({ redirectUris: [`${BASE}/oauth/corp/callback`], clientId: 'linkgate', clientSecret: CLIENT_SECRET });
  });
  afterAll(async () => {
    await idp?.close();
  });
  const corpEnv = (allow: string) => ({ CORP_ISSUER: idp.issuer, CORP_CLIENT_ID: 'linkgate', CORP_CLIENT_SECRET: CLIENT_SECRET, CORP_SCOPES: 'openid profile email', CORP_API_BASE: idp.issuer, CORP_PROXY_ALLOW: allow });

  /** The user signs in at the OpenID provider as `sub` through `app`, with a context for `tenant` (its secret) or the default tenant. */
  async function linkCorp(app: TestGateway['app'], userId: string, sub: string, tenant?: { id: string; secret: string }) {
    const context = await mintContext('corp', userId, tenant ? { secret: tenant.secret, claims: { tenant: tenant.id } } : {});
    const browser = new TestBrowser((path, init) => app.request(path, init));
    const started = await browser.openLink(`/oauth/corp/start?context=${context}`);
    expect(started.status).toBe(303);
    expect((await browser.get(await idp.login(new URL(started.headers.get('location')!), sub))).status).toBe(200);
  }

  it('answers its userinfo for the linked user, with the user\'s token and without showing it (CORP_API_BASE)', async () => {
    const corp = await createTestGateway(database, { env: { OIDC_PROVIDERS: 'corp', ...corpEnv('GET me') } });
    await linkCorp(corp.app, 'proxy-oidc', 'oidc-sub-7');
    const before = idp.counts.userinfo;
    const answer = await corp.api('/users/proxy-oidc/links/corp/proxy/me');
    expect(answer.status).toBe(200);
    expect(answer.headers.get('content-type')).toMatch(/^application\/json/);
    const claims = (await answer.json()) as Record<string, unknown>;
    expect(claims).toMatchObject({ sub: 'oidc-sub-7', preferred_username: 'oidc-sub-7', email: 'oidc-sub-7@example.test' });
    expect(idp.counts.userinfo).toBe(before + 1);
    const store = createLinkStore(database.db, corp.keyring);
    const { accessToken } = await store.openCredentials((await store.get({ tenant: 'default', userId: 'proxy-oidc', provider: 'corp' }))!);
    expect(JSON.stringify(claims)).not.toContain(accessToken);
    expect(corp.logs.join('\n')).not.toContain(accessToken!);
    // Another of its paths is not allowed: 403 before any request.
    const refused = await corp.api('/users/proxy-oidc/links/corp/proxy/jwks');
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('proxy_not_allowed');
    expect(idp.counts.userinfo).toBe(before + 1);
  });

  it("follows a tenant's own CORP_PROXY_ALLOW for that tenant's calls, and a change to it", async () => {
    // The environment allows nothing; the tenant's settings allow `GET me`.
    const gateway = await createTestGateway(database, { env: { LINKGATE_ADMIN_KEYS: ADMIN_KEY, OIDC_PROVIDERS: 'corp', ...corpEnv('') } });
    const admin = (path: string, init: { method?: string; body?: unknown } = {}) =>
      gateway.app.request(`/api/admin/v1${path}`, {
        method: init.method ?? 'GET',
        headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
      });
    expect((await admin('/tenants', { method: 'POST', body: { id: 'proxied', name: 'Proxied bot' } })).status).toBe(201);
    const { key } = (await (await admin('/tenants/proxied/api-keys', { method: 'POST', body: { name: 'bot' } })).json()) as { key: string };
    const { secret } = (await (await admin('/tenants/proxied/context-secrets', { method: 'POST' })).json()) as { secret: string };
    expect((await admin('/tenants/proxied/providers/corp', { method: 'PUT', body: { env: corpEnv('GET me') } })).status).toBe(200);
    const asTenant = (path: string) => gateway.app.request(`/api/v1${path}`, { headers: { authorization: `Bearer ${key}` } });

    await linkCorp(gateway.app, 'tenant-proxied', 'tenant-sub-1', { id: 'proxied', secret });
    await linkCorp(gateway.app, 'default-proxied', 'default-sub-1');
    const before = idp.counts.userinfo;
    const allowed = await asTenant('/users/tenant-proxied/links/corp/proxy/me');
    expect(allowed.status).toBe(200);
    expect(await allowed.json()).toMatchObject({ sub: 'tenant-sub-1' });
    for (const path of ['jwks', 'token']) {
      const refused = await asTenant(`/users/tenant-proxied/links/corp/proxy/${path}`);
      expect(refused.status, path).toBe(403);
      expect(await refused.json()).toMatchObject({ error: { code: 'proxy_not_allowed', message: 'this call is not in CORP_PROXY_ALLOW' } });
    }
    // The default tenant's calls follow the environment's allowlist, which is empty.
    expect((await gateway.api('/users/default-proxied/links/corp/proxy/me')).status).toBe(403);
    expect(idp.counts.userinfo).toBe(before + 1);

    // The tenant's operator takes `GET me` out: the next call is refused, before any request.
    expect((await admin('/tenants/proxied/providers/corp', { method: 'PUT', body: { env: corpEnv('GET userinfo') } })).status).toBe(200);
    expect((await asTenant('/users/tenant-proxied/links/corp/proxy/me')).status).toBe(403);
    expect(idp.counts.userinfo).toBe(before + 1);
  });
});
