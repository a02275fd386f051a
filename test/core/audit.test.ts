/**
 * src/core/audit.ts on a real database: rows come back newest first, a page
 * at a time, filtered by tenant, action, actor and time; the CSV quotes what
 * RFC 4180 says and defuses spreadsheet formulas; nothing in the code can
 * change or remove a row (the table is append-only); the purge job and
 * tenant deletion leave it alone.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { actorName, csvExport, csvField, list, outcomeOf, record, type AuditEntry } from '../../src/core/audit.ts';
import { createKeyring } from '../../src/core/crypto.ts';
import { LinkgateError } from '../../src/core/errors.ts';
import { createLinkStore } from '../../src/core/links.ts';
import { purgeExpired } from '../../src/core/purge.ts';
import { deleteTenant } from '../../src/core/tenant-deletion.ts';
import { createTenantStore } from '../../src/core/tenants.ts';
import { auditEvents } from '../../src/db/schema.ts';
import { sql } from '../../src/db/orm.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { ROOT } from '../helpers/cli.ts';
import { TEST_SECRETS } from '../helpers/gateway.ts';

let database: Database;
const T0 = Date.parse('2026-12-01T00:00:00Z');
const entry = (minutes: number, fields: Partial<AuditEntry> = {}): AuditEntry => ({
  actor: { kind: 'operator-key', id: 'abc123def456' },
  action: 'api_key.create',
  tenant: 'quizbot',
  outcome: 'ok',
  at: new Date(T0 + minutes * 60_000),
  ...fields,
});

beforeAll(async () => {
  database = await createTestDatabase();
  await record(database.db, entry(0, { action: 'tenant.create', actor: { kind: 'cli' } }));
  await record(database.db, entry(1));
  await record(database.db, entry(2, { tenant: 'otherbot', actor: { kind: 'admin', id: 'discord:80351110224678912' } }));
  await record(database.db, entry(3, { action: 'api_key.revoke', outcome: 'refused', code: 'not_found', target: 'api_key:key_x' }));
  await record(database.db, entry(4, { tenant: null, action: 'operator_api.refused', actor: { kind: 'operator-key', id: 'unknown' }, outcome: 'refused', code: 'unauthorized', userAgent: '=HYPERLINK("http://evil")\u0000\n', clientAddress: '203.0.113.9' }));
});
afterAll(async () => {
  await database?.close();
});

describe('the audit trail', () => {
  it('lists newest first, a page at a time, and filters by tenant, action, actor and time', async () => {
    const first = await list(database.db, { limit: 2 });
    expect(first.events.map((e) => e.action)).toEqual(['operator_api.refused', 'api_key.revoke']);
    const second = await list(database.db, { limit: 2, cursor: Number(first.nextCursor) });
    const third = await list(database.db, { limit: 2, cursor: Number(second.nextCursor) });
    expect([...second.events, ...third.events].map((e) => e.at)).toEqual([2, 1, 0].map((m) => new Date(T0 + m * 60_000).toISOString()));
    expect(third.nextCursor).toBeNull();

    expect((await list(database.db, { tenant: 'otherbot' })).events.map((e) => e.actor)).toEqual(['admin:discord:80351110224678912']);
    expect((await list(database.db, { action: 'api_key.revoke' })).events).toMatchObject([{ outcome: 'refused', code: 'not_found', target: 'api_key:key_x' }]);
    expect((await list(database.db, { actor: 'cli' })).events.map((e) => e.action)).toEqual(['tenant.create']);
    expect((await list(database.db, { actor: 'operator-key' })).events).toHaveLength(3);
    expect((await list(database.db, { actor: 'operator-key:abc123def456' })).events).toHaveLength(2);
    expect((await list(database.db, { since: new Date(T0 + 60_000), until: new Date(T0 + 3 * 60_000) })).events.map((e) => e.at)).toEqual([3, 2, 1].map((m) => new Date(T0 + m * 60_000).toISOString()));
  });

  it('keeps a client\'s header printable and short', async () => {
    const [refused] = (await list(database.db, { action: 'operator_api.refused' })).events;
    expect(refused!.userAgent).toBe('=HYPERLINK("http://evil")??');
    expect(refused!.clientAddress).toBe('203.0.113.9');
  });

  it('writes CSV as RFC 4180 says, with formulas defused, every page of it', async () => {
    expect(csvField('plain')).toBe('plain');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('two\nlines')).toBe('"two\nlines"');
    expect(csvField('=1+1')).toBe("'=1+1");
    expect(csvField('-2')).toBe("'-2");
    expect(csvField(null)).toBe('');
    const lines: string[] = [];
    for await (const line of csvExport(database.db, {})) lines.push(line);
    expect(lines).toHaveLength(6);
    expect(lines[0]).toBe('id,at,tenant,actor,action,target,outcome,code,clientAddress,userAgent,detail\r\n');
    expect(lines[1]).toContain(`,operator-key:unknown,operator_api.refused,,refused,unauthorized,203.0.113.9,"'=HYPERLINK(""http://evil"")??",\r\n`);
  });

  it('names actors and outcomes the same way everywhere', () => {
    expect(actorName({ kind: 'cli' })).toBe('cli');
    expect(actorName({ kind: 'operator-key', id: 'abc' })).toBe('operator-key:abc');
    expect(outcomeOf(new LinkgateError('not_found', 'x'))).toEqual({ outcome: 'refused', code: 'not_found' });
    expect(outcomeOf(new LinkgateError('database_unavailable', 'x'))).toEqual({ outcome: 'failed', code: 'database_unavailable' });
    expect(outcomeOf(new TypeError('boom'))).toEqual({ outcome: 'failed', code: 'internal_error' });
  });

  it('has no update or delete path: no code touches a row, and neither the purge nor deleting a tenant removes one', async () => {
    // Every source file: nothing updates or deletes audit_events, by the ORM or in SQL.
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        if (statSync(path).isDirectory()) walk(path);
        else if (/\.tsx?$/.test(name)) files.push(path);
      }
    };
    walk(join(ROOT, 'src'));
    const writers = files.filter((file) => /\.(update|delete)\(auditEvents\)|(update|delete from)\s+"?audit_events/i.test(readFileSync(file, 'utf8')));
    expect(writers).toEqual([]);

    const before = (await database.db.select().from(auditEvents)).length;
    await purgeExpired(database.db, new Date(T0 + 10 * 365 * 24 * 3_600_000), { linkEventRetentionDays: 1 });
    const keyring = createKeyring([{ kid: 'k1', key: Buffer.alloc(32, 7) }]);
    const tenants = createTenantStore({ database, keyring, environment: { apiKeys: [TEST_SECRETS.LINKGATE_API_KEYS], contextSigningSecret: TEST_SECRETS.OAUTH_CONTEXT_SIGNING_SECRET, webhook: undefined } });
    await tenants.create('quizbot', 'Quiz Bot');
    await deleteTenant({ db: database.db, tenants, links: createLinkStore(database.db, keyring), providers: { instance: async () => undefined }, hashUserId: () => 'x' }, 'quizbot', pino({ level: 'silent' }));
    expect((await database.db.select().from(auditEvents)).length).toBe(before);
  });
});

describe("the README's append-only role", () => {
  it('lets the gateway role add and read rows, and refuses it any update, delete or truncate', async () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const block = /<!-- sql: covered by test\/core\/audit\.test\.ts -->\n```sql\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const db = database.db;
    // Roles are the server's, not the database's: names of this run only, dropped at the end (on PostgreSQL).
    const run = Math.random().toString(36).slice(2, 8);
    const gatewayRole = `linkgate_${run}`;
    const ownerRole = `linkgate_audit_${run}`;
    // The gateway's role, owning the tables as when it ran the migrations; the test itself is the superuser.
    await db.execute(sql.raw(`create role ${gatewayRole} nologin`));
    await db.execute(sql.raw(`alter table audit_events owner to ${gatewayRole}`));
    const statements = block!.split(';').map((s) => s.trim()).filter(Boolean);
    for (const statement of statements) await db.execute(sql.raw(statement.replaceAll('linkgate_audit', ownerRole).replace(/\blinkgate\b/g, gatewayRole)));
    const asGateway = <T>(run: (tx: typeof db) => Promise<T>) =>
      db.transaction(async (tx) => {
        await tx.execute(sql.raw(`set local role ${gatewayRole}`));
        return run(tx);
      });
    await asGateway((tx) => record(tx, entry(9, { action: 'tenant.update' })));
    expect((await asGateway((tx) => list(tx, { action: 'tenant.update' }))).events).toHaveLength(1);
    for (const statement of [sql`update audit_events set outcome = 'ok'`, sql`delete from audit_events`, sql`truncate audit_events`]) {
      await expect(asGateway((tx) => tx.execute(statement))).rejects.toThrow();
    }
    expect((await list(db, { action: 'tenant.update' })).events).toHaveLength(1);
    await db.execute(sql.raw(`reassign owned by ${gatewayRole}, ${ownerRole} to current_user`));
    await db.execute(sql.raw(`drop owned by ${gatewayRole}, ${ownerRole}`));
    await db.execute(sql.raw(`drop role ${gatewayRole}`));
    await db.execute(sql.raw(`drop role ${ownerRole}`));
  });
});
