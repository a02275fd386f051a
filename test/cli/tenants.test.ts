/**
 * `linkgate tenants …` on a real database (PostgreSQL when
 * TEST_DATABASE_URL is set, else the embedded one): what it creates works in
 * a gateway on the same database, its --json answers are the operator API's
 * (checked with src/http/admin.ts's answer schemas), bad input is named and
 * no secret is ever repeated, and deleting a tenant removes its links.
 */
import * as v from 'valibot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { createKeyring } from '../../src/core/crypto.ts';
import { createLinkStore } from '../../src/core/links.ts';
import { sql } from '../../src/db/orm.ts';
import {
  ApiKeysAnswer,
  AppsAnswer,
  ContextSecretsAnswer,
  CreatedAppAnswer,
  CreatedApiKeyAnswer,
  CreatedContextSecretAnswer,
  ProviderConfigAnswer,
  SigningKeyAnswer,
  SigningKeysAnswer,
  TenantAnswer,
  TenantDetailAnswer,
  TenantProvidersAnswer,
  TenantsAnswer,
  WebhookAnswer,
} from '../../src/http/admin.ts';
import { startTestIdp, type TestIdp } from '../fakes/oidc-idp.ts';
import { cliEnv, createCliDatabase, runCli, runCliHere, type CliDatabase } from '../helpers/cli.ts';
import { createTestGateway, TEST_SECRETS } from '../helpers/gateway.ts';

const CLIENT_SECRET = 'quizbot-client-secret-0123456789abcdef';
const WEBHOOK_SECRET = 'whsec_quizbot-0123456789abcdefghijklmnop';

let db: CliDatabase;
let idp: TestIdp;
let env: Record<string, string>;
/** The key and context secret the CLI printed once. */
let apiKey: string;
let contextSecret: string;

const cli = (args: string[], options: { input?: string; env?: Record<string, string> } = {}) => runCliHere(args, { ...env, ...options.env }, options.input === undefined ? {} : { input: options.input });
const answer = async <S extends v.GenericSchema>(schema: S, args: string[], options: { input?: string } = {}): Promise<v.InferOutput<S>> => {
  const result = await cli([...args, '--json'], options);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return v.parse(schema, JSON.parse(result.stdout));
};
const corpEnv = () => `CORP_ISSUER=${idp.issuer}\nCORP_CLIENT_ID=linkgate\nCORP_CLIENT_SECRET=${CLIENT_SECRET}\n`;

/** The bot API of a gateway on the same database, as the tenant's bot calls it. */
async function asBot<T>(key: string, path: string, read: (response: Response) => Promise<T>): Promise<T> {
  return db.use(async (database) => {
    const gateway = await createTestGateway(database);
    return read(await gateway.app.request(`/api/v1${path}`, { headers: { authorization: `Bearer ${key}` } }));
  });
}

beforeAll(async () => {
  db = await createCliDatabase();
  idp = await startTestIdp({ redirectUris: ['http://127.0.0.1:8000/oauth/corp/callback'], clientId: 'linkgate', clientSecret: CLIENT_SECRET });
  env = cliEnv(db.dataDir, db.env);
  expect((await runCli(['migrate'], env)).code).toBe(0);
});
afterAll(async () => {
  await idp?.close();
  await db?.close();
});

