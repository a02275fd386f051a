import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyring } from '../../src/core/crypto.ts';
import { createKeyValueStore } from '../../src/core/kv.ts';
import { createLinkStore } from '../../src/core/links.ts';
import { openDatabase, type Database } from '../../src/db/client.ts';
import { startTestIdp, type TestIdp } from '../fakes/oidc-idp.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, TEST_SECRETS, type TestGateway } from '../helpers/gateway.ts';
import { everyStoredValue } from './leaks.ts';

/**
 * Rotating the encryption key the way the README tells an operator to: put
 * the new key first, (restart,) run `npm run reencrypt` — here the real
 * script, as a child process, against the same database — then drop the old
 * key. Afterwards a gateway holding only the new key opens every link, a flow
 * that was waiting at the provider and the providers' key-value store; one
 * holding only the old key opens none. On PostgreSQL the script connects to
 * the test database; on PGlite the database lives in a directory the script
 * opens once the test has closed it (PGlite serves one process).
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BASE = 'http://127.0.0.1:8000';
const CLIENT_SECRET = 'rotation-client-secret-0123456789abcdef';
const OLD = `old:${Buffer.alloc(32, 0x11).toString('base64')}`;
const NEW = `new:${Buffer.alloc(32, 0x22).toString('base64')}`;

const onPostgres = process.env.TEST_DATABASE_URL !== undefined;
let pgliteDir: string | undefined;
let scratch: string;
let database: Database & { url?: string | undefined };
let idp: TestIdp;

async function open(): Promise<Database & { url?: string | undefined }> {
  if (onPostgres) return createTestDatabase();
  const opened = await openDatabase({ dataDir: join(pgliteDir!, 'pgdata') });
  await opened.migrate();
  return opened;
}

/** `npm run reencrypt` with the deployment's environment; its JSON report. */
async function reencrypt(keys: string): Promise<Record<string, { scanned: number; reencrypted: number; left: number; unreadable: number }> & { primaryKid: string }> {
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'development',
    ...TEST_SECRETS,
    LINKGATE_ENCRYPTION_KEYS: keys,
    ...(onPostgres ? { DATABASE_URL: database.url! } : {}),
    DATA_DIR: pgliteDir ?? scratch,
  };
  // npm as the operator runs it, found on PATH.
  const child = spawn('npm', ['run', '--silent', 'reencrypt'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null | Error>((resolve) => {
    child.on('error', resolve);
    child.on('close', resolve);
  });
  expect({ code, stderr: stderr.split('\n').filter((line) => line && !line.startsWith('npm warn')).join('\n') }).toEqual({ code: 0, stderr: '' });
  // Its report, as JSON (one line or pretty-printed, whichever the script prints).
  return JSON.parse(stdout.slice(stdout.indexOf('{')));
}

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'linkgate-rotation-'));
  if (!onPostgres) pgliteDir = scratch;
  database = await open();
  idp = await startTestIdp({ redirectUris: [`${BASE}/oauth/corp/callback`], clientId: 'linkgate', clientSecret: CLIENT_SECRET });
});
afterAll(async () => {
  await idp?.close();
  await database?.close();
  rmSync(scratch, { recursive: true, force: true });
});

const gatewayWith = (keys: string): Promise<TestGateway> =>
  createTestGateway(database, {
    env: { OIDC_PROVIDERS: 'corp', CORP_ISSUER: idp.issuer, CORP_CLIENT_ID: 'linkgate', CORP_CLIENT_SECRET: CLIENT_SECRET, CORP_SCOPES: 'openid offline_access', LINKGATE_ENCRYPTION_KEYS: keys },
  });

/** Starts a sign-in on `gateway`; the browser and the IdP's callback URL, not yet opened. */
async function signIn(gateway: TestGateway, userId: string, sub: string) {
  const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
  const start = await browser.openLink(`/oauth/corp/start?context=${await mintContext('corp', userId)}`);
  expect(start.status).toBe(303);
  return { browser, callback: await idp.login(new URL(start.headers.get('location')!), sub) };
}

async function sealedKids(): Promise<string[]> {
  const values = await everyStoredValue(database.db);
  return values.filter((v) => /^v1\.[^.]+\./.test(v.value)).map((v) => `${v.table}.${v.column}:${v.value.split('.')[1]}`);
}

