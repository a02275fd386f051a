import { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { fileURLToPath } from 'node:url';
import { getRequestListener } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { createGateway, type AppDeps } from '../../src/app.tsx';
import { createListener, type Listener } from '../../src/http/listener.ts';
import type { RpcDeps } from '../../src/rpc/routes.ts';
import { serveRpc } from '../../src/rpc/serve.ts';
import type { LinkEvents } from '../../src/core/events.ts';
import type { LoginSessions } from '../../src/core/logins.ts';
import { parseConfig, type Config, type Env } from '../../src/config.ts';
import { createKeyring, type Keyring } from '../../src/core/crypto.ts';
import type { Metrics } from '../../src/core/metrics.ts';
import { providerToolsFactory } from '../../src/core/tools.ts';
import type { Database } from '../../src/db/client.ts';
import { createLogger } from '../../src/observability.ts';
import { loadProviders, type Registry } from '../../src/registry.ts';
import { startFakeDiscord, type FakeDiscord, type FakeDiscordUser } from '../fakes/discord.ts';

export const PROVIDERS_DIR = fileURLToPath(new URL('../../providers', import.meta.url));

/** Fixed secrets for tests; the assertions look for them in logs and tables. */
export const TEST_SECRETS = {
  OAUTH_CONTEXT_SIGNING_SECRET: 'test-context-signing-secret-0123456789abcdef',
  USERID_HASH_SALT: 'test-user-id-hash-salt-0123456789abcdefghij',
  LINKGATE_API_KEYS: 'lg_test_api_key_0123456789abcdefghijklmnop',
  LINKGATE_ENCRYPTION_KEYS: `k1:${Buffer.alloc(32, 7).toString('base64')}`,
} as const;
export const API_KEY = TEST_SECRETS.LINKGATE_API_KEYS;

/**
 * Test gateways count every request but refuse none unless a test sets its
 * own limits: app.request() has no socket, so every browser request shares
 * one address, and suites make hundreds of requests a minute.
 */
const GENEROUS_RATE_LIMITS = { LINKGATE_API_RATE_LIMIT: '1000000', LINKGATE_BROWSER_RATE_LIMIT: '1000000' } as const;

export interface TestGateway {
  app: ReturnType<typeof createGateway>['app'];
  /** The RPC services, for a listener (`listen`). */
  rpc: RpcDeps;
  /** The status API's plain requests answered beside Hono (src/http/status-path.ts), around a listener's Hono handler. */
  serveStatus: ReturnType<typeof createGateway>['serveStatus'];
  events: LinkEvents;
  /** RPC sign-ins (LoginService): their waits are counted by `logins.waiting()`. */
  logins: LoginSessions;
  config: Config;
  keyring: Keyring;
  registry: Registry;
  /** Every log line written so far, raw JSON text. */
  logs: string[];
  /** What writes them, for parts of the server a test starts beside the app. */
  logger: Logger;
  /** The app's token service, for the server's background work (the needs_reauth re-check). */
  tokens: ReturnType<typeof createGateway>['tokens'];
  api(path: string, init?: RequestInit): Promise<Response>;
}

export interface TestGatewayOptions {
  env?: Env;
  providersDir?: string;
  now?: () => number;
  /** What providers fetch with (e.g. `reroute(...)` to local fakes). */
  fetch?: typeof fetch;
  /** Shared with a webhook worker in the test. */
  metrics?: Metrics;
  /** What the server wires in from Sentry (see initSentry). */
  observe?: Pick<AppDeps, 'reportError' | 'nameRoute'>;
  /** Aborted to play the process shutting down. */
  stopping?: AbortSignal;
  rpcHeartbeatMs?: number;
}

export async function createTestGateway(database: Database, options: TestGatewayOptions = {}): Promise<TestGateway> {
  const env: Env = { NODE_ENV: 'test', LOG_LEVEL: 'debug', ...TEST_SECRETS, ...GENEROUS_RATE_LIMITS, ...options.env };
  const config = parseConfig(env);
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const logger = createLogger(config.logLevel, sink);
  const keyring = createKeyring(config.encryptionKeys);
  const now = options.now ?? Date.now;
  const toolsFor = providerToolsFactory({
    database,
    keyring,
    logger,
    publicBaseUrl: config.publicBaseUrl,
    now,
    ...(options.fetch ? { fetch: options.fetch, timeoutMs: 2000 } : {}),
    publicOnlyForTenants: config.nodeEnv === 'production',
  });
  const registry = await loadProviders(options.providersDir ?? PROVIDERS_DIR, env, toolsFor);
  const { app, rpc, events, tokens, logins, serveStatus } = createGateway({
    config,
    database,
    keyring,
    registry,
    toolsFor,
    logger,
    ...(options.metrics ? { metrics: options.metrics } : {}),
    now,
    ...options.observe,
    ...(options.stopping ? { stopping: options.stopping } : {}),
    ...(options.rpcHeartbeatMs ? { rpcHeartbeatMs: options.rpcHeartbeatMs } : {}),
  });
  return {
    app,
    rpc,
    serveStatus,
    events,
    logins,
    config,
    keyring,
    registry,
    logs,
    logger,
    tokens,
    api: async (path, init = {}) => {
      const headers = new Headers(init.headers);
      if (!headers.has('authorization')) headers.set('authorization', `Bearer ${API_KEY}`);
      return app.request(`/api/v1${path}`, { ...init, headers });
    },
  };
}

/**
 * A gateway whose Discord is the fake Discord (its app the environment's
 * DISCORD_CLIENT_ID and secret, the gateway's callback registered), reached
 * through `reroute`, with these users signed up at it.
 */
export async function createDiscordGateway(
  database: Database,
  env: Env & { DISCORD_CLIENT_ID: string; DISCORD_CLIENT_SECRET: string },
  options: { users?: FakeDiscordUser[]; now?: () => number } = {},
): Promise<{ discord: FakeDiscord; gateway: TestGateway }> {
  const discord = await startFakeDiscord({ clientId: env.DISCORD_CLIENT_ID, clientSecret: env.DISCORD_CLIENT_SECRET, redirectUris: ['http://127.0.0.1:8000/oauth/discord/callback'] });
  for (const user of options.users ?? []) discord.users.set(user.id, user);
  const gateway = await createTestGateway(database, { env, fetch: reroute({ 'https://discord.com': discord.origin }), ...(options.now ? { now: options.now } : {}) });
  return { discord, gateway };
}

/**
 * A fetch that sends requests for real provider origins to local fakes,
 * leaving the provider modules' endpoint constants untouched:
 * `reroute({ 'https://discord.com': fake.origin })`.
 */
export function reroute(map: Record<string, string>): typeof fetch {
  return (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const base = map[url.origin];
    if (!base) throw new TypeError(`test fetch: no fake for ${url.origin}`);
    const target = new URL(base.replace(/\/$/, '') + (url.pathname === '/' ? '' : url.pathname) + url.search);
    return input instanceof Request ? fetch(new Request(target, input), init) : fetch(target, init);
  };
}

/** The same authorization URL at a fake's origin: what the browser would open, served by the fake. */
export function atFake(url: URL, origin: string): URL {
  return new URL(url.pathname + url.search, origin);
}

/**
 * The gateway on a real loopback port, as src/server.ts serves it: REST and
 * the RPC services over HTTP/1.1 and HTTP/2 on one listener.
 */
export async function listen(gateway: TestGateway): Promise<{ base: string; port: number; listener: Listener; close(): Promise<void> }> {
  const listener = createListener({
    handler: serveRpc(gateway.rpc, gateway.serveStatus(getRequestListener(gateway.app.fetch))),
    http1: { headersTimeout: 10_000, requestTimeout: 30_000, connectionsCheckingInterval: 1_000, maxHeaderSize: 16 * 1024 },
    firstBytesTimeoutMs: 10_000,
    http2Settings: { maxHeaderListSize: 16 * 1024 },
    http2IdleTimeoutMs: 60_000,
  });
  await new Promise<void>((resolve) => listener.server.listen(0, '127.0.0.1', resolve));
  const { port } = listener.server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    port,
    listener,
    close: () =>
      new Promise<void>((resolve) => {
        listener.closeAll();
        listener.server.close(() => resolve());
      }),
  };
}
