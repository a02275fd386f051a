import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import * as Sentry from '@sentry/node';
import { serve, type ServerType } from '@hono/node-server';
import { eq } from '../src/db/orm.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLinkStore, linkAad } from '../src/core/links.ts';
import { links } from '../src/db/schema.ts';
import { mintContext } from './helpers/context.ts';
import { createTestDatabase } from './helpers/database.ts';
import { API_KEY, createTestGateway, type TestGateway } from './helpers/gateway.ts';
import { captureSentry, type SentryCapture } from './helpers/sentry.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/providers', import.meta.url));

let sentry: SentryCapture;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let gateway: TestGateway;
let server: ServerType;
let base: string;

beforeAll(async () => {
  sentry = await captureSentry();
  database = await createTestDatabase();
  gateway = await createTestGateway(database, { providersDir: FIXTURES, observe: sentry.observer });
  server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: gateway.app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await Sentry.close(2000);
  await database?.close();
});

describe('what reaches Sentry', () => {
  it('carries no code, state, context, cookie, API key or user id, from an error event or from traces', async () => {
    const userId = '80351110224678912';
    const secrets = {
      code: 'c0de-SECRET-4b1f',
      state: 'st4te-SECRET-9e2a',
      context: await mintContext('pin', '77777777777777777'),
      cookie: 'cookie-SECRET-5d3c',
      password: 'passw0rd-SECRET-77aa',
      refreshToken: 'refresh-SECRET-0c1d',
    };
    const query = `code=${secrets.code}&state=${secrets.state}&context=${secrets.context}`;
    const headers = { cookie: `linkgate_browser=${secrets.cookie}`, 'user-agent': 'sentry-test/1.0' };

    // A stored link whose credentials no longer parse: an unexpected error, reported to Sentry.
    await createLinkStore(database.db, gateway.keyring).store({ tenant: 'default', userId, provider: 'pin' }, { id: 'ext-1' }, { accessToken: 'a' }, { allowShared: false, now: new Date() });
    const key = { tenant: 'default', userId, provider: 'pin' };
    await database.db.update(links).set({ credentials: gateway.keyring.seal(JSON.stringify({ accessToken: 42, refreshToken: secrets.refreshToken }), linkAad(key)) }).where(eq(links.userId, userId));
    const failed = await fetch(`${base}/api/v1/users/${userId}/links/pin/token?${query}`, {
      method: 'POST',
      headers: { ...headers, authorization: `Bearer ${API_KEY}` },
    });
    expect(failed.status).toBe(500);

    // Traced requests on every kind of route, with the same secrets in the query.
    expect((await fetch(`${base}/api/v1/users/${userId}/links/pin?${query}`, { headers: { ...headers, authorization: `Bearer ${API_KEY}` } })).status).toBe(200);
    expect((await fetch(`${base}/oauth/pin/callback?${query}`, { headers })).status).toBe(400);
    expect((await fetch(`${base}/oauth/pin/start?context=${secrets.context}`, { headers })).status).toBe(200);
    const posted = await fetch(`${base}/oauth/pin/callback?${query}`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ state: secrets.state, username: 'ada', password: secrets.password }),
    });
    expect(posted.status).toBe(400);
    expect(await Sentry.flush(5000)).toBe(true);

    const { envelopes } = sentry;
    const sent = envelopes.join('\n');
    const items = sentry.itemTypes();
    expect(items).toContain('event');
    expect(items).toContain('span');
    for (const secret of [userId, '77777777777777777', ...Object.values(secrets), API_KEY]) {
      const at = sent.indexOf(secret);
      expect(at === -1 ? 'absent' : sent.slice(Math.max(0, at - 300), at + secret.length)).toBe('absent');
    }
    // Named after their routes, so Sentry groups them without the path's values.
    const event = envelopes.map((e) => e.split('\n')).find((lines) => lines[1] === '{"type":"event"}')!;
    expect(JSON.parse(event[2]!)).toMatchObject({ transaction: 'POST /api/v1/users/:userId/links/:provider/token' });
    expect(sent).toContain('"name":"GET /oauth/:provider/start"');
  });
});
