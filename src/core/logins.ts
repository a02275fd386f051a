/**
 * Sign-ins an app starts over RPC (linkgate.v1.LoginService, the seed 003
 * shape; docs/grpc.md): a session per InitiateLogin, its flow run by the
 * linking core as any sign-in, and its outcome stored by session id until
 * the sweep, so AwaitLogin on any instance gets it, late or not.
 *
 * The session id is a bearer secret of the app's backend: stored only as
 * its SHA-256, the token sealed (AAD names the row), announced to every
 * instance by that digest on `linkgate_logins`.
 *
 * The token is what the app would get from the tenant's OpenID Provider: an
 * ID token (ES256, the tenant's signing key, its issuer, `aud` the app) with
 * `sub`, `idp`, `external_id` and `name`; or, for an app created with a
 * `legacyJwtSecret` (the seed's `JWT_SECRET`), an HS256 JWT with `sub` = the
 * account id (the DID), `iat` and `exp` 24 h later.
 */
import { importJWK, SignJWT } from 'jose';
import type { Logger } from 'pino';
import type { Db } from '../db/client.ts';
import { and, eq, gt } from '../db/orm.ts';
import { loginSessions } from '../db/schema.ts';
import { randomToken, sha256, type Keyring } from './crypto.ts';
import type { EventChannel, Subscription } from './events.ts';
import type { LoginOutcomes } from './linking.ts';
import { ID_TOKEN_TTL_SECONDS, issuerPath, SIGNING_ALG, type OpenIdApps, type SigningKeys } from './openid-storage.ts';

/** How long a sign-in's outcome is kept for AwaitLogin (the sweep), unless configured. */
export const LOGIN_SESSION_TTL_SECONDS = 30 * 60;
/** The seed 003 JWT's lifetime. */
const LEGACY_TTL_SECONDS = 24 * 3600;

export const loginResultAad = (sessionHash: string) => `login-session:${sessionHash}`;

/** What AwaitLogin sees of a session. */
export type LoginState =
  | { status: 'pending'; deadline: Date }
  | { status: 'completed'; token: string }
  | { status: 'failed'; reason: string }
  | { status: 'expired' };

export interface LoginSessionsDeps {
  db: Db;
  keyring: Keyring;
  apps: OpenIdApps;
  signingKeys: SigningKeys;
  /** `linkgate_logins`: wakes AwaitLogin streams on every instance. */
  events: EventChannel;
  publicBaseUrl: URL;
  logger: Logger;
  now: () => number;
  /** How long a session's outcome is kept (LINKGATE_LOGIN_SESSION_TTL_SECONDS). */
  ttlSeconds: number;
}

