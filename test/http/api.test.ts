import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLinkStore } from '../../src/core/links.ts';
import type { Database } from '../../src/db/client.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, createTestGateway, TEST_SECRETS, type TestGateway } from '../helpers/gateway.ts';
import { jwtVerify } from 'jose';

const USER = '123456789012345678901'; // a Discord snowflake does not fit a JS number
const OIDC_ENV = {
  OIDC_PROVIDERS: 'corp',
  CORP_ISSUER: 'https://idp.example',
  CORP_CLIENT_ID: 'client',
  LINKGATE_RETURN_TO_ORIGINS: 'https://bot.example',
};

let database: Database;
let gateway: TestGateway;

beforeAll(async () => {
  database = await createTestDatabase();
  gateway = await createTestGateway(database, { env: OIDC_ENV });
});
afterAll(() => database.close());

async function storeLink(userId: string, externalId = 'sub-1', provider = 'corp') {
  const links = createLinkStore(database.db, gateway.keyring);
  return links.store(
    { tenant: 'default', userId, provider },
    { id: externalId, name: 'Ada' },
    { accessToken: 'at-secret', refreshToken: 'rt-secret', tokenType: 'Bearer', expiresAt: Date.parse('2030-01-01T00:00:00Z'), scopes: ['openid'] },
    { allowShared: false, now: new Date('2026-11-23T10:00:00Z') },
  );
}

const json = (body: unknown): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

const ROUTES: Array<[string, string, RequestInit?]> = [
  ['GET', '/providers'],
  ['POST', '/link-urls', json({ userId: USER, provider: 'corp' })],
  ['GET', `/users/${USER}/links`],
  ['GET', `/users/${USER}/links/corp`],
  ['DELETE', `/users/${USER}/links/corp`],
  ['POST', `/users/${USER}/links/corp/token`],
  ['GET', `/users/${USER}/links/corp/wait?timeoutSeconds=1`],
];

