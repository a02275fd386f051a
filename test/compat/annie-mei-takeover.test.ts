/**
 * Linkgate started in place of the Annie Mei auth service: on its database,
 * as the old service left it, and with its `.env`, nothing else.
 */
import { spawnSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { API_KEY, TEST_SECRETS } from '../helpers/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../helpers/process.ts';

const onPostgres = Boolean(process.env.TEST_DATABASE_URL);
const ANILIST_ENV = { ANILIST_CLIENT_ID: '34567', ANILIST_CLIENT_SECRET: 'anilist-client-secret-0123456789' };

/** The old service's tables, from its migrations (annie-mei/auth migrations/, in schema annie_auth as the bot's docs place them). */
const OLD_SCHEMA = `
  create schema annie_auth;
  create table annie_auth.oauth_credentials (
    discord_user_id    text        primary key,
    anilist_id         bigint      not null,
    access_token       text        not null,
    refresh_token      text,
    token_expires_at   timestamptz,
    token_updated_at   timestamptz not null default now(),
    created_at         timestamptz not null default now(),
    constraint uq_oauth_credentials_anilist_id unique (anilist_id)
  );
  create table annie_auth.oauth_sessions (
    state           text        primary key,
    discord_user_id text        not null,
    expires_at      timestamptz not null,
    used_at         timestamptz,
    created_at      timestamptz not null default now()
  );
  alter table annie_auth.oauth_credentials
    add column if not exists relink_required_at timestamptz,
    add column if not exists relink_reason text,
    add column if not exists anilist_username text;
`;

const TOKENS = {
  kuromi: `old-access-${randomBytes(12).toString('hex')}`,
  kuromiRefresh: `old-refresh-${randomBytes(12).toString('hex')}`,
  mei: `old-access-${randomBytes(12).toString('hex')}`,
  expired: `old-access-${randomBytes(12).toString('hex')}`,
};

describe.skipIf(!onPostgres)('taking over the Annie Mei auth service’s database (PostgreSQL)', () => {
  const name = `linkgate_test_${randomBytes(6).toString('hex')}`;
  const botRole = `annie_mei_bot_${randomBytes(4).toString('hex')}`;
  let url: string;
  let cluster: postgres.Sql;
  let db: postgres.Sql;
  const running: GatewayProcess[] = [];

  const bot = <T>(work: (sql: postgres.TransactionSql) => Promise<T>) =>
    db.begin(async (sql) => {
      await sql.unsafe(`set local role ${botRole}`);
      return work(sql);
    }) as Promise<T>;

  beforeAll(async () => {
    cluster = postgres(process.env.TEST_DATABASE_URL!, { max: 1, onnotice: () => {} });
    await cluster.unsafe(`create database ${name}`);
    const at = new URL(process.env.TEST_DATABASE_URL!);
    at.pathname = `/${name}`;
    url = at.href;
    db = postgres(url, { max: 2, onnotice: () => {} });
    await db.unsafe(OLD_SCHEMA);
    await db.unsafe(`create role ${botRole} nologin`);
    await db.unsafe(`grant usage on schema annie_auth to ${botRole}`);
    await db.unsafe(`grant select, delete on annie_auth.oauth_credentials, annie_auth.oauth_sessions to ${botRole}`);
    const year = "now() + interval '300 days'";
    await db.unsafe(`
      insert into annie_auth.oauth_credentials (discord_user_id, anilist_id, anilist_username, access_token, refresh_token, token_expires_at, token_updated_at, created_at) values
        ('111111111111111111', 9001, 'Kuromi', '${TOKENS.kuromi}', '${TOKENS.kuromiRefresh}', ${year}, now() - interval '2 days', now() - interval '60 days'),
        ('222222222222222222', 9002, null, '${TOKENS.mei}', null, ${year}, now(), now() - interval '10 days');
      insert into annie_auth.oauth_credentials (discord_user_id, anilist_id, anilist_username, access_token, token_expires_at, relink_required_at, relink_reason) values
        ('333333333333333333', 9003, 'Expired', '${TOKENS.expired}', now() - interval '1 day', now() - interval '1 hour', 'token_expired');
      insert into annie_auth.oauth_sessions (state, discord_user_id, expires_at) values ('old-state-in-flight', '444444444444444444', now() + interval '5 minutes');
    `);
  });
  afterAll(async () => {
    for (const gateway of running) await gateway.cleanup();
    await db?.end();
    await cluster?.unsafe(`drop database if exists ${name} with (force)`);
    await cluster?.unsafe(`drop role if exists ${botRole}`);
    await cluster?.end();
  });

  const start = async () => {
    const gateway = await startGatewayProcess({ ...ANILIST_ENV, DATABASE_URL: url }, { databaseUrl: url });
    running.push(gateway);
    return gateway;
  };
  const stop = async (gateway: GatewayProcess) => {
    gateway.child.kill('SIGTERM');
    expect(await gateway.exited).toBe(0);
  };
  const api = (gateway: GatewayProcess, path: string, init: RequestInit = {}) =>
    fetch(`${gateway.base}/api/v1${path}`, { ...init, headers: { authorization: `Bearer ${API_KEY}`, ...init.headers } });
  const cliEnv = () => ({ NODE_ENV: 'test', ...TEST_SECRETS, ...ANILIST_ENV, DATABASE_URL: url });

  it('`linkgate import annie-mei --dry-run` says what it would do and changes nothing', async () => {
    const result = await runCli(['import', 'annie-mei', '--dry-run'], cliEnv());
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('annie_auth.oauth_credentials is the old service\'s table with 3 rows:');
    expect(result.stdout).toContain('would import 3 as AniList links (1 needing the user to link again, 0 already linked here');
    expect(result.stdout).toContain(`${botRole}: DELETE, SELECT on oauth_credentials`);
    expect(result.stdout).toContain('nothing was changed');
    const [kind] = await db`select relkind::text as kind from pg_class where oid = 'annie_auth.oauth_credentials'::regclass`;
    expect(kind!.kind).toBe('r');
    expect(await db`select 1 from pg_tables where tablename = 'links'`).toHaveLength(0);
  });

  it('imports every row at its first start, keeps the bot reading, and a second start imports nothing; no token stays in plaintext', async () => {
    const first = await start();
    expect(first.output()).toMatch(/took over the Annie Mei auth service's tables: 3 AniList links imported/);

    const kuromi = await api(first, '/users/111111111111111111/links/anilist');
    expect(await kuromi.json()).toMatchObject({ externalId: '9001', externalName: 'Kuromi', status: 'active' });
    expect(await (await api(first, '/users/222222222222222222/links/anilist')).json()).toMatchObject({ externalId: '9002', externalName: null, status: 'active' });
    expect(await (await api(first, '/users/333333333333333333/links/anilist')).json()).toMatchObject({ externalId: '9003', status: 'needs_reauth' });
    const token = await api(first, '/users/111111111111111111/links/anilist/token', { method: 'POST' });
    expect(token.status).toBe(200);
    const body = (await token.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ accessToken: TOKENS.kuromi, tokenType: 'Bearer' });
    expect(JSON.stringify(body)).not.toContain(TOKENS.kuromiRefresh);
    expect((await api(first, '/users/333333333333333333/links/anilist/token', { method: 'POST' })).status).toBe(409);

    // The bot's role, with only the grants it had on the old tables, reads the views.
    const whoami = await bot((sql) => sql.unsafe('SELECT discord_user_id, anilist_id, anilist_username FROM annie_auth.oauth_credentials WHERE discord_user_id = $1', ['111111111111111111']));
    expect([...whoami]).toEqual([{ discord_user_id: '111111111111111111', anilist_id: '9001', anilist_username: 'Kuromi' }]);
    const relink = await db`select relink_required_at is not null as relink from annie_auth.oauth_credentials where discord_user_id = '333333333333333333'`;
    expect(relink[0]!.relink).toBe(true);

    // The old tables are kept aside, every token cleared.
    const legacy = await db`select discord_user_id, access_token, refresh_token from annie_auth.oauth_credentials_legacy order by 1`;
    expect(legacy.map((r) => [r.discord_user_id, r.access_token, r.refresh_token])).toEqual([
      ['111111111111111111', null, null],
      ['222222222222222222', null, null],
      ['333333333333333333', null, null],
    ]);
    expect(await db`select state from annie_auth.oauth_sessions_legacy`).toHaveLength(1);
    await stop(first);

    const second = await start();
    expect(second.output()).not.toMatch(/took over/);
    expect(((await (await api(second, '/users/111111111111111111/links')).json()) as { links: unknown[] }).links).toHaveLength(1);
    await stop(second);

    const pgDump = ['/usr/bin/pg_dump', ...(process.env.PATH ?? '').split(':').map((dir) => `${dir}/pg_dump`)].find((path) => existsSync(path));
    expect(pgDump, 'pg_dump is needed to run this test on PostgreSQL').toBeDefined();
    const dumped = spawnSync(pgDump!, ['--no-owner', url], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    expect(dumped.status).toBe(0);
    expect(dumped.stdout).toContain('COPY public.links ');
    expect(dumped.stdout).toContain('CREATE VIEW annie_auth.oauth_credentials');
    for (const value of Object.values(TOKENS)) expect(dumped.stdout).not.toContain(value);
  });

  it('`linkgate export annie-mei` gives the old service its tables back, with the links as they are now', async () => {
    // A user unlinked through the bot after the switch.
    await bot((sql) => sql.unsafe('DELETE FROM annie_auth.oauth_credentials WHERE discord_user_id = $1', ['222222222222222222']));
    const dry = await runCli(['export', 'annie-mei', '--dry-run'], cliEnv());
    expect(dry.stdout).toBe('would write 2 AniList links back into annie_auth.oauth_credentials; nothing was changed\n');
    const result = await runCli(['export', 'annie-mei'], cliEnv());
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe('wrote 2 AniList links back into annie_auth.oauth_credentials; the old service can start\n');
    const rows = await db`select discord_user_id, anilist_id::text as anilist_id, access_token, refresh_token, relink_required_at is not null as relink from annie_auth.oauth_credentials order by 1`;
    expect(rows.map((r) => ({ ...r }))).toEqual([
      { discord_user_id: '111111111111111111', anilist_id: '9001', access_token: TOKENS.kuromi, refresh_token: TOKENS.kuromiRefresh, relink: false },
      { discord_user_id: '333333333333333333', anilist_id: '9003', access_token: TOKENS.expired, refresh_token: null, relink: true },
    ]);
    const [kind] = await db`select relkind::text as kind from pg_class where oid = 'annie_auth.oauth_credentials'::regclass`;
    expect(kind!.kind).toBe('r');
    expect([...(await bot((sql) => sql.unsafe('SELECT anilist_id FROM annie_auth.oauth_credentials WHERE discord_user_id = $1', ['111111111111111111'])))]).toHaveLength(1);
    expect(await db`select 1 from pg_class where relname = 'oauth_credentials_legacy'`).toHaveLength(0);
  });
});

describe.skipIf(!onPostgres)('a takeover that cannot complete (PostgreSQL)', () => {
  it('changes nothing when a row cannot be imported, and names the row, never its values', async () => {
    const cluster = postgres(process.env.TEST_DATABASE_URL!, { max: 1, onnotice: () => {} });
    const name = `linkgate_test_${randomBytes(6).toString('hex')}`;
    await cluster.unsafe(`create database ${name}`);
    const at = new URL(process.env.TEST_DATABASE_URL!);
    at.pathname = `/${name}`;
    const db = postgres(at.href, { max: 1, onnotice: () => {} });
    try {
      await db.unsafe(OLD_SCHEMA);
      await db.unsafe(`insert into annie_auth.oauth_credentials (discord_user_id, anilist_id, access_token) values
        ('111111111111111111', 9101, '${TOKENS.kuromi}'), ('a user/with a slash', 9102, '${TOKENS.mei}')`);
      const result = await runCli(['import', 'annie-mei'], { NODE_ENV: 'test', ...TEST_SECRETS, ...ANILIST_ENV, DATABASE_URL: at.href });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/^linkgate import annie-mei: annie_auth\.oauth_credentials, row 2 of 2: discord_user_id must be 1–128 characters of letters, digits and \._:@\+=-; nothing was imported and the old tables are as they were\n$/);
      expect(result.stderr).not.toContain('slash');
      const rows = await db`select discord_user_id, access_token from annie_auth.oauth_credentials order by 1`;
      expect(rows.map((r) => r.access_token)).toEqual([TOKENS.kuromi, TOKENS.mei]);
      const [kind] = await db`select relkind::text as kind from pg_class where oid = 'annie_auth.oauth_credentials'::regclass`;
      expect(kind!.kind).toBe('r');
      expect(await db`select 1 from links`).toHaveLength(0);
    } finally {
      await db.end();
      await cluster.unsafe(`drop database if exists ${name} with (force)`);
      await cluster.end();
    }
  });
});

describe.skipIf(!onPostgres)('LINKGATE_ANNIE_MEI_COMPAT=false (PostgreSQL)', () => {
  it('drops the views and their functions at start-up, and the bot can no longer read them; turned on again, the next start makes them again', async () => {
    const kinds = async (db: postgres.Sql) =>
      Object.fromEntries(
        (await db`select c.relname as name, c.relkind::text as kind from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'annie_auth'`).map((r) => [r.name, r.kind]),
      );
    const functions = async (db: postgres.Sql) =>
      (await db`select p.proname as name from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'annie_auth' order by 1`).map((r) => r.name as string);
    const first = await startGatewayProcess(ANILIST_ENV);
    const url = first.database!.url!;
    const db = postgres(url, { max: 1, onnotice: () => {} });
    const running = [first];
    try {
      expect(await kinds(db)).toEqual({ oauth_credentials: 'v', oauth_sessions: 'v' });
      expect(await functions(db)).toEqual(['linkgate_end_sessions', 'linkgate_unlink']);
      first.child.kill('SIGTERM');
      expect(await first.exited).toBe(0);

      const off = await startGatewayProcess({ ...ANILIST_ENV, LINKGATE_ANNIE_MEI_COMPAT: 'false' }, { databaseUrl: url });
      running.push(off);
      expect(await kinds(db)).toEqual({});
      expect(await functions(db)).toEqual([]);
      await expect(db.unsafe('SELECT discord_user_id, anilist_id, anilist_username FROM annie_auth.oauth_credentials WHERE discord_user_id = $1', ['111111111111111111'])).rejects.toThrow(
        'relation "annie_auth.oauth_credentials" does not exist',
      );
      expect(await (await fetch(`${off.base}/api/v1/users/111111111111111111/links`, { headers: { authorization: `Bearer ${API_KEY}` } })).json()).toEqual({ links: [] });
      off.child.kill('SIGTERM');
      expect(await off.exited).toBe(0);

      const on = await startGatewayProcess(ANILIST_ENV, { databaseUrl: url });
      running.push(on);
      expect(await kinds(db)).toEqual({ oauth_credentials: 'v', oauth_sessions: 'v' });
    } finally {
      await db.end();
      for (const gateway of running.reverse()) await gateway.cleanup();
    }
  });
});

/** A port nothing listens on right now, for a gateway whose redirect URI must name its port. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('the old service’s .env, as it is', () => {
  const example = readFileSync(fileURLToPath(new URL('../fixtures/annie-mei/auth.env.example', import.meta.url)), 'utf8');
  const SECRET = 'shared-with-bot';

  it('starts Linkgate from the working directory with nothing else in the environment, and signs links with its secret', async () => {
    const port = await freePort();
    let databaseUrl: string | undefined;
    // The placeholders filled in as an operator has them; the port the test could get; the test's database.
    const gateway = await startGatewayProcess(
      { PORT: String(port) },
      {
        bare: true,
        prepare: ({ dir, databaseUrl: url }) => {
          databaseUrl = url;
          const filled = example
            .replace('<anilist-client-id>', '34567')
            .replace('<anilist-client-secret>', 'the-anilist-secret')
            .replace('<rocket-secret-key>', 'hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=')
            .replace('<shared-oauth-context-signing-secret-with-bot>', SECRET)
            .replace('<shared-userid-hash-salt-with-bot>', 'shared-salt')
            .replace('127.0.0.1:8000', `127.0.0.1:${port}`)
            .replace(/^DATABASE_URL=.*$/m, `DATABASE_URL=${url ?? ''}`);
          expect(filled).toContain('ROCKET_SECRET_KEY=');
          writeFileSync(join(dir, '.env'), filled);
        },
      },
    );
    try {
      expect(gateway.output()).toContain('OAUTH_CONTEXT_SIGNING_SECRET is shorter than 32 characters');
      expect(gateway.output()).toContain('USERID_HASH_SALT is shorter than 32 characters');
      expect(gateway.output()).not.toContain('ROCKET_SECRET_KEY');
      expect(gateway.output()).not.toContain(SECRET);
      expect(await (await fetch(`${gateway.base}/healthz`)).json()).toEqual({ status: 'healthy' });
      const ready = (await (await fetch(`${gateway.base}/readyz`)).json()) as { database: string };
      expect(ready.database).toBe(databaseUrl ? 'postgres' : 'pglite');

      const iat = Math.floor(Date.now() / 1000);
      const segment = Buffer.from(JSON.stringify({ v: 1, discord_user_id: '80351110224678912', interaction_id: '1', nonce: randomBytes(16).toString('base64url'), iat, exp: iat + 300 })).toString('base64url');
      const signature = createHmac('sha256', SECRET).update(segment).digest('base64url');
      const page = await fetch(`${gateway.base}/oauth/anilist/start?ctx=${segment}.${signature}`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('Link your AniList account?');
      const forged = await fetch(`${gateway.base}/oauth/anilist/start?ctx=${segment}.${createHmac('sha256', 'other').update(segment).digest('base64url')}`);
      expect(forged.status).toBe(400);
    } finally {
      await gateway.cleanup();
    }
  });
});
