import { bigserial, boolean, index, integer, jsonb, pgTable, primaryKey, sql, text, timestamp, uniqueIndex } from './orm.ts';

const at = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

/**
 * One linking attempt in one browser. The primary key is a SHA-256 of the
 * OAuth `state`, so a database dump does not hand out live states; `data`
 * (PKCE verifier, nonce, provider scratch) is sealed with the keyring.
 */
export const flows = pgTable(
  'flows',
  {
    stateHash: text('state_hash').primaryKey(),
    tenant: text('tenant').notNull(),
    userId: text('user_id').notNull(),
    provider: text('provider').notNull(),
    /** SHA-256 of the browser cookie that started the flow. */
    browserHash: text('browser_hash').notNull(),
    returnTo: text('return_to'),
    /**
     * `open` until the provider says `done` or fails; then `completed`,
     * `failed` or `cancelled` (the user pressed Cancel, or refused access at
     * the provider) until purged.
     */
    status: text('status', { enum: ['open', 'completed', 'failed', 'cancelled'] }).notNull().default('open'),
    /** The last step shown to the browser (form or wait), re-rendered on errors and polls. */
    step: jsonb('step'),
    data: text('data'),
    /** Set while one request is advancing the flow; others are refused until it clears or passes. */
    lockedUntil: at('locked_until'),
    /**
     * A random token of the request holding the flow: saving, ending or
     * letting go of the flow applies only for the holder, so a request whose
     * claim lapsed cannot overwrite what the next one did.
     */
    claimToken: text('claim_token'),
    /**
     * The tenant's provider configuration the flow began with (its version
     * in `tenant_provider_configs`), so the callback uses the same client;
     * null for the environment's configuration.
     */
    configVersion: integer('config_version'),
    /**
     * A sign-in flow (src/http/openid-provider.tsx): the OpenID Provider
     * interaction it finishes. Its `user_id` is empty until the provider says
     * who the person is; then the link is stored under the user found or made.
     */
    signIn: text('sign_in'),
    /**
     * A sign-in an app started over RPC (LoginService.InitiateLogin): the
     * SHA-256 of its session id (`login_sessions.session_hash`). No browser
     * holds it: whoever has its provider URL may finish it, as with seed 003.
     */
    loginSession: text('login_session'),
    /**
     * A web-session sign-in flow (`GET /api/auth/:provider/start`,
     * src/http/web-session.ts): ends with a cookie session and a 303 to
     * `return_to`, the app's `postLoginRedirect`. Its `user_id` is empty
     * until the provider says who the person is, as for `sign_in`.
     */
    webSession: boolean('web_session').notNull().default(false),
    /**
     * Which kind of cookie session a web-session sign-in flow ends in (the
     * `purpose` of src/core/web-sessions.ts): `account` for the account page
     * (src/http/account.tsx); null for the web-session API's (`web`).
     */
    sessionPurpose: text('session_purpose'),
    createdAt: at('created_at').notNull().defaultNow(),
    /** When it stopped being open: the wait API tells a bot about a cancellation after the time it asks from. */
    endedAt: at('ended_at'),
    expiresAt: at('expires_at').notNull(),
  },
  (t) => [index('flows_expires_at_idx').on(t.expiresAt), index('flows_user_idx').on(t.tenant, t.userId, t.provider)],
);

/** Link-context `jti`s already used; kept until the context would no longer verify anyway (`exp` + clock skew). */
export const usedContexts = pgTable(
  'used_contexts',
  {
    tenant: text('tenant').notNull(),
    jti: text('jti').notNull(),
    expiresAt: at('expires_at').notNull(),
    /**
     * SHA-256 of the browser cookie that spent it and of the state of the
     * flow it opened: that browser reopening the link lands in its flow (or
     * on its result); any other browser is told the link was used.
     */
    browserHash: text('browser_hash'),
    stateHash: text('state_hash'),
  },
  (t) => [primaryKey({ columns: [t.tenant, t.jti] }), index('used_contexts_expires_at_idx').on(t.expiresAt)],
);

