import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { mintContext } from '../helpers/context.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/providers', import.meta.url));
let database: Database;
let gateway: TestGateway;

beforeAll(async () => {
  database = await createTestDatabase();
  gateway = await createTestGateway(database, { providersDir: FIXTURES });
});
afterAll(() => database.close());

const mint = (userId: string) => mintContext('pin', userId);

const hiddenState = (html: string) => /name="state" value="([^"]+)"/.exec(html)![1]!;

describe('form and wait steps', () => {
  it('renders a form, re-shows it with an error, waits on a code, and finishes through polling', async () => {
    const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
    const start = await browser.openLink(`/oauth/pin/start?context=${await mint('4242')}`);
    expect(start.status).toBe(200);
    const csp = start.headers.get('content-security-policy')!;
    expect(csp).not.toContain('unsafe-inline');
    const nonce = /'nonce-([^']+)'/.exec(csp)![1]!;
    const form = await start.text();
    expect(form).toContain(`<style nonce="${nonce}">`);
    expect(form).toContain('<label for="f-password">Password</label>');
    expect(form).toContain('autocomplete="current-password"');
    const state = hiddenState(form);

    const wrong = await browser.post('/oauth/pin/callback', { state, username: 'ada', password: 'not-it-5ecret' });
    expect(wrong.status).toBe(200);
    const retry = await wrong.text();
    expect(retry).toContain('Wrong username or password.');
    expect(retry).toContain('role="alert"');
    expect(retry).not.toContain('not-it-5ecret');
    expect(retry).toContain('value="ada"');

    // Without the browser's cookie the form post is refused, and the flow stays usable.
    const forged = await new TestBrowser((path, init) => gateway.app.request(path, init)).post('/oauth/pin/callback', { state, username: 'eve', password: 'correct horse' });
    expect(forged.status).toBe(400);

    const wait = await browser.post('/oauth/pin/callback', { state, username: 'ada', password: 'correct horse' });
    expect(wait.status).toBe(200);
    const waitPage = await wait.text();
    expect(waitPage).toContain('ABC123');
    expect(waitPage).toContain('name="linkgate_action" value="poll"');
    // Script text is not HTML-escaped (an escaped `=&gt;` would not run).
    expect(waitPage).toContain('const tick = async () => {');
    expect(waitPage).toContain(`<script nonce="${/'nonce-([^']+)'/.exec(wait.headers.get('content-security-policy')!)![1]}">`);

    const first = await browser.get(`/oauth/pin/poll?state=${encodeURIComponent(state)}`);
    expect(first.headers.get('content-type')).toMatch(/application\/json/);
    expect(await first.json()).toEqual({ status: 'pending', pollMs: 1000 });
    expect(await (await browser.get(`/oauth/pin/poll?state=${encodeURIComponent(state)}`)).json()).toEqual({ status: 'linked' });
    expect(await (await new TestBrowser((p, i) => gateway.app.request(p, i)).get(`/oauth/pin/poll?state=${encodeURIComponent(state)}`)).json()).toEqual({ status: 'expired' });

    // The page's "I have approved it" button (or its script) lands on the result.
    const done = await browser.post('/oauth/pin/callback', { state, linkgate_action: 'poll' });
    expect(done.status).toBe(200);
    expect(await done.text()).toContain('Account linked');
    expect(await (await gateway.api('/users/4242/links/pin')).json()).toMatchObject({ externalId: 'ada', status: 'active' });
  });

  it('refuses a form post that is not a form', async () => {
    const response = await gateway.app.request('/oauth/pin/callback', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(response.status).toBe(400);
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('x-frame-options')).toBe('DENY');
  });
});
