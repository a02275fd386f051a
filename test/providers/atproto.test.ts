/**
 * ATProto against a real PDS and its OAuth authorization server, in this
 * process (test/fakes/atproto-pds.ts): linking by handle, the XRPC proxy,
 * refresh under concurrency across two instances, sealed storage and
 * revocation, and signing in to an app through the OpenID Provider. The
 * client library is not mocked; sign-in goes through the PDS's own sign-in
 * and consent API, as its web page would.
 */
import { and, eq, sql } from '../../src/db/orm.ts';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import * as client from 'openid-client';
import * as v from 'valibot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorAnswer, RelinkAnswer } from '../../src/http/openapi.ts';
import { CreatedAppAnswer } from '../../src/http/admin.ts';
import { kvAad } from '../../src/core/kv.ts';
import { openDatabase, type Database } from '../../src/db/client.ts';
import { kv, links } from '../../src/db/schema.ts';
import { authorizeInBrowserless, rejectInBrowserless, startAtprotoNetwork, type AtprotoAccount, type AtprotoNetwork } from '../fakes/atproto-pds.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, listen, type TestGateway } from '../helpers/gateway.ts';
import { authorizationRequest } from '../helpers/openid.ts';

let network: AtprotoNetwork;
let database: Database & { url: string | undefined };
let gateway: TestGateway;
let alice: AtprotoAccount;
let bob: AtprotoAccount;
const PASSWORDS = { alice: 'alice-pds-password-3141', bob: 'bob-pds-password-2718' };

const envFor = (extra: Record<string, string> = {}) => ({
  PUBLIC_BASE_URL: 'http://127.0.0.1:8000',
  // The test network (PLC, PDS) is on loopback.
  ATPROTO_ALLOW_PRIVATE_SERVERS: 'true',
  ATPROTO_PLC_DIRECTORY_URL: network.plcUrl,
  ATPROTO_HANDLE_RESOLVER_URL: network.pdsUrl,
  ...extra,
});

beforeAll(async () => {
  network = await startAtprotoNetwork();
  alice = await network.createAccount({ handle: 'alice.test', email: 'alice@example.com', password: PASSWORDS.alice });
  bob = await network.createAccount({ handle: 'bob.test', email: 'bob@example.com', password: PASSWORDS.bob });
  database = await createTestDatabase();
  gateway = await createTestGateway(database, { env: envFor() });
}, 60_000);
afterAll(async () => {
  await database?.close();
  await network?.close();
});

const stateOf = (html: string) => /name="state" value="([^"]+)"/.exec(html)?.[1];

/**
 * Walks the browser side: the link URL, the handle form, the PDS sign-in,
 * back to our callback. Returns the final page and the browser.
 */
async function link(g: TestGateway, userId: string, identifier: string, signIn: { identifier: string; password: string } | 'deny') {
  const browser = new TestBrowser((path, init) => g.app.request(path, init));
  const start = await browser.openLink(`/oauth/atproto/start?context=${await mintContext('atproto', userId)}`);
  expect(start.status).toBe(200);
  const state = stateOf(await start.text());
  expect(state).toBeDefined();
  const submitted = await browser.post('/oauth/atproto/callback', { state: state!, identifier });
  expect(submitted.status).toBe(303);
  const authorizeUrl = new URL(submitted.headers.get('location')!);
  expect(authorizeUrl.origin).toBe(network.pdsUrl);
  // PAR: the browser carries only the client id and a request_uri, never the parameters.
  expect([...authorizeUrl.searchParams.keys()].sort()).toEqual(['client_id', 'request_uri']);
  const back = signIn === 'deny' ? await rejectInBrowserless(authorizeUrl) : await authorizeInBrowserless(authorizeUrl, signIn);
  expect(back.origin).toBe('http://127.0.0.1:8000');
  const page = await browser.get(back.pathname + back.search);
  return { page, back, browser };
}

async function kvSession(did: string): Promise<{ tokenSet: { access_token: string; refresh_token: string }; dpopJwk: { d: string } }> {
  const rows = await database.db.execute<{ value: string }>(sql`select value from kv where namespace = 'atproto' and key = ${`session:${did}`}`);
  const row = (rows as unknown as { rows?: { value: string }[] }).rows?.[0] ?? (rows as unknown as { value: string }[])[0];
  return JSON.parse(gateway.keyring.open(row!.value, kvAad('atproto', `session:${did}`)));
}

async function dumpAllTables(): Promise<string> {
  const parts: string[] = [];
  for (const table of ['flows', 'used_contexts', 'links', 'kv']) {
    const result = await database.db.execute(sql.raw(`select * from ${table}`));
    parts.push(JSON.stringify((result as unknown as { rows?: unknown[] }).rows ?? result));
  }
  return parts.join('\n');
}

