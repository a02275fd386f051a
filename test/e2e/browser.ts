import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { chromium, type Browser, type Page } from 'playwright-core';
import { expect } from 'vitest';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** The widths every page is checked at: a phone's and a desktop's. */
export const WIDTHS = { phone: { width: 390, height: 844 }, desktop: { width: 1280, height: 900 } } as const;
export type Width = keyof typeof WIDTHS;

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/**
 * Checks the page as it is now and saves its picture to `file`: axe-core
 * finds no violation of any impact (stricter than "no serious or
 * critical"), and nothing is wider than the viewport. axe is injected as a
 * script of its own, so the page's context needs `bypassCSP: true`.
 */
export async function inspectPage(page: Page, file: string, label: string, width: Width): Promise<void> {
  await page.addScriptTag({ content: AXE });
  const violations = await page.evaluate(async () => {
    const result = await (globalThis as unknown as { axe: { run(): Promise<{ violations: Array<{ id: string; impact: string; help: string; nodes: Array<{ target: unknown }> }> }> } }).axe.run();
    return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} (${v.nodes.map((n) => JSON.stringify(n.target)).join(', ')})`);
  });
  expect(violations, `${label} at ${width}`).toEqual([]);
  const overflow = await page.evaluate(() => {
    const root = (globalThis as unknown as { document: { documentElement: { scrollWidth: number; clientWidth: number } } }).document.documentElement;
    return root.scrollWidth - root.clientWidth;
  });
  expect(overflow, `${label} is wider than the ${width} screen`).toBeLessThanOrEqual(0);
  await page.screenshot({ path: file, fullPage: true });
}

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
