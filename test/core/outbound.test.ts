import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPrivateAddress, untrustedFetch } from '../../src/core/outbound.ts';

let server: Server;
let base: string;
let hits = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    hits += 1;
    if (req.url === '/redirect') return void res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data' }).end();
    if (req.url === '/big') return void res.end('x'.repeat(2 * 1024 * 1024));
    if (req.url === '/slow') return; // never answers
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ method: req.method, body: req.headers['content-length'] ?? null }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  server.closeAllConnections();
  server.close();
});

describe('requests to user-typed servers', () => {
  it.each(['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1'])(
    'treats %s as private',
    (address) => expect(isPrivateAddress(address)).toBe(true),
  );

  it.each(['93.184.216.34', '1.1.1.1', '2606:4700:4700::1111'])('treats %s as public', (address) => expect(isPrivateAddress(address)).toBe(false));

  it.each([
    ['an IP literal on loopback', () => `${base}/`],
    ['a name resolving to loopback', () => `${base.replace('127.0.0.1', 'localhost')}/`],
    ['an IPv6 loopback literal', () => 'http://[::1]:9/'],
    ['cloud metadata', () => 'http://169.254.169.254/latest/meta-data'],
  ])('refuses %s without contacting it', async (_name, url) => {
    const before = hits;
    await expect(untrustedFetch(url())).rejects.toMatchObject({ code: 'bad_request', message: 'that server address is on a private network' });
    expect(hits).toBe(before);
  });

  it.each(['ftp://example.com/', 'file:///etc/passwd', 'http://user:pass@example.com/'])('refuses %s', async (url) => {
    await expect(untrustedFetch(url)).rejects.toMatchObject({ code: 'bad_request' });
  });

  it('reaches a private server when the operator allows it', async () => {
    const response = await untrustedFetch(`${base}/echo`, { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } }, { allowPrivate: true });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ method: 'POST', body: '7' });
  });

  it('does not follow redirects', async () => {
    const response = await untrustedFetch(`${base}/redirect`, {}, { allowPrivate: true });
    expect(response.status).toBe(302);
    expect(response.headers.get('location')).toBe('http://169.254.169.254/latest/meta-data');
  });

  it('caps the size of an answer', async () => {
    await expect(untrustedFetch(`${base}/big`, {}, { allowPrivate: true, maxBytes: 64 * 1024 })).rejects.toMatchObject({ code: 'provider_response_invalid' });
  });

  it('gives up on a server that does not answer', async () => {
    await expect(untrustedFetch(`${base}/slow`, {}, { allowPrivate: true, timeoutMs: 300 })).rejects.toMatchObject({ name: 'TimeoutError' });
  });

  it.each([
    ['HTTP/1.1 999 Nope', 'provider_response_invalid'],
    ['HTTP/1.1 600 Beyond', 'provider_response_invalid'],
    ['HTTP/1.1 099 Below', 'provider_response_invalid'],
    // Node's parser refuses these before our code sees a status; either way the promise rejects.
    ['HTTP/1.1 0 Zero', /^(provider_response_invalid|HPE_INVALID_STATUS)$/],
    ['HTTP/1.1 1000 Huge', /^(provider_response_invalid|HPE_INVALID_STATUS)$/],
  ])('rejects an answer with the status line "%s", and the process carries on', async (statusLine, code) => {
    // A raw TCP server: node:http would not let us send an invalid status.
    const raw = createNetServer((socket) => {
      socket.once('data', () => socket.end(`${statusLine}\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello`));
    });
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    // With the old bug the error escaped the promise: it surfaced here, and killed a real server.
    const uncaught: unknown[] = [];
    let crashed: (error: unknown) => void = () => {};
    const crash = new Promise<unknown>((resolve) => (crashed = resolve));
    const onUncaught = (error: unknown) => {
      uncaught.push(error);
      crashed({ uncaught: String(error) });
    };
    process.on('uncaughtException', onUncaught);
    try {
      const url = `http://127.0.0.1:${(raw.address() as AddressInfo).port}/`;
      const fetched = untrustedFetch(url, {}, { allowPrivate: true, timeoutMs: 2000 }).then(() => 'resolved', (error: unknown) => error);
      const outcome = await Promise.race([fetched, crash]);
      expect(outcome).toMatchObject({ code: typeof code === 'string' ? code : expect.stringMatching(code) });
      // Nothing else escapes by the next turns of the event loop.
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(uncaught).toEqual([]);
      // Still serving: the next request works.
      expect((await untrustedFetch(`${base}/echo`, {}, { allowPrivate: true })).status).toBe(200);
    } finally {
      process.off('uncaughtException', onUncaught);
      raw.close();
    }
  });
});

