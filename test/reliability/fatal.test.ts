import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { ROOT, startGatewayProcess } from '../helpers/process.ts';

/**
 * A fault nothing handles (here a provider module's rejected promise that
 * nobody awaits) ends the gateway, as Node's default does, but said as one
 * line of the log's format, with no stack trace on stderr, and reported to
 * Sentry first when it is configured (whose SDK would otherwise keep the
 * process running). The supervisor starts it again.
 */
const FAULTY = join(ROOT, 'test/fixtures/faulty-provider');

/** Opens a link to the faulty provider: the gateway runs its first step, and the process may end before it answers. */
async function openFaultyLink(base: string): Promise<void> {
  const browser = new TestBrowser((path, init) => fetch(new URL(path, base), { ...init, redirect: 'manual' }));
  await browser.openLink(`/oauth/faulty/start?context=${await mintContext('faulty', '80351110224678912')}`).catch(() => undefined);
}

/** The JSON lines the process wrote. */
const lines = (output: string) => output.trim().split('\n').map((line) => JSON.parse(line) as { level: number; msg: string; cause?: unknown });

describe('a fault nothing handles', () => {
  it('ends the process with exit code 1 and one fatal log line naming it, never a raw stack trace', async () => {
    const gateway = await startGatewayProcess({ LINKGATE_PROVIDERS_DIR: FAULTY });
    try {
      await openFaultyLink(gateway.base);
      expect(await gateway.exited).toBe(1);
      // One fatal line. It is not always the last: in CI a request's "flow started" came after it.
      expect(lines(gateway.output()).filter((line) => line.level === 60)).toMatchObject([{ msg: 'unhandled rejection', cause: { name: 'Error', message: 'a bug in the faulty provider' } }]);
      expect(gateway.output()).not.toMatch(/\n\s+at /);
    } finally {
      await gateway.cleanup();
    }
  });

  describe('with Sentry configured', () => {
    let sentry: Server;
    const envelopes: string[] = [];
    beforeAll(async () => {
      // Sentry's ingest endpoint, as the SDK posts to it: /api/<project>/envelope/.
      sentry = createServer((req, res) => {
        let body = '';
        req.on('data', (chunk: Buffer) => (body += chunk.toString()));
        req.on('end', () => {
          if (req.url?.startsWith('/api/1/envelope/')) envelopes.push(body);
          res.writeHead(200).end('{}');
        });
      });
      await new Promise<void>((resolve) => sentry.listen(0, '127.0.0.1', resolve));
    });
    afterAll(() => new Promise((resolve) => sentry.close(resolve)));

    it('reports it as fatal before the process ends, which it does all the same', async () => {
      const dsn = `http://public@127.0.0.1:${(sentry.address() as AddressInfo).port}/1`;
      const gateway = await startGatewayProcess({ LINKGATE_PROVIDERS_DIR: FAULTY, SENTRY_DSN: dsn });
      try {
        await openFaultyLink(gateway.base);
        expect(await gateway.exited).toBe(1);
        // (Requests in flight may still log while the report is sent.)
        expect(lines(gateway.output()).filter((line) => line.level === 60)).toMatchObject([{ msg: 'unhandled rejection', cause: { message: 'a bug in the faulty provider' } }]);
        expect(gateway.output()).not.toMatch(/\n\s+at /);
        const event = envelopes.find((envelope) => envelope.includes('a bug in the faulty provider'));
        expect(event).toBeDefined();
        expect(event).toContain('"level":"fatal"');
      } finally {
        await gateway.cleanup();
      }
    });
  });
});
