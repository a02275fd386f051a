/**
 * What the typed client must do, against a real gateway listening on a
 * socket, on a real database, linking through the test `pin` provider. Run
 * on the source (`linkgate/client`, client.test.ts) and on the built package
 * as ESM and as CommonJS (package.test.ts): the same cases for each.
 */
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type * as ClientModule from '../../packages/client/src/index.ts';
import type { Database } from '../../src/db/client.ts';
import { sql } from '../../src/db/orm.ts';
import { listen } from '../e2e/browser.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, createTestGateway, TEST_SECRETS, type TestGateway } from '../helpers/gateway.ts';

export type { ClientModule };

const FIXTURES = new URL('../fixtures/providers', import.meta.url).pathname;

export interface ClientGateway {
  database: Database;
  gateway: TestGateway;
  /** Where it listens. */
  baseUrl: string;
  /** The same database with the real providers, none configured but ATProto. */
  standardUrl: string;
}

/** A gateway with the `pin` provider and one with the real providers, on one database, for the file's tests. */
export function useClientGateway(): ClientGateway {
  const state = {} as ClientGateway;
  const servers: Array<{ close(): Promise<void> }> = [];
  beforeAll(async () => {
    state.database = await createTestDatabase();
    state.gateway = await createTestGateway(state.database, { providersDir: FIXTURES });
    const pin = await listen(state.gateway.app.fetch);
    const standard = await listen((await createTestGateway(state.database)).app.fetch);
    servers.push(pin, standard);
    state.baseUrl = pin.url;
    state.standardUrl = standard.url;
  });
  afterAll(async () => {
    for (const server of servers) await server.close();
    await state.database?.close();
  });
  return state;
}

/** What the user does with a link URL: sign in to Pin, approve the code. */
export async function completeLink(baseUrl: string, url: string, username: string): Promise<void> {
  const browser = new TestBrowser((path, init) => fetch(new URL(path, baseUrl), { ...init, redirect: 'manual' }));
  const start = await browser.openLink(new URL(url).pathname + new URL(url).search);
  expect(start.status).toBe(200);
  const state = /name="state" value="([^"]+)"/.exec(await start.text())![1]!;
  const wait = await browser.post('/oauth/pin/callback', { state, username, password: 'correct horse' });
  expect(wait.status).toBe(200);
  for (let i = 0; i < 2; i++) await browser.get(`/oauth/pin/poll?state=${encodeURIComponent(state)}`);
}

/**
 * The client's cases, with `load` giving the module under test. User ids
 * and account names start with `prefix`, so several runs share one gateway.
 */
