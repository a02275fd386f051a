/**
 * What each tenant's OpenID Provider keeps (docs/sign-in.md): oidc-provider's
 * payloads (sessions, interactions, codes, tokens, grants) in one table, its
 * ES256 signing keys, and the tenant's apps (its OpenID clients).
 *
 * Everything secret is sealed with the keyring and bound to where it belongs
 * (AAD), and oidc-provider's ids are stored as SHA-256 digests: an access
 * token's id is the token itself, and a session's id is its cookie.
 */
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import type { Adapter, AdapterPayload, ClientMetadata } from 'oidc-provider';
import * as v from 'valibot';
import type { Db } from '../db/client.ts';
import { and, asc, eq, gt, isNull, or, sql } from '../db/orm.ts';
import { oidcApps, oidcPayloads, oidcSigningKeys, type OidcAppRow } from '../db/schema.ts';
import { randomToken, sha256, type Keyring } from './crypto.ts';
import { LinkgateError } from './errors.ts';

export const payloadAad = (tenant: string, model: string, idHash: string) => `oidc-payload:${JSON.stringify([tenant, model, idHash])}`;
export const signingKeyAad = (tenant: string, kid: string) => `oidc-signing-key:${JSON.stringify([tenant, kid])}`;
export const appSecretAad = (tenant: string, clientId: string) => `oidc-app-secret:${JSON.stringify([tenant, clientId])}`;

const StoredPayload = v.record(v.string(), v.unknown());
const EXPIRED_DEVICE_CODE_KEPT_SECONDS = 3600;

/**
 * oidc-provider's storage for one tenant: `adapterFor(model)` is its
 * `adapter` option. `Client` is answered from the tenant's apps; every other
 * model is a row of `oidc_payloads`.
 */
export function createOpenIdAdapter(db: Db, keyring: Keyring, tenant: string, apps: OpenIdApps, now: () => number = Date.now) {
  return function adapterFor(model: string): Adapter {
    const key = (id: string) => and(eq(oidcPayloads.tenant, tenant), eq(oidcPayloads.model, model), eq(oidcPayloads.idHash, sha256(id)));

    async function read(where: ReturnType<typeof and>): Promise<AdapterPayload | undefined> {
      const [row] = await db.select().from(oidcPayloads).where(and(where, or(isNull(oidcPayloads.expiresAt), gt(oidcPayloads.expiresAt, new Date(now())))));
      if (!row) return undefined;
      const payload = v.parse(StoredPayload, JSON.parse(keyring.open(row.payload, payloadAad(tenant, model, row.idHash)))) as AdapterPayload;
      return row.consumedAt ? { ...payload, consumed: Math.floor(row.consumedAt.getTime() / 1000) } : payload;
    }

    if (model === 'Client') {
      return {
        find: async (id) => apps.metadata(tenant, id),
        upsert: async () => {
          throw new Error('apps are created through the operator API');
        },
        findByUid: async () => undefined,
        findByUserCode: async () => undefined,
        consume: async () => {},
        destroy: async () => {},
        revokeByGrantId: async () => {},
      };
    }

    // An expired device code stays readable a while (oidc-provider checks its `exp` itself), so the
    // app still polling hears `expired_token` (RFC 8628 §3.5) rather than "not found".
    const keptFor = (expiresIn: number) => (model === 'DeviceCode' ? expiresIn + EXPIRED_DEVICE_CODE_KEPT_SECONDS : expiresIn);

    return {
      async upsert(id, payload, expiresIn) {
        const idHash = sha256(id);
        const values = {
          payload: keyring.seal(JSON.stringify(payload), payloadAad(tenant, model, idHash)),
          grantId: payload.grantId ?? null,
          userCodeHash: payload.userCode ? sha256(payload.userCode) : null,
          uid: payload.uid ?? null,
          consumedAt: null,
          expiresAt: typeof expiresIn === 'number' ? new Date(now() + keptFor(expiresIn) * 1000) : null,
        };
        await db
          .insert(oidcPayloads)
          .values({ tenant, model, idHash, ...values })
          .onConflictDoUpdate({ target: [oidcPayloads.tenant, oidcPayloads.model, oidcPayloads.idHash], set: values });
      },
      find: (id) => read(key(id)),
      findByUid: (uid) => read(and(eq(oidcPayloads.tenant, tenant), eq(oidcPayloads.model, model), eq(oidcPayloads.uid, uid))),
      findByUserCode: (userCode) => read(and(eq(oidcPayloads.tenant, tenant), eq(oidcPayloads.model, model), eq(oidcPayloads.userCodeHash, sha256(userCode)))),
      async consume(id) {
        await db.update(oidcPayloads).set({ consumedAt: new Date(now()) }).where(key(id));
      },
      async destroy(id) {
        await db.delete(oidcPayloads).where(key(id));
      },
      async revokeByGrantId(grantId) {
        await db.delete(oidcPayloads).where(and(eq(oidcPayloads.tenant, tenant), eq(oidcPayloads.grantId, grantId)));
      },
    };
  };
}

