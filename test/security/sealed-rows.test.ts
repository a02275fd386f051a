import { fileURLToPath } from 'node:url';
import { and, eq, sql } from '../../src/db/orm.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isLinkgateError } from '../../src/core/errors.ts';
import { createFlowStore } from '../../src/core/flows.ts';
import { createKeyValueStore } from '../../src/core/kv.ts';
import { createLinkStore } from '../../src/core/links.ts';
import type { Database } from '../../src/db/client.ts';
import { flows, kv, links } from '../../src/db/schema.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';

/**
 * A sealed value opens only in the row it was sealed for: someone who can
 * write to the database (but has no key) and copies a ciphertext into another
 * row gets nothing out of it. For every kind of sealed value: a link's
 * credentials (to another user, provider or tenant), a flow's PKCE verifier
 * and provider data (to another flow), and a provider's key-value entry (to
 * another key or another provider's namespace).
 */
const FIXTURES = fileURLToPath(new URL('../fixtures/providers', import.meta.url));

let database: Database;
let gateway: TestGateway;
/** What the gateway reported as faults (to Sentry in production). */
const reported: unknown[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  gateway = await createTestGateway(database, { providersDir: FIXTURES, observe: { reportError: (error) => reported.push(error) } });
});
afterAll(() => database.close());

const decryptFailure = (open: () => unknown) => {
  try {
    open();
  } catch (error) {
    return isLinkgateError(error, 'decrypt_failed') ? 'decrypt_failed' : `another error: ${String(error)}`;
  }
  return 'opened';
};

describe('a sealed value copied to another row', () => {
  it('link credentials do not open for another user, provider or tenant; through the API the copy is never answered', async () => {
    const store = createLinkStore(database.db, gateway.keyring);
    const victim = { tenant: 'default', userId: 'sealed-victim', provider: 'pin' };
    await store.store(victim, { id: 'pin-victim' }, { accessToken: 'victim-access-token-0123456789' }, { allowShared: false, now: new Date() });
    for (const target of [
      { tenant: 'default', userId: 'sealed-attacker', provider: 'pin' },
      { tenant: 'default', userId: 'sealed-victim', provider: 'other' },
      { tenant: 'acme', userId: 'sealed-victim', provider: 'pin' },
    ]) {
      await store.store(target, { id: `ext-${target.tenant}-${target.userId}-${target.provider}` }, { accessToken: 'own-access-token' }, { allowShared: true, now: new Date() });
      await database.db.execute(sql`
        update links set credentials = (select credentials from links where tenant = 'default' and user_id = 'sealed-victim' and provider = 'pin')
        where tenant = ${target.tenant} and user_id = ${target.userId} and provider = ${target.provider}`);
      const [row] = await database.db.select().from(links).where(and(eq(links.tenant, target.tenant), eq(links.userId, target.userId), eq(links.provider, target.provider)));
      expect(decryptFailure(() => store.openCredentials(row!)), JSON.stringify(target)).toBe('decrypt_failed');
    }
    reported.length = 0;
    const answer = await gateway.api('/users/sealed-attacker/links/pin/token', { method: 'POST' });
    expect(answer.status).toBe(500);
    // A fault for the operator: reported, once, as the error it is.
    expect(reported).toHaveLength(1);
    expect(reported[0]).toMatchObject({ code: 'decrypt_failed' });
    // A refusal is not a fault: nothing more is reported for it.
    expect((await gateway.api('/users/nobody-here/links/pin/token', { method: 'POST' })).status).toBe(404);
    expect(reported).toHaveLength(1);
    const text = await answer.text();
    expect(JSON.parse(text)).toEqual({ error: { code: 'decrypt_failed', message: 'stored data does not belong here or was altered' } });
    expect(text).not.toContain('victim-access-token');
    // The victim's own link still opens.
    expect(store.openCredentials((await store.get(victim))!)).toMatchObject({ accessToken: 'victim-access-token-0123456789' });
  });

  it('flow data (PKCE verifier, provider data) does not open in another flow, whose browser gets an error page and no step', async () => {
    const flowStore = createFlowStore(database.db, gateway.keyring, { claimMs: 60_000 });
    const browsers = await Promise.all(
      ['sealed-flow-a', 'sealed-flow-b'].map(async (userId) => {
        const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
        const page = await browser.openLink(`/oauth/pin/start?context=${await mintContext('pin', userId)}`);
        const state = /name="state" value="([^"]+)"/.exec(await page.text())![1]!;
        // A step that writes provider data into the sealed flow.
        expect((await browser.post('/oauth/pin/callback', { state, username: userId, password: 'correct horse' })).status).toBe(200);
        return { browser, state, userId };
      }),
    );
    const [a, b] = browsers as [(typeof browsers)[0], (typeof browsers)[0]];
    await database.db.execute(sql`update flows set data = (select data from flows where user_id = ${a.userId}) where user_id = ${b.userId}`);
    const [row] = await database.db.select().from(flows).where(eq(flows.userId, b.userId));
    expect(decryptFailure(() => flowStore.open(row!))).toBe('decrypt_failed');
    // B's browser goes on: refused, and A's username never shows up as B's account.
    const refused = await b.browser.post('/oauth/pin/callback', { state: b.state, linkgate_action: 'poll' });
    expect(refused.status).toBe(500);
    expect(await refused.text()).not.toContain(a.userId);
    expect(await database.db.select().from(links).where(eq(links.userId, b.userId))).toEqual([]);
    // A's flow is untouched and finishes as A.
    await a.browser.post('/oauth/pin/callback', { state: a.state, linkgate_action: 'poll' });
    expect((await a.browser.post('/oauth/pin/callback', { state: a.state, linkgate_action: 'poll' })).status).toBe(200);
    expect(await (await gateway.api(`/users/${a.userId}/links/pin`)).json()).toMatchObject({ externalId: a.userId });
  });

  it('a key-value entry does not open under another key or in another provider’s namespace', async () => {
    const pinStore = createKeyValueStore(database.db, gateway.keyring, 'pin', Date.now);
    const otherStore = createKeyValueStore(database.db, gateway.keyring, 'other', Date.now);
    await pinStore.set('session:victim', { token: 'kv-victim-secret-0123456789' });
    await pinStore.set('session:attacker', { token: 'mine' });
    await otherStore.set('session:victim', { token: 'mine' });
    const victimValue = sql`(select value from kv where namespace = 'pin' and key = 'session:victim')`;
    await database.db.execute(sql`update kv set value = ${victimValue} where (namespace, key) in (('pin', 'session:attacker'), ('other', 'session:victim'))`);
    await expect(pinStore.get('session:attacker')).rejects.toMatchObject({ code: 'decrypt_failed' });
    await expect(otherStore.get('session:victim')).rejects.toMatchObject({ code: 'decrypt_failed' });
    expect(await pinStore.get('session:victim')).toEqual({ token: 'kv-victim-secret-0123456789' });
    expect((await database.db.select({ value: kv.value }).from(kv).where(eq(kv.namespace, 'other')))[0]!.value).toMatch(/^v1\./);
  });
});
