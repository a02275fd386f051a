import { request as httpRequest } from 'node:http';
import { count } from '../../src/db/orm.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { flows, links } from '../../src/db/schema.ts';
import { listen } from '../e2e/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, createTestGateway, type TestGateway } from '../helpers/gateway.ts';

/** The caps: 64 KiB on the API, 16 KiB on the browser's form posts (src/http/api.ts, src/http/oauth.tsx). */
const API_CAP = 64 * 1024;
const FORM_CAP = 16 * 1024;

let database: Database;
let gateway: TestGateway;
let server: { url: string; close(): Promise<void> };
let base: string;

beforeAll(async () => {
  database = await createTestDatabase();
  gateway = await createTestGateway(database);
  server = await listen(gateway.app.fetch);
  base = server.url;
});
afterAll(async () => {
  await server?.close();
  await database?.close();
});

/** A JSON body of exactly `size` bytes asking for a link URL. */
function linkUrlBody(size: number): string {
  const skeleton = JSON.stringify({ userId: '80351110224678912', provider: 'corp', pad: '' });
  return skeleton.replace('"pad":""', `"pad":"${'x'.repeat(size - skeleton.length)}"`);
}

const apiHeaders = { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' };

async function rows() {
  const [f] = await database.db.select({ n: count() }).from(flows);
  const [l] = await database.db.select({ n: count() }).from(links);
  return { flows: f!.n, links: l!.n };
}

describe('request body size caps', () => {
  it('the API answers 413 payload_too_large to a body one byte over 64 KiB, and reads one at the cap', async () => {
    const over = await fetch(`${base}/api/v1/link-urls`, { method: 'POST', headers: apiHeaders, body: linkUrlBody(API_CAP + 1) });
    expect(over.status).toBe(413);
    // The unread rest of the body makes the connection unusable: the client is told not to reuse it.
    expect(over.headers.get('connection')).toBe('close');
    expect(await over.json()).toEqual({ error: { code: 'payload_too_large', message: `the request body is larger than ${API_CAP} bytes` } });

    // At the cap the body is read and judged on its content (`corp` is not a provider here).
    const at = await fetch(`${base}/api/v1/link-urls`, { method: 'POST', headers: apiHeaders, body: linkUrlBody(API_CAP) });
    expect(at.status).toBe(404);
    expect(await at.json()).toMatchObject({ error: { code: 'unknown_provider' } });
  });

  it('the API counts a chunked body with no Content-Length as it arrives, and the next request from that client is answered', async () => {
    const chunk = new TextEncoder().encode('x'.repeat(8 * 1024));
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 32) return controller.close();
        sent += 1;
        controller.enqueue(chunk);
      },
    });
    const response = await fetch(`${base}/api/v1/link-urls`, { method: 'POST', headers: apiHeaders, body, duplex: 'half' } as RequestInit);
    expect(response.status).toBe(413);
    expect(response.headers.get('connection')).toBe('close');
    expect(await response.json()).toMatchObject({ error: { code: 'payload_too_large' } });
    const next = await fetch(`${base}/api/v1/link-urls`, { method: 'POST', headers: apiHeaders, body: linkUrlBody(100) });
    expect(next.status).toBe(404);
  });

  it('answers a declared 10 MB body with 413 before it has been sent', async () => {
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(`${base}/api/v1/link-urls`, { method: 'POST', headers: { ...apiHeaders, 'content-length': String(10 * 1024 * 1024) } }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
      req.on('error', reject);
      // 1 KiB of the promised 10 MB, and then nothing: the answer must come anyway.
      req.write('x'.repeat(1024));
      setTimeout(() => req.destroy(), 5000).unref();
    });
    expect(status).toBe(413);
    expect(JSON.parse(body)).toMatchObject({ error: { code: 'payload_too_large' } });
  });

  it('the browser form post answers 413 with a page over 16 KiB, stores nothing, and reads a form at the cap', async () => {
    const before = await rows();
    const form = (size: number) => {
      const head = 'state=unknown-state&username=';
      return head + 'a'.repeat(size - head.length);
    };
    const post = (body: string) =>
      fetch(`${base}/oauth/jellyfin/callback`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body, redirect: 'manual' });

    const over = await post(form(FORM_CAP + 1));
    expect(over.status).toBe(413);
    expect(over.headers.get('content-type')).toMatch(/^text\/html/);
    expect(over.headers.get('cache-control')).toBe('no-store');
    const page = await over.text();
    expect(page).toContain('Something is wrong with this request');
    expect(page).not.toMatch(/at .*\.ts:\d+/);

    // At the cap the form is read: its state is unknown, so the sign-in is "expired".
    const at = await post(form(FORM_CAP));
    expect(at.status).toBe(400);
    expect(await at.text()).toContain('This sign-in has expired');
    expect(await rows()).toEqual(before);
  });
});