export function createLoginSessions(deps: LoginSessionsDeps) {
  const { db, keyring, now } = deps;
  const base = deps.publicBaseUrl.href.replace(/\/$/, '');

  /** The token for the app: its ID token, or the seed's HS256 JWT when it has a legacy secret. */
  async function tokenFor(session: { tenant: string; clientId: string }, who: { userId: string; provider: string; externalId: string; name: string | undefined }): Promise<string | undefined> {
    const app = await deps.apps.get(session.tenant, session.clientId);
    // Deleted while the person signed in: nothing to sign for.
    if (!app) return undefined;
    const iat = Math.floor(now() / 1000);
    const legacy = await deps.apps.legacyJwtSecret(session.tenant, session.clientId);
    if (legacy !== undefined) {
      return new SignJWT({}).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject(who.externalId).setIssuedAt(iat).setExpirationTime(iat + LEGACY_TTL_SECONDS).sign(new TextEncoder().encode(legacy));
    }
    // The key the tenant's OpenID Provider signs with (the first one), published at its JWKS.
    const {
      keys: [jwk],
    } = await deps.signingKeys.jwks(session.tenant);
    if (!jwk) throw new Error('the tenant has no signing key');
    const key = await importJWK(jwk, SIGNING_ALG);
    return new SignJWT({ idp: who.provider, external_id: who.externalId, ...(who.name ? { name: who.name } : {}), auth_time: iat })
      .setProtectedHeader({ alg: SIGNING_ALG, kid: jwk.kid, typ: 'JWT' })
      .setIssuer(`${base}${issuerPath(session.tenant)}`)
      .setSubject(app.subject === 'external' ? who.externalId : who.userId)
      .setAudience(app.clientId)
      .setIssuedAt(iat)
      .setExpirationTime(iat + ID_TOKEN_TTL_SECONDS)
      .sign(key);
  }

  /** Ends a pending session with `values`; false if it had already ended (or was swept). */
  async function end(sessionHash: string, values: { status: 'completed'; result: string } | { status: 'failed'; reason: string }): Promise<boolean> {
    const ended = await db
      .update(loginSessions)
      .set(values)
      .where(and(eq(loginSessions.sessionHash, sessionHash), eq(loginSessions.status, 'pending')))
      .returning({ tenant: loginSessions.tenant });
    if (ended.length === 0) return false;
    await deps.events.publish(sessionHash);
    return true;
  }

  const outcomes: LoginOutcomes = {
    async completed(sessionHash, who) {
      const [session] = await db.select().from(loginSessions).where(and(eq(loginSessions.sessionHash, sessionHash), eq(loginSessions.status, 'pending')));
      if (!session) return;
      let token: string | undefined;
      try {
        token = await tokenFor(session, who);
      } catch (error) {
        deps.logger.error({ cause: error instanceof Error ? { name: error.name, message: error.message } : String(error) }, 'RPC sign-in token not made');
        await end(sessionHash, { status: 'failed', reason: 'internal_error' });
        return;
      }
      if (token === undefined) {
        await end(sessionHash, { status: 'failed', reason: 'app_not_found' });
        return;
      }
      await end(sessionHash, { status: 'completed', result: keyring.seal(token, loginResultAad(sessionHash)) });
    },
    async failed(sessionHash, reason) {
      await end(sessionHash, { status: 'failed', reason });
    },
  };

  return {
    /** The linking core's side: a flow tells its session how it ended. */
    outcomes,

    /** A new session id, and its digest (what the flow and the row carry). */
    newSessionId(): { sessionId: string; sessionHash: string } {
      const sessionId = randomToken(32);
      return { sessionId, sessionHash: sha256(sessionId) };
    },

    /** Records a started sign-in: pending until `deadline` (its flow's expiry), kept for the TTL. */
    async create(session: { sessionHash: string; tenant: string; clientId: string; provider: string; deadline: Date }): Promise<void> {
      const at = now();
      const expiresAt = new Date(at + deps.ttlSeconds * 1000);
      await db.insert(loginSessions).values({
        ...session,
        deadline: session.deadline < expiresAt ? session.deadline : expiresAt,
        createdAt: new Date(at),
        expiresAt,
      });
    },

    /** Forgets a session whose flow never started. */
    async discard(sessionHash: string): Promise<void> {
      await db.delete(loginSessions).where(eq(loginSessions.sessionHash, sessionHash));
    },

    /** The session by its id, for the caller's tenant only; undefined when there is none (or it was swept). */
    async state(tenant: string, sessionId: string): Promise<LoginState | undefined> {
      const sessionHash = sha256(sessionId);
      const [row] = await db
        .select()
        .from(loginSessions)
        .where(and(eq(loginSessions.sessionHash, sessionHash), eq(loginSessions.tenant, tenant), gt(loginSessions.expiresAt, new Date(now()))));
      if (!row) return undefined;
      if (row.status === 'completed' && row.result !== null) return { status: 'completed', token: keyring.open(row.result, loginResultAad(sessionHash)) };
      if (row.status === 'failed') return { status: 'failed', reason: row.reason ?? 'internal_error' };
      if (row.deadline.getTime() <= now()) return { status: 'expired' };
      return { status: 'pending', deadline: row.deadline };
    },

    /** Wakes on the session's next change, on any instance (subscribe before reading). */
    subscribe(sessionId: string): Promise<Subscription> {
      return deps.events.subscribe(sha256(sessionId));
    },

    /** How many AwaitLogin waits this process holds (tests count them). */
    waiting: () => deps.events.waiting(),
  };
}

export type LoginSessions = ReturnType<typeof createLoginSessions>;
