import { fileURLToPath } from 'node:url';
import { eq, sql } from '../../src/db/orm.ts';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyring, sha256 } from '../../src/core/crypto.ts';
import { createFormTokens, newFormToken } from '../../src/core/form-tokens.ts';
import { isLinkgateError } from '../../src/core/errors.ts';
import { createKeyValueStore } from '../../src/core/kv.ts';
import { CONTEXT_CLOCK_SKEW_SECONDS } from '../../src/core/link-context.ts';
import { createLinkStore } from '../../src/core/links.ts';
import { purgeExpired } from '../../src/core/purge.ts';
import { reencryptAll } from '../../src/core/reencrypt.ts';
import { createTenantStore } from '../../src/core/tenants.ts';
import type { Database } from '../../src/db/client.ts';
import { consoleFormTokens, flows, kv, links, loginSessions, usedContexts } from '../../src/db/schema.ts';
import { loginResultAad } from '../../src/core/logins.ts';
import { createOpenIdApps } from '../../src/core/openid-storage.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway } from '../helpers/gateway.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/providers', import.meta.url));
const OLD = { kid: 'old', key: Buffer.alloc(32, 1) };
const NEW = { kid: 'new', key: Buffer.alloc(32, 2) };
const NOW = new Date('2026-11-23T10:00:00Z');
const CREDENTIALS = { accessToken: 'access-token-plaintext', refreshToken: 'refresh-token-plaintext', tokenType: 'Bearer', scopes: ['openid'] };

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(() => database.close());

