/**
 * ATProto client metadata and configuration, without a network: the
 * documents the gateway publishes, checked with the client library's own
 * validation, in loopback (development) and production modes.
 */
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import {
  NodeOAuthClient,
  oauthClientMetadataSchema,
  parseAtprotoLoopbackClientId,
  type OAuthClientMetadataInput,
} from '@atproto/oauth-client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { xrpcAllowed } from '../../providers/atproto.ts';
import type { Database } from '../../src/db/client.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestGateway } from '../helpers/gateway.ts';

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});

function privateJwk(kid: string) {
  const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return { ...jwk, kid };
}

/** A client built from the document the way any ATProto client would be: it validates the metadata against its keyset. */
function clientFrom(metadata: OAuthClientMetadataInput, keyset?: unknown) {
  const memory = () => {
    const map = new Map<string, never>();
    return { get: async (k: string) => map.get(k), set: async (k: string, v: never) => void map.set(k, v), del: async (k: string) => void map.delete(k) };
  };
  return new NodeOAuthClient({ clientMetadata: metadata, ...(keyset ? { keyset } : {}), stateStore: memory(), sessionStore: memory() } as never);
}

describe('ATProto client metadata', () => {
  it('in development (loopback PUBLIC_BASE_URL) is a loopback client the library accepts, redirecting to 127.0.0.1', async () => {
    const gateway = await createTestGateway(database, { env: { PUBLIC_BASE_URL: 'http://127.0.0.1:8123' } });
    const response = await gateway.app.request('/oauth/atproto/client-metadata.json');
    expect(response.status).toBe(200);
    const metadata = (await response.json()) as OAuthClientMetadataInput & { client_id: string };
    const parsed = oauthClientMetadataSchema.parse(metadata);
    expect(parsed.token_endpoint_auth_method).toBe('none');
    expect(parsed.dpop_bound_access_tokens).toBe(true);
    const params = parseAtprotoLoopbackClientId(metadata.client_id);
    expect(params.redirect_uris).toEqual(['http://127.0.0.1:8123/oauth/atproto/callback']);
    expect(params.scope.split(' ')).toEqual(['atproto', 'transition:generic']);
    expect(() => clientFrom(metadata)).not.toThrow();
    expect(clientFrom(metadata).clientMetadata.client_id).toBe(metadata.client_id);
    // No keys in this mode.
    expect(await (await gateway.app.request('/oauth/atproto/jwks.json')).json()).toEqual({ keys: [] });
  });

  it('in production is a confidential client using private_key_jwt, with only public keys published', async () => {
    const keys = [privateJwk('2026-11'), privateJwk('2026-05')];
    const gateway = await createTestGateway(database, {
      env: {
        PUBLIC_BASE_URL: 'https://links.example.com',
        ATPROTO_PRIVATE_KEYS: JSON.stringify(keys),
        ATPROTO_SCOPE: 'transition:generic transition:chat.bsky',
        ATPROTO_CLIENT_NAME: 'Example Bot',
      },
    });
    const metadata = (await (await gateway.app.request('/oauth/atproto/client-metadata.json')).json()) as Record<string, unknown>;
    expect(metadata).toMatchObject({
      client_id: 'https://links.example.com/oauth/atproto/client-metadata.json',
      client_name: 'Example Bot',
      redirect_uris: ['https://links.example.com/oauth/atproto/callback'],
      scope: 'atproto transition:generic transition:chat.bsky',
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      jwks_uri: 'https://links.example.com/oauth/atproto/jwks.json',
      dpop_bound_access_tokens: true,
      application_type: 'web',
    });
    oauthClientMetadataSchema.parse(metadata);

    const jwks = (await (await gateway.app.request('/oauth/atproto/jwks.json')).json()) as { keys: Array<Record<string, unknown>> };
    // Both keys stay published: sessions created with the older one still refresh with it.
    expect(jwks.keys.map((k) => k.kid)).toEqual(['2026-11', '2026-05']);
    for (const key of jwks.keys) {
      expect(key).not.toHaveProperty('d');
      expect(key).toMatchObject({ kty: 'EC', crv: 'P-256' });
    }
    const text = JSON.stringify(jwks);
    for (const key of keys) expect(text).not.toContain(key.d!);

    // The library accepts the document with these keys (it checks the auth method against the keyset).
    const { JoseKey } = await import('@atproto/oauth-client-node');
    const keyset = await Promise.all(keys.map((k) => JoseKey.fromImportable(k as never, k.kid)));
    expect(clientFrom(metadata as OAuthClientMetadataInput, keyset as never).clientMetadata.client_id).toBe(metadata.client_id);
  });

  it('in production without keys is listed as unconfigured, naming ATPROTO_PRIVATE_KEYS, and start-up goes on', async () => {
    const gateway = await createTestGateway(database, { env: { PUBLIC_BASE_URL: 'https://links.example.com' } });
    expect(gateway.registry.get('atproto')).toMatchObject({ instance: undefined, missing: ['ATPROTO_PRIVATE_KEYS'] });
    const page = await gateway.app.request('/oauth/atproto/client-metadata.json');
    expect(page.status).toBe(503);
  });

  it.each([
    ['not JSON', 'k1:abc', /JSON array of private JWKs/],
    ['a public key', JSON.stringify([{ ...privateJwk('a'), d: undefined }]), /^ATPROTO_PRIVATE_KEYS\.0\.d: /],
    ['a key without kid', JSON.stringify([{ ...privateJwk('a'), kid: undefined }]), /kid/],
    ['two keys with one kid', JSON.stringify([privateJwk('same'), privateJwk('same')]), /its own "kid"/],
  ])('stops start-up on ATPROTO_PRIVATE_KEYS that is %s, naming the variable and never echoing it', async (_label, value, message) => {
    const failure = await createTestGateway(database, { env: { PUBLIC_BASE_URL: 'https://links.example.com', ATPROTO_PRIVATE_KEYS: value } }).then(
      () => undefined,
      (error: Error) => error,
    );
    expect(failure?.message).toMatch(/^ATPROTO_PRIVATE_KEYS/);
    expect(failure?.message).toMatch(message);
    expect(failure?.message).not.toContain(value);
  });
});

