import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLinkStore } from '../../src/core/links.ts';
import type { Database } from '../../src/db/client.ts';
import { startFakeAniList, type FakeAniList } from '../fakes/anilist.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { atFake, createTestGateway, reroute, type TestGateway } from '../helpers/gateway.ts';
import { mintContext } from '../helpers/context.ts';

/** The variables of an existing AniList auth service deployment, plus the PUBLIC_BASE_URL the README's migration adds. */
const SERVICE_ENV = {
  PUBLIC_BASE_URL: 'https://auth.bot.example',
  ANILIST_CLIENT_ID: '12345',
  ANILIST_CLIENT_SECRET: 'anilist-client-secret-0123456789',
  ANILIST_REDIRECT_URI: 'https://auth.bot.example/oauth/anilist/callback',
  OAUTH_CONTEXT_SIGNING_SECRET: 'existing-deployment-signing-secret-0123456789',
  USERID_HASH_SALT: 'existing-deployment-user-id-salt-0123456789',
  OAUTH_CONTEXT_TTL_SECONDS: '600',
  OAUTH_STATE_TTL_SECONDS: '600',
  SENTRY_DSN: '',
  SENTRY_ENVIRONMENT: 'production',
  SENTRY_TRACES_SAMPLE_RATE: '0.1',
};

let database: Database;
let anilist: FakeAniList;
let gateway: TestGateway;
let clock = Date.now();

beforeAll(async () => {
  database = await createTestDatabase();
  anilist = await startFakeAniList({ clientId: SERVICE_ENV.ANILIST_CLIENT_ID, clientSecret: SERVICE_ENV.ANILIST_CLIENT_SECRET, redirectUris: [SERVICE_ENV.ANILIST_REDIRECT_URI] });
  anilist.users.set(5001, { id: 5001, name: 'Kuromi' });
  anilist.users.set(5002, { id: 5002, name: 'Revoked' });
  anilist.users.set(5003, { id: 5003, name: 'Outage' });
  anilist.users.set(5004, { id: 5004, name: 'Expiring' });
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

const mint = (userId: string) => mintContext('anilist', userId, { secret: SERVICE_ENV.OAUTH_CONTEXT_SIGNING_SECRET, now: clock, ttlSeconds: 600 });

async function link(userId: string, anilistUserId: number) {
  const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
  const start = await browser.openLink(`/oauth/anilist/start?context=${await mint(userId)}`);
  expect(start.status).toBe(303);
  const authorize = new URL(start.headers.get('location')!);
  const callback = anilist.approve(atFake(authorize, anilist.origin), anilistUserId);
  const done = await browser.get(callback);
  return { authorize, callback, done };
}

describe('AniList', () => {
  it('links with the AniList service’s own .env: callback /oauth/anilist/callback, Viewer id and name stored', async () => {
    const { authorize, callback, done } = await link('111111111111111111', 5001);
    expect(authorize.origin + authorize.pathname).toBe('https://anilist.co/api/v2/oauth/authorize');
    expect(authorize.searchParams.get('client_id')).toBe('12345');
    expect(authorize.searchParams.get('redirect_uri')).toBe('https://auth.bot.example/oauth/anilist/callback');
    expect(authorize.searchParams.get('response_type')).toBe('code');
    expect(callback.pathname).toBe('/oauth/anilist/callback');
    expect(done.status).toBe(200);
    expect(await done.text()).toContain('Kuromi');

    const response = await gateway.api('/users/111111111111111111/links/anilist');
    expect(await response.json()).toMatchObject({ externalId: '5001', externalName: 'Kuromi', status: 'active' });
    const token = await gateway.api('/users/111111111111111111/links/anilist/token', { method: 'POST' });
    expect(token.status).toBe(200);
    const body = (await token.json()) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(['accessToken', 'expiresAt', 'tokenType']);
    expect(body.tokenType).toBe('Bearer');
    // A year, as AniList issues them.
    expect(Date.parse(body.expiresAt as string) - clock).toBeGreaterThan(360 * 24 * 3600 * 1000);
  });

  it('answers 409 needs_reauth with a fresh link URL once the token has expired', async () => {
    await link('222222222222222222', 5004);
    const saved = clock;
    clock += 366 * 24 * 3600 * 1000;
    try {
      const token = await gateway.api('/users/222222222222222222/links/anilist/token', { method: 'POST' });
      expect(token.status).toBe(409);
      const body = (await token.json()) as { error: { code: string }; linkUrl: string };
      expect(body.error.code).toBe('needs_reauth');
      expect(new URL(body.linkUrl).pathname).toBe('/oauth/anilist/start');
      expect(await (await gateway.api('/users/222222222222222222/links/anilist')).json()).toMatchObject({ status: 'needs_reauth' });

      // The link URL works: relinking makes the link active again.
      const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
      const start = await browser.openLink(body.linkUrl);
      expect((await browser.get(anilist.approve(atFake(new URL(start.headers.get('location')!), anilist.origin), 5004))).status).toBe(200);
      expect(await (await gateway.api('/users/222222222222222222/links/anilist')).json()).toMatchObject({ status: 'active' });
    } finally {
      clock = saved;
    }
  });

  it('?verify=true turns a revoked token into needs_reauth, and leaves a working one active', async () => {
    await link('333333333333333333', 5002);
    expect(await (await gateway.api('/users/333333333333333333/links/anilist?verify=true')).json()).toMatchObject({ status: 'active' });
    const store = createLinkStore(database.db, gateway.keyring);
    const credentials = store.openCredentials((await store.get({ tenant: 'default', userId: '333333333333333333', provider: 'anilist' }))!);
    anilist.invalidate(credentials.accessToken!);
    const verified = await gateway.api('/users/333333333333333333/links/anilist?verify=true');
    expect(verified.status).toBe(200);
    expect(await verified.json()).toMatchObject({ status: 'needs_reauth' });
    const token = await gateway.api('/users/333333333333333333/links/anilist/token', { method: 'POST' });
    expect(token.status).toBe(409);
  });

  it('answers 502 when AniList is down during verify, and changes nothing', async () => {
    await link('444444444444444444', 5003);
    anilist.failNext('graphql', 'http500');
    const verified = await gateway.api('/users/444444444444444444/links/anilist?verify=true');
    expect(verified.status).toBe(502);
    expect(await verified.json()).toMatchObject({ error: { code: 'provider_unavailable' } });
    expect(await (await gateway.api('/users/444444444444444444/links/anilist')).json()).toMatchObject({ status: 'active' });
  });

  it('refuses ?verify=maybe with 400', async () => {
    const response = await gateway.api('/users/444444444444444444/links/anilist?verify=maybe');
    expect(response.status).toBe(400);
  });
});