const tokenOf = async (gateway: TestGateway, userId: string) => {
  const answer = await gateway.api(`/users/${userId}/links/corp/token`, { method: 'POST' });
  return { status: answer.status, accessToken: answer.status === 200 ? ((await answer.json()) as { accessToken: string }).accessToken : undefined };
};

describe('rotating the encryption key with npm run reencrypt', () => {
  it('re-seals every link, open flow and key-value entry under the new key; the old key can then be dropped', { timeout: 120_000 }, async () => {
    // Before: everything sealed with the old key, one flow still waiting at the IdP.
    const before = await gatewayWith(OLD);
    const linked = await signIn(before, 'rotation-linked', 'idp-rotation-1');
    expect((await linked.browser.get(linked.callback)).status).toBe(200);
    const waiting = await signIn(before, 'rotation-waiting', 'idp-rotation-2');
    await createKeyValueStore(database.db, before.keyring, 'corp', Date.now).set('session', { secret: 'kv-value-before-rotation' });
    const oldCredentials = createLinkStore(database.db, before.keyring).openCredentials(
      (await createLinkStore(database.db, before.keyring).get({ tenant: 'default', userId: 'rotation-linked', provider: 'corp' }))!,
    );

    // The new key goes first; the gateway keeps serving and seals what it writes with it.
    const during = await gatewayWith(`${NEW},${OLD}`);
    const relinked = await signIn(during, 'rotation-during', 'idp-rotation-3');
    expect((await relinked.browser.get(relinked.callback)).status).toBe(200);
    expect((await sealedKids()).sort()).toEqual(['public.flows.data:old', 'public.kv.value:old', 'public.links.credentials:new', 'public.links.credentials:old']);
    // Dropping the old key now would lose data: the new key alone cannot open the old link.
    const newOnly = await gatewayWith(NEW);
    expect((await tokenOf(newOnly, 'rotation-linked')).status).toBe(500);

    if (!onPostgres) await database.close();
    const report = await reencrypt(`${NEW},${OLD}`);
    expect(report).toMatchObject({
      primaryKid: 'new',
      links: { scanned: 2, reencrypted: 1, left: 0, unreadable: 0 },
      kv: { scanned: 1, reencrypted: 1, left: 0, unreadable: 0 },
      flows: { scanned: 1, reencrypted: 1, left: 0, unreadable: 0 },
    });
    // A second run finds nothing left to do.
    const again = await reencrypt(`${NEW},${OLD}`);
    expect([again.links!.reencrypted, again.kv!.reencrypted, again.flows!.reencrypted]).toEqual([0, 0, 0]);
    if (!onPostgres) database = await open();

    // Nothing is sealed with the old key any more.
    expect((await sealedKids()).every((kid) => kid.endsWith(':new'))).toBe(true);

    // The old key is dropped: a gateway with the new key alone opens everything.
    const after = await gatewayWith(NEW);
    expect(await tokenOf(after, 'rotation-linked')).toEqual({ status: 200, accessToken: oldCredentials.accessToken });
    expect((await tokenOf(after, 'rotation-during')).status).toBe(200);
    expect(await createKeyValueStore(database.db, after.keyring, 'corp', Date.now).get('session')).toEqual({ secret: 'kv-value-before-rotation' });
    // The flow that waited at the IdP through the rotation completes (its PKCE verifier opened with the new key).
    const finished = await after.app.request(waiting.callback.pathname + waiting.callback.search, {
      headers: { cookie: `linkgate_browser=${waiting.browser.cookies.get('linkgate_browser')}` },
    });
    expect(finished.status).toBe(303);
    expect(finished.headers.get('location')).toBe('/oauth/corp/linked');
    expect(await (await after.api('/users/rotation-waiting/links/corp')).json()).toMatchObject({ externalId: 'idp-rotation-2', status: 'active' });
    const refreshed = createLinkStore(database.db, createKeyring([{ kid: 'new', key: Buffer.alloc(32, 0x22) }]));
    expect(refreshed.openCredentials((await refreshed.get({ tenant: 'default', userId: 'rotation-linked', provider: 'corp' }))!)).toEqual(oldCredentials);

    // And the old key alone opens nothing any more: the values really were re-sealed.
    expect((await tokenOf(await gatewayWith(OLD), 'rotation-linked')).status).toBe(500);
  });
});
