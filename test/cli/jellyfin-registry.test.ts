/**
 * `linkgate import jellyfin-registry` (issue #23): the seed 004 registry's
 * SQLite `user_auth` table, made here in its layout, becomes Jellyfin links
 * the bot API shows, keyed as sign-ins here would key them, tokens sealed;
 * a bad row is reported and skipped, another service's row is left alone,
 * and importing again changes nothing. The file is only read.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq, sql } from '../../src/db/orm.ts';
import { auditEvents } from '../../src/db/schema.ts';
import { cliEnv, createCliDatabase, runCli, runCliHere, type CliDatabase } from '../helpers/cli.ts';
import { createTestGateway } from '../helpers/gateway.ts';

const JELLYFIN = { JELLYFIN_SERVER_URL: 'https://jf.example.com', JELLYFIN_ALLOW_USER_SERVER: 'true' };
const ADA = '80351110224678912';
const GRACE = '80351110224678913';
const LINUS = '80351110224678914';
const TOKENS = { ada: 'registry-token-ada-0123456789abcdef', grace: 'registry-token-grace-0123456789abcdef', linus: 'registry-token-linus-0123456789abcdef' };

let db: CliDatabase;
let env: Record<string, string>;
let dir: string;
let registry: string;

interface RowResult {
  row: number;
  status: string;
  userId?: string;
  externalId?: string;
  reason?: string;
  error?: { code: string; message: string };
}

beforeAll(async () => {
  db = await createCliDatabase();
  env = cliEnv(db.dataDir, { ...db.env, ...JELLYFIN });
  expect((await runCliHere(['migrate'], env)).code).toBe(0);
  dir = mkdtempSync(join(tmpdir(), 'linkgate-registry-'));
  registry = join(dir, 'auth.db');
  // The registry's layout: Discord ids as SQLite integers (beyond a double's precision), the sign-in as JSON text.
  const sqlite = new DatabaseSync(registry);
  sqlite.exec(`create table user_auth (
    discord_id integer not null,
    service text not null,
    external_user_id text not null,
    external_name text,
    credentials text not null,
    primary key (discord_id, service)
  )`);
  const insert = sqlite.prepare('insert into user_auth (discord_id, service, external_user_id, external_name, credentials) values (?, ?, ?, ?, ?)');
  insert.run(BigInt(ADA), 'jellyfin', '4f1c2b7e9a5d4c3b8e2f1a0b9c8d7e6f', 'Ada', JSON.stringify({ AccessToken: TOKENS.ada, ServerURL: 'https://jf.example.com/' }));
  insert.run(BigInt(GRACE), 'jellyfin', '5a2d3c8f0b6e5d4c9f3a2b1c0d9e8f7a', 'Grace', JSON.stringify({ AccessToken: TOKENS.grace, ServerURL: 'HTTPS://JF.example.com:443/web/#/home', DeviceId: 'registry-device-grace' }));
  insert.run(BigInt(LINUS), 'jellyfin', '6b3e4d9a1c7f6e5d0a4b3c2d1e0f9a8b', 'Linus', JSON.stringify({ AccessToken: TOKENS.linus, ServerURL: 'http://media.home.example:8096/jellyfin' }));
  insert.run(BigInt('80351110224678915'), 'jellyfin', '7c4f5e0b2d8a7f6e1b5c4d3e2f1a0b9c', 'Broken', JSON.stringify({ ServerURL: 'https://jf.example.com' }));
  insert.run(BigInt(ADA), 'plex', 'plex-user-1', 'Ada', JSON.stringify({ AccessToken: 'plex-token', ServerURL: 'https://plex.example.com' }));
  sqlite.close();
});
afterAll(async () => {
  await db?.close();
  rmSync(dir, { recursive: true, force: true });
});

const digest = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe('linkgate import jellyfin-registry', () => {
  it('links the registry’s three Jellyfin users, reports the bad row and skips another service’s', async () => {
    const before = digest(registry);
    const result = await runCliHere(['import', 'jellyfin-registry', registry, '--json'], env);
    // A row that did not import is a failure the operator must see.
    expect(result.code).toBe(1);
    const answer = JSON.parse(result.stdout) as { results: RowResult[]; counts: Record<string, number> };
    expect(answer.results).toEqual([
      { row: 1, status: 'created', userId: ADA, externalId: '4f1c2b7e9a5d4c3b8e2f1a0b9c8d7e6f' },
      { row: 2, status: 'created', userId: GRACE, externalId: '5a2d3c8f0b6e5d4c9f3a2b1c0d9e8f7a' },
      // A server the user typed: keyed by the origin, as a sign-in here is (issue #17).
      { row: 3, status: 'created', userId: LINUS, externalId: '6b3e4d9a1c7f6e5d0a4b3c2d1e0f9a8b@http://media.home.example:8096' },
      { row: 4, status: 'invalid', error: { code: 'bad_request', message: 'credentials.AccessToken is missing' } },
      { row: 5, status: 'skipped', reason: 'a plex sign-in, not Jellyfin' },
    ]);
    expect(answer.counts).toEqual({ created: 3, updated: 0, unchanged: 0, invalid: 1, skipped: 1 });
    expect(digest(registry)).toBe(before);
  });

  it('gives the bot API the links, with the server each was made on, and keeps the tokens sealed', async () => {
    await db.use(async (database) => {
      const gateway = await createTestGateway(database, { env: JELLYFIN });
      const ada = await gateway.api(`/users/${ADA}/links/jellyfin`);
      expect(ada.status).toBe(200);
      expect(await ada.json()).toMatchObject({ userId: ADA, provider: 'jellyfin', externalId: '4f1c2b7e9a5d4c3b8e2f1a0b9c8d7e6f', externalName: 'Ada', status: 'active' });
      // The operator's server under its configured address, however the registry spelled it; a typed server with its base path.
      expect(await (await gateway.api(`/users/${GRACE}/links/jellyfin/token`, { method: 'POST' })).json()).toMatchObject({ accessToken: TOKENS.grace, tokenType: 'MediaBrowser', serverUrl: 'https://jf.example.com', externalUserId: '5a2d3c8f0b6e5d4c9f3a2b1c0d9e8f7a' });
      expect(await (await gateway.api(`/users/${LINUS}/links/jellyfin/token`, { method: 'POST' })).json()).toMatchObject({ accessToken: TOKENS.linus, serverUrl: 'http://media.home.example:8096/jellyfin' });
      expect((await gateway.api('/users/80351110224678915/links/jellyfin')).status).toBe(404);
      const stored = await database.db.execute<{ credentials: string }>(sql`select credentials from links where provider = 'jellyfin'`);
      const rows = Array.isArray(stored) ? stored : (stored as { rows: { credentials: string }[] }).rows;
      expect(rows).toHaveLength(3);
      for (const token of Object.values(TOKENS)) expect(JSON.stringify(rows)).not.toContain(token);
      // The audit trail has the command line's import, with its counts.
      const [audited] = await database.db.select().from(auditEvents).where(eq(auditEvents.target, 'jellyfin-registry'));
      expect(audited).toMatchObject({ actorKind: 'cli', action: 'links.import', tenant: 'default', outcome: 'ok', detail: { created: 3, updated: 0, unchanged: 0, invalid: 1, skipped: 1 } });
    });
  });

  it('changes nothing when run again (the real command)', async () => {
    const again = await runCli(['import', 'jellyfin-registry', registry], env);
    expect(again.code).toBe(1);
    expect(again.stdout).toContain(`row 1: unchanged (user ${ADA}, Jellyfin 4f1c2b7e9a5d4c3b8e2f1a0b9c8d7e6f)`);
    expect(again.stdout).toContain('row 4: invalid: credentials.AccessToken is missing');
    expect(again.stdout).toContain('0 created, 0 updated, 3 unchanged, 1 invalid, 1 skipped');
    for (const token of Object.values(TOKENS)) expect(again.stdout + again.stderr).not.toContain(token);
  });

  it('says what is wrong with a file that is not the registry', async () => {
    const empty = join(dir, 'empty.db');
    new DatabaseSync(empty).close();
    const result = await runCliHere(['import', 'jellyfin-registry', empty], env);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${empty} has no user_auth table`);
    const missing = await runCliHere(['import', 'jellyfin-registry', join(dir, 'nowhere.db')], env);
    expect(missing.stderr).toContain('cannot read');
  });
});
