/**
 * The audit trail: who changed what, through which door, and how it ended.
 * One row per change made through the operator API (src/http/admin.ts), the
 * `linkgate` command (src/cli/) and, later, the console; one per refused
 * operator sign-in. Append-only by construction: this module inserts and
 * reads, and nothing in the code updates or deletes a row (the purge job and
 * tenant deletion leave the table alone; README shows a database role that
 * makes PostgreSQL enforce it). No secret goes in: targets are ids, `detail`
 * holds names, versions, variable names, URLs and counts; the callers below
 * never pass a key, a secret or a token, and test/http/audit.test.ts looks
 * for every secret it created in every row and in the CSV.
 */
import * as v from 'valibot';
import type { SQL } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { and, desc, eq, gte, lt, lte } from '../db/orm.ts';
import { auditEvents, type AuditEventRow } from '../db/schema.ts';
import { LinkgateError } from './errors.ts';

/** What can be audited; the console shows them by these names. */
export const AUDIT_ACTIONS = [
  'tenant.create',
  'tenant.update',
  'tenant.delete',
  'api_key.create',
  'api_key.revoke',
  'context_secret.create',
  'context_secret.retire',
  'provider.configure',
  'provider.remove',
  'app.create',
  'app.delete',
  'signing_key.rotate',
  'webhook.set',
  'webhook.remove',
  'links.import',
  'links.export',
  'link.delete',
  'link.refresh',
  'link.relink_url',
  'webhook.retry',
  'audit.export',
  'database.migrate',
  'keys.reencrypt',
  'annie_mei.import',
  'annie_mei.export',
  'admin.sign_in',
  'admin.sign_out',
  'admin.invite',
  'admin.invite_accept',
  'admin.invite_revoke',
  'admin.remove',
  'admin.sign_in_refused',
  'operator_api.refused',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export const ACTOR_KINDS = ['operator-key', 'cli', 'admin'] as const;

/**
 * Who did it: an operator API key (by `keyDigestId`, never the key), the
 * command line on the gateway's machine, or a console admin
 * (`<provider>:<externalId>`). A refused sign-in has the identity it tried,
 * or `operator-key` with the id `unknown`.
 */
export type Actor = { kind: 'operator-key'; id: string } | { kind: 'cli' } | { kind: 'admin'; id: string };

export type AuditOutcome = 'ok' | 'refused' | 'failed';

/** A value of `detail`: plain facts only. */
export type AuditFact = string | number | boolean | null | readonly string[];

export interface AuditEntry {
  actor: Actor;
  action: AuditAction;
  /** Whose data; null or absent for the gateway's own. */
  tenant?: string | null;
  target?: string | null;
  outcome: AuditOutcome;
  /** The error code when the outcome is not ok. */
  code?: string | null;
  clientAddress?: string | null;
  userAgent?: string | null;
  detail?: Readonly<Record<string, AuditFact>>;
  at: Date;
}

/** `cli`, `operator-key:3f9a0c…`, `admin:discord:80351110224678912`. */
export const actorName = (actor: Actor): string => (actor.kind === 'cli' ? 'cli' : `${actor.kind}:${actor.id}`);

/** How an error ends an audited change: a refusal (4xx: the request was wrong or not allowed) or a failure. */
export function outcomeOf(error: unknown): { outcome: AuditOutcome; code: string } {
  if (error instanceof LinkgateError) return { outcome: error.status < 500 ? 'refused' : 'failed', code: error.code };
  // The command line's own usage errors carry a code too (src/cli/cli.ts).
  if (error instanceof Error && 'code' in error && typeof error.code === 'string' && /^[a-z_]{1,40}$/.test(error.code)) return { outcome: 'refused', code: error.code };
  return { outcome: 'failed', code: 'internal_error' };
}

// Header values and a refused request's path are the client's: kept short, and only printable.
const clean = (text: string | null | undefined, max: number) => (text == null ? null : text.replace(/[^\x20-\x7e]/g, '?').slice(0, max));

/** Appends one row. */
export async function record(db: Db, entry: AuditEntry): Promise<void> {
  await db.insert(auditEvents).values({
    at: entry.at,
    tenant: entry.tenant ?? null,
    actorKind: entry.actor.kind,
    actorId: entry.actor.kind === 'cli' ? null : entry.actor.id,
    action: entry.action,
    target: clean(entry.target, 300),
    outcome: entry.outcome,
    code: entry.outcome === 'ok' ? null : (entry.code ?? null),
    clientAddress: clean(entry.clientAddress, 64),
    userAgent: clean(entry.userAgent, 256),
    detail: entry.detail ?? null,
  });
}

// ── Reading ─────────────────────────────────────────────────────────────────

const IsoTime = (name: string) =>
  v.pipe(v.string(), v.isoTimestamp(`${name} must be an ISO 8601 time such as 2026-12-03T12:00:00Z`), v.transform((text) => new Date(text)));

/** The filters of `GET /api/admin/v1/audit` and `audit.csv`, from the query. */
export const AuditQuery = v.object({
  tenant: v.optional(v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,39}$/, 'tenant must be a tenant id'))),
  action: v.optional(v.picklist(AUDIT_ACTIONS, `action must be one of ${AUDIT_ACTIONS.join(', ')}`)),
  actor: v.optional(
    v.pipe(
      v.string(),
      v.maxLength(300, 'actor is too long'),
      v.regex(/^(cli|operator-key(:[0-9a-z]{1,64})?|admin(:[a-z][a-z0-9_-]{0,31}:[^\s]{1,256})?)$/, 'actor must be cli, operator-key, operator-key:<id>, admin or admin:<provider>:<externalId>'),
    ),
  ),
  since: v.optional(IsoTime('since')),
  until: v.optional(IsoTime('until')),
  cursor: v.optional(v.pipe(v.string(), v.regex(/^\d{1,15}$/, 'cursor must be the nextCursor of a previous page'), v.transform(Number))),
  limit: v.optional(
    v.pipe(v.string(), v.regex(/^\d{1,3}$/, 'limit must be a whole number from 1 to 500'), v.transform(Number), v.minValue(1, 'limit must be at least 1'), v.maxValue(500, 'limit must be at most 500')),
    '100',
  ),
});
export type AuditFilter = Omit<v.InferOutput<typeof AuditQuery>, 'limit'> & { limit?: number };

