/**
 * Process entry: configuration → database → migrations → providers → HTTP.
 * The only module that touches `process`.
 */
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { getRequestListener } from '@hono/node-server';
import { createGateway } from './app.tsx';
import { createNamedLock } from './core/named-lock.ts';
import { createReauthRecheck } from './core/reauth-recheck.ts';
import { startupBanner } from './banner.ts';
import { ConfigError, parseConfig, providersDirOf, withDevelopmentSecrets, withDotEnv, type Config, type Env } from './config.ts';
import { AnnieMeiError, countViewUnlinks, removeViews, takeOver } from './compat/annie-mei/database.ts';
import { createKeyring, createUserIdHasher } from './core/crypto.ts';
import { DEFAULT_TENANT } from './core/ids.ts';
import { reconcileAccountIds } from './core/account-ids.ts';
import { purgeExpired } from './core/purge.ts';
import { providerToolsFactory } from './core/tools.ts';
import { createTenantStore } from './core/tenants.ts';
import { createWebhookWorker, WEBHOOK_DEFAULTS } from './core/webhooks.ts';
import { createMetrics } from './core/metrics.ts';
import { openDatabase } from './db/client.ts';
import { logCause } from './db/errors.ts';
import { announceGateway, isProcessAlive, lockDataDir } from './db/lock.ts';
import { createListener } from './http/listener.ts';
import { keepTickRecord, releaseStartupMemory } from './memory.ts';
import { createLogger, initSentry } from './observability.ts';
import { ProviderLoadError, describeNeeds, loadProviders, providerVariableProblems } from './registry.ts';
import { serveRpc } from './rpc/serve.ts';

const PURGE_EVERY_MS = 60_000;
/** How long after it listens the gateway gives back what its start-up allocated (releaseStartupMemory). */
const RELEASE_STARTUP_MEMORY_AFTER_MS = 1000;

const SHUTDOWN_GRACE_MS = 10_000;

/**
 * Node's HTTP server limits, chosen rather than inherited (docs/operating.md: "HTTP
 * limits"). A client has 10 s to send its request line and headers and 30 s
 * for the whole request (bodies are at most 64 KiB; a long poll's wait is the
 * answer, not the request), checked every second so a slow client is cut off
 * close to those times, not up to 30 s later; headers are at most 16 KiB (a
 * link URL with its context is under 5), larger ones are answered 431.
 */
const HTTP_LIMITS = {
  headersTimeout: 10_000,
  requestTimeout: 30_000,
  connectionsCheckingInterval: 1_000,
  maxHeaderSize: 16 * 1024,
} as const;

/**
 * The same for HTTP/2 connections (gRPC, and REST over h2c; src/http/listener.ts):
 * 10 s to send the connection preface, as for HTTP/1.1 headers; header
 * lists of at most 16 KiB; at most 1000 streams at once on one connection
 * (waits included); a connection with nothing going on for a minute is
 * closed with a GOAWAY (a waiting stream's heartbeats keep it going).
 */
const HTTP2_LIMITS = {
  settings: { maxHeaderListSize: 16 * 1024, maxConcurrentStreams: 1000 },
  idleTimeoutMs: 60_000,
} as const;

/** package.json `engines`: the ATProto client needs Node 22.12 or newer; npm only warns about it. */
function checkNodeVersion(): void {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  if (major < 22 || (major === 22 && minor < 12)) {
    throw new ConfigError(`Node.js ${process.versions.node} is too old: Linkgate needs 22.12 or newer (the current LTS, 24, is best)`);
  }
}

/**
 * The configuration, or one error listing every problem in it, the
 * providers' bad variables included (those are checked again, with the
 * rest of the providers, once the database is open).
 */
async function parseConfigWithProviders(env: Env): Promise<Config> {
  try {
    return parseConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const more = await providerVariableProblems(providersDirOf(env), env).catch(() => []);
    throw new ConfigError([...error.problems, ...more]);
  }
}

