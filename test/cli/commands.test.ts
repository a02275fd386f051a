/**
 * The `linkgate` command line as an operator runs it: its output and exit
 * codes (in this process with the binary's own code, `runCliHere`; through
 * the real binary and npx where the process itself is the point). Commands that need no database live here; the
 * link commands are in links.test.ts, the DATA_DIR lock in lock.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import type { Database } from '../../src/db/client.ts';
import { confirmationForm } from '../helpers/browser.ts';
import { cliEnv, ROOT, runCli, runCliHere } from '../helpers/cli.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, TEST_SECRETS } from '../helpers/gateway.ts';

const COMMANDS = ['migrate', 'secrets generate', 'keys rotate', 'providers', 'link-url', 'links list', 'links show', 'links delete'];
const ANILIST = { ANILIST_CLIENT_ID: '12345', ANILIST_CLIENT_SECRET: 'anilist-client-secret-0123456789' };

let dataDir: string;
let env: Record<string, string>;
beforeAll(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'linkgate-cli-'));
  env = cliEnv(dataDir, { ...ANILIST, LINKGATE_RETURN_TO_ORIGINS: 'https://bot.example' });
});
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe('help', () => {
  it('`linkgate --help` lists every command and the exit codes, and exits 0', async () => {
    const result = await runCliHere(['--help']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    for (const command of COMMANDS) expect(result.stdout).toContain(`  ${command}`);
    expect(result.stdout).toContain('Exit codes: 0 success, 1 failure (configuration, database, provider), 2 usage error, 3 not found.');
  });

  it('works as `npx linkgate` from the package bin', async () => {
    // Offline: npx must find the bin in this package, never fetch one.
    const result = await runCli(['linkgate', '--help'], { npm_config_offline: 'true' }, { command: ['npx'], cwd: ROOT });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Usage: linkgate <command>');
  });

  it.each(COMMANDS)('`linkgate %s --help` explains the command and exits 0 without reading any configuration', async (command) => {
    // An invalid configuration proves --help does not need one.
    const result = await runCliHere([...command.split(' '), '--help'], { NODE_ENV: 'production' });
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^Usage: linkgate ${command} `));
    expect(result.stdout).toContain('-h, --help');
    expect(result.stdout).toContain('Exit codes:');
    expect(result.stdout).toContain('--json');
  });

  it.each(['secrets', 'keys', 'links'])('`linkgate %s --help` lists its commands', async (group) => {
    const result = await runCliHere([group, '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`Usage: linkgate ${group} <command>`);
    for (const command of COMMANDS.filter((c) => c.startsWith(`${group} `))) expect(result.stdout).toContain(command);
  });
});

describe('usage errors exit 2 with the help on stderr', () => {
  it.each([
    { args: [], message: 'a command is required', help: 'Usage: linkgate <command>' },
    { args: ['frobnicate'], message: 'unknown command "frobnicate"', help: 'Usage: linkgate <command>' },
    { args: ['--verbose'], message: 'unknown option --verbose', help: 'Usage: linkgate <command>' },
    { args: ['links'], message: '"links" needs a command', help: 'Usage: linkgate links <command>' },
    { args: ['links', 'purge'], message: 'unknown command "links purge"', help: 'Usage: linkgate links <command>' },
    { args: ['links', 'show', 'u1'], message: 'missing argument: expected <userId> <provider>', help: 'Usage: linkgate links show <userId> <provider>' },
    { args: ['links', 'list', 'u1', 'anilist'], message: 'too many arguments: expected <userId>', help: 'Usage: linkgate links list <userId>' },
    { args: ['links', 'list', 'u1', '--force'], message: "Unknown option '--force'", help: 'Usage: linkgate links list <userId>' },
    { args: ['migrate', 'now'], message: 'too many arguments: expected none', help: 'Usage: linkgate migrate' },
    { args: ['link-url', 'u1', 'anilist', '--return-to'], message: "Option '--return-to <value>' argument missing", help: 'Usage: linkgate link-url' },
    { args: ['links', 'show', 'not a user id', 'anilist'], message: 'userId must be 1–128 characters of letters, digits and ._:@+=-', help: 'Usage: linkgate links show' },
    { args: ['links', 'show', 'u1', 'AniList'], message: 'provider must be a provider id such as "anilist"', help: 'Usage: linkgate links show' },
  ])('linkgate $args.0 $args.1 $args.2 $args.3: $message', async ({ args, message, help }) => {
    const result = await runCliHere(args, env);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(message);
    expect(result.stderr).toContain(help);
  });

  it('with --json, a usage error is one JSON line on stderr', async () => {
    const result = await runCliHere(['links', 'show', 'not a user id', 'anilist', '--json'], env);
    expect(result.code).toBe(2);
    expect(JSON.parse(result.stderr)).toEqual({ error: { code: 'usage', message: 'userId must be 1–128 characters of letters, digits and ._:@+=-' } });
  });
});

describe('secrets generate', () => {
  it('prints the four secrets in .env format, fresh each time and valid for the server', async () => {
    const first = await runCliHere(['secrets', 'generate']);
    const second = await runCliHere(['secrets', 'generate']);
    expect(first.code).toBe(0);
    const parse = (text: string) => Object.fromEntries(text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    const a = parse(first.stdout);
    const b = parse(second.stdout);
    expect(Object.keys(a)).toEqual(['OAUTH_CONTEXT_SIGNING_SECRET', 'USERID_HASH_SALT', 'LINKGATE_API_KEYS', 'LINKGATE_ENCRYPTION_KEYS']);
    for (const name of Object.keys(a)) expect(a[name]).not.toBe(b[name]);
    // A production configuration made of exactly these values starts.
    const config = parseConfig({ NODE_ENV: 'production', PUBLIC_BASE_URL: 'https://links.example', ...a });
    expect(config.apiKeys).toEqual([a.LINKGATE_API_KEYS]);
    expect(config.encryptionKeys[0]!.key).toHaveLength(32);
  });

  it('--json prints them as one object', async () => {
    const result = await runCliHere(['secrets', 'generate', '--json']);
    expect(result.code).toBe(0);
    const secrets = JSON.parse(result.stdout) as Record<string, string>;
    expect(Object.keys(secrets).sort()).toEqual(['LINKGATE_API_KEYS', 'LINKGATE_ENCRYPTION_KEYS', 'OAUTH_CONTEXT_SIGNING_SECRET', 'USERID_HASH_SALT']);
    expect(secrets.LINKGATE_API_KEYS).toMatch(/^lg_[A-Za-z0-9_-]{43}$/);
  });
});

describe('keys rotate', () => {
  it('prints LINKGATE_ENCRYPTION_KEYS with a new key first and the configured ones kept, stores nothing', async () => {
    const result = await runCliHere(['keys', 'rotate'], env);
    expect(result.code).toBe(0);
    const value = /^LINKGATE_ENCRYPTION_KEYS=(.+)\n$/.exec(result.stdout)![1]!;
    const keys = value.split(',');
    expect(keys).toHaveLength(2);
    expect(keys[1]).toBe(TEST_SECRETS.LINKGATE_ENCRYPTION_KEYS);
    expect(result.stderr).toContain('then run `linkgate keys rotate --reencrypt`');
    const rotated = parseConfig({ ...env, LINKGATE_ENCRYPTION_KEYS: value });
    expect(rotated.encryptionKeys.map((k) => k.kid)).toEqual([keys[0]!.split(':')[0], 'k1']);
    expect(rotated.encryptionKeys[0]!.key).toHaveLength(32);
    expect(rotated.encryptionKeys[0]!.key.equals(rotated.encryptionKeys[1]!.key)).toBe(false);

    // Rotating again the same day still gives every key its own id.
    const again = await runCliHere(['keys', 'rotate', '--json'], { ...env, LINKGATE_ENCRYPTION_KEYS: value });
    expect(again.code).toBe(0);
    const answer = JSON.parse(again.stdout) as { LINKGATE_ENCRYPTION_KEYS: string; kid: string; previousKids: string[] };
    expect(answer.previousKids).toEqual(rotated.encryptionKeys.map((k) => k.kid));
    expect(answer.LINKGATE_ENCRYPTION_KEYS.endsWith(`,${value}`)).toBe(true);
    const kids = parseConfig({ ...env, LINKGATE_ENCRYPTION_KEYS: answer.LINKGATE_ENCRYPTION_KEYS }).encryptionKeys.map((k) => k.kid);
    expect(kids).toEqual([answer.kid, ...answer.previousKids]);
    expect(new Set(kids).size).toBe(3);
  });
});

describe('providers', () => {
  it('lists each provider, configured or with the variables it lacks', async () => {
    const result = await runCliHere(['providers'], env);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^ID +NAME +CONFIGURED\n/);
    expect(result.stdout).toMatch(/^anilist +AniList +yes$/m);
    expect(result.stdout).toMatch(/^discord +Discord +no \(missing DISCORD_CLIENT_ID, DISCORD_CLIENT_SECRET\)$/m);
    expect(result.stdout).toMatch(/^jellyfin +Jellyfin +no \(missing either JELLYFIN_SERVER_URL, or JELLYFIN_ALLOW_USER_SERVER=true\)$/m);

    const json = await runCliHere(['providers', '--json'], env);
    expect(json.code).toBe(0);
    const { providers } = JSON.parse(json.stdout) as { providers: { id: string; configured: boolean; missing: string[]; needs: string[][] }[] };
    expect(providers.find((p) => p.id === 'anilist')).toEqual({ id: 'anilist', displayName: 'AniList', configured: true, missing: [], needs: [] });
    expect(providers.find((p) => p.id === 'discord')).toMatchObject({ configured: false, missing: ['DISCORD_CLIENT_ID', 'DISCORD_CLIENT_SECRET'], needs: [['DISCORD_CLIENT_ID', 'DISCORD_CLIENT_SECRET']] });
    expect(providers.find((p) => p.id === 'jellyfin')).toMatchObject({ configured: false, needs: [['JELLYFIN_SERVER_URL'], ['JELLYFIN_ALLOW_USER_SERVER=true']] });
  });

  it('a broken configuration exits 1 with one line naming every bad variable, and no secret', async () => {
    const result = await runCliHere(['providers'], { ...env, NODE_ENV: 'production', LINKGATE_API_KEYS: 'short' });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      'linkgate providers: configuration error: LINKGATE_API_KEYS: must be at least 32 characters; PUBLIC_BASE_URL: required in production (the https URL browsers reach the gateway at)\n',
    );
  });
});

describe('link-url', () => {
  let database: Database;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database?.close();
  });

  it('prints a link URL signed with the configured secret that the gateway opens', async () => {
    const result = await runCliHere(['link-url', '80351110224678912', 'anilist', '--return-to', 'https://bot.example/done', '--user-name', 'Nelly'], env);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    const url = new URL(result.stdout.trim());
    expect(url.origin + url.pathname).toBe('http://127.0.0.1:8000/oauth/anilist/start');
    const { payload } = await jwtVerify(url.searchParams.get('context')!, new TextEncoder().encode(TEST_SECRETS.OAUTH_CONTEXT_SIGNING_SECRET), { algorithms: ['HS256'] });
    expect(payload).toMatchObject({ sub: '80351110224678912', provider: 'anilist', return_to: 'https://bot.example/done', name: 'Nelly' });
    expect(payload.exp! - payload.iat!).toBe(300);

    // The gateway, configured alike, shows the confirmation page for it.
    const gateway = await createTestGateway(database, { env });
    const page = await gateway.app.request(url.pathname + url.search);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(confirmationForm(html).fields.context).toBe(url.searchParams.get('context'));
    expect(html).toContain('Nelly');
  });

  it('--json prints the URL and when it expires', async () => {
    const before = Date.now();
    const result = await runCliHere(['link-url', 'u1', 'anilist', '--json'], env);
    expect(result.code).toBe(0);
    const { url, expiresAt } = JSON.parse(result.stdout) as { url: string; expiresAt: string };
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:8000\/oauth\/anilist\/start\?context=/);
    expect(Date.parse(expiresAt) - before).toBeGreaterThan(290_000);
    expect(Date.parse(expiresAt) - before).toBeLessThan(310_000);
  });

  it.each([
    { args: ['u1', 'nothere'], code: 3, error: 'unknown_provider', message: 'there is no provider called "nothere"' },
    { args: ['u1', 'discord'], code: 1, error: 'provider_unconfigured', message: 'Discord is not configured (missing DISCORD_CLIENT_ID, DISCORD_CLIENT_SECRET)' },
    { args: ['u1', 'anilist', '--return-to', 'https://evil.example/'], code: 2, error: 'return_to_not_allowed', message: 'return_to is not on an allowed origin' },
    { args: ['u1', 'anilist', '--user-name', 'a\u0007b'], code: 2, error: 'usage', message: '--user-name must not contain control characters' },
  ])('$error exits $code', async ({ args, code, error, message }) => {
    const result = await runCliHere(['link-url', ...args, '--json'], env);
    expect(result.code).toBe(code);
    expect(result.stdout).toBe('');
    expect(JSON.parse(result.stderr)).toEqual({ error: { code: error, message } });
  });
});