describe('ATPROTO_XRPC_ALLOW', () => {
  it.each([
    [['*'], 'com.atproto.repo.createRecord', true],
    [['app.bsky.actor.getProfile'], 'app.bsky.actor.getProfile', true],
    [['app.bsky.actor.getProfile'], 'app.bsky.actor.getProfiles', false],
    [['app.bsky.feed.*'], 'app.bsky.feed.getTimeline', true],
    [['app.bsky.feed.*'], 'app.bsky.feedx.getTimeline', false],
    [['com.atproto.repo.*'], 'com.atproto.server.deleteAccount', false],
  ])('%j allows %s: %s', (allow, nsid, expected) => {
    expect(xrpcAllowed(allow, nsid)).toBe(expected);
  });
});

describe('ATProto refuses private addresses unless ATPROTO_ALLOW_PRIVATE_SERVERS is set, which production refuses', () => {
  // Counts TCP connections: whatever the scheme, the guard must refuse before connecting.
  let contacted = 0;
  let server: ReturnType<typeof createNetServer>;
  let port: number;
  beforeAll(async () => {
    server = createNetServer((socket) => {
      contacted += 1;
      socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise((resolve) => server.close(resolve)));

  /** Types a PDS address on a private (loopback) address into the handle form: the page that comes back. */
  async function typePrivateServer(env: Record<string, string>, scheme: 'http' | 'https'): Promise<Response> {
    const gateway = await createTestGateway(database, { env });
    const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
    const start = await browser.openLink(`/oauth/atproto/start?context=${await mintContext('atproto', 'discord:77')}`);
    const state = /name="state" value="([^"]+)"/.exec(await start.text())![1]!;
    return browser.post('/oauth/atproto/callback', { state, identifier: `${scheme}://127.0.0.1:${port}` });
  }

  it.each<[string, Record<string, string>]>([
    ['an https PUBLIC_BASE_URL', { PUBLIC_BASE_URL: 'https://links.example.com', ATPROTO_PRIVATE_KEYS: JSON.stringify([privateJwk('k1')]) }],
    ['a loopback PUBLIC_BASE_URL in development', { PUBLIC_BASE_URL: 'http://127.0.0.1:8000' }],
    // compose.yaml's try-out: the image's NODE_ENV=production with PUBLIC_BASE_URL http://localhost:8000.
    ['a loopback PUBLIC_BASE_URL in production', { NODE_ENV: 'production', PUBLIC_BASE_URL: 'http://localhost:8000' }],
  ])('with %s, does not contact a server on a private address typed as the PDS, and asks again', async (_name, env) => {
    const before = contacted;
    for (const scheme of ['http', 'https'] as const) {
      const again = await typePrivateServer(env, scheme);
      expect(again.status).toBe(200);
      expect(await again.text()).toContain('We could not reach a Bluesky-compatible server at that address');
    }
    expect(contacted).toBe(before);
  });

  it('contacts it with ATPROTO_ALLOW_PRIVATE_SERVERS=true outside production (a development network)', async () => {
    const before = contacted;
    const page = await typePrivateServer({ PUBLIC_BASE_URL: 'http://127.0.0.1:8000', ATPROTO_ALLOW_PRIVATE_SERVERS: 'true' }, 'http');
    expect(await page.text()).toContain('We could not reach a Bluesky-compatible server at that address');
    expect(contacted).toBeGreaterThan(before);
  });

  it('compose.yaml publishes its plain-http try-out on loopback only, and allows no private servers', () => {
    const compose = readFileSync(fileURLToPath(new URL('../../compose.yaml', import.meta.url)), 'utf8');
    expect(compose).toContain('PUBLIC_BASE_URL: ${PUBLIC_BASE_URL:-http://localhost:8000}');
    const ports = compose.match(/^\s+- "([^"]+)"$/gm)?.map((line) => line.trim()) ?? [];
    expect(ports).toEqual(['- "${LINKGATE_PUBLISH:-127.0.0.1:8000}:8000"']);
    expect(compose).not.toMatch(/ALLOW_PRIVATE_SERVERS/);
  });

  it('stops start-up on ATPROTO_ALLOW_PRIVATE_SERVERS=true in production, whatever PUBLIC_BASE_URL is', async () => {
    for (const base of ['http://localhost:8000', 'https://links.example.com']) {
      const attempt = createTestGateway(database, { env: { NODE_ENV: 'production', PUBLIC_BASE_URL: base, ATPROTO_ALLOW_PRIVATE_SERVERS: 'true' } });
      await expect(attempt).rejects.toThrow(/^ATPROTO_ALLOW_PRIVATE_SERVERS: must not be true in production/);
    }
  });
});
