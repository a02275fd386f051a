import { readFileSync } from 'node:fs';
/**
 * `linkgate migrate`, `links list|show|delete` and `keys rotate --reencrypt`
 * on a real database (the first `links list` through the real binary, the
 * rest in this process with the same code, `runCliHere`): PostgreSQL (DATABASE_URL) when
 * TEST_DATABASE_URL is set, else the embedded database in DATA_DIR. Links
 * are made through the API with a real OpenID provider, whose revocation
 * endpoint shows what `links delete` did upstream.
 */
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { createKeyring } from '../../src/core/crypto.ts';
import { createLinkStore, type Link } from '../../src/core/links.ts';
import { sql } from '../../src/db/orm.ts';
import type { Credentials } from '../../src/provider.ts';
import { startTestIdp, type TestIdp } from '../fakes/oidc-idp.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { cliEnv, createCliDatabase, runCli, runCliHere, type CliDatabase } from '../helpers/cli.ts';
import { createTestGateway, TEST_SECRETS } from '../helpers/gateway.ts';

/** How many migrations drizzle/ holds (its journal), so adding one does not break these tests. */
const MIGRATIONS = (JSON.parse(readFileSync(new URL('../../drizzle/meta/_journal.json', import.meta.url), 'utf8')) as { entries: unknown[] }).entries.length;

const CLIENT_SECRET = 'corp-client-secret-0123456789abcdef';
const USER = '80351110224678912';
const NEW_KEY = `k2:${Buffer.alloc(32, 9).toString('base64')}`;
/** What `links delete` adds when neither LINKGATE_WEBHOOK_URL is set: no bot hears of it. */
const NO_EVENT = 'no link.deleted event will be sent: no webhook is configured (LINKGATE_WEBHOOK_URL)\n';

let db: CliDatabase;
let idp: TestIdp;
/** An IdP without a revocation endpoint. */
let plainIdp: TestIdp;
let env: Record<string, string>;
/** What the API answered for USER's links, and the tokens stored with the corp link. */
let apiLinks: Link[];
let corpCredentials: Credentials;

async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const json = <T>(text: string) => JSON.parse(text) as T;
/** A LINKGATE_ENCRYPTION_KEYS value as the server reads it. */
const keysOf = (value: string) => parseConfig({ ...TEST_SECRETS, LINKGATE_ENCRYPTION_KEYS: value }).encryptionKeys;

beforeAll(async () => {
  db = await createCliDatabase();
  idp = await startTestIdp({ redirectUris: ['http://127.0.0.1:8000/oauth/corp/callback'], clientId: 'linkgate', clientSecret: CLIENT_SECRET });
  plainIdp = await startTestIdp({ redirectUris: ['http://127.0.0.1:8000/oauth/plain/callback'], clientId: 'linkgate', clientSecret: CLIENT_SECRET, revocation: false });
  env = cliEnv(db.dataDir, {
    ...db.env,
    OIDC_PROVIDERS: 'corp,down,plain',
    PLAIN_ISSUER: plainIdp.issuer,
    PLAIN_CLIENT_ID: 'linkgate',
    PLAIN_CLIENT_SECRET: CLIENT_SECRET,
    CORP_ISSUER: idp.issuer,
    CORP_CLIENT_ID: 'linkgate',
    CORP_CLIENT_SECRET: CLIENT_SECRET,
    CORP_DISPLAY_NAME: 'Corp SSO',
    // An IdP that does not answer: revocation fails, the link goes anyway.
    DOWN_ISSUER: `http://127.0.0.1:${await closedPort()}`,
    DOWN_CLIENT_ID: 'linkgate',
  });
});
afterAll(async () => {
  await idp?.close();
  await plainIdp?.close();
  await db?.close();
});

describe('on a database nothing has migrated', () => {
  it('link commands refuse until `linkgate migrate` has run; migrate applies each migration once', async () => {
    const early = await runCli(['links', 'list', USER, '--json'], env);
    expect(early.code).toBe(1);
    expect(json(early.stderr)).toEqual({ error: { code: 'not_migrated', message: `the database has 0 of ${MIGRATIONS} migrations applied: run \`linkgate migrate\` (or start the server) first` } });

    const first = await runCliHere(['migrate'], env);
    expect(first.code).toBe(0);
    expect(first.stdout).toBe(`applied ${MIGRATIONS} migration${MIGRATIONS === 1 ? "" : "s"} to the ${db.kind === "pglite" ? "embedded" : "PostgreSQL"} database; it is up to date (${MIGRATIONS} of ${MIGRATIONS})\n`);
    const second = await runCliHere(['migrate', '--json'], env);
    expect(second.code).toBe(0);
    expect(json(second.stdout)).toEqual({ database: db.kind, applied: 0, total: MIGRATIONS });
  });
});

