/**
 * The audit trail (issue #21, "done when" 4 for the operator API and the
 * CLI): one row per change made through each, refusals of the operator
 * API's key too (with the client address, and none once the address is
 * rate limited); the CSV export holds what the JSON pages hold and is itself
 * audited; and no secret the test created — bot API keys, context secrets,
 * provider client secrets, webhook secrets, app secrets, an export
 * passphrase, the operator key — appears in any row or in the CSV.
 */
import * as v from 'valibot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { auditEvents } from '../../src/db/schema.ts';
import { keyDigestId } from '../../src/core/crypto.ts';
import { AUDIT_CSV_COLUMNS, csvLine, type AuditEvent } from '../../src/core/audit.ts';
import { AuditAnswer, CreatedApiKeyAnswer, CreatedAppAnswer, CreatedContextSecretAnswer } from '../../src/http/admin.ts';
import { startTestIdp, type TestIdp } from '../fakes/oidc-idp.ts';
import { cliEnv, createCliDatabase, runCliHere, type CliDatabase } from '../helpers/cli.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, createTestGateway, listen, type TestGateway } from '../helpers/gateway.ts';

const ADMIN_KEY = 'admin_audit_0123456789abcdefghijklmnopqrstu';
const CLIENT_SECRET = 'audit-corp-client-secret-0123456789abcdef';
const WEBHOOK_SECRET = 'whsec_audit-0123456789abcdefghijklmnopqrs';
const PASSPHRASE = 'audit export passphrase 0123';

/** Every page of `GET /audit` with `query`, newest first. */
async function allEvents(request: (path: string) => Response | Promise<Response>, query = ''): Promise<AuditEvent[]> {
  const events: AuditEvent[] = [];
  let cursor: string | null = null;
  do {
    const response = await request(`/audit?limit=3${query}${cursor ? `&cursor=${cursor}` : ''}`);
    expect(response.status).toBe(200);
    // The schema /openapi.json gives this answer: every row of every page must fit it.
    const page = v.parse(AuditAnswer, await response.json());
    events.push(...(page.events as AuditEvent[]));
    cursor = page.nextCursor;
  } while (cursor !== null);
  return events;
}

/** The CSV must be exactly the JSON rows, as csvLine writes them, after the header. */
function expectCsvOf(csv: string, events: AuditEvent[]) {
  expect(csv).toBe(`${AUDIT_CSV_COLUMNS.join(',')}\r\n${events.map(csvLine).join('')}`);
}

