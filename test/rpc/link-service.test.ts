/**
 * linkgate.v1.LinkService on a real listening gateway, through clients we
 * did not write: grpc-js over HTTP/2, gRPC-Web and Connect JSON over fetch
 * (HTTP/1.1), with the REST API answering on the same port in the same run.
 */
import { createHook } from 'node:async_hooks';
import { getEventListeners } from 'node:events';
import { connect as connectHttp2 } from 'node:http2';
import { connect as connectTcp } from 'node:net';
import { fileURLToPath } from 'node:url';
import { status as GrpcStatus, type Metadata } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createLinkStore } from '../../src/core/links.ts';
import type { Database } from '../../src/db/client.ts';
import { completePinLink } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, createTestGateway, listen, type TestGateway } from '../helpers/gateway.ts';
import { connectJson, grpcClient, grpcErrorDetails, grpcWeb, messageType, type GrpcClient } from '../helpers/rpc.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/providers', import.meta.url));
const HEARTBEAT_MS = 300;

let database: Database & { url: string | undefined };
let gateway: TestGateway;
let served: Awaited<ReturnType<typeof listen>>;
let grpc: GrpcClient;
const stopping = new AbortController();

beforeAll(async () => {
  database = await createTestDatabase();
  gateway = await createTestGateway(database, { providersDir: FIXTURES, stopping: stopping.signal, rpcHeartbeatMs: HEARTBEAT_MS, env: { LINKGATE_METRICS: 'true' } });
  served = await listen(gateway);
  grpc = grpcClient(served.port, API_KEY);
});
afterAll(async () => {
  grpc?.close();
  await served?.close();
  await database?.close();
});

const rest = (path: string, init: RequestInit = {}) => fetch(`${served.base}/api/v1${path}`, { ...init, headers: { authorization: `Bearer ${API_KEY}`, ...init.headers } });

/** A person opens `url` and completes the pin fixture provider's sign-in, over real HTTP on the gateway's port. */
async function completeLink(url: string, userId: string): Promise<void> {
  expect(await completePinLink(served.base, url, userId)).toEqual({ status: 'linked' });
}

/** A GET over HTTP/2 with prior knowledge (h2c): status and body. */
function http2Get(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const session = connectHttp2(served.base);
    session.on('error', reject);
    const request = session.request({ ':path': path, authorization: `Bearer ${API_KEY}` });
    let status = 0;
    let body = '';
    request.on('response', (headers) => (status = Number(headers[':status'])));
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      session.close();
      resolve({ status, body });
    });
    request.end();
  });
}