/** A private JWK as oidc-provider's `jwks` takes it. */
export type SigningJwk = JWK & { kid: string; alg: string; use: 'sig' };

export const SIGNING_ALG = 'ES256';

/** RFC 8628 §3.4. */
export const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
/** How long an ID token lives: a retired key stays published this long after it last signed, plus KEY_LEEWAY_SECONDS. */
export const ID_TOKEN_TTL_SECONDS = 3600;
/** Clocks of the apps that verify our tokens may be this far behind. */
const KEY_LEEWAY_SECONDS = 300;
/** A rotation publishes the next key this long before it signs, unless told otherwise (apps cache the JWKS). */
export const DEFAULT_KEY_PUBLISH_SECONDS = 3600;
export const MAX_KEY_PUBLISH_SECONDS = 30 * 24 * 3600;

/** Where a key is in its life: published before it signs, signing, then published only until its tokens expire. */
export type SigningKeyState = 'next' | 'signing' | 'retired';

/** A signing key as the operator sees it: never the private half. */
export interface SigningKeyInfo {
  kid: string;
  alg: string;
  state: SigningKeyState;
  createdAt: Date;
  signsFrom: Date;
  retiredAt: Date | null;
  /** When it leaves the JWKS; null while it signs. */
  expiresAt: Date | null;
}

/**
 * A tenant's signing keys, made on first use. `jwks(tenant)` lists the key
 * that signs first (oidc-provider signs with the first key that fits), then
 * the ones only published: a next key, not yet signing, and retired keys
 * until the tokens they signed have expired.
 *
 * `rotate` adds the next key, published at once and signing `publishSeconds`
 * later (apps that cached the JWKS see it before any token it signed); the
 * key signing now is retired at that moment and stays published for an ID
 * token's lifetime after it.
 */
