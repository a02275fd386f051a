/**
 * The demo's webhook receiver: what a bot runs to hear about link changes.
 * It checks each request the way docs/webhooks.md tells a bot to (the
 * `Linkgate-Signature` HMAC over the raw body, within 5 minutes), then
 * hands the event on. Loopback only, one path, small bodies.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as v from 'valibot';

const PATH = '/webhooks';
const MAX_BODY_BYTES = 64 * 1024;
const TOLERANCE_SECONDS = 300;

export const WebhookEvent = v.object({
  id: v.string(),
  type: v.string(),
  createdAt: v.string(),
  link: v.looseObject({ userId: v.string(), provider: v.string(), externalId: v.string(), externalName: v.nullable(v.string()) }),
});
export type WebhookEvent = v.InferOutput<typeof WebhookEvent>;

export interface WebhookReceiver {
  url: string;
  close(): Promise<void>;
}

async function readBody(request: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Whether `header` signs `body` with `secret`, recently enough (docs/webhooks.md). */
export function verifySignature(secret: string, header: string | undefined, body: string, nowSeconds: number): boolean {
  const match = /^t=(\d{1,12}),v1=([0-9a-f]{64})$/.exec(header ?? '');
  if (!match) return false;
  const [, t = '', v1 = ''] = match;
  const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest();
  return timingSafeEqual(Buffer.from(v1, 'hex'), expected) && Math.abs(nowSeconds - Number(t)) <= TOLERANCE_SECONDS;
}

/**
 * Listens on 127.0.0.1 (a free port) for POSTs to /webhooks; calls
 * `onEvent` with each verified event, and `onRefused` with why a request
 * was answered 4xx.
 */
export async function startWebhookReceiver(options: {
  secret: string;
  onEvent: (event: WebhookEvent) => void;
  onRefused: (why: string) => void;
}): Promise<WebhookReceiver> {
  const server = createServer((request, response) => {
    const refuse = (status: number, why: string) => {
      options.onRefused(why);
      response.writeHead(status).end();
    };
    if (request.method !== 'POST' || request.url !== PATH) return refuse(404, `${request.method} ${request.url}`);
    readBody(request).then(
      (body) => {
        if (body === undefined) return refuse(413, 'a body over 64 KiB');
        const signature = request.headers['linkgate-signature'];
        if (!verifySignature(options.secret, typeof signature === 'string' ? signature : undefined, body, Date.now() / 1000)) {
          return refuse(401, 'a wrong or old Linkgate-Signature');
        }
        let json: unknown;
        try {
          json = JSON.parse(body);
        } catch {
          return refuse(400, 'a body that is not JSON');
        }
        const event = v.safeParse(WebhookEvent, json);
        if (!event.success) return refuse(400, 'a body that is not a link event');
        response.writeHead(204).end();
        options.onEvent(event.output);
      },
      () => refuse(400, 'a body that could not be read'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${PATH}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