describe('link storage', () => {
  it('keeps no plaintext token in the credentials column', async () => {
    const store = createLinkStore(database.db, createKeyring([OLD]));
    await store.store({ tenant: 'default', userId: 'plain-1', provider: 'corp' }, { id: 'ext-plain' }, CREDENTIALS, { allowShared: false, now: NOW });
    const [row] = await database.db.select({ raw: links.credentials }).from(links).where(eq(links.userId, 'plain-1'));
    expect(row!.raw).toMatch(/^v1\.old\./);
    expect(row!.raw).not.toContain('access-token-plaintext');
    expect(row!.raw).not.toContain('refresh-token-plaintext');
    expect(store.openCredentials((await store.get({ tenant: 'default', userId: 'plain-1', provider: 'corp' }))!)).toEqual(CREDENTIALS);
  });

  it('re-encrypts under a new key put in front of the old one; old and new links both decrypt', async () => {
    const oldStore = createLinkStore(database.db, createKeyring([OLD]));
    await oldStore.store({ tenant: 'default', userId: 'rot-old', provider: 'corp' }, { id: 'ext-rot-old' }, CREDENTIALS, { allowShared: false, now: NOW });
    await createKeyValueStore(database.db, createKeyring([OLD]), 'corp', () => NOW.getTime()).set('session', { token: 'kv-secret' });

    const rotated = createKeyring([NEW, OLD]);
    const newStore = createLinkStore(database.db, rotated);
    await newStore.store({ tenant: 'default', userId: 'rot-new', provider: 'corp' }, { id: 'ext-rot-new' }, CREDENTIALS, { allowShared: false, now: NOW });

    const report = await reencryptAll(database.db, rotated, 2);
    expect(report.links!.reencrypted).toBeGreaterThanOrEqual(1);
    expect(report.kv).toEqual({ scanned: 1, reencrypted: 1, left: 0, unreadable: 0 });
    const sealed = await database.db.select({ raw: links.credentials }).from(links);
    for (const { raw } of sealed) expect(raw).toMatch(/^v1\.new\./);
    // A second run has nothing left to do.
    expect((await reencryptAll(database.db, rotated)).links!.reencrypted).toBe(0);

    // The old key can now go: the new key alone opens everything.
    const newOnly = createLinkStore(database.db, createKeyring([NEW]));
    for (const userId of ['rot-old', 'rot-new', 'plain-1']) {
      expect(newOnly.openCredentials((await newOnly.get({ tenant: 'default', userId, provider: 'corp' }))!)).toEqual(CREDENTIALS);
    }
    expect(await createKeyValueStore(database.db, createKeyring([NEW]), 'corp', () => NOW.getTime()).get('session')).toEqual({ token: 'kv-secret' });
  });

  it("re-seals tenants' context secrets, provider apps and webhook secrets too", async () => {
    const before = createTenantStore({ database, keyring: createKeyring([OLD]), environment: { apiKeys: [], contextSigningSecret: 'unused', webhook: undefined } });
    await before.create('rotated', 'Rotated');
    const { secret } = await before.createContextSecret('rotated');
    await before.putProviderConfig('rotated', 'discord', { DISCORD_CLIENT_ID: '123456789012345678', DISCORD_CLIENT_SECRET: 'tenant-discord-secret' });
    await before.putWebhook('rotated', { url: new URL('https://bot.example/hooks'), secret: 'tenant-webhook-secret-0123456789abcdef' });

    const report = await reencryptAll(database.db, createKeyring([NEW, OLD]));
    expect([report.tenant_context_secrets, report.tenant_provider_configs, report.tenant_webhooks]).toEqual([
      { scanned: 1, reencrypted: 1, left: 0, unreadable: 0 },
      { scanned: 1, reencrypted: 1, left: 0, unreadable: 0 },
      { scanned: 1, reencrypted: 1, left: 0, unreadable: 0 },
    ]);
    // The old key can go: the new one alone opens them all.
    const after = createTenantStore({ database, keyring: createKeyring([NEW]), environment: { apiKeys: [], contextSigningSecret: 'unused', webhook: undefined } });
    expect(await after.contextSecrets('rotated')).toEqual([secret]);
    expect((await after.providerConfig('rotated', 'discord', 1))!.env.DISCORD_CLIENT_SECRET).toBe('tenant-discord-secret');
    expect((await after.webhook('rotated'))!.secret).toBe('tenant-webhook-secret-0123456789abcdef');
  });

  it("re-seals apps' legacy JWT secrets and RPC sign-ins' tokens too", async () => {
    const apps = createOpenIdApps(database.db, createKeyring([OLD]));
    const app = await apps.create('default', { name: 'Legacy', type: 'public', redirectUris: ['https://app.example/cb'], postLogoutRedirectUris: [], providers: undefined, subject: 'external', firstParty: true, deviceFlow: false, legacyJwtSecret: 'legacy-jwt-secret-0123456789abcdefghij' });
    const sessionHash = 'rotated-login-session-digest';
    await database.db.insert(loginSessions).values({
      sessionHash,
      tenant: 'default',
      clientId: app.clientId,
      provider: 'atproto',
      status: 'completed',
      result: createKeyring([OLD]).seal('eyJ.token.sig', loginResultAad(sessionHash)),
      deadline: NOW,
      expiresAt: new Date(Date.now() + 60_000),
    });
    const report = await reencryptAll(database.db, createKeyring([NEW, OLD]));
    expect([report['oidc_apps.legacy_jwt_secret'], report.login_sessions]).toEqual([
      { scanned: 1, reencrypted: 1, left: 0, unreadable: 0 },
      { scanned: 1, reencrypted: 1, left: 0, unreadable: 0 },
    ]);
    expect(await createOpenIdApps(database.db, createKeyring([NEW])).legacyJwtSecret('default', app.clientId)).toBe('legacy-jwt-secret-0123456789abcdefghij');
    const [row] = await database.db.select().from(loginSessions).where(eq(loginSessions.sessionHash, sessionHash));
    expect(createKeyring([NEW]).open(row!.result!, loginResultAad(sessionHash))).toBe('eyJ.token.sig');
  });

  it('counts a value no configured key opens and goes on with the rest', async () => {
    const lost = { kid: 'lost', key: Buffer.alloc(32, 9) };
    await createKeyValueStore(database.db, createKeyring([lost]), 'corp', () => NOW.getTime()).set('orphan', { token: 'sealed-with-a-dropped-key' });
    await createKeyValueStore(database.db, createKeyring([OLD]), 'corp', () => NOW.getTime()).set('movable', { token: 'still-readable' });
    const report = await reencryptAll(database.db, createKeyring([NEW, OLD]));
    expect(report.kv).toMatchObject({ reencrypted: 1, unreadable: 1 });
    expect(await createKeyValueStore(database.db, createKeyring([NEW]), 'corp', () => NOW.getTime()).get('movable')).toEqual({ token: 'still-readable' });
  });

  it('leaves a link being refreshed to its refresher, whose new credentials then still land', async () => {
    const key = { tenant: 'default', userId: 'rot-leased', provider: 'corp' };
    await createLinkStore(database.db, createKeyring([OLD])).store(key, { id: 'ext-rot-leased' }, CREDENTIALS, { allowShared: false, now: NOW });
    const rotated = createKeyring([NEW, OLD]);
    const store = createLinkStore(database.db, rotated);
    const now = Date.now();
    const leased = (await store.takeRefreshLease(key, 'lease-token', new Date(now), new Date(now + 60_000)))!;

    const report = await reencryptAll(database.db, rotated);
    expect(report.links!.left).toBe(1);
    expect((await store.get(key))!.credentials).toBe(leased.credentials);

    // The refresher writes over what it read, under the primary key; a later run has nothing left.
    const refreshed = await store.replaceCredentials(leased, { ...CREDENTIALS, accessToken: 'refreshed' }, NOW);
    expect(refreshed!.credentials).toMatch(/^v1\.new\./);
    expect((await reencryptAll(database.db, rotated)).links!.left).toBe(0);
  });

  it('does not decrypt a credentials value moved to another user', async () => {
    const keyring = createKeyring([NEW]);
    const store = createLinkStore(database.db, keyring);
    await store.store({ tenant: 'default', userId: 'victim', provider: 'corp' }, { id: 'ext-victim' }, CREDENTIALS, { allowShared: false, now: NOW });
    await store.store({ tenant: 'default', userId: 'attacker', provider: 'corp' }, { id: 'ext-attacker' }, { accessToken: 'mine' }, { allowShared: false, now: NOW });
    await database.db.execute(
      sql`update links set credentials = (select credentials from links where user_id = 'victim') where user_id = 'attacker'`,
    );
    const moved = await store.get({ tenant: 'default', userId: 'attacker', provider: 'corp' });
    let error: unknown;
    try {
      store.openCredentials(moved!);
    } catch (caught) {
      error = caught;
    }
    expect(isLinkgateError(error, 'decrypt_failed')).toBe(true);
  });

  it('refuses an external account already linked to another user, unless shared accounts are allowed', async () => {
    const store = createLinkStore(database.db, createKeyring([NEW]));
    const account = { id: 'ext-shared', name: 'Shared' };
    await store.store({ tenant: 'default', userId: 'first', provider: 'corp' }, account, CREDENTIALS, { allowShared: false, now: NOW });
    const second = store.store({ tenant: 'default', userId: 'second', provider: 'corp' }, account, CREDENTIALS, { allowShared: false, now: NOW });
    await expect(second).rejects.toMatchObject({ code: 'account_already_linked', status: 409 });
    expect(await store.get({ tenant: 'default', userId: 'second', provider: 'corp' })).toBeUndefined();
    // The same user relinking the same account is fine.
    await store.store({ tenant: 'default', userId: 'first', provider: 'corp' }, account, CREDENTIALS, { allowShared: false, now: NOW });
    await store.store({ tenant: 'default', userId: 'second', provider: 'corp' }, account, CREDENTIALS, { allowShared: true, now: NOW });
    expect((await store.get({ tenant: 'default', userId: 'second', provider: 'corp' }))!.externalId).toBe('ext-shared');
  });

  it('replaces the old link when a user relinks', async () => {
    const store = createLinkStore(database.db, createKeyring([NEW]));
    const key = { tenant: 'default', userId: 'relinker', provider: 'corp' };
    await store.store(key, { id: 'ext-a', name: 'A' }, { accessToken: 'a' }, { allowShared: false, now: NOW });
    const later = new Date(NOW.getTime() + 60_000);
    await store.store(key, { id: 'ext-b', name: 'B' }, { accessToken: 'b' }, { allowShared: false, now: later });
    const rows = await store.list('default', 'relinker');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ externalId: 'ext-b', externalName: 'B', linkedAt: later });
    expect(store.openCredentials(rows[0]!)).toEqual({ accessToken: 'b' });
  });
});