describe('linking an ATProto account', () => {
  it('links by handle: the link holds the DID and the handle, and the session is sealed', async () => {
    const { page } = await link(gateway, 'discord:1001', 'alice.test', { identifier: 'alice.test', password: PASSWORDS.alice });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('alice.test');

    const status = await gateway.api('/users/discord:1001/links/atproto');
    expect(status.status).toBe(200);
    expect(await status.json()).toMatchObject({ provider: 'atproto', externalId: alice.did, externalName: 'alice.test', status: 'active' });

    // The token API hands out no token for DPoP-bound sessions, only where to reach the user.
    const token = await gateway.api('/users/discord:1001/links/atproto/token', { method: 'POST' });
    expect(token.status).toBe(200);
    expect(await token.json()).toEqual({ did: alice.did, handle: 'alice.test', pdsUrl: network.pdsUrl });

    // No plaintext DPoP key or token anywhere in the database.
    const session = await kvSession(alice.did);
    const dump = await dumpAllTables();
    for (const secret of [session.tokenSet.access_token, session.tokenSet.refresh_token, session.dpopJwk.d, PASSWORDS.alice]) {
      expect(secret.length).toBeGreaterThan(10);
      expect(dump).not.toContain(secret);
    }
    expect(gateway.logs.join('\n')).not.toContain(session.tokenSet.access_token);
  });

  it('refuses, and links nothing, when the user signs in as another account than the handle they typed', async () => {
    const { page } = await link(gateway, 'discord:1002', 'alice.test', { identifier: 'bob.test', password: PASSWORDS.bob });
    expect(page.status).toBe(400);
    expect(await page.text()).toContain('You signed in as someone else');
    expect((await gateway.api('/users/discord:1002/links/atproto')).status).toBe(404);
    // The session the PDS created for bob was ended, not kept.
    expect(await network.oauthSessionCount(bob.did)).toBe(0);
  });

  it('shows a friendly page when the user denies access at their server', async () => {
    const { page, back } = await link(gateway, 'discord:1003', 'bob.test', 'deny');
    expect(back.searchParams.get('error')).toBe('access_denied');
    expect(page.status).toBe(400);
    expect(await page.text()).toContain('Linking cancelled');
    expect((await gateway.api('/users/discord:1003/links/atproto')).status).toBe(404);
  });

  it('asks again, keeping the flow, when the handle does not resolve', async () => {
    const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
    const start = await browser.openLink(`/oauth/atproto/start?context=${await mintContext('atproto', 'discord:1004')}`);
    const state = stateOf(await start.text())!;
    const again = await browser.post('/oauth/atproto/callback', { state, identifier: 'nobody.test' });
    expect(again.status).toBe(200);
    const html = await again.text();
    expect(html).toContain('We could not find that account');
    expect(html).toContain('value="nobody.test"');
    expect(stateOf(html)).toBe(state);
  });
});

