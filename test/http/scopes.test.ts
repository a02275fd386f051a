/**
 * Scopes per link (issue #23): a link URL may ask for scopes on top of the
 * provider's configured ones, the provider is asked for the union, the
 * granted scopes are stored and answered, and `requireScopes` answers 409
 * with a link URL that asks for what is missing, until a relink grants it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import type { FakeDiscord } from '../fakes/discord.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { atFake, createDiscordGateway, type TestGateway } from '../helpers/gateway.ts';

const ENV = { DISCORD_CLIENT_ID: '123456789012345678', DISCORD_CLIENT_SECRET: 'discord-client-secret-0123456789' };
const DISCORD_ID = '80351110224678940';

let database: Database;
let discord: FakeDiscord;
let gateway: TestGateway;

beforeAll(async () => {
  database = await createTestDatabase();
  ({ discord, gateway } = await createDiscordGateway(database, ENV, { users: [{ id: DISCORD_ID, username: 'scoped', global_name: null }] }));
});
afterAll(async () => {
  await discord?.close();
  await database?.close();
});

/** Opens a link URL in a browser, approves at Discord; the authorize URL Discord was sent to. */
async function follow(url: string): Promise<URL> {
  const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
  const start = await browser.openLink(new URL(url).pathname + new URL(url).search);
  const authorize = new URL(start.headers.get('location')!);
  expect((await browser.get(discord.approve(atFake(authorize, discord.origin), DISCORD_ID))).status).toBe(200);
  return authorize;
}

describe('scopes per link', () => {
  it('asks for the union, stores what was granted, and requires scopes until a relink grants them', async () => {
    // A plain link: the configured `identify` only.
    const first = await follow(`http://127.0.0.1:8000/oauth/discord/start?context=${await mintContext('discord', 'scoped-user')}`);
    expect(first.searchParams.get('scope')).toBe('identify');
    expect(((await (await gateway.api('/users/scoped-user/links/discord')).json()) as { scopes: string[] }).scopes).toEqual(['identify']);

    // The bot needs `guilds`: 409 with a link URL that asks for it.
    const missing = await gateway.api('/users/scoped-user/links/discord?requireScopes=guilds,identify');
    expect(missing.status).toBe(409);
    const body = (await missing.json()) as { error: { code: string; message: string }; linkUrl: string };
    expect(body.error).toEqual({ code: 'insufficient_scope', message: 'the link lacks a scope the bot requires: guilds' });
    const context = new URL(body.linkUrl).searchParams.get('context')!;
    expect(JSON.parse(Buffer.from(context.split('.')[1]!, 'base64url').toString()).scopes).toEqual(['guilds']);

    // The relink asks Discord for the union, and then the link has it.
    const second = await follow(body.linkUrl);
    expect(second.searchParams.get('scope')).toBe('identify guilds');
    const now = await gateway.api('/users/scoped-user/links/discord?requireScopes=guilds,identify');
    expect(now.status).toBe(200);
    expect(((await now.json()) as { scopes: string[] }).scopes.sort()).toEqual(['guilds', 'identify']);
  });

  it('takes scopes on POST /link-urls, and refuses bad ones naming the field', async () => {
    const made = await gateway.api('/link-urls', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId: 'scoped-other', provider: 'discord', scopes: ['email', 'guilds'] }) });
    expect(made.status).toBe(201);
    const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
    const url = new URL(((await made.json()) as { url: string }).url);
    const start = await browser.openLink(url.pathname + url.search);
    expect(new URL(start.headers.get('location')!).searchParams.get('scope')).toBe('identify email guilds');

    for (const scopes of [['with space'], ['a', 'a'], Array.from({ length: 21 }, (_, i) => `s${i}`), 'guilds']) {
      const refused = await gateway.api('/link-urls', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId: 'scoped-other', provider: 'discord', scopes }) });
      expect(refused.status).toBe(400);
      expect(await refused.text()).toContain('scopes');
    }
    expect((await gateway.api('/users/scoped-user/links/discord?requireScopes=bad%20scope')).status).toBe(400);
  });
});
