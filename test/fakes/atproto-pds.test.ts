import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NodeOAuthClient,
  requestLocalLock,
  type NodeSavedSession,
  type NodeSavedState,
} from '@atproto/oauth-client-node';

import {
  AtprotoSignInError,
  authorizeInBrowserless,
  rejectInBrowserless,
  startAtprotoNetwork,
  type AtprotoAccount,
  type AtprotoNetwork,
} from './atproto-pds.ts';

// Never called: the sign-in driver returns the redirect instead of following it.
const REDIRECT_URI = 'http://127.0.0.1:9/oauth/atproto/callback';
const SCOPE = 'atproto transition:generic';
const ALICE = { handle: 'alice.test', email: 'alice@example.test', password: 'alice-password-1' };
const BOB = { handle: 'bob.test', email: 'bob@example.test', password: 'bob-password-1' };

class MemoryStore<V> {
  readonly map = new Map<string, V>();
  async get(key: string) {
    return this.map.get(key);
  }
  async set(key: string, value: V) {
    this.map.set(key, value);
  }
  async del(key: string) {
    this.map.delete(key);
  }
}

function loopbackClient(network: AtprotoNetwork) {
  const clientId = `http://localhost?${new URLSearchParams({ redirect_uri: REDIRECT_URI, scope: SCOPE })}`;
  const sessionStore = new MemoryStore<NodeSavedSession>();
  const client = new NodeOAuthClient({
    clientMetadata: {
      client_id: clientId,
      redirect_uris: [REDIRECT_URI],
      scope: SCOPE,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      dpop_bound_access_tokens: true,
    },
    stateStore: new MemoryStore<NodeSavedState>(),
    sessionStore,
    requestLock: requestLocalLock,
    allowHttp: true,
    handleResolver: network.pdsUrl,
    plcDirectoryUrl: network.plcUrl,
  });
  return { client, sessionStore };
}

