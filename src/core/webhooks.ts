/**
 * Webhooks: link events from a database outbox, delivered at least once.
 *
 * The link store writes an event row in the same transaction as the change
 * (`enqueueLinkEvent`), so an event exists exactly when its change does. A
 * worker in every instance claims due rows (`FOR UPDATE SKIP LOCKED`, then a
 * short `locked_until` lease, so two instances never send one row at once
 * and a crashed instance's claim lapses), POSTs them signed, and marks them
 * `delivered`, or schedules the next attempt with exponential backoff, or,
 * after the last attempt, `dead`. Receivers must tolerate duplicates (a
 * crash between sending and marking resends): the event `id` is stable.
 *
 * Signature (the format is Stripe's and Slack's, a fact worth reusing):
 * `Linkgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { and, desc, eq, inArray, isNull, lte, ne, or, sql } from '../db/orm.ts';
import type { Logger } from 'pino';
import type { Database, Db } from '../db/client.ts';
import { tenantWebhooks, webhookDeliveries, type LinkRow, type WebhookDeliveryRow } from '../db/schema.ts';
import { DEFAULT_TENANT } from './ids.ts';
import { toApiLink } from './links.ts';
import type { Metrics } from './metrics.ts';
import { publicOnlyFetch } from './outbound.ts';

export type LinkEventType = 'link.created' | 'link.updated' | 'link.deleted' | 'link.needs_reauth' | 'link.refresh_failed' | 'link.recovered';

/** What `link.refresh_failed` adds: the error code, and whether the next use of the link tries again by itself. */
export interface RefreshFailure {
  reason: string;
  willRetry: boolean;
}

/**
 * Why a user did not link: `user` pressed Cancel on our page, `provider_denied`
 * refused access at the provider's.
 */
export type CancelReason = 'user' | 'provider_denied';

/** LINKGATE_WEBHOOK_MAX_ATTEMPTS and _RETRY_BASE_SECONDS when unset (src/config.ts has the same defaults); tenants' endpoints use them too. */
export const WEBHOOK_DEFAULTS = { maxAttempts: 10, retryBaseMs: 10_000 } as const;

/** How long a claimed delivery is ours before another instance may take it. */
const CLAIM_MS = 60_000;
/** The longest wait between two attempts. */
const MAX_BACKOFF_MS = 60 * 60 * 1000;
const DELIVERY_TIMEOUT_MS = 10_000;
/** Rows claimed per round. */
const BATCH = 20;

/**
 * Writes one event row. The default tenant's callers write only when the
 * environment configures a webhook; another tenant's row is written only if
 * that tenant has an endpoint, decided in the same statement (and so in the
 * change's transaction).
 */
async function insertEvent(db: Db, tenant: string, event: { id: string; type: WebhookDeliveryRow['type']; payload: string }, now: Date): Promise<void> {
  if (tenant === DEFAULT_TENANT) {
    await db.insert(webhookDeliveries).values({ ...event, nextAttemptAt: now, createdAt: now });
    return;
  }
  const at = now.toISOString();
  await db.execute(sql`
    insert into ${webhookDeliveries} (id, tenant, type, payload, next_attempt_at, created_at)
    select ${event.id}, ${tenant}, ${event.type}, ${event.payload}, ${at}::timestamptz, ${at}::timestamptz
    where exists (select 1 from ${tenantWebhooks} where ${tenantWebhooks.tenant} = ${tenant})`);
}

/** Writes the event for a change to `row` on `db` (the change's own transaction). */
export async function enqueueLinkEvent(db: Db, type: LinkEventType, row: LinkRow, now: Date, refreshFailure?: RefreshFailure): Promise<void> {
  const id = `evt_${randomUUID()}`;
  const payload = JSON.stringify({ id, type, createdAt: now.toISOString(), link: toApiLink(row), ...(refreshFailure ? { refreshFailure } : {}) });
  await insertEvent(db, row.tenant, { id, type, payload }, now);
}

/**
 * Writes `link.cancelled` (the user gave up linking) on `db`, in the
 * transaction that ended the flow; for the default tenant only when
 * `defaultEvents` (the environment configures a webhook).
 */
export async function enqueueCancelEvent(db: Db, cancel: { tenant: string; userId: string; provider: string; reason: CancelReason }, now: Date, defaultEvents: boolean): Promise<void> {
  if (cancel.tenant === DEFAULT_TENANT && !defaultEvents) return;
  const id = `evt_${randomUUID()}`;
  const payload = JSON.stringify({ id, type: 'link.cancelled', createdAt: now.toISOString(), cancellation: { userId: cancel.userId, provider: cancel.provider, reason: cancel.reason } });
  await insertEvent(db, cancel.tenant, { id, type: 'link.cancelled', payload }, now);
}

