/**
 * The events operators need about refreshes (issue #23): a refresh failing
 * for a reason that is not the user's is `link.refresh_failed` once, however
 * often it fails again, and the first success after it `link.recovered`
 * once; relinking a link that needed the user is `link.recovered` too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { eq } from '../../src/db/orm.ts';
import { webhookDeliveries } from '../../src/db/schema.ts';
import { createLinkStore } from '../../src/core/links.ts';
import type { FakeDiscord } from '../fakes/discord.ts';
import { linkAtFakeDiscord } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createDiscordGateway, type TestGateway } from '../helpers/gateway.ts';

const ENV = {
  DISCORD_CLIENT_ID: '123456789012345678',
  DISCORD_CLIENT_SECRET: 'discord-client-secret-0123456789',
  LINKGATE_WEBHOOK_URL: 'http://127.0.0.1:9/hooks',
  LINKGATE_WEBHOOK_SECRET: 'whsec_refresh_events_0123456789abcdefgh',
};

let database: Database;
let discord: FakeDiscord;
let gateway: TestGateway;
let clock = Date.now();

beforeAll(async () => {
  database = await createTestDatabase();
  const users = ['80351110224678930', '80351110224678931'].map((id) => ({ id, username: `u${id.slice(-2)}`, global_name: null }));
  ({ discord, gateway } = await createDiscordGateway(database, ENV, { users, now: () => clock }));
});
afterAll(async () => {
  await discord?.close();
  await database?.close();
});

const link = (userId: string, discordId: string) => linkAtFakeDiscord(gateway.app, discord, userId, discordId, { now: clock });

/** The events of a user, in order, as receivers get them. */
async function events(userId: string) {
  const rows = await database.db.select().from(webhookDeliveries).orderBy(webhookDeliveries.createdAt);
  return rows
    .map((row) => JSON.parse(row.payload) as { type: string; link?: { userId: string; status: string }; refreshFailure?: { reason: string; willRetry: boolean } })
    .filter((event) => event.link?.userId === userId)
    .map(({ type, refreshFailure }) => (refreshFailure ? { type, refreshFailure } : { type }));
}

const token = (userId: string) => gateway.api(`/users/${userId}/links/discord/token`, { method: 'POST' });
const makeDue = async (userId: string) => {
  const store = createLinkStore(database.db, gateway.keyring);
  clock = store.openCredentials((await store.get({ tenant: 'default', userId, provider: 'discord' }))!).expiresAt! - 30_000;
};

describe('refresh events', () => {
  it('says link.refresh_failed once while Discord fails, then link.recovered once when it works again', async () => {
    await link('refresh-flaky', '80351110224678930');
    await makeDue('refresh-flaky');
    discord.failNext('token', 'http500', 3);
    for (let i = 0; i < 3; i += 1) expect((await token('refresh-flaky')).status).toBe(502);
    expect(await events('refresh-flaky')).toEqual([
      { type: 'link.created' },
      { type: 'link.refresh_failed', refreshFailure: { reason: 'provider_unavailable', willRetry: true } },
    ]);
    // Discord is back: the next use refreshes, and says so once.
    expect((await token('refresh-flaky')).status).toBe(200);
    expect((await token('refresh-flaky')).status).toBe(200);
    expect(await events('refresh-flaky')).toEqual([
      { type: 'link.created' },
      { type: 'link.refresh_failed', refreshFailure: { reason: 'provider_unavailable', willRetry: true } },
      { type: 'link.recovered' },
    ]);
    // The link's own status never changed: it was never the user's to fix.
    expect(((await (await gateway.api('/users/refresh-flaky/links/discord')).json()) as { status: string }).status).toBe('active');
  });

  it('says link.recovered when a link that needed the user is linked again', async () => {
    await link('refresh-revoked', '80351110224678931');
    // As the token API does when Discord refuses the grant: needs_reauth, with its event.
    const store = createLinkStore(database.db, gateway.keyring, { webhookEvents: true });
    const row = (await store.get({ tenant: 'default', userId: 'refresh-revoked', provider: 'discord' }))!;
    await store.setStatus(row, 'needs_reauth', new Date(clock));
    await link('refresh-revoked', '80351110224678931');
    const types = (await events('refresh-revoked')).map((e) => e.type);
    expect(types).toEqual(['link.created', 'link.needs_reauth', 'link.updated', 'link.recovered']);
    // Every one of them is in the delivery log, deliverable.
    const rows = await database.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.type, 'link.recovered'));
    expect(rows.length).toBe(2);
  });
});
