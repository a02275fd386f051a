/**
 * The command line while a real gateway runs on the embedded database in the
 * same DATA_DIR: the commands with an HTTP equivalent go through the
 * gateway's API and print exactly what they print on the database directly
 * (the same commands, run first with the gateway stopped), the others refuse
 * saying why. Always on PGlite: on PostgreSQL commands use the database.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { createKeyring } from '../../src/core/crypto.ts';
import { createLinkStore } from '../../src/core/links.ts';
import { openDatabase } from '../../src/db/client.ts';
import { cliEnv, runCli, runCliHere, type CliResult } from '../helpers/cli.ts';
import { TEST_SECRETS } from '../helpers/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../helpers/process.ts';

const MIGRATIONS = (JSON.parse(readFileSync(new URL('../../drizzle/meta/_journal.json', import.meta.url), 'utf8')) as { entries: unknown[] }).entries.length;
const ADMIN_KEY = 'lg_admin_test_key_0123456789abcdefghijklmn';
const USER = '80351110224678912';
const OTHER = 'second-user';
const NO_EVENT = 'no link.deleted event will be sent: no webhook is configured (LINKGATE_WEBHOOK_URL)\n';

let dataDir: string;
let env: Record<string, string>;
let gateway: GatewayProcess | undefined;
/** What each command printed on the database directly, before the gateway started. */
const direct = new Map<string, CliResult>();

/** Commands whose output must not change when they go through the gateway; the last ones fail (exit 3). */
const SAME = [
  ['links', 'list', USER],
  ['links', 'show', USER, 'anilist'],
  ['providers'],
  ['tenants', 'list'],
  ['tenants', 'show', 'quizbot'],
  ['tenants', 'keys', 'list', 'quizbot'],
  ['tenants', 'providers', 'list', 'quizbot'],
  ['links', 'list', 'nobody'],
  ['links', 'show', USER, 'discord'],
  ['tenants', 'show', 'nobody'],
].flatMap((args) => [args, [...args, '--json']]);

const json = <T>(text: string) => JSON.parse(text) as T;
/**
 * `linkgate` as a new process, in DATA_DIR: not in the repository, whose
 * `.env` (a developer's) the command would read and the in-process runs
 * (runCliHere) would not.
 */