describe('links', () => {
  beforeAll(async () => {
    await db.use(async (database) => {
      const gateway = await createTestGateway(database, { env });
      // The corp link the way a bot and its user make it: a link URL, the confirmation page, the IdP, the callback.
      const made = await gateway.api('/link-urls', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId: USER, provider: 'corp' }) });
      expect(made.status).toBe(201);
      const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
      const started = await browser.openLink((await made.json() as { url: string }).url);
      expect(started.status).toBe(303);
      const callback = await idp.login(started.headers.get('location')!, 'idp-user-1');
      expect((await browser.get(callback)).status).toBe(200);

      const store = createLinkStore(database.db, gateway.keyring);
      corpCredentials = store.openCredentials((await store.get({ tenant: 'default', userId: USER, provider: 'corp' }))!);
      expect(corpCredentials.refreshToken).toBeTruthy();
      const now = new Date();
      await store.store({ tenant: 'default', userId: USER, provider: 'down' }, { id: 'down-account' }, { accessToken: 'down-access-token' }, { allowShared: false, now });
      // A provider this gateway no longer loads (its module was removed).
      await store.store({ tenant: 'default', userId: USER, provider: 'gone' }, { id: 'gone-account', name: 'Gone' }, { accessToken: 'gone-access-token' }, { allowShared: false, now });

      apiLinks = (await (await gateway.api(`/users/${USER}/links`)).json() as { links: Link[] }).links;
      expect(apiLinks.map((l) => l.provider)).toEqual(['corp', 'down', 'gone']);
    });
  });

  const secrets = () => [corpCredentials.accessToken!, corpCredentials.refreshToken!, 'down-access-token', 'gone-access-token'];

  it('`links list` prints what the API answers, never a credential', async () => {
    const text = await runCliHere(['links', 'list', USER], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^PROVIDER +STATUS +ACCOUNT +LINKED\n/);
    expect(text.stdout).toMatch(/^corp +active +Test User idp-user-1 \(idp-user-1\) +\d{4}-/m);
    expect(text.stdout).toMatch(/^gone +active +Gone \(gone-account\)/m);

    const asJson = await runCliHere(['links', 'list', USER, '--json'], env);
    expect(asJson.code).toBe(0);
    expect(json(asJson.stdout)).toEqual({ links: apiLinks });
    for (const secret of secrets()) expect(text.stdout + text.stderr + asJson.stdout + asJson.stderr).not.toContain(secret);

    const nobody = await runCliHere(['links', 'list', 'someone-else', '--json'], env);
    expect(nobody.code).toBe(0);
    expect(json(nobody.stdout)).toEqual({ links: [] });
  });

  it('`links show` prints one link as the API does, and exits 3 for a link that does not exist', async () => {
    const shown = await runCliHere(['links', 'show', USER, 'corp', '--json'], env);
    expect(shown.code).toBe(0);
    expect(json(shown.stdout)).toEqual(apiLinks[0]);
    const text = await runCliHere(['links', 'show', USER, 'corp'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('externalId:   idp-user-1\n');
    expect(text.stdout).toContain('status:       active\n');
    for (const secret of secrets()) expect(shown.stdout + text.stdout).not.toContain(secret);

    const missing = await runCliHere(['links', 'show', USER, 'discord'], env);
    expect(missing.code).toBe(3);
    expect(missing.stdout).toBe('');
    expect(missing.stderr).toBe('linkgate links show: this user has no discord link\n');
  });

  it('`links delete` deletes the link and revokes its tokens at the provider, like the API', async () => {
    const revocations = idp.counts.revocation;
    const deleted = await runCliHere(['links', 'delete', USER, 'corp', '--json'], env);
    expect(deleted.code).toBe(0);
    expect(json(deleted.stdout)).toEqual({ deleted: apiLinks[0], revocation: 'revoked' });
    // The refresh token and the access token, each at the revocation endpoint.
    expect(idp.counts.revocation).toBe(revocations + 2);

    // The IdP no longer honours the refresh token: the grant is gone upstream too.
    const discovery = await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json() as { token_endpoint: string };
    const refresh = await fetch(discovery.token_endpoint, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`linkgate:${CLIENT_SECRET}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: corpCredentials.refreshToken! }),
    });
    expect(refresh.status).toBe(400);
    expect(await refresh.json()).toMatchObject({ error: 'invalid_grant' });

    const shown = await runCliHere(['links', 'show', USER, 'corp', '--json'], env);
    expect(shown.code).toBe(3);
    expect(json(shown.stderr)).toEqual({ error: { code: 'not_linked', message: 'this user has no corp link' } });
    const again = await runCliHere(['links', 'delete', USER, 'corp'], env);
    expect(again.code).toBe(3);
    expect(again.stderr).toBe('linkgate links delete: this user has no corp link\n');
    expect(idp.counts.revocation).toBe(revocations + 2);
  });

  it('`links delete` deletes the link even when the provider cannot be reached, and says revocation failed', async () => {
    const deleted = await runCliHere(['links', 'delete', USER, 'down'], env);
    expect(deleted.code).toBe(0);
    expect(deleted.stdout).toBe(`deleted the down link; revoking its credentials at the provider failed (the warning above says why)\n${NO_EVENT}`);
    const warning = json<{ msg: string; provider: string; user: string; errorCode: string }>(deleted.stderr.trim());
    expect(warning).toMatchObject({ msg: 'upstream revocation failed; the link was deleted anyway', provider: 'down', errorCode: 'provider_unavailable' });
    expect(deleted.stderr).not.toContain(USER);
    expect(deleted.stderr).not.toContain('down-access-token');

    const gone = await runCliHere(['links', 'delete', USER, 'gone', '--json'], env);
    expect(gone.code).toBe(0);
    expect(json(gone.stdout)).toMatchObject({ deleted: { provider: 'gone', externalId: 'gone-account' }, revocation: 'provider_unavailable' });

    const left = await runCliHere(['links', 'list', USER, '--json'], env);
    expect(json(left.stdout)).toEqual({ links: [] });
  });
});

describe('links delete at a provider without revocation', () => {
  it('says the provider has no revocation, and asks it nothing', async () => {
    await db.use(async (database) => {
      const store = createLinkStore(database.db, createKeyring(keysOf(TEST_SECRETS.LINKGATE_ENCRYPTION_KEYS)));
      await store.store({ tenant: 'default', userId: 'plain-user', provider: 'plain' }, { id: 'plain-account' }, { accessToken: 'plain-access-token', refreshToken: 'plain-refresh-token' }, { allowShared: false, now: new Date() });
      await store.store({ tenant: 'default', userId: 'plain-user-2', provider: 'plain' }, { id: 'plain-account-2' }, { accessToken: 'plain-access-token-2' }, { allowShared: false, now: new Date() });
    });
    const asJson = await runCliHere(['links', 'delete', 'plain-user', 'plain', '--json'], env);
    expect(asJson.code).toBe(0);
    expect(json(asJson.stdout)).toMatchObject({ deleted: { provider: 'plain', externalId: 'plain-account' }, revocation: 'not_supported' });
    const text = await runCliHere(['links', 'delete', 'plain-user-2', 'plain'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toBe(`deleted the plain link; the provider has no revocation\n${NO_EVENT}`);
    expect(plainIdp.counts.revocation).toBe(0);
  });

  it('says nothing about events when the webhook is configured: a link.deleted event is on its way', async () => {
    await db.use(async (database) => {
      const store = createLinkStore(database.db, createKeyring(keysOf(TEST_SECRETS.LINKGATE_ENCRYPTION_KEYS)));
      await store.store({ tenant: 'default', userId: 'plain-user-3', provider: 'plain' }, { id: 'plain-account-3' }, { accessToken: 'plain-access-token-3' }, { allowShared: false, now: new Date() });
    });
    const webhook = { LINKGATE_WEBHOOK_URL: 'https://bot.example/linkgate-events', LINKGATE_WEBHOOK_SECRET: 'whsec_cli-test-0123456789abcdefghijklmnop' };
    const text = await runCliHere(['links', 'delete', 'plain-user-3', 'plain'], { ...env, ...webhook });
    expect(text).toEqual({ code: 0, stdout: 'deleted the plain link; the provider has no revocation\n', stderr: '' });
    const events = await db.use((database) => database.db.execute(sql`select type from webhook_deliveries where payload like '%plain-account-3%'`));
    expect(JSON.stringify(events)).toContain('link.deleted');
  });
});

describe('keys rotate --reencrypt', () => {
  it('re-seals stored credentials under the first configured key, so the old key can be dropped', async () => {
    const key = { tenant: 'default', userId: 'rotating-user', provider: 'corp' };
    await db.use(async (database) => {
      const old = createLinkStore(database.db, createKeyring(keysOf(TEST_SECRETS.LINKGATE_ENCRYPTION_KEYS)));
      await old.store(key, { id: 'rotating-account' }, { accessToken: 'sealed-under-k1' }, { allowShared: false, now: new Date() });
    });

    const rotated = { ...env, LINKGATE_ENCRYPTION_KEYS: `${NEW_KEY},${TEST_SECRETS.LINKGATE_ENCRYPTION_KEYS}` };
    const result = await runCliHere(['keys', 'rotate', '--reencrypt', '--json'], rotated);
    expect(result.code).toBe(0);
    const report = json<{ primaryKid: string; links: { scanned: number; reencrypted: number }; olderKids: string[] }>(result.stdout);
    expect(report).toMatchObject({ primaryKid: 'k2', links: { scanned: 1, reencrypted: 1 }, olderKids: ['k1'] });
    expect(result.stdout).not.toContain(NEW_KEY.slice(3));

    // The new key alone opens it now.
    await db.use(async (database) => {
      const onlyNew = createLinkStore(database.db, createKeyring(keysOf(NEW_KEY)));
      expect(onlyNew.openCredentials((await onlyNew.get(key))!).accessToken).toBe('sealed-under-k1');
    });

    const text = await runCliHere(['keys', 'rotate', '--reencrypt'], rotated);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('re-sealed under k2: links 0 of 1');
    expect(text.stdout).toContain('remove k1 from LINKGATE_ENCRYPTION_KEYS');
  });
});
