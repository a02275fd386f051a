/**
 * Tenants (issue #19's "done when"): two bots on one gateway, each with its
 * own OpenID provider app, keys, context secrets and webhook, and nothing of
 * one visible to the other; a context can only be signed by its own tenant;
 * provider configurations are checked, stored sealed and shown masked;
 * rotating a context secret; the operator API closed without its keys.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHmac } from 'node:crypto';
import * as v from 'valibot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { and, eq, sql } from '../../src/db/orm.ts';
import { links, webhookDeliveries } from '../../src/db/schema.ts';
import { createWebhookWorker } from '../../src/core/webhooks.ts';
import { createTenantStore } from '../../src/core/tenants.ts';
import { parseConfig } from '../../src/config.ts';
import {
  ApiKeysAnswer,
  ContextSecretsAnswer,
  CreatedApiKeyAnswer,
  CreatedContextSecretAnswer,
  ProviderConfigAnswer,
  TenantAnswer,
  TenantDetailAnswer,
  TenantProvidersAnswer,
  TenantsAnswer,
} from '../../src/http/admin.ts';
import { linkUrlFor, signLinkContext } from '../../packages/client/src/index.ts';
import { startTestIdp, type TestIdp } from '../fakes/oidc-idp.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, createTestGateway, TEST_SECRETS, type TestGateway } from '../helpers/gateway.ts';
import pino from 'pino';

const BASE = 'http://127.0.0.1:8000';
const ADMIN_KEY = 'admin_0123456789abcdefghijklmnopqrstuvwxyz';
const SECRET_A = 'tenant-a-client-secret-0123456789abcdef';
const SECRET_B = 'tenant-b-client-secret-0123456789abcdef';
const SECRET_A2 = 'tenant-a-new-client-secret-0123456789ab';

let database: Database;
let gateway: TestGateway;
/** Tenant a's first app and tenant b's app, each its own client at its own test IdP; a's second app (after it changes) at a third. */
let idpA: TestIdp;
let idpB: TestIdp;
let idpA2: TestIdp;
let receiver: { url: string; events: Array<{ tenant: string; body: string; signature: string }>; close(): Promise<void> };
const keys: Record<string, string> = {};
const secrets: Record<string, string> = {};

