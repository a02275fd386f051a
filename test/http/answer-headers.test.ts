import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerHeaders, requestScope, type AppEnv } from '../../src/http/middleware.ts';

/**
 * requestScope puts its headers on answers the handler has already made, in
 * place (so the Node adapter still writes a string body with its head), and
 * still on answers whose headers are immutable (a redirect made with
 * Response.redirect, an upstream answer returned as fetch() gave it). A
 * header the answer sets itself wins, with or without a Node response.
 */
let upstream: Server;
let app: Hono<AppEnv>;
let server: ServerType;
let base: string;
let splitWrites = 0;

beforeAll(async () => {
  upstream = createServer((_req, res) => res.setHeader('content-type', 'text/plain').end('from upstream'));
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/`;
  app = new Hono<AppEnv>();
  app.use('*', requestScope({ logger: pino({ level: 'silent' }), now: Date.now, headers: answerHeaders(true) }));
  app.get('/json', (c) => c.json({ linked: true }));
  app.get('/redirect', () => Response.redirect('https://example.org/next', 302));
  app.get('/upstream', () => fetch(upstreamUrl));
  app.get('/own', (c) => c.json({ cached: true }, 200, { 'Cache-Control': 'public, max-age=60' }));
  server = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 });
  // Head and body written apart (the body read as a stream) reach the socket as one writev of several chunks.
  server.on('connection', (socket: Socket & { _writev?: (...args: unknown[]) => unknown }) => {
    const writev = socket._writev!;
    socket._writev = function (...args: unknown[]) {
      splitWrites += 1;
      return writev.apply(this, args);
    };
  });
  await new Promise<void>((resolve) => server.once('listening', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await new Promise((resolve) => upstream.close(resolve));
});

describe('answer headers', () => {
  it.each([
    ['a JSON answer', '/json', 200, '{"linked":true}'],
    ['a redirect with immutable headers', '/redirect', 302, ''],
    ['an upstream answer with immutable headers', '/upstream', 200, 'from upstream'],
  ])('are on %s, with its body whole', async (_name, path, status, body) => {
    const response = await fetch(base + path, { redirect: 'manual', headers: { 'x-request-id': 'req-1' } });
    expect(response.status).toBe(status);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('strict-transport-security')).toBe('max-age=31536000');
    expect(response.headers.get('x-request-id')).toBe('req-1');
    expect(await response.text()).toBe(body);
    if (path === '/json') expect(response.headers.get('content-length')).toBe(String(body.length));
  });

  it('leave the answer as the handler made it: head and a string body in one write', async () => {
    splitWrites = 0;
    for (let i = 0; i < 5; i += 1) expect(await (await fetch(`${base}/json`)).json()).toEqual({ linked: true });
    expect(splitWrites).toBe(0);
  });

  it('leave a header the answer sets itself, over a socket and in app.request alike', async () => {
    for (const response of [await fetch(`${base}/own`), await app.request('/own')]) {
      expect(response.headers.get('cache-control')).toBe('public, max-age=60');
      expect(response.headers.get('x-content-type-options')).toBe('nosniff');
      expect(await response.json()).toEqual({ cached: true });
    }
  });
});
