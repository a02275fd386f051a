/**
 * linkgate.v1.LinkService: the bot API's operations over the same core as
 * the REST routes (src/http/api.ts), with the same checks and answers in
 * RPC terms. Who calls (and so the tenant) comes from the gate (gate.ts).
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import { timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import type { Logger } from 'pino';
import * as v from 'valibot';
import type { LinkEvents } from '../core/events.ts';
import { LinkgateError } from '../core/errors.ts';
import { ProviderId, userIdSchema, userNameSchema } from '../core/ids.ts';
import { checkReturnTo, createLinkUrl } from '../core/link-context.ts';
import type { LinkKey, LinkStatusRow, LinkStore } from '../core/links.ts';
import type { Metrics } from '../core/metrics.ts';
import type { TokenService } from '../core/tokens.ts';
import { unlink, type Revocation as RevocationName } from '../core/unlink.ts';
import type { LinkRow } from '../db/schema.ts';
import { describeNeeds, type RegisteredProvider } from '../registry.ts';
import type { ProviderDirectory } from '../core/tenant-providers.ts';
import type { TenantStore } from '../core/tenants.ts';
import { parseRequest, toConnectError } from './errors.ts';
import { callerOf } from './gate.ts';
import { LinkSchema, LinkService, LinkStatus, Revocation, WaitForLinkResponseSchema } from './gen/linkgate/v1/links_pb.ts';

export interface LinkServiceDeps {
  /** Every tenant's providers (the caller's tenant comes from its key, in the gate). */
  providers: ProviderDirectory;
  /** Each tenant's context secret, for the link URLs this service signs. */
  tenants: TenantStore;
  links: LinkStore;
  events: LinkEvents;
  tokens: TokenService;
  now: () => number;
  publicBaseUrl: URL;
  contextTtlSeconds: number;
  returnToOrigins: readonly string[];
  hashUserId: (tenant: string, userId: string) => string;
  logger: Logger;
  /** Aborted at shutdown: waits end with UNAVAILABLE, so the bot calls again elsewhere. */
  stopping?: AbortSignal | undefined;
  metrics?: Metrics | undefined;
  /** Whether the user cancelled linking at or after a time (flows ended as `cancelled`). */
  cancelledSince: (key: LinkKey, since: Date) => Promise<boolean>;
  /** How often a waiting stream says it is still there (15 s). */
  heartbeatMs?: number;
}

/** WaitForLink's `timeout_seconds`: 0 (unset) waits this long. */
export const WAIT_DEFAULT_SECONDS = 300;
export const WAIT_MAX_SECONDS = 3600;
const HEARTBEAT_MS = 15_000;

// The REST API's field schemas, under the proto field names (messages name the field as the caller wrote it).
const UserId = userIdSchema('user_id');
const LinkRequest = v.object({ user_id: UserId, provider: ProviderId });
const UserRequest = v.object({ user_id: UserId });
const LinkUrlRequest = v.object({
  user_id: UserId,
  provider: ProviderId,
  return_to: v.optional(v.pipe(v.string(), v.maxLength(2048, 'return_to is too long'))),
  user_name: v.optional(userNameSchema('user_name')),
});
const WaitRequest = v.object({
  user_id: UserId,
  provider: ProviderId,
  timeout_seconds: v.pipe(v.number(), v.maxValue(WAIT_MAX_SECONDS, `timeout_seconds must be at most ${WAIT_MAX_SECONDS}`)),
});

const STATUS = { active: LinkStatus.ACTIVE, needs_reauth: LinkStatus.NEEDS_REAUTH } as const;
const REVOCATION: Record<RevocationName, Revocation> = {
  revoked: Revocation.REVOKED,
  not_supported: Revocation.NOT_SUPPORTED,
  failed: Revocation.FAILED,
  provider_unavailable: Revocation.PROVIDER_UNAVAILABLE,
};

export function toRpcLink(row: LinkStatusRow): MessageInitShape<typeof LinkSchema> {
  return {
    userId: row.userId,
    provider: row.provider,
    externalId: row.externalId,
    ...(row.externalName === null ? {} : { externalName: row.externalName }),
    status: STATUS[row.status],
    createdAt: timestampFromDate(row.linkedAt),
    updatedAt: timestampFromDate(row.updatedAt),
    scopes: row.scopes,
    ...(row.expiresAt ? { expiresAt: timestampFromDate(row.expiresAt) } : {}),
  };
}

