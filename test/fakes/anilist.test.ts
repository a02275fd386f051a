import { afterEach, describe, expect, it } from 'vitest';

import { startFakeAniList, type FakeAniList, type StartFakeAniListOptions } from './anilist.ts';

const REDIRECT_URI = 'http://127.0.0.1:9/oauth/anilist/callback'; // never actually called
const OTHER_REDIRECT_URI = 'http://127.0.0.1:9/other/callback';
const VIEWER_QUERY = 'query { Viewer { id name } }';
const USER_ID = 5678033;

const started: FakeAniList[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((fake) => fake.close()));
});

async function setup(opts: StartFakeAniListOptions = {}) {
  const fake = await startFakeAniList({ redirectUris: [REDIRECT_URI, OTHER_REDIRECT_URI], ...opts });
  started.push(fake);
  fake.users.set(USER_ID, { id: USER_ID, name: 'Minus6' });
  return fake;
}

function authorizeUrl(fake: FakeAniList, params: Record<string, string | undefined> = {}): URL {
  const url = new URL(`${fake.oauthBaseUrl}/api/v2/oauth/authorize`);
  const all: Record<string, string | undefined> = {
    client_id: fake.clientId,
    redirect_uri: REDIRECT_URI,
    response_type: 'code',
    state: 'st-123',
    ...params,
  };
  for (const [k, v] of Object.entries(all)) if (v !== undefined) url.searchParams.set(k, v);
  return url;
}

/** The token request exactly as AniList's docs show it (JSON), or form-encoded as openid-client sends it. */
function exchange(fake: FakeAniList, body: Record<string, string>, encoding: 'json' | 'form' = 'json', headers: Record<string, string> = {}) {
  return fetch(`${fake.oauthBaseUrl}/api/v2/oauth/token`, {
    method: 'POST',
    headers: {
      accept: 'application/json',
      'content-type': encoding === 'json' ? 'application/json' : 'application/x-www-form-urlencoded',
      ...headers,
    },
    body: encoding === 'json' ? JSON.stringify(body) : new URLSearchParams(body).toString(),
  });
}

function codeBody(fake: FakeAniList, code: string, overrides: Record<string, string> = {}) {
  return {
    grant_type: 'authorization_code',
    client_id: fake.clientId,
    client_secret: fake.clientSecret,
    redirect_uri: REDIRECT_URI,
    code,
    ...overrides,
  };
}

function graphql(fake: FakeAniList, query: string, token?: string, signal?: AbortSignal) {
  return fetch(fake.graphqlUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json',
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
    body: JSON.stringify({ query }),
    ...(signal ? { signal } : {}),
  });
}

function decodeJwt(jwt: string): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  const [h = '', c = ''] = jwt.split('.');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>,
    claims: JSON.parse(Buffer.from(c, 'base64url').toString('utf8')) as Record<string, unknown>,
  };
}

