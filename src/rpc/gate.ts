/**
 * What every RPC goes through first, as every REST request does
 * (src/http/middleware.ts, src/http/api.ts): the API key, by the same
 * `authenticateBot`; the same rate limits (per key, and per address for
 * calls without a valid key); one closing log line naming the procedure,
 * never a field of the request; the latency histogram; and errors turned
 * into RPC statuses, with no stack trace and nothing unsafe in them.
 */
import { Code, ConnectError, createContextKey, type HandlerContext, type Interceptor } from '@connectrpc/connect';
import type { Logger } from 'pino';
import type { Bot } from '../core/callers.ts';
import { authenticateBot } from '../core/callers.ts';
import { LinkgateError } from '../core/errors.ts';
import type { Metrics } from '../core/metrics.ts';
import type { TenantStore } from '../core/tenants.ts';
import type { RateLimitRule } from '../config.ts';
import type { RateDecision, RateLimiter, RateScope } from '../core/rate-limit.ts';
import { databaseFailure, logCause } from '../db/errors.ts';
import { clientAddressOf, rateLimited } from '../http/rate-limit.ts';
import { requestIdOf } from '../http/middleware.ts';
import { toConnectError } from './errors.ts';

/** The bot a call comes from, set by the gate before the implementation runs. */
const callerKey = createContextKey<Bot | undefined>(undefined, { description: 'linkgate bot' });
/** The TCP peer of the call's connection, set by the node adapter (see `contextValuesOf`). */
export const peerKey = createContextKey<string | undefined>(undefined, { description: 'linkgate peer address' });

/** The bot calling; only ever read behind the gate. */
export function callerOf(ctx: HandlerContext): Bot {
  const bot = ctx.values.get(callerKey);
  if (!bot) throw new ConnectError('no caller', Code.Internal);
  return bot;
}

export interface GateDeps {
  /** Which tenant a key belongs to and the tenant's own rate limit, as for the REST API. */
  tenants: Pick<TenantStore, 'resolveApiKey' | 'settings'>;
  limiter: RateLimiter;
  trustProxyHops: number;
  logger: Logger;
  now: () => number;
  metrics?: Metrics | undefined;
  reportError?: ((error: unknown) => void) | undefined;
}

/** A status code as gRPC's documentation spells it: `NOT_FOUND`. */
export const statusName = (code: Code) => Code[code].replace(/(?<=[a-z])(?=[A-Z])/g, '_').toUpperCase();

async function count(limiter: RateLimiter, scope: RateScope, key: string, rule?: RateLimitRule): Promise<void> {
  const taken = limiter.take(scope, key, rule);
  const decision: RateDecision = taken instanceof Promise ? await taken : taken;
  if (!decision.allowed) throw rateLimited(decision.retryAfterSeconds);
}

export function rpcGate(deps: GateDeps): Interceptor {
  const { logger, now } = deps;

  /** Any failure as the status the client gets; faults are reported and answered INTERNAL with no detail. */
  function asStatus(error: unknown, log: () => Logger): ConnectError {
    let failure: LinkgateError | undefined;
    const database = databaseFailure(error);
    if (database?.unavailable) failure = new LinkgateError('database_unavailable', 'the database is not answering; try again shortly', { cause: database.summary });
    else if (error instanceof LinkgateError) failure = error;
    else if (error instanceof ConnectError && error.code !== Code.Internal && error.code !== Code.Unknown) {
      // Ours (already mapped) or the protocol's own (a malformed message, a deadline): safe as they are.
      const ours = error.cause instanceof LinkgateError ? error.cause : undefined;
      log().info({ errorCode: ours?.code ?? statusName(error.code), message: error.rawMessage, provider: ours?.provider }, 'rpc refused');
      return error;
    }
    if (!failure || failure.status === 500) {
      deps.reportError?.(database ? new Error(`database: ${database.summary.code ?? database.summary.name}`) : error);
      log().error({ errorCode: failure?.code ?? 'internal_error', cause: database?.summary ?? (error instanceof Error ? logCause(error) : String(error)) }, 'rpc failed');
      return new ConnectError('internal error', Code.Internal);
    }
    const fields = { errorCode: failure.code, message: failure.message, provider: failure.provider, cause: failure.cause === undefined ? undefined : failure.cause instanceof Error ? logCause(failure.cause) : failure.cause };
    if (failure.status >= 500) log().error(fields, 'rpc failed');
    else log().info(fields, 'rpc refused');
    return toConnectError(failure);
  }

  return (next) =>
    async function rpcGate(req) {
      const started = now();
      const reqId = requestIdOf(req.header.get('x-request-id'));
      let child: Logger | undefined;
      const log = () => (child ??= logger.child({ reqId }));
      // The procedure, never the request: its fields carry user ids.
      const rpc = `${req.service.typeName}/${req.method.name}`;
      const close = (code: Code | undefined) => {
        const status = code === undefined ? 'OK' : statusName(code);
        deps.metrics?.observeRpc({ rpc, status }, (now() - started) / 1000);
        if (logger.isLevelEnabled('info')) logger.info({ reqId, rpc, status, ms: now() - started }, 'rpc');
      };
      try {
        const bot = await authenticateBot((presented) => deps.tenants.resolveApiKey(presented), req.header.get('authorization') ?? undefined);
        if (!bot) {
          // Counted against the address, under the browser limit, as REST counts a refused key.
          const peer = req.contextValues.get(peerKey);
          await count(deps.limiter, 'browser', clientAddressOf(peer, req.header.get('x-forwarded-for') ?? undefined, deps.trustProxyHops));
          throw new LinkgateError('unauthorized', 'a valid API key is required (authorization: Bearer <key> metadata)');
        }
        // Only the key names the tenant: metadata may confirm it, never choose another.
        const asked = req.header.get('x-tenant-id');
        if (asked !== null && asked !== bot.tenant) throw new LinkgateError('tenant_mismatch', 'this API key belongs to another tenant than x-tenant-id names');
        const settings = await deps.tenants.settings(bot.tenant);
        await count(deps.limiter, 'api', bot.key, settings.apiRateLimit);
        req.contextValues.set(callerKey, bot);
        const res = await next(req);
        res.header.set('x-request-id', reqId);
        if (!res.stream) {
          close(undefined);
          return res;
        }
        // A stream's outcome is known when its last message is sent (or it fails).
        const messages = res.message;
        return {
          ...res,
          message: (async function* () {
            // Still open when the iteration stops: the client went away.
            let outcome: Code | undefined = Code.Canceled;
            try {
              yield* messages;
              outcome = undefined;
            } catch (error) {
              const status = asStatus(error, log);
              outcome = status.code;
              throw status;
            } finally {
              close(outcome);
            }
          })(),
        };
      } catch (error) {
        const status = asStatus(error, log);
        status.metadata.set('x-request-id', reqId);
        close(status.code);
        throw status;
      }
    };
}