async function main(): Promise<void> {
  checkNodeVersion();
  // The working directory's .env (as the services Linkgate replaces read theirs), under the real environment.
  const { env, generated, filled, file } = withDevelopmentSecrets(withDotEnv(process.env, process.cwd()));
  const config = await parseConfigWithProviders(env);
  const logger = createLogger(config.logLevel, undefined, config.logFormat, process.stdout.isTTY === true);
  for (const warning of config.warnings) logger.warn(warning);
  if (generated.length > 0) {
    logger.warn({ generated, file }, 'generated development secrets (the API key is in that file); set them yourself in production');
  }
  const observer = await initSentry(config);
  // A fault nothing handles (a throw outside every promise, a rejection nobody
  // awaits: a bug, ours or a library's) ends the process, as Node's default
  // does, but as a line of the log's own format (never a raw stack trace on
  // stderr), reported to Sentry before it goes. The supervisor restarts it.
  let failing = false;
  const fatal = (what: string) => (error: unknown) => {
    if (failing) return;
    failing = true;
    logger.fatal({ cause: logCause(error) }, what);
    if (!observer) process.exit(1);
    observer.reportFatal(error);
    void observer.flush(2000).finally(() => process.exit(1));
  };
  process.on('uncaughtException', fatal('uncaught exception'));
  process.on('unhandledRejection', fatal('unhandled rejection'));

  const unlock = config.databaseUrl ? undefined : lockDataDir(config.dataDir, process.pid, isProcessAlive);
  const database = await openDatabase({ url: config.databaseUrl, dataDir: join(config.dataDir, 'pgdata') });
  await database.migrate();

  const keyring = createKeyring(config.encryptionKeys);
  const toolsFor = providerToolsFactory({ database, keyring, logger, publicBaseUrl: config.publicBaseUrl, timeoutMs: config.providerTimeoutMs, publicOnlyForTenants: config.nodeEnv === 'production' });
  const registry = await loadProviders(config.providersDir, env, toolsFor);
  // Before serving: links made before a provider changed its account ids are keyed like new ones.
  await reconcileAccountIds({ db: database.db, keyring, registry, logger, webhookEvents: config.webhook !== undefined });
  const metrics = config.metrics ? createMetrics() : undefined;
  // The Annie Mei bot reads links from annie_auth.* on PostgreSQL: take its old service's tables over, or keep the views.
  if (database.kind === 'postgres' && registry.get('anilist')?.instance) {
    const hashUserId = createUserIdHasher(config.userIdHashSalt);
    const annieMei = { db: database.db, keyring, logger, fingerprint: (userId: string) => hashUserId(DEFAULT_TENANT, userId), now: Date.now };
    if (config.annieMeiCompat) {
      await takeOver(annieMei, { webhooks: config.webhook !== undefined });
      if (metrics) await countViewUnlinks(database, metrics);
    } else {
      await removeViews(database.db);
    }
  }
  const shuttingDown = new AbortController();
  let stopping = false;
  const tenants = createTenantStore({
    database,
    keyring,
    environment: { apiKeys: config.apiKeys, contextSigningSecret: config.contextSigningSecret, webhook: config.webhook && { url: config.webhook.url, secret: config.webhook.secret } },
  });
  const { app, rpc, limiter, tokensServed, tokens, serveStatus } = createGateway({
    config,
    database,
    keyring,
    registry,
    tenants,
    toolsFor,
    logger,
    stopping: shuttingDown.signal,
    ...(metrics ? { metrics } : {}),
    ...(observer ? { reportError: observer.reportError, nameRoute: observer.nameRoute } : {}),
  });

  // One port: REST and pages (Hono) and the RPC services, over HTTP/1.1 and HTTP/2 alike.
  const listener = createListener({
    handler: serveRpc(rpc, serveStatus(getRequestListener(app.fetch, { hostname: config.host }))),
    http1: HTTP_LIMITS,
    firstBytesTimeoutMs: HTTP_LIMITS.headersTimeout,
    http2Settings: HTTP2_LIMITS.settings,
    http2IdleTimeoutMs: HTTP2_LIMITS.idleTimeoutMs,
  });
  const server = listener.server;
  let unannounce: (() => void) | undefined;
  server.listen(config.port, config.host, () => {
    const info = server.address() as AddressInfo;
    // Listening on every interface: this machine reaches it on loopback.
    const address = info.address === '0.0.0.0' ? '127.0.0.1' : info.address === '::' ? '::1' : info.address;
    const local = `http://${address.includes(':') ? `[${address}]` : address}:${info.port}`;
    // The command line on this DATA_DIR talks to us instead of the embedded database we hold.
    if (!config.databaseUrl) unannounce = announceGateway(config.dataDir, { pid: process.pid, url: local });
    keepTickRecord();
    setTimeout(releaseStartupMemory, RELEASE_STARTUP_MEMORY_AFTER_MS).unref();
    logger.info(
      {
        url: `http://${info.family === 'IPv6' ? `[${info.address}]` : info.address}:${info.port}`,
        publicBaseUrl: config.publicBaseUrl.href,
        database: database.kind,
        providers: registry.list().map((p) => (p.instance ? p.id : `${p.id} (unconfigured: ${describeNeeds(p.needs)})`)),
      },
      'linkgate listening',
    );
    // For a person at a terminal; LOG_LEVEL=warn or quieter (the demo's gateway) asks for quiet.
    if (config.nodeEnv === 'development' && logger.isLevelEnabled('info')) {
      process.stdout.write(
        startupBanner({
          url: local,
          publicBaseUrl: config.publicBaseUrl,
          apiKeyFile: filled.includes('LINKGATE_API_KEYS') ? file : undefined,
          database: { kind: database.kind, dataDir: join(config.dataDir, 'pgdata') },
          providers: registry.list(),
          webhookUrl: config.webhook?.url,
          metrics: config.metrics,
        }),
      );
    }
  });
  // A port that is taken (or not ours to bind) is a start-up failure with one line, not a stack trace.
  server.once('error', (error: NodeJS.ErrnoException) => {
    const why = error.code === 'EADDRINUSE' ? `${config.host}:${config.port} is already in use` : error.code === 'EACCES' ? `no permission to listen on ${config.host}:${config.port}` : error.message;
    console.error(`linkgate: failed to start: ${why}`);
    void database.close().finally(() => {
      unlock?.();
      process.exit(1);
    });
  });

  const purge = setInterval(() => {
    purgeExpired(database.db, new Date(), { linkEventRetentionDays: config.linkEventRetentionDays }).then(
      (purged) => logger.debug({ purged }, 'purged expired rows'),
      (error: unknown) => logger.warn({ cause: logCause(error) }, 'purge failed'),
    );
  }, PURGE_EVERY_MS);
  purge.unref();

  // needs_reauth links whose refresh token works again come back by themselves (one instance per round).
  const recheck = createReauthRecheck({ database, keyring, lock: createNamedLock(database), tokens, logger, now: Date.now, intervalMs: config.reauthRecheckMs });
  recheck.start();

  // Every instance delivers webhooks; the outbox rows are claimed, so none is sent twice at once.
  // The worker runs once anyone has an endpoint: the environment's, or a tenant's (looked for again when a tenant changes).
  const webhooks = createWebhookWorker({
    database,
    endpoint: (tenant) => tenants.webhook(tenant),
    maxAttempts: config.webhook?.maxAttempts ?? WEBHOOK_DEFAULTS.maxAttempts,
    retryBaseMs: config.webhook?.retryBaseMs ?? WEBHOOK_DEFAULTS.retryBaseMs,
    logger,
    ...(metrics ? { metrics } : {}),
    publicOnlyForTenants: config.nodeEnv === 'production',
  });
  let webhooksStarted = false;
  const startWebhooks = async () => {
    if (webhooksStarted || stopping) return;
    if (config.webhook || (await tenants.anyWebhook())) {
      webhooksStarted = true;
      webhooks.start();
    }
  };
  await startWebhooks();
  // Hears tenant changes made on other instances (a tenant's webhook among them).
  tenants.watch();
  tenants.onChange(() => {
    startWebhooks().catch((error: unknown) => logger.warn({ cause: logCause(error) }, 'could not check for tenant webhooks'));
  });

  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    unannounce?.();
    logger.info({ signal }, 'shutting down');
    clearInterval(purge);
    // Long polls answer now (as on timeout) and RPC waits end with UNAVAILABLE, instead of holding the process.
    shuttingDown.abort();
    // A kept-alive connection goes as soon as its request is answered, not after its idle timeout;
    // an HTTP/2 one gets a GOAWAY and goes once its streams have ended.
    const idle = setInterval(() => listener.closeIdle(), 50);
    idle.unref();
    const force = setTimeout(() => {
      logger.warn('requests still open after the grace period; closing them');
      listener.closeAll();
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    // No new connections from here on; requests in flight finish, then the database closes.
    server.close(async () => {
      clearInterval(idle);
      // Give the other instances this one's unused share of the rate limits.
      await limiter.flush().catch(() => {});
      await webhooks.stop().catch(() => {});
      await recheck.stop().catch(() => {});
      // The token counts still in memory (src/core/link-events.ts).
      await tokensServed.flush();
      await database.close().catch(() => {});
      unlock?.();
      logger.info('stopped');
      process.exit(0);
    });
    listener.closeIdle();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((error: unknown) => {
  if ((error instanceof ConfigError || error instanceof ProviderLoadError) && error.problems.length > 1) {
    console.error(`linkgate: configuration error: ${error.problems.length} problems:\n${error.problems.map((problem) => `  ${problem}`).join('\n')}`);
  } else if (error instanceof ConfigError || error instanceof ProviderLoadError) {
    console.error(`linkgate: configuration error: ${error.message}`);
  } else if (error instanceof AnnieMeiError) {
    console.error(`linkgate: failed to take over the Annie Mei auth service's tables: ${error.message}`);
  } else {
    console.error(`linkgate: failed to start: ${error instanceof Error ? error.message : String(error)}`);
  }
  process.exit(1);
});
