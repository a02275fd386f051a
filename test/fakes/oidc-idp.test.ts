import { afterEach, describe, expect, it } from 'vitest';
import * as client from 'openid-client';

import { startTestIdp, type TestIdp } from './oidc-idp.ts';

const REDIRECT_URI = 'http://127.0.0.1:9/oauth/callback'; // never actually called
const SUB = '123456789012345678';

const started: TestIdp[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((idp) => idp.close()));
});

async function setup(opts: Partial<Parameters<typeof startTestIdp>[0]> = {}) {
  const idp = await startTestIdp({ redirectUris: [REDIRECT_URI], ...opts });
  started.push(idp);
  const config = await client.discovery(
    new URL(idp.issuer),
    idp.clientId,
    undefined,
    client.ClientSecretBasic(idp.clientSecret),
    { execute: [client.allowInsecureRequests] },
  );
  return { idp, config };
}

async function authRequest(config: client.Configuration, scope = 'openid profile email') {
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope,
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  return { url, codeVerifier, state, nonce };
}

describe('test/fakes/oidc-idp', () => {
  it('serves discovery for an http://127.0.0.1 issuer with the expected capabilities', async () => {
    const { idp, config } = await setup();
    expect(idp.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const md = config.serverMetadata();
    expect(md.issuer).toBe(idp.issuer);
    expect(md.code_challenge_methods_supported).toEqual(['S256']);
    expect(md.authorization_response_iss_parameter_supported).toBe(true);
    expect(md.revocation_endpoint).toBe(`${idp.issuer}/token/revocation`);
    expect(md.userinfo_endpoint).toBe(`${idp.issuer}/me`);
    expect(md.grant_types_supported).toEqual(expect.arrayContaining(['authorization_code', 'refresh_token']));
    expect(md.scopes_supported).toEqual(expect.arrayContaining(['openid', 'offline_access', 'profile', 'email']));
  });

  it('runs code + PKCE + nonce, userinfo, refresh and revocation with exact counts', async () => {
    const { idp, config } = await setup();
    const { url, codeVerifier, state, nonce } = await authRequest(config);

    const callback = await idp.login(url, SUB);
    expect(`${callback.origin}${callback.pathname}`).toBe(REDIRECT_URI);
    expect(callback.searchParams.get('iss')).toBe(idp.issuer);
    expect(callback.searchParams.get('state')).toBe(state);
    expect(callback.searchParams.get('code')).toBeTruthy();
    expect(idp.counts.token).toBe(0);

    const tokens = await client.authorizationCodeGrant(config, callback, {
      expectedState: state,
      expectedNonce: nonce,
      pkceCodeVerifier: codeVerifier,
      idTokenExpected: true,
    });
    expect(tokens.token_type.toLowerCase()).toBe('bearer');
    expect(tokens.expires_in).toBe(3600);
    expect(tokens.refresh_token).toBeTruthy();
    const idClaims = tokens.claims();
    expect(idClaims?.sub).toBe(SUB);
    expect(idClaims?.nonce).toBe(nonce);
    expect(idClaims?.email).toBe(`${SUB}@example.test`);

    const userinfo = await client.fetchUserInfo(config, tokens.access_token, SUB);
    expect(userinfo).toMatchObject({
      sub: SUB,
      name: `Test User ${SUB}`,
      preferred_username: SUB,
      email: `${SUB}@example.test`,
    });

    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!);
    expect(refreshed.access_token).toBeTruthy();
    expect(refreshed.access_token).not.toBe(tokens.access_token);
    expect(refreshed.claims()?.sub).toBe(SUB);

    await client.tokenRevocation(config, refreshed.refresh_token ?? tokens.refresh_token!);
    // Revoking the refresh token revokes the whole grant, so its access tokens stop working too.
    await expect(client.fetchUserInfo(config, refreshed.access_token, SUB)).rejects.toThrow();
    await expect(client.refreshTokenGrant(config, tokens.refresh_token!)).rejects.toMatchObject({
      error: 'invalid_grant',
    });

    expect(idp.counts).toEqual({
      token: 3,
      tokenByGrant: { authorization_code: 1, refresh_token: 2 },
      userinfo: 2,
      revocation: 1,
    });
  });

  it('counts exactly: exchange + refresh = 2 token requests, 1 revocation', async () => {
    const { idp, config } = await setup();
    const { url, codeVerifier, state, nonce } = await authRequest(config, 'openid');
    const tokens = await client.authorizationCodeGrant(config, await idp.login(url, SUB), {
      expectedState: state,
      expectedNonce: nonce,
      pkceCodeVerifier: codeVerifier,
    });
    // scope `openid` alone still yields a refresh token for this client
    expect(tokens.refresh_token).toBeTruthy();
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!);
    await client.tokenRevocation(config, refreshed.access_token);
    expect(idp.counts).toEqual({
      token: 2,
      tokenByGrant: { authorization_code: 1, refresh_token: 1 },
      userinfo: 0,
      revocation: 1,
    });
  });

  it('deny() returns the redirect with error=access_denied (and iss, state)', async () => {
    const { idp, config } = await setup();
    const { url, state } = await authRequest(config);
    const callback = await idp.deny(url);
    expect(`${callback.origin}${callback.pathname}`).toBe(REDIRECT_URI);
    expect(callback.searchParams.get('error')).toBe('access_denied');
    expect(callback.searchParams.get('state')).toBe(state);
    expect(callback.searchParams.get('iss')).toBe(idp.issuer);
    expect(callback.searchParams.has('code')).toBe(false);
    expect(idp.counts.token).toBe(0);
  });

  it('requires PKCE: an authorization request without code_challenge is rejected', async () => {
    const { idp, config } = await setup();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT_URI,
      scope: 'openid',
      state: 'st',
    });
    const callback = await idp.login(url, SUB);
    expect(callback.searchParams.get('error')).toBe('invalid_request');
    expect(callback.searchParams.get('error_description')).toMatch(/PKCE/);
  });

  it('rejects a wrong PKCE verifier at the token endpoint', async () => {
    const { idp, config } = await setup();
    const { url, state } = await authRequest(config, 'openid');
    const callback = await idp.login(url, SUB);
    await expect(
      client.authorizationCodeGrant(config, callback, {
        expectedState: state,
        pkceCodeVerifier: client.randomPKCECodeVerifier(),
      }),
    ).rejects.toMatchObject({ error: 'invalid_grant' });
    expect(idp.counts.tokenByGrant).toEqual({ authorization_code: 1 });
  });

  it('honours custom claims, client credentials and access token TTL', async () => {
    const { idp, config } = await setup({
      clientId: 'custom-client',
      clientSecret: 'custom-secret',
      accessTokenTtlSeconds: 120,
      claims: (sub) => ({ name: `Custom ${sub}`, email: `${sub}@custom.test`, email_verified: true }),
    });
    expect(idp.clientId).toBe('custom-client');
    expect(idp.clientSecret).toBe('custom-secret');
    const { url, codeVerifier, state, nonce } = await authRequest(config);
    const tokens = await client.authorizationCodeGrant(config, await idp.login(url, 'alice'), {
      expectedState: state,
      expectedNonce: nonce,
      pkceCodeVerifier: codeVerifier,
    });
    expect(tokens.expires_in).toBe(120);
    const userinfo = await client.fetchUserInfo(config, tokens.access_token, 'alice');
    expect(userinfo).toEqual({ sub: 'alice', name: 'Custom alice', email: 'alice@custom.test', email_verified: true });
  });

  it('keeps logins independent (fresh cookie jar per call)', async () => {
    const { idp, config } = await setup();
    const a = await authRequest(config, 'openid');
    const b = await authRequest(config, 'openid');
    const [cbA, cbB] = await Promise.all([idp.login(a.url, 'user-a'), idp.login(b.url, 'user-b')]);
    const [ta, tb] = await Promise.all([
      client.authorizationCodeGrant(config, cbA, { expectedState: a.state, expectedNonce: a.nonce, pkceCodeVerifier: a.codeVerifier }),
      client.authorizationCodeGrant(config, cbB, { expectedState: b.state, expectedNonce: b.nonce, pkceCodeVerifier: b.codeVerifier }),
    ]);
    expect(ta.claims()?.sub).toBe('user-a');
    expect(tb.claims()?.sub).toBe('user-b');
  });
});
