/**
 * README.md's "Quick start: AniList for a Discord bot", followed literally:
 * its shell blocks run as they are written, in a folder that looks like a
 * fresh clone (this checkout's files linked into it, no .env, no
 * .linkgate), `npm start` on 127.0.0.1:8000 as the README says, the link
 * opened in Chromium. AniList is the local fake (test/fakes/anilist.ts),
 * reached by the gateway through a preloaded fetch reroute and by the browser
 * through Playwright's routing; it knows the README's example client id and
 * secret. `npm install` is not run again: this checkout is installed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAniList, type FakeAniList } from '../fakes/anilist.ts';
import { launchChromium } from './browser.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PRELOAD = fileURLToPath(new URL('./reroute-preload.mjs', import.meta.url));
const SHOTS = fileURLToPath(new URL('../.tmp/screenshots', import.meta.url));

/** The README's quick-start blocks, by their marker (`<!-- quickstart:env -->` …), without the list's indentation. */
function quickstartBlocks(): Record<string, string> {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const blocks: Record<string, string> = {};
  for (const m of readme.matchAll(/<!-- quickstart:(\w+) -->\s*\n([ \t]*)```sh\n([\s\S]*?)\n[ \t]*```/g)) {
    blocks[m[1]!] = m[3]!
      .split('\n')
      .map((line) => (line.startsWith(m[2]!) ? line.slice(m[2]!.length) : line))
      .join('\n');
  }
  return blocks;
}

const portTaken = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => (socket.destroy(), resolve(true)));
    socket.on('error', () => resolve(false));
  });

describe('the README quick start', () => {
  const blocks = quickstartBlocks();
  let dir: string;
  let anilist: FakeAniList;
  let gateway: ChildProcess | undefined;
  let browser: Browser;
  let output = '';
  let env: Record<string, string | undefined>;

  beforeAll(async () => {
    expect(Object.keys(blocks).sort()).toEqual(['env', 'register', 'whoami']);
    // The client id and secret the README's example .env lines give, as AniList would have registered them.
    const id = /ANILIST_CLIENT_ID=(\S+)/.exec(blocks.env!)![1]!;
    const secret = /ANILIST_CLIENT_SECRET=(\S+)/.exec(blocks.env!)![1]!;
    anilist = await startFakeAniList({ clientId: id, clientSecret: secret, redirectUris: ['http://127.0.0.1:8000/oauth/anilist/callback'] });
    anilist.users.set(7777, { id: 7777, name: 'QuickStarter' });
    dir = mkdtempSync(join(tmpdir(), 'linkgate-quickstart-'));
    for (const entry of readdirSync(ROOT)) if (!['.env', '.linkgate', 'test', '.git'].includes(entry)) symlinkSync(join(ROOT, entry), join(dir, entry));
    env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      npm_config_update_notifier: 'false',
      NODE_OPTIONS: `--import ${PRELOAD}`,
      LINKGATE_TEST_REROUTE: JSON.stringify({ 'https://anilist.co': anilist.origin, 'https://graphql.anilist.co': anilist.graphqlUrl }),
    };
    browser = await launchChromium();
  });
  afterAll(async () => {
    if (gateway?.pid) {
      try {
        process.kill(-gateway.pid, 'SIGTERM');
      } catch {
        // already gone
      }
      await new Promise((resolve) => gateway!.once('exit', resolve).once('error', resolve));
    }
    await browser?.close();
    await anilist?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('ends with whoami printing the linked AniList name', { timeout: 180_000 }, async () => {
    expect(await portTaken(8000), 'the quick start runs the gateway on 127.0.0.1:8000, which is taken').toBe(false);

    // 2. The .env lines.
    const written = spawnSync('bash', ['-c', blocks.env!], { cwd: dir, env, encoding: 'utf8' });
    expect(written.status).toBe(0);

    // 3. npm start, in its own process group so that stopping it stops node too.
    gateway = spawn('npm', ['start'], { cwd: dir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    gateway.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    gateway.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    for (let i = 0; ; i += 1) {
      if (gateway.exitCode !== null || i > 600) throw new Error(`npm start did not come up: ${output}`);
      if ((await fetch('http://127.0.0.1:8000/readyz').catch(() => undefined))?.status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(output).toMatch(/anilist\s+AniList\s+ready/);

    // 4. register: it prints a link and waits for the user.
    const register = spawn('bash', ['-c', blocks.register!], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let said = '';
    register.stdout!.on('data', (chunk: Buffer) => (said += chunk.toString()));
    register.stderr!.on('data', (chunk: Buffer) => (said += chunk.toString()));
    const registered = new Promise<number | null>((resolve) => register.on('exit', resolve));
    for (let i = 0; !/https?:\/\/\S+/.test(said); i += 1) {
      if (register.exitCode !== null || i > 300) throw new Error(`register printed no link: ${said}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const url = /(http:\/\/127\.0\.0\.1:8000\/oauth\/anilist\/start\?\S+)/.exec(said)![1]!;

    // The person opens it, presses Continue, and allows access at "AniList".
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    await context.route('https://anilist.co/**', (route) =>
      route.fulfill({ status: 302, headers: { location: anilist.approve(new URL(new URL(route.request().url()).pathname + new URL(route.request().url()).search, anilist.origin), 7777).href } }),
    );
    const page = await context.newPage();
    await page.goto(url);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('heading', { name: 'Account linked' }).waitFor();
    await page.screenshot({ path: `${SHOTS}/quickstart-linked.png`, fullPage: true });
    await context.close();

    expect(await registered).toBe(0);
    expect(said).toContain('Linked! You are QuickStarter.');

    // And /whoami.
    const whoami = spawnSync('bash', ['-c', `export LINKGATE_API_KEY=$(sed -n 's/^LINKGATE_API_KEYS=//p' .linkgate/secrets.env)\n${blocks.whoami!}`], { cwd: dir, env, encoding: 'utf8' });
    expect(whoami.stderr).toBe('');
    expect(whoami.stdout).toMatch(/^You are QuickStarter \(linked \d{4}-\d\d-\d\d\)\.\n$/);
  });
});