/** One row per (tenant, user, provider); `credentials` is an AES-256-GCM envelope. */
export const links = pgTable(
  'links',
  {
    tenant: text('tenant').notNull(),
    userId: text('user_id').notNull(),
    provider: text('provider').notNull(),
    externalId: text('external_id').notNull(),
    externalName: text('external_name'),
    status: text('status', { enum: ['active', 'needs_reauth'] }).notNull().default('active'),
    scopes: text('scopes').array().notNull().default([]),
    credentials: text('credentials').notNull(),
    /** When the stored access token stops working, if the provider said. */
    expiresAt: at('expires_at'),
    /**
     * The refresh lease: a random token of the one request (on any instance)
     * refreshing these credentials, and until when. Nobody holds a database
     * connection or lock while the provider answers; others wait for the lease.
     */
    refreshLease: text('refresh_lease'),
    refreshLeaseUntil: at('refresh_lease_until'),
    /**
     * The tenant's provider configuration that made the link: refresh and
     * revocation use that client even after the tenant changes its app.
     * Null for the environment's configuration (the default tenant).
     */
    configVersion: integer('config_version'),
    /**
     * Since when refreshing these credentials fails for a reason that is not
     * the user's (the provider down, our client refused): set with the
     * `link.refresh_failed` event, cleared with `link.recovered`.
     */
    refreshFailedAt: at('refresh_failed_at'),
    linkedAt: at('linked_at').notNull().defaultNow(),
    updatedAt: at('updated_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.tenant, t.userId, t.provider] }),
    index('links_external_idx').on(t.tenant, t.provider, t.externalId),
  ],
);

/** A small key-value store providers may use (through the core), values sealed with the keyring. */
export const kv = pgTable(
  'kv',
  {
    namespace: text('namespace').notNull(),
    key: text('key').notNull(),
    value: text('value').notNull(),
    expiresAt: at('expires_at'),
  },
  (t) => [primaryKey({ columns: [t.namespace, t.key] }), index('kv_expires_at_idx').on(t.expiresAt)],
);

/**
 * The webhook outbox: one row per link event, written in the transaction
 * that changed the link, delivered at least once by whichever instance
 * claims it (`locked_until`), retried with exponential backoff until
 * `delivered` or, after the last attempt, `dead`. `payload` is the exact
 * body that is signed and sent; it never holds a credential.
 */
export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    id: text('id').primaryKey(),
    /** Whose event: the default tenant's go to LINKGATE_WEBHOOK_URL, another tenant's to its own endpoint. */
    tenant: text('tenant').notNull().default('default'),
    type: text('type', { enum: ['link.created', 'link.updated', 'link.deleted', 'link.needs_reauth', 'link.refresh_failed', 'link.recovered', 'link.cancelled'] }).notNull(),
    payload: text('payload').notNull(),
    status: text('status', { enum: ['pending', 'delivered', 'dead'] }).notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: at('next_attempt_at').notNull(),
    lockedUntil: at('locked_until'),
    lastStatus: integer('last_status'),
    lastError: text('last_error'),
    createdAt: at('created_at').notNull(),
    deliveredAt: at('delivered_at'),
  },
  (t) => [index('webhook_deliveries_due_idx').on(t.status, t.nextAttemptAt), index('webhook_deliveries_created_idx').on(t.createdAt)],
);

/**
 * Requests counted per rate-limit key and fixed window, summed over every
 * instance (src/core/rate-limit.ts). The key is an HMAC of the scope and the
 * API key or client address, never the raw value.
 */
