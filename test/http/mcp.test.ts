/**
 * The MCP server (issue #23): an agent, through the SDK's own client, asks
 * the gateway's tools over Streamable HTTP at /mcp and over stdio through
 * `linkgate mcp` (the real command, relaying to a listening gateway): which
 * tools there are, whether a user is linked (with a link URL to hand over
 * when not), a link URL, and a call to Discord's API through the proxy's
 * allowlist. No token ever reaches the agent; a wrong or missing key is refused.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLinkStore } from '../../src/core/links.ts';
import type { Database } from '../../src/db/client.ts';
import { startFakeAniList, type FakeAniList } from '../fakes/anilist.ts';
import { startFakeDiscord, type FakeDiscord } from '../fakes/discord.ts';
import { linkAtFake, linkAtFakeDiscord, TestBrowser } from '../helpers/browser.ts';
import { BIN, ROOT, runCli } from '../helpers/cli.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, createTestGateway, listen, reroute, type TestGateway } from '../helpers/gateway.ts';

const BASE = 'http://127.0.0.1:8000';
const ENV = {
  DISCORD_CLIENT_ID: '123456789012345678',
  DISCORD_CLIENT_SECRET: 'discord-client-secret-0123456789',
  DISCORD_SCOPES: 'identify guilds',
  DISCORD_PROXY_ALLOW: 'GET users/@me',
  LINKGATE_ADMIN_KEYS: 'admin_mcp_0123456789abcdefghijklmnopqrstuvwxyz',
  ANILIST_CLIENT_ID: '12345',
  ANILIST_CLIENT_SECRET: 'anilist-client-secret-0123456789',
  ANILIST_PROXY_ALLOW: 'POST /',
};

let database: Database;
let discord: FakeDiscord;
let anilist: FakeAniList;
let gateway: TestGateway;
let server: Awaited<ReturnType<typeof listen>>;

beforeAll(async () => {
  database = await createTestDatabase();
  discord = await startFakeDiscord({ clientId: ENV.DISCORD_CLIENT_ID, clientSecret: ENV.DISCORD_CLIENT_SECRET, redirectUris: [`${BASE}/oauth/discord/callback`] });
  for (const id of ['80351110224678930', '80351110224678931']) discord.users.set(id, { id, username: `user${id.slice(-2)}`, global_name: null });
  anilist = await startFakeAniList({ clientId: ENV.ANILIST_CLIENT_ID, clientSecret: ENV.ANILIST_CLIENT_SECRET, redirectUris: [`${BASE}/oauth/anilist/callback`] });
  anilist.users.set(7002, { id: 7002, name: 'Agent Ada' });
  gateway = await createTestGateway(database, {
    env: ENV,
    fetch: reroute({ 'https://discord.com': discord.origin, 'https://anilist.co': anilist.origin, 'https://graphql.anilist.co': anilist.graphqlUrl }),
  });
  server = await listen(gateway);
  await linkDiscord('mcp-linked', '80351110224678930');
  await linkDiscord('mcp-stale', '80351110224678931');
  await linkAtFake(gateway.app, { id: 'anilist', fake: anilist }, 'mcp-linked', 7002);
  const store = createLinkStore(database.db, gateway.keyring);
  await store.setStatus((await store.get({ tenant: 'default', userId: 'mcp-stale', provider: 'discord' }))!, 'needs_reauth', new Date());
});
afterAll(async () => {
  await server?.close();
  await discord?.close();
  await anilist?.close();
  await database?.close();
});

const linkDiscord = (userId: string, discordId: string) => linkAtFakeDiscord(gateway.app, discord, userId, discordId);

async function accessTokens(): Promise<string[]> {
  const store = createLinkStore(database.db, gateway.keyring);
  const tokens: string[] = [];
  for (const [userId, provider] of [['mcp-linked', 'discord'], ['mcp-stale', 'discord'], ['mcp-linked', 'anilist']] as const) {
    const credentials = store.openCredentials((await store.get({ tenant: 'default', userId, provider }))!);
    tokens.push(...[credentials.accessToken, credentials.refreshToken].filter((token): token is string => token !== undefined));
  }
  return tokens;
}

interface ToolAnswer {
  content: Array<{ type: string; text?: string }>;
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
}

const httpClient = async (key: string | undefined) => {
  const client = new Client({ name: 'mcp-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL('/mcp', server.base), { requestInit: { headers: key === undefined ? {} : { authorization: `Bearer ${key}` } } }));
  return client;
};

/** Every tool answered the same through both transports; these are the checks, run on each. */
async function exerciseTools(client: Client) {
  const answers: ToolAnswer[] = [];
  const call = async (name: string, args: Record<string, unknown>) => {
    const result = (await client.callTool({ name, arguments: args })) as ToolAnswer;
    answers.push(result);
    // The text content is the structured content, for clients that read only text.
    expect(JSON.parse(result.content[0]!.text!)).toEqual(result.structuredContent);
    return result;
  };

  const { tools } = await client.listTools();
  expect(tools.map((tool) => tool.name)).toEqual(['link_status', 'create_link_url', 'call_provider']);
  const callProvider = tools.find((tool) => tool.name === 'call_provider')!;
  expect(callProvider.inputSchema.required).toEqual(['user_id', 'provider', 'path']);
  expect(Object.keys(callProvider.inputSchema.properties ?? {})).toEqual(['user_id', 'provider', 'method', 'path', 'query', 'body']);

  // Linked: which account, and no link URL.
  const linked = await call('link_status', { user_id: 'mcp-linked', provider: 'discord' });
  expect(linked.isError).toBeUndefined();
  expect(linked.structuredContent).toMatchObject({ status: 'linked', provider: 'discord', userId: 'mcp-linked', externalId: '80351110224678930', externalName: 'user30', scopes: ['identify', 'guilds'] });
  expect(linked.structuredContent).not.toHaveProperty('linkUrl');

  // Not linked, or needing the user again: a link URL to hand over, which starts a real link.
  const notLinked = await call('link_status', { user_id: 'mcp-nobody', provider: 'discord' });
  expect(notLinked.structuredContent).toMatchObject({ status: 'not_linked', userId: 'mcp-nobody' });
  const stale = await call('link_status', { user_id: 'mcp-stale', provider: 'discord' });
  expect(stale.structuredContent).toMatchObject({ status: 'needs_reauth', userId: 'mcp-stale' });
  for (const answer of [notLinked, stale]) {
    const url = new URL(answer.structuredContent!.linkUrl as string);
    expect(url.origin + url.pathname).toBe(`${BASE}/oauth/discord/start`);
    const opened = await new TestBrowser((path, init) => gateway.app.request(path, init)).openLink(url.pathname + url.search);
    expect(new URL(opened.headers.get('location')!).pathname).toBe('/oauth2/authorize');
  }

  const made = await call('create_link_url', { user_id: 'mcp-new', provider: 'discord', user_name: 'Ada' });
  expect(made.structuredContent).toMatchObject({ provider: 'discord', userId: 'mcp-new' });
  expect(made.structuredContent!.linkUrl).toMatch(new RegExp(`^${BASE}/oauth/discord/start\\?context=`));
  expect(Date.parse(made.structuredContent!.expiresAt as string)).toBeGreaterThan(Date.now());

  // Discord's own answer through the proxy, with the user's token the agent never sees.
  const guilds = await call('call_provider', { user_id: 'mcp-linked', provider: 'discord', path: 'users/@me/guilds' });
  expect(guilds.isError).toBeUndefined();
  expect(guilds.structuredContent).toMatchObject({ status: 200, contentType: 'application/json' });
  expect((guilds.structuredContent!.body as Array<{ name: string }>).map((guild) => guild.name)).toEqual(['Annie Mei Support', "user30's server"]);

  // A body goes upstream: an AniList GraphQL query (a JSON object) to its API root.
  const viewer = await call('call_provider', { user_id: 'mcp-linked', provider: 'anilist', method: 'POST', path: '', body: { query: 'query { Viewer { id name } }' } });
  expect(viewer.structuredContent).toEqual({ status: 200, contentType: 'application/json', body: { data: { Viewer: { id: 7002, name: 'Agent Ada' } } } });

  // Outside the allowlist: refused before any request to Discord.
  const before = { ...discord.counts };
  const refused = await call('call_provider', { user_id: 'mcp-linked', provider: 'discord', method: 'GET', path: 'guilds/613425648685547541' });
  expect(refused.isError).toBe(true);
  expect(refused.structuredContent).toEqual({ error: { code: 'proxy_not_allowed', message: 'this call is not in DISCORD_PROXY_ALLOW' } });
  expect(discord.counts).toEqual(before);

  // Not linked: the error carries the link URL to hand over.
  const unlinked = await call('call_provider', { user_id: 'mcp-nobody', provider: 'discord', path: 'users/@me' });
  expect(unlinked.isError).toBe(true);
  expect(unlinked.structuredContent).toMatchObject({ error: { code: 'not_linked' }, linkUrl: expect.stringMatching(/\/oauth\/discord\/start\?context=/) });

  // Arguments are checked (valibot), and said what is wrong with.
  const bad = await call('link_status', { provider: 'discord' });
  expect(bad).toMatchObject({ isError: true, structuredContent: { error: { code: 'bad_request', message: 'user_id is missing' } } });
  const unknown = await call('link_status', { user_id: 'mcp-linked', provider: 'nowhere' });
  expect(unknown.structuredContent).toEqual({ error: { code: 'unknown_provider', message: 'there is no provider called "nowhere"' } });
  await expect(client.callTool({ name: 'get_token', arguments: {} })).rejects.toThrow(/no tool called "get_token"/);

  // Never a token, in any answer.
  const all = JSON.stringify(answers);
  for (const token of await accessTokens()) expect(all).not.toContain(token);
}