describe('the console one-time form tokens', () => {
  it('a token is spent once, and a later send learns what the first made; given back, it is spent once more; only its digest is stored', async () => {
    const tokens = createFormTokens(database.db, 60, () => NOW.getTime());
    const token = newFormToken();
    expect(token).toMatch(/^[A-Za-z0-9_-]{22}$/);
    // Two sends at once: one spends it, the other finds nothing made yet.
    expect(await Promise.all([tokens.spend(token), tokens.spend(token)])).toEqual(expect.arrayContaining([true, { made: null }]));
    await tokens.made(token, 'api_key:key_made');
    expect(await tokens.spend(token)).toEqual({ made: 'api_key:key_made' });
    await tokens.release(token);
    expect(await tokens.spend(token)).toBe(true);
    const stored = await database.db.select().from(consoleFormTokens);
    expect(stored).toContainEqual({ tokenHash: sha256(token), made: null, expiresAt: new Date(NOW.getTime() + 60_000) });
    expect(JSON.stringify(stored)).not.toContain(token);
  });
});

describe('background purge', () => {
  it('deletes expired flows, used context ids and key-value entries, and keeps live ones', async () => {
    const keyring = createKeyring([NEW]);
    const past = new Date(NOW.getTime() - 1000);
    const future = new Date(NOW.getTime() + 60_000);
    const flow = (stateHash: string, expiresAt: Date) => ({ stateHash, tenant: 'default', userId: 'u', provider: 'corp', browserHash: 'b', expiresAt });
    await database.db.insert(flows).values([flow('expired', past), flow('live', future)]);
    await database.db.insert(usedContexts).values([
      { tenant: 'default', jti: 'old-jti', expiresAt: past },
      { tenant: 'default', jti: 'new-jti', expiresAt: future },
    ]);
    const store = createKeyValueStore(database.db, keyring, 'purge', () => NOW.getTime() - 10_000);
    await store.set('short', 1, { ttlSeconds: 1 });
    await store.set('forever', 2);

    // The console's spent form tokens: one spent 8 hours and a second ago, one just now.
    const spentEarlier = createFormTokens(database.db, 8 * 3600, () => NOW.getTime() - 8 * 3600 * 1000 - 1000);
    const spentNow = createFormTokens(database.db, 8 * 3600, () => NOW.getTime());
    expect(await spentEarlier.spend('AAAAAAAAAAAAAAAAAAAAAA')).toBe(true);
    expect(await spentNow.spend('BBBBBBBBBBBBBBBBBBBBBB')).toBe(true);

    expect(await purgeExpired(database.db, NOW)).toEqual({ flows: 1, usedContexts: 1, kv: 1, rateLimits: 0, webhookDeliveries: 0, openIdPayloads: 0, webSessions: 0, linkEvents: 0, loginSessions: 0, consoleInvites: 0, consoleFormTokens: 1 });
    expect(await spentNow.spend('BBBBBBBBBBBBBBBBBBBBBB')).toEqual({ made: null });
    expect((await database.db.select({ s: flows.stateHash }).from(flows)).map((r) => r.s)).toEqual(['live']);
    expect((await database.db.select({ j: usedContexts.jti }).from(usedContexts)).map((r) => r.j)).toEqual(['new-jti']);
    expect((await database.db.select({ k: kv.key }).from(kv).where(eq(kv.namespace, 'purge'))).map((r) => r.k)).toEqual(['forever']);
  });
});