export const rateLimits = pgTable(
  'rate_limits',
  {
    keyHash: text('key_hash').notNull(),
    windowStart: at('window_start').notNull(),
    count: integer('count').notNull(),
    expiresAt: at('expires_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.keyHash, t.windowStart] }), index('rate_limits_expires_at_idx').on(t.expiresAt)],
);

/**
 * The bots and apps one gateway serves (src/core/tenants.ts). `default` is
 * always there and is configured by the environment; the others by the
 * operator API, their settings in the tables below.
 */
export const tenants = pgTable('tenants', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  /** Its bots' API rate limit per key `{ limit, windowSeconds }`, instead of LINKGATE_API_RATE_*; null: the gateway's. */
  apiRateLimit: jsonb('api_rate_limit'),
  /** Its pages' name, icon, colour and support link `{ name?, iconUrl?, color?, supportUrl? }`; null: the gateway's. */
  brand: jsonb('brand'),
  /** The provider whose account id is the user id of a sign-in (docs/sign-in.md); null: `discord`. */
  userProvider: text('user_provider'),
  createdAt: at('created_at').notNull().defaultNow(),
});

/** A tenant's bot API keys: only a SHA-256 digest of each is kept; the key is shown once. */
export const tenantApiKeys = pgTable(
  'tenant_api_keys',
  {
    id: text('id').primaryKey(),
    tenant: text('tenant')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    digest: text('digest').notNull(),
    createdAt: at('created_at').notNull().defaultNow(),
    lastUsedAt: at('last_used_at'),
  },
  (t) => [uniqueIndex('tenant_api_keys_digest_idx').on(t.digest), index('tenant_api_keys_tenant_idx').on(t.tenant)],
);

/** A tenant's link-context signing secrets, sealed; several at once while bots move to a new one. */
export const tenantContextSecrets = pgTable(
  'tenant_context_secrets',
  {
    id: text('id').primaryKey(),
    tenant: text('tenant')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    secret: text('secret').notNull(),
    createdAt: at('created_at').notNull().defaultNow(),
    /** Retired secrets verify nothing; the row stays as a record. */
    retiredAt: at('retired_at'),
  },
  (t) => [index('tenant_context_secrets_tenant_idx').on(t.tenant)],
);

/**
 * A tenant's provider apps: the variables the provider module would read from
 * the environment, as one sealed JSON object per version. A change writes a
 * new version; old versions stay for the links they made (their refresh and
 * revocation). `removedAt` on the newest version: the tenant no longer offers it.
 */
export const tenantProviderConfigs = pgTable(
  'tenant_provider_configs',
  {
    tenant: text('tenant')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    provider: text('provider').notNull(),
    version: integer('version').notNull(),
    env: text('env').notNull(),
    createdAt: at('created_at').notNull().defaultNow(),
    removedAt: at('removed_at'),
  },
  (t) => [primaryKey({ columns: [t.tenant, t.provider, t.version] })],
);

/** Where a tenant's link events go, and the secret that signs them (sealed). */
export const tenantWebhooks = pgTable('tenant_webhooks', {
  tenant: text('tenant')
    .primaryKey()
    .references(() => tenants.id, { onDelete: 'cascade' }),
  url: text('url').notNull(),
  secret: text('secret').notNull(),
  updatedAt: at('updated_at').notNull().defaultNow(),
});

/**
 * What panva's oidc-provider stores for each tenant's OpenID Provider
 * (src/core/openid-storage.ts): sessions, interactions, authorization codes,
 * access and refresh tokens, grants. The id is a SHA-256 of oidc-provider's
 * id (for tokens, the token itself) and the payload is sealed, so a dump of
 * this table hands out no live token. The lookup columns are hashed too.
 */
export const oidcPayloads = pgTable(
  'oidc_payloads',
  {
    tenant: text('tenant').notNull(),
    model: text('model').notNull(),
    idHash: text('id_hash').notNull(),
    payload: text('payload').notNull(),
    grantId: text('grant_id'),
    userCodeHash: text('user_code_hash'),
    uid: text('uid'),
    consumedAt: at('consumed_at'),
    expiresAt: at('expires_at'),
  },
  (t) => [
    primaryKey({ columns: [t.tenant, t.model, t.idHash] }),
    index('oidc_payloads_grant_idx').on(t.tenant, t.grantId),
    index('oidc_payloads_user_code_idx').on(t.tenant, t.model, t.userCodeHash),
    index('oidc_payloads_uid_idx').on(t.tenant, t.model, t.uid),
    index('oidc_payloads_expires_at_idx').on(t.expiresAt),
  ],
);

/**
 * A tenant's ID token signing keys (ES256). The private JWK is sealed (AAD:
 * tenant and kid). A key is published from `created_at`, signs from
 * `signs_from` (a next key is published before it is used, so relying
 * parties that cache the JWKS already know it), stops signing at
 * `retired_at`, and leaves the JWKS at `expires_at`, once every token it
 * signed has expired.
 */
export const oidcSigningKeys = pgTable(
  'oidc_signing_keys',
  {
    tenant: text('tenant')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    kid: text('kid').notNull(),
    alg: text('alg').notNull(),
    publicJwk: jsonb('public_jwk').notNull(),
    privateJwk: text('private_jwk').notNull(),
    createdAt: at('created_at').notNull().defaultNow(),
    signsFrom: at('signs_from').notNull(),
    retiredAt: at('retired_at'),
    expiresAt: at('expires_at'),
  },
  (t) => [primaryKey({ columns: [t.tenant, t.kid] })],
);

/**
 * A tenant's apps: the OpenID clients people sign in to. A confidential
 * app's secret is sealed (AAD: tenant and client id) and shown once.
 */
export const oidcApps = pgTable(
  'oidc_apps',
  {
    tenant: text('tenant')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    clientId: text('client_id').notNull(),
    name: text('name').notNull(),
    type: text('type', { enum: ['confidential', 'public'] }).notNull(),
    redirectUris: text('redirect_uris').array().notNull(),
    postLogoutRedirectUris: text('post_logout_redirect_uris').array().notNull().default([]),
    /** The providers its sign-in offers; null: all of the tenant's. */
    providers: text('providers').array(),
    subject: text('subject', { enum: ['user', 'external'] }).notNull().default('user'),
    firstParty: boolean('first_party').notNull().default(true),
    /** May use the device authorization grant (RFC 8628): a CLI or a bot without a browser. */
    deviceFlow: boolean('device_flow').notNull().default(false),
    secret: text('secret'),
    /** Sealed: the HS256 secret of the seed-003 drop-in (LoginService tokens); null for ID tokens. Never answered. */
    legacyJwtSecret: text('legacy_jwt_secret'),
    createdAt: at('created_at').notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.tenant, t.clientId] })],
);