describe('GetLink and CreateLinkUrl over gRPC, gRPC-Web and Connect, and REST, on one port', () => {
  it('answers each protocol alike before and after the user links', async () => {
    const userId = 'rpc-user-1';
    const linkUrl = /^http:\/\/127\.0\.0\.1:8000\/oauth\/pin\/start\?context=[\w-]+\.[\w-]+\.[\w-]+$/;

    // Not linked: NOT_FOUND with `not_linked` and a link URL in the details, whichever protocol asks.
    const overGrpc = await grpc.unary('GetLink', { user_id: userId, provider: 'pin' });
    expect(overGrpc).toMatchObject({ ok: false, code: GrpcStatus.NOT_FOUND, details: 'this user has not linked Pin' });
    const grpcDetails = grpcErrorDetails((overGrpc as { metadata: Metadata }).metadata);
    expect(grpcDetails.errorInfo).toMatchObject({ reason: 'not_linked', domain: 'linkgate', metadata: { provider: 'pin', link_url: expect.stringMatching(linkUrl) } });

    const overWeb = await grpcWeb(served.base, 'GetLink', { user_id: userId, provider: 'pin' }, API_KEY);
    expect(overWeb).toMatchObject({ httpStatus: 200, grpcStatus: GrpcStatus.NOT_FOUND, grpcMessage: 'this user has not linked Pin', messages: [] });
    expect(overWeb.details?.errorInfo?.metadata.link_url).toMatch(linkUrl);

    const overConnect = await connectJson(served.base, 'GetLink', { user_id: userId, provider: 'pin' }, API_KEY);
    expect(overConnect.status).toBe(404);
    expect(overConnect.json).toMatchObject({ code: 'not_found', message: 'this user has not linked Pin', details: [{ type: 'google.rpc.ErrorInfo', debug: { reason: 'not_linked', metadata: { link_url: expect.stringMatching(linkUrl) } } }] });

    const overRest = await rest(`/users/${userId}/links/pin`);
    expect(overRest.status).toBe(404);
    expect(await overRest.json()).toMatchObject({ error: { code: 'not_linked' }, linkUrl: expect.stringMatching(linkUrl) });

    // CreateLinkUrl, three ways: each a working link URL with its expiry.
    const created = await grpc.unary<{ url: string; expires_at: { seconds: number } }>('CreateLinkUrl', { user_id: userId, provider: 'pin', user_name: 'Nelly' });
    expect(created).toMatchObject({ ok: true, value: { url: expect.stringMatching(linkUrl) } });
    const { value } = created as { value: { url: string; expires_at: { seconds: number } } };
    expect(value.expires_at.seconds * 1000).toBeGreaterThan(Date.now());
    const createdWeb = await grpcWeb(served.base, 'CreateLinkUrl', { user_id: userId, provider: 'pin' }, API_KEY);
    expect(createdWeb).toMatchObject({ grpcStatus: 0, messages: [{ url: expect.stringMatching(linkUrl) }] });
    const createdConnect = await connectJson(served.base, 'CreateLinkUrl', { user_id: userId, provider: 'pin' }, API_KEY);
    expect(createdConnect).toMatchObject({ status: 200, json: { url: expect.stringMatching(linkUrl), expiresAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) } });

    // The person follows the URL gRPC gave (confirmation page: its user name), over HTTP/1.1 on the same port.
    const confirmation = await fetch(new URL(value.url.replace('http://127.0.0.1:8000', served.base)));
    expect(await confirmation.text()).toContain('Nelly');
    await completeLink(value.url, userId);

    const linked = { user_id: userId, provider: 'pin', external_id: userId, status: 'LINK_STATUS_ACTIVE' };
    expect(await grpc.unary('GetLink', { user_id: userId, provider: 'pin' })).toMatchObject({ ok: true, value: { ...linked, created_at: { seconds: expect.any(Number) } } });
    expect(await grpcWeb(served.base, 'GetLink', { user_id: userId, provider: 'pin' }, API_KEY)).toMatchObject({ grpcStatus: 0, messages: [linked] });
    expect(await connectJson(served.base, 'GetLink', { user_id: userId, provider: 'pin' }, API_KEY)).toMatchObject({
      status: 200,
      json: { userId, provider: 'pin', externalId: userId, status: 'LINK_STATUS_ACTIVE', createdAt: expect.any(String) },
    });
    // REST over HTTP/1.1 and over HTTP/2 (h2c) on the same port.
    expect(await (await rest(`/users/${userId}/links/pin`)).json()).toMatchObject({ userId, provider: 'pin', externalId: userId, status: 'active' });
    const h2 = await http2Get(`/api/v1/users/${userId}/links/pin`);
    expect(h2.status).toBe(200);
    expect(JSON.parse(h2.body)).toMatchObject({ userId, externalId: userId });
    expect((await http2Get('/healthz')).body).toBe('{"status":"healthy"}');
  });

  it('answers with the REST answers\' headers, no-store and nosniff, over Connect (HTTP/1.1) and gRPC (HTTP/2) alike', async () => {
    // Connect: a token answer, which holds an access token, must never be cached.
    const overConnect = await fetch(`${served.base}/linkgate.v1.LinkService/GetLink`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}`, 'x-request-id': 'rpc-headers-1' },
      body: JSON.stringify({ user_id: 'rpc-headers', provider: 'pin' }),
    });
    expect(overConnect.status).toBe(404);
    expect(Object.fromEntries(['cache-control', 'x-content-type-options', 'x-request-id', 'strict-transport-security'].map((name) => [name, overConnect.headers.get(name)]))).toEqual({
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'x-request-id': 'rpc-headers-1',
      // PUBLIC_BASE_URL is plain http here: no HSTS, as on REST.
      'strict-transport-security': null,
    });
    // gRPC over HTTP/2: the response headers, before any message.
    const headers = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const session = connectHttp2(served.base);
      session.on('error', reject);
      const call = session.request({ ':method': 'POST', ':path': '/linkgate.v1.LinkService/GetLink', 'content-type': 'application/grpc', te: 'trailers', authorization: `Bearer ${API_KEY}` });
      call.on('response', (answer) => {
        resolve({ ...answer });
        call.close();
        session.close();
      });
      call.on('error', reject);
      // One empty message (GetLinkRequest with no fields): a 5-byte frame header, length 0.
      call.end(Buffer.alloc(5));
    });
    expect(headers).toMatchObject({ ':status': 200, 'content-type': 'application/grpc+proto', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  });

  it('lists providers and links, hands out tokens, and unlinks, as the REST API does', async () => {
    const key = { tenant: 'default', userId: 'rpc-token-user', provider: 'pin' };
    await createLinkStore(database.db, gateway.keyring).store(key, { id: 'ext-9', name: 'Nine' }, { accessToken: 'at-rpc-secret-7f3a', expiresAt: Date.now() + 3_600_000 }, { allowShared: true, now: new Date() });

    expect(await grpc.unary('ListProviders', {})).toMatchObject({ ok: true, value: { providers: [{ id: 'pin', display_name: 'Pin', configured: true }] } });
    expect(await grpc.unary('ListLinks', { user_id: key.userId })).toMatchObject({ ok: true, value: { links: [{ provider: 'pin', external_id: 'ext-9', external_name: 'Nine' }] } });
    const token = await grpc.unary<{ access_token: string; token_type: string; expires_at: { seconds: number } }>('GetToken', { user_id: key.userId, provider: 'pin' });
    expect(token).toMatchObject({ ok: true, value: { access_token: 'at-rpc-secret-7f3a', token_type: 'Bearer', expires_at: { seconds: expect.any(Number) } } });
    // Logged: the procedure, never the token or the user id.
    expect(gateway.logs.some((line) => line.includes('"rpc":"linkgate.v1.LinkService/GetToken"'))).toBe(true);
    expect(gateway.logs.filter((line) => line.includes('at-rpc-secret-7f3a') || line.includes('rpc-token-user'))).toEqual([]);

    expect(await grpc.unary('Unlink', { user_id: key.userId, provider: 'pin' })).toMatchObject({ ok: true, value: { revocation: 'REVOCATION_NOT_SUPPORTED' } });
    const again = await grpc.unary('Unlink', { user_id: key.userId, provider: 'pin' });
    expect(again).toMatchObject({ ok: false, code: GrpcStatus.NOT_FOUND });
    expect(grpcErrorDetails((again as { metadata: Metadata }).metadata).errorInfo?.reason).toBe('not_linked');
    expect(await (await rest(`/users/${key.userId}/links`)).json()).toEqual({ links: [] });
  });

  it('answers FAILED_PRECONDITION needs_reauth with a link URL when the user must link again', async () => {
    const links = createLinkStore(database.db, gateway.keyring);
    const row = await links.store({ tenant: 'default', userId: 'rpc-reauth', provider: 'pin' }, { id: 'ext-r' }, { accessToken: 'at-r' }, { allowShared: true, now: new Date() });
    await links.setStatus(row, 'needs_reauth', new Date());
    expect(await grpc.unary('GetLink', { user_id: 'rpc-reauth', provider: 'pin' })).toMatchObject({ ok: true, value: { status: 'LINK_STATUS_NEEDS_REAUTH' } });
    const token = await grpc.unary('GetToken', { user_id: 'rpc-reauth', provider: 'pin' });
    expect(token).toMatchObject({ ok: false, code: GrpcStatus.FAILED_PRECONDITION });
    expect(grpcErrorDetails((token as { metadata: Metadata }).metadata).errorInfo).toMatchObject({ reason: 'needs_reauth', metadata: { link_url: expect.stringContaining('/oauth/pin/start?context=') } });
  });

  it('counts RPCs in /metrics by procedure and status', async () => {
    await grpc.unary('ListProviders', {});
    const metrics = await (await fetch(`${served.base}/metrics`, { headers: { authorization: `Bearer ${API_KEY}` } })).text();
    expect(metrics).toMatch(/^linkgate_rpc_duration_seconds_count\{rpc="linkgate\.v1\.LinkService\/ListProviders",status="OK"\} [1-9]/m);
    expect(metrics).toMatch(/^linkgate_rpc_duration_seconds_count\{rpc="linkgate\.v1\.LinkService\/GetLink",status="NOT_FOUND"\} [1-9]/m);
  });
});

describe('refusals', () => {
  const noStack = (text: string) => expect(text).not.toMatch(/\n\s+at |\.ts:\d+/);

  it.each([
    ['no key', null, GrpcStatus.UNAUTHENTICATED, 'unauthorized'],
    ['a wrong key', 'lg_wrong_key_0123456789', GrpcStatus.UNAUTHENTICATED, 'unauthorized'],
  ])('%s: UNAUTHENTICATED, over gRPC and Connect', async (_name, key, code, reason) => {
    const answer = await grpc.unary('GetLink', { user_id: 'u1', provider: 'pin' }, key);
    expect(answer).toMatchObject({ ok: false, code });
    expect(grpcErrorDetails((answer as { metadata: Metadata }).metadata).errorInfo?.reason).toBe(reason);
    expect(await connectJson(served.base, 'ListProviders', {}, key)).toMatchObject({ status: 401, json: { code: 'unauthenticated' } });
  });

  it.each([
    ['GetLink', { user_id: '', provider: 'pin' }, 'user_id'],
    ['GetLink', { user_id: 'a/b', provider: 'pin' }, 'user_id'],
    ['GetLink', { user_id: 'u1', provider: 'Not A Provider' }, 'provider'],
    ['CreateLinkUrl', { user_id: 'u1', provider: 'pin', user_name: 'x'.repeat(65) }, 'user_name'],
    ['CreateLinkUrl', { user_id: 'u1', provider: 'pin', return_to: 'x'.repeat(2049) }, 'return_to'],
    ['ListLinks', { user_id: 'x'.repeat(129) }, 'user_id'],
    ['WaitForLink', { user_id: 'u1', provider: 'pin', timeout_seconds: 3601 }, 'timeout_seconds'],
  ])('%s with a bad %j: INVALID_ARGUMENT naming the field', async (method, request, field) => {
    const answer =
      method === 'WaitForLink'
        ? await new Promise<{ code: number; details: string; metadata: Metadata }>((resolve) => grpc.stream(method, request).on('error', resolve).on('data', () => {}))
        : ((await grpc.unary(method, request)) as { code: number; details: string; metadata: Metadata });
    expect(answer.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    // grpc-js decodes grpc-message with decodeURI, which leaves `:` (sent as %3A) encoded.
    const message = decodeURIComponent(answer.details);
    expect(message).toMatch(new RegExp(`^${field}: ${field} `));
    noStack(message);
    const details = grpcErrorDetails(answer.metadata);
    expect(details.errorInfo?.reason).toBe('bad_request');
    expect(details.badRequest?.field_violations).toEqual([{ field, description: message }]);
  });

  it('an unknown provider is NOT_FOUND unknown_provider; a return_to elsewhere is INVALID_ARGUMENT return_to_not_allowed', async () => {
    const unknown = await grpc.unary('GetLink', { user_id: 'u1', provider: 'nosuch' });
    expect(unknown).toMatchObject({ ok: false, code: GrpcStatus.NOT_FOUND, details: 'there is no provider called "nosuch"' });
    expect(grpcErrorDetails((unknown as { metadata: Metadata }).metadata).errorInfo?.reason).toBe('unknown_provider');
    const elsewhere = await grpc.unary('CreateLinkUrl', { user_id: 'u1', provider: 'pin', return_to: 'https://evil.example/' });
    expect(elsewhere).toMatchObject({ ok: false, code: GrpcStatus.INVALID_ARGUMENT, details: 'return_to is not on an allowed origin' });
  });

  it('bytes that are not the message, or not HTTP at all, get an answer without a stack trace, and the server keeps serving', async () => {
    // A gRPC-Web frame holding bytes that are not a GetLinkRequest: a status as gRPC's table has it, no stack.
    const garbled = await grpcWeb(served.base, 'GetLink', Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]), API_KEY);
    expect([GrpcStatus.INVALID_ARGUMENT, GrpcStatus.INTERNAL]).toContain(garbled.grpcStatus);
    noStack(garbled.grpcMessage);
    // JSON that does not parse, and fields of the wrong type.
    const notJson = await connectJson(served.base, 'GetLink', '{"user_id": ', API_KEY);
    expect(notJson.status).toBe(400);
    noStack(JSON.stringify(notJson.json));
    const wrongType = await connectJson(served.base, 'GetLink', { user_id: 5, provider: ['pin'] }, API_KEY);
    expect(wrongType).toMatchObject({ status: 400, json: { code: 'invalid_argument' } });
    noStack(JSON.stringify(wrongType.json));
    // Raw garbage on fresh connections: as HTTP/1.1, and after an HTTP/2 preface.
    for (const bytes of [Buffer.from([0, 1, 2, 3, 255, 254, 13, 10, 13, 10]), Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 4, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9])])]) {
      await new Promise<void>((resolve) => {
        const socket = connectTcp(served.port, '127.0.0.1', () => socket.end(bytes));
        socket.on('data', () => {});
        socket.on('error', () => resolve());
        socket.on('close', () => resolve());
      });
    }
    expect(await grpc.unary('ListProviders', {})).toMatchObject({ ok: true });
    expect((await fetch(`${served.base}/healthz`)).status).toBe(200);
  });
});

describe('WaitForLink', () => {
  type Event = { event: string; link?: Record<string, unknown> };
  const collect = (stream: ReturnType<GrpcClient['stream']>) => {
    const events: Event[] = [];
    const ended = new Promise<{ code: number }>((resolve) => {
      stream.on('data', (message: Event) => events.push(message));
      stream.on('error', (error: { code: number }) => resolve(error));
      stream.on('end', () => resolve({ code: GrpcStatus.OK }));
    });
    return { events, ended };
  };
  const until = async (check: () => boolean, what: string) => {
    for (let i = 0; !check(); i += 1) {
      if (i > 200) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  };

  it('says pending at once, beats while waiting, and sends the link the moment the user completes it', async () => {
    const userId = 'rpc-waiter-1';
    const { events, ended } = collect(grpc.stream('WaitForLink', { user_id: userId, provider: 'pin', timeout_seconds: 30 }));
    await until(() => events.length >= 1, 'pending');
    expect(events[0]).toMatchObject({ event: 'pending' });
    await until(() => events.some((e) => e.event === 'heartbeat'), 'a heartbeat');
    const created = await grpc.unary<{ url: string }>('CreateLinkUrl', { user_id: userId, provider: 'pin' });
    await completeLink((created as { value: { url: string } }).value.url, userId);
    expect(await ended).toEqual({ code: GrpcStatus.OK });
    expect(events.at(-1)).toMatchObject({ event: 'link', link: { user_id: userId, provider: 'pin', status: 'LINK_STATUS_ACTIVE' } });
    expect(events.slice(1, -1).every((e) => e.event === 'heartbeat')).toBe(true);
  });

  it('ends with timeout after timeout_seconds', async () => {
    const started = Date.now();
    const { events, ended } = collect(grpc.stream('WaitForLink', { user_id: 'rpc-nobody', provider: 'pin', timeout_seconds: 1 }));
    expect(await ended).toEqual({ code: GrpcStatus.OK });
    expect(events[0]).toMatchObject({ event: 'pending' });
    expect(events.at(-1)).toMatchObject({ event: 'timeout' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it('also streams over Connect on HTTP/1.1 (fetch)', async () => {
    const response = await fetch(`${served.base}/linkgate.v1.LinkService/WaitForLink`, {
      method: 'POST',
      headers: { 'content-type': 'application/connect+json', authorization: `Bearer ${API_KEY}` },
      body: (() => {
        const json = Buffer.from(JSON.stringify({ user_id: 'rpc-nobody-2', provider: 'pin', timeout_seconds: 1 }));
        const frame = Buffer.alloc(5 + json.length);
        frame.writeUInt32BE(json.length, 1);
        frame.set(json, 5);
        return frame;
      })(),
    });
    const body = Buffer.from(await response.arrayBuffer());
    const frames: { flags: number; json: Record<string, unknown> }[] = [];
    for (let at = 0; at + 5 <= body.length; ) {
      const length = body.readUInt32BE(at + 1);
      frames.push({ flags: body[at]!, json: JSON.parse(body.subarray(at + 5, at + 5 + length).toString()) as Record<string, unknown> });
      at += 5 + length;
    }
    // Heartbeats every 300 ms here (15 s in production).
    expect(frames.map((f) => f.json).filter((json) => !('heartbeat' in json))).toEqual([{ pending: {} }, { timeout: {} }, {}]);
    expect(frames.at(-1)!.flags & 0x02).toBe(0x02); // end of stream, no error
  });

  it('leaves no subscription, timer or listener behind when its client goes away', async () => {
    // Timers the waits set (created from src/rpc/link-service.ts), alive until they fire or are cleared.
    const live = new Set<number>();
    const hook = createHook({
      init(id, type) {
        if (type === 'Timeout' && new Error().stack?.includes('src/rpc/link-service.ts')) live.add(id);
      },
      destroy: (id) => live.delete(id),
    }).enable();
    onTestFinished(() => void hook.disable());
    const timers = () => live.size;
    const abortListeners = () => getEventListeners(stopping.signal, 'abort').length;
    const before = { waiting: gateway.events.waiting(), listeners: abortListeners(), timers: timers() };
    const calls = Array.from({ length: 5 }, (_, i) => grpc.stream('WaitForLink', { user_id: `rpc-leaver-${i}`, provider: 'pin', timeout_seconds: 60 }));
    for (const call of calls) call.on('error', () => {}).on('data', () => {});
    await until(() => gateway.events.waiting() === before.waiting + 5, 'five waits');
    expect(abortListeners()).toBe(before.listeners + 5);
    // One timer each (the next heartbeat or the deadline), renewed every heartbeat.
    await until(() => timers() === before.timers + 5, 'a timer for each wait');
    for (const call of calls) call.cancel();
    await until(() => gateway.events.waiting() === before.waiting && abortListeners() === before.listeners, 'the waits to end');
    await until(() => timers() === before.timers, 'their timers to go');
  });

  it('ends open streams with UNAVAILABLE when the gateway shuts down', async () => {
    const streams = [0, 1].map((i) => collect(grpc.stream('WaitForLink', { user_id: `rpc-stopper-${i}`, provider: 'pin', timeout_seconds: 60 })));
    await until(() => streams.every((s) => s.events.length > 0), 'pending');
    stopping.abort();
    const ends = await Promise.all(streams.map((s) => s.ended));
    expect(ends.map((e) => e.code)).toEqual([GrpcStatus.UNAVAILABLE, GrpcStatus.UNAVAILABLE]);
    expect(gateway.events.waiting()).toBe(0);
  });
});

describe('rate limits, shared with the REST API', () => {
  it('refuses past the key’s limit with RESOURCE_EXHAUSTED and RetryInfo, counting REST and RPC together', async () => {
    // A key of its own: counts are shared through the database with every gateway of this file.
    const key = 'lg_rate_limited_key_0123456789abcdef';
    const limited = await createTestGateway(database, { providersDir: FIXTURES, env: { LINKGATE_API_KEYS: key, LINKGATE_API_RATE_LIMIT: '4', LINKGATE_API_RATE_WINDOW_SECONDS: '60' } });
    const port = await listen(limited);
    const client = grpcClient(port.port, key);
    try {
      for (let i = 0; i < 2; i += 1) expect((await fetch(`${port.base}/api/v1/providers`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
      for (let i = 0; i < 2; i += 1) expect(await client.unary('ListProviders', {})).toMatchObject({ ok: true });
      const refused = await client.unary('ListProviders', {});
      expect(refused).toMatchObject({ ok: false, code: GrpcStatus.RESOURCE_EXHAUSTED });
      const details = grpcErrorDetails((refused as { metadata: Metadata }).metadata);
      expect(details.errorInfo?.reason).toBe('rate_limited');
      expect(details.retryInfo?.retry_delay.seconds).toBeGreaterThanOrEqual(1);
      expect((await fetch(`${port.base}/api/v1/providers`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(429);
    } finally {
      client.close();
      await port.close();
    }
  });

  it('counts calls without a valid key against the address, as REST does', async () => {
    // Behind one trusted proxy, so this test's calls come from an address of their own (X-Forwarded-For).
    const limited = await createTestGateway(database, { providersDir: FIXTURES, env: { LINKGATE_TRUST_PROXY: '1', LINKGATE_BROWSER_RATE_LIMIT: '3', LINKGATE_BROWSER_RATE_WINDOW_SECONDS: '60' } });
    const port = await listen(limited);
    const client = grpcClient(port.port, 'lg_not_a_key_0123456789', { 'x-forwarded-for': '203.0.113.77' });
    try {
      const codes = [];
      for (let i = 0; i < 5; i += 1) codes.push(((await client.unary('ListProviders', {})) as { code: number }).code);
      expect(codes).toEqual([16, 16, 16, 8, 8]);
    } finally {
      client.close();
      await port.close();
    }
  });
});

it('decodes with the message types of proto/ (the test clients read the same files)', () => {
  expect(messageType('linkgate.v1.Link').fields.external_id?.id).toBe(3);
});
