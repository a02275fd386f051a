/**
 * The cookie-session store (src/core/web-sessions.ts) that the web-session
 * API uses and the admin console and account page are to reuse: absolute
 * expiry, the idle timeout, revocation, purposes kept apart, and the purge.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../src/core/crypto.ts';
import { purgeExpired } from '../../src/core/purge.ts';
import { createWebSessions } from '../../src/core/web-sessions.ts';
import type { Database } from '../../src/db/client.ts';
import { webSessions } from '../../src/db/schema.ts';
import { createTestDatabase } from '../helpers/database.ts';

const START = Date.parse('2026-12-07T10:00:00Z');
const HOUR = 3600 * 1000;
const person = { tenant: 'default', userId: 'u-1', provider: 'discord', externalId: 'u-1' };

let database: Database;
let clock = START;
const now = () => clock;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});

describe('a session store', () => {
  it('ends a session at its absolute expiry, or sooner at `notAfter`', async () => {
    clock = START;
    const store = createWebSessions(database.db, { purpose: 'web', ttlSeconds: 8 * 3600, now });
    const long = await store.create(person);
    const short = await store.create({ ...person, notAfter: START + HOUR });
    const later = await store.create({ ...person, notAfter: START + 100 * HOUR });
    expect(long.session.expiresAt.getTime()).toBe(START + 8 * HOUR);
    expect(short.session.expiresAt.getTime()).toBe(START + HOUR);
    expect(later.session.expiresAt.getTime()).toBe(START + 8 * HOUR);
    expect(long.token).toMatch(/^[A-Za-z0-9_-]{43}$/);

    clock = START + HOUR - 1;
    expect(await store.find(short.token)).toMatchObject({ userId: 'u-1' });
    clock = START + HOUR;
    expect(await store.find(short.token)).toBeUndefined();
    expect(await store.find(long.token)).toBeDefined();
    clock = START + 8 * HOUR;
    expect(await store.find(long.token)).toBeUndefined();
  });

  it('ends a session unused for its idle timeout; each use counts as activity', async () => {
    clock = START;
    const store = createWebSessions(database.db, { purpose: 'console', ttlSeconds: 8 * 3600, idleSeconds: 15 * 60, now });
    const { token } = await store.create(person);
    clock += 10 * 60_000;
    expect(await store.find(token)).toBeDefined();
    clock += 10 * 60_000;
    // 20 minutes after it began, 10 after its last use: still live.
    expect(await store.find(token)).toBeDefined();
    clock += 15 * 60_000;
    expect(await store.find(token)).toBeUndefined();
  });

  it('keeps purposes apart: one purpose\'s token is not another\'s session', async () => {
    clock = START;
    const web = createWebSessions(database.db, { purpose: 'web', ttlSeconds: 3600, now });
    const console = createWebSessions(database.db, { purpose: 'console', ttlSeconds: 3600, now });
    const { token } = await web.create(person);
    expect(await console.find(token)).toBeUndefined();
    expect(await console.revoke(token)).toBe(false);
    expect(await web.find(token)).toBeDefined();
  });

  it('revokes one session, or every session of a user, and stores only the token\'s digest', async () => {
    clock = START;
    const store = createWebSessions(database.db, { purpose: 'web', ttlSeconds: 3600, now });
    const one = await store.create({ ...person, userId: 'u-2' });
    const two = await store.create({ ...person, userId: 'u-2', provider: 'corp', externalId: 'c-2' });
    const three = await store.create({ ...person, userId: 'u-2' });
    const rows = await database.db.select().from(webSessions);
    expect(rows.some((row) => row.idHash === sha256(one.token))).toBe(true);
    expect(JSON.stringify(rows)).not.toContain(one.token);

    expect(await store.revoke(one.token)).toBe(true);
    expect(await store.revoke(one.token)).toBe(false);
    expect(await store.find(one.token)).toBeUndefined();
    expect(await store.revokeUser({ tenant: 'default', userId: 'u-2', provider: 'corp' })).toBe(1);
    expect(await store.find(two.token)).toBeUndefined();
    expect(await store.find(three.token)).toBeDefined();
    expect(await store.revokeUser({ tenant: 'default', userId: 'u-2' })).toBe(1);
    expect(await store.find(three.token)).toBeUndefined();
    expect(await store.find('not a token')).toBeUndefined();
    expect(await store.find(undefined)).toBeUndefined();
  });

  it('is purged a day after it ended, expired or revoked', async () => {
    await database.db.delete(webSessions);
    clock = START;
    const store = createWebSessions(database.db, { purpose: 'web', ttlSeconds: 3600, now });
    await store.create(person);
    const revoked = await store.create(person);
    await store.revoke(revoked.token);
    await createWebSessions(database.db, { purpose: 'web', ttlSeconds: 100 * 3600, now }).create({ ...person, notAfter: START + 30 * HOUR });
    const purgedEarly = await purgeExpired(database.db, new Date(START + 2 * HOUR));
    expect(purgedEarly.webSessions).toBe(0);
    const purged = await purgeExpired(database.db, new Date(START + 25 * HOUR + 1));
    expect(purged.webSessions).toBe(2);
    expect(await database.db.select().from(webSessions)).toHaveLength(1);
  });
});