/**
 * A sign-in an app started over RPC (LoginService, docs/grpc.md): keyed by
 * the SHA-256 of its session id, so a dump holds no live session. `result`
 * (the token) is sealed; the row lives until `expires_at` (the sweep), so a
 * late AwaitLogin on any instance still gets the token.
 */
export const loginSessions = pgTable(
  'login_sessions',
  {
    sessionHash: text('session_hash').primaryKey(),
    tenant: text('tenant').notNull(),
    clientId: text('client_id').notNull(),
    provider: text('provider').notNull(),
    status: text('status', { enum: ['pending', 'completed', 'failed'] }).notNull().default('pending'),
    /** The sealed token once completed. */
    result: text('result'),
    /** Why it failed: an error code (`provider_denied`, `account_mismatch`, …). */
    reason: text('reason'),
    createdAt: at('created_at').notNull().defaultNow(),
    /** The person must finish signing in before this (the flow's expiry); then AwaitLogin says `expired`. */
    deadline: at('deadline').notNull(),
    expiresAt: at('expires_at').notNull(),
  },
  (t) => [index('login_sessions_expires_at_idx').on(t.expiresAt)],
);

/**
 * The audit trail (src/core/audit.ts): one row per change made through the
 * operator API, the CLI (and later the console), and per refused operator
 * sign-in. Append-only: the code inserts and selects, never updates or
 * deletes (tenant deletion and the purge job leave it alone); README shows a
 * database role that enforces it. No secret is ever written here: a target
 * is an id, `detail` holds names, versions, URLs and counts.
 */
export const auditEvents = pgTable(
  'audit_events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    at: at('at').notNull().defaultNow(),
    /** Whose data the change was about; null for the gateway's own (a refused sign-in, `audit.export` of every tenant). */
    tenant: text('tenant'),
    /** `operator-key` (the id is a digest prefix of the key), `cli` (no id), `admin` (`<provider>:<externalId>`). */
    actorKind: text('actor_kind', { enum: ['operator-key', 'cli', 'admin'] }).notNull(),
    actorId: text('actor_id'),
    /** `tenant.create`, `api_key.create`, `links.export`, `admin.sign_in_refused`, … (AUDIT_ACTIONS). */
    action: text('action').notNull(),
    /** What it acted on: `api_key:key_…`, `provider:discord`, `link:<user>/<provider>`; null for the tenant itself. */
    target: text('target'),
    outcome: text('outcome', { enum: ['ok', 'refused', 'failed'] }).notNull(),
    /** The error code when not ok. */
    code: text('code'),
    clientAddress: text('client_address'),
    userAgent: text('user_agent'),
    /** Facts without secrets: a key's name, a provider configuration's version and variable names, counts. */
    detail: jsonb('detail'),
  },
  (t) => [index('audit_events_at_idx').on(t.at), index('audit_events_tenant_at_idx').on(t.tenant, t.at)],
);

