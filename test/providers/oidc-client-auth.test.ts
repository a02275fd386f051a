/**
 * The generic OpenID Connect provider against real OpenID providers
 * (oidc-provider, in process) that differ from the default one: one that
 * takes only client_secret_post at its token endpoint, one whose client is
 * registered for client_secret_post while it lists client_secret_basic too
 * (as providers do that mis-decode a Basic secret), one for private_key_jwt,
 * one taking nothing this client can do, and one without a revocation
 * endpoint. The secrets hold every character RFC 6749 §2.3.1's form encoding
 * treats specially in Basic credentials (`-_.!~*'()`).
 */
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { startTestIdp, type StartTestIdpOptions, type TestIdp } from '../fakes/oidc-idp.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';

const BASE = 'http://127.0.0.1:8000';
const AWKWARD_SECRET = "post-only-secret-_.!~*'()-0123456789";

let database: Database;
const idps: TestIdp[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  for (const idp of idps) await idp.close();
  await database?.close();
});

async function idpFor(id: string, options: Omit<StartTestIdpOptions, 'redirectUris'>): Promise<TestIdp> {
  const idp = await startTestIdp({ redirectUris: [`${BASE}/oauth/${id}/callback`], clientId: 'linkgate', accessTokenTtlSeconds: 30, ...options });
  idps.push(idp);
  return idp;
}

/** A gateway with one OIDC provider `id` on `idp`; `extra` are its further variables, without the prefix. */
function gatewayFor(id: string, idp: TestIdp, extra: Record<string, string>): Promise<TestGateway> {
  const prefix = id.toUpperCase();
  return createTestGateway(database, {
    env: {
      OIDC_PROVIDERS: id,
      [`${prefix}_ISSUER`]: idp.issuer,
      [`${prefix}_CLIENT_ID`]: 'linkgate',
      ...Object.fromEntries(Object.entries(extra).map(([name, value]) => [`${prefix}_${name}`, value])),
    },
  });
}

/** The whole sign-in through the IdP, as a person does it; the page it ends on. */
async function signIn(gateway: TestGateway, idp: TestIdp, provider: string, userId: string, sub: string): Promise<Response> {
  const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
  const started = await browser.openLink(`/oauth/${provider}/start?context=${await mintContext(provider, userId)}`);
  if (started.status !== 303) return started;
  return browser.get(await idp.login(started.headers.get('location')!, sub));
}

const loggedMethod = (gateway: TestGateway) =>
  gateway.logs.map((line) => JSON.parse(line) as { msg: string; method?: string }).find((line) => line.msg === 'token endpoint authentication chosen')?.method;

