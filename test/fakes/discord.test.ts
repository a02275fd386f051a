import { createHash, randomBytes } from 'node:crypto';

import { afterEach, describe, expect, it } from 'vitest';

import { startFakeDiscord, type FakeDiscord, type StartFakeDiscordOptions } from './discord.ts';

const REDIRECT_URI = 'http://127.0.0.1:9/oauth/discord/callback'; // never actually called
const OTHER_REDIRECT_URI = 'http://127.0.0.1:9/other/callback';
const USER_ID = '80351110224678912';

const started: FakeDiscord[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((fake) => fake.close()));
});

async function setup(opts: StartFakeDiscordOptions = {}) {
  const fake = await startFakeDiscord({ redirectUris: [REDIRECT_URI, OTHER_REDIRECT_URI], ...opts });
  started.push(fake);
  fake.users.set(USER_ID, { id: USER_ID, username: 'nelly', global_name: 'Nelly' });
  return fake;
}

function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

function authorizeUrl(fake: FakeDiscord, challenge: string, params: Record<string, string | undefined> = {}): URL {
  const url = new URL(`${fake.origin}/oauth2/authorize`);
  const all: Record<string, string | undefined> = {
    response_type: 'code',
    client_id: fake.clientId,
    scope: 'identify',
    state: 'st-456',
    redirect_uri: REDIRECT_URI,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...params,
  };
  for (const [k, v] of Object.entries(all)) if (v !== undefined) url.searchParams.set(k, v);
  return url;
}

