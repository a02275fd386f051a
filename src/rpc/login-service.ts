/**
 * linkgate.v1.LoginService: an app's backend signs a person in over RPC (the
 * seed 003 shape). InitiateLogin opens a sign-in flow through the linking
 * core (`startLogin`) and a session (src/core/logins.ts); AwaitLogin streams
 * its outcome, woken across instances by `linkgate_logins`. Who calls (and
 * so the tenant, whose app it must be) comes from the gate (gate.ts).
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, type ServiceImpl } from '@connectrpc/connect';
import * as v from 'valibot';
import { LinkgateError } from '../core/errors.ts';
import { ProviderId } from '../core/ids.ts';
import type { Linking } from '../core/linking.ts';
import type { LoginSessions, LoginState } from '../core/logins.ts';
import type { OpenIdApps } from '../core/openid-storage.ts';
import type { ProviderDirectory } from '../core/tenant-providers.ts';
import { badField, parseRequest } from './errors.ts';
import { callerOf } from './gate.ts';
import { AwaitLoginResponseSchema, LoginService } from './gen/linkgate/v1/login_pb.ts';

export interface LoginServiceDeps {
  providers: ProviderDirectory;
  linking: Pick<Linking, 'startLogin'>;
  logins: LoginSessions;
  apps: Pick<OpenIdApps, 'get'>;
  now: () => number;
  stateTtlSeconds: number;
  /** Aborted at shutdown: waits end with UNAVAILABLE, so the app calls again elsewhere. */
  stopping?: AbortSignal | undefined;
  /** How often a waiting stream says it is still there (15 s). */
  heartbeatMs?: number;
}

const HEARTBEAT_MS = 15_000;
/** The provider InitiateLogin uses when none is named: the seed's. */
export const DEFAULT_LOGIN_PROVIDER = 'atproto';

const InitiateRequest = v.object({
  identifier: v.pipe(v.string(), v.trim(), v.maxLength(2048, 'identifier must be at most 2048 characters')),
  provider: ProviderId,
  app_id: v.pipe(v.string(), v.regex(/^app_[A-Za-z0-9_-]{1,40}$/, 'app_id must be an app\'s client id, app_…')),
});
const AwaitRequest = v.object({
  // randomToken(32): 43 base64url characters.
  session_id: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/, 'session_id must be a session_id InitiateLogin answered')),
});

type Event = MessageInitShape<typeof AwaitLoginResponseSchema>;
const PENDING: Event = { event: { case: 'pending', value: {} } };
const HEARTBEAT: Event = { event: { case: 'heartbeat', value: {} } };
const EXPIRED: Event = { event: { case: 'expired', value: {} } };

/** The last message of a stream for a session that has ended, or undefined while it is pending. */
function ending(state: LoginState): Event | undefined {
  switch (state.status) {
    case 'completed':
      return { event: { case: 'completed', value: { token: state.token } } };
    case 'failed':
      return { event: { case: 'failed', value: { reason: state.reason } } };
    case 'expired':
      return EXPIRED;
    case 'pending':
      return undefined;
  }
}

