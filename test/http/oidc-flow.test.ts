import { decodeJwt, generateKeyPair, SignJWT } from 'jose';
import { count } from '../../src/db/orm.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import type { Database } from '../../src/db/client.ts';
import { flows, links } from '../../src/db/schema.ts';
import { createLinkStore } from '../../src/core/links.ts';
import { startTestIdp, type TestIdp } from '../fakes/oidc-idp.ts';
import { confirmationForm, TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, TEST_SECRETS, type TestGateway } from '../helpers/gateway.ts';

const BASE = 'http://127.0.0.1:8000';
const SECRET = new TextEncoder().encode(TEST_SECRETS.OAUTH_CONTEXT_SIGNING_SECRET);
const CLIENT_SECRET = 'corp-client-secret-0123456789abcdef';

let database: Database;
let idp: TestIdp;
let gateway: TestGateway;
let env: Record<string, string>;

beforeAll(async () => {
  database = await createTestDatabase();
  idp = await startTestIdp({
    redirectUris: [`${BASE}/oauth/corp/callback`, `${BASE}/oauth/other/callback`],
    clientId: 'linkgate',
    clientSecret: CLIENT_SECRET,
  });
  env = {
    OIDC_PROVIDERS: 'corp,other',
    CORP_ISSUER: idp.issuer,
    CORP_CLIENT_ID: 'linkgate',
    CORP_CLIENT_SECRET: CLIENT_SECRET,
    CORP_SCOPES: 'openid profile email',
    CORP_DISPLAY_NAME: 'Corp SSO',
    OTHER_ISSUER: idp.issuer,
    OTHER_CLIENT_ID: 'linkgate',
    OTHER_CLIENT_SECRET: CLIENT_SECRET,
    LINKGATE_RETURN_TO_ORIGINS: 'https://bot.example',
  };
  gateway = await createTestGateway(database, { env });
});
afterAll(async () => {
  await idp?.close();
  await database?.close();
});

/** A context minted the way a bot would, with jose (not our signing code). */
async function mint(claims: Record<string, unknown> = {}, options: { ttl?: number; iat?: number } = {}) {
  const iat = options.iat ?? Math.floor(Date.now() / 1000);
  const { sub = randomUserId(), ...rest } = claims;
  const jwt = new SignJWT({ provider: 'corp', ...rest })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(String(sub))
    .setIssuedAt(iat)
    .setExpirationTime(iat + (options.ttl ?? 300));
  if (!('jti' in claims)) jwt.setJti(randomBytes(12).toString('base64url'));
  return jwt.sign(SECRET);
}

/** Discord-style snowflakes: 17–20 digits, more than a JS number holds exactly. */
function randomUserId(): string {
  return `9${BigInt(`0x${randomBytes(8).toString('hex')}`).toString().padStart(19, '0')}`.slice(0, 20);
}

async function counts() {
  const [f] = await database.db.select({ n: count() }).from(flows);
  const [l] = await database.db.select({ n: count() }).from(links);
  return { flows: f!.n, links: l!.n, token: idp.counts.token };
}

/** Opens a link URL in a browser and signs in at the IdP; returns the callback URL the IdP sent back. */
async function startAndLogin(browser: TestBrowser, context: string, sub: string, provider = 'corp') {
  const start = await browser.openLink(`/oauth/${provider}/start?context=${encodeURIComponent(context)}`);
  expect(start.status).toBe(303);
  const authorize = new URL(start.headers.get('location')!);
  return { authorize, callback: await idp.login(authorize, sub) };
}

const newBrowser = () => new TestBrowser((path, init) => gateway.app.request(path, init));

/** Links a new bot user to the IdP account `sub` through the browser flow; its stored credentials. */
async function linkCorp(sub: string) {
  const browser = newBrowser();
  const userId = randomUserId();
  const { callback } = await startAndLogin(browser, await mint({ sub: userId }), sub);
  expect((await browser.get(callback)).status).toBe(200);
  const store = createLinkStore(database.db, gateway.keyring);
  return { userId, credentials: store.openCredentials((await store.get({ tenant: 'default', userId, provider: 'corp' }))!) };
}

