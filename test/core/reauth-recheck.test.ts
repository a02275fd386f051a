/**
 * The background re-check of `needs_reauth` links (issue #23): a link whose
 * refresh token works again (the fake Discord recovering) comes back active
 * with one `link.recovered`; one that still fails stays as it is without an
 * event or a log line; one instance does a round per interval, the interval
 * jittered.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLinkStore } from '../../src/core/links.ts';
import { createNamedLock } from '../../src/core/named-lock.ts';
import { createReauthRecheck, jittered } from '../../src/core/reauth-recheck.ts';
import type { Database } from '../../src/db/client.ts';
import { webhookDeliveries } from '../../src/db/schema.ts';
import type { FakeDiscord } from '../fakes/discord.ts';
import { linkAtFakeDiscord } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createDiscordGateway, type TestGateway } from '../helpers/gateway.ts';

const ENV = {
  DISCORD_CLIENT_ID: '123456789012345678',
  DISCORD_CLIENT_SECRET: 'discord-client-secret-0123456789',
  LINKGATE_WEBHOOK_URL: 'http://127.0.0.1:9/hooks',
  LINKGATE_WEBHOOK_SECRET: 'whsec_reauth_recheck_0123456789abcdefgh',
};
const HOUR = 3_600_000;

let database: Database;
let discord: FakeDiscord;
let gateway: TestGateway;
let clock = Date.now();

beforeAll(async () => {
  database = await createTestDatabase();
  const users = ['80351110224678940', '80351110224678941', '80351110224678942'].map((id) => ({ id, username: `u${id.slice(-2)}`, global_name: null }));
  ({ discord, gateway } = await createDiscordGateway(database, ENV, { users, now: () => clock }));
});
afterAll(async () => {
  await discord?.close();
  await database?.close();
});

const store = () => createLinkStore(database.db, gateway.keyring, { webhookEvents: true });
const key = (userId: string) => ({ tenant: 'default', userId, provider: 'discord' });
const recheck = () => createReauthRecheck({ database, keyring: gateway.keyring, lock: createNamedLock(database), tokens: gateway.tokens, logger: gateway.logger, now: () => clock, intervalMs: HOUR });

/** Links `userId`, then has it need the user, as a refused token would. */
async function needingUser(userId: string, discordId: string) {
  await linkAtFakeDiscord(gateway.app, discord, userId, discordId, { now: clock });
  await store().setStatus((await store().get(key(userId)))!, 'needs_reauth', new Date(clock));
}

async function events(userId: string) {
  const rows = await database.db.select().from(webhookDeliveries).orderBy(webhookDeliveries.createdAt);
  return rows.map((row) => JSON.parse(row.payload) as { type: string; link?: { userId: string } }).filter((event) => event.link?.userId === userId).map((event) => event.type);
}

const status = async (userId: string) => (await store().get(key(userId)))!.status;

describe('the needs_reauth re-check', () => {
  it('brings back a link whose refresh works again, once, and leaves a failing one quiet', async () => {
    // Processed in key order: "recheck-a-gone" first, then "recheck-b-back".
    await needingUser('recheck-a-gone', '80351110224678940');
    await needingUser('recheck-b-back', '80351110224678941');
    const refreshes = () => discord.counts.tokenByGrant.refresh_token ?? 0;

    // Discord is down: both refreshes fail, nothing changes, nothing is said.
    discord.failNext('token', 'http500', 2);
    const logsBefore = gateway.logs.length;
    const before = refreshes();
    expect(await recheck().runOnce()).toEqual({ claimed: true, tried: 2, recovered: 0 });
    expect(refreshes()).toBe(before + 2);
    expect([await status('recheck-a-gone'), await status('recheck-b-back')]).toEqual(['needs_reauth', 'needs_reauth']);
    const roundLogs = gateway.logs.slice(logsBefore).map((line) => JSON.parse(line) as { level: number; msg: string });
    expect(roundLogs.filter((line) => line.level >= 30)).toEqual([]);

    // An hour later Discord is back for one of them: that link is active again with its new tokens, and says so once.
    clock += HOUR;
    discord.failNext('token', 'http401');
    const old = store().openCredentials((await store().get(key('recheck-b-back')))!);
    expect(await recheck().runOnce()).toEqual({ claimed: true, tried: 2, recovered: 1 });
    expect(await status('recheck-b-back')).toBe('active');
    expect(await status('recheck-a-gone')).toBe('needs_reauth');
    const fresh = store().openCredentials((await store().get(key('recheck-b-back')))!);
    expect(fresh.accessToken).not.toBe(old.accessToken);
    expect(await events('recheck-b-back')).toEqual(['link.created', 'link.needs_reauth', 'link.recovered']);
    expect(await events('recheck-a-gone')).toEqual(['link.created', 'link.needs_reauth']);
    // The bot API answers with the link again.
    expect((await gateway.api('/users/recheck-b-back/links/discord/token', { method: 'POST' })).status).toBe(200);

    // The next hour: only the one still needing the user is tried (and refused again), and the recovered link is not announced again.
    clock += HOUR;
    discord.failNext('token', 'http401');
    expect(await recheck().runOnce()).toEqual({ claimed: true, tried: 1, recovered: 0 });
    expect(await events('recheck-b-back')).toEqual(['link.created', 'link.needs_reauth', 'link.recovered']);
  });

  it('runs one round per interval across instances: the others skip it', async () => {
    await needingUser('recheck-c-twice', '80351110224678942');
    discord.failNext('token', 'http500', 2);
    clock += HOUR;
    const before = discord.counts.tokenByGrant.refresh_token ?? 0;
    const rounds = await Promise.all([recheck().runOnce(), recheck().runOnce(), recheck().runOnce()]);
    expect(rounds.filter((round) => round.claimed)).toHaveLength(1);
    // Two links still need their users: each was tried once.
    expect((discord.counts.tokenByGrant.refresh_token ?? 0) - before).toBe(2);
    // Within half an interval, nobody runs again; after it, one does.
    clock += HOUR / 4;
    expect((await recheck().runOnce()).claimed).toBe(false);
    clock += HOUR / 2;
    expect((await recheck().runOnce()).claimed).toBe(true);
  });

  it('waits the interval give or take 10 %, so instances started together drift apart', () => {
    expect(jittered(HOUR, () => 0)).toBe(0.9 * HOUR);
    expect(jittered(HOUR, () => 0.5)).toBe(HOUR);
    expect(jittered(HOUR, () => 0.999_999)).toBeLessThanOrEqual(1.1 * HOUR);
  });
});
