import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';

/**
 * Newlines and control characters sent in every place a request can carry
 * them (query, form fields, paths, JSON bodies, headers) cannot forge a log
 * line: afterwards every line the gateway wrote is exactly one JSON object of
 * its own, none is the forged one, and no raw control character reaches the
 * log (a terminal showing it would obey an escape sequence). Where an input
 * does reach a log line (the `error` a provider's redirect carries is named
 * in the refusal), it is there escaped.
 */
const FIXTURES = fileURLToPath(new URL('../fixtures/providers', import.meta.url));
const FORGED_LINE = '{"level":60,"time":1,"service":"linkgate","msg":"FORGED"}';
const PAYLOADS = [
  `x\n${FORGED_LINE}`,
  `x\r\n${FORGED_LINE}`,
  `x\r${FORGED_LINE}`,
  `x\u2028${FORGED_LINE}`,
  `x\u0085${FORGED_LINE}`,
  `x\u001b[2K\u001b[1G${FORGED_LINE}`,
  `x\u0000${FORGED_LINE}`,
  `x"}\n${FORGED_LINE}\n{"a":"`,
];

let database: Database;
let gateway: TestGateway;
let pin: TestGateway;

beforeAll(async () => {
  database = await createTestDatabase();
  gateway = await createTestGateway(database, { env: { DISCORD_CLIENT_ID: '1100000000000000004', DISCORD_CLIENT_SECRET: 'forging-discord-client-secret-0123', LINKGATE_RETURN_TO_ORIGINS: 'https://bot.example' } });
  pin = await createTestGateway(database, { providersDir: FIXTURES });
});
afterAll(() => database.close());

const browserOn = (g: TestGateway) => new TestBrowser((path, init) => g.app.request(path, init));
/** Header values may not hold CR, LF or NUL (the Fetch standard refuses them); the rest goes in as it is. */
const asHeader = (payload: string) => payload.replace(/[\r\n\0]/g, ' ').replace(/\u2028|\u0085/g, '?');

describe('log lines cannot be forged', () => {
  it('by any input carrying newlines or control characters', async () => {
    const first = { gateway: gateway.logs.length, pin: pin.logs.length };
    for (const payload of PAYLOADS) {
      const q = encodeURIComponent(payload);
      // A provider's redirect back, carrying the attacker's `error`, to a flow this browser really started.
      const browser = browserOn(gateway);
      const start = await browser.openLink(`/oauth/discord/start?context=${await mintContext('discord', '80351110224674444')}`);
      const state = new URL(start.headers.get('location')!).searchParams.get('state')!;
      expect((await browser.get(`/oauth/discord/callback?state=${state}&error=${q}&error_description=${q}&code=${q}`)).status).toBe(400);
      // Contexts, states and codes that are not ours.
      expect((await browser.get(`/oauth/discord/start?context=${q}`)).status).toBe(400);
      expect((await browser.get(`/oauth/discord/callback?state=${q}&code=${q}&iss=${q}`)).status).toBe(400);
      expect((await browser.get(`/oauth/discord/poll?state=${q}`)).status).toBe(200);
      expect((await browser.get(`/oauth/${q}/start?context=${q}`)).status).toBeGreaterThanOrEqual(400);
      // A form's fields, and a user name the provider keeps.
      const pinBrowser = browserOn(pin);
      const form = await pinBrowser.openLink(`/oauth/pin/start?context=${await mintContext('pin', '80351110224675555')}`);
      const pinState = /name="state" value="([^"]+)"/.exec(await form.text())![1]!;
      expect((await pinBrowser.post('/oauth/pin/callback', { state: pinState, username: payload, password: payload, [payload]: payload })).status).toBe(200);
      expect((await pinBrowser.post('/oauth/pin/callback', { state: payload, linkgate_action: payload })).status).toBe(400);
      // The API: paths, queries and bodies.
      expect((await gateway.api(`/users/${q}/links/discord`)).status).toBe(400);
      expect((await gateway.api(`/users/80351110224674444/links/${q}`)).status).toBe(400);
      expect((await gateway.api(`/users/80351110224674444/links/discord?verify=${q}`)).status).toBe(400);
      expect((await gateway.api(`/users/80351110224674444/links/discord/wait?timeoutSeconds=${q}`)).status).toBe(400);
      for (const body of [{ userId: payload, provider: 'discord' }, { userId: '1', provider: payload }, { userId: '1', provider: 'discord', returnTo: payload }, { userId: '1', provider: 'discord', userName: payload }]) {
        const answer = await gateway.api('/link-urls', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        // A display name may hold a Unicode line separator (it is shown as text on a page, never logged).
        expect(answer.status).toBe('userName' in body && payload.includes('\u2028') ? 201 : 400);
      }
      // Headers a client chooses: its request id, user agent and the API key itself.
      const headers = { 'x-request-id': asHeader(payload), 'user-agent': asHeader(payload) };
      expect((await gateway.api('/providers', { headers })).status).toBe(200);
      expect((await gateway.api('/providers', { headers: { ...headers, authorization: `Bearer ${asHeader(payload)}` } })).status).toBe(401);
      expect((await gateway.app.request('/healthz', { headers })).status).toBe(200);
    }

    const lines = [...gateway.logs.slice(first.gateway), ...pin.logs.slice(first.pin)];
    expect(lines.length).toBeGreaterThan(PAYLOADS.length * 20);
    const objects = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    // One object per line, each written by the gateway's logger, none of them the forged one.
    for (const entry of objects) {
      expect(entry).toMatchObject({ service: 'linkgate', level: expect.any(Number), msg: expect.any(String) });
      expect(entry.msg).not.toBe('FORGED');
    }
    for (const line of lines) expect(line).not.toMatch(/[\u0000-\u001f\u007f]/);
    // A request id that is not a plain token is replaced, not written down.
    expect(objects.every((entry) => entry.reqId === undefined || /^[\w=-]{1,64}$/.test(String(entry.reqId)))).toBe(true);
    // The provider's `error` did reach the log, escaped: the vector was really exercised.
    expect(lines.some((line) => line.includes('FORGED') && line.includes('the provider answered'))).toBe(true);
  });
});