const basicAuth = (fake: FakeDiscord, secret = fake.clientSecret) =>
  `Basic ${Buffer.from(`${encodeURIComponent(fake.clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`;

/** POST a form to the token (or revoke) endpoint, with HTTP Basic client auth unless `auth: 'body'`. */
function postForm(
  fake: FakeDiscord,
  path: '/oauth2/token' | '/oauth2/token/revoke',
  form: Record<string, string>,
  { auth = 'basic', secret = fake.clientSecret, signal }: { auth?: 'basic' | 'body' | 'none'; secret?: string; signal?: AbortSignal } = {},
) {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  const body = { ...form };
  if (auth === 'basic') headers.authorization = basicAuth(fake, secret);
  if (auth === 'body') Object.assign(body, { client_id: fake.clientId, client_secret: secret });
  return fetch(`${fake.apiBaseUrl}${path}`, { method: 'POST', headers, body: new URLSearchParams(body), ...(signal ? { signal } : {}) });
}

const codeForm = (code: string, verifier: string, overrides: Record<string, string> = {}) => ({
  grant_type: 'authorization_code',
  code,
  redirect_uri: REDIRECT_URI,
  code_verifier: verifier,
  ...overrides,
});

function me(fake: FakeDiscord, accessToken: string, signal?: AbortSignal) {
  return fetch(`${fake.apiBaseUrl}/users/@me`, {
    headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json' },
    ...(signal ? { signal } : {}),
  });
}

interface TokenAnswer {
  access_token: string;
  token_type: string;
  expires_in: number;
  refresh_token: string;
  scope: string;
}

async function signIn(fake: FakeDiscord, scope = 'identify'): Promise<TokenAnswer> {
  const { verifier, challenge } = pkce();
  const code = fake.approve(authorizeUrl(fake, challenge, { scope }), USER_ID).searchParams.get('code')!;
  const res = await postForm(fake, '/oauth2/token', codeForm(code, verifier));
  expect(res.status).toBe(200);
  return (await res.json()) as TokenAnswer;
}

describe('test/fakes/discord', () => {
  it('runs code + PKCE (S256), /users/@me, with exact counts', async () => {
    const fake = await setup();
    expect(fake.origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(fake.apiBaseUrl).toBe(`${fake.origin}/api`);

    const { verifier, challenge } = pkce();
    const callback = fake.approve(authorizeUrl(fake, challenge), USER_ID);
    expect(`${callback.origin}${callback.pathname}`).toBe(REDIRECT_URI);
    expect([...callback.searchParams.keys()].sort()).toEqual(['code', 'state']); // Discord sends no iss
    expect(callback.searchParams.get('state')).toBe('st-456');

    const res = await postForm(fake, '/oauth2/token', codeForm(callback.searchParams.get('code')!, verifier));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const tokens = (await res.json()) as TokenAnswer;
    expect(tokens).toEqual({
      token_type: 'Bearer',
      access_token: expect.any(String),
      expires_in: 604_800,
      refresh_token: expect.any(String),
      scope: 'identify',
    });
    expect(fake.isActive(tokens.access_token)).toBe(true);
    expect(fake.isActive(tokens.refresh_token)).toBe(true);

    const user = await me(fake, tokens.access_token);
    expect(user.status).toBe(200);
    const body = (await user.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ id: USER_ID, username: 'nelly', global_name: 'Nelly', discriminator: '0', avatar: null });
    expect(body).not.toHaveProperty('email');

    expect(fake.counts).toEqual({ token: 1, tokenByGrant: { authorization_code: 1 }, revoke: 0, me: 1, guilds: 0 });
  });

  it('accepts client credentials in the form body, and the email scope adds email', async () => {
    const fake = await setup();
    const { verifier, challenge } = pkce();
    const code = fake.approve(authorizeUrl(fake, challenge, { scope: 'identify email' }), USER_ID).searchParams.get('code')!;
    const res = await postForm(fake, '/oauth2/token', codeForm(code, verifier), { auth: 'body' });
    expect(res.status).toBe(200);
    const tokens = (await res.json()) as TokenAnswer;
    expect(tokens.scope).toBe('identify email');
    // A versioned API path works as well.
    const user = await fetch(`${fake.apiBaseUrl}/v10/users/@me`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    expect(await user.json()).toMatchObject({ id: USER_ID, email: expect.any(String), verified: true });
  });

  it('refuses a spent code with invalid_grant', async () => {
    const fake = await setup();
    const { verifier, challenge } = pkce();
    const code = fake.approve(authorizeUrl(fake, challenge), USER_ID).searchParams.get('code')!;
    expect((await postForm(fake, '/oauth2/token', codeForm(code, verifier))).status).toBe(200);
    const reuse = await postForm(fake, '/oauth2/token', codeForm(code, verifier));
    expect(reuse.status).toBe(400);
    expect(await reuse.json()).toEqual({ error: 'invalid_grant', error_description: 'Invalid "code" in request.' });
    const unknown = await postForm(fake, '/oauth2/token', codeForm('nope', verifier));
    expect(await unknown.json()).toEqual({ error: 'invalid_grant', error_description: 'Invalid "code" in request.' });
    expect(fake.counts.tokenByGrant).toEqual({ authorization_code: 3 });
  });

  it('refuses a wrong client secret (Basic or body) with invalid_client', async () => {
    const fake = await setup();
    const { verifier, challenge } = pkce();
    const code = fake.approve(authorizeUrl(fake, challenge), USER_ID).searchParams.get('code')!;
    for (const auth of ['basic', 'body'] as const) {
      const res = await postForm(fake, '/oauth2/token', codeForm(code, verifier), { auth, secret: 'wrong' });
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({ error: 'invalid_client' });
    }
    const none = await postForm(fake, '/oauth2/token', codeForm(code, verifier), { auth: 'none' });
    expect(none.status).toBe(401);
    // The refused attempts did not spend the code.
    expect((await postForm(fake, '/oauth2/token', codeForm(code, verifier))).status).toBe(200);
  });

  it('verifies PKCE: missing or mismatching code_verifier is refused', async () => {
    const fake = await setup();
    const { verifier, challenge } = pkce();
    const code = fake.approve(authorizeUrl(fake, challenge), USER_ID).searchParams.get('code')!;

    const { code_verifier: _v, ...withoutVerifier } = codeForm(code, verifier);
    const missing = await postForm(fake, '/oauth2/token', withoutVerifier);
    expect(missing.status).toBe(400);
    expect(await missing.json()).toEqual({ error: 'invalid_request', error_description: 'Missing "code_verifier"' });

    const mismatch = await postForm(fake, '/oauth2/token', codeForm(code, pkce().verifier));
    expect(mismatch.status).toBe(400);
    expect(await mismatch.json()).toEqual({ error: 'invalid_request', error_description: 'Invalid "code_verifier"' });

    const tooShort = await postForm(fake, '/oauth2/token', codeForm(code, 'short'));
    expect(await tooShort.json()).toEqual({ error: 'invalid_request', error_description: 'Invalid "code_verifier"' });

    expect((await postForm(fake, '/oauth2/token', codeForm(code, verifier))).status).toBe(200);
    expect(fake.counts).toMatchObject({ token: 4, tokenByGrant: { authorization_code: 4 } });
  });

  it('checks redirect_uri against the one used at authorize, and refuses JSON bodies', async () => {
    const fake = await setup();
    const { verifier, challenge } = pkce();
    const code = fake.approve(authorizeUrl(fake, challenge), USER_ID).searchParams.get('code')!;
    const other = await postForm(fake, '/oauth2/token', codeForm(code, verifier, { redirect_uri: OTHER_REDIRECT_URI }));
    expect(other.status).toBe(400);
    expect(await other.json()).toEqual({ error: 'invalid_grant', error_description: 'Invalid "redirect_uri" in request.' });

    const json = await fetch(`${fake.apiBaseUrl}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: basicAuth(fake) },
      body: JSON.stringify(codeForm(code, verifier)),
    });
    expect(json.status).toBe(400);
    expect(await json.json()).toMatchObject({ error: expect.any(String) });
    expect(fake.counts.tokenByGrant).toEqual({ authorization_code: 1, '(none)': 1 });

    expect((await postForm(fake, '/oauth2/token', codeForm(code, verifier))).status).toBe(200);
  });

  it('rotates refresh tokens: the spent one is refused afterwards', async () => {
    const fake = await setup();
    const first = await signIn(fake);

    const r1 = await postForm(fake, '/oauth2/token', { grant_type: 'refresh_token', refresh_token: first.refresh_token });
    expect(r1.status).toBe(200);
    const second = (await r1.json()) as TokenAnswer;
    expect(second).toMatchObject({ token_type: 'Bearer', expires_in: 604_800, scope: 'identify' });
    expect(second.refresh_token).not.toBe(first.refresh_token);
    expect(second.access_token).not.toBe(first.access_token);
    expect(fake.isActive(first.refresh_token)).toBe(false);
    expect(fake.isActive(second.refresh_token)).toBe(true);

    const reuse = await postForm(fake, '/oauth2/token', { grant_type: 'refresh_token', refresh_token: first.refresh_token });
    expect(reuse.status).toBe(400);
    expect(await reuse.json()).toEqual({ error: 'invalid_grant', error_description: 'Invalid "refresh_token" in request.' });

    const r3 = await postForm(fake, '/oauth2/token', { grant_type: 'refresh_token', refresh_token: second.refresh_token }, { auth: 'body' });
    expect(r3.status).toBe(200);
    expect((await me(fake, ((await r3.json()) as TokenAnswer).access_token)).status).toBe(200);

    const unsupported = await postForm(fake, '/oauth2/token', { grant_type: 'password' });
    expect(await unsupported.json()).toEqual({ error: 'unsupported_grant_type' });

    expect(fake.counts).toEqual({
      token: 5,
      tokenByGrant: { authorization_code: 1, refresh_token: 3, password: 1 },
      revoke: 0,
      me: 1,
      guilds: 0,
    });
  });

  it('revoking the refresh token revokes the access token too: /users/@me answers 401', async () => {
    const fake = await setup();
    const tokens = await signIn(fake);
    expect((await me(fake, tokens.access_token)).status).toBe(200);

    const revoke = await postForm(fake, '/oauth2/token/revoke', { token: tokens.refresh_token, token_type_hint: 'refresh_token' });
    expect(revoke.status).toBe(200);
    expect(await revoke.json()).toEqual({});
    expect(fake.isActive(tokens.refresh_token)).toBe(false);
    expect(fake.isActive(tokens.access_token)).toBe(false);

    const after = await me(fake, tokens.access_token);
    expect(after.status).toBe(401);
    expect(await after.json()).toEqual({ message: '401: Unauthorized', code: 0 });
    const refresh = await postForm(fake, '/oauth2/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
    expect(refresh.status).toBe(400);

    // Revoking again (unknown token) is still a 200, per RFC 7009.
    expect((await postForm(fake, '/oauth2/token/revoke', { token: tokens.access_token })).status).toBe(200);
    expect(fake.counts).toEqual({ token: 2, tokenByGrant: { authorization_code: 1, refresh_token: 1 }, revoke: 2, me: 2, guilds: 0 });
  });

  it('revoking the access token revokes the refresh token too; revoke checks client auth and the hint', async () => {
    const fake = await setup();
    const tokens = await signIn(fake);
    const noAuth = await postForm(fake, '/oauth2/token/revoke', { token: tokens.access_token }, { auth: 'none' });
    expect(noAuth.status).toBe(401);
    expect(await noAuth.json()).toEqual({ error: 'invalid_client' });
    const badHint = await postForm(fake, '/oauth2/token/revoke', { token: tokens.access_token, token_type_hint: 'id_token' });
    expect(badHint.status).toBe(400);
    expect(await badHint.json()).toEqual({ error: 'unsupported_token_type' });
    expect(fake.isActive(tokens.access_token)).toBe(true);

    const ok = await postForm(fake, '/oauth2/token/revoke', { token: tokens.access_token, token_type_hint: 'access_token' }, { auth: 'body' });
    expect(ok.status).toBe(200);
    expect(fake.isActive(tokens.access_token)).toBe(false);
    expect(fake.isActive(tokens.refresh_token)).toBe(false);
    expect(fake.counts.revoke).toBe(3);
  });

  it('expire() makes the access token fail with 401 while the refresh token still works', async () => {
    const fake = await setup({ accessTokenTtlSeconds: 60 });
    const tokens = await signIn(fake);
    expect(tokens.expires_in).toBe(60);
    fake.expire(tokens.access_token);
    expect(fake.isActive(tokens.access_token)).toBe(false);
    expect((await me(fake, tokens.access_token)).status).toBe(401);
    const refreshed = await postForm(fake, '/oauth2/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
    expect(refreshed.status).toBe(200);
    expect((await me(fake, ((await refreshed.json()) as TokenAnswer).access_token)).status).toBe(200);
    expect(() => fake.expire(tokens.refresh_token)).toThrow();
  });

  it('validates authorize URLs in approve()/deny(); deny sends access_denied with state', async () => {
    const fake = await setup();
    const { challenge } = pkce();
    expect(() => fake.approve(authorizeUrl(fake, challenge, { code_challenge: undefined, code_challenge_method: undefined }), USER_ID)).toThrow(
      /PKCE/,
    );
    expect(() => fake.approve(authorizeUrl(fake, challenge, { code_challenge_method: 'plain' }), USER_ID)).toThrow(
      /code_challenge_method/,
    );
    expect(() => fake.approve(authorizeUrl(fake, challenge, { redirect_uri: 'http://127.0.0.1:9/evil' }), USER_ID)).toThrow(/redirect_uri/);
    expect(() => fake.approve(authorizeUrl(fake, challenge, { client_id: '1' }), USER_ID)).toThrow(/client_id/);
    expect(() => fake.approve(authorizeUrl(fake, challenge, { scope: undefined }), USER_ID)).toThrow(/scope/);

    const page = await fetch(authorizeUrl(fake, challenge));
    expect(page.status).toBe(200);
    expect((await fetch(authorizeUrl(fake, challenge, { client_id: '1' }))).status).toBe(400);

    const denied = fake.deny(authorizeUrl(fake, challenge));
    expect(`${denied.origin}${denied.pathname}`).toBe(REDIRECT_URI);
    expect(Object.fromEntries(denied.searchParams)).toEqual({
      error: 'access_denied',
      error_description: 'The resource owner or authorization server denied the request',
      state: 'st-456',
    });

    // Without redirect_uri Discord uses the first registered one.
    const first = fake.approve(authorizeUrl(fake, challenge, { redirect_uri: undefined }), '123');
    expect(`${first.origin}${first.pathname}`).toBe(REDIRECT_URI);
    expect(fake.users.get('123')).toEqual({ id: '123', username: 'user123', global_name: null });
    expect(fake.counts).toEqual({ token: 0, tokenByGrant: {}, revoke: 0, me: 0, guilds: 0 });
  });

  it('sends iss on the authorization response only when asked to', async () => {
    const withOrigin = await setup({ sendIss: true });
    const { challenge } = pkce();
    expect(withOrigin.approve(authorizeUrl(withOrigin, challenge), USER_ID).searchParams.get('iss')).toBe(withOrigin.origin);
    expect(withOrigin.deny(authorizeUrl(withOrigin, challenge)).searchParams.get('iss')).toBe(withOrigin.origin);
    const withValue = await setup({ sendIss: 'https://discord.com' });
    expect(withValue.approve(authorizeUrl(withValue, challenge), USER_ID).searchParams.get('iss')).toBe('https://discord.com');
  });

  it('lets PKCE be optional (requirePkce: false) and then refuses a stray code_verifier', async () => {
    const fake = await setup({ requirePkce: false });
    const code = fake.approve(authorizeUrl(fake, '', { code_challenge: undefined, code_challenge_method: undefined }), USER_ID).searchParams.get('code')!;
    const stray = await postForm(fake, '/oauth2/token', codeForm(code, pkce().verifier));
    expect(await stray.json()).toEqual({ error: 'invalid_request', error_description: 'Invalid "code_verifier"' });
    const { code_verifier: _v, ...plain } = codeForm(code, '');
    expect((await postForm(fake, '/oauth2/token', plain)).status).toBe(200);
  });

  describe('fault injection and delays', () => {
    it('answers 500 / malformed for the next requests of each kind, then recovers', async () => {
      const fake = await setup();
      const tokens = await signIn(fake);
      fake.failNext('token', 'http500');
      fake.failNext('token', 'malformed');
      fake.failNext('me', 'http500');
      fake.failNext('me', 'malformed');
      fake.failNext('revoke', 'http500');

      const refreshForm = { grant_type: 'refresh_token', refresh_token: tokens.refresh_token };
      const r500 = await postForm(fake, '/oauth2/token', refreshForm);
      expect(r500.status).toBe(500);
      expect(await r500.json()).toEqual({ message: '500: Internal Server Error', code: 0 });
      const rBad = await postForm(fake, '/oauth2/token', refreshForm);
      expect(rBad.status).toBe(200);
      await expect(rBad.json()).rejects.toThrow(SyntaxError);
      // Faulted requests were not processed: the refresh token was not rotated.
      expect(fake.isActive(tokens.refresh_token)).toBe(true);

      expect((await me(fake, tokens.access_token)).status).toBe(500);
      const meBad = await me(fake, tokens.access_token);
      expect(meBad.status).toBe(200);
      await expect(meBad.json()).rejects.toThrow(SyntaxError);
      expect((await me(fake, tokens.access_token)).status).toBe(200);

      expect((await postForm(fake, '/oauth2/token/revoke', { token: tokens.access_token })).status).toBe(500);
      expect(fake.isActive(tokens.access_token)).toBe(true);

      expect(fake.counts).toEqual({ token: 3, tokenByGrant: { authorization_code: 1, refresh_token: 2 }, revoke: 1, me: 3, guilds: 0 });
    });

    it('hangs until the client times out, for every kind; close() does not wait for hung requests', async () => {
      const fake = await startFakeDiscord({ redirectUris: [REDIRECT_URI] });
      try {
        const tokens = await signIn(fake);
        fake.failNext('token', 'hang');
        fake.failNext('revoke', 'hang');
        fake.failNext('me', 'hang', 2);
        const timeout = () => AbortSignal.timeout(150);
        await expect(
          postForm(fake, '/oauth2/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token }, { signal: timeout() }),
        ).rejects.toMatchObject({ name: 'TimeoutError' });
        await expect(postForm(fake, '/oauth2/token/revoke', { token: tokens.access_token }, { signal: timeout() })).rejects.toMatchObject({
          name: 'TimeoutError',
        });
        await expect(me(fake, tokens.access_token, timeout())).rejects.toMatchObject({ name: 'TimeoutError' });

        const hungOutcome = me(fake, tokens.access_token).then(
          () => 'answered',
          () => 'failed',
        );
        await new Promise((resolve) => setTimeout(resolve, 50));
        expect(fake.counts).toEqual({ token: 2, tokenByGrant: { authorization_code: 1, refresh_token: 1 }, revoke: 1, me: 2, guilds: 0 });
        const t0 = Date.now();
        await fake.close();
        expect(Date.now() - t0).toBeLessThan(1000);
        expect(await hungOutcome).toBe('failed');
      } finally {
        await fake.close();
      }
    });

    it('tokenDelayMs delays token answers after the rotation took effect: a concurrent refresh with the same token loses', async () => {
      const fake = await setup();
      const tokens = await signIn(fake);
      fake.tokenDelayMs = 200;
      const form = { grant_type: 'refresh_token', refresh_token: tokens.refresh_token };
      const t0 = Date.now();
      const [a, b] = await Promise.all([postForm(fake, '/oauth2/token', form), postForm(fake, '/oauth2/token', form)]);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
      expect([a.status, b.status].sort()).toEqual([200, 400]);
      const loser = a.status === 400 ? a : b;
      expect(await loser.json()).toEqual({ error: 'invalid_grant', error_description: 'Invalid "refresh_token" in request.' });
      expect(fake.counts.tokenByGrant).toEqual({ authorization_code: 1, refresh_token: 2 });
    });

    it('close() does not wait for a delayed token answer', async () => {
      const fake = await startFakeDiscord({ redirectUris: [REDIRECT_URI] });
      const tokens = await signIn(fake);
      fake.tokenDelayMs = 60_000;
      const pending = postForm(fake, '/oauth2/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token }).then(
        () => 'answered',
        () => 'failed',
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
      const t0 = Date.now();
      await fake.close();
      expect(Date.now() - t0).toBeLessThan(1000);
      expect(await pending).toBe('failed');
    });
  });
});