const admin = (path: string, init: { method?: string; body?: unknown } = {}) =>
  gateway.app.request(`/api/admin/v1${path}`, {
    method: init.method ?? 'GET',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
const bot = (tenant: string, path: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}) =>
  gateway.app.request(`/api/v1${path}`, {
    method: init.method ?? 'GET',
    headers: { authorization: `Bearer ${keys[tenant]}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
const corpEnv = (idp: TestIdp, secret: string) => ({ CORP_ISSUER: idp.issuer, CORP_CLIENT_ID: idp.clientId, CORP_CLIENT_SECRET: secret, CORP_SCOPES: 'openid profile offline_access' });

/** A webhook receiver that records what each tenant's endpoint got (`/a`, `/b`). */
async function startReceiver() {
  const events: Array<{ tenant: string; body: string; signature: string }> = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      events.push({ tenant: req.url!.slice(1), body, signature: String(req.headers['linkgate-signature']) });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, events, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** The user links `provider` through the tenant's own app, with a context the tenant's bot signed. */
async function link(tenant: string, userId: string, idp: TestIdp, sub: string) {
  const context = await mintContext('corp', userId, { secret: secrets[tenant]!, claims: { tenant } });
  const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
  const started = await browser.openLink(`/oauth/corp/start?context=${context}`);
  expect(started.status).toBe(303);
  const authorize = new URL(started.headers.get('location')!);
  expect(authorize.origin).toBe(new URL(idp.issuer).origin);
  expect(authorize.searchParams.get('client_id')).toBe(idp.clientId);
  const page = await browser.get(await idp.login(authorize, sub));
  expect(page.status).toBe(200);
  return browser;
}

beforeAll(async () => {
  database = await createTestDatabase();
  const redirectUris = [`${BASE}/oauth/corp/callback`];
  [idpA, idpB, idpA2] = await Promise.all([
    startTestIdp({ redirectUris, clientId: 'tenant-a-app', clientSecret: SECRET_A, accessTokenTtlSeconds: 5 }),
    startTestIdp({ redirectUris, clientId: 'tenant-b-app', clientSecret: SECRET_B }),
    startTestIdp({ redirectUris, clientId: 'tenant-a-new-app', clientSecret: SECRET_A2 }),
  ]);
  receiver = await startReceiver();
  // The environment configures no OpenID provider at all: `corp` exists only in the tenants' own settings.
  gateway = await createTestGateway(database, { env: { LINKGATE_ADMIN_KEYS: ADMIN_KEY, OIDC_PROVIDERS: '' } });
  for (const [tenant, idp, secret] of [['a', idpA, SECRET_A], ['b', idpB, SECRET_B]] as const) {
    expect((await admin('/tenants', { method: 'POST', body: { id: tenant, name: `Bot ${tenant.toUpperCase()}` } })).status).toBe(201);
    keys[tenant] = v.parse(CreatedApiKeyAnswer, await (await admin(`/tenants/${tenant}/api-keys`, { method: 'POST', body: { name: 'bot' } })).json()).key;
    secrets[tenant] = v.parse(CreatedContextSecretAnswer, await (await admin(`/tenants/${tenant}/context-secrets`, { method: 'POST' })).json()).secret;
    expect((await admin(`/tenants/${tenant}/providers/corp`, { method: 'PUT', body: { env: corpEnv(idp, secret) } })).status).toBe(200);
    expect((await admin(`/tenants/${tenant}/webhook`, { method: 'PUT', body: { url: `${receiver.url}/${tenant}`, secret: `whsec_${tenant}_0123456789abcdefghijklmnopqrstuv` } })).status).toBe(200);
  }
});
afterAll(async () => {
  await Promise.all([idpA?.close(), idpB?.close(), idpA2?.close(), receiver?.close()]);
  await database?.close();
});

describe('two tenants on one gateway', () => {
  it('links the same user id in both, each through its own app, and each key sees only its own tenant', async () => {
    await link('a', 'same-user', idpA, 'alice-at-a');
    await link('b', 'same-user', idpB, 'alice-at-b');

    const seenByA = (await (await bot('a', '/users/same-user/links/corp')).json()) as { externalId: string };
    const seenByB = (await (await bot('b', '/users/same-user/links/corp')).json()) as { externalId: string };
    expect(seenByA.externalId).toBe('alice-at-a');
    expect(seenByB.externalId).toBe('alice-at-b');
    expect(((await (await bot('a', '/users/same-user/links')).json()) as { links: unknown[] }).links).toHaveLength(1);

    // Token and wait answer from each tenant's own link.
    const tokenA = (await (await bot('a', '/users/same-user/links/corp/token', { method: 'POST' })).json()) as { accessToken: string };
    const tokenB = (await (await bot('b', '/users/same-user/links/corp/token', { method: 'POST' })).json()) as { accessToken: string };
    expect(tokenA.accessToken).toBeTruthy();
    expect(tokenB.accessToken).not.toBe(tokenA.accessToken);
    expect(((await (await bot('a', '/users/same-user/links/corp/wait?timeoutSeconds=1')).json()) as { externalId: string }).externalId).toBe('alice-at-a');

    // The environment's key (the default tenant) sees neither: corp is not even one of its providers.
    const asDefault = await gateway.api('/users/same-user/links/corp');
    expect(asDefault.status).toBe(404);
    expect(((await asDefault.json()) as { error: { code: string } }).error.code).toBe('unknown_provider');
    expect(((await (await gateway.api('/users/same-user/links')).json()) as { links: unknown[] }).links).toEqual([]);

    // A user only a's bot knows is not linked for b, and b's answer carries b's own link URL (its tenant claim, its secret).
    await link('a', 'only-a', idpA, 'bob-at-a');
    const missing = await bot('b', '/users/only-a/links/corp');
    expect(missing.status).toBe(404);
    const url = new URL(((await missing.json()) as { linkUrl: string }).linkUrl);
    const [header, payload, signature] = url.searchParams.get('context')!.split('.');
    expect(JSON.parse(Buffer.from(payload!, 'base64url').toString()).tenant).toBe('b');
    expect(createHmac('sha256', secrets.b!).update(`${header}.${payload}`).digest('base64url')).toBe(signature);

    // Deleting with one key leaves the other tenant's link of the same user id.
    expect((await bot('a', '/users/same-user/links/corp', { method: 'DELETE' })).status).toBe(204);
    expect((await bot('a', '/users/same-user/links/corp')).status).toBe(404);
    expect((await bot('b', '/users/same-user/links/corp')).status).toBe(200);
  });

  it('sends each tenant its own events, signed with its own secret', async () => {
    await link('b', 'hooked', idpB, 'carol-at-b');
    const worker = createWebhookWorker({
      database,
      endpoint: (tenant) => createTenantStore({ database, keyring: gateway.keyring, environment: { apiKeys: [], contextSigningSecret: 'unused', webhook: undefined } }).webhook(tenant),
      maxAttempts: 3,
      retryBaseMs: 10,
      logger: pino({ level: 'silent' }),
    });
    while ((await worker.runOnce()) > 0);
    const rows = await database.db.select().from(webhookDeliveries);
    expect(rows.every((row) => row.status === 'delivered')).toBe(true);
    const byTenant = (tenant: string) => receiver.events.filter((event) => event.tenant === tenant);
    expect(byTenant('a').length).toBeGreaterThan(0);
    expect(byTenant('b').length).toBeGreaterThan(0);
    for (const tenant of ['a', 'b']) {
      for (const event of byTenant(tenant)) {
        const [, t, v1] = /^t=(\d+),v1=([0-9a-f]+)$/.exec(event.signature)!;
        expect(createHmac('sha256', `whsec_${tenant}_0123456789abcdefghijklmnopqrstuv`).update(`${t}.${event.body}`).digest('hex')).toBe(v1);
      }
    }
    // b's receiver got b's users only; a's deletion of same-user went to a alone.
    const users = (tenant: string) => byTenant(tenant).map((event) => (JSON.parse(event.body) as { link: { userId: string } }).link.userId);
    expect(users('b')).toContain('hooked');
    expect(users('a')).not.toContain('hooked');
    expect(byTenant('a').map((event) => (JSON.parse(event.body) as { type: string }).type)).toContain('link.deleted');
    // Each key's delivery log is its own tenant's.
    const logA = (await (await bot('a', '/webhooks/deliveries')).json()) as { deliveries: Array<{ event: { link?: { userId: string } } }> };
    expect(logA.deliveries.map((d) => d.event.link?.userId)).not.toContain('hooked');
  });
});

describe('who names the tenant', () => {
  it('refuses a context signed with a secret of a but naming b, or naming no such tenant, before any provider is contacted', async () => {
    const before = { a: idpA.counts.token, b: idpB.counts.token };
    const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
    for (const claims of [{ tenant: 'b' }, { tenant: 'nobody' }]) {
      const context = await mintContext('corp', 'mallory', { secret: secrets.a!, claims });
      const page = await browser.get(`/oauth/corp/start?context=${context}`);
      expect(page.status).toBe(400);
      expect(await page.text()).toContain(claims.tenant === 'b' ? 'context_invalid' : 'context_wrong_tenant');
    }
    // Nor does the environment's secret sign for a tenant.
    const withDefaultSecret = await mintContext('corp', 'mallory', { secret: TEST_SECRETS.OAUTH_CONTEXT_SIGNING_SECRET, claims: { tenant: 'a' } });
    expect((await browser.get(`/oauth/corp/start?context=${withDefaultSecret}`)).status).toBe(400);
    expect({ a: idpA.counts.token, b: idpB.counts.token }).toEqual(before);
  });

  it('keeps a flow started in a to the browser that started it: b\'s browser and state cannot complete it', async () => {
    const context = await mintContext('corp', 'flow-user', { secret: secrets.a!, claims: { tenant: 'a' } });
    const browserA = new TestBrowser((path, init) => gateway.app.request(path, init));
    const started = await browserA.openLink(`/oauth/corp/start?context=${context}`);
    const callback = await idpA.login(new URL(started.headers.get('location')!), 'flow-sub');
    // Another browser (b's user, with b's cookie) presenting a's callback is refused, and nothing is linked.
    await link('b', 'flow-user-b', idpB, 'dave-at-b');
    const browserB = new TestBrowser((path, init) => gateway.app.request(path, init));
    expect((await browserB.get(callback, { follow: false })).status).toBe(400);
    expect((await bot('a', '/users/flow-user/links/corp')).status).toBe(404);
    // b's state, a real one: a flow started for tenant b in b's browser, signed in at b's app.
    const browserB2 = new TestBrowser((path, init) => gateway.app.request(path, init));
    const startedB = await browserB2.openLink(`/oauth/corp/start?context=${await mintContext('corp', 'flow-user-b2', { secret: secrets.b!, claims: { tenant: 'b' } })}`);
    const authorizeB = new URL(startedB.headers.get('location')!);
    expect(authorizeB.searchParams.get('client_id')).toBe(idpB.clientId);
    const callbackB = await idpB.login(authorizeB, 'erin-at-b');
    const stateB = callbackB.searchParams.get('state')!;
    // a's browser, with a's code and b's state, or with b's whole callback, completes nothing.
    const crossed = new URL(callback);
    crossed.searchParams.set('state', stateB);
    for (const url of [crossed, callbackB]) {
      const refused = await browserA.get(url, { follow: false });
      expect(refused.status, url.href).toBe(400);
    }
    // Nor do a's browser's other uses of b's state: the flow's page, its poll, its cancel.
    expect((await browserA.get(`/oauth/corp/continue?state=${stateB}`, { follow: false })).status).toBe(400);
    // (the poll of a flow that is not this browser's says what it says of an unknown one)
    expect(await (await browserA.get(`/oauth/corp/poll?state=${stateB}`, { follow: false })).json()).toEqual({ status: 'expired' });
    expect((await browserA.post('/oauth/corp/cancel', { state: stateB }, { follow: false })).status).toBe(400);
    expect((await bot('a', '/users/flow-user/links/corp')).status).toBe(404);
    expect((await bot('a', '/users/flow-user-b2/links/corp')).status).toBe(404);
    // The state was real and is untouched: b's own browser completes b's flow, for b only.
    expect((await browserB2.get(callbackB)).status).toBe(200);
    expect(((await (await bot('b', '/users/flow-user-b2/links/corp')).json()) as { externalId: string }).externalId).toBe('erin-at-b');
    expect((await bot('a', '/users/flow-user-b2/links/corp')).status).toBe(404);
  });

  it("takes a link URL the typed client signed with a tenant's own secret for that tenant, and refuses one signed with another tenant's", async () => {
    const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
    const signed = await signLinkContext({ secret: secrets.a!, tenant: 'a', userId: 'client-signed', provider: 'corp' });
    const url = new URL(linkUrlFor(BASE, 'corp', signed));
    const started = await browser.openLink(`${url.pathname}${url.search}`);
    expect(started.status).toBe(303);
    const authorize = new URL(started.headers.get('location')!);
    expect(authorize.searchParams.get('client_id')).toBe(idpA.clientId);
    expect((await browser.get(await idpA.login(authorize, 'gina-at-a'))).status).toBe(200);
    expect(((await (await bot('a', '/users/client-signed/links/corp')).json()) as { externalId: string }).externalId).toBe('gina-at-a');
    expect((await bot('b', '/users/client-signed/links/corp')).status).toBe(404);

    // b's secret naming a, and a's secret naming b: refused before any provider is contacted.
    const before = { a: idpA.counts.token, b: idpB.counts.token };
    for (const [secret, tenant] of [[secrets.b!, 'a'], [secrets.a!, 'b']] as const) {
      const forged = new URL(linkUrlFor(BASE, 'corp', await signLinkContext({ secret, tenant, userId: 'client-forged', provider: 'corp' })));
      const page = await browser.get(`${forged.pathname}${forged.search}`);
      expect(page.status, tenant).toBe(400);
      expect(await page.text()).toContain('context_invalid');
    }
    expect({ a: idpA.counts.token, b: idpB.counts.token }).toEqual(before);
  });

  it('answers 403 to a key of a naming tenant b in x-tenant-id, and takes a matching header', async () => {
    const refused = await bot('a', '/providers', { headers: { 'x-tenant-id': 'b' } });
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('tenant_mismatch');
    const matching = await bot('a', '/providers', { headers: { 'x-tenant-id': 'a' } });
    expect(matching.status).toBe(200);
    const providers = ((await matching.json()) as { providers: Array<{ id: string; configured: boolean }> }).providers;
    expect(providers.find((p) => p.id === 'corp')?.configured).toBe(true);
    expect(providers.find((p) => p.id === 'discord')?.configured).toBe(false);
    // ATProto's client is the gateway's own: not a tenant's to configure, and not listed for one.
    expect(providers.some((p) => p.id === 'atproto')).toBe(false);
  });
});

describe('provider configurations', () => {
  it('answers 400 naming the field for a bad value, never echoing a secret; shows secrets masked; stores nothing in plaintext', async () => {
    const bad = await admin('/tenants/a/providers/discord', { method: 'PUT', body: { env: { DISCORD_CLIENT_ID: 'not a snowflake', DISCORD_CLIENT_SECRET: 'very-secret-value-0123456789' } } });
    expect(bad.status).toBe(400);
    const badText = await bad.text();
    expect(badText).toContain('DISCORD_CLIENT_ID');
    expect(badText).not.toContain('very-secret-value-0123456789');
    const unknown = await admin('/tenants/a/providers/discord', { method: 'PUT', body: { env: { DISCORD_CLIENT_SECRETT: 'x' } } });
    expect(unknown.status).toBe(400);
    expect(await unknown.text()).toContain('DISCORD_CLIENT_SECRETT');
    expect((await admin('/tenants/a/providers/atproto', { method: 'PUT', body: { env: {} } })).status).toBe(400);

    const good = await admin('/tenants/a/providers/discord', { method: 'PUT', body: { env: { DISCORD_CLIENT_ID: '123456789012345678', DISCORD_CLIENT_SECRET: 'very-secret-value-0123456789' } } });
    expect(good.status).toBe(200);
    const shown = v.parse(ProviderConfigAnswer, await good.json());
    expect(shown.env).toEqual({ DISCORD_CLIENT_ID: '123456789012345678', DISCORD_CLIENT_SECRET: '********' });
    const listed = v.parse(TenantProvidersAnswer, await (await admin('/tenants/a/providers')).json());
    expect(listed.providers.find((p) => p.id === 'discord')).toEqual({ id: 'discord', displayName: 'Discord', configured: true });
    expect(listed.providers.find((p) => p.id === 'anilist')?.missing).toContain('ANILIST_CLIENT_ID');

    // A dump of every table: no client secret, context secret, webhook secret or bot key in plaintext.
    const dump = JSON.stringify(
      await database.db.execute(sql`
        select (select json_agg(t) from tenant_provider_configs t) as configs, (select json_agg(t) from tenant_context_secrets t) as secrets,
               (select json_agg(t) from tenant_webhooks t) as webhooks, (select json_agg(t) from tenant_api_keys t) as keys, (select json_agg(t) from links t) as links`),
    );
    for (const plain of ['very-secret-value-0123456789', SECRET_A, SECRET_B, secrets.a!, secrets.b!, keys.a!, keys.b!, 'whsec_a_0123456789abcdefghijklmnopqrstuv']) expect(dump).not.toContain(plain);
  });

  it("keeps refreshing links made with a tenant's old app after it changes to a new one", async () => {
    await link('a', 'refresher', idpA, 'erin-at-a');
    expect((await admin('/tenants/a/providers/corp', { method: 'PUT', body: { env: corpEnv(idpA2, SECRET_A2) } })).status).toBe(200);
    // New links go through the new app...
    await link('a', 'newcomer', idpA2, 'frank-at-a');
    // ...and the old link's token (5 s, so due within the refresh margin) is refreshed at the old app, with the old client.
    const refreshesBefore = idpA.counts.tokenByGrant.refresh_token ?? 0;
    const token = await bot('a', '/users/refresher/links/corp/token', { method: 'POST' });
    expect(token.status).toBe(200);
    expect(idpA.counts.tokenByGrant.refresh_token ?? 0).toBe(refreshesBefore + 1);
    expect(idpA2.counts.tokenByGrant.refresh_token ?? 0).toBe(0);
  });

  it("refreshes and revokes a link imported into a tenant with the tenant's app", async () => {
    // The tenant's export, imported back into it after the access token's expiry was moved up.
    await link('b', 'mover', idpB, 'mover-at-b');
    const exported = await (await admin('/tenants/b/links:export?plaintext=true')).text();
    const exportedLine = JSON.parse(exported.split('\n').find((row) => row.includes('"userId":"mover"'))!) as { credentials: { expiresAt: string } };
    // Its access token expires in 5 s: due within the refresh margin at the first use after the import.
    exportedLine.credentials.expiresAt = new Date(Date.now() + 5000).toISOString();
    const line = JSON.stringify(exportedLine);
    const imported = await gateway.app.request('/api/admin/v1/tenants/b/links:import', {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/x-ndjson' },
      body: `${line}\n`,
    });
    // Restored over the link as it was (a backup, say): the import replaces its credentials.
    expect(await imported.json()).toMatchObject({ counts: { updated: 1 } });
    // The token is refreshed at b's app, as for a link made here.
    const refreshesBefore = idpB.counts.tokenByGrant.refresh_token ?? 0;
    expect((await bot('b', '/users/mover/links/corp/token', { method: 'POST' })).status).toBe(200);
    expect(idpB.counts.tokenByGrant.refresh_token ?? 0).toBe(refreshesBefore + 1);
    // The import recorded the tenant's configuration version. A link imported before it did has none, and is
    // refused (503) until migration 0016 gives it the tenant's newest version for that provider.
    const mover = and(eq(links.tenant, 'b'), eq(links.userId, 'mover'));
    const [row] = await database.db.select({ configVersion: links.configVersion }).from(links).where(mover);
    expect(row!.configVersion).toBeGreaterThan(0);
    await database.db.update(links).set({ configVersion: null }).where(mover);
    expect((await bot('b', '/users/mover/links/corp/token', { method: 'POST' })).status).toBe(503);
    await database.db.execute(sql.raw(readFileSync(new URL('../../drizzle/0016_imported_link_versions.sql', import.meta.url), 'utf8')));
    expect((await database.db.select({ configVersion: links.configVersion }).from(links).where(mover))[0]!.configVersion).toBe(row!.configVersion);
    expect((await bot('b', '/users/mover/links/corp/token', { method: 'POST' })).status).toBe(200);
    // The operator deletes it: b's app revokes its tokens.
    const revocationsBefore = idpB.counts.revocation;
    const deleted = await gateway.app.request('/api/admin/v1/tenants/b/users/mover/links/corp', { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    expect(deleted.status).toBe(200);
    expect(await deleted.json()).toMatchObject({ deleted: { userId: 'mover', provider: 'corp', externalId: 'mover-at-b' }, revocation: 'revoked' });
    expect(idpB.counts.revocation).toBeGreaterThan(revocationsBefore);
  });
});

describe('rotating a context secret', () => {
  it('keeps contexts signed with the old secret working until it is retired, then refuses them', async () => {
    const old = secrets.a!;
    const fresh = v.parse(CreatedContextSecretAnswer, await (await admin('/tenants/a/context-secrets', { method: 'POST' })).json());
    const listed = v.parse(ContextSecretsAnswer, await (await admin('/tenants/a/context-secrets')).json());
    expect(listed.contextSecrets.map((s) => s.id)).toContain(fresh.id);
    const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
    const open = async (secret: string) => browser.get(`/oauth/corp/start?context=${await mintContext('corp', 'rotating', { secret, claims: { tenant: 'a' } })}`);
    expect((await open(old)).status).toBe(200);
    expect((await open(fresh.secret)).status).toBe(200);
    // The gateway signs new link URLs with the newest.
    const answer = (await (await bot('a', '/link-urls', { method: 'POST', body: { userId: 'rotating', provider: 'corp' } })).json()) as { url: string };
    const [header, payload, signature] = new URL(answer.url).searchParams.get('context')!.split('.');
    expect(createHmac('sha256', fresh.secret).update(`${header}.${payload}`).digest('base64url')).toBe(signature);

    const oldId = listed.contextSecrets.find((s) => s.id !== fresh.id)!.id;
    expect((await admin(`/tenants/a/context-secrets/${oldId}`, { method: 'DELETE' })).status).toBe(204);
    expect((await open(old)).status).toBe(400);
    expect((await open(fresh.secret)).status).toBe(200);
    secrets.a = fresh.secret;
  });
});

describe('the operator API', () => {
  it('manages tenants and keys with the documented shapes', async () => {
    expect((await admin('/tenants', { method: 'POST', body: { id: 'a', name: 'again' } })).status).toBe(409);
    const badId = await admin('/tenants', { method: 'POST', body: { id: 'Not_OK', name: 'x' } });
    expect(badId.status).toBe(400);
    expect(await badId.text()).toContain('tenant id');
    const list = v.parse(TenantsAnswer, await (await admin('/tenants')).json());
    expect(list.tenants.map((t) => t.id)).toEqual(['a', 'b', 'default']);
    const detail = v.parse(TenantDetailAnswer, await (await admin('/tenants/b')).json());
    expect(detail).toMatchObject({ id: 'b', name: 'Bot B', webhookUrl: `${receiver.url}/b`, apiKeys: 1 });
    expect((await admin('/tenants/nobody')).status).toBe(404);

    // A key: shown once, listed without itself, with when it was last used; revoked at once.
    const created = v.parse(CreatedApiKeyAnswer, await (await admin('/tenants/b/api-keys', { method: 'POST', body: { name: 'second bot' } })).json());
    keys.b2 = created.key;
    expect((await bot('b2', '/providers')).status).toBe(200);
    const listed = v.parse(ApiKeysAnswer, await (await admin('/tenants/b/api-keys')).json());
    expect(JSON.stringify(listed)).not.toContain(created.key);
    await expect.poll(async () => v.parse(ApiKeysAnswer, await (await admin('/tenants/b/api-keys')).json()).apiKeys.find((k) => k.id === created.id)?.lastUsedAt).not.toBeNull();
    expect((await admin(`/tenants/b/api-keys/${created.id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await bot('b2', '/providers')).status).toBe(401);
    expect((await admin('/tenants/default', { method: 'DELETE' })).status).toBe(400);
  });

  it('deletes a tenant with everything it has, leaving the other', async () => {
    expect((await admin('/tenants', { method: 'POST', body: { id: 'gone', name: 'Short-lived' } })).status).toBe(201);
    keys.gone = v.parse(CreatedApiKeyAnswer, await (await admin('/tenants/gone/api-keys', { method: 'POST', body: { name: 'bot' } })).json()).key;
    secrets.gone = v.parse(CreatedContextSecretAnswer, await (await admin('/tenants/gone/context-secrets', { method: 'POST' })).json()).secret;
    expect((await admin('/tenants/gone/providers/corp', { method: 'PUT', body: { env: corpEnv(idpB, SECRET_B) } })).status).toBe(200);
    await link('gone', 'leaver', idpB, 'gina');
    const revocations = idpB.counts.revocation;
    const deleted = await admin('/tenants/gone', { method: 'DELETE' });
    expect(deleted.status).toBe(204);
    // How many links went with it (what `linkgate tenants delete` prints through a running gateway).
    expect(deleted.headers.get('linkgate-unlinked')).toBe('1');
    expect(idpB.counts.revocation).toBeGreaterThan(revocations);
    expect((await bot('gone', '/providers')).status).toBe(401);
    const left = await database.db.execute(sql`select count(*)::int as n from links where tenant = 'gone'`);
    expect(JSON.stringify(left)).toContain('"n":0');
    expect((await bot('b', '/users/same-user/links/corp')).status).toBe(200);
  });
});

