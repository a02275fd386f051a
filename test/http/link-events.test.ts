/**
 * Each link's event log (issue #21), through the bot API's
 * `GET /api/v1/users/:userId/links/:provider/events`, with Discord's fake on
 * the other side: linked, relinked, refreshed, a refresh failure with its
 * reason, tokens served counted per hour (not a row per call), needs
 * re-auth, unlinked; another tenant's key sees none of it; the purge job
 * removes events older than the retention.
 */
import * as v from 'valibot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { and, eq } from '../../src/db/orm.ts';
import { linkEvents } from '../../src/db/schema.ts';
import { createLinkStore } from '../../src/core/links.ts';
import { purgeExpired } from '../../src/core/purge.ts';
import { CreatedApiKeyAnswer } from '../../src/http/admin.ts';
import { LinkEventsAnswer } from '../../src/http/openapi.ts';
import type { FakeDiscord } from '../fakes/discord.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { atFake, createDiscordGateway, type TestGateway } from '../helpers/gateway.ts';

const ADMIN_KEY = 'admin_link_events_0123456789abcdefghijklmnop';
const ENV = {
  DISCORD_CLIENT_ID: '123456789012345678',
  DISCORD_CLIENT_SECRET: 'discord-client-secret-0123456789',
  LINKGATE_ADMIN_KEYS: ADMIN_KEY,
};
const USER = 'events-user';
const DISCORD_ID = '80351110224678940';

let database: Database;
let discord: FakeDiscord;
let gateway: TestGateway;
let clock = Date.now();

beforeAll(async () => {
  database = await createTestDatabase();
  ({ discord, gateway } = await createDiscordGateway(database, ENV, { users: [{ id: DISCORD_ID, username: 'kuromi', global_name: null }], now: () => clock }));
});
afterAll(async () => {
  await discord?.close();
  await database?.close();
});

async function link(userId: string) {
  const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
  const start = await browser.openLink(`/oauth/discord/start?context=${await mintContext('discord', userId, { now: clock })}`);
  expect((await browser.get(discord.approve(atFake(new URL(start.headers.get('location')!), discord.origin), DISCORD_ID))).status).toBe(200);
}

const store = () => createLinkStore(database.db, gateway.keyring);
const key = { tenant: 'default', userId: USER, provider: 'discord' };
const token = () => gateway.api(`/users/${USER}/links/discord/token`, { method: 'POST' });
const makeDue = async () => {
  clock = store().openCredentials((await store().get(key))!).expiresAt! - 30_000;
};

async function events(path = `/users/${USER}/links/discord/events`, apiKey?: string) {
  const response = await gateway.api(path, apiKey ? { headers: { authorization: `Bearer ${apiKey}` } } : {});
  expect(response.status).toBe(200);
  return v.parse(LinkEventsAnswer, await response.json());
}
const kinds = async () => (await events()).events.map((e) => e.kind);