export function loginService(deps: LoginServiceDeps): ServiceImpl<typeof LoginService> {
  const heartbeatMs = deps.heartbeatMs ?? HEARTBEAT_MS;

  return {
    async initiateLogin(request, ctx) {
      const fields = parseRequest(InitiateRequest, { identifier: request.identifier, provider: request.provider || DEFAULT_LOGIN_PROVIDER, app_id: request.appId });
      const { tenant } = callerOf(ctx);
      const app = await deps.apps.get(tenant, fields.app_id);
      if (!app) throw new LinkgateError('app_not_found', 'this tenant has no app with this app_id');
      // No consent page on this path: a third-party app's token would say the person agreed when nobody asked them.
      if (!app.firstParty) badField('app_id', 'app_id: a third-party app signs people in through the OpenID Provider, where they are asked to consent');
      const registry = await deps.providers.of(tenant);
      const provider = registry.get(fields.provider);
      if (!provider) throw new LinkgateError('unknown_provider', `there is no provider called "${fields.provider}"`, { provider: fields.provider });
      if (app.providers !== null && !app.providers.includes(provider.id)) {
        throw new LinkgateError('sign_in_provider', 'the app does not offer this way of signing in', { provider: provider.id });
      }
      if (provider.id === DEFAULT_LOGIN_PROVIDER && fields.identifier === '') badField('identifier', 'identifier: identifier is required for atproto (a handle, a DID or a PDS address)');

      // The session exists before its flow can end, so the flow always finds it.
      const { sessionId, sessionHash } = deps.logins.newSessionId();
      await deps.logins.create({ sessionHash, tenant, clientId: app.clientId, provider: provider.id, deadline: new Date(deps.now() + deps.stateTtlSeconds * 1000) });
      let started: Awaited<ReturnType<Linking['startLogin']>>;
      try {
        started = await deps.linking.startLogin(tenant, provider.id, sessionHash, fields.identifier === '' ? undefined : fields.identifier);
      } catch (error) {
        await deps.logins.discard(sessionHash);
        throw error;
      }
      if (started.kind === 'refused') {
        await deps.logins.discard(sessionHash);
        return badField('identifier', `identifier: ${started.message}`);
      }
      return { oauthUrl: started.url.href, sessionId, expiresAt: timestampFromDate(started.expiresAt) };
    },

    /**
     * `pending` at once, a heartbeat every 15 s, then the outcome. One
     * subscription and at most one timer at a time, both gone when the
     * stream ends for any reason; no database query while nothing happens.
     */
    async *awaitLogin(request, ctx) {
      const { session_id: sessionId } = parseRequest(AwaitRequest, { session_id: request.sessionId });
      const { tenant } = callerOf(ctx);
      // The caller leaving (ctx.signal) ends the wait quietly; the gateway shutting down ends it with UNAVAILABLE.
      const signals = deps.stopping ? [ctx.signal, deps.stopping] : [ctx.signal];
      let onAbort!: () => void;
      const aborted = new Promise<'aborted'>((resolve) => (onAbort = () => resolve('aborted')));
      // Subscribe first, then read: an outcome stored in between still wakes us.
      let subscription = await deps.logins.subscribe(sessionId);
      for (const signal of signals) signal.addEventListener('abort', onAbort, { once: true });
      if (signals.some((signal) => signal.aborted)) onAbort();
      let timer: NodeJS.Timeout | undefined;
      try {
        let state = await deps.logins.state(tenant, sessionId);
        if (!state) throw new LinkgateError('login_not_found', 'there is no sign-in with this session_id (or it ended more than 30 minutes ago)');
        yield PENDING;
        let beat = deps.now() + heartbeatMs;
        for (;;) {
          const last = ending(state);
          if (last) return yield last;
          const deadline = (state as Extract<LoginState, { status: 'pending' }>).deadline.getTime();
          let woke: 'changed' | 'deadline' | 'aborted' | undefined;
          while (woke === undefined) {
            if (deps.now() >= beat) {
              yield HEARTBEAT;
              beat = deps.now() + heartbeatMs;
            }
            const until = Math.min(deadline, beat) - deps.now();
            const next = await Promise.race([
              subscription.changed.then(() => 'changed' as const),
              new Promise<'tick'>((resolve) => (timer = setTimeout(() => resolve('tick'), Math.max(0, until)))),
              aborted,
            ]);
            clearTimeout(timer);
            timer = undefined;
            if (next === 'tick') woke = deps.now() >= deadline ? 'deadline' : undefined;
            else woke = next;
          }
          if (woke === 'aborted') {
            if (deps.stopping?.aborted) throw new ConnectError('the gateway is shutting down (call again)', Code.Unavailable);
            return;
          }
          if (woke === 'changed') {
            subscription.stop();
            subscription = await deps.logins.subscribe(sessionId);
          }
          // Changed, or the deadline passed (a last look: it may have completed just then).
          state = (await deps.logins.state(tenant, sessionId)) ?? { status: 'expired' };
        }
      } finally {
        clearTimeout(timer);
        for (const signal of signals) signal.removeEventListener('abort', onAbort);
        subscription.stop();
      }
    },
  };
}
