/**
 * An app's side of a sign-in, as openid-client makes it: the authorization
 * request of code + PKCE (S256) with a fresh verifier and state, for the
 * tests that play an app signing a person in through the gateway.
 */
import * as client from 'openid-client';

export async function authorizationRequest(config: client.Configuration, redirectUri: string, extra: Record<string, string> = {}) {
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid profile',
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    ...extra,
  });
  return { url, codeVerifier, state };
}