describe('the XRPC proxy', () => {
  const xrpc = (g: TestGateway, userId: string, nsid: string, init?: { query?: string; body?: unknown }) =>
    g.api(`/users/${userId}/links/atproto/xrpc/${nsid}${init?.query ? `?${init.query}` : ''}`, {
      method: init?.body === undefined ? 'GET' : 'POST',
      ...(init?.body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(init.body) }),
    });

  it('writes and reads the profile record, creates a post the PDS shows, and refuses NSIDs outside the allowlist', async () => {
    const put = await xrpc(gateway, 'discord:1001', 'com.atproto.repo.putRecord', {
      body: { repo: alice.did, collection: 'app.bsky.actor.profile', rkey: 'self', record: { $type: 'app.bsky.actor.profile', displayName: 'Alice A.' } },
    });
    expect(put.status).toBe(200);
    const profile = await xrpc(gateway, 'discord:1001', 'com.atproto.repo.getRecord', {
      query: `repo=${encodeURIComponent(alice.did)}&collection=app.bsky.actor.profile&rkey=self`,
    });
    expect(profile.status).toBe(200);
    expect(await profile.json()).toMatchObject({ value: { displayName: 'Alice A.' } });

    const text = `hello from linkgate ${Date.now()}`;
    const created = await xrpc(gateway, 'discord:1001', 'com.atproto.repo.createRecord', {
      body: { repo: alice.did, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text, createdAt: new Date().toISOString() } },
    });
    expect(created.status).toBe(200);
    const { uri } = (await created.json()) as { uri: string };
    const posts = await network.listRecords(alice.did, 'app.bsky.feed.post');
    expect(posts.find((p) => p.uri === uri)?.value.text).toBe(text);

    // Upstream errors come back as the PDS gave them.
    const missing = await xrpc(gateway, 'discord:1001', 'com.atproto.repo.getRecord', { query: `repo=${encodeURIComponent(alice.did)}&collection=app.bsky.feed.post&rkey=3zzzzzzzzzzzz` });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ error: 'RecordNotFound' });

    const limited = await createTestGateway(database, { env: envFor({ ATPROTO_XRPC_ALLOW: 'com.atproto.repo.getRecord,com.atproto.repo.listRecords' }) });
    const refused = await xrpc(limited, 'discord:1001', 'com.atproto.repo.createRecord', {
      body: { repo: alice.did, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 'nope', createdAt: new Date().toISOString() } },
    });
    expect(refused.status).toBe(403);
    const refusal = await refused.json();
    expect(refusal).toMatchObject({ error: { code: 'nsid_not_allowed' } });
    // The shape /openapi.json documents for this answer.
    v.parse(ErrorAnswer, refusal);
    expect((await network.listRecords(alice.did, 'app.bsky.feed.post')).some((p) => p.value.text === 'nope')).toBe(false);
    expect((await xrpc(limited, 'discord:1001', 'com.atproto.repo.getRecord', { query: `repo=${encodeURIComponent(alice.did)}&collection=app.bsky.actor.profile&rkey=self` })).status).toBe(200);
  });

  it.each([
    ['an NSID with a path trick', 'com.atproto..repo', 400],
    ['a two-segment NSID', 'getRecord.x', 400],
  ])('answers %s with 400', async (_label, nsid, status) => {
    expect((await xrpc(gateway, 'discord:1001', nsid)).status).toBe(status);
  });

  it('answers 404 with a link URL for a user who has not linked', async () => {
    const response = await xrpc(gateway, 'discord:9999', 'com.atproto.server.getSession');
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { code: 'not_linked' }, linkUrl: expect.stringContaining('/oauth/atproto/start?context=') });
  });

  it('keeps working after the access token expires: 20 concurrent calls over two instances refresh exactly once', async () => {
    // Link carol with access tokens that expire in one second, then let refreshed ones live.
    const carol = await network.createAccount({ handle: 'carol.test', email: 'carol@example.com', password: 'carol-pds-password-1618' });
    network.setAccessTokenTtl(1000);
    const { page } = await link(gateway, 'discord:2001', 'carol.test', { identifier: 'carol.test', password: 'carol-pds-password-1618' });
    expect(page.status).toBe(200);
    network.setAccessTokenTtl(undefined);
    const before = (await kvSession(carol.did)).tokenSet;
    await new Promise((resolve) => setTimeout(resolve, 1500));

    // On PostgreSQL the second instance has its own connection pool (and in-process queue), as another process would.
    const otherDatabase = database.url ? await openDatabase({ url: database.url, maxConnections: 5 }) : database;
    const second = await createTestGateway(otherDatabase, { env: envFor() });
    const refreshesBefore = network.refreshCount();
    const attemptsBefore = network.refreshAttemptCount();
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        xrpc(i % 2 === 0 ? gateway : second, 'discord:2001', 'com.atproto.repo.describeRepo', { query: `repo=${encodeURIComponent(carol.did)}` }),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    expect(((await answers[0]!.json()) as { did: string }).did).toBe(carol.did);
    expect(network.refreshCount() - refreshesBefore).toBe(1);
    // Not one replayed refresh token reached the PDS (a replay would kill the session).
    expect(network.refreshAttemptCount() - attemptsBefore).toBe(1);
    const after = (await kvSession(carol.did)).tokenSet;
    expect(after.refresh_token).not.toBe(before.refresh_token);
    if (otherDatabase !== database) await otherDatabase.close();
  });
});

describe('unlinking', () => {
  it('revokes the session at the PDS: the link is gone and the old session no longer works upstream', async () => {
    const dave = await network.createAccount({ handle: 'dave.test', email: 'dave@example.com', password: 'dave-pds-password-1414' });
    await link(gateway, 'discord:3001', 'dave.test', { identifier: 'dave.test', password: 'dave-pds-password-1414' });
    expect(await network.oauthSessionCount(dave.did)).toBe(1);
    const [sealedSession] = await database.db.select().from(kv).where(and(eq(kv.namespace, 'atproto'), eq(kv.key, `session:${dave.did}`)));
    const [sealedLink] = await database.db.select().from(links).where(eq(links.userId, 'discord:3001'));

    const deleted = await gateway.api('/users/discord:3001/links/atproto', { method: 'DELETE' });
    expect(deleted.status).toBe(204);
    expect(await network.oauthSessionCount(dave.did)).toBe(0);
    expect((await gateway.api('/users/discord:3001/links/atproto')).status).toBe(404);
    expect((await gateway.api('/users/discord:3001/links/atproto/xrpc/com.atproto.server.getSession')).status).toBe(404);

    // Put the old rows back as they were: the PDS refuses the revoked tokens, so the link turns needs_reauth.
    await database.db.insert(kv).values(sealedSession!);
    await database.db.insert(links).values(sealedLink!);
    const refused = await gateway.api('/users/discord:3001/links/atproto/xrpc/com.atproto.server.getSession');
    expect(refused.status).toBe(409);
    const answer = await refused.json();
    expect(answer).toMatchObject({ error: { code: 'needs_reauth' }, linkUrl: expect.any(String) });
    v.parse(RelinkAnswer, answer);
    expect(await (await gateway.api('/users/discord:3001/links/atproto')).json()).toMatchObject({ status: 'needs_reauth' });
  });
});