export function describeClient(name: string, load: () => Promise<typeof ClientModule>, at: ClientGateway, prefix: string): void {
  describe(name, () => {
    let m: typeof ClientModule;
    let client: ClientModule.LinkgateClient;
    const user = (n: number) => `${prefix}:${n}`;
    // An account links to one user: each run links its own.
    const account = (name: string) => `${prefix}-${name}`;
    beforeAll(async () => {
      m = await load();
      client = m.createLinkgateClient({ baseUrl: at.baseUrl, apiKey: API_KEY, timeoutMs: 5000 });
    });

    it('lists providers, and a user who has not linked gets a NotLinkedError carrying a link URL', async () => {
      expect(await client.listProviders()).toContainEqual({ id: 'pin', displayName: 'Pin', configured: true });
      expect(await client.getLink(user(1), 'pin')).toBeNull();
      const error = await client.requireLink(user(1), 'pin').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(m.NotLinkedError);
      expect(error).toBeInstanceOf(m.LinkgateClientError);
      expect(error).toMatchObject({ name: 'NotLinkedError', code: 'not_linked', status: 404 });
      expect((error as ClientModule.NotLinkedError).linkUrl).toMatch(/^http:\/\/127\.0\.0\.1:8000\/oauth\/pin\/start\?context=/);
    });

    it('waits for a link the user completes meanwhile, then reads, tokens, lists and unlinks it', async () => {
      const { url, expiresAt } = await client.createLinkUrl(user(2), 'pin');
      expect(Date.parse(expiresAt)).toBeGreaterThan(Date.now());
      const waiting = client.waitForLink(user(2), 'pin', { timeoutSeconds: 20 });
      await completeLink(at.baseUrl, url, account('ada'));
      const linked = await waiting;
      expect(linked).toMatchObject({ userId: user(2), provider: 'pin', externalId: account('ada'), status: 'active' });

      expect(await client.requireLink(user(2), 'pin')).toMatchObject({ externalName: account('ada') });
      expect(await client.getToken(user(2), 'pin')).toMatchObject({ accessToken: 'pin-access-token', tokenType: 'Bearer' });
      expect((await client.listLinks(user(2))).map((l) => l.provider)).toEqual(['pin']);

      expect(await client.unlink(user(2), 'pin')).toBe(true);
      expect(await client.unlink(user(2), 'pin')).toBe(false);
      expect(await client.getLink(user(2), 'pin')).toBeNull();
    });

    it('a provider the gateway has not configured is a ProviderUnconfiguredError naming what it needs, never a null link URL', async () => {
      const bot = m.createLinkgateClient({ baseUrl: at.standardUrl, apiKey: API_KEY });
      for (const call of [() => bot.requireLink(user(9), 'anilist'), () => bot.getLink(user(9), 'anilist'), () => bot.createLinkUrl(user(9), 'anilist')]) {
        const error = await call().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(m.ProviderUnconfiguredError);
        expect(error).toMatchObject({ name: 'ProviderUnconfiguredError', code: 'provider_unconfigured', status: 503 });
        expect((error as Error).message).toBe('AniList is not configured (missing ANILIST_CLIENT_ID, ANILIST_CLIENT_SECRET)');
      }
    });

    it('waitForLink throws LinkCancelledError the moment the user presses Cancel, and later with since', async () => {
      const { url } = await client.createLinkUrl(user(4), 'pin');
      const since = new Date();
      const waiting = client.waitForLink(user(4), 'pin', { timeoutSeconds: 20 }).catch((e: unknown) => e);
      const browser = new TestBrowser((path, init) => fetch(new URL(path, at.baseUrl), { ...init, redirect: 'manual' }));
      const form = await browser.openLink(new URL(url).pathname + new URL(url).search);
      const state = /name="state" value="([^"]+)"/.exec(await form.text())![1]!;
      expect((await browser.post('/oauth/pin/cancel', { state }, { follow: false })).status).toBe(303);
      const error = await waiting;
      expect(error).toBeInstanceOf(m.LinkCancelledError);
      expect(error).toMatchObject({ name: 'LinkCancelledError', code: 'link_cancelled', status: 409 });
      expect(await client.waitForLink(user(4), 'pin', { timeoutSeconds: 5, since }).catch((e: unknown) => e)).toBeInstanceOf(m.LinkCancelledError);
    });

    it('waitForLink answers null when nobody links in time', async () => {
      expect(await client.waitForLink(user(3), 'pin', { timeoutSeconds: 1 })).toBeNull();
    });

    it('requireLink throws NeedsReauthError with a fresh link URL for a link that needs reauth', async () => {
      const { url } = await client.createLinkUrl(user(4), 'pin');
      await completeLink(at.baseUrl, url, account('grace'));
      await at.database.db.execute(sql`update links set status = 'needs_reauth' where user_id = ${user(4)}`);
      const error = await client.requireLink(user(4), 'pin').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(m.NeedsReauthError);
      expect((error as ClientModule.NeedsReauthError).linkUrl).toContain('/oauth/pin/start?context=');
    });

    it('signs contexts locally that the gateway accepts, and the gateway refuses a wrong secret', async () => {
      const good = m.linkUrlFor(at.baseUrl, 'pin', await m.signLinkContext({ secret: TEST_SECRETS.OAUTH_CONTEXT_SIGNING_SECRET, userId: user(5), provider: 'pin' }));
      const browser = new TestBrowser((path, init) => fetch(new URL(path, at.baseUrl), { ...init, redirect: 'manual' }));
      const page = await browser.openLink(new URL(good).pathname + new URL(good).search);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('Sign in to Pin');
      const bad = await m.signLinkContext({ secret: 'x'.repeat(40), userId: user(5), provider: 'pin' });
      expect((await fetch(m.linkUrlFor(at.baseUrl, 'pin', bad))).status).toBe(400);
    });

    it('throws typed errors: a wrong key, an unreachable gateway, a gateway that does not answer', async () => {
      const wrongKey = m.createLinkgateClient({ baseUrl: at.baseUrl, apiKey: 'lg_wrong_key_0123456789abcdefghijklmnop' });
      await expect(wrongKey.listProviders()).rejects.toMatchObject({ name: 'LinkgateClientError', code: 'unauthorized', status: 401 });
      await expect(client.createLinkUrl(user(6), 'nope')).rejects.toMatchObject({ code: 'unknown_provider', status: 404 });

      // A port nothing listens on.
      const closed: NetServer = createNetServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      const port = (closed.address() as AddressInfo).port;
      await new Promise((resolve) => closed.close(resolve));
      const unreachable = m.createLinkgateClient({ baseUrl: `http://127.0.0.1:${port}`, apiKey: API_KEY });
      await expect(unreachable.listProviders()).rejects.toMatchObject({ code: 'network_error' });

      // A server that accepts and never answers.
      const silent = createNetServer(() => {});
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      try {
        const slow = m.createLinkgateClient({ baseUrl: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, apiKey: API_KEY, timeoutMs: 300 });
        const error = await slow.listProviders().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(m.LinkgateClientError);
        expect(error).toMatchObject({ code: 'timeout' });
      } finally {
        silent.close();
      }
    });
  });
}
