/**
 * SIGTERM with RPC streams open, on the real process (`src/server.ts` as
 * `npm start` runs it): each stream ends at once with UNAVAILABLE (so the
 * bot calls again and reaches another instance), over gRPC on HTTP/2 and
 * over Connect on HTTP/1.1, WaitForLink and AwaitLogin alike, and the
 * process exits 0 well within its grace.
 */
import { join } from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_KEY } from '../helpers/gateway.ts';
import { ROOT, startGatewayProcess, type GatewayProcess } from '../helpers/process.ts';
import { grpcClient, SERVICE } from '../helpers/rpc.ts';

const ADMIN_KEY = 'admin_shutdown_0123456789abcdefghijklmnopq';
let gateway: GatewayProcess;
beforeAll(async () => {
  // The bench provider is configured by its one variable; nobody links through it here.
  gateway = await startGatewayProcess({ LINKGATE_PROVIDERS_DIR: join(ROOT, 'bench/providers'), BENCH_OAUTH_URL: 'http://127.0.0.1:9', LINKGATE_ADMIN_KEYS: ADMIN_KEY });
}, 60_000);
afterAll(async () => {
  await gateway?.cleanup();
});

/** Connect's streaming framing: a 5-byte prefix (flags, length) per JSON message. */
function connectFrames(body: Buffer): { flags: number; json: Record<string, any> }[] {
  const frames = [];
  for (let at = 0; at + 5 <= body.length; ) {
    const length = body.readUInt32BE(at + 1);
    frames.push({ flags: body[at]!, json: JSON.parse(body.subarray(at + 5, at + 5 + length).toString()) as Record<string, any> });
    at += 5 + length;
  }
  return frames;
}

describe('SIGTERM with RPC streams open', () => {
  it('ends each with UNAVAILABLE and exits 0', async () => {
    const client = grpcClient(gateway.port, API_KEY);
    try {
      const events: string[] = [];
      const grpcEnded = new Promise<{ code: number; details: string }>((resolve) => {
        const call = client.stream('WaitForLink', { user_id: 'stream-1', provider: 'bench', timeout_seconds: 600 });
        call.on('data', (message: { event: string }) => events.push(message.event));
        call.on('error', resolve);
        call.on('end', () => resolve({ code: GrpcStatus.OK, details: '' }));
      });
      const json = Buffer.from(JSON.stringify({ user_id: 'stream-2', provider: 'bench', timeout_seconds: 600 }));
      const connectAnswer = fetch(`${gateway.base}/${SERVICE}/WaitForLink`, {
        method: 'POST',
        headers: { 'content-type': 'application/connect+json', authorization: `Bearer ${API_KEY}` },
        body: Buffer.concat([Buffer.from([0, 0, 0, 0, json.length]), json]),
      });
      // An app's sign-in waiting too (LoginService).
      const created = await fetch(`${gateway.base}/api/admin/v1/tenants/default/apps`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'Shutdown app', redirectUris: ['https://app.example/cb'], type: 'public' }),
      });
      const { clientId } = (await created.json()) as { clientId: string };
      const login = grpcClient(gateway.port, API_KEY, {}, 'LoginService');
      const initiated = await login.unary<{ session_id: string }>('InitiateLogin', { provider: 'bench', app_id: clientId });
      if (!initiated.ok) throw new Error(`InitiateLogin: ${initiated.details}`);
      const loginEnded = new Promise<{ code: number; details: string }>((resolve) => {
        const call = login.stream('AwaitLogin', { session_id: initiated.value.session_id });
        call.on('data', (message: { event: string }) => events.push(`login:${message.event}`));
        call.on('error', resolve);
        call.on('end', () => resolve({ code: GrpcStatus.OK, details: '' }));
      });
      for (let i = 0; events.length < 2; i += 1) {
        if (i > 200) throw new Error('no pending event');
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      expect(events.sort()).toEqual(['login:pending', 'pending']);
      const response = await connectAnswer;
      expect(response.status).toBe(200);

      const signalled = Date.now();
      gateway.child.kill('SIGTERM');
      expect(await grpcEnded).toMatchObject({ code: GrpcStatus.UNAVAILABLE, details: 'the gateway is shutting down (call again)' });
      expect(await loginEnded).toMatchObject({ code: GrpcStatus.UNAVAILABLE, details: 'the gateway is shutting down (call again)' });
      login.close();
      const frames = connectFrames(Buffer.from(await response.arrayBuffer()));
      expect(frames.map((f) => f.json)).toEqual([{ pending: {} }, { error: { code: 'unavailable', message: 'the gateway is shutting down (call again)' } }]);
      expect(frames.at(-1)!.flags).toBe(0x02);

      expect(await gateway.exited).toBe(0);
      expect(Date.now() - signalled).toBeLessThan(5000);
      expect(gateway.output()).toContain('"msg":"stopped"');
      expect(gateway.output()).not.toContain('requests still open after the grace period');
      expect(gateway.output()).not.toMatch(/\n\s+at /);
    } finally {
      client.close();
    }
  }, 60_000);
});
