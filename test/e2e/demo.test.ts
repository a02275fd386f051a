import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { linkUrlFor, signLinkContext } from 'linkgate/client';
import { launchChromium } from './browser.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SHOTS = fileURLToPath(new URL('../.tmp/screenshots', import.meta.url));
/** Where a developer's own gateway keeps its data: the demo must never create or use it. */
const DEVELOPER_DATA_DIR = fileURLToPath(new URL('../.tmp/developer-data-dir', import.meta.url));

let browser: Browser;
beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

/** `npm run demo` as a person starts it in a terminal: its own process group, which Ctrl-C signals as a whole. */
class DemoProcess {
  readonly child: ChildProcess;
  output = '';
  /** Once npm and everything it started have closed the terminal's output. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(env: Record<string, string>) {
    this.child = spawn('npm', ['run', 'demo'], { cwd: ROOT, env: { ...process.env, ...env }, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString('utf8')));
    this.child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString('utf8')));
    this.exited = new Promise((resolve) => this.child.once('close', (code, signal) => resolve({ code, signal })));
  }

  /** The first match of `pattern` in the output so far or to come. */
  async waitFor(pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(this.output);
      if (match) return match;
      if (this.child.exitCode !== null || Date.now() > deadline) throw new Error(`no ${pattern} in the demo's output:\n${this.output}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Ctrl-C in the terminal: SIGINT to every process of the group. */
  interrupt(): void {
    process.kill(-this.child.pid!, 'SIGINT');
  }
}

const running: DemoProcess[] = [];
afterEach(async () => {
  for (const demo of running.splice(0)) {
    if (demo.child.exitCode === null && demo.child.signalCode === null) {
      process.kill(-demo.child.pid!, 'SIGKILL');
      await demo.exited;
    }
  }
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Whether something accepts connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

describe('npm run demo', () => {
  it('prints a link URL that completes a real link in Chromium, then shows the stored link, its webhook, the metrics and the secrets; Enter prints new URLs after it; stops cleanly on Ctrl-C', { timeout: 180_000 }, async () => {
    const port = await freePort();
    const demo = new DemoProcess({
      PORT: String(port),
      // A developer's own settings in the shell: the demo's gateway must not pick up any of them.
      DATABASE_URL: 'postgres://developer@127.0.0.1:1/production',
      DATA_DIR: DEVELOPER_DATA_DIR,
      LINKGATE_API_KEYS: 'developer-key-0123456789abcdef0123456789',
    });
    running.push(demo);

    const [, linkUrl] = await demo.waitFor(/^\s+(http:\/\/\S+\/oauth\/demo\/start\?context=\S+)$/m);
    const [, username, password] = await demo.waitFor(/username: (\S+)\s+password: (\S+)/);
    const [, gatewayUrl] = await demo.waitFor(/Gateway\s+(\S+)/);
    const [, idpUrl] = await demo.waitFor(/OpenID provider\s+(\S+)/);
    const [, dataDir] = await demo.waitFor(/Data\s+(\S+)/);
    expect(gatewayUrl).toBe(`http://127.0.0.1:${port}`);
    expect(new URL(linkUrl!).origin).toBe(gatewayUrl);
    expect(existsSync(dataDir!)).toBe(true);

    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(linkUrl!);
    await page.getByRole('heading', { name: 'Link your Demo IdP account?' }).waitFor();
    await page.screenshot({ path: `${SHOTS}/demo-confirm.png`, fullPage: true });
    await page.getByRole('button', { name: 'Continue' }).click();

    await page.getByRole('heading', { name: 'Sign in to Demo IdP' }).waitFor();
    expect(new URL(page.url()).origin).toBe(idpUrl);
    await page.getByLabel('Username').fill(username!);
    await page.getByLabel('Password').fill(`${password}-typo`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor();
    expect(await page.getByRole('alert').textContent()).toBe('Wrong username or password.');
    await page.screenshot({ path: `${SHOTS}/demo-idp-login-error.png`, fullPage: true });
    await page.getByLabel('Password').fill(password!);
    await page.getByRole('button', { name: 'Sign in' }).click();

    await page.getByRole('heading', { name: 'Allow Linkgate (demo) to know who you are?' }).waitFor();
    await page.screenshot({ path: `${SHOTS}/demo-idp-consent.png`, fullPage: true });
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.getByRole('heading', { name: 'Account linked' }).waitFor();
    expect(new URL(page.url()).origin).toBe(gatewayUrl);
    await page.screenshot({ path: `${SHOTS}/demo-linked.png`, fullPage: true });
    await context.close();

    // The demo saw the link through the bot API and printed it.
    await demo.waitFor(/Linked: "demo-user" is Ada Lovelace at Demo IdP/, 15_000);
    const [, printed] = await demo.waitFor(/GET \S+ with:\n\n((?:  .*\n)+)/);
    expect(JSON.parse(printed!)).toMatchObject({ userId: 'demo-user', provider: 'demo', externalId: 'ada', externalName: 'Ada Lovelace', status: 'active' });

    // The bot's webhook receiver heard of it, signed, and printed the event.
    const [, webhook] = await demo.waitFor(/Webhook: link\.created for "demo-user" \(Ada Lovelace\) arrived at \S+, signature verified\. Its body:\n\n((?:  .*\n)+)/);
    expect(JSON.parse(webhook!)).toMatchObject({ type: 'link.created', link: { userId: 'demo-user', provider: 'demo', externalId: 'ada', externalName: 'Ada Lovelace' } });

    // And the metrics that count it: the flow, and the webhook delivered.
    const [, metrics] = await demo.waitFor(/GET \S+\/metrics:\n\n((?:  .*\n)+)/);
    expect(metrics).toContain('  linkgate_flows_started_total{provider="demo",tenant="default"} 1\n');
    expect(metrics).toContain('  linkgate_flows_completed_total{provider="demo",tenant="default"} 1\n');
    expect(metrics).toContain('  linkgate_webhook_deliveries_total{tenant="default",outcome="delivered"} 1\n');

    // Its curl lines work as printed.
    await demo.waitFor(/Press Ctrl-C to stop/);
    const [, apiKey, apiUrl] = await demo.waitFor(/curl -H 'Authorization: Bearer (\S+)' (\S+)/);
    const answer = await fetch(apiUrl!, { headers: { authorization: `Bearer ${apiKey}` } });
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ userId: 'demo-user', provider: 'demo', externalId: 'ada', externalName: 'Ada Lovelace' });
    const [, metricsUrl] = await demo.waitFor(/curl -H 'Authorization: Bearer \S+' (\S+\/metrics)$/m);
    const scraped = await fetch(metricsUrl!, { headers: { authorization: `Bearer ${apiKey}` } });
    expect(await scraped.text()).toContain('linkgate_flows_completed_total{provider="demo",tenant="default"} 1');
    expect(demo.output).not.toContain('developer-key-0123456789abcdef0123456789');
    expect(existsSync(DEVELOPER_DATA_DIR)).toBe(false);

    // The printed signing secret is the gateway's: a context a bot signs with it opens the confirmation page.
    const [, signingSecret] = await demo.waitFor(/^ {2}OAUTH_CONTEXT_SIGNING_SECRET=(\S+)/m);
    const signed = linkUrlFor(gatewayUrl!, 'demo', await signLinkContext({ secret: signingSecret!, userId: 'demo-user-2', provider: 'demo' }));
    const confirm = await fetch(signed);
    expect(confirm.status).toBe(200);
    expect(await confirm.text()).toContain('Link your Demo IdP account?');

    // The printed webhook secret is the receiver's: it takes an event signed with it, and refuses another signature.
    const [, webhookSecret] = await demo.waitFor(/^ {2}LINKGATE_WEBHOOK_SECRET=(\S+)/m);
    const [, receiverUrl] = await demo.waitFor(/Webhook receiver\s+(\S+)/);
    const body = JSON.stringify({ id: 'evt_test', type: 'link.test', createdAt: new Date().toISOString(), link: { userId: 'demo-user-3', provider: 'demo', externalId: 'x', externalName: null } });
    const t = Math.floor(Date.now() / 1000);
    const sign = (secret: string) => `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
    const post = (signature: string) => fetch(receiverUrl!, { method: 'POST', headers: { 'content-type': 'application/json', 'linkgate-signature': signature }, body });
    expect((await post(sign(`${webhookSecret}x`))).status).toBe(401);
    await demo.waitFor(/The webhook receiver refused a wrong or old Linkgate-Signature\./);
    expect((await post(sign(webhookSecret!))).status).toBe(204);
    await demo.waitFor(/Webhook: link\.test for "demo-user-3" \(x\) arrived/);

    // Enter still prints a new link URL after the first link; linking with it again is a link.updated webhook.
    demo.child.stdin!.write('\n');
    const [, secondUrl] = await demo.waitFor(/^ {2}(http:\/\/\S+\/oauth\/demo\/start\?context=\S+)\n\nA new link URL for "demo-user"/m);
    expect(secondUrl).not.toBe(linkUrl);
    const again = await browser.newContext();
    const relink = await again.newPage();
    await relink.goto(secondUrl!);
    await relink.getByRole('button', { name: 'Continue' }).click();
    await relink.getByLabel('Username').fill(username!);
    await relink.getByLabel('Password').fill(password!);
    await relink.getByRole('button', { name: 'Sign in' }).click();
    await relink.getByRole('button', { name: 'Allow' }).click();
    await relink.getByRole('heading', { name: 'Account linked' }).waitFor();
    await again.close();
    await demo.waitFor(/Webhook: link\.updated for "demo-user" \(Ada Lovelace\) arrived/, 15_000);

    demo.interrupt();
    // npm ends the way a shell command ends on Ctrl-C (by SIGINT), after the demo has cleaned up.
    const { code, signal } = await demo.exited;
    expect(signal ?? String(code)).toMatch(/^(SIGINT|0)$/);
    expect(demo.output).toMatch(/Ctrl-C: stopping the gateway and the OpenID provider, deleting \S+\nStopped\.\n$/);
    expect(existsSync(dataDir!)).toBe(false);
    expect(await listening(port)).toBe(false);
    expect(await listening(Number(new URL(idpUrl!).port))).toBe(false);
  });

  it('stops at once on Ctrl-C while it waits for the link, leaving nothing behind', { timeout: 90_000 }, async () => {
    const port = await freePort();
    const demo = new DemoProcess({ PORT: String(port) });
    running.push(demo);
    const [, dataDir] = await demo.waitFor(/Data\s+(\S+)/);
    const [, idpUrl] = await demo.waitFor(/OpenID provider\s+(\S+)/);
    await demo.waitFor(/Waiting for the link/);
    // Its wait request is open at the gateway now; stopping must not sit it out.
    await new Promise((resolve) => setTimeout(resolve, 500));

    const asked = Date.now();
    demo.interrupt();
    await demo.exited;
    expect(Date.now() - asked).toBeLessThan(3000);
    expect(demo.output).toMatch(/Stopped\.\n$/);
    expect(existsSync(dataDir!)).toBe(false);
    expect(await listening(port)).toBe(false);
    expect(await listening(Number(new URL(idpUrl!).port))).toBe(false);
  });

  it('stops at once with what to do when its port is taken', { timeout: 60_000 }, async () => {
    // Something else listens there (and hangs up on whoever calls).
    const taken: Server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      const demo = new DemoProcess({ PORT: String(port) });
      running.push(demo);
      expect(await demo.exited).toEqual({ code: 1, signal: null });
      expect(demo.output).toContain(`linkgate demo: port ${port} is already in use`);
      expect(demo.output).toContain('PORT=8080 npm run demo');
      expect(demo.output).not.toContain('Linkgate demo\n');
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});