describe('test/fakes/atproto-pds', () => {
  let network: AtprotoNetwork;
  let alice: AtprotoAccount;
  let bob: AtprotoAccount;
  let startupMs: number;

  beforeAll(async () => {
    const t0 = performance.now();
    network = await startAtprotoNetwork();
    startupMs = performance.now() - t0;
    alice = await network.createAccount(ALICE);
    bob = await network.createAccount(BOB);
    console.info(
      `atproto network: start ${startupMs.toFixed(0)} ms, +2 accounts ${(performance.now() - t0 - startupMs).toFixed(0)} ms, ` +
        `rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`,
    );
  });

  afterAll(async () => {
    await network?.close();
  });

  it('serves a PDS and PLC on http://localhost, with the PDS as OAuth issuer and handle resolver', async () => {
    expect(network.pdsUrl).toMatch(/^http:\/\/localhost:\d+$/);
    expect(network.plcUrl).toMatch(/^http:\/\/localhost:\d+$/);
    expect(alice).toEqual({ did: expect.stringMatching(/^did:plc:[a-z2-7]{24}$/), handle: 'alice.test' });

    const as = await (await fetch(`${network.pdsUrl}/.well-known/oauth-authorization-server`)).json();
    expect(as).toMatchObject({
      issuer: network.pdsUrl,
      pushed_authorization_request_endpoint: `${network.pdsUrl}/oauth/par`,
      require_pushed_authorization_requests: true,
      dpop_signing_alg_values_supported: expect.arrayContaining(['ES256']),
    });
    const pr = await (await fetch(`${network.pdsUrl}/.well-known/oauth-protected-resource`)).json();
    expect(pr).toMatchObject({ resource: network.pdsUrl, authorization_servers: [network.pdsUrl] });

    const resolved = await fetch(`${network.pdsUrl}/xrpc/com.atproto.identity.resolveHandle?handle=alice.test`);
    expect(await resolved.json()).toEqual({ did: alice.did });
    const unknown = await fetch(`${network.pdsUrl}/xrpc/com.atproto.identity.resolveHandle?handle=nobody.test`);
    expect(unknown.status).toBe(400);

    // The DID document lives in the PLC and points at the PDS.
    const doc = (await (await fetch(`${network.plcUrl}/${alice.did}`)).json()) as { alsoKnownAs: string[]; service: unknown[] };
    expect(doc.alsoKnownAs).toEqual(['at://alice.test']);
    expect(doc.service).toEqual([expect.objectContaining({ id: '#atproto_pds', serviceEndpoint: network.pdsUrl })]);
  });

  it('links alice through the official client: PAR, sign-in, consent, code exchange, then an authenticated post', async () => {
    const { client } = loopbackClient(network);
    const authorizationUrl = await client.authorize('alice.test', { state: 'flow-1' });
    expect(authorizationUrl.origin).toBe(network.pdsUrl);
    expect(authorizationUrl.searchParams.get('request_uri')).toMatch(/^urn:ietf:params:oauth:request_uri:/);

    const redirect = await authorizeInBrowserless(authorizationUrl, { identifier: 'alice.test', password: ALICE.password });
    expect(`${redirect.origin}${redirect.pathname}`).toBe(REDIRECT_URI);
    expect(redirect.searchParams.get('iss')).toBe(network.pdsUrl);
    expect(redirect.searchParams.get('code')).toBeTruthy();

    const { session, state } = await client.callback(redirect.searchParams);
    expect(state).toBe('flow-1');
    expect(session.did).toBe(alice.did);
    expect(await network.oauthSessionCount(alice.did)).toBe(1);

    const created = await session.fetchHandler('/xrpc/com.atproto.repo.createRecord', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        repo: alice.did,
        collection: 'app.bsky.feed.post',
        record: { $type: 'app.bsky.feed.post', text: 'hello from linkgate', createdAt: new Date().toISOString() },
      }),
    });
    expect(created.status).toBe(200);
    const { uri } = (await created.json()) as { uri: string };
    expect(uri).toMatch(new RegExp(`^at://${alice.did}/app\\.bsky\\.feed\\.post/`));

    const posts = await network.listRecords(alice.did, 'app.bsky.feed.post');
    expect(posts).toEqual([expect.objectContaining({ uri, value: expect.objectContaining({ text: 'hello from linkgate' }) })]);
    const rkey = uri.split('/').pop() ?? '';
    expect((await network.getRecord(alice.did, 'app.bsky.feed.post', rkey))?.value.text).toBe('hello from linkgate');
    expect(await network.getRecord(alice.did, 'app.bsky.feed.post', '3zzzzzzzzzzzz')).toBeUndefined();

    // Without a token the PDS refuses the write.
    const anonymous = await fetch(`${network.pdsUrl}/xrpc/com.atproto.repo.createRecord`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ repo: alice.did, collection: 'app.bsky.feed.post', record: { text: 'x', createdAt: new Date().toISOString() } }),
    });
    expect(anonymous.status).toBe(401);

    // Revocation reaches the PDS.
    await session.signOut();
    expect(await network.oauthSessionCount(alice.did)).toBe(0);
  });

  it('short access-token TTL: the client refreshes once and refreshCount() sees it', async () => {
    const { client } = loopbackClient(network);
    network.setAccessTokenTtl(2_000);
    try {
      const url = await client.authorize('alice.test');
      const { session } = await client.callback((await authorizeInBrowserless(url, { identifier: 'alice.test', password: ALICE.password })).searchParams);

      const issued = await session.getTokenInfo(false);
      expect(issued.expiresAt!.getTime() - Date.now()).toBeLessThanOrEqual(2_000);
      const refreshesBefore = network.refreshCount();
      const attemptsBefore = network.refreshAttemptCount();

      // Tokens issued from now on are long-lived again, so the one refresh below is the only one.
      network.setAccessTokenTtl(undefined);
      await new Promise((resolve) => setTimeout(resolve, 2_100)); // the first token is now expired at the PDS too

      const read = await session.fetchHandler(`/xrpc/com.atproto.repo.describeRepo?repo=${alice.did}`);
      expect(read.status).toBe(200);
      expect(network.refreshCount() - refreshesBefore).toBe(1);
      expect(network.refreshAttemptCount() - attemptsBefore).toBe(1);
      const refreshed = await session.getTokenInfo(false);
      expect(refreshed.expiresAt!.getTime() - Date.now()).toBeGreaterThan(50 * 60 * 1000);

      const again = await session.fetchHandler(`/xrpc/com.atproto.repo.describeRepo?repo=${alice.did}`);
      expect(again.status).toBe(200);
      expect(network.refreshCount() - refreshesBefore).toBe(1);
      await session.signOut();
    } finally {
      network.setAccessTokenTtl(undefined);
    }
  });

  it('while the TTL stays under the client\'s 10–40 s staleness margin, every use refreshes again', async () => {
    const { client } = loopbackClient(network);
    network.setAccessTokenTtl(5_000);
    try {
      const url = await client.authorize('alice.test');
      const { session } = await client.callback((await authorizeInBrowserless(url, { identifier: 'alice.test', password: ALICE.password })).searchParams);
      const before = network.refreshCount();
      for (let i = 0; i < 2; i++) {
        const read = await session.fetchHandler(`/xrpc/com.atproto.repo.describeRepo?repo=${alice.did}`);
        expect(read.status).toBe(200);
      }
      expect(network.refreshCount() - before).toBe(2);
      await session.signOut();
    } finally {
      network.setAccessTokenTtl(undefined);
    }
  });

  it('a replayed refresh token is refused and counted as an attempt, not a refresh', async () => {
    const { client, sessionStore } = loopbackClient(network);
    network.setAccessTokenTtl(2_000);
    try {
      const url = await client.authorize('alice.test');
      const { session } = await client.callback((await authorizeInBrowserless(url, { identifier: 'alice.test', password: ALICE.password })).searchParams);
      const stale = structuredClone(sessionStore.map.get(alice.did));
      const before = { refreshes: network.refreshCount(), attempts: network.refreshAttemptCount() };

      await session.getTokenInfo(true); // refresh #1 consumes the refresh token
      expect(network.refreshCount() - before.refreshes).toBe(1);

      // Put the consumed refresh token back, as a second instance without a lock would hold it.
      sessionStore.map.set(alice.did, stale!);
      await expect(client.restore(alice.did, true)).rejects.toThrow();
      expect(network.refreshCount() - before.refreshes).toBe(1);
      expect(network.refreshAttemptCount() - before.attempts).toBe(2);
      // The replay kills the whole token family at the PDS.
      expect(await network.oauthSessionCount(alice.did)).toBe(0);
    } finally {
      network.setAccessTokenTtl(undefined);
    }
  });

  it('signing in as another account than the login_hint yields that account (the client does not compare)', async () => {
    const { client } = loopbackClient(network);
    const url = await client.authorize('alice.test');
    expect(url.searchParams.get('request_uri')).toBeTruthy();
    const redirect = await authorizeInBrowserless(url, { identifier: 'bob.test', password: BOB.password });
    const { session } = await client.callback(redirect.searchParams);
    expect(session.did).toBe(bob.did);
    expect(session.did).not.toBe(alice.did);
    await session.signOut();
  });

  it('a wrong password fails with a clear sign-in error; each call is a fresh browser, so a retry needs a new request', async () => {
    const { client } = loopbackClient(network);
    const url = await client.authorize('alice.test');
    const error = await authorizeInBrowserless(url, { identifier: 'alice.test', password: 'not-her-password' }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(AtprotoSignInError);
    expect(error).toMatchObject({
      code: 'ERR_SIGN_IN_REFUSED',
      status: 400,
      cause: { error: 'invalid_request', error_description: 'Invalid identifier or password' },
    });
    expect((error as Error).message).toBe(
      'the PDS refused the sign-in as alice.test (400 invalid_request): Invalid identifier or password',
    );
    expect((error as Error).message).not.toContain('not-her-password');

    // The request is bound to the device (cookies) that opened it; another browser is turned away.
    const otherBrowser = await authorizeInBrowserless(url, { identifier: 'alice.test', password: ALICE.password });
    expect(otherBrowser.searchParams.get('error')).toBe('access_denied');
    expect(otherBrowser.searchParams.get('error_description')).toBe('This request was initiated from another device');

    const again = await client.authorize('alice.test');
    const { session } = await client.callback((await authorizeInBrowserless(again, { identifier: 'alice.test', password: ALICE.password })).searchParams);
    expect(session.did).toBe(alice.did);
    await session.signOut();
  });

  it('rejecting on the authorization page redirects with access_denied', async () => {
    const { client } = loopbackClient(network);
    const url = await client.authorize('alice.test', { state: 'flow-deny' });
    const redirect = await rejectInBrowserless(url);
    expect(`${redirect.origin}${redirect.pathname}`).toBe(REDIRECT_URI);
    expect(redirect.searchParams.get('error')).toBe('access_denied');
    await expect(client.callback(redirect.searchParams)).rejects.toMatchObject({ state: 'flow-deny' });
  });

  it('close() stops both services and removes the data directory', async () => {
    const dataDirs = async () => (await readdir(tmpdir())).filter((name) => name.startsWith('linkgate-pds-'));
    const before = new Set(await dataDirs());
    const other = await startAtprotoNetwork({ accessTokenTtlMs: 3_000 });
    const created = (await dataDirs()).filter((name) => !before.has(name));
    expect(created).toHaveLength(1);
    expect((await fetch(`${other.pdsUrl}/xrpc/_health`)).status).toBe(200);

    await other.close();
    expect(await dataDirs()).not.toContain(created[0]);
    await expect(fetch(`${other.pdsUrl}/xrpc/_health`)).rejects.toThrow();
    await expect(fetch(`${other.plcUrl}/_health`)).rejects.toThrow();
    await other.close(); // idempotent
  });
});