describe('requests to user-typed servers: total deadline and size cap', () => {
  let trickler: NetServer;
  let tricklerUrl: string;
  const sockets = new Set<Socket>();

  beforeAll(async () => {
    // Sends one byte every 100 ms (one answer per connection): never idle long enough for an idle timeout.
    trickler = createNetServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.once('data', (request) => {
        const head = request.toString('latin1');
        const answer = head.startsWith('GET /slow-headers')
          ? 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello'
          : head.startsWith('GET /huge')
            ? `HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: ${10 * 1024 * 1024}\r\n\r\n`
            : 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 600\r\n\r\n' + 'x'.repeat(600);
        const bodyAt = head.startsWith('GET /slow-headers') ? 0 : answer.indexOf('\r\n\r\n') + 4;
        if (head.startsWith('GET /huge')) return void socket.write(answer);
        socket.write(answer.slice(0, bodyAt));
        let at = bodyAt;
        const timer = setInterval(() => {
          if (at >= answer.length || socket.destroyed) {
            clearInterval(timer);
            return void socket.end();
          }
          socket.write(answer[at]!);
          at += 1;
        }, 100);
        socket.on('close', () => clearInterval(timer));
      });
    });
    await new Promise<void>((resolve) => trickler.listen(0, '127.0.0.1', resolve));
    tricklerUrl = `http://127.0.0.1:${(trickler.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    for (const socket of sockets) socket.destroy();
    trickler.close();
  });

  it.each([
    ['a body trickled a byte at a time', '/slow-body', { timeoutMs: 400, deadlineMs: 800 }],
    ['headers trickled a byte at a time', '/slow-headers', { timeoutMs: 400, deadlineMs: 800 }],
    ['a body trickled a byte at a time (default deadline: the timeout)', '/slow-body', { timeoutMs: 800 }],
  ])('gives up on %s at the deadline, though the server is never idle', async (_name, path, timing) => {
    const started = performance.now();
    await expect(untrustedFetch(`${tricklerUrl}${path}`, {}, { allowPrivate: true, ...timing })).rejects.toMatchObject({ name: 'TimeoutError' });
    const took = performance.now() - started;
    expect(took).toBeGreaterThanOrEqual(750);
    expect(took).toBeLessThan(2000);
  }, 10_000);

  it('refuses an answer that announces more than the size cap, without reading it', async () => {
    await expect(untrustedFetch(`${tricklerUrl}/huge`, {}, { allowPrivate: true, maxBytes: 64 * 1024 })).rejects.toMatchObject({ code: 'provider_response_invalid' });
  });
});

describe('private address ranges', () => {
  it.each([
    // IPv4-mapped, in either spelling, is judged by its IPv4 address
    ['::ffff:127.0.0.1', true],
    ['::ffff:7f00:1', true],
    ['::ffff:10.0.0.1', true],
    ['::ffff:8.8.8.8', false],
    ['::ffff:808:808', false],
    // IPv4-compatible ::/96 (deprecated), whatever it embeds
    ['::127.0.0.1', true],
    ['::7f00:1', true],
    ['::8.8.8.8', true],
    // IPv4-translated ::ffff:0:0:0/96
    ['::ffff:0:7f00:1', true],
    // NAT64, well-known and local-use prefixes
    ['64:ff9b::7f00:1', true],
    ['64:ff9b::10.1.2.3', true],
    ['64:ff9b::8.8.8.8', true],
    ['64:ff9b:1::a00:1', true],
    ['64:ff9b:1:ffff::1', true],
    // 6to4, with a private or a public IPv4 address inside
    ['2002:7f00:1::1', true],
    ['2002:a00:1::', true],
    ['2002:808:808::1', true],
    // Teredo and the rest of 2001::/23
    ['2001::1', true],
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', true],
    // site-local (deprecated), unique-local, link-local with a zone
    ['fec0::1', true],
    ['feff::1', true],
    ['fd12:3456::1', true],
    ['fe80::1%eth0', true],
    // public IPv6
    ['2606:4700:4700::1111', false],
    ['2001:4860:4860::8888', false],
    ['2a00:1450:4001:81d::200e', false],
  ])('%s is private: %s', (address, expected) => {
    expect(isPrivateAddress(address)).toBe(expected);
  });

  it.each(['http://[::ffff:127.0.0.1]:9/', 'http://[::127.0.0.1]:9/', 'http://[2002:7f00:1::1]:9/', 'http://[64:ff9b::7f00:1]:9/', 'http://[fec0::1]:9/'])(
    'refuses %s without contacting it',
    async (url) => {
      await expect(untrustedFetch(url)).rejects.toMatchObject({ code: 'bad_request', message: 'that server address is on a private network' });
    },
  );
});
