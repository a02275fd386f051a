/**
 * The Annie Mei bot's view of the database, kept by Linkgate.
 *
 * The bot (annie-mei/annie-mei) never calls an HTTP API: it reads and
 * deletes rows of its old auth service's tables in the same PostgreSQL
 * database (docs/oauth-contract.md and docs/database-schemas.md there):
 *
 *   SELECT discord_user_id, anilist_id, anilist_username
 *     FROM annie_auth.oauth_credentials WHERE discord_user_id = $1   (or = ANY($1))
 *   DELETE FROM annie_auth.oauth_credentials WHERE discord_user_id = $1;
 *   DELETE FROM annie_auth.oauth_sessions WHERE discord_user_id = $1;  (one transaction)
 *
 * with a role granted only USAGE on `annie_auth` and SELECT, DELETE on the
 * two tables. Linkgate keeps both names as views over its own tables: the
 * AniList links of the default tenant (no token columns), and the open
 * AniList flows. A DELETE through either view is an `INSTEAD OF` trigger
 * running as Linkgate's role (SECURITY DEFINER): a real unlink, with its
 * `link.deleted` webhook event in the same transaction.
 *
 * On a database where `annie_auth.oauth_credentials` is still the old
 * service's TABLE, `takeOver` first imports every row as a link (sealed with
 * the keyring), in one transaction with renaming the old tables to
 * `…_legacy` (their token columns cleared) and putting the views in their
 * place with the same grants. `giveBack` is the way back.
 *
 * PostgreSQL only: nothing else can connect to the embedded database.
 */
import type { Logger } from 'pino';
import * as v from 'valibot';
import type { Db } from '../../db/client.ts';
import { sql } from '../../db/orm.ts';
import { links } from '../../db/schema.ts';
import type { Keyring } from '../../core/crypto.ts';
import { DEFAULT_TENANT, userIdSchema } from '../../core/ids.ts';
import { createLinkStore, linkAad } from '../../core/links.ts';
import { databaseFailure, logCause } from '../../db/errors.ts';
import type { Metrics } from '../../core/metrics.ts';
import type { Database } from '../../db/client.ts';
import type { Credentials } from '../../provider.ts';

export const SCHEMA = 'annie_auth';
const PROVIDER = 'anilist';
/** Channel a delete through the views is announced on, so every instance can count it (metrics). */
export const UNLINK_CHANNEL = 'linkgate_annie_mei_unlink';
/** One Linkgate instance at a time installs, imports or gives back. */
const LOCK = sql`select pg_advisory_xact_lock(hashtext('linkgate:annie-mei'))`;

type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];

/** A failure of the takeover or the way back: one line for the operator, naming no value. */
export class AnnieMeiError extends Error {
  override name = 'AnnieMeiError';
}

async function rows(db: Db | Tx, query: ReturnType<typeof sql>): Promise<unknown[]> {
  const result: unknown = await db.execute(query);
  // postgres.js answers an array of rows (PGlite an object with `rows`, but this module runs on PostgreSQL only).
  return Array.isArray(result) ? result : [];
}

const Kind = v.object({ name: v.string(), kind: v.string() });

/** What `annie_auth.<name>` is now: the old service's table, our view, or nothing. */
async function relationKinds(db: Db | Tx): Promise<Map<string, 'table' | 'view' | 'other'>> {
  const found = v.parse(
    v.array(Kind),
    await rows(
      db,
      sql`select c.relname as name, c.relkind::text as kind from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = ${SCHEMA} and c.relname in ('oauth_credentials', 'oauth_sessions', 'oauth_credentials_legacy', 'oauth_sessions_legacy')`,
    ),
  );
  return new Map(found.map(({ name, kind }) => [name, kind === 'r' || kind === 'p' ? 'table' : kind === 'v' ? 'view' : 'other']));
}