describe('signing in to an app with Bluesky (the OpenID Provider, issue #20)', () => {
  const ADMIN_KEY = 'admin_atproto_0123456789abcdefghijklmnopqrs';
  const APP_REDIRECT = 'https://app.example/callback';
  const ISSUER = 'http://127.0.0.1:8000';

  /**
   * openid-client as the app's relying party: it knows the issuer as
   * PUBLIC_BASE_URL, reached at the test listener's port; the browser follows
   * the gateway's redirects until one leaves it (for the PDS, or the app).
   */
  async function signInWithHandle(subject: 'user' | 'external') {
    const signInGateway = await createTestGateway(database, { env: envFor({ LINKGATE_ADMIN_KEYS: ADMIN_KEY }) });
    const served = await listen(signInGateway);
    try {
      const created = await signInGateway.app.request('/api/admin/v1/tenants/default/apps', {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'Skyboard', redirectUris: [APP_REDIRECT], type: 'confidential', subject }),
      });
      const app = v.parse(CreatedAppAnswer, await created.json());
      const atListener: typeof fetch = (input, init) => fetch(String(input instanceof Request ? input.url : input).replace(ISSUER, served.base), init);
      const config = await client.discovery(new URL(ISSUER), app.clientId, undefined, client.ClientSecretBasic(app.clientSecret!), { execute: [client.allowInsecureRequests], [client.customFetch]: atListener });
      const { url: authorization, codeVerifier, state } = await authorizationRequest(config, APP_REDIRECT, { idp: 'atproto', login_hint: 'alice.test' });
      const browser = new TestBrowser((path, init) => fetch(`${served.base}${path}`, { ...init, redirect: 'manual' }));
      const leave = async (start: URL) => {
        let url = start;
        while (url.origin === ISSUER) {
          const answer = await browser.get(url, { follow: false });
          const location = answer.headers.get('location');
          if (!location) throw new Error(`expected a redirect from ${url.pathname}, got ${answer.status}: ${(await answer.text()).slice(0, 300)}`);
          url = new URL(location, url);
        }
        return url;
      };
      // Straight to alice's server: the handle came in login_hint, so no form asked for it.
      const authorize = await leave(authorization);
      expect(authorize.origin).toBe(network.pdsUrl);
      expect([...authorize.searchParams.keys()].sort()).toEqual(['client_id', 'request_uri']);
      const back = await leave(await authorizeInBrowserless(authorize, { identifier: 'alice.test', password: PASSWORDS.alice }));
      expect(back.origin + back.pathname).toBe(APP_REDIRECT);
      const tokens = await client.authorizationCodeGrant(config, back, { pkceCodeVerifier: codeVerifier, expectedState: state });
      const jwks = createLocalJWKSet((await (await fetch(`${served.base}/oidc/jwks`)).json()) as JSONWebKeySet);
      const { payload } = await jwtVerify(tokens.id_token!, jwks, { issuer: ISSUER, audience: app.clientId });
      expect(tokens.claims()?.sub).toBe(payload.sub);
      return payload;
    } finally {
      await served.close();
    }
  }

  it('takes the handle from login_hint (no handle form): external_id is the DID, and sub is the Linkgate user', async () => {
    const claims = await signInWithHandle('user');
    expect(claims).toMatchObject({ idp: 'atproto', external_id: alice.did, name: 'alice.test' });
    expect(claims.sub).not.toBe(alice.did);
    expect(await (await gateway.api(`/users/${claims.sub}/links/atproto`)).json()).toMatchObject({ externalId: alice.did, status: 'active' });
  });

  it('gives an app with subject "external" the DID as sub', async () => {
    expect(await signInWithHandle('external')).toMatchObject({ sub: alice.did, idp: 'atproto', external_id: alice.did });
  });
});