export function createSigningKeys(db: Db, keyring: Keyring, now: () => number = Date.now) {
  type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];
  /** One key change per tenant at a time, on every instance. */
  const lock = (tx: Tx, tenant: string) => tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`oidc-signing-key:${tenant}`}))`);

  async function newKey(tenant: string, signsFrom: Date) {
    const { privateKey } = await generateKeyPair(SIGNING_ALG, { extractable: true });
    const jwk = await exportJWK(privateKey);
    const kid = randomToken(12);
    const { d: _private, ...publicJwk } = jwk;
    return {
      tenant,
      kid,
      alg: SIGNING_ALG,
      publicJwk: { ...publicJwk, kid, alg: SIGNING_ALG, use: 'sig' },
      privateJwk: keyring.seal(JSON.stringify({ ...jwk, kid, alg: SIGNING_ALG, use: 'sig' }), signingKeyAad(tenant, kid)),
      createdAt: new Date(now()),
      signsFrom,
    };
  }

  async function create(tenant: string): Promise<void> {
    const row = await newKey(tenant, new Date(now()));
    // One first key per tenant even when two instances start at once: the lock, then a second look.
    await db.transaction(async (tx) => {
      await lock(tx, tenant);
      const [existing] = await tx.select({ kid: oidcSigningKeys.kid }).from(oidcSigningKeys).where(eq(oidcSigningKeys.tenant, tenant)).limit(1);
      if (existing) return;
      await tx.insert(oidcSigningKeys).values(row);
    });
  }

  async function published(tenant: string) {
    const at = new Date(now());
    return db
      .select()
      .from(oidcSigningKeys)
      .where(and(eq(oidcSigningKeys.tenant, tenant), or(isNull(oidcSigningKeys.expiresAt), gt(oidcSigningKeys.expiresAt, at))))
      .orderBy(asc(oidcSigningKeys.createdAt));
  }

  type Row = Awaited<ReturnType<typeof published>>[number];
  const stateOf = (row: Row, at: number): SigningKeyState => (row.retiredAt && row.retiredAt.getTime() <= at ? 'retired' : row.signsFrom.getTime() > at ? 'next' : 'signing');
  const infoOf = (row: Row, at: number): SigningKeyInfo => ({
    kid: row.kid,
    alg: row.alg,
    state: stateOf(row, at),
    createdAt: row.createdAt,
    signsFrom: row.signsFrom,
    retiredAt: row.retiredAt,
    expiresAt: row.expiresAt,
  });

  return {
    /**
     * The keys oidc-provider is given, the signing one first, and the next
     * moment that list changes by itself (a next key starts signing, a
     * retired one leaves): a provider made from it is made again then.
     */
    async jwks(tenant: string): Promise<{ keys: SigningJwk[]; changesAt: number | undefined }> {
      let rows = await published(tenant);
      if (rows.length === 0) {
        await create(tenant);
        rows = await published(tenant);
      }
      const at = now();
      const signs = (row: Row) => stateOf(row, at) === 'signing';
      // The newest key that may sign goes first; the rest are published only.
      const signing = rows.filter(signs).at(-1);
      const ordered = signing ? [signing, ...rows.filter((row) => row !== signing)] : rows;
      const moments = rows.flatMap((row) => [row.signsFrom, row.retiredAt, row.expiresAt]).flatMap((d) => (d && d.getTime() > at ? [d.getTime()] : []));
      return {
        keys: ordered.map((row) => JSON.parse(keyring.open(row.privateJwk, signingKeyAad(tenant, row.kid))) as SigningJwk),
        changesAt: moments.length > 0 ? Math.min(...moments) : undefined,
      };
    },

    /** The keys in the JWKS now, oldest first. */
    async list(tenant: string): Promise<SigningKeyInfo[]> {
      const at = now();
      return (await published(tenant)).map((row) => infoOf(row, at));
    },

    /**
     * Makes the next key. Refused while another next key waits to sign
     * (`key_rotation_pending`): one rotation at a time keeps the JWKS short
     * and the order of keys plain.
     */
    async rotate(tenant: string, publishSeconds = DEFAULT_KEY_PUBLISH_SECONDS): Promise<SigningKeyInfo> {
      const signsFrom = new Date(now() + publishSeconds * 1000);
      const row = await newKey(tenant, signsFrom);
      const retiredUntil = new Date(signsFrom.getTime() + (ID_TOKEN_TTL_SECONDS + KEY_LEEWAY_SECONDS) * 1000);
      await db.transaction(async (tx) => {
        await lock(tx, tenant);
        const at = now();
        const current = await tx
          .select()
          .from(oidcSigningKeys)
          .where(and(eq(oidcSigningKeys.tenant, tenant), isNull(oidcSigningKeys.retiredAt)));
        const pending = current.find((key) => key.signsFrom.getTime() > at);
        if (pending) {
          throw new LinkgateError('key_rotation_pending', `key ${pending.kid} starts signing at ${pending.signsFrom.toISOString()}; rotate again after that`, { status: 409 });
        }
        for (const key of current) {
          await tx
            .update(oidcSigningKeys)
            .set({ retiredAt: signsFrom, expiresAt: retiredUntil })
            .where(and(eq(oidcSigningKeys.tenant, tenant), eq(oidcSigningKeys.kid, key.kid)));
        }
        await tx.insert(oidcSigningKeys).values(row);
      });
      return infoOf({ ...row, retiredAt: null, expiresAt: null }, now());
    },
  };
}

export type SigningKeys = ReturnType<typeof createSigningKeys>;
/** What the operator API and the CLI do with signing keys. */
export type SigningKeyAdmin = Pick<SigningKeys, 'list' | 'rotate'>;

/** An app as the operator API shows it: never its secret. */
export interface OpenIdApp {
  clientId: string;
  name: string;
  type: 'confidential' | 'public';
  redirectUris: string[];
  postLogoutRedirectUris: string[];
  providers: string[] | null;
  subject: 'user' | 'external';
  firstParty: boolean;
  deviceFlow: boolean;
  createdAt: Date;
}

export interface NewOpenIdApp {
  name: string;
  type: 'confidential' | 'public';
  redirectUris: string[];
  postLogoutRedirectUris: string[];
  providers: string[] | undefined;
  subject: 'user' | 'external';
  firstParty: boolean;
  deviceFlow: boolean;
}

const toApp = (row: OidcAppRow): OpenIdApp => ({
  clientId: row.clientId,
  name: row.name,
  type: row.type,
  redirectUris: row.redirectUris,
  postLogoutRedirectUris: row.postLogoutRedirectUris,
  providers: row.providers,
  subject: row.subject,
  firstParty: row.firstParty,
  deviceFlow: row.deviceFlow,
  createdAt: row.createdAt,
});

/** A tenant's apps: created with a secret shown once, read by oidc-provider as client metadata. */
export function createOpenIdApps(db: Db, keyring: Keyring, now: () => number = Date.now) {
  return {
    async create(tenant: string, app: NewOpenIdApp): Promise<OpenIdApp & { clientSecret?: string }> {
      const clientId = `app_${randomToken(16)}`;
      const clientSecret = app.type === 'confidential' ? randomToken(32) : undefined;
      const [row] = await db
        .insert(oidcApps)
        .values({
          tenant,
          clientId,
          name: app.name,
          type: app.type,
          redirectUris: app.redirectUris,
          postLogoutRedirectUris: app.postLogoutRedirectUris,
          providers: app.providers ?? null,
          subject: app.subject,
          firstParty: app.firstParty,
          deviceFlow: app.deviceFlow,
          secret: clientSecret === undefined ? null : keyring.seal(clientSecret, appSecretAad(tenant, clientId)),
          createdAt: new Date(now()),
        })
        .returning();
      return { ...toApp(row!), ...(clientSecret ? { clientSecret } : {}) };
    },

    async list(tenant: string): Promise<OpenIdApp[]> {
      return (await db.select().from(oidcApps).where(eq(oidcApps.tenant, tenant)).orderBy(asc(oidcApps.createdAt), asc(oidcApps.clientId))).map(toApp);
    },

    async get(tenant: string, clientId: string): Promise<OpenIdApp | undefined> {
      const [row] = await db.select().from(oidcApps).where(and(eq(oidcApps.tenant, tenant), eq(oidcApps.clientId, clientId)));
      return row && toApp(row);
    },

    /** Removes the app and every token, code and grant issued to it. */
    async delete(tenant: string, clientId: string): Promise<boolean> {
      const removed = await db.delete(oidcApps).where(and(eq(oidcApps.tenant, tenant), eq(oidcApps.clientId, clientId))).returning({ clientId: oidcApps.clientId });
      return removed.length > 0;
    },

    /** The app as oidc-provider's client metadata (its secret opened), or undefined. */
    async metadata(tenant: string, clientId: string): Promise<ClientMetadata | undefined> {
      const [row] = await db.select().from(oidcApps).where(and(eq(oidcApps.tenant, tenant), eq(oidcApps.clientId, clientId)));
      if (!row) return undefined;
      const confidential = row.type === 'confidential' && row.secret !== null;
      // An app without redirect URIs (a CLI) signs people in through the device grant only.
      const redirects = row.redirectUris.length > 0;
      return {
        client_id: row.clientId,
        client_name: row.name,
        redirect_uris: row.redirectUris,
        post_logout_redirect_uris: row.postLogoutRedirectUris,
        grant_types: [...(redirects ? ['authorization_code'] : []), ...(row.deviceFlow ? [DEVICE_CODE_GRANT] : []), 'refresh_token'],
        response_types: redirects ? ['code'] : [],
        id_token_signed_response_alg: SIGNING_ALG,
        // `sub` is the provider's account id: oidc-provider's pairwise hook gives it (src/http/openid-provider.tsx).
        ...(row.subject === 'external' ? { subject_type: 'pairwise' } : {}),
        ...(confidential
          ? { client_secret: keyring.open(row.secret!, appSecretAad(tenant, row.clientId)), token_endpoint_auth_method: 'client_secret_basic' }
          : { token_endpoint_auth_method: 'none' }),
      };
    },
  };
}

export type OpenIdApps = ReturnType<typeof createOpenIdApps>;