describe("a tenant's own settings", () => {
  it('limits its keys by its own API rate limit, leaving other tenants on the gateway\'s', async () => {
    expect((await admin('/tenants', { method: 'POST', body: { id: 'limited', name: 'Limited' } })).status).toBe(201);
    keys.limited = v.parse(CreatedApiKeyAnswer, await (await admin('/tenants/limited/api-keys', { method: 'POST', body: { name: 'bot' } })).json()).key;
    const patched = await admin('/tenants/limited', { method: 'PATCH', body: { apiRateLimit: { limit: 2, windowSeconds: 60 } } });
    expect(patched.status).toBe(200);
    expect(v.parse(TenantDetailAnswer, await patched.json()).apiRateLimit).toEqual({ limit: 2, windowSeconds: 60 });
    const statuses = [];
    for (let i = 0; i < 3; i += 1) statuses.push((await bot('limited', '/providers')).status);
    expect(statuses).toEqual([200, 200, 429]);
    const refused = await bot('limited', '/providers');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    // The gateway's limit (100 per 2 s in tests) for everyone else.
    for (let i = 0; i < 3; i += 1) expect((await bot('a', '/providers')).status).toBe(200);
    // Cleared: the gateway's limit again.
    expect((await admin('/tenants/limited', { method: 'PATCH', body: { apiRateLimit: null } })).status).toBe(200);
    expect((await bot('limited', '/providers')).status).toBe(200);
  });

  it('shows its own branding on its pages, and refuses a bad value naming the field', async () => {
    const bad = await admin('/tenants/a', { method: 'PATCH', body: { brand: { color: 'pink' } } });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain('brand.color');
    const elsewhere = await admin('/tenants/a', { method: 'PATCH', body: { brand: { iconUrl: 'https://images.example/bot.png' } } });
    expect(elsewhere.status).toBe(400);
    expect((await admin('/tenants/default', { method: 'PATCH', body: { brand: { name: 'x' } } })).status).toBe(400);

    const patched = await admin('/tenants/a', { method: 'PATCH', body: { name: 'Bot A, renamed', brand: { name: 'Quiz Bot', color: '#ABC', supportUrl: 'https://quiz.example/help' } } });
    expect(patched.status).toBe(200);
    expect(v.parse(TenantDetailAnswer, await patched.json())).toMatchObject({ name: 'Bot A, renamed', brand: { name: 'Quiz Bot', color: '#aabbcc', supportUrl: 'https://quiz.example/help' } });
    const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
    const page = await browser.get(`/oauth/corp/start?context=${await mintContext('corp', 'branded', { secret: secrets.a!, claims: { tenant: 'a' } })}`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('Quiz Bot');
    expect(html).toContain('https://quiz.example/help');
    // Another tenant's page does not wear it.
    const other = await browser.get(`/oauth/corp/start?context=${await mintContext('corp', 'branded', { secret: secrets.b!, claims: { tenant: 'b' } })}`);
    expect(await other.text()).not.toContain('Quiz Bot');
  });
});

describe('a deployment without tenants', () => {
  it('answers 404 on the operator API without LINKGATE_ADMIN_KEYS, with or without a key', async () => {
    const plain = await createTestGateway(database);
    for (const authorization of [undefined, `Bearer ${ADMIN_KEY}`, `Bearer ${API_KEY}`]) {
      const answer = await plain.app.request('/api/admin/v1/tenants', { headers: authorization ? { authorization } : {} });
      expect(answer.status).toBe(404);
    }
    // The environment's bot key is not an operator key where there are some.
    expect((await gateway.app.request('/api/admin/v1/tenants', { headers: { authorization: `Bearer ${API_KEY}` } })).status).toBe(401);
    expect(() => parseConfig({ ...TEST_SECRETS, LINKGATE_ADMIN_KEYS: API_KEY })).toThrow(/LINKGATE_ADMIN_KEYS/);
    // …and with one, a tenant is created with the documented answer.
    const created = await admin('/tenants', { method: 'POST', body: { id: 'shape', name: 'Shape' } });
    expect(v.safeParse(TenantAnswer, await created.json()).success).toBe(true);
    expect(created.status).toBe(201);
  });
});