type Event = MessageInitShape<typeof WaitForLinkResponseSchema>;
const PENDING: Event = { event: { case: 'pending', value: {} } };
const HEARTBEAT: Event = { event: { case: 'heartbeat', value: {} } };
const TIMEOUT: Event = { event: { case: 'timeout', value: {} } };
const CANCELLED: Event = { event: { case: 'cancelled', value: {} } };
const linked = (row: LinkRow): Event => ({ event: { case: 'link', value: toRpcLink(row) } });

export function linkService(deps: LinkServiceDeps): ServiceImpl<typeof LinkService> {
  const heartbeatMs = deps.heartbeatMs ?? HEARTBEAT_MS;

  async function knownProvider(tenant: string, id: string): Promise<RegisteredProvider> {
    const registry = deps.providers.of(tenant);
    const provider = (registry instanceof Promise ? await registry : registry).get(id);
    if (!provider) throw toConnectError(new LinkgateError('unknown_provider', `there is no provider called "${id}"`, { provider: id }));
    return provider;
  }

  /** A call that would hand the bot a link URL fails while nobody can link the provider (as REST's 503). */
  function unconfigured(provider: RegisteredProvider): ConnectError {
    return toConnectError(new LinkgateError('provider_unconfigured', `${provider.displayName} is not configured (missing ${describeNeeds(provider.needs)})`, { provider: provider.id }));
  }

  async function linkUrl(key: LinkKey, options: { returnTo?: string; userName?: string } = {}) {
    const secret = deps.tenants.signingSecret(key.tenant);
    return createLinkUrl(
      { ...key, ...options },
      { secret: typeof secret === 'string' ? secret : await secret, ttlSeconds: deps.contextTtlSeconds, publicBaseUrl: deps.publicBaseUrl, now: deps.now() },
    );
  }

  /** NOT_FOUND `not_linked` / FAILED_PRECONDITION `needs_reauth`, with a fresh link URL in the ErrorInfo (REST: `linkUrl`). */
  async function relink(error: LinkgateError, key: LinkKey): Promise<ConnectError> {
    const provider = await knownProvider(key.tenant, key.provider);
    if (!provider.instance) return unconfigured(provider);
    const { url } = await linkUrl(key);
    return toConnectError(error, { link_url: url });
  }

  /** Runs a call, turning `not_linked` / `needs_reauth` into their answers with a link URL. */
  async function orRelink<T>(key: LinkKey, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      if (error instanceof LinkgateError && (error.code === 'not_linked' || error.code === 'needs_reauth')) throw await relink(error, key);
      throw error;
    }
  }

  const keyOf = (ctx: HandlerContext, fields: { user_id: string; provider: string }): LinkKey => ({ tenant: callerOf(ctx).tenant, userId: fields.user_id, provider: fields.provider });

  return {
    async listProviders(_request, ctx) {
      const registry = await deps.providers.of(callerOf(ctx).tenant);
      return { providers: registry.list().map((p) => ({ id: p.id, displayName: p.displayName, configured: p.instance !== undefined })) };
    },

    async createLinkUrl(request, ctx) {
      const fields = parseRequest(LinkUrlRequest, { user_id: request.userId, provider: request.provider, return_to: request.returnTo, user_name: request.userName });
      const provider = await knownProvider(callerOf(ctx).tenant, fields.provider);
      if (!provider.instance) throw unconfigured(provider);
      const returnTo = fields.return_to === undefined ? undefined : checkReturnTo(fields.return_to, deps.returnToOrigins);
      const { url, expiresAt } = await linkUrl(keyOf(ctx, fields), { ...(returnTo ? { returnTo } : {}), ...(fields.user_name ? { userName: fields.user_name } : {}) });
      return { url, expiresAt: timestampFromDate(expiresAt) };
    },

    async getLink(request, ctx) {
      const fields = parseRequest(LinkRequest, { user_id: request.userId, provider: request.provider });
      const provider = await knownProvider(callerOf(ctx).tenant, fields.provider);
      const key = keyOf(ctx, fields);
      return orRelink(key, async () => {
        const row = request.verify ? await deps.tokens.verify(key) : await deps.links.status(key);
        if (!row) throw new LinkgateError('not_linked', `this user has not linked ${provider.displayName}`, { provider: key.provider });
        return toRpcLink(row);
      });
    },

    async getToken(request, ctx) {
      const fields = parseRequest(LinkRequest, { user_id: request.userId, provider: request.provider });
      await knownProvider(callerOf(ctx).tenant, fields.provider);
      const key = keyOf(ctx, fields);
      return orRelink(key, async () => {
        const { accessToken, tokenType, expiresAt, ...rest } = await deps.tokens.token(key);
        return {
          accessToken: typeof accessToken === 'string' ? accessToken : '',
          tokenType: typeof tokenType === 'string' ? tokenType : '',
          ...(typeof expiresAt === 'string' ? { expiresAt: timestampFromDate(new Date(expiresAt)) } : {}),
          fields: rest,
        };
      });
    },

    async unlink(request, ctx) {
      const fields = parseRequest(LinkRequest, { user_id: request.userId, provider: request.provider });
      const provider = await knownProvider(callerOf(ctx).tenant, fields.provider);
      const deleted = await unlink(deps, keyOf(ctx, fields), deps.logger, 'rpc');
      if (!deleted) throw new LinkgateError('not_linked', `this user has not linked ${provider.displayName}`, { provider: provider.id });
      return { revocation: REVOCATION[deleted.revocation] };
    },

    async listLinks(request, ctx) {
      const fields = parseRequest(UserRequest, { user_id: request.userId });
      const rows = await deps.links.list(callerOf(ctx).tenant, fields.user_id);
      return { links: rows.map(toRpcLink) };
    },

    /**
     * REST's long poll as a stream: `pending` at once, a heartbeat every
     * 15 s, then the link, `cancelled` or `timeout`. One subscription and at
     * most one timer at a time, both gone when the stream ends for any
     * reason (the client leaving included).
     */
    async *waitForLink(request, ctx) {
      const fields = parseRequest(WaitRequest, { user_id: request.userId, provider: request.provider, timeout_seconds: request.timeoutSeconds });
      const provider = await knownProvider(callerOf(ctx).tenant, fields.provider);
      const key = keyOf(ctx, fields);
      const timeoutSeconds = fields.timeout_seconds === 0 ? WAIT_DEFAULT_SECONDS : fields.timeout_seconds;
      const since = request.since ? timestampDate(request.since) : undefined;
      if (!provider.instance) {
        const row = await deps.links.get(key);
        if (row?.status !== 'active') throw unconfigured(provider);
        yield PENDING;
        yield linked(row);
        return;
      }
      const cancelledFrom = since ?? new Date(deps.now());
      // The caller leaving (ctx.signal) ends the wait quietly; the gateway shutting down ends it with UNAVAILABLE.
      const signals = deps.stopping ? [ctx.signal, deps.stopping] : [ctx.signal];
      let onAbort!: () => void;
      const aborted = new Promise<'aborted'>((resolve) => (onAbort = () => resolve('aborted')));
      // Subscribe first, then read: a link stored in between still wakes us.
      let subscription = await deps.events.subscribe(key);
      for (const signal of signals) signal.addEventListener('abort', onAbort, { once: true });
      if (signals.some((signal) => signal.aborted)) onAbort();
      let timer: NodeJS.Timeout | undefined;
      try {
        yield PENDING;
        const deadline = deps.now() + timeoutSeconds * 1000;
        let beat = deps.now() + heartbeatMs;
        for (let first = true; ; first = false) {
          const row = await deps.links.get(key);
          if (row?.status === 'active') return yield linked(row);
          // Asked at once only when the bot gave a `since`; otherwise only a change can be one.
          if ((!first || since) && (await deps.cancelledSince(key, cancelledFrom))) return yield CANCELLED;
          for (;;) {
            const now = deps.now();
            if (now >= deadline) return yield TIMEOUT;
            if (now >= beat) {
              yield HEARTBEAT;
              beat = deps.now() + heartbeatMs;
            }
            const until = Math.min(deadline, beat) - deps.now();
            const woke = await Promise.race([
              subscription.changed.then(() => 'changed' as const),
              new Promise<'tick'>((resolve) => (timer = setTimeout(() => resolve('tick'), Math.max(0, until)))),
              aborted,
            ]);
            clearTimeout(timer);
            timer = undefined;
            if (woke === 'aborted') {
              if (deps.stopping?.aborted) throw new ConnectError('the gateway is shutting down (call again)', Code.Unavailable);
              return;
            }
            if (woke === 'changed') break;
          }
          subscription.stop();
          subscription = await deps.events.subscribe(key);
        }
      } finally {
        clearTimeout(timer);
        for (const signal of signals) signal.removeEventListener('abort', onAbort);
        subscription.stop();
      }
    },
  };
}