describe('bot API', () => {
  it.each(ROUTES)('%s %s answers 401 without a key or with a wrong one', async (method, path, init) => {
    for (const authorization of [undefined, `Bearer ${API_KEY}x`, `Bearer ${'x'.repeat(40)}`, `Basic ${API_KEY}`, API_KEY]) {
      const headers = new Headers(init?.headers);
      if (authorization !== undefined) headers.set('authorization', authorization);
      const response = await gateway.app.request(`/api/v1${path}`, { ...init, method, headers });
      expect(response.status).toBe(401);
      expect(response.headers.get('www-authenticate')).toBe('Bearer realm="linkgate"');
      expect(await response.json()).toMatchObject({ error: { code: 'unauthorized' } });
    }
  });

  it('lists providers with whether they are configured', async () => {
    const response = await gateway.api('/providers');
    expect(response.status).toBe(200);
    const { providers } = (await response.json()) as { providers: unknown[] };
    expect(providers).toContainEqual({ id: 'corp', displayName: 'corp', configured: true });
    expect(providers).toContainEqual({ id: 'discord', displayName: 'Discord', configured: false });
  });

  it('makes a link URL carrying a context signed like a bot would sign it', async () => {
    const before = Math.floor(Date.now() / 1000);
    const response = await gateway.api('/link-urls', json({ userId: USER, provider: 'corp', returnTo: 'https://bot.example/done' }));
    expect(response.status).toBe(201);
    const body = (await response.json()) as { url: string; expiresAt: string };
    const url = new URL(body.url);
    expect(url.origin + url.pathname).toBe('http://127.0.0.1:8000/oauth/corp/start');
    const { payload, protectedHeader } = await jwtVerify(url.searchParams.get('context')!, new TextEncoder().encode(TEST_SECRETS.OAUTH_CONTEXT_SIGNING_SECRET));
    expect(protectedHeader.alg).toBe('HS256');
    expect(payload).toMatchObject({ sub: USER, provider: 'corp', return_to: 'https://bot.example/done' });
    expect(payload.exp! - payload.iat!).toBe(300);
    expect(payload.iat).toBeGreaterThanOrEqual(before);
    expect(typeof payload.jti).toBe('string');
    expect(Date.parse(body.expiresAt)).toBe(payload.exp! * 1000);
  });

  it.each([
    ['not JSON', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"userId":' }, 'bad_request', 'the body is not valid JSON'],
    ['not a JSON content type', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' }, 'bad_request', 'expected a JSON body (Content-Type: application/json)'],
    ['a missing userId', json({ provider: 'corp' }), 'bad_request', 'userId is missing'],
    ['a numeric userId', json({ userId: 1234, provider: 'corp' }), 'bad_request', 'userId: userId must be a string'],
    ['a userId with a slash', json({ userId: 'a/b', provider: 'corp' }), 'bad_request', 'userId: userId must be 1–128 characters of letters, digits and ._:@+=-'],
    ['an unknown provider', json({ userId: USER, provider: 'nope' }), 'unknown_provider', 'there is no provider called "nope"'],
    ['a foreign returnTo', json({ userId: USER, provider: 'corp', returnTo: 'https://evil.example/' }), 'return_to_not_allowed', 'return_to is not on an allowed origin'],
  ])('refuses a link URL request with %s', async (_name, init, code, message) => {
    const response = await gateway.api('/link-urls', init as RequestInit);
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
    expect(await response.json()).toEqual({ error: { code, message } });
  });

  it('refuses a body over the size limit with 413', async () => {
    const response = await gateway.api('/link-urls', json({ userId: USER, provider: 'corp', pad: 'x'.repeat(70 * 1024) }));
    expect(response.status).toBe(413);
    expect(await response.json()).toMatchObject({ error: { code: 'payload_too_large' } });
  });

  it.each([
    // URL parsing resolves dot segments (WHATWG URL), so these never reach a user route.
    ['..', 404],
    ['%2E%2E', 404],
    ['a%2Fb', 400],
    ['x'.repeat(129), 400],
    ['%FF%FE', 400],
    ['a%0Ab', 400],
  ])('refuses the user id %s in a path with 400', async (userId, status) => {
    const response = await gateway.api(`/users/${userId}/links/corp`);
    expect(response.status).toBe(status);
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe(status === 400 ? 'bad_request' : 'not_found');
    expect(body.error.message).not.toContain('received');
  });

  it('refuses a provider id with path tricks with 400', async () => {
    const response = await gateway.api(`/users/${USER}/links/CORP%2F..`);
    expect(response.status).toBe(400);
  });

  it('shows a link without any credential, and 404 not_linked with a fresh link URL after DELETE', async () => {
    await storeLink(USER);
    const got = await gateway.api(`/users/${USER}/links/corp`);
    expect(got.status).toBe(200);
    const text = await got.text();
    expect(JSON.parse(text)).toEqual({
      userId: USER,
      provider: 'corp',
      externalId: 'sub-1',
      externalName: 'Ada',
      status: 'active',
      scopes: ['openid'],
      linkedAt: '2026-11-23T10:00:00.000Z',
      updatedAt: '2026-11-23T10:00:00.000Z',
      expiresAt: '2030-01-01T00:00:00.000Z',
    });
    expect(text).not.toMatch(/secret/);

    const list = await gateway.api(`/users/${USER}/links`);
    expect(((await list.json()) as { links: unknown[] }).links).toHaveLength(1);

    const deleted = await gateway.api(`/users/${USER}/links/corp`, { method: 'DELETE' });
    expect(deleted.status).toBe(204);

    const gone = await gateway.api(`/users/${USER}/links/corp`);
    expect(gone.status).toBe(404);
    const body = (await gone.json()) as { error: { code: string }; linkUrl: string };
    expect(body.error.code).toBe('not_linked');
    expect(new URL(body.linkUrl).pathname).toBe('/oauth/corp/start');

    const again = await gateway.api(`/users/${USER}/links/corp`, { method: 'DELETE' });
    expect(again.status).toBe(404);
    expect(await again.json()).toMatchObject({ error: { code: 'not_linked' } });
    expect(((await (await gateway.api(`/users/${USER}/links`)).json()) as { links: unknown[] }).links).toEqual([]);
  });

  it.each([
    ['GET', '/links/discord'],
    ['GET', '/links/discord?verify=true'],
    ['POST', '/links/discord/token'],
    ['GET', '/links/discord/wait?timeoutSeconds=5'],
    ['GET', '/links/discord/xrpc/com.atproto.server.getSession'],
  ])('%s …%s for an unconfigured provider answers 503 provider_unconfigured naming what it needs, never a null link URL', async (method, path) => {
    const asked = Date.now();
    const response = await gateway.api(`/users/not-linked-yet${path}`, { method });
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({
      error: { code: 'provider_unconfigured', message: 'Discord is not configured (missing DISCORD_CLIENT_ID, DISCORD_CLIENT_SECRET)' },
    });
    // The wait does not sit out its timeout for a link nobody can make.
    expect(Date.now() - asked).toBeLessThan(2000);
  });

  it('names either way of configuring a provider that has two (Jellyfin: a server, or servers users type)', async () => {
    const response = await gateway.api('/link-urls', json({ userId: USER, provider: 'jellyfin' }));
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({
      error: { code: 'provider_unconfigured', message: 'Jellyfin is not configured (missing either JELLYFIN_SERVER_URL, or JELLYFIN_ALLOW_USER_SERVER=true)' },
    });
  });

  it('still shows a link made before its provider lost its configuration, and lets the bot delete it', async () => {
    await storeLink('linked-before', 'discord-account', 'discord');
    const got = await gateway.api('/users/linked-before/links/discord');
    expect(got.status).toBe(200);
    expect(await got.json()).toMatchObject({ provider: 'discord', externalId: 'discord-account', status: 'active' });
    const waited = await gateway.api('/users/linked-before/links/discord/wait?timeoutSeconds=5');
    expect(waited.status).toBe(200);
    const token = await gateway.api('/users/linked-before/links/discord/token', { method: 'POST' });
    expect(token.status).toBe(503);
    expect(await token.json()).toMatchObject({ error: { code: 'provider_unconfigured' } });
    expect((await gateway.api('/users/linked-before/links/discord', { method: 'DELETE' })).status).toBe(204);
  });

  it('answers unknown API routes with a JSON 404', async () => {
    const response = await gateway.api('/nothing-here');
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({ error: { code: 'not_found', message: 'no such route' } });
  });
});