async function signIn(fake: FakeAniList, userId = USER_ID): Promise<string> {
  const callback = fake.approve(authorizeUrl(fake), userId);
  const res = await exchange(fake, codeBody(fake, callback.searchParams.get('code')!));
  expect(res.status).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

describe('test/fakes/anilist', () => {
  it('runs the documented authorization-code flow and the Viewer query with exact counts', async () => {
    const fake = await setup();
    expect(fake.origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(fake.oauthBaseUrl).toBe(fake.origin);
    expect(fake.graphqlUrl).toBe(`${fake.origin}/graphql`);

    const callback = fake.approve(authorizeUrl(fake), USER_ID);
    expect(`${callback.origin}${callback.pathname}`).toBe(REDIRECT_URI);
    expect(callback.searchParams.get('state')).toBe('st-123');
    const code = callback.searchParams.get('code');
    expect(code).toMatch(/^def50200[0-9a-f]+$/);
    expect(fake.counts).toEqual({ token: 0, graphql: 0 });

    const res = await exchange(fake, codeBody(fake, code!));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const tokens = (await res.json()) as Record<string, unknown>;
    expect(Object.keys(tokens).sort()).toEqual(['access_token', 'expires_in', 'refresh_token', 'token_type']);
    expect(tokens.token_type).toBe('Bearer');
    expect(tokens.expires_in).toBe(31_536_000);
    expect(tokens.refresh_token).toEqual(expect.any(String));

    // AniList access tokens are JWTs whose `sub` is the user id (docs: graphql/queries/user).
    const { header, claims } = decodeJwt(tokens.access_token as string);
    expect(header).toMatchObject({ alg: 'RS256', typ: 'JWT' });
    expect(claims).toMatchObject({ aud: fake.clientId, sub: String(USER_ID), scopes: [] });
    expect((claims.exp as number) - (claims.iat as number)).toBe(31_536_000);

    const viewer = await graphql(fake, VIEWER_QUERY, tokens.access_token as string);
    expect(viewer.status).toBe(200);
    expect(await viewer.json()).toEqual({ data: { Viewer: { id: USER_ID, name: 'Minus6' } } });
    expect(fake.counts).toEqual({ token: 1, graphql: 1 });
  });

  it('accepts form-encoded bodies and HTTP Basic client credentials (Laravel/league parse both)', async () => {
    const fake = await setup();
    const code1 = fake.approve(authorizeUrl(fake), USER_ID).searchParams.get('code')!;
    const form = await exchange(fake, codeBody(fake, code1), 'form');
    expect(form.status).toBe(200);

    const code2 = fake.approve(authorizeUrl(fake), USER_ID).searchParams.get('code')!;
    const { client_id: _id, client_secret: _secret, ...rest } = codeBody(fake, code2);
    const basic = await exchange(fake, rest, 'form', {
      authorization: `Basic ${Buffer.from(`${fake.clientId}:${fake.clientSecret}`).toString('base64')}`,
    });
    expect(basic.status).toBe(200);
    expect(fake.counts.token).toBe(2);
  });

  it('refuses a spent code, an unknown code and a code for another redirect_uri, with league 7 error bodies', async () => {
    const fake = await setup();
    const code = fake.approve(authorizeUrl(fake), USER_ID).searchParams.get('code')!;
    expect((await exchange(fake, codeBody(fake, code))).status).toBe(200);

    const reuse = await exchange(fake, codeBody(fake, code));
    expect(reuse.status).toBe(400);
    expect(await reuse.json()).toEqual({
      error: 'invalid_request',
      message:
        'The request is missing a required parameter, includes an invalid parameter value, includes a parameter more than once, or is otherwise malformed.',
      hint: 'Authorization code has been revoked',
    });

    const unknown = await exchange(fake, codeBody(fake, 'def50200nope'));
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toMatchObject({ error: 'invalid_request', hint: 'Cannot decrypt the authorization code' });

    const code2 = fake.approve(authorizeUrl(fake), USER_ID).searchParams.get('code')!;
    const otherRedirect = await exchange(fake, codeBody(fake, code2, { redirect_uri: OTHER_REDIRECT_URI }));
    expect(otherRedirect.status).toBe(400);
    expect(await otherRedirect.json()).toMatchObject({ error: 'invalid_request', hint: 'Invalid redirect URI' });

    const { redirect_uri: _r, ...noRedirect } = codeBody(fake, code2);
    const missingRedirect = await exchange(fake, noRedirect);
    expect(missingRedirect.status).toBe(400);
    expect(await missingRedirect.json()).toMatchObject({ error: 'invalid_request', hint: 'Check the `redirect_uri` parameter' });

    // The failed attempts did not spend code2.
    expect((await exchange(fake, codeBody(fake, code2))).status).toBe(200);
    expect(fake.counts.token).toBe(6);
  });

  it('refuses wrong client credentials and unregistered redirect URIs with 401 invalid_client', async () => {
    const fake = await setup();
    const code = fake.approve(authorizeUrl(fake), USER_ID).searchParams.get('code')!;

    const wrongSecret = await exchange(fake, codeBody(fake, code, { client_secret: 'nope' }));
    expect(wrongSecret.status).toBe(401);
    expect(await wrongSecret.json()).toEqual({ error: 'invalid_client', message: 'Client authentication failed' });

    const wrongBasic = await exchange(fake, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI }, 'form', {
      authorization: `Basic ${Buffer.from(`${fake.clientId}:nope`).toString('base64')}`,
    });
    expect(wrongBasic.status).toBe(401);
    expect(wrongBasic.headers.get('www-authenticate')).toBe('Basic realm="OAuth"');

    const unregistered = await exchange(fake, codeBody(fake, code, { redirect_uri: 'http://127.0.0.1:9/evil' }));
    expect(unregistered.status).toBe(401);
    expect(await unregistered.json()).toMatchObject({ error: 'invalid_client' });

    const noClient = await exchange(fake, { grant_type: 'authorization_code', code });
    expect(noClient.status).toBe(400);
    expect(await noClient.json()).toMatchObject({ error: 'invalid_request', hint: 'Check the `client_id` parameter' });

    // The code survived all of that.
    expect((await exchange(fake, codeBody(fake, code))).status).toBe(200);
  });

  it('does not honour refresh tokens (unsupported_grant_type)', async () => {
    const fake = await setup();
    const code = fake.approve(authorizeUrl(fake), USER_ID).searchParams.get('code')!;
    const { refresh_token } = (await (await exchange(fake, codeBody(fake, code))).json()) as { refresh_token: string };
    const res = await exchange(fake, {
      grant_type: 'refresh_token',
      client_id: fake.clientId,
      client_secret: fake.clientSecret,
      refresh_token,
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: 'unsupported_grant_type',
      message: 'The authorization grant type is not supported by the authorization server.',
      hint: 'Check that all required parameters have been provided',
    });
  });

  it('validates the authorize URL in approve()/deny() and on the authorize page', async () => {
    const fake = await setup();
    expect(() => fake.approve(authorizeUrl(fake, { client_id: '999' }), USER_ID)).toThrow(/invalid_client/);
    expect(() => fake.approve(authorizeUrl(fake, { redirect_uri: 'http://127.0.0.1:9/evil' }), USER_ID)).toThrow(/invalid_client/);
    expect(() => fake.approve(authorizeUrl(fake, { response_type: undefined }), USER_ID)).toThrow(/unsupported_grant_type/);
    expect(() => fake.approve('https://anilist.co/api/v2/oauth/authorize?client_id=1', USER_ID)).toThrow(/not an authorize URL/);

    // No redirect_uri with several registered: league cannot pick one.
    expect(() => fake.approve(authorizeUrl(fake, { redirect_uri: undefined }), USER_ID)).toThrow(/invalid_client/);

    const page = await fetch(authorizeUrl(fake));
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const bad = await fetch(authorizeUrl(fake, { client_id: '999' }));
    expect(bad.status).toBe(401);
    expect(await bad.json()).toEqual({ error: 'invalid_client', message: 'Client authentication failed' });

    const denied = fake.deny(authorizeUrl(fake));
    expect(`${denied.origin}${denied.pathname}`).toBe(REDIRECT_URI);
    expect(Object.fromEntries(denied.searchParams)).toEqual({
      state: 'st-123',
      error: 'access_denied',
      message: 'The resource owner or authorization server denied the request.',
      hint: 'The user denied the request',
    });
    expect(fake.counts).toEqual({ token: 0, graphql: 0 });
  });

  it('uses the single registered redirect URI when none is sent, and then wants none at the token endpoint', async () => {
    const fake = await setup({ redirectUris: [REDIRECT_URI] });
    const callback = fake.approve(authorizeUrl(fake, { redirect_uri: undefined, state: undefined }), USER_ID);
    expect(`${callback.origin}${callback.pathname}`).toBe(REDIRECT_URI);
    expect(callback.searchParams.has('state')).toBe(false);
    const { redirect_uri: _r, ...body } = codeBody(fake, callback.searchParams.get('code')!);
    expect((await exchange(fake, body)).status).toBe(200);
  });

  it('adds a default account for an unknown user id', async () => {
    const fake = await setup();
    const token = await signIn(fake, 42);
    expect(fake.users.get(42)).toEqual({ id: 42, name: 'AniListUser42' });
    const res = await graphql(fake, '{ Viewer { id name } }', token);
    expect(await res.json()).toEqual({ data: { Viewer: { id: 42, name: 'AniListUser42' } } });
  });

  describe('GraphQL Viewer', () => {
    it('answers "Unauthorized." without a token and "Invalid token" (HTTP 400) for a bad or invalidated one', async () => {
      const fake = await setup();
      const token = await signIn(fake);

      const anonymous = await graphql(fake, VIEWER_QUERY);
      expect(anonymous.status).toBe(401);
      expect(await anonymous.json()).toEqual({
        errors: [{ message: 'Unauthorized.', status: 401, locations: [{ line: 1, column: 9 }] }],
        data: { Viewer: null },
      });

      const garbage = await graphql(fake, VIEWER_QUERY, 'not-a-token');
      expect(garbage.status).toBe(400);
      expect(await garbage.json()).toEqual({
        errors: [{ message: 'Invalid token', status: 400, locations: [{ line: 1, column: 9 }] }],
        data: { Viewer: null },
      });

      expect((await graphql(fake, VIEWER_QUERY, token)).status).toBe(200);
      fake.invalidate(token);
      const invalidated = await graphql(fake, '\n  query {\n  Viewer { id }\n}', token);
      expect(invalidated.status).toBe(400);
      expect(await invalidated.json()).toEqual({
        errors: [{ message: 'Invalid token', status: 400, locations: [{ line: 3, column: 3 }] }],
        data: { Viewer: null },
      });
      expect(fake.counts).toEqual({ token: 1, graphql: 4 });
      expect(() => fake.invalidate('never-issued')).toThrow();
    });

    it('treats a token past its lifetime as invalid', async () => {
      const fake = await setup({ tokenTtlSeconds: 0 });
      const code = fake.approve(authorizeUrl(fake), USER_ID).searchParams.get('code')!;
      const tokens = (await (await exchange(fake, codeBody(fake, code))).json()) as { access_token: string; expires_in: number };
      expect(tokens.expires_in).toBe(0);
      const res = await graphql(fake, VIEWER_QUERY, tokens.access_token);
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ errors: [{ message: 'Invalid token' }] });
    });

    it('honours named operations, aliases, __typename and only the selected fields', async () => {
      const fake = await setup();
      const token = await signIn(fake);
      const res = await graphql(fake, 'query Me($x: Int = 1) { me: Viewer { __typename userId: id } # comment\n }', token);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ data: { me: { __typename: 'User', userId: USER_ID } } });
    });

    it('refuses what it does not implement, GraphQL-style', async () => {
      const fake = await setup();
      const token = await signIn(fake);
      const media = await graphql(fake, '{ Media(id: 1) { id } }', token);
      expect(media.status).toBe(400);
      expect(await media.json()).toMatchObject({ data: null, errors: [{ status: 400, locations: [{ line: 1, column: 3 }] }] });
      const field = await graphql(fake, '{ Viewer { id avatar { large } } }', token);
      expect(field.status).toBe(400);
      expect(((await field.json()) as { errors: { message: string }[] }).errors[0]!.message).toMatch(/User\.avatar/);
      const syntax = await graphql(fake, '{ Viewer { id ', token);
      expect(syntax.status).toBe(400);
      expect(((await syntax.json()) as { errors: { message: string }[] }).errors[0]!.message).toMatch(/^Syntax Error/);
    });
  });

  describe('fault injection', () => {
    it('answers 500 for the next N token requests, then recovers', async () => {
      const fake = await setup();
      fake.failNext('token', 'http500', 2);
      const code = fake.approve(authorizeUrl(fake), USER_ID).searchParams.get('code')!;
      expect((await exchange(fake, codeBody(fake, code))).status).toBe(500);
      expect((await exchange(fake, codeBody(fake, code))).status).toBe(500);
      // The faulted requests were not processed: the code is still good.
      expect((await exchange(fake, codeBody(fake, code))).status).toBe(200);
      expect(fake.counts).toEqual({ token: 3, graphql: 0 });
    });

    it('answers 200 with a body that is not JSON (malformed)', async () => {
      const fake = await setup();
      const token = await signIn(fake);
      fake.failNext('graphql', 'malformed');
      fake.failNext('token', 'malformed');
      const viewer = await graphql(fake, VIEWER_QUERY, token);
      expect(viewer.status).toBe(200);
      await expect(viewer.json()).rejects.toThrow(SyntaxError);
      const code = fake.approve(authorizeUrl(fake), USER_ID).searchParams.get('code')!;
      const tokenRes = await exchange(fake, codeBody(fake, code));
      expect(tokenRes.status).toBe(200);
      await expect(tokenRes.json()).rejects.toThrow(SyntaxError);
      expect((await graphql(fake, VIEWER_QUERY, token)).status).toBe(200);
      expect(fake.counts).toEqual({ token: 2, graphql: 2 });
    });

    it('hangs until the client gives up, and close() does not wait for hung requests', async () => {
      const fake = await startFakeAniList({ redirectUris: [REDIRECT_URI] });
      fake.users.set(USER_ID, { id: USER_ID, name: 'Minus6' });
      try {
        const token = await signIn(fake);
        fake.failNext('graphql', 'hang', 2);
        await expect(graphql(fake, VIEWER_QUERY, token, AbortSignal.timeout(150))).rejects.toMatchObject({ name: 'TimeoutError' });

        // A second hung request with no timeout of its own: close() must still finish promptly.
        const hung = graphql(fake, VIEWER_QUERY, token);
        const hungOutcome = hung.then(
          () => 'answered',
          () => 'failed',
        );
        await new Promise((resolve) => setTimeout(resolve, 50));
        expect(fake.counts.graphql).toBe(2);
        const t0 = Date.now();
        await fake.close();
        expect(Date.now() - t0).toBeLessThan(1000);
        expect(await hungOutcome).toBe('failed');
      } finally {
        await fake.close();
      }
    });
  });
});