describe('client authentication at the token endpoint', () => {
  it("uses client_secret_post with a provider that lists only that, secret with -_.!~*'() included: sign-in, refresh and revocation", async () => {
    const idp = await idpFor('postonly', { clientSecret: AWKWARD_SECRET, tokenEndpointAuthMethod: 'client_secret_post', clientAuthMethods: ['client_secret_post'] });
    const discovery = (await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as { token_endpoint_auth_methods_supported: string[] };
    expect(discovery.token_endpoint_auth_methods_supported).toEqual(['client_secret_post']);
    const gateway = await gatewayFor('postonly', idp, { CLIENT_SECRET: AWKWARD_SECRET });

    const linked = await signIn(gateway, idp, 'postonly', 'u-post', 'post-user');
    expect(linked.status).toBe(200);
    expect(await linked.text()).toContain('Account linked');
    expect(loggedMethod(gateway)).toBe('client_secret_post');
    expect(idp.counts.tokenByGrant).toEqual({ authorization_code: 1 });

    // The 30-second access token is due: the token API refreshes it, authenticating the same way.
    const token = await gateway.api('/users/u-post/links/postonly/token', { method: 'POST' });
    expect(token.status).toBe(200);
    expect(idp.counts.tokenByGrant).toEqual({ authorization_code: 1, refresh_token: 1 });

    const unlinked = await gateway.api('/users/u-post/links/postonly', { method: 'DELETE' });
    expect(unlinked.status).toBe(204);
    expect(unlinked.headers.get('linkgate-revocation')).toBe('revoked');
    expect(idp.counts.revocation).toBe(2);
  });

  it('uses <ID>_TOKEN_AUTH_METHOD over what the provider lists (client_secret_post where Basic is listed but fails)', async () => {
    // Every method listed, but a Basic secret is compared without form-decoding it, so Basic (the default choice) fails.
    const idp = await idpFor('override', { clientSecret: AWKWARD_SECRET, tokenEndpointAuthMethod: 'client_secret_post', undecodedBasicSecrets: true });
    const chosen = await gatewayFor('override', idp, { CLIENT_SECRET: AWKWARD_SECRET });
    const refused = await signIn(chosen, idp, 'override', 'u-override-a', 'override-user');
    expect(refused.status).toBe(400);
    expect(await refused.text()).toContain('refused to finish the sign-in');
    expect(loggedMethod(chosen)).toBe('client_secret_basic');

    const configured = await gatewayFor('override', idp, { CLIENT_SECRET: AWKWARD_SECRET, TOKEN_AUTH_METHOD: 'client_secret_post' });
    const linked = await signIn(configured, idp, 'override', 'u-override-b', 'override-user');
    expect(linked.status).toBe(200);
    expect(loggedMethod(configured)).toBe('client_secret_post');
    expect(await (await configured.api('/users/u-override-b/links/override')).json()).toMatchObject({ externalId: 'override-user', status: 'active' });
  });

  it('signs a private_key_jwt assertion with the configured key, and needs no secret', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const publicJwk = { ...(await exportJWK(publicKey)), kid: 'linkgate-k1', alg: 'ES256', use: 'sig' };
    const privateJwk = { ...(await exportJWK(privateKey)), kid: 'linkgate-k1' };
    const idp = await idpFor('keyed', { tokenEndpointAuthMethod: 'private_key_jwt', clientJwks: { keys: [publicJwk] } });
    const gateway = await gatewayFor('keyed', idp, { TOKEN_AUTH_METHOD: 'private_key_jwt', PRIVATE_KEY: JSON.stringify(privateJwk) });

    const linked = await signIn(gateway, idp, 'keyed', 'u-keyed', 'keyed-user');
    expect(linked.status).toBe(200);
    expect(await linked.text()).toContain('Account linked');
    expect(loggedMethod(gateway)).toBe('private_key_jwt');
    expect((await gateway.api('/users/u-keyed/links/keyed/token', { method: 'POST' })).status).toBe(200);
    expect(idp.counts.tokenByGrant).toEqual({ authorization_code: 1, refresh_token: 1 });
    // The private key is configuration, never in a log line.
    expect(gateway.logs.join('\n')).not.toContain(String(privateJwk.d));
  });

  it('says which variable to set when the provider takes none of the methods this client has, and links nothing', async () => {
    const { publicKey } = await generateKeyPair('ES256', { extractable: true });
    const idp = await idpFor('strict', {
      tokenEndpointAuthMethod: 'private_key_jwt',
      clientJwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'k', alg: 'ES256', use: 'sig' }] },
      clientAuthMethods: ['private_key_jwt'],
    });
    const gateway = await gatewayFor('strict', idp, { CLIENT_SECRET: 'strict-secret-0123456789' });
    const page = await signIn(gateway, idp, 'strict', 'u-strict', 'strict-user');
    expect(page.status).toBe(503);
    expect(await page.text()).toContain('provider_unconfigured');
    const logged = gateway.logs.map((line) => JSON.parse(line) as { msg: string; message?: string }).find((line) => line.msg === 'request failed');
    expect(logged?.message).toBe('the provider takes none of client_secret_basic and client_secret_post at its token endpoint (it lists private_key_jwt); set STRICT_TOKEN_AUTH_METHOD');
    expect(idp.counts.token).toBe(0);
    expect((await gateway.api('/users/u-strict/links/strict')).status).toBe(404);
  });

  it.each<[Record<string, string>, RegExp]>([
    [{ CORP_TOKEN_AUTH_METHOD: 'client_secret_jwt', CORP_CLIENT_SECRET: 's' }, /^CORP_TOKEN_AUTH_METHOD: must be client_secret_basic, client_secret_post or private_key_jwt/],
    [{ CORP_TOKEN_AUTH_METHOD: 'client_secret_post' }, /^CORP_TOKEN_AUTH_METHOD: needs CORP_CLIENT_SECRET/],
    [{ CORP_TOKEN_AUTH_METHOD: 'private_key_jwt' }, /^CORP_TOKEN_AUTH_METHOD: needs CORP_PRIVATE_KEY \(a private JWK\)/],
    [{ CORP_TOKEN_AUTH_METHOD: 'private_key_jwt', CORP_PRIVATE_KEY: 'not json' }, /^CORP_PRIVATE_KEY: must be a private JWK as JSON/],
    [{ CORP_TOKEN_AUTH_METHOD: 'private_key_jwt', CORP_PRIVATE_KEY: '{"kty":"EC","crv":"P-256","x":"a","y":"b"}' }, /^CORP_PRIVATE_KEY\.d: a value is missing/],
  ])('stops start-up on a bad client authentication setting: %o', async (extra, message) => {
    const attempt = createTestGateway(database, { env: { OIDC_PROVIDERS: 'corp', CORP_ISSUER: 'https://idp.example', CORP_CLIENT_ID: 'linkgate', ...extra } });
    await expect(attempt).rejects.toThrow(message);
  });
});

describe('unlinking at a provider without a revocation endpoint', () => {
  it('reports not_supported, not revoked: in the answer and in the log', async () => {
    const idp = await idpFor('norevoke', { clientSecret: 'norevoke-secret-0123456789', revocation: false });
    const discovery = (await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(discovery.revocation_endpoint).toBeUndefined();
    const gateway = await gatewayFor('norevoke', idp, { CLIENT_SECRET: 'norevoke-secret-0123456789' });
    expect((await signIn(gateway, idp, 'norevoke', 'u-norevoke', 'norevoke-user')).status).toBe(200);

    const unlinked = await gateway.api('/users/u-norevoke/links/norevoke', { method: 'DELETE' });
    expect(unlinked.status).toBe(204);
    expect(unlinked.headers.get('linkgate-revocation')).toBe('not_supported');
    const deleted = gateway.logs.map((line) => JSON.parse(line) as { msg: string; revocation?: string }).find((line) => line.msg === 'link deleted');
    expect(deleted?.revocation).toBe('not_supported');
    expect(idp.counts.revocation).toBe(0);
    expect((await gateway.api('/users/u-norevoke/links/norevoke')).status).toBe(404);
  });
});