describe('used link contexts', () => {
  it('stays refused after a purge while the verifier still accepts it (exp + clock skew)', async () => {
    let clock = NOW.getTime();
    const gateway = await createTestGateway(database, { providersDir: FIXTURES, now: () => clock });
    const context = await mintContext('pin', 'replayer', { now: clock, ttlSeconds: 60 });
    const first = await new TestBrowser((path, init) => gateway.app.request(path, init)).openLink(`/oauth/pin/start?context=${context}`);
    expect(first.status).toBe(200);

    // Past `exp`, inside the skew the verifier allows; the background purge runs.
    clock = NOW.getTime() + 60_000 + (CONTEXT_CLOCK_SKEW_SECONDS - 5) * 1000;
    await purgeExpired(database.db, new Date(clock));
    const replay = await new TestBrowser((path, init) => gateway.app.request(path, init)).openLink(`/oauth/pin/start?context=${context}`);
    expect(replay.status).toBe(400);
    expect(await replay.text()).toContain('This link was already used');

    // Once the context no longer verifies, its id can go.
    clock = NOW.getTime() + 60_000 + (CONTEXT_CLOCK_SKEW_SECONDS + 1) * 1000;
    await purgeExpired(database.db, new Date(clock));
    expect(await database.db.select().from(usedContexts).where(eq(usedContexts.jti, decodeJwt(context).jti!))).toEqual([]);
    const late = await new TestBrowser((path, init) => gateway.app.request(path, init)).openLink(`/oauth/pin/start?context=${context}`);
    expect(late.status).toBe(400);
    expect(await late.text()).toContain('This link has expired');
  });
});