describe('the audit trail of the operator API', () => {
  let database: Database;
  let gateway: TestGateway;
  let idp: TestIdp;
  let server: Awaited<ReturnType<typeof listen>>;
  const secrets: string[] = [ADMIN_KEY, CLIENT_SECRET, WEBHOOK_SECRET, PASSPHRASE];

  const admin = (path: string, init: { method?: string; body?: unknown; headers?: Record<string, string>; key?: string } = {}) =>
    fetch(`${server.base}/api/admin/v1${path}`, {
      method: init.method ?? 'GET',
      headers: { authorization: `Bearer ${init.key ?? ADMIN_KEY}`, 'user-agent': 'audit-test/1.0', ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    });

  beforeAll(async () => {
    database = await createTestDatabase();
    idp = await startTestIdp({ redirectUris: ['http://127.0.0.1:8000/oauth/corp/callback'], clientId: 'audit-corp', clientSecret: CLIENT_SECRET });
    gateway = await createTestGateway(database, { env: { LINKGATE_ADMIN_KEYS: ADMIN_KEY, LINKGATE_METRICS: 'true' } });
    server = await listen(gateway);
  });
  afterAll(async () => {
    await server?.close();
    await idp?.close();
    await database?.close();
  });

  it('appends one row per change, as the operator key and from the client address, with no secret in any row or in the CSV', async () => {
    const ok = async (response: Promise<Response>, status: number) => {
      const answer = await response;
      expect(answer.status).toBe(status);
      return answer;
    };
    await ok(admin('/tenants', { method: 'POST', body: { id: 'auditbot', name: 'Audit Bot' } }), 201);
    await ok(admin('/tenants/auditbot', { method: 'PATCH', body: { name: 'Audit Bot 2' } }), 200);
    const key = v.parse(CreatedApiKeyAnswer, await (await ok(admin('/tenants/auditbot/api-keys', { method: 'POST', body: { name: 'production' } }), 201)).json());
    const contextSecret = v.parse(CreatedContextSecretAnswer, await (await ok(admin('/tenants/auditbot/context-secrets', { method: 'POST' }), 201)).json());
    await ok(admin('/tenants/auditbot/providers/corp', { method: 'PUT', body: { env: { CORP_ISSUER: idp.issuer, CORP_CLIENT_ID: 'audit-corp', CORP_CLIENT_SECRET: CLIENT_SECRET } } }), 200);
    await ok(admin('/tenants/auditbot/webhook', { method: 'PUT', body: { url: 'https://auditbot.example/hooks/T0KEN-IN-PATH?sig=abc', secret: WEBHOOK_SECRET } }), 200);
    const app = v.parse(CreatedAppAnswer, await (await ok(admin('/tenants/auditbot/apps', { method: 'POST', body: { name: 'Site', redirectUris: ['https://auditbot.example/cb'], type: 'confidential' } }), 201)).json());
    await ok(admin('/tenants/auditbot/signing-keys', { method: 'POST', body: {} }), 201);
    const line = JSON.stringify({ userId: 'u1', provider: 'corp', externalId: 'ext-1', credentials: { accessToken: 'imported-access-token-0123456789', refreshToken: 'imported-refresh-token-0123456789' } });
    await ok(fetch(`${server.base}/api/admin/v1/tenants/auditbot/links:import`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_KEY}`, 'user-agent': 'audit-test/1.0', 'content-type': 'application/x-ndjson' }, body: line }), 200);
    const exported = await ok(admin('/tenants/auditbot/links:export', { headers: { 'linkgate-passphrase': PASSPHRASE } }), 200);
    await exported.text();
    // One user's link, deleted by the operator: the revocation is in the answer and the row; a second time is refused.
    const unlinked = (await (await ok(admin('/tenants/auditbot/users/u1/links/corp', { method: 'DELETE' }), 200)).json()) as { deleted: { externalId: string }; revocation: string };
    const { revocation } = unlinked;
    expect(unlinked.deleted.externalId).toBe('ext-1');
    expect(['revoked', 'not_supported', 'failed']).toContain(revocation);
    await ok(admin('/tenants/auditbot/users/u1/links/corp', { method: 'DELETE' }), 404);
    const metrics = await (await fetch(`${server.base}/metrics`, { headers: { authorization: `Bearer ${API_KEY}` } })).text();
    expect(metrics).toContain('linkgate_links_deleted_total{provider="corp",tenant="auditbot",via="admin"} 1');
    await ok(admin(`/tenants/auditbot/api-keys/${key.id}`, { method: 'DELETE' }), 204);
    await ok(admin(`/tenants/auditbot/context-secrets/${contextSecret.id}`, { method: 'DELETE' }), 204);
    await ok(admin(`/tenants/auditbot/apps/${app.clientId}`, { method: 'DELETE' }), 204);
    await ok(admin('/tenants/auditbot/webhook', { method: 'DELETE' }), 204);
    await ok(admin('/tenants/auditbot/providers/corp', { method: 'DELETE' }), 204);
    // A refused change is one row too, with its code.
    await ok(admin('/tenants/auditbot/api-keys/key_missing', { method: 'DELETE' }), 404);
    secrets.push(key.key, contextSecret.secret, app.clientSecret!, 'imported-access-token-0123456789', 'imported-refresh-token-0123456789');

    const events = await allEvents((path) => admin(path), '&tenant=auditbot');
    expect(events.map((e) => `${e.action} ${e.outcome}`).reverse()).toEqual([
      'tenant.create ok',
      'tenant.update ok',
      'api_key.create ok',
      'context_secret.create ok',
      'provider.configure ok',
      'webhook.set ok',
      'app.create ok',
      'signing_key.rotate ok',
      'links.import ok',
      'links.export ok',
      'link.delete ok',
      'link.delete refused',
      'api_key.revoke ok',
      'context_secret.retire ok',
      'app.delete ok',
      'webhook.remove ok',
      'provider.remove ok',
      'api_key.revoke refused',
    ]);
    const actor = `operator-key:${keyDigestId(ADMIN_KEY)}`;
    for (const event of events) expect(event).toMatchObject({ actor, tenant: 'auditbot', clientAddress: '127.0.0.1', userAgent: 'audit-test/1.0' });
    const by = (action: string) => events.find((e) => e.action === action && e.outcome === 'ok')!;
    expect(by('api_key.create')).toMatchObject({ target: `api_key:${key.id}`, detail: { name: 'production' } });
    expect(by('app.create').detail).toEqual({ name: 'Site', type: 'confidential', firstParty: true, deviceFlow: false });
    expect(by('provider.configure')).toMatchObject({ target: 'provider:corp', detail: { variables: ['CORP_CLIENT_ID', 'CORP_CLIENT_SECRET', 'CORP_ISSUER'], version: 1 } });
    expect(by('webhook.set').detail).toEqual({ origin: 'https://auditbot.example' });
    expect(by('links.import').detail).toEqual({ created: 1, updated: 0, unchanged: 0, invalid: 0 });
    expect(by('link.delete')).toMatchObject({ target: 'link:u1/corp', detail: { revocation } });
    expect(events.find((e) => e.action === 'link.delete' && e.outcome === 'refused')).toMatchObject({ code: 'not_linked', target: 'link:u1/corp' });
    expect(events.find((e) => e.action === 'api_key.revoke' && e.outcome === 'refused')).toMatchObject({ code: 'not_found', target: 'api_key:key_missing' });

    // The CSV is those rows; exporting it is audited (and that row is in the JSON from then on).
    const csv = await (await ok(admin('/audit.csv?tenant=auditbot'), 200)).text();
    const after = await allEvents((path) => admin(path), '&tenant=auditbot');
    expect(after[0]).toMatchObject({ action: 'audit.export', outcome: 'ok', actor, detail: { tenant: 'auditbot' } });
    expectCsvOf(csv, after);

    // No secret anywhere: not in a row of the table (whatever its tenant), not in the CSV.
    const everything = JSON.stringify(await database.db.select().from(auditEvents)) + csv + (await (await admin('/audit.csv')).text());
    for (const secret of secrets) expect(everything).not.toContain(secret);
    expect(everything).not.toContain('T0KEN-IN-PATH');
  });

  it('filters by action, actor and time, and refuses a filter it does not know', async () => {
    const creates = await allEvents((path) => admin(path), '&action=api_key.create');
    expect(creates.map((e) => e.action)).toEqual(['api_key.create']);
    expect(await allEvents((path) => admin(path), '&actor=cli')).toEqual([]);
    expect((await allEvents((path) => admin(path), `&actor=operator-key:${keyDigestId(ADMIN_KEY)}`)).length).toBeGreaterThan(10);
    expect(await allEvents((path) => admin(path), `&since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).toEqual([]);
    expect((await allEvents((path) => admin(path), `&until=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).length).toBeGreaterThan(10);
    for (const query of ['action=tenant.explode', 'since=yesterday', 'cursor=abc', 'limit=501', 'actor=root']) {
      const response = await admin(`/audit?${query}`);
      expect(response.status).toBe(400);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('bad_request');
    }
  });

  it('records a refused operator key with the client address, but none once the address is over its limit', async () => {
    const before = (await allEvents((path) => admin(path), '&action=operator_api.refused')).length;
    expect((await admin('/tenants', { key: 'not-an-operator-key-0123456789abcdef' })).status).toBe(401);
    expect((await fetch(`${server.base}/api/admin/v1/tenants`)).status).toBe(401);
    const refused = await allEvents((path) => admin(path), '&action=operator_api.refused');
    expect(refused.length).toBe(before + 2);
    expect(refused[1]).toMatchObject({ actor: 'operator-key:unknown', outcome: 'refused', code: 'unauthorized', clientAddress: '127.0.0.1', target: 'GET /api/admin/v1/tenants', detail: { key: 'unknown' } });
    expect(refused[0]).toMatchObject({ detail: { key: 'none' } });
    expect(JSON.stringify(refused)).not.toContain('not-an-operator-key');

    // A gateway whose browser limit is 2 a minute: the third bad key is a 429 and writes nothing.
    const limited = await createTestGateway(database, { env: { LINKGATE_ADMIN_KEYS: ADMIN_KEY, LINKGATE_BROWSER_RATE_LIMIT: '2' } });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i += 1) statuses.push((await limited.app.request('/api/admin/v1/tenants', { headers: { authorization: 'Bearer wrong' } })).status);
    expect(statuses).toEqual([401, 401, 429, 429, 429]);
    expect((await allEvents((path) => admin(path), '&action=operator_api.refused')).length).toBe(before + 4);
  });

  it('does not exist without operator keys: 404, and nothing written', async () => {
    const closed = await createTestGateway(database);
    const before = (await database.db.select().from(auditEvents)).length;
    for (const path of ['/audit', '/audit.csv', '/tenants']) expect((await closed.app.request(`/api/admin/v1${path}`, { headers: { authorization: 'Bearer anything' } })).status).toBe(404);
    expect((await database.db.select().from(auditEvents)).length).toBe(before);
  });
});

describe('the audit trail of the command line', () => {
  let db: CliDatabase;
  let env: Record<string, string>;
  let idp: TestIdp;

  beforeAll(async () => {
    db = await createCliDatabase();
    idp = await startTestIdp({ redirectUris: ['http://127.0.0.1:8000/oauth/corp/callback'], clientId: 'cli-corp', clientSecret: CLIENT_SECRET });
    env = cliEnv(db.dataDir, { ...db.env, LINKGATE_ADMIN_KEYS: ADMIN_KEY });
    expect((await runCliHere(['migrate'], env)).code).toBe(0);
  });
  afterAll(async () => {
    await idp?.close();
    await db?.close();
  });

  it('appends one row per change, as `cli`, with no secret; the operator API reads them back, CSV included', async () => {
    const cli = async (args: string[], input?: string) => {
      const result = await runCliHere([...args, '--json'], env, input === undefined ? {} : { input });
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      return result.stdout;
    };
    await cli(['tenants', 'create', 'clibot', 'CLI Bot']);
    const key = v.parse(CreatedApiKeyAnswer, JSON.parse(await cli(['tenants', 'keys', 'create', 'clibot', 'production'])));
    const secret = v.parse(CreatedContextSecretAnswer, JSON.parse(await cli(['tenants', 'secrets', 'create', 'clibot'])));
    await cli(['tenants', 'providers', 'set', 'clibot', 'corp', '--env-stdin'], `CORP_ISSUER=${idp.issuer}\nCORP_CLIENT_ID=cli-corp\nCORP_CLIENT_SECRET=${CLIENT_SECRET}\n`);
    await cli(['tenants', 'webhook', 'set', 'clibot', 'https://clibot.example/events', '--secret-stdin'], `${WEBHOOK_SECRET}\n`);
    await cli(['tenants', 'keys', 'delete', 'clibot', key.id]);
    await cli(['tenants', 'secrets', 'retire', 'clibot', secret.id]);
    await cli(['tenants', 'webhook', 'remove', 'clibot']);
    await cli(['tenants', 'providers', 'remove', 'clibot', 'corp']);
    await cli(['tenants', 'delete', 'clibot']);
    // Reading changes nothing, and is not audited.
    await cli(['tenants', 'list']);

    await db.use(async (database) => {
      const gateway = await createTestGateway(database, { env: { LINKGATE_ADMIN_KEYS: ADMIN_KEY } });
      const request = (path: string) => gateway.app.request(`/api/admin/v1${path}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
      const events = await allEvents(request, '&actor=cli');
      expect(events.map((e) => `${e.action} ${e.tenant ?? '-'} ${e.target}`).reverse()).toEqual([
        'database.migrate - database',
        'tenant.create clibot tenant:clibot',
        `api_key.create clibot api_key:${key.id}`,
        `context_secret.create clibot context_secret:${secret.id}`,
        'provider.configure clibot provider:corp',
        'webhook.set clibot webhook',
        `api_key.revoke clibot api_key:${key.id}`,
        `context_secret.retire clibot context_secret:${secret.id}`,
        'webhook.remove clibot webhook',
        'provider.remove clibot provider:corp',
        'tenant.delete clibot tenant:clibot',
      ]);
      for (const event of events) expect(event).toMatchObject({ actor: 'cli', outcome: 'ok', clientAddress: null });
      const csv = await (await request('/audit.csv?actor=cli')).text();
      expectCsvOf(csv, events);
      const everything = JSON.stringify(await database.db.select().from(auditEvents)) + csv;
      for (const value of [key.key, secret.secret, CLIENT_SECRET, WEBHOOK_SECRET, ADMIN_KEY]) expect(everything).not.toContain(value);
    });
  }, 120_000);
});