describe('the MCP server', () => {
  it('answers tools/list and tools/call over Streamable HTTP at /mcp, for the SDK client', async () => {
    const client = await httpClient(API_KEY);
    expect(client.getServerVersion()).toMatchObject({ name: 'linkgate' });
    await exerciseTools(client);
    await client.close();
  });

  it('refuses a wrong or missing API key at /mcp (401)', async () => {
    await expect(httpClient('lg_wrong_key_0123456789')).rejects.toThrow(/unauthorized/);
    await expect(httpClient(undefined)).rejects.toThrow(/unauthorized/);
    const answer = await fetch(new URL('/mcp', server.base), { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{}' });
    expect(answer.status).toBe(401);
    expect(answer.headers.get('www-authenticate')).toBe('Bearer realm="linkgate"');
    expect(((await answer.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
  });

  it("acts for the key's tenant only: another bot's key does not see this tenant's links", async () => {
    const admin = (path: string, body?: unknown) =>
      gateway.app.request(`/api/admin/v1${path}`, { method: body === undefined ? 'POST' : path.includes('/providers/') ? 'PUT' : 'POST', headers: { authorization: `Bearer ${ENV.LINKGATE_ADMIN_KEYS}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    expect((await admin('/tenants', { id: 'quizbot', name: 'Quiz Bot' })).status).toBe(201);
    const { key } = (await (await admin('/tenants/quizbot/api-keys', { name: 'agent' })).json()) as { key: string };
    expect((await admin('/tenants/quizbot/context-secrets')).status).toBe(201);
    expect((await admin('/tenants/quizbot/providers/discord', { env: { DISCORD_CLIENT_ID: ENV.DISCORD_CLIENT_ID, DISCORD_CLIENT_SECRET: ENV.DISCORD_CLIENT_SECRET } })).status).toBe(200);
    const client = await httpClient(key);
    const status = (await client.callTool({ name: 'link_status', arguments: { user_id: 'mcp-linked', provider: 'discord' } })) as ToolAnswer;
    expect(status.structuredContent).toMatchObject({ status: 'not_linked', userId: 'mcp-linked' });
    await client.close();
  });

  it('counts /mcp requests under the API rate limit of the key', async () => {
    const limited = await createTestGateway(database, { env: { ...ENV, LINKGATE_API_RATE_LIMIT: '2', LINKGATE_API_RATE_WINDOW_SECONDS: '60' }, fetch: reroute({ 'https://discord.com': discord.origin }) });
    const post = () =>
      limited.app.request('/mcp', {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
      });
    expect((await post()).status).toBe(200);
    expect((await post()).status).toBe(200);
    const third = await post();
    expect(third.status).toBe(429);
    expect(third.headers.get('retry-after')).toMatch(/^\d+$/);
  });

  it('is stateless: GET (a server stream) is 405 and no session id is handed out', async () => {
    const get = await fetch(new URL('/mcp', server.base), { headers: { authorization: `Bearer ${API_KEY}`, accept: 'text/event-stream' } });
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    const init = await fetch(new URL('/mcp', server.base), {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'curl', version: '1' } } }),
    });
    expect(init.status).toBe(200);
    expect(init.headers.get('mcp-session-id')).toBeNull();
    expect(((await init.json()) as { result: { protocolVersion: string; capabilities: object } }).result).toMatchObject({ protocolVersion: '2025-06-18', capabilities: { tools: {} } });
  });

  it('serves the same tools on stdio through `linkgate mcp` (the real command), relaying to the gateway with the bot key', async () => {
    const transport = new StdioClientTransport({ command: process.execPath, args: [BIN, 'mcp'], cwd: ROOT, env: { PATH: process.env.PATH!, HOME: process.env.HOME!, LINKGATE_URL: server.base, LINKGATE_API_KEY: API_KEY }, stderr: 'pipe' });
    let stderr = '';
    transport.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const client = new Client({ name: 'mcp-test-stdio', version: '1.0.0' });
    await client.connect(transport);
    expect(client.getServerVersion()).toMatchObject({ name: 'linkgate' });
    await exerciseTools(client);
    await client.close();
    expect(stderr).not.toContain(API_KEY);
  });

  it('`linkgate mcp` stops before serving when the gateway refuses the key, or none is given', async () => {
    const refused = await runCli(['mcp'], { LINKGATE_URL: server.base, LINKGATE_API_KEY: 'lg_wrong_key_0123456789' }, { input: '' });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`the gateway at ${server.base} refused the API key (LINKGATE_API_KEY)`);
    expect(refused.stdout).toBe('');
    const missing = await runCli(['mcp'], { LINKGATE_URL: server.base }, { input: '' });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('set LINKGATE_API_KEY to a bot API key of the gateway at LINKGATE_URL');
    // The key would cross the network in the clear: refused before anything is sent.
    const plain = await runCli(['mcp'], { LINKGATE_URL: 'http://link.example', LINKGATE_API_KEY: API_KEY }, { input: '' });
    expect(plain.code).toBe(2);
    expect(plain.stderr).toContain('LINKGATE_URL must be https, or plain http on a loopback address');
    expect(plain.stderr).not.toContain(API_KEY);
    // The SDK client sees the server end instead of answering.
    const transport = new StdioClientTransport({ command: process.execPath, args: [BIN, 'mcp'], cwd: ROOT, env: { PATH: process.env.PATH!, LINKGATE_URL: server.base, LINKGATE_API_KEY: 'lg_wrong_key_0123456789' }, stderr: 'pipe' });
    await expect(new Client({ name: 'mcp-test-stdio', version: '1.0.0' }).connect(transport)).rejects.toThrow(/closed/i);
  });
});
