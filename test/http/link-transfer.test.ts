/**
 * Import and export of links (issue #23): JSON lines in, each line answered
 * on its own and stored sealed; the same lines again change nothing; an
 * export (sealed with a passphrase, or plaintext on request) imports into a
 * fresh database as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { sql } from '../../src/db/orm.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';

const ADMIN_KEY = 'admin_transfer_0123456789abcdefghijklmnop';
const ENV = { ANILIST_CLIENT_ID: '12345', ANILIST_CLIENT_SECRET: 'anilist-client-secret-0123456789', LINKGATE_ADMIN_KEYS: ADMIN_KEY };

let source: Database;
let target: Database;
let gateway: TestGateway;
let fresh: TestGateway;

beforeAll(async () => {
  [source, target] = await Promise.all([createTestDatabase(), createTestDatabase()]);
  gateway = await createTestGateway(source, { env: ENV });
  fresh = await createTestGateway(target, { env: ENV });
});
afterAll(async () => {
  await source?.close();
  await target?.close();
});

const importInto = (g: TestGateway, body: string, headers: Record<string, string> = {}) =>
  g.api('/links:import', { method: 'POST', headers: { 'content-type': 'application/x-ndjson', ...headers }, body });
const exportFrom = (g: TestGateway, query = '', headers: Record<string, string> = {}) =>
  g.app.request(`/api/admin/v1/tenants/default/links:export${query}`, { headers: { authorization: `Bearer ${ADMIN_KEY}`, ...headers } });

/** 1 000 lines, every tenth one wrong in a different way. */
function lines(): { text: string; invalid: number[] } {
  const out: string[] = [];
  const invalid: number[] = [];
  for (let i = 1; i <= 1000; i += 1) {
    const good = { userId: `imported-${i}`, provider: 'anilist', externalId: String(100_000 + i), externalName: `User ${i}`, credentials: { accessToken: `token-${i}-secret`, expiresAt: '2027-12-01T00:00:00.000Z', scopes: [] } };
    if (i % 10 !== 0) {
      out.push(JSON.stringify(good));
      continue;
    }
    invalid.push(i);
    const bad = [
      '{ not json',
      JSON.stringify({ ...good, userId: 'has a space' }),
      JSON.stringify({ ...good, provider: 'nope' }),
      JSON.stringify({ ...good, credentials: { refreshToken: 'x' } }),
      JSON.stringify({ ...good, externalId: 'x'.repeat(600) }),
    ][(i / 10) % 5]!;
    out.push(bad);
  }
  return { text: `${out.join('\n')}\n`, invalid };
}

describe('links import and export', () => {
  it('imports 1 000 lines, reports each, stores the valid ones sealed, and changes nothing the second time', async () => {
    const { text, invalid } = lines();
    const first = await importInto(gateway, text);
    expect(first.status).toBe(200);
    const answer = (await first.json()) as { results: Array<{ line: number; status: string; error?: { code: string; message: string } }>; counts: Record<string, number> };
    expect(answer.counts).toEqual({ created: 900, updated: 0, unchanged: 0, invalid: 100 });
    expect(answer.results.filter((r) => r.status === 'invalid').map((r) => r.line)).toEqual(invalid);
    expect(new Set(answer.results.filter((r) => r.error).map((r) => r.error!.code))).toEqual(new Set(['bad_request', 'unknown_provider']));
    expect(answer.results.find((r) => r.line === 40)!.error!.message).toContain('exceeds what a link may hold');
    expect(JSON.stringify(answer)).not.toContain('token-');
    // Stored sealed: no token in any stored value.
    const raw = JSON.stringify(await source.db.execute(sql`select credentials from links`));
    expect(raw).not.toContain('token-1-secret');
    // Usable as links: the token API answers the imported token.
    expect(((await (await gateway.api('/users/imported-1/links/anilist/token', { method: 'POST' })).json()) as { accessToken: string }).accessToken).toBe('token-1-secret');

    const again = (await (await importInto(gateway, text)).json()) as { counts: Record<string, number> };
    expect(again.counts).toEqual({ created: 0, updated: 0, unchanged: 900, invalid: 100 });
  });

  it('exports sealed with a passphrase, and that export imports into a fresh database as it was', async () => {
    expect((await exportFrom(gateway)).status).toBe(400);
    expect((await exportFrom(gateway, '', { 'linkgate-passphrase': 'short' })).status).toBe(400);
    const sealed = await exportFrom(gateway, '', { 'linkgate-passphrase': 'correct horse battery' });
    expect(sealed.status).toBe(200);
    expect(sealed.headers.get('content-type')).toContain('application/x-ndjson');
    const text = await sealed.text();
    expect(text.split('\n').filter(Boolean)).toHaveLength(901);
    expect(text).not.toContain('token-1-secret');

    // Without the passphrase, or with a wrong one, nothing is imported.
    expect((await importInto(fresh, text)).status).toBe(400);
    const wrong = (await (await importInto(fresh, text, { 'linkgate-passphrase': 'wrong horse battery' })).json()) as { counts: Record<string, number> };
    expect(wrong.counts).toMatchObject({ created: 0, invalid: 900 });

    const imported = (await (await importInto(fresh, text, { 'linkgate-passphrase': 'correct horse battery' })).json()) as { counts: Record<string, number> };
    expect(imported.counts).toEqual({ created: 900, updated: 0, unchanged: 0, invalid: 0 });
    for (const userId of ['imported-1', 'imported-999']) {
      const before = await (await gateway.api(`/users/${userId}/links/anilist`)).json();
      const after = await (await fresh.api(`/users/${userId}/links/anilist`)).json();
      expect({ ...(after as object), linkedAt: undefined, updatedAt: undefined }).toEqual({ ...(before as object), linkedAt: undefined, updatedAt: undefined });
      expect(((await (await fresh.api(`/users/${userId}/links/anilist/token`, { method: 'POST' })).json()) as { accessToken: string }).accessToken).toBe(`token-${userId.split('-')[1]}-secret`);
    }
  });

  it('exports in plaintext only when asked, and that imports as it is too', async () => {
    const plain = await (await exportFrom(gateway, '?plaintext=true')).text();
    expect(plain).toContain('token-1-secret');
    const again = (await (await importInto(fresh, plain)).json()) as { counts: Record<string, number> };
    expect(again.counts).toEqual({ created: 0, updated: 0, unchanged: 900, invalid: 0 });
  });
});
