import { index, integer, jsonb, pgTable, primaryKey, text, timestamp } from './orm.ts';

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
    type: text('type', { enum: ['link.created', 'link.updated', 'link.deleted', 'link.needs_reauth', 'link.cancelled'] }).notNull(),
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

export type FlowRow = typeof flows.$inferSelect;
export type LinkRow = typeof links.$inferSelect;
export type WebhookDeliveryRow = typeof webhookDeliveries.$inferSelect;
