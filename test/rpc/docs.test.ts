/**
 * docs/grpc.md's "Try it against the demo" lines work as written: each is
 * run (buf curl from node_modules, and curl) against a listening gateway
 * with the demo's provider (`demo`, OpenID Connect) and its user
 * `demo-user` linked, the address swapped for the test's.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLinkStore } from '../../src/core/links.ts';
import type { Database } from '../../src/db/client.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, createTestGateway, listen } from '../helpers/gateway.ts';
import { ROOT } from '../helpers/process.ts';

const block = /<!-- sh: covered by test\/rpc\/docs\.test\.ts -->\n```sh\n([\s\S]*?)\n```/.exec(readFileSync(join(ROOT, 'docs/grpc.md'), 'utf8'))?.[1];
const lines = (block ?? '').split('\n').filter((line) => line.trim() !== '' && !line.startsWith('export '));

let database: Database;
let served: Awaited<ReturnType<typeof listen>>;
beforeAll(async () => {
  database = await createTestDatabase();
  // The demo's provider as `npm run demo` configures it (its discovery happens only when someone signs in).
  const gateway = await createTestGateway(database, {
    env: { OIDC_PROVIDERS: 'demo', DEMO_ISSUER: 'http://127.0.0.1:9', DEMO_CLIENT_ID: 'linkgate-demo', DEMO_CLIENT_SECRET: 'demo-secret', DEMO_DISPLAY_NAME: 'Demo IdP' },
  });
  await createLinkStore(database.db, gateway.keyring).store({ tenant: 'default', userId: 'demo-user', provider: 'demo' }, { id: 'ada', name: 'Ada Lovelace' }, { accessToken: 'at-demo' }, { allowShared: false, now: new Date() });
  served = await listen(gateway);
});
afterAll(async () => {
  await served?.close();
  await database?.close();
});

describe('docs/grpc.md', () => {
  it('has the lines to run', () => {
    expect(lines.filter((line) => line.includes('buf curl')).length).toBe(3);
    expect(lines.filter((line) => line.startsWith('curl ')).length).toBe(1);
  });

  it("holds every line of the README's gRPC section, so those run here too", () => {
    const readme = /<!-- sh: covered by test\/rpc\/docs\.test\.ts -->\n```sh\n([\s\S]*?)\n```/.exec(readFileSync(join(ROOT, 'README.md'), 'utf8'))?.[1];
    expect(readme).toBeDefined();
    const commands = readme!.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('#') && !line.startsWith('export '));
    expect(commands.length).toBeGreaterThan(0);
    for (const command of commands) expect(lines).toContain(command);
  });

  it.each(lines.map((line) => [line.split(' ').slice(0, 6).join(' '), line]))('%s … works against the gateway', async (_name, line) => {
    // Not spawnSync: the gateway answers from this process's event loop.
    const run = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) =>
      execFile(
        'bash',
        ['-c', line.replaceAll('http://127.0.0.1:8000', served.base)],
        { cwd: ROOT, encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH, HOME: process.env.HOME, LINKGATE_API_KEY: API_KEY, npm_config_update_notifier: 'false' } },
        (error, stdout, stderr) => resolve({ status: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }),
      ),
    );
    expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: '' });
    if (line.includes('CreateLinkUrl')) expect(JSON.parse(run.stdout)).toMatchObject({ url: expect.stringContaining('/oauth/demo/start?context=') });
    else expect(run.stdout).toMatch(/"externalId": ?"ada"/);
    if (line.includes('WaitForLink')) expect(run.stdout).toContain('"pending"');
  });
});
