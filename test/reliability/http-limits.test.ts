import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayProcess, type GatewayProcess } from '../helpers/process.ts';

/**
 * The HTTP server's own limits in the real process (src/server.ts): a client
 * that sends its headers slowly is cut off after 10 s, whatever it trickles,
 * and headers over 16 KiB are refused with 431; others are served meanwhile.
 */
let gateway: GatewayProcess;

beforeAll(async () => {
  gateway = await startGatewayProcess({});
});
afterAll(async () => {
  await gateway?.cleanup();
});

/** A raw connection to the gateway; resolves with everything it received once the gateway closes it. */
function rawConnection(): { socket: Socket; closed: Promise<{ received: string; afterMs: number }> } {
  const started = Date.now();
  const socket = connect(gateway.port, '127.0.0.1');
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  const closed = new Promise<{ received: string; afterMs: number }>((resolve) => socket.on('close', () => resolve({ received, afterMs: Date.now() - started })));
  socket.on('error', () => {});
  return { socket, closed };
}

describe('the HTTP server', () => {
  it('cuts off a client that trickles its headers after about 10 s (408), and serves others meanwhile', async () => {
    const { socket, closed } = rawConnection();
    socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    // One header line a second: each byte would restart an idle timeout, not this one.
    const trickle = setInterval(() => socket.writable && socket.write(`X-Slow-${Date.now()}: 1\r\n`), 1000);
    try {
      expect((await fetch(`${gateway.base}/healthz`)).status).toBe(200);
      const { received, afterMs } = await closed;
      expect(received).toMatch(/^HTTP\/1\.1 408 /);
      expect(afterMs).toBeGreaterThanOrEqual(9_000);
      expect(afterMs).toBeLessThan(13_000);
    } finally {
      clearInterval(trickle);
    }
  }, 20_000);

  it('refuses headers over 16 KiB with 431, and takes ones just under', async () => {
    const { socket, closed } = rawConnection();
    socket.end(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ${'x'.repeat(17 * 1024)}\r\nConnection: close\r\n\r\n`);
    expect((await closed).received).toMatch(/^HTTP\/1\.1 431 /);
    expect((await fetch(`${gateway.base}/healthz`, { headers: { 'x-padding': 'x'.repeat(15 * 1024) } })).status).toBe(200);
  });
});
