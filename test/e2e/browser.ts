import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Headless Chromium as this machine allows it: no sandbox (root), no background network. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Serves an app on 127.0.0.1 on a free port over real HTTP. */
export async function listen(fetch: (request: Request) => Response | Promise<Response>): Promise<{ url: string; close(): Promise<void> }> {
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        (server as unknown as { closeAllConnections(): void }).closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Listens first and serves later, for an app that must know its own address
 * (a gateway whose PUBLIC_BASE_URL is where the browser reaches it).
 */
export async function listenFirst(): Promise<{ url: string; serve(fetch: (request: Request, env: unknown) => Response | Promise<Response>): void; close(): Promise<void> }> {
  let handler: (request: Request, env: unknown) => Response | Promise<Response> = () => new Response(null, { status: 503 });
  // The Node request and response go through as the second argument (oidc-provider answers on them).
  const server = await listen(((request: Request, env: unknown) => handler(request, env)) as (request: Request) => Response | Promise<Response>);
  return { ...server, serve: (fetch) => (handler = fetch) };
}