describe('a link’s event log', () => {
  it('says linked, relinked, refreshed, refresh_failed with its reason, needs_reauth and unlinked, newest first', async () => {
    await link(USER);
    expect(await kinds()).toEqual(['linked']);
    clock += 1000;
    await link(USER);
    expect(await kinds()).toEqual(['relinked', 'linked']);
    const [relinked] = (await events()).events;
    expect(relinked!.detail).toEqual({ externalId: DISCORD_ID, externalName: 'kuromi', scopes: expect.any(Array), via: 'flow' });

    // Discord down while the token is due: one refresh_failed however often it fails, with the reason.
    await makeDue();
    discord.failNext('token', 'http500', 2);
    expect((await token()).status).toBe(502);
    expect((await token()).status).toBe(502);
    const failed = (await events()).events[0]!;
    expect(failed).toMatchObject({ kind: 'refresh_failed', count: 1, detail: { reason: 'provider_unavailable', willRetry: true } });
    expect(await kinds()).toEqual(['refresh_failed', 'relinked', 'linked']);

    // Back: the refresh works and is logged; the tokens served are counted, not one row each.
    expect((await token()).status).toBe(200);
    expect((await token()).status).toBe(200);
    expect((await token()).status).toBe(200);
    const after = (await events()).events;
    expect(after.map((e) => e.kind).sort()).toEqual(['linked', 'refresh_failed', 'refreshed', 'relinked', 'token_served']);
    const served = after.find((e) => e.kind === 'token_served')!;
    expect(served.count).toBe(3);
    expect(served.at).toBe(new Date(Math.floor(clock / 3_600_000) * 3_600_000).toISOString());
    expect(after.find((e) => e.kind === 'refreshed')!.detail).toMatchObject({ expiresAt: expect.any(String) });
    // No credential in any event.
    const credentials = store().openCredentials((await store().get(key))!);
    for (const secret of [credentials.accessToken!, credentials.refreshToken!]) expect(JSON.stringify(after)).not.toContain(secret);

    // Discord forgets the grant: the next refresh makes the link needs_reauth, logged with why.
    const form = new URLSearchParams({ token: credentials.refreshToken!, client_id: ENV.DISCORD_CLIENT_ID, client_secret: ENV.DISCORD_CLIENT_SECRET });
    expect((await fetch(`${discord.origin}/api/oauth2/token/revoke`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form })).status).toBe(200);
    await makeDue();
    expect((await token()).status).toBe(409);
    expect((await events()).events[0]).toMatchObject({ kind: 'needs_reauth', detail: { reason: 'refresh refused' } });

    expect((await gateway.api(`/users/${USER}/links/discord`, { method: 'DELETE' })).status).toBe(204);
    const last = await events();
    expect(last.events[0]).toMatchObject({ kind: 'unlinked', detail: { externalId: DISCORD_ID, via: 'api' } });
    // The bot API no longer has the link, the log still does.
    expect((await gateway.api(`/users/${USER}/links/discord`)).status).toBe(404);
  });

  it('counts a second hour in a row of its own, and pages with the cursor', async () => {
    await link('events-pages');
    clock += 3_600_000;
    for (let i = 0; i < 2; i += 1) expect((await gateway.api('/users/events-pages/links/discord/token', { method: 'POST' })).status).toBe(200);
    const all = (await events('/users/events-pages/links/discord/events')).events;
    expect(all.map((e) => [e.kind, e.count])).toEqual([
      ['token_served', 2],
      ['linked', 1],
    ]);
    const first = await events('/users/events-pages/links/discord/events?limit=1');
    expect(first.events.map((e) => e.kind)).toEqual(['token_served']);
    const second = await events(`/users/events-pages/links/discord/events?limit=1&cursor=${first.nextCursor}`);
    expect(second.events.map((e) => e.kind)).toEqual(['linked']);
    expect(second.nextCursor).toBeNull();
  });

  it('shows another tenant none of them, and refuses a cursor it did not make', async () => {
    const admin = (path: string, body?: unknown) =>
      gateway.app.request(`/api/admin/v1${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify(body ?? {}),
      });
    expect((await admin('/tenants', { id: 'otherbot', name: 'Other Bot' })).status).toBe(201);
    const otherKey = v.parse(CreatedApiKeyAnswer, await (await admin('/tenants/otherbot/api-keys', { name: 'prod' })).json()).key;
    expect((await events(`/users/${USER}/links/discord/events`, otherKey)).events).toEqual([]);
    expect((await events('/users/events-pages/links/discord/events', otherKey)).events).toEqual([]);
    const bad = await gateway.api(`/users/${USER}/links/discord/events?cursor=1;drop`);
    expect(bad.status).toBe(400);
  });

  it('is purged in the background after the retention (90 days by default, or as configured)', async () => {
    const at = (days: number) => new Date(clock - days * 24 * 3_600_000);
    const rows = (userId: string) => database.db.select().from(linkEvents).where(and(eq(linkEvents.tenant, 'default'), eq(linkEvents.userId, userId)));
    await database.db.insert(linkEvents).values([
      { tenant: 'default', userId: 'events-old', provider: 'discord', kind: 'linked', at: at(100) },
      { tenant: 'default', userId: 'events-old', provider: 'discord', kind: 'refreshed', at: at(40) },
      { tenant: 'default', userId: 'events-old', provider: 'discord', kind: 'refreshed', at: at(1) },
    ]);
    expect((await purgeExpired(database.db, new Date(clock))).linkEvents).toBeGreaterThanOrEqual(1);
    expect((await rows('events-old')).map((r) => r.at.getTime()).sort()).toEqual([at(40).getTime(), at(1).getTime()]);
    await purgeExpired(database.db, new Date(clock), { linkEventRetentionDays: 30 });
    expect((await rows('events-old')).map((r) => r.at.getTime())).toEqual([at(1).getTime()]);
  });
});
