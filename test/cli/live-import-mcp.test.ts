/**
 * `import jellyfin-registry` and `mcp` while a real gateway runs on the
 * embedded database in the same DATA_DIR: the import goes through the
 * gateway's link import (a command cannot open that database), and `mcp`
 * without LINKGATE_URL serves that gateway with the first of LINKGATE_API_KEYS.
 * Always on PGlite: on PostgreSQL commands use the database.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, cliEnv, runCli } from '../helpers/cli.ts';
import { startGatewayProcess, type GatewayProcess } from '../helpers/process.ts';

const USER = '80351110224678912';
const JELLYFIN_USER = '4f1c2b7e9a5d4c3b8e2f1a0b9c8d7e6f';

let dataDir: string;
let env: Record<string, string>;
let gateway: GatewayProcess | undefined;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'linkgate-cli-live-'));
  env = cliEnv(dataDir, { JELLYFIN_SERVER_URL: 'https://jf.example.com' });
  // The gateway migrates the embedded database at start-up.
  gateway = await startGatewayProcess({ ...env, PORT: '0', LOG_LEVEL: 'info' }, { bare: true, embedded: true });
}, 120_000);
afterAll(async () => {
  await gateway?.cleanup();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('while the gateway runs on the embedded database', () => {
  it('`import jellyfin-registry` stores through the gateway’s link import, and again changes nothing', async () => {
    const registry = join(dataDir, 'auth.db');
    const sqlite = new DatabaseSync(registry);
    sqlite.exec('create table user_auth (discord_id integer, service text, external_user_id text, external_name text, credentials text)');
    sqlite.prepare('insert into user_auth values (?, ?, ?, ?, ?)').run(BigInt(USER), 'jellyfin', JELLYFIN_USER, 'Ada', JSON.stringify({ AccessToken: 'registry-token-live-0123456789', ServerURL: 'https://jf.example.com' }));
    sqlite.close();
    expect(await runCli(['import', 'jellyfin-registry', registry], env)).toMatchObject({ code: 0, stdout: `row 1: created (user ${USER}, Jellyfin ${JELLYFIN_USER})\n1 created, 0 updated, 0 unchanged, 0 invalid, 0 skipped\n` });
    expect((await runCli(['import', 'jellyfin-registry', registry], env)).stdout).toContain('0 created, 0 updated, 1 unchanged, 0 invalid, 0 skipped');
    // The gateway did it: its log has the import's line (and no token).
    expect(gateway!.output()).toContain('links imported');
    expect(gateway!.output()).not.toContain('registry-token-live');
  });

  it('`linkgate mcp` without LINKGATE_URL serves that gateway with the first of LINKGATE_API_KEYS', async () => {
    const client = new Client({ name: 'live', version: '1' });
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [BIN, 'mcp'], env: { PATH: process.env.PATH!, ...env }, stderr: 'pipe' }));
    const answer = (await client.callTool({ name: 'link_status', arguments: { user_id: USER, provider: 'jellyfin' } })) as { structuredContent: Record<string, unknown> };
    expect(answer.structuredContent).toMatchObject({ status: 'linked', externalId: JELLYFIN_USER, externalName: 'Ada' });
    await client.close();
  });
});