/** The `Linkgate-Signature` header value for `body` sent at `timestamp` (unix seconds). */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `t=${timestamp},v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** The wait before attempt `attempts + 1`: base, 2×base, 4×base, … up to an hour. */
export function backoffMs(attempts: number, baseMs: number): number {
  return Math.min(baseMs * 2 ** Math.max(0, attempts - 1), MAX_BACKOFF_MS);
}

/** Where a tenant's events go and the secret that signs them. */
export interface WebhookEndpoint {
  url: URL;
  secret: string;
}

export interface WebhookWorkerDeps {
  database: Database;
  /** The default tenant's endpoint (LINKGATE_WEBHOOK_URL and _SECRET). */
  url?: URL;
  secret?: string;
  /** Every tenant's endpoint (src/core/tenants.ts); without it only the default tenant's events are sent. */
  endpoint?: (tenant: string) => Promise<WebhookEndpoint | undefined>;
  maxAttempts: number;
  retryBaseMs: number;
  logger: Logger;
  metrics?: Metrics;
  now?: () => number;
  fetch?: typeof fetch;
  /** Production: a tenant's endpoint (set through the operator API or the console) is reached only on a public address (`publicOnlyFetch`). */
  publicOnlyForTenants?: boolean;
  /** How often an idle worker looks for due deliveries (default 1 s). */
  intervalMs?: number;
}

export function createWebhookWorker(deps: WebhookWorkerDeps) {
  const now = deps.now ?? Date.now;
  const fetchImpl = deps.fetch ?? globalThis.fetch;
  const tenantFetch = deps.publicOnlyForTenants ? publicOnlyFetch(fetchImpl) : fetchImpl;
  const db = deps.database.db;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<number> | undefined;
  let stopped = true;

  async function claim(): Promise<WebhookDeliveryRow[]> {
    const at = new Date(now());
    const until = new Date(at.getTime() + CLAIM_MS);
    return db.transaction(async (tx) => {
      const due = await tx
        .select({ id: webhookDeliveries.id })
        .from(webhookDeliveries)
        .where(
          and(
            eq(webhookDeliveries.status, 'pending'),
            lte(webhookDeliveries.nextAttemptAt, at),
            or(isNull(webhookDeliveries.lockedUntil), lte(webhookDeliveries.lockedUntil, at)),
          ),
        )
        .orderBy(webhookDeliveries.createdAt)
        .limit(BATCH)
        .for('update', { skipLocked: true });
      if (due.length === 0) return [];
      return tx
        .update(webhookDeliveries)
        .set({ lockedUntil: until, attempts: sql`${webhookDeliveries.attempts} + 1` })
        .where(inArray(webhookDeliveries.id, due.map((d) => d.id)))
        .returning();
    });
  }

  const environmentEndpoint = deps.url && deps.secret ? { url: deps.url, secret: deps.secret } : undefined;
  const endpointOf = deps.endpoint ?? (async (tenant: string) => (tenant === DEFAULT_TENANT ? environmentEndpoint : undefined));

  async function deliver(row: WebhookDeliveryRow): Promise<void> {
    const sentAt = Math.floor(now() / 1000);
    let status: number | undefined;
    let error: string | undefined;
    const endpoint = await endpointOf(row.tenant).catch(() => undefined);
    if (!endpoint) {
      // The tenant removed its endpoint (or is gone): nowhere to send it. The log keeps it; a retry sends it once there is one.
      await db
        .update(webhookDeliveries)
        .set({ status: 'dead', lastStatus: null, lastError: 'no webhook endpoint is configured for this tenant', lockedUntil: null })
        .where(eq(webhookDeliveries.id, row.id));
      deps.metrics?.inc('linkgate_webhook_deliveries_total', { tenant: row.tenant, outcome: 'dead' });
      return;
    }
    try {
      const response = await (row.tenant === DEFAULT_TENANT ? fetchImpl : tenantFetch)(endpoint.url, {
        method: 'POST',
        redirect: 'manual',
        signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Linkgate-Webhooks/1',
          'linkgate-event-id': row.id,
          'linkgate-event-type': row.type,
          'linkgate-signature': signWebhook(endpoint.secret, sentAt, row.payload),
        },
        body: row.payload,
      });
      status = response.status;
      await response.body?.cancel().catch(() => {});
      if (!response.ok) error = `the receiver answered ${response.status}`;
    } catch (cause) {
      error = cause instanceof Error && cause.name === 'TimeoutError' ? 'the receiver did not answer in time' : 'the receiver could not be reached';
    }
    const at = new Date(now());
    if (error === undefined) {
      await db
        .update(webhookDeliveries)
        .set({ status: 'delivered', deliveredAt: at, lastStatus: status ?? null, lastError: null, lockedUntil: null })
        .where(eq(webhookDeliveries.id, row.id));
      deps.logger.debug({ event: row.id, type: row.type, attempts: row.attempts }, 'webhook delivered');
      deps.metrics?.inc('linkgate_webhook_deliveries_total', { tenant: row.tenant, outcome: 'delivered' });
      return;
    }
    const dead = row.attempts >= deps.maxAttempts;
    deps.metrics?.inc('linkgate_webhook_deliveries_total', { tenant: row.tenant, outcome: dead ? 'dead' : 'failed' });
    await db
      .update(webhookDeliveries)
      .set({
        status: dead ? 'dead' : 'pending',
        lastStatus: status ?? null,
        lastError: error,
        lockedUntil: null,
        nextAttemptAt: new Date(at.getTime() + backoffMs(row.attempts, deps.retryBaseMs)),
      })
      .where(eq(webhookDeliveries.id, row.id));
    deps.logger.warn({ event: row.id, type: row.type, attempts: row.attempts, status, dead }, dead ? 'webhook dead after its last attempt' : 'webhook attempt failed; will retry');
  }

  /** One round: claims what is due and delivers it; the number of attempts made. */
  async function runOnce(): Promise<number> {
    const rows = await claim();
    await Promise.all(rows.map(deliver));
    return rows.length;
  }

  function schedule(delayMs: number) {
    if (stopped) return;
    timer = setTimeout(() => {
      running = runOnce()
        .catch((error: unknown) => {
          deps.logger.warn({ errorName: error instanceof Error ? error.name : 'unknown' }, 'webhook round failed');
          return 0;
        })
        .finally(() => {
          running = undefined;
        });
      // A full batch means more may be waiting: go again at once.
      void running.then((count) => schedule(count >= BATCH ? 0 : (deps.intervalMs ?? 1000)));
    }, delayMs);
    timer.unref();
  }

  return {
    runOnce,
    start() {
      if (!stopped) return;
      stopped = false;
      schedule(0);
    },
    /** Stops looking for work and waits for the round in flight. */
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}

export type WebhookWorker = ReturnType<typeof createWebhookWorker>;

/** What the delivery log API shows of a row (the payload is the event itself). */
export function toApiDelivery(row: WebhookDeliveryRow) {
  return {
    id: row.id,
    type: row.type,
    status: row.status,
    attempts: row.attempts,
    lastStatus: row.lastStatus,
    lastError: row.lastError,
    createdAt: row.createdAt.toISOString(),
    nextAttemptAt: row.status === 'pending' ? row.nextAttemptAt.toISOString() : null,
    deliveredAt: row.deliveredAt?.toISOString() ?? null,
    event: JSON.parse(row.payload) as unknown,
  };
}

export async function listDeliveries(db: Db, options: { tenant: string; status?: WebhookDeliveryRow['status']; limit: number }): Promise<WebhookDeliveryRow[]> {
  return db
    .select()
    .from(webhookDeliveries)
    .where(and(eq(webhookDeliveries.tenant, options.tenant), options.status ? eq(webhookDeliveries.status, options.status) : undefined))
    .orderBy(desc(webhookDeliveries.createdAt), desc(webhookDeliveries.id))
    .limit(options.limit);
}

/** Queues a delivery again now (a dead one gets a fresh set of attempts); `undefined` if there is no such delivery. */
export async function retryDelivery(db: Db, tenant: string, id: string, now: Date): Promise<WebhookDeliveryRow | undefined> {
  const [row] = await db
    .update(webhookDeliveries)
    .set({ status: 'pending', attempts: 0, nextAttemptAt: now, lockedUntil: null })
    // Not while a worker holds it (a send in flight): that send ends it, and a second claim would send it twice.
    .where(
      and(
        eq(webhookDeliveries.tenant, tenant),
        eq(webhookDeliveries.id, id),
        ne(webhookDeliveries.status, 'delivered'),
        or(isNull(webhookDeliveries.lockedUntil), lte(webhookDeliveries.lockedUntil, now)),
      ),
    )
    .returning();
  return row;
}
