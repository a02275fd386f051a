/**
 * The Python client (clients/python/linkgate.py) against a real listening
 * gateway: the gateway is started here with the `pin` test provider, a user
 * is linked through its pages over HTTP, and Python's own unittest runs
 * clients/python/test_linkgate.py with the URL and key (Python 3 from the
 * machine; the client needs nothing else).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { completePinLink, TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, createTestGateway, listen } from '../helpers/gateway.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/providers', import.meta.url));
/** The `token` test provider: a link made with the account `revoked` needs the user again at its first refresh. */
const API_FIXTURES = fileURLToPath(new URL('../fixtures/api-providers', import.meta.url));
const CLIENT_DIR = fileURLToPath(new URL('../../clients/python', import.meta.url));

let database: Database;
let served: Awaited<ReturnType<typeof listen>>;
/** A second gateway, on the same database, serving the `token` provider: `py-revoked`'s link there needs the user again. */
let servedTokens: Awaited<ReturnType<typeof listen>>;
let publicUrl: string;

/** A person links the pin test provider as `userId`, over real HTTP. */
async function link(userId: string): Promise<void> {
  const made = await fetch(`${served.base}/api/v1/link-urls`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ userId, provider: 'pin' }),
  });
  const { url } = (await made.json()) as { url: string };
  expect(await completePinLink(served.base, url, userId)).toEqual({ status: 'linked' });
}

function python(args: string[], env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', args, { cwd: CLIENT_DIR, env: { PATH: process.env.PATH ?? '', PYTHONDONTWRITEBYTECODE: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

beforeAll(async () => {
  database = await createTestDatabase();
  const gateway = await createTestGateway(database, { providersDir: FIXTURES });
  publicUrl = gateway.config.publicBaseUrl.origin;
  served = await listen(gateway);
  await link('py-linked');
  await link('py-unlink');

  const tokens = await createTestGateway(database, { providersDir: API_FIXTURES });
  servedTokens = await listen(tokens);
  const browser = new TestBrowser((path, init) => tokens.app.request(path, init));
  const form = await browser.openLink(`/oauth/token/start?context=${await mintContext('token', 'py-revoked')}`);
  await browser.post('/oauth/token/callback', { state: /name="state" value="([^"]+)"/.exec(await form.text())![1]!, mode: 'revoked' });
  // Its first use finds the grant revoked: the link needs the user again.
  expect((await tokens.api('/users/py-revoked/links/token/token', { method: 'POST' })).status).toBe(409);
  expect(((await (await tokens.api('/users/py-revoked/links/token')).json()) as { status: string }).status).toBe('needs_reauth');
});
afterAll(async () => {
  await servedTokens?.close();
  await served?.close();
  await database?.close();
});

describe('the Python client', () => {
  it("passes its unittest suite against a running gateway, with Python's standard library only", async () => {
    const { code, output } = await python(['-m', 'unittest', '-v', 'test_linkgate'], {
      LINKGATE_URL: served.base,
      LINKGATE_PUBLIC_URL: publicUrl,
      LINKGATE_API_KEY: API_KEY,
      LINKGATE_TEST_LINKED: 'py-linked',
      LINKGATE_TEST_UNLINK: 'py-unlink',
      LINKGATE_TEST_REAUTH_URL: servedTokens.base,
      LINKGATE_TEST_REAUTH: 'py-revoked',
    });
    expect(output).toMatch(/Ran 10 tests/);
    expect(output).toContain('test_needs_reauth_carries_the_link_url');
    expect(output).toMatch(/\nOK\n?$/);
    expect(code).toBe(0);
    // Deleted through the client: the gateway agrees.
    const gone = await fetch(`${served.base}/api/v1/users/py-unlink/links/pin`, { headers: { authorization: `Bearer ${API_KEY}` } });
    expect(gone.status).toBe(404);
  });

  it('is one file that imports nothing outside the standard library', async () => {
    const { code, output } = await python(
      ['-c', 'import ast,sys; t=ast.parse(open("linkgate.py").read()); print(sorted({(n.module if isinstance(n,ast.ImportFrom) else a.name).split(".")[0] for n in ast.walk(t) if isinstance(n,(ast.Import,ast.ImportFrom)) for a in (n.names if isinstance(n,ast.Import) else [n])} - set(sys.stdlib_module_names)))'],
      {},
    );
    expect(code).toBe(0);
    expect(output.trim()).toBe('[]');
  });
});