/** A row as the operator API answers it (and the console shows it). */
export interface AuditEvent {
  id: string;
  at: string;
  tenant: string | null;
  actor: string;
  action: string;
  target: string | null;
  outcome: AuditOutcome;
  code: string | null;
  clientAddress: string | null;
  userAgent: string | null;
  detail: Record<string, AuditFact> | null;
}

const Detail = v.nullable(v.record(v.string(), v.union([v.string(), v.number(), v.boolean(), v.null(), v.array(v.string())])));

export function toAuditEvent(row: AuditEventRow): AuditEvent {
  return {
    id: String(row.id),
    at: row.at.toISOString(),
    tenant: row.tenant,
    actor: row.actorKind === 'cli' ? 'cli' : `${row.actorKind}:${row.actorId ?? ''}`,
    action: row.action,
    target: row.target,
    outcome: row.outcome,
    code: row.code,
    clientAddress: row.clientAddress,
    userAgent: row.userAgent,
    // Stored by record() above; read back through the same shape rather than trusted.
    detail: v.parse(Detail, row.detail ?? null),
  };
}

function conditions(filter: AuditFilter): SQL[] {
  const where: SQL[] = [];
  if (filter.tenant !== undefined) where.push(eq(auditEvents.tenant, filter.tenant));
  if (filter.action !== undefined) where.push(eq(auditEvents.action, filter.action));
  if (filter.actor !== undefined) {
    const at = filter.actor.indexOf(':');
    const kind = (at < 0 ? filter.actor : filter.actor.slice(0, at)) as Actor['kind'];
    where.push(eq(auditEvents.actorKind, kind));
    if (at >= 0) where.push(eq(auditEvents.actorId, filter.actor.slice(at + 1)));
  }
  if (filter.since !== undefined) where.push(gte(auditEvents.at, filter.since));
  if (filter.until !== undefined) where.push(lte(auditEvents.at, filter.until));
  if (filter.cursor !== undefined) where.push(lt(auditEvents.id, filter.cursor));
  return where;
}

/** Newest first, `limit` (100) at a time; `nextCursor` asks for the page after, null on the last. */
export async function list(db: Db, filter: AuditFilter): Promise<{ events: AuditEvent[]; nextCursor: string | null }> {
  const limit = filter.limit ?? 100;
  const rows = await db
    .select()
    .from(auditEvents)
    .where(and(...conditions(filter)))
    .orderBy(desc(auditEvents.id))
    .limit(limit + 1);
  const page = rows.slice(0, limit);
  return { events: page.map(toAuditEvent), nextCursor: rows.length > limit ? String(page.at(-1)!.id) : null };
}

// ── CSV ─────────────────────────────────────────────────────────────────────

export const AUDIT_CSV_COLUMNS = ['id', 'at', 'tenant', 'actor', 'action', 'target', 'outcome', 'code', 'clientAddress', 'userAgent', 'detail'] as const;

/**
 * One CSV field (RFC 4180 §2: quoted when it holds a quote, comma or line
 * break; quotes doubled). A value a spreadsheet would run as a formula (a
 * client's user agent starting with `=`) gets a leading `'`, as OWASP's CSV
 * injection advice says.
 */
export function csvField(value: string | null): string {
  if (value === null) return '';
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

export function csvLine(event: AuditEvent): string {
  const { detail, ...rest } = event;
  const cells = AUDIT_CSV_COLUMNS.map((column) => (column === 'detail' ? (detail === null ? null : JSON.stringify(detail)) : rest[column]));
  return `${cells.map(csvField).join(',')}\r\n`;
}

/** Every row the filter selects (the cursor and limit aside), newest first, as CSV lines after a header; read 500 at a time. */
export async function* csvExport(db: Db, filter: AuditFilter): AsyncGenerator<string> {
  yield `${AUDIT_CSV_COLUMNS.join(',')}\r\n`;
  let cursor: number | undefined;
  for (;;) {
    const { cursor: _, limit: __, ...rest } = filter;
    const page = await list(db, { ...rest, ...(cursor === undefined ? {} : { cursor }), limit: 500 });
    for (const event of page.events) yield csvLine(event);
    if (page.nextCursor === null) return;
    cursor = Number(page.nextCursor);
  }
}
