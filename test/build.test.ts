/**
 * `npm run build` and `npm run start:prod` (issue #24): the gateway as
 * compiled JavaScript, the way the Dockerfile runs it, with no tsx. The
 * build is one .js file per module in the same tree (scripts/build.js); a
 * provider module outside it, still TypeScript, is loaded by Node itself and
 * must share the build's copy of `linkgate/provider`.
 *
 * The build goes into a copy of the package in the run's temporary
 * directory (its package.json, node_modules linked), never into the
 * checkout's dist/, which a gateway or a benchmark may be running from.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { completePinLink, TestBrowser } from './helpers/browser.ts';
import { mintContext } from './helpers/context.ts';
import { API_KEY } from './helpers/gateway.ts';
import { ROOT, startGatewayProcess, startProdArguments, type GatewayProcess } from './helpers/process.ts';

const PIN = fileURLToPath(new URL('./fixtures/providers/pin.ts', import.meta.url));

const filesUnder = (base: string, dir: string) =>
  readdirSync(join(base, dir), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(base, join(entry.parentPath, entry.name)));

/** The copy of the package: package.json, node_modules (linked), the build, and a provider directory of its own. */
let pkg: string;
let DIST: string;
let gateway: GatewayProcess;

beforeAll(async () => {
  pkg = mkdtempSync(join(tmpdir(), 'linkgate-build-'));
  DIST = join(pkg, 'dist');
  copyFileSync(join(ROOT, 'package.json'), join(pkg, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'), 'dir');
  // A provider module of the operator's, in TypeScript, beside the package (it resolves `linkgate/provider` through it).
  mkdirSync(join(pkg, 'providers-extra'));
  copyFileSync(PIN, join(pkg, 'providers-extra', 'pin.ts'));
  const built = spawnSync('npm', ['run', '-s', 'build', '--', DIST], { cwd: ROOT, encoding: 'utf8' });
  expect(built.stderr).toBe('');
  expect(built.status).toBe(0);
  gateway = await startGatewayProcess({ LINKGATE_PROVIDERS_DIR: join(pkg, 'providers-extra') }, { compiled: pkg });
}, 60_000);
afterAll(async () => {
  await gateway?.cleanup();
  if (pkg) rmSync(pkg, { recursive: true, force: true });
});

describe('npm run build', () => {
  it('compiles each module of src/ and providers/ to a .js file in the same place under dist/, with its source map, and copies the migrations', () => {
    const modules = [...filesUnder(ROOT, 'src'), ...filesUnder(ROOT, 'providers')].filter((file) => /\.tsx?$/.test(file) && !/\.(test|d)\.ts$/.test(file));
    expect(modules.length).toBeGreaterThan(100);
    const built = new Set(filesUnder(pkg, 'dist'));
    for (const module of modules) {
      const js = join('dist', module.replace(/\.tsx?$/, '.js'));
      expect(built, js).toContain(js);
      expect(built, `${js}.map`).toContain(`${js}.map`);
    }
    expect([...built].filter((file) => /\.tsx?$/.test(file))).toEqual([]);
    expect(readFileSync(join(DIST, 'drizzle/meta/_journal.json'), 'utf8')).toBe(readFileSync(join(ROOT, 'drizzle/meta/_journal.json'), 'utf8'));
    // Imports stay imports: relative ones name the .js files, packages stay packages.
    const server = readFileSync(join(DIST, 'src/server.js'), 'utf8');
    expect(server).toContain('from "./app.js"');
    expect(server).toContain('from "@hono/node-server"');
    expect(server).not.toMatch(/from "\.[^"]*\.tsx?"/);
  });
});

describe('the Dockerfile', () => {
  it('builds dist/ and runs what start:prod runs', () => {
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^RUN npm ci --omit=dev[^\n]*\\\n\s+&& npm run build \\$/m);
    const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(dockerfile)![1]!) as string[];
    const scripts = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts as Record<string, string>;
    expect(cmd.join(' ')).toBe(scripts['start:prod']);
    // What that build needs is in the image: esbuild is installed by `npm ci --omit=dev`, and the build's inputs are copied.
    const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    expect(Object.keys(manifest.dependencies)).toContain('esbuild');
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((line) => line.trim());
    for (const input of ['scripts', 'scripts/build.js', 'src', 'providers', 'drizzle', 'tsconfig.json', 'package.json']) expect(ignored).not.toContain(input);
    expect(ignored).toContain('dist');
  });
});

describe('npm run start:prod', () => {
  it('links an account through a TypeScript provider module from LINKGATE_PROVIDERS_DIR', async () => {
    const url = `${gateway.base}/oauth/pin/start?context=${await mintContext('pin', 'build-user-1')}`;
    expect(await completePinLink(gateway.base, url, 'ada')).toEqual({ status: 'linked' });
    const status = await fetch(`${gateway.base}/api/v1/users/build-user-1/links/pin`, { headers: { authorization: `Bearer ${API_KEY}` } });
    expect(status.status).toBe(200);
    expect(await status.json()).toMatchObject({ provider: 'pin', externalId: 'ada', status: 'active' });
  });

  it('knows the errors that module throws: it and the gateway share one linkgate/provider', async () => {
    // pin.ts throws LinkgateError('bad_request') at a redirect back; a second copy of the class would make it a 500.
    const browser = new TestBrowser((path, init) => fetch(new URL(path, gateway.base), { ...init, redirect: 'manual' }));
    const form = await (await browser.openLink(`/oauth/pin/start?context=${await mintContext('pin', 'build-user-2')}`)).text();
    const state = /name="state" value="([^"]+)"/.exec(form)![1]!;
    const refused = await browser.get(`/oauth/pin/callback?state=${encodeURIComponent(state)}&code=x`);
    expect(refused.status).toBe(400);
    // The request's log line is written after its answer.
    await vi.waitFor(() => expect(gateway.output()).toContain('"errorCode":"bad_request"'));
    expect(gateway.output()).not.toContain('"status":500');
  });

  it('serves what it loads on first use: the API reference and the Connect API', async () => {
    const docs = await fetch(`${gateway.base}/docs`);
    expect(docs.status).toBe(200);
    expect(await docs.text()).toContain('Linkgate API');
    const spec = await fetch(`${gateway.base}/openapi.json`);
    expect((await spec.json()) as unknown).toMatchObject({ openapi: expect.stringMatching(/^3\./) });
    const rpc = await fetch(`${gateway.base}/linkgate.v1.LinkService/GetLink`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ user_id: 'build-user-1', provider: 'pin' }),
    });
    expect(rpc.status).toBe(200);
    expect(await rpc.json()).toMatchObject({ externalId: 'ada', status: 'LINK_STATUS_ACTIVE' });
  });

  it('names the TypeScript line in a stack trace', () => {
    // start:prod's flags (--enable-source-maps among them), running a module of the build that throws.
    const flags = startProdArguments(pkg).filter((arg) => !arg.endsWith('.js'));
    const config = pathToFileURL(join(DIST, 'src/config.js')).href;
    const script = `import { parseConfig } from '${config}'; try { parseConfig({ NODE_ENV: 'production' }); } catch (error) { console.log(error.stack); }`;
    const ran = spawnSync(process.execPath, [...flags, '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(ran.stdout).toContain('ConfigError');
    expect(ran.stdout).toMatch(/src\/config\.ts:\d+:\d+/);
    expect(ran.stdout).not.toContain('config.js');
  });
});