/**
 * What happened to each link (src/core/link-events.ts), for the console and
 * `GET /api/v1/users/:userId/links/:provider/events`: written in the
 * transaction of the change by the link store, next to its webhook event;
 * `token_served` is one row per link and hour, its `count` added to in
 * batches. Outlives the link (an `unlinked` row stays) until the retention
 * (LINKGATE_LINK_EVENT_RETENTION_DAYS) passes. `detail` never holds a credential.
 */
export const linkEvents = pgTable(
  'link_events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    tenant: text('tenant').notNull(),
    userId: text('user_id').notNull(),
    provider: text('provider').notNull(),
    kind: text('kind', { enum: ['linked', 'relinked', 'refreshed', 'refresh_failed', 'needs_reauth', 'token_served', 'unlinked'] }).notNull(),
    /** When it happened; for `token_served`, the start of the hour counted. */
    at: at('at').notNull(),
    /** How many times: 1, except `token_served`. */
    count: integer('count').notNull().default(1),
    detail: jsonb('detail'),
  },
  (t) => [
    index('link_events_link_idx').on(t.tenant, t.userId, t.provider, t.at),
    index('link_events_at_idx').on(t.at),
    // One counter row per link and hour: the flush adds to it (ON CONFLICT … DO UPDATE).
    uniqueIndex('link_events_served_idx').on(t.tenant, t.userId, t.provider, t.at).where(sql`kind = 'token_served'`),
  ],
);

export type AuditEventRow = typeof auditEvents.$inferSelect;
export type LinkEventRow = typeof linkEvents.$inferSelect;
export type OidcAppRow = typeof oidcApps.$inferSelect;
/**
 * Cookie sessions (src/core/web-sessions.ts): the web-session API's signed-in
 * people, and later the admin console's and the account page's (`purpose`).
 * The id is the SHA-256 of the cookie's random value, never the value; a
 * session ends at `expires_at`, after `idle` without use when its store has an
 * idle timeout, or when `revoked_at` is set. Purged a day after it expired.
 */
export const webSessions = pgTable(
  'web_sessions',
  {
    idHash: text('id_hash').primaryKey(),
    /** Whose sessions these are: `web` (the web-session API); other modules name their own. */
    purpose: text('purpose').notNull(),
    tenant: text('tenant').notNull(),
    userId: text('user_id').notNull(),
    /** The provider the person signed in with and their account id there. */
    provider: text('provider').notNull(),
    externalId: text('external_id').notNull(),
    createdAt: at('created_at').notNull(),
    expiresAt: at('expires_at').notNull(),
    lastSeenAt: at('last_seen_at').notNull(),
    revokedAt: at('revoked_at'),
  },
  (t) => [index('web_sessions_user_idx').on(t.tenant, t.userId), index('web_sessions_expires_at_idx').on(t.expiresAt)],
);

/**
 * One-time invites to the admin console (`linkgate admin invite`): the id is
 * the SHA-256 of the link's token, never the token. Used once, before
 * `expires_at`: `used_by` (`<provider>:<externalId>`) is then an owner of the
 * console, as if LINKGATE_ADMINS listed it (src/core/console-invites.ts).
 */
export const consoleInvites = pgTable(
  'console_invites',
  {
    idHash: text('id_hash').primaryKey(),
    createdAt: at('created_at').notNull(),
    expiresAt: at('expires_at').notNull(),
    usedAt: at('used_at'),
    usedBy: text('used_by'),
  },
  (t) => [index('console_invites_used_by_idx').on(t.usedBy)],
);

/**
 * The console's spent one-time form tokens (src/core/form-tokens.ts): the
 * SHA-256 of each, kept until no session that could send its form again is
 * left. A form whose token is here makes nothing.
 */
export const consoleFormTokens = pgTable(
  'console_form_tokens',
  {
    tokenHash: text('token_hash').primaryKey(),
    /** What its first send made (`api_key:<id>`, the audit row's target), once made: the answer to a second send names it. */
    made: text('made'),
    expiresAt: at('expires_at').notNull(),
  },
  (t) => [index('console_form_tokens_expires_at_idx').on(t.expiresAt)],
);

export type FlowRow = typeof flows.$inferSelect;
export type LoginSessionRow = typeof loginSessions.$inferSelect;
export type WebSessionRow = typeof webSessions.$inferSelect;
export type LinkRow = typeof links.$inferSelect;
export type WebhookDeliveryRow = typeof webhookDeliveries.$inferSelect;
export type TenantRow = typeof tenants.$inferSelect;