/** The schema Linkgate's own tables are in (its role's search path decides; usually `public`). */
async function ownSchema(db: Db | Tx): Promise<string> {
  const [row] = v.parse(
    v.array(v.object({ schema: v.nullable(v.string()) })),
    await rows(db, sql`select n.nspname as schema from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = to_regclass('links')`),
  );
  if (!row?.schema) throw new AnnieMeiError('the links table is missing: run the migrations first');
  return row.schema;
}

const ident = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** ISO 8601 in UTC with milliseconds, as JavaScript's toISOString writes the API's timestamps. */
const iso = (column: string) => `to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/**
 * The views and their triggers, (re)created: `create or replace` keeps the
 * grants an operator gave the bot's role. `webhooks`: whether a delete
 * through the view writes a `link.deleted` event to the outbox (as the API
 * does when LINKGATE_WEBHOOK_URL is set).
 */
async function createViews(tx: Tx, own: string, webhooks: boolean): Promise<void> {
  const s = ident(SCHEMA);
  const o = ident(own);
  await tx.execute(sql.raw(`create schema if not exists ${s}`));
  // Column names and types are the old tables' (annie-mei/auth migrations), so the bot's queries and decoding do not change.
  await tx.execute(
    sql.raw(`create or replace view ${s}.oauth_credentials as
      select l.user_id as discord_user_id,
             l.external_id::bigint as anilist_id,
             l.external_name as anilist_username,
             l.expires_at as token_expires_at,
             l.updated_at as token_updated_at,
             l.linked_at as created_at,
             case when l.status = 'needs_reauth' then l.updated_at end as relink_required_at,
             case when l.status = 'needs_reauth' then 'needs_reauth'::text end as relink_reason
        from ${o}.links l
       where l.tenant = '${DEFAULT_TENANT}' and l.provider = '${PROVIDER}' and l.external_id ~ '^[0-9]{1,18}$'`),
  );
  await tx.execute(
    sql.raw(`create or replace view ${s}.oauth_sessions as
      select f.state_hash as state, f.user_id as discord_user_id, f.expires_at, null::timestamptz as used_at, f.created_at
        from ${o}.flows f
       where f.tenant = '${DEFAULT_TENANT}' and f.provider = '${PROVIDER}' and f.status = 'open'
         -- Linking flows only: a sign-in's user is not known yet (its user_id is empty), and no row of the bot's.
         and f.user_id <> ''`),
  );
  const event = webhooks
    ? `event_id := 'evt_' || gen_random_uuid()::text;
       insert into ${o}.webhook_deliveries (id, type, payload, status, attempts, next_attempt_at, created_at)
       values (event_id, 'link.deleted', json_build_object(
         'id', event_id, 'type', 'link.deleted', 'createdAt', ${iso('at')},
         'link', json_build_object(
           'userId', gone.user_id, 'provider', gone.provider, 'externalId', gone.external_id, 'externalName', gone.external_name,
           'status', gone.status, 'scopes', to_json(gone.scopes), 'linkedAt', ${iso('gone.linked_at')}, 'updatedAt', ${iso('gone.updated_at')},
           'expiresAt', ${iso('gone.expires_at')}))::text, 'pending', 0, at, at);`
    : '';
  // search_path pinned: a definer function must not resolve names through the caller's schemas.
  await tx.execute(
    sql.raw(`create or replace function ${s}.linkgate_unlink() returns trigger
      language plpgsql security definer set search_path = pg_catalog, pg_temp as $body$
      declare
        gone ${o}.links%rowtype;
        event_id text;
        at timestamptz := date_trunc('milliseconds', now());
      begin
        delete from ${o}.links
         where tenant = '${DEFAULT_TENANT}' and provider = '${PROVIDER}' and user_id = old.discord_user_id
        returning * into gone;
        if not found then return null; end if;
        -- The link's own event log, as the link store writes it (src/core/link-events.ts).
        insert into ${o}.link_events (tenant, user_id, provider, kind, at, count, detail)
        values (gone.tenant, gone.user_id, gone.provider, 'unlinked', at, 1,
                jsonb_build_object('externalId', gone.external_id, 'externalName', gone.external_name, 'via', 'annie_auth'));
        ${event}
        perform pg_notify('${UNLINK_CHANNEL}', '${PROVIDER}');
        return old;
      end $body$`),
  );
  await tx.execute(
    sql.raw(`create or replace function ${s}.linkgate_end_sessions() returns trigger
      language plpgsql security definer set search_path = pg_catalog, pg_temp as $body$
      begin
        update ${o}.flows set status = 'failed', data = null, step = null, locked_until = null, claim_token = null,
               ended_at = date_trunc('milliseconds', now())
         where state_hash = old.state and status = 'open';
        if not found then return null; end if;
        return old;
      end $body$`),
  );
  // Only ever run as triggers; nobody calls them directly.
  await tx.execute(sql.raw(`revoke all on function ${s}.linkgate_unlink(), ${s}.linkgate_end_sessions() from public`));
  // Dropped and made again (`create or replace trigger` needs PostgreSQL 14); a view's grants are not the trigger's.
  for (const [trigger, view, fn] of [['linkgate_unlink', 'oauth_credentials', 'linkgate_unlink'], ['linkgate_end_sessions', 'oauth_sessions', 'linkgate_end_sessions']] as const) {
    await tx.execute(sql.raw(`drop trigger if exists ${trigger} on ${s}.${view}`));
    await tx.execute(sql.raw(`create trigger ${trigger} instead of delete on ${s}.${view} for each row execute function ${s}.${fn}()`));
  }
}

async function dropViews(tx: Tx): Promise<void> {
  const s = ident(SCHEMA);
  const kinds = await relationKinds(tx);
  if (kinds.get('oauth_credentials') === 'view') await tx.execute(sql.raw(`drop view ${s}.oauth_credentials`));
  if (kinds.get('oauth_sessions') === 'view') await tx.execute(sql.raw(`drop view ${s}.oauth_sessions`));
  await tx.execute(sql.raw(`drop function if exists ${s}.linkgate_unlink(), ${s}.linkgate_end_sessions()`));
}

// ---------------------------------------------------------------- the old service's rows

/** postgres.js reads bigint as text; both are taken. */
const AniListId = v.pipe(
  v.union([v.pipe(v.string(), v.regex(/^[0-9]{1,18}$/, 'anilist_id must be a positive whole number')), v.pipe(v.number(), v.integer(), v.minValue(0)), v.bigint()]),
  v.transform(String),
);
/** Timestamps are read as epoch milliseconds (see readLegacyRows), whatever the driver does with timestamptz. */
const Timestamp = v.nullish(
  v.pipe(
    v.number('must be a timestamp'),
    v.check((ms) => Number.isFinite(ms), 'must be a finite timestamp'),
    v.transform((ms) => new Date(Math.round(ms))),
  ),
);
const TIMESTAMP_COLUMNS = new Set(['token_expires_at', 'token_updated_at', 'created_at', 'relink_required_at']);

/** A row of the old `oauth_credentials` table, as its migrations made it (the later columns may be missing). */
const LegacyRow = v.object({
  discord_user_id: userIdSchema('discord_user_id'),
  anilist_id: AniListId,
  anilist_username: v.nullish(v.pipe(v.string('anilist_username must be text'), v.maxLength(256, 'anilist_username must be at most 256 characters'))),
  access_token: v.pipe(v.string('access_token must be text'), v.minLength(1, 'access_token must not be empty')),
  refresh_token: v.nullish(v.string('refresh_token must be text')),
  token_expires_at: Timestamp,
  token_updated_at: Timestamp,
  created_at: Timestamp,
  relink_required_at: Timestamp,
});
type LegacyRow = v.InferOutput<typeof LegacyRow>;

const OPTIONAL_COLUMNS = ['anilist_username', 'refresh_token', 'token_expires_at', 'token_updated_at', 'created_at', 'relink_required_at'] as const;

async function legacyColumns(db: Db | Tx, table: string): Promise<Set<string>> {
  const found = v.parse(
    v.array(v.object({ name: v.string() })),
    await rows(db, sql`select column_name as name from information_schema.columns where table_schema = ${SCHEMA} and table_name = ${table}`),
  );
  return new Set(found.map((c) => c.name));
}

/** Every row of the old table, each checked; a bad one stops everything, naming its fingerprint and what is wrong. */
async function readLegacyRows(tx: Db | Tx, fingerprint: (userId: string) => string): Promise<LegacyRow[]> {
  const columns = await legacyColumns(tx, 'oauth_credentials');
  const select = ['discord_user_id', 'anilist_id', 'access_token', ...OPTIONAL_COLUMNS.filter((c) => columns.has(c))]
    .map((c) => (TIMESTAMP_COLUMNS.has(c) ? `(extract(epoch from ${ident(c)}) * 1000)::float8 as ${ident(c)}` : ident(c)))
    .join(', ');
  const order = columns.has('created_at') ? 'created_at nulls first, discord_user_id' : 'discord_user_id';
  const raw = await rows(tx, sql.raw(`select ${select} from ${ident(SCHEMA)}.oauth_credentials order by ${order}`));
  return raw.map((row, index) => {
    const parsed = v.safeParse(LegacyRow, row);
    if (parsed.success) return parsed.output;
    const issue = parsed.issues[0];
    const id = typeof (row as { discord_user_id?: unknown }).discord_user_id === 'string' ? (row as { discord_user_id: string }).discord_user_id : undefined;
    const who = id && v.is(userIdSchema('id'), id) ? `user ${fingerprint(id)}` : `row ${index + 1}`;
    const field = issue.path?.[0]?.key;
    const problem = issue.input === undefined && issue.kind === 'schema' ? `${String(field)} is missing` : issue.message.startsWith(String(field)) ? issue.message : `${String(field)} ${issue.message}`;
    throw new AnnieMeiError(`${SCHEMA}.oauth_credentials, ${who} of ${raw.length}: ${problem}; nothing was imported and the old tables are as they were`);
  });
}

const Grant = v.object({ grantee: v.string(), privilege: v.string() });

/** Who, besides the owner, may use the old table: the bot's role, typically `SELECT, DELETE`. */
async function grantsOn(tx: Db | Tx, table: string): Promise<{ grantee: string; privilege: string }[]> {
  return v.parse(
    v.array(Grant),
    await rows(
      tx,
      sql`select g.grantee::text as grantee, g.privilege_type::text as privilege
            from information_schema.role_table_grants g
            join pg_class c on c.relname = g.table_name
            join pg_namespace n on n.oid = c.relnamespace and n.nspname = g.table_schema
           where g.table_schema = ${SCHEMA} and g.table_name = ${table} and g.grantee <> pg_get_userbyid(c.relowner)
           order by 1, 2`,
    ),
  );
}

function credentialsOf(row: LegacyRow): Credentials {
  return {
    accessToken: row.access_token,
    tokenType: 'Bearer',
    // AniList does not honour refresh tokens; kept all the same, sealed, so nothing the old service held is lost.
    ...(row.refresh_token ? { refreshToken: row.refresh_token } : {}),
    ...(row.token_expires_at ? { expiresAt: row.token_expires_at.getTime() } : {}),
  };
}

// ---------------------------------------------------------------- what the server and the CLI call

export interface TakeoverPlan {
  /** `legacy`: the old service's tables are there and would be imported; `views`: ours already are; `none`: neither. */
  found: 'legacy' | 'views' | 'none';
  rows: number;
  needsReauth: number;
  /** Users who already have an AniList link in Linkgate: theirs is newer and is kept. */
  alreadyLinked: number;
  /** Grants of the old tables that the views get, e.g. `annie_mei_bot: DELETE, SELECT on oauth_credentials`. */
  grants: { table: string; grantee: string; privileges: string[] }[];
}

export interface AnnieMeiDeps {
  db: Db;
  keyring: Keyring;
  logger: Logger;
  fingerprint: (userId: string) => string;
  now: () => number;
}

function groupGrants(table: string, grants: { grantee: string; privilege: string }[]): TakeoverPlan['grants'] {
  const byGrantee = new Map<string, string[]>();
  for (const { grantee, privilege } of grants) byGrantee.set(grantee, [...(byGrantee.get(grantee) ?? []), privilege]);
  return [...byGrantee].map(([grantee, privileges]) => ({ table, grantee, privileges }));
}

async function plan(tx: Db | Tx, deps: AnnieMeiDeps): Promise<TakeoverPlan & { legacyRows: LegacyRow[] }> {
  const kinds = await relationKinds(tx);
  const credentials = kinds.get('oauth_credentials');
  if (credentials !== 'table') {
    return { found: credentials === 'view' ? 'views' : 'none', rows: 0, needsReauth: 0, alreadyLinked: 0, grants: [], legacyRows: [] };
  }
  const legacyRows = await readLegacyRows(tx, deps.fingerprint);
  // Before Linkgate's first start (a dry run) there is no links table yet, and so nothing linked here.
  const own = await ownSchema(tx).catch((error: unknown) => {
    if (error instanceof AnnieMeiError) return undefined;
    throw error;
  });
  const linked = own
    ? v.parse(
        v.array(v.object({ userId: v.string() })),
        await rows(tx, sql.raw(`select user_id as "userId" from ${ident(own)}.links where tenant = '${DEFAULT_TENANT}' and provider = '${PROVIDER}'`)),
      )
    : [];
  const already = new Set(linked.map((l) => l.userId));
  const grants = [
    ...groupGrants('oauth_credentials', await grantsOn(tx, 'oauth_credentials')),
    ...(kinds.get('oauth_sessions') === 'table' ? groupGrants('oauth_sessions', await grantsOn(tx, 'oauth_sessions')) : []),
  ];
  return {
    found: 'legacy',
    rows: legacyRows.length,
    needsReauth: legacyRows.filter((r) => r.relink_required_at).length,
    alreadyLinked: legacyRows.filter((r) => already.has(r.discord_user_id)).length,
    grants,
    legacyRows,
  };
}

/** What `takeOver` would do, changing nothing (`linkgate import annie-mei --dry-run`). */
export async function planTakeover(deps: AnnieMeiDeps): Promise<TakeoverPlan> {
  const { legacyRows: _rows, ...summary } = await plan(deps.db, deps);
  return summary;
}

export interface TakeoverReport extends TakeoverPlan {
  imported: number;
}

/**
 * Imports the old service's rows, if its table is there, then (re)creates
 * the views, all in one transaction: a crash or a refused row leaves the
 * old tables as they were, and a second run finds the views and imports
 * nothing. Returns `undefined` when there was nothing to import.
 */
export async function takeOver(deps: AnnieMeiDeps, options: { webhooks: boolean }): Promise<TakeoverReport | undefined> {
  let importing = false;
  let report: TakeoverReport | undefined;
  try {
    report = await deps.db.transaction((tx) => {
      return run(tx);
    });
  } catch (error) {
    // A role that may not create the schema: the bot's view is missing, which is worth a warning, not a stopped gateway.
    if (!importing && databaseFailure(error)?.summary.code === '42501') {
      deps.logger.warn(
        { cause: logCause(error) },
        `could not create the ${SCHEMA} views (permission denied): the Annie Mei bot cannot read links from this database; grant Linkgate's role CREATE on the database, or set LINKGATE_ANNIE_MEI_COMPAT=false`,
      );
      return undefined;
    }
    throw error;
  }
  if (report) {
    deps.logger.info(
      { imported: report.imported, rows: report.rows, needsReauth: report.needsReauth, keptExisting: report.alreadyLinked, grants: report.grants.map((g) => `${g.grantee}: ${g.privileges.join(', ')} on ${g.table}`) },
      `took over the Annie Mei auth service's tables: ${report.imported} AniList links imported; ${SCHEMA}.oauth_credentials and oauth_sessions are Linkgate's views now`,
    );
  }
  return report;

  async function run(tx: Tx): Promise<TakeoverReport | undefined> {
    await tx.execute(LOCK);
    const kinds = await relationKinds(tx);
    for (const name of ['oauth_credentials', 'oauth_sessions']) {
      if (kinds.get(name) === 'other') throw new AnnieMeiError(`${SCHEMA}.${name} is neither the old service's table nor Linkgate's view: move it out of the way, then start again`);
    }
    if (kinds.get('oauth_credentials') !== 'table') {
      if (kinds.get('oauth_sessions') === 'table') throw new AnnieMeiError(`${SCHEMA}.oauth_sessions is a table without its oauth_credentials: move it out of the way, then start again`);
      await createViews(tx, await ownSchema(tx), options.webhooks);
      return undefined;
    }
    importing = true;
    // Nobody writes the old tables while they are read and renamed (the old service should be stopped by now).
    await tx.execute(sql.raw(`lock table ${ident(SCHEMA)}.oauth_credentials in access exclusive mode`));
    if (kinds.get('oauth_sessions') === 'table') await tx.execute(sql.raw(`lock table ${ident(SCHEMA)}.oauth_sessions in access exclusive mode`));
    if (kinds.has('oauth_credentials_legacy') || kinds.has('oauth_sessions_legacy')) {
      throw new AnnieMeiError(`${SCHEMA}.oauth_credentials_legacy already exists next to the old table: rename or drop one of them, then start again`);
    }
    const found = await plan(tx, deps);
    const now = new Date(deps.now());
    let imported = 0;
    for (const row of found.legacyRows) {
      const key = { tenant: DEFAULT_TENANT, userId: row.discord_user_id, provider: PROVIDER };
      const credentials = credentialsOf(row);
      const stored = await tx
        .insert(links)
        .values({
          ...key,
          externalId: row.anilist_id,
          externalName: row.anilist_username ?? null,
          status: row.relink_required_at ? 'needs_reauth' : 'active',
          scopes: [],
          credentials: deps.keyring.seal(JSON.stringify(credentials), linkAad(key)),
          expiresAt: row.token_expires_at ?? null,
          linkedAt: row.created_at ?? now,
          updatedAt: row.relink_required_at ?? row.token_updated_at ?? now,
        })
        // A link made in Linkgate is newer than the old service's row: it stays.
        .onConflictDoNothing()
        .returning({ userId: links.userId });
      imported += stored.length;
    }
    const s = ident(SCHEMA);
    await tx.execute(sql.raw(`alter table ${s}.oauth_credentials rename to oauth_credentials_legacy`));
    // No plaintext token stays in the database: they are sealed in Linkgate's links now.
    await tx.execute(sql.raw(`alter table ${s}.oauth_credentials_legacy alter column access_token drop not null`));
    await tx.execute(sql.raw(`update ${s}.oauth_credentials_legacy set access_token = null${(await legacyColumns(tx, 'oauth_credentials_legacy')).has('refresh_token') ? ', refresh_token = null' : ''}`));
    if (kinds.get('oauth_sessions') === 'table') await tx.execute(sql.raw(`alter table ${s}.oauth_sessions rename to oauth_sessions_legacy`));
    await createViews(tx, await ownSchema(tx), options.webhooks);
    for (const { table, grantee, privileges } of found.grants) {
      const known = privileges.filter((p) => /^(SELECT|INSERT|UPDATE|DELETE|TRUNCATE|REFERENCES|TRIGGER)$/.test(p));
      if (known.length > 0) await tx.execute(sql.raw(`grant ${known.join(', ')} on ${s}.${ident(table)} to ${grantee === 'PUBLIC' ? 'public' : ident(grantee)}`));
    }
    const { legacyRows: _rows, ...summary } = found;
    return { ...summary, imported };
  }
}