const cli = (args: readonly string[], environment: Record<string, string | undefined> = env) => runCli(args, environment, { cwd: dataDir });

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'linkgate-cli-live-'));
  env = cliEnv(dataDir, { ANILIST_CLIENT_ID: '12345', ANILIST_CLIENT_SECRET: 'anilist-client-secret-0123456789', LINKGATE_ADMIN_KEYS: ADMIN_KEY, LINKGATE_ADMINS: 'owner=anilist:1' });
  expect((await cli(['migrate'], env)).code).toBe(0);
  expect((await cli(['tenants', 'create', 'quizbot', 'Quiz Bot'], env)).code).toBe(0);
  expect((await cli(['tenants', 'keys', 'create', 'quizbot', 'production'], env)).code).toBe(0);
  const database = await openDatabase({ dataDir: join(dataDir, 'pgdata') });
  try {
    const links = createLinkStore(database.db, createKeyring(parseConfig({ ...TEST_SECRETS }).encryptionKeys));
    for (const userId of [USER, OTHER]) {
      await links.store({ tenant: 'default', userId, provider: 'anilist' }, { id: `anilist-${userId}`, name: 'Aoi' }, { accessToken: `token-${userId}` }, { allowShared: false, now: new Date() });
    }
  } finally {
    await database.close();
  }
  // In this process (the same code and output as bin/linkgate.js, without a
  // Node start for each): the embedded database serves one process at a time.
  for (const args of SAME) direct.set(args.join(' '), await runCliHere(args, env));
  expect(direct.get(`links show ${USER} anilist`)?.code).toBe(0);
  expect(direct.get(`links show ${USER} discord`)?.code).toBe(3);

  // The real gateway, as `npm start` runs it, on the same DATA_DIR and configuration.
  gateway = await startGatewayProcess({ ...env, PORT: '0', LOG_LEVEL: 'info' }, { bare: true });
}, 120_000);
afterAll(async () => {
  await gateway?.cleanup();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('while the gateway runs on the embedded database', () => {
  it('it says where it listens in DATA_DIR/gateway.json, readable by its user only', () => {
    const file = join(dataDir, 'gateway.json');
    expect(json(readFileSync(file, 'utf8'))).toEqual({ pid: gateway!.child.pid, url: gateway!.base });
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  // Read-only commands, each a real process asking the gateway: side by side.
  it.concurrent.for(SAME.map((args) => ({ args, command: args.join(' ') })))('`linkgate $command` prints what it prints on the database directly, with the same exit code', async ({ args, command }, { expect }) => {
    const through = await cli(args, env);
    expect(through).toEqual(direct.get(command));
  });

  it('`links delete` without LINKGATE_ADMIN_KEYS says to set them and restart the gateway, or to stop it, and deletes nothing', async () => {
    const { LINKGATE_ADMIN_KEYS: _, ...without } = env;
    const refused = await cli(['links', 'delete', USER, 'anilist', '--json'], without);
    expect(refused).toMatchObject({ code: 1, stdout: '' });
    expect(json(refused.stderr)).toMatchObject({ error: { code: 'operator_api_disabled', message: expect.stringContaining('`links delete` and the tenants commands then go through its operator API') } });
    expect(await cli(['links', 'show', USER, 'anilist'], env)).toEqual(direct.get(`links show ${USER} anilist`));
  });

  it('`links delete` deletes through the operator API, prints the revocation it answered and that no event will be sent; the audit trail has it', async () => {
    // The link as `links show` printed it on the database directly, and the revocation the API answered in Linkgate-Revocation.
    const shown = json<unknown>(direct.get(`links show ${USER} anilist --json`)!.stdout);
    const asJson = await cli(['links', 'delete', USER, 'anilist', '--json'], env);
    expect(asJson).toMatchObject({ code: 0, stderr: '' });
    expect(json(asJson.stdout)).toEqual({ deleted: shown, revocation: 'not_supported' });
    expect(await cli(['links', 'list', USER], env)).toEqual({ code: 0, stdout: 'this user has no links\n', stderr: '' });
    // The gateway deleted it: its API no longer has it either.
    const asked = await fetch(`${gateway!.base}/api/v1/users/${USER}/links/anilist`, { headers: { authorization: `Bearer ${TEST_SECRETS.LINKGATE_API_KEYS}` } });
    expect(asked.status).toBe(404);
    const again = await cli(['links', 'delete', USER, 'anilist'], env);
    expect(again).toEqual({ code: 3, stdout: '', stderr: 'linkgate links delete: this user has no anilist link\n' });

    const text = await cli(['links', 'delete', OTHER, 'anilist'], env);
    expect(text).toEqual({ code: 0, stdout: `deleted the anilist link; the provider has no revocation\n${NO_EVENT}`, stderr: '' });

    // Audited as the operator key, the refused second one too.
    const audit = await fetch(`${gateway!.base}/api/admin/v1/audit?action=link.delete`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    const events = json<{ events: Array<Record<string, unknown>> }>(await audit.text()).events.reverse();
    expect(events.map((e) => [e.target, e.outcome, e.code])).toEqual([
      [`link:${USER}/anilist`, 'ok', null],
      [`link:${USER}/anilist`, 'refused', 'not_linked'],
      [`link:${OTHER}/anilist`, 'ok', null],
    ]);
    for (const event of events) expect(event).toMatchObject({ actor: expect.stringMatching(/^operator-key:/), tenant: 'default' });
    expect(events[0]!.detail).toEqual({ revocation: 'not_supported' });
  });


  it('`link-url` prints a URL the running gateway signed and accepts', async () => {
    const made = await cli(['link-url', USER, 'anilist', '--json'], env);
    expect(made.stderr).toBe('');
    const { url, expiresAt } = json<{ url: string; expiresAt: string }>(made.stdout);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/oauth\/anilist\/start\?context=/);
    expect(Date.parse(expiresAt)).toBeGreaterThan(Date.now());
    const opened = await fetch(`${gateway!.base}${new URL(url).pathname}${new URL(url).search}`, { redirect: 'manual' });
    expect(opened.status).toBe(200);
    expect(await opened.text()).toContain('AniList');

    const text = await cli(['link-url', USER, 'anilist'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/oauth\/anilist\/start\?context=[\w.-]+\n$/);
    const unknown = await cli(['link-url', USER, 'nope'], env);
    expect(unknown).toEqual({ code: 3, stdout: '', stderr: 'linkgate link-url: there is no provider called "nope"\n' });
  });

  it('`tenants …` changes go through the operator API', async () => {
    const created = await cli(['tenants', 'create', 'trivia', 'Trivia'], env);
    expect(created).toEqual({ code: 0, stdout: 'created tenant trivia (Trivia)\nnext: linkgate tenants keys create trivia <name>\n', stderr: '' });
    const listed = await fetch(`${gateway!.base}/api/admin/v1/tenants`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    expect(((await listed.json()) as { tenants: { id: string }[] }).tenants.map((t) => t.id)).toEqual(['default', 'quizbot', 'trivia']);
    const key = await cli(['tenants', 'keys', 'create', 'trivia', 'production', '--json'], env);
    expect(json(key.stdout)).toMatchObject({ name: 'production', key: expect.stringMatching(/^lg_/) });
    expect(await cli(['tenants', 'delete', 'trivia'], env)).toEqual({ code: 0, stdout: 'deleted tenant trivia and everything it had (0 links unlinked)\n', stderr: '' });
    expect(await cli(['tenants', 'delete', 'trivia', '--json'], env)).toEqual({ code: 3, stdout: '', stderr: `${JSON.stringify({ error: { code: 'tenant_not_found', message: 'there is no tenant "trivia"' } })}\n` });
    expect(await cli(['tenants', 'create', 'Not_OK', 'x'], env)).toMatchObject({ code: 2, stdout: '' });
  });

  it('`tenants …` without LINKGATE_ADMIN_KEYS says to set them and restart the gateway, or to stop it', async () => {
    const { LINKGATE_ADMIN_KEYS: _, ...without } = env;
    const refused = await cli(['tenants', 'list'], without);
    expect(refused).toEqual({
      code: 1,
      stdout: '',
      stderr:
        `linkgate tenants list: the gateway running on DATA_DIR ${dataDir} (pid ${gateway!.child.pid}) holds the embedded database, and tenants commands then go through its operator API, ` +
        'which needs one of LINKGATE_ADMIN_KEYS, and none is set: set LINKGATE_ADMIN_KEYS and restart the gateway, or stop it to run this command on the database directly\n',
    });
    expect(refused.stderr.split('\n')).toHaveLength(2);
    const asJson = await cli(['tenants', 'list', '--json'], without);
    expect(json(asJson.stderr)).toMatchObject({ error: { code: 'operator_api_disabled' } });
  });

  it('`admin invite` makes its invite through the operator API: the link works on the gateway, audited as the operator key, never the link', async () => {
    const made = await cli(['admin', 'invite', '--json'], env);
    expect(made.code, made.stderr).toBe(0);
    const { id, url, expiresAt } = json<{ id: string; url: string; expiresAt: string }>(made.stdout);
    expect(id).toMatch(/^inv_[A-Za-z0-9_-]{16}$/);
    expect(url).toMatch(/\/admin\/invite\/[A-Za-z0-9_-]{43}$/);
    expect(made.stderr).toBe(`linkgate: this link works once, until ${expiresAt}; whoever signs in with it first becomes an owner of the console (invite ${id})\n`);
    const token = url.slice(url.lastIndexOf('/') + 1);
    const opened = await fetch(`${gateway!.base}/admin/invite/${token}`, { redirect: 'manual' });
    expect(opened.status).toBe(200);
    expect(await opened.text()).toContain('You are invited to the Linkgate console');
    const operator = { headers: { authorization: `Bearer ${ADMIN_KEY}` } };
    const listed = json<{ invites: { id: string }[] }>(await (await fetch(`${gateway!.base}/api/admin/v1/console/invites`, operator)).text());
    expect(listed.invites.map((i) => i.id)).toContain(id);
    const audit = await (await fetch(`${gateway!.base}/api/admin/v1/audit?action=admin.invite`, operator)).text();
    expect(json<{ events: unknown[] }>(audit).events[0]).toMatchObject({ actor: expect.stringMatching(/^operator-key:/), target: `invite:${id}`, outcome: 'ok' });
    expect(audit).not.toContain(token);

    const text = await cli(['admin', 'invite'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^http:\/\/[^ ]+\/admin\/invite\/[A-Za-z0-9_-]{43}\n$/);

    // `admin invites list|revoke` through the operator API too: the revoked link stops working.
    const throughList = json<{ invites: { id: string }[] }>((await cli(['admin', 'invites', 'list', '--json'], env)).stdout);
    expect(throughList.invites.map((i) => i.id)).toEqual(json<{ invites: { id: string }[] }>(await (await fetch(`${gateway!.base}/api/admin/v1/console/invites`, operator)).text()).invites.map((i) => i.id));
    expect(await cli(['admin', 'invites', 'revoke', id], env)).toEqual({ code: 0, stdout: `revoked invite ${id}: its link no longer works\n`, stderr: '' });
    expect((await fetch(`${gateway!.base}/admin/invite/${token}`, { redirect: 'manual' })).status).not.toBe(200);
    expect(await cli(['admin', 'invites', 'revoke', id], env)).toMatchObject({ code: 3, stderr: 'linkgate admin invites revoke: there is no open invite with this id (it was used, it expired, or it was revoked)\n' });
    const revokes = json<{ events: Array<Record<string, unknown>> }>(await (await fetch(`${gateway!.base}/api/admin/v1/audit?action=admin.invite_revoke`, operator)).text()).events;
    expect(revokes.map((e) => [e.target, e.outcome])).toEqual([
      [`invite:${id}`, 'refused'],
      [`invite:${id}`, 'ok'],
    ]);
  });

  it('`admin invite` without LINKGATE_ADMIN_KEYS says to set them and restart the gateway, or to stop it; without LINKGATE_ADMINS it refuses before asking', async () => {
    const { LINKGATE_ADMIN_KEYS: _, ...without } = env;
    expect(await cli(['admin', 'invite'], without)).toEqual({
      code: 1,
      stdout: '',
      stderr:
        `linkgate admin invite: the gateway running on DATA_DIR ${dataDir} (pid ${gateway!.child.pid}) holds the embedded database, and \`admin invite\`, \`admin invites\` and the tenants commands then go through its operator API, ` +
        'which needs one of LINKGATE_ADMIN_KEYS, and none is set: set LINKGATE_ADMIN_KEYS and restart the gateway, or stop it to run this command on the database directly\n',
    });
    const { LINKGATE_ADMINS: __, ...closed } = env;
    expect(await cli(['admin', 'invite', '--json'], closed)).toEqual({
      code: 1,
      stdout: '',
      stderr: `${JSON.stringify({ error: { code: 'console_closed', message: 'the admin console is closed (LINKGATE_ADMINS is unset), and an invite does not open it: add an owner to LINKGATE_ADMINS first' } })}\n`,
    });
  });

  it('`migrate` says the gateway migrated the database at start-up', async () => {
    const text = await cli(['migrate'], env);
    expect(text).toEqual({ code: 0, stdout: `the gateway running on DATA_DIR ${dataDir} (pid ${gateway!.child.pid}) migrated the embedded database at start-up; it is up to date (${MIGRATIONS} of ${MIGRATIONS})\n`, stderr: '' });
    expect(json((await cli(['migrate', '--json'], env)).stdout)).toEqual({ database: 'pglite', applied: 0, total: MIGRATIONS });
  });

  it('with DATABASE_URL a command uses that database and never asks the gateway', async () => {
    // Nobody listens on port 9: the command fails on the database it was given.
    const result = await cli(['links', 'list', USER, '--json'], { ...env, DATABASE_URL: 'postgres://linkgate@127.0.0.1:9/linkgate' });
    expect(result).toEqual({ code: 1, stdout: '', stderr: `${JSON.stringify({ error: { code: 'failed', message: 'connect ECONNREFUSED 127.0.0.1:9' } })}\n` });
  });

  it('`keys rotate --reencrypt` refuses, saying why and what to do', async () => {
    const refused = await cli(['keys', 'rotate', '--reencrypt'], env);
    expect(refused).toEqual({
      code: 1,
      stdout: '',
      stderr:
        `linkgate keys rotate: the gateway running on DATA_DIR ${dataDir} (pid ${gateway!.child.pid}) holds the embedded database, and re-sealing every stored value needs the database itself (the gateway has no API for it): ` +
        'stop the gateway, run `linkgate keys rotate --reencrypt`, then start it again\n',
    });
  });
});

describe('once the gateway has stopped', () => {
  it('gateway.json is gone, and commands use the database again', async () => {
    gateway!.child.kill('SIGTERM');
    expect(await gateway!.exited).toBe(0);
    expect(existsSync(join(dataDir, 'gateway.json'))).toBe(false);
    expect(await cli(['migrate'], env)).toMatchObject({ code: 0, stdout: `applied 0 migrations to the embedded database; it is up to date (${MIGRATIONS} of ${MIGRATIONS})\n` });
  });

  it('a gateway.json left by a process that no longer runs is ignored', async () => {
    const gone = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => gone.on('exit', resolve));
    // As a killed gateway leaves them: its lock claim and its gateway.json, naming a port nobody listens on.
    writeFileSync(join(dataDir, `linkgate.${gone.pid}.0123456789abcdef.lock`), String(gone.pid));
    writeFileSync(join(dataDir, 'gateway.json'), JSON.stringify({ pid: gone.pid, url: 'http://127.0.0.1:9' }), { mode: 0o600 });
    expect(await cli(['links', 'list', USER], env)).toEqual({ code: 0, stdout: 'this user has no links\n', stderr: '' });
    expect(await cli(['tenants', 'show', 'quizbot'], env)).toEqual(direct.get('tenants show quizbot'));
  });
});