describe('linking through a real OpenID provider', () => {
  it('links a user: start → IdP login → callback, then the API shows the IdP sub and no token', async () => {
    const userId = '123456789012345678';
    const browser = newBrowser();
    const context = await mint({ sub: userId });
    const confirm = await browser.get(`/oauth/corp/start?context=${encodeURIComponent(context)}`);
    expect(confirm.status).toBe(200);
    const cookie = confirm.headers.getSetCookie().find((c) => c.startsWith('linkgate_browser='))!;
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Lax/);
    expect(cookie).toMatch(/Path=\/oauth/);
    const { action, fields } = confirmationForm(await confirm.text());
    const start = await browser.post(action, fields);
    expect(start.status).toBe(303);
    const authorize = new URL(start.headers.get('location')!);
    expect(authorize.origin).toBe(idp.issuer);
    expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authorize.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(authorize.searchParams.get('state')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(authorize.searchParams.get('nonce')).toBeTruthy();
    expect(authorize.searchParams.get('redirect_uri')).toBe(`${BASE}/oauth/corp/callback`);

    const callback = await idp.login(authorize, 'idp-sub-42');
    expect(callback.searchParams.get('iss')).toBe(idp.issuer);
    const tokensBefore = idp.counts.token;
    const done = await browser.get(callback);
    expect(done.status).toBe(200);
    expect(done.headers.get('cache-control')).toBe('no-store');
    expect(done.headers.get('referrer-policy')).toBe('no-referrer');
    expect(done.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
    const page = await done.text();
    expect(page).toContain('Account linked');
    expect(page).toContain('Corp SSO');
    expect(idp.counts.token).toBe(tokensBefore + 1);

    const response = await gateway.api(`/users/${userId}/links/corp`);
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(JSON.parse(text)).toMatchObject({
      userId,
      provider: 'corp',
      externalId: 'idp-sub-42',
      externalName: 'Test User idp-sub-42',
      status: 'active',
    });
    const row = await createLinkStore(database.db, gateway.keyring).get({ tenant: 'default', userId, provider: 'corp' });
    const credentials = createLinkStore(database.db, gateway.keyring).openCredentials(row!);
    expect(credentials.accessToken).toBeTruthy();
    expect(text).not.toContain(credentials.accessToken!);
    if (credentials.refreshToken) expect(text).not.toContain(credentials.refreshToken);
    expect(text).not.toMatch(/token/i);
    expect(row!.credentials).not.toContain(credentials.accessToken!);
  });

  it('completes the flow from a URL made by POST /api/v1/link-urls and returns to an allowed return_to', async () => {
    const userId = randomUserId();
    const made = await gateway.api('/link-urls', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ userId, provider: 'corp', returnTo: 'https://bot.example/linked?ok=1' }),
    });
    expect(made.status).toBe(201);
    const { url } = (await made.json()) as { url: string };
    const browser = newBrowser();
    const start = await browser.openLink(url);
    const callback = await idp.login(new URL(start.headers.get('location')!), 'idp-sub-from-api');
    const done = await browser.get(callback);
    expect(done.status).toBe(303);
    expect(done.headers.get('location')).toBe('https://bot.example/linked?ok=1');
    expect(await (await gateway.api(`/users/${userId}/links/corp`)).json()).toMatchObject({ externalId: 'idp-sub-from-api' });
  });

  it('writes no raw user id, token, code, state, context or secret into the logs of a whole flow', async () => {
    const userId = '80351110224678912';
    const browser = newBrowser();
    const context = await mint({ sub: userId });
    const first = gateway.logs.length;
    const { authorize, callback } = await startAndLogin(browser, context, 'idp-sub-logs');
    expect((await browser.get(callback)).status).toBe(200);
    await gateway.api(`/users/${userId}/links/corp`);
    await gateway.api(`/users/${userId}/links`);
    const store = createLinkStore(database.db, gateway.keyring);
    const credentials = store.openCredentials((await store.get({ tenant: 'default', userId, provider: 'corp' }))!);
    expect((await gateway.api(`/users/${userId}/links/corp`, { method: 'DELETE' })).status).toBe(204);

    const logs = gateway.logs.slice(first).join('\n');
    expect(logs).toContain('link stored');
    const forbidden = [
      userId,
      context,
      authorize.searchParams.get('state')!,
      authorize.searchParams.get('nonce')!,
      callback.searchParams.get('code')!,
      credentials.accessToken!,
      ...(credentials.refreshToken ? [credentials.refreshToken] : []),
      String(credentials.extra?.idToken ?? 'no-id-token'),
      CLIENT_SECRET,
      ...Object.values(TEST_SECRETS),
    ];
    for (const secret of forbidden) expect(logs).not.toContain(secret);
  });

  it.each<[string, () => Promise<string>, string]>([
    ['a tampered signature', async () => (await mint()).slice(0, -4) + 'AAAA', 'This link is not valid'],
    [
      'alg none',
      async () => {
        const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
        const now = Math.floor(Date.now() / 1000);
        return `${enc({ alg: 'none', typ: 'JWT' })}.${enc({ sub: '1', provider: 'corp', jti: 'none-jti-1', iat: now, exp: now + 60 })}.`;
      },
      'This link is not valid',
    ],
    [
      'RS256',
      async () => {
        const { privateKey } = await generateKeyPair('RS256');
        const now = Math.floor(Date.now() / 1000);
        return new SignJWT({ provider: 'corp' }).setProtectedHeader({ alg: 'RS256' }).setSubject('1').setJti('rs256-jti-1').setIssuedAt(now).setExpirationTime(now + 60).sign(privateKey);
      },
      'This link is not valid',
    ],
    ['an expired context', () => mint({}, { iat: Math.floor(Date.now() / 1000) - 400, ttl: 300 }), 'This link has expired'],
    ['a TTL over the cap', () => mint({}, { ttl: 301 }), 'This link is not valid'],
    ['iat in the future', () => mint({}, { iat: Math.floor(Date.now() / 1000) + 120, ttl: 60 }), 'This link is not valid'],
    ['another provider', () => mint({ provider: 'other' }), 'This link is not valid'],
    ['another tenant', () => mint({ tenant: 'acme' }), 'This link is not valid'],
    ['no jti', () => mint({ jti: undefined }), 'This link is not valid'],
    ['a return_to on a foreign origin', () => mint({ return_to: 'https://evil.example/' }), 'points somewhere this gateway does not send people to'],
    ['a return_to with userinfo', () => mint({ return_to: 'https://bot.example@evil.example/' }), 'points somewhere this gateway does not send people to'],
    ['a numeric sub', async () => {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ provider: 'corp', sub: 123 as unknown as string }).setProtectedHeader({ alg: 'HS256' }).setJti('numeric-sub-1').setIssuedAt(now).setExpirationTime(now + 60).sign(SECRET);
    }, 'This link is not valid'],
  ])('refuses %s with a 4xx page and stores nothing', async (_name, makeContext, title) => {
    const before = await counts();
    const response = await newBrowser().get(`/oauth/corp/start?context=${encodeURIComponent(await makeContext())}`);
    expect(response.status).toBe(400);
    const page = await response.text();
    expect(page).toContain(title);
    expect(page).toContain('Ask the bot for a new link');
    expect(page).not.toMatch(/at \w+ \(|node_modules|Error:/);
    expect(await counts()).toEqual(before);
  });

  it('refuses a reused jti, even from two requests at once', async () => {
    const context = await mint();
    // Two browsers both confirm the same link; one flow starts.
    const [a, b] = await Promise.all([newBrowser().openLink(`/oauth/corp/start?context=${context}`), newBrowser().openLink(`/oauth/corp/start?context=${context}`)]);
    expect([a.status, b.status].sort()).toEqual([303, 400]);
    const refused = a.status === 400 ? a : b;
    expect(await refused.text()).toContain('This link was already used');
    const again = await newBrowser().get(`/oauth/corp/start?context=${context}`);
    expect(again.status).toBe(400);
  });

  it('refuses a start without a context', async () => {
    const response = await newBrowser().get('/oauth/corp/start');
    expect(response.status).toBe(400);
    expect(await response.text()).toContain('Something is wrong with this request');
  });

  describe('state', () => {
    it('refuses an unknown state without calling the token endpoint', async () => {
      const before = await counts();
      const response = await newBrowser().get(`/oauth/corp/callback?state=${randomBytes(32).toString('base64url')}&code=abc&iss=${encodeURIComponent(idp.issuer)}`);
      expect(response.status).toBe(400);
      expect(await response.text()).toContain('This sign-in has expired');
      expect(await counts()).toEqual(before);
    });

    it('refuses a callback without a state', async () => {
      const response = await newBrowser().get('/oauth/corp/callback?code=abc');
      expect(response.status).toBe(400);
    });

    it('refuses an expired state without calling the token endpoint', async () => {
      const browser = newBrowser();
      const { callback } = await startAndLogin(browser, await mint(), 'idp-sub-expired');
      const later = await createTestGateway(database, { env, now: () => Date.now() + (gateway.config.stateTtlSeconds + 1) * 1000 });
      const tokens = idp.counts.token;
      // The same browser (its cookie) comes back after the state's lifetime.
      const withCookie = await later.app.request(callback.pathname + callback.search, {
        headers: { cookie: `linkgate_browser=${browser.cookies.get('linkgate_browser')}` },
      });
      expect(withCookie.status).toBe(400);
      expect(await withCookie.text()).toContain('This sign-in has expired');
      expect(idp.counts.token).toBe(tokens);
    });

    it('refuses a replayed state after the flow completed, without a second exchange', async () => {
      const browser = newBrowser();
      const { callback } = await startAndLogin(browser, await mint(), 'idp-sub-replay');
      expect((await browser.get(callback)).status).toBe(200);
      const before = await counts();
      const replay = await browser.get(callback);
      expect(replay.status).toBe(400);
      expect(await replay.text()).toContain('This sign-in has expired');
      expect(await counts()).toEqual(before);
    });

    it('refuses a state used at another provider’s callback, and the flow still completes where it belongs', async () => {
      const browser = newBrowser();
      const userId = randomUserId();
      const { callback } = await startAndLogin(browser, await mint({ sub: userId }), 'idp-sub-cross');
      const tokens = idp.counts.token;
      const cross = await browser.get(`/oauth/other/callback${callback.search}`);
      expect(cross.status).toBe(400);
      expect(idp.counts.token).toBe(tokens);
      expect((await browser.get(callback)).status).toBe(200);
      expect(await (await gateway.api(`/users/${userId}/links/corp`)).json()).toMatchObject({ externalId: 'idp-sub-cross' });
    });

    it('refuses a callback from a browser without the start cookie, or with another user’s', async () => {
      const victim = newBrowser();
      const { callback } = await startAndLogin(victim, await mint(), 'idp-sub-victim');
      const attacker = newBrowser();
      await startAndLogin(attacker, await mint(), 'idp-sub-attacker');
      const before = await counts();

      const cookieless = await newBrowser().get(callback);
      expect(cookieless.status).toBe(400);
      expect(await cookieless.text()).toContain('Please finish in the same browser');
      const swapped = await attacker.get(callback);
      expect(swapped.status).toBe(400);
      expect(await counts()).toEqual(before);
    });

    it('shows a friendly page when the user denies access at the IdP, and stores nothing', async () => {
      const browser = newBrowser();
      const start = await browser.openLink(`/oauth/corp/start?context=${await mint()}`);
      const denied = await idp.deny(new URL(start.headers.get('location')!));
      expect(denied.searchParams.get('error')).toBe('access_denied');
      const before = await counts();
      const response = await browser.get(denied);
      expect(response.status).toBe(400);
      const page = await response.text();
      expect(page).toContain('Linking cancelled');
      expect(page).toContain('Access was not allowed at Corp SSO, so nothing was linked.');
      expect(page).toContain('The bot has been told.');
      expect(await counts()).toMatchObject({ links: before.links, token: before.token });
    });
  });

  it('runs one token exchange and stores one link for ten parallel callbacks with one code and state', async () => {
    const browser = newBrowser();
    const userId = randomUserId();
    const { callback } = await startAndLogin(browser, await mint({ sub: userId }), 'idp-sub-parallel');
    const exchanges = idp.counts.tokenByGrant.authorization_code ?? 0;
    const linksBefore = (await counts()).links;
    const responses = await Promise.all(Array.from({ length: 10 }, () => browser.get(callback)));
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    for (const status of statuses.filter((s) => s !== 200)) expect([400, 409]).toContain(status);
    expect(idp.counts.tokenByGrant.authorization_code).toBe(exchanges + 1);
    expect((await counts()).links).toBe(linksBefore + 1);
  });

  it('refuses an IdP account already linked to another user, with a clear page', async () => {
    const first = newBrowser();
    const a = await startAndLogin(first, await mint(), 'idp-sub-taken');
    expect((await first.get(a.callback)).status).toBe(200);
    const second = newBrowser();
    const secondUser = randomUserId();
    const b = await startAndLogin(second, await mint({ sub: secondUser }), 'idp-sub-taken');
    const refused = await second.get(b.callback);
    expect(refused.status).toBe(409);
    expect(await refused.text()).toContain('already linked to another user');
    expect((await gateway.api(`/users/${secondUser}/links/corp`)).status).toBe(404);
  });

  it('keeps the ID token of the sign-in when a refresh brings none, and takes a new one about the same user', async () => {
    const { credentials: signedIn } = await linkCorp('idp-sub-id-token');
    const corp = gateway.registry.get('corp')!.instance!;
    expect(decodeJwt(String(signedIn.extra!.idToken)).sub).toBe('idp-sub-id-token');

    // The IdP answers the refresh with a new ID token: it replaces the stored one. (A second
    // later, so it differs: RS256 over the same claims in the same second is the same token.)
    await new Promise((r) => setTimeout(r, 1100));
    const renewed = await corp.refresh!(signedIn);
    expect(renewed.extra!.idToken).not.toBe(signedIn.extra!.idToken);
    expect(decodeJwt(String(renewed.extra!.idToken))).toMatchObject({ sub: 'idp-sub-id-token', iss: idp.issuer });
    expect(decodeJwt(String(renewed.extra!.idToken)).iat).toBeGreaterThan(decodeJwt(String(signedIn.extra!.idToken)).iat!);

    // It answers without one (OIDC Core §12.2 allows that): the previous one is kept.
    idp.idTokenOnRefresh = false;
    try {
      const refreshes = idp.counts.tokenByGrant.refresh_token ?? 0;
      const again = await corp.refresh!(renewed);
      expect(idp.counts.tokenByGrant.refresh_token).toBe(refreshes + 1);
      expect(again.accessToken).not.toBe(renewed.accessToken);
      expect(again.extra).toEqual({ idToken: renewed.extra!.idToken });
    } finally {
      idp.idTokenOnRefresh = true;
    }
  });

  it('refuses a refreshed ID token about another user than the stored one', async () => {
    const { credentials: ofA } = await linkCorp('idp-sub-one');
    const { credentials: ofB } = await linkCorp('idp-sub-two');
    // B's refresh token next to A's ID token: the IdP answers about B, which is not who signed in.
    await expect(gateway.registry.get('corp')!.instance!.refresh!({ ...ofB, extra: ofA.extra! })).rejects.toMatchObject({ code: 'provider_response_invalid' });
  });

  it('refreshes with the IdP refresh token and revokes on unlink', async () => {
    const { userId, credentials } = await linkCorp('idp-sub-refresh');
    expect(credentials.refreshToken).toBeTruthy();

    const refreshes = idp.counts.tokenByGrant.refresh_token ?? 0;
    const refreshed = await gateway.registry.get('corp')!.instance!.refresh!(credentials);
    expect(idp.counts.tokenByGrant.refresh_token).toBe(refreshes + 1);
    expect(refreshed.accessToken).toBeTruthy();
    expect(refreshed.accessToken).not.toBe(credentials.accessToken);
    expect(refreshed.expiresAt).toBeGreaterThan(Date.now());

    const revocations = idp.counts.revocation;
    expect((await gateway.api(`/users/${userId}/links/corp`, { method: 'DELETE' })).status).toBe(204);
    expect(idp.counts.revocation).toBeGreaterThan(revocations);
    // The IdP no longer accepts the revoked refresh token: the user must link again.
    await expect(gateway.registry.get('corp')!.instance!.refresh!(refreshed)).rejects.toMatchObject({ code: 'needs_reauth' });
  });
});