describe('linkgate tenants', () => {
  it('creates a tenant and a key that works against the gateway, answering with the operator API\'s shapes', async () => {
    expect(await answer(TenantAnswer, ['tenants', 'create', 'quizbot', 'Quiz Bot'])).toMatchObject({ id: 'quizbot', name: 'Quiz Bot' });
    const key = await answer(CreatedApiKeyAnswer, ['tenants', 'keys', 'create', 'quizbot', 'production']);
    apiKey = key.key;
    contextSecret = (await answer(CreatedContextSecretAnswer, ['tenants', 'secrets', 'create', 'quizbot'])).secret;

    const configured = await answer(ProviderConfigAnswer, ['tenants', 'providers', 'set', 'quizbot', 'corp', '--env-stdin'], { input: corpEnv() });
    expect(configured).toEqual({ id: 'corp', displayName: expect.any(String), configured: true, version: 1, env: { CORP_ISSUER: idp.issuer, CORP_CLIENT_ID: 'linkgate', CORP_CLIENT_SECRET: '********' } });
    expect(await answer(WebhookAnswer, ['tenants', 'webhook', 'set', 'quizbot', 'https://quizbot.example/events', '--secret-stdin'], { input: `${WEBHOOK_SECRET}\n` })).toEqual({ url: 'https://quizbot.example/events' });

    expect((await answer(TenantsAnswer, ['tenants', 'list'])).tenants.map((t) => t.id)).toEqual(['default', 'quizbot']);
    expect(await answer(TenantDetailAnswer, ['tenants', 'show', 'quizbot'])).toMatchObject({ webhookUrl: 'https://quizbot.example/events', apiKeys: 1, contextSecrets: 1 });
    const keys = await answer(ApiKeysAnswer, ['tenants', 'keys', 'list', 'quizbot']);
    expect(keys.apiKeys.map((k) => k.id)).toEqual([key.id]);
    expect((await answer(ContextSecretsAnswer, ['tenants', 'secrets', 'list', 'quizbot'])).contextSecrets).toHaveLength(1);
    expect((await answer(TenantProvidersAnswer, ['tenants', 'providers', 'list', 'quizbot'])).providers.find((p) => p.id === 'corp')).toMatchObject({ configured: true });

    // Every secret was printed once, by the command that made it, and by none since.
    for (const args of [['list'], ['show', 'quizbot'], ['keys', 'list', 'quizbot'], ['secrets', 'list', 'quizbot'], ['providers', 'list', 'quizbot']]) {
      const shown = await cli(['tenants', ...args]);
      expect(shown.code).toBe(0);
      for (const secret of [apiKey, contextSecret, CLIENT_SECRET, WEBHOOK_SECRET]) expect(shown.stdout + shown.stderr).not.toContain(secret);
    }

    // The key names the tenant in a gateway on the same database; the environment's key sees the default tenant.
    const providers = await asBot(apiKey, '/providers', async (r) => ({ status: r.status, body: (await r.json()) as { providers: Array<{ id: string; configured: boolean }> } }));
    expect(providers.status).toBe(200);
    expect(providers.body.providers.find((p) => p.id === 'corp')).toMatchObject({ configured: true });
    expect(await asBot(`${apiKey}x`, '/providers', async (r) => r.status)).toBe(401);
  }, 180_000);

  it('prints a human summary, the key once, and --help like the other commands', async () => {
    const made = await cli(['tenants', 'keys', 'create', 'quizbot', 'staging']);
    expect(made.code).toBe(0);
    expect(made.stdout).toMatch(/^created API key key_\S+ \(staging\) for tenant quizbot:\n\n {2}lg_\S+\n\nThis is the only time it is shown/);
    const help = await cli(['tenants', 'keys', 'create', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: linkgate tenants keys create <tenant> <name> [--json]');
    expect(help.stdout).toContain("POST /api/admin/v1/tenants/:tenant/api-keys");
    const group = await cli(['tenants', 'secrets']);
    expect(group.code).toBe(2);
    expect(group.stderr).toContain('"tenants secrets" needs a command');
    expect(group.stderr).toContain('tenants secrets retire <tenant> <id>');
  }, 60_000);

  it('rotates a tenant\'s signing key: the next key published first, one rotation at a time', async () => {
    const first = await answer(SigningKeyAnswer, ['tenants', 'signing-keys', 'rotate', 'quizbot', '--publish-for', '0']);
    expect(first).toMatchObject({ alg: 'ES256', state: 'signing', retiredAt: null, expiresAt: null });
    const next = await cli(['tenants', 'signing-keys', 'rotate', 'quizbot', '--publish-for', '600']);
    expect(next.code).toBe(0);
    expect(next.stdout).toMatch(/^tenant quizbot: key \S+ is published now and signs from \d{4}-\d\d-\d\dT/);
    const listed = await answer(SigningKeysAnswer, ['tenants', 'signing-keys', 'list', 'quizbot']);
    expect(listed.signingKeys.map((k) => k.state)).toEqual(['signing', 'next']);
    expect(listed.signingKeys[0]).toMatchObject({ kid: first.kid, retiredAt: listed.signingKeys[1]!.signsFrom, expiresAt: expect.any(String) });
    const table = await cli(['tenants', 'signing-keys', 'list', 'quizbot']);
    expect(table.stdout).toMatch(/^KID\s+STATE\s+SIGNS FROM\s+LEAVES THE JWKS\n/);

    const pending = await cli(['tenants', 'signing-keys', 'rotate', 'quizbot', '--json']);
    expect(pending.code).toBe(1);
    expect(JSON.parse(pending.stderr)).toMatchObject({ error: { code: 'key_rotation_pending' } });
    const bad = await cli(['tenants', 'signing-keys', 'rotate', 'quizbot', '--publish-for', 'soon']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('publishSeconds must be a number of seconds');
  }, 60_000);

  it.each([
    { args: ['tenants', 'create', 'Not_OK', 'x'], code: 2, says: 'id: the tenant id must be' },
    { args: ['tenants', 'create', 'quizbot', 'again'], code: 1, says: 'a tenant "quizbot" already exists' },
    { args: ['tenants', 'show', 'nobody'], code: 3, says: 'there is no tenant "nobody"' },
    { args: ['tenants', 'keys', 'create', 'quizbot', '<b>'], code: 2, says: 'name: name must not contain control characters or < >' },
    { args: ['tenants', 'keys', 'delete', 'quizbot', 'nokey'], code: 2, says: 'id: id must be an API key id like key_…' },
    { args: ['tenants', 'keys', 'delete', 'quizbot', 'key_missing'], code: 3, says: 'this tenant has no API key with this id' },
    { args: ['tenants', 'secrets', 'retire', 'quizbot', 'cs_missing'], code: 3, says: 'this tenant has no active context secret with this id' },
    { args: ['tenants', 'providers', 'set', 'quizbot', 'corp', `CORP_CLIENT_SECRET=${CLIENT_SECRET}`, 'CORP_ISSUER=not a url', 'CORP_CLIENT_ID=x'], code: 2, says: 'CORP_ISSUER' },
    { args: ['tenants', 'providers', 'set', 'quizbot', 'corp', CLIENT_SECRET], code: 2, says: 'variable 1 must be NAME=value' },
    { args: ['tenants', 'providers', 'set', 'quizbot', 'corp', `corp_client_secret=${CLIENT_SECRET}`], code: 2, says: 'each variable name must look like DISCORD_CLIENT_ID' },
    { args: ['tenants', 'providers', 'set', 'default', 'corp', 'CORP_CLIENT_ID=x'], code: 2, says: "the default tenant's providers is configured by the environment" },
    { args: ['tenants', 'webhook', 'set', 'quizbot', 'ftp://quizbot.example/', '--secret-env', 'WH'], code: 2, says: 'url: url must be an absolute http(s) URL' },
    { args: ['tenants', 'webhook', 'set', 'quizbot', 'https://quizbot.example/', '--secret-env', 'SHORT'], code: 2, says: 'secret: secret must be at least 32 characters' },
    { args: ['tenants', 'webhook', 'set', 'quizbot', 'https://quizbot.example/'], code: 2, says: 'exactly one of --secret-stdin or --secret-env' },
    { args: ['tenants', 'delete', 'default'], code: 2, says: 'the default tenant cannot be deleted' },
  ])('exits $code on `$args` with a message naming what is wrong, repeating no secret', async ({ args, code, says }) => {
    const extra = { WH: WEBHOOK_SECRET, SHORT: 'short-webhook-secret' };
    const text = await cli(args, { env: extra });
    expect(text.code).toBe(code);
    expect(text.stdout).toBe('');
    expect(text.stderr).toContain(`linkgate ${args.slice(0, args[1] === 'create' || args[1] === 'show' || args[1] === 'delete' ? 2 : 3).join(' ')}: `);
    expect(text.stderr).toContain(says);
    const json = await cli([...args, '--json'], { env: extra });
    expect(json.code).toBe(code);
    expect(JSON.parse(json.stderr)).toEqual({ error: { code: expect.any(String), message: expect.stringContaining(says) } });
    for (const secret of [CLIENT_SECRET, WEBHOOK_SECRET, 'short-webhook-secret']) expect(text.stderr + json.stderr).not.toContain(secret);
  }, 60_000);

  it('registers, lists and deletes a tenant\'s apps; the secret is printed once, and the redirect URIs are what the web-session API allows', async () => {
    const DASHBOARD = 'https://quiz.example/dashboard';
    /** A web-session start in a gateway on the same database: past the allowlist, the (unconfigured) provider is next. */
    const start = () =>
      db.use(async (database) => {
        const gateway = await createTestGateway(database, { env: { LINKGATE_USER_PROVIDER: 'discord' } });
        const answer = await gateway.app.request(`/api/auth/discord/start?tenantId=quizbot&postLoginRedirect=${encodeURIComponent(DASHBOARD)}`);
        return ((await answer.json()) as { error: { code: string } }).error.code;
      });
    expect(await start()).toBe('redirect_not_allowed');

    const made = await cli(['tenants', 'apps', 'create', 'quizbot', 'Quiz dashboard', 'confidential', DASHBOARD, 'https://quiz.example/callback', '--post-logout-redirect-uris', 'https://quiz.example/ https://quiz.example/bye', '--providers', 'corp']);
    expect(made.stderr).toBe('');
    expect(made.code).toBe(0);
    const [, clientId, secret] = /^created app (app_\S+) \(Quiz dashboard\) for tenant quizbot; its client secret:\n\n {2}(\S+)\n\nThis is the only time it is shown/.exec(made.stdout) ?? [];
    expect(clientId).toBeDefined();
    const made2 = await answer(CreatedAppAnswer, ['tenants', 'apps', 'create', 'quizbot', 'Spa', 'public', DASHBOARD]);
    expect(made2.clientSecret).toBeUndefined();
    // A CLI of someone else's: the device flow, no redirect URI, and a consent page.
    const tool = await answer(CreatedAppAnswer, ['tenants', 'apps', 'create', 'quizbot', 'Stats CLI', 'public', '--device-flow', '--third-party']);

    const listed = await answer(AppsAnswer, ['tenants', 'apps', 'list', 'quizbot']);
    expect(listed.apps.find((app) => app.clientId === clientId)).toMatchObject({
      name: 'Quiz dashboard',
      type: 'confidential',
      redirectUris: [DASHBOARD, 'https://quiz.example/callback'],
      postLogoutRedirectUris: ['https://quiz.example/', 'https://quiz.example/bye'],
      providers: ['corp'],
      subject: 'user',
      firstParty: true,
      deviceFlow: false,
    });
    expect(listed.apps.find((app) => app.clientId === tool.clientId)).toMatchObject({ name: 'Stats CLI', redirectUris: [], deviceFlow: true, firstParty: false });
    const table = await cli(['tenants', 'apps', 'list', 'quizbot']);
    expect(table.stdout).toContain(clientId!);
    for (const shown of [table.stdout, JSON.stringify(listed)]) expect(shown).not.toContain(secret!);
    // The public app offers every provider, Discord included: its redirect URI is allowed for a Discord sign-in.
    expect(await start()).toBe('provider_unconfigured');

    expect(table.stdout).toMatch(/Stats CLI +public +- +all +device,third-party/);
    for (const app of [clientId!, made2.clientId, tool.clientId]) {
      const deleted = await cli(['tenants', 'apps', 'delete', 'quizbot', app]);
      expect(deleted.code).toBe(0);
      expect(deleted.stdout).toBe(`deleted app ${app} of tenant quizbot\n`);
    }
    expect(await start()).toBe('redirect_not_allowed');
    expect((await answer(AppsAnswer, ['tenants', 'apps', 'list', 'quizbot'])).apps).toEqual([]);
    expect((await cli(['tenants', 'apps', 'delete', 'quizbot', clientId!])).code).toBe(3);
  }, 120_000);

  it.each([
    { args: ['tenants', 'apps', 'create', 'quizbot', 'x', 'confidential'], says: 'redirectUris must list at least one URL' },
    { args: ['tenants', 'apps', 'create', 'quizbot', 'x', 'spa', 'https://quiz.example/cb'], says: 'type must be' },
    { args: ['tenants', 'apps', 'create', 'quizbot', 'x', 'public', 'http://quiz.example/cb'], says: 'redirectUris' },
    { args: ['tenants', 'apps', 'create', 'quizbot', 'x', 'public', 'https://quiz.example/cb', '--providers', 'nosuch'], says: 'providers: this tenant has no provider "nosuch"' },
    { args: ['tenants', 'apps', 'create', 'quizbot', 'x', 'public', 'https://quiz.example/cb', '--subject', 'email'], says: 'subject must be' },
    { args: ['tenants', 'apps', 'delete', 'quizbot', 'nope'], says: 'clientId must be an app id' },
  ])('refuses `$args`, naming what is wrong', async ({ args, says }) => {
    const text = await cli([...args, '--json']);
    expect(text.code).toBe(2);
    expect(text.stdout).toBe('');
    expect(JSON.parse(text.stderr)).toEqual({ error: { code: 'bad_request', message: expect.stringContaining(says) } });
  }, 60_000);

  it('deletes a tenant with its links; its key stops working and the default tenant is untouched', async () => {
    await db.use(async (database) => {
      const links = createLinkStore(database.db, createKeyring(parseConfig({ ...TEST_SECRETS }).encryptionKeys));
      await links.store({ tenant: 'quizbot', userId: 'quiz-user', provider: 'corp' }, { id: 'quiz-account' }, { accessToken: 'quiz-access-token' }, { allowShared: false, now: new Date(), configVersion: 1 });
      await links.store({ tenant: 'default', userId: 'quiz-user', provider: 'corp' }, { id: 'default-account' }, { accessToken: 'default-access-token' }, { allowShared: false, now: new Date() });
    });
    const revocations = idp.counts.revocation;
    const deleted = await cli(['tenants', 'delete', 'quizbot']);
    expect(deleted.stderr).toBe('');
    expect(deleted.code).toBe(0);
    expect(deleted.stdout).toBe('deleted tenant quizbot and everything it had (1 link unlinked)\n');
    // Revoked at the tenant's app, with the configuration version that made the link.
    expect(idp.counts.revocation).toBe(revocations + 1);
    const left = await db.use((database) => database.db.execute(sql`select tenant, count(*)::int as n from links group by tenant order by tenant`));
    expect(JSON.stringify(left)).toContain('"tenant":"default","n":1');
    expect(JSON.stringify(left)).not.toContain('quizbot');
    expect(await asBot(apiKey, '/providers', async (r) => r.status)).toBe(401);
    expect((await cli(['tenants', 'show', 'quizbot'])).code).toBe(3);
    expect((await cli(['tenants', 'delete', 'quizbot', '--json'])).code).toBe(3);
  }, 120_000);
});