/** `LINKGATE_ANNIE_MEI_COMPAT=false`: the views go (the old tables, if any, stay as they are). */
export async function removeViews(db: Db): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.execute(LOCK);
    await dropViews(tx);
  });
}

export interface GiveBackReport {
  rows: number;
}

/**
 * The way back (`linkgate export annie-mei`): the old tables return under
 * their names with every AniList link of the default tenant as it is now
 * (tokens opened from the keyring into the old service's plaintext
 * columns, links made or removed since the takeover included), and the
 * views go. Stop Linkgate first, and start the old service after.
 */
export async function giveBack(deps: AnnieMeiDeps, options: { dryRun: boolean }): Promise<GiveBackReport> {
  return deps.db.transaction(async (tx) => {
    await tx.execute(LOCK);
    const kinds = await relationKinds(tx);
    if (kinds.get('oauth_credentials_legacy') !== 'table') {
      throw new AnnieMeiError(`there is no ${SCHEMA}.oauth_credentials_legacy table to give back: Linkgate never took over the old service's tables here`);
    }
    const current = await tx.select().from(links).where(sql`${links.tenant} = ${DEFAULT_TENANT} and ${links.provider} = ${PROVIDER}`);
    if (options.dryRun) return { rows: current.length };
    const grants = await grantsOn(tx, 'oauth_credentials');
    const sessionGrants = await grantsOn(tx, 'oauth_sessions');
    await dropViews(tx);
    const s = ident(SCHEMA);
    await tx.execute(sql.raw(`alter table ${s}.oauth_credentials_legacy rename to oauth_credentials`));
    if (kinds.get('oauth_sessions_legacy') === 'table') await tx.execute(sql.raw(`alter table ${s}.oauth_sessions_legacy rename to oauth_sessions`));
    await tx.execute(sql.raw(`delete from ${s}.oauth_credentials`));
    const columns = await legacyColumns(tx, 'oauth_credentials');
    const store = createLinkStore(tx, deps.keyring);
    for (const row of current) {
      const credentials = store.openCredentials(row);
      const values: Record<string, unknown> = {
        discord_user_id: row.userId,
        anilist_id: row.externalId,
        access_token: credentials.accessToken ?? '',
        refresh_token: credentials.refreshToken ?? null,
        token_expires_at: row.expiresAt,
        token_updated_at: row.updatedAt,
        created_at: row.linkedAt,
        anilist_username: row.externalName,
        relink_required_at: row.status === 'needs_reauth' ? row.updatedAt : null,
        relink_reason: row.status === 'needs_reauth' ? 'needs_reauth' : null,
      };
      const names = Object.keys(values).filter((name) => columns.has(name));
      await tx.execute(
        sql`insert into ${sql.raw(`${s}.oauth_credentials`)} (${sql.raw(names.map(ident).join(', '))}) values (${sql.join(
          // Timestamps go as ISO text: drizzle's postgres.js driver leaves Date parameters to the caller.
          names.map((name) => {
            const value = values[name];
            return sql`${value instanceof Date ? value.toISOString() : value}`;
          }),
          sql`, `,
        )})`,
      );
    }
    await tx.execute(sql.raw(`alter table ${s}.oauth_credentials alter column access_token set not null`));
    for (const [table, list] of [['oauth_credentials', grants], ['oauth_sessions', sessionGrants]] as const) {
      for (const { grantee, privilege } of list) {
        if (/^(SELECT|INSERT|UPDATE|DELETE)$/.test(privilege) && (table === 'oauth_credentials' || kinds.get('oauth_sessions_legacy') === 'table')) {
          await tx.execute(sql.raw(`grant ${privilege} on ${s}.${ident(table)} to ${grantee === 'PUBLIC' ? 'public' : ident(grantee)}`));
        }
      }
    }
    return { rows: current.length };
  });
}

/**
 * Counts unlinks made through the views (the bot's `/unregister`) in this
 * instance's metrics: the database announces each on a channel every
 * instance listens to, so with several instances each counts every one.
 */
export async function countViewUnlinks(database: Database, metrics: Metrics): Promise<() => Promise<void>> {
  return database.listen(UNLINK_CHANNEL, (provider) => {
    if (provider === PROVIDER) metrics.inc('linkgate_links_deleted_total', { provider, tenant: DEFAULT_TENANT, via: SCHEMA });
  });
}
