import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.ts';
import { ProviderLoadError, providerVariableProblems } from '../src/registry.ts';
import { createTestDatabase } from './helpers/database.ts';
import { createTestGateway, PROVIDERS_DIR } from './helpers/gateway.ts';

// Inside the repository, so a copied module resolves `linkgate/provider` like one in providers/.
const TMP_ROOT = fileURLToPath(new URL('./.tmp', import.meta.url));

let database: Database;
const dirs: string[] = [];
function providersFolder(): string {
  mkdirSync(TMP_ROOT, { recursive: true });
  const dir = mkdtempSync(join(TMP_ROOT, 'providers-'));
  dirs.push(dir);
  return dir;
}

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('provider registry', () => {
  it('lists a provider file copied into a providers folder, with no other change', async () => {
    const dir = providersFolder();
    const empty = await createTestGateway(database, { providersDir: dir, env: { OIDC_PROVIDERS: 'corp' } });
    expect(await (await empty.api('/providers')).json()).toEqual({ providers: [] });

    copyFileSync(join(PROVIDERS_DIR, 'oidc.ts'), join(dir, 'oidc.ts'));
    const gateway = await createTestGateway(database, {
      providersDir: dir,
      env: { OIDC_PROVIDERS: 'corp', CORP_ISSUER: 'https://idp.example', CORP_CLIENT_ID: 'client', CORP_DISPLAY_NAME: 'Corp SSO' },
    });
    expect(await (await gateway.api('/providers')).json()).toEqual({
      providers: [{ id: 'corp', displayName: 'Corp SSO', configured: true }],
    });
  });

  it('lists a provider whose variables are missing as unconfigured, and its routes answer 503', async () => {
    const gateway = await createTestGateway(database, { env: { OIDC_PROVIDERS: 'corp' } });
    const { providers } = (await (await gateway.api('/providers')).json()) as { providers: Array<{ id: string; configured: boolean }> };
    // Every module in providers/ is listed; none has its variables here, and
    // ATProto needs none on a loopback PUBLIC_BASE_URL (its development mode).
    expect(providers.map((p) => p.id)).toEqual(['anilist', 'atproto', 'corp', 'discord', 'jellyfin']);
    expect(providers.filter((p) => p.configured).map((p) => p.id)).toEqual(['atproto']);
    expect(providers).toContainEqual({ id: 'corp', displayName: 'corp', configured: false });
    expect(gateway.registry.get('jellyfin')!.missing).toEqual(['JELLYFIN_SERVER_URL', 'JELLYFIN_ALLOW_USER_SERVER']);
    expect(gateway.registry.get('corp')!.missing).toEqual(['CORP_ISSUER', 'CORP_CLIENT_ID']);

    const start = await gateway.app.request('/oauth/corp/start?context=x');
    expect(start.status).toBe(503);
    expect(start.headers.get('content-type')).toMatch(/text\/html/);
    expect(await start.text()).toContain('corp is not available');

    const url = await gateway.api('/link-urls', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ userId: '1', provider: 'corp' }),
    });
    expect(url.status).toBe(503);
    expect(await url.json()).toEqual({
      error: { code: 'provider_unconfigured', message: 'corp is not configured (missing CORP_ISSUER, CORP_CLIENT_ID)' },
    });
  });

  it('answers 404 for a provider that does not exist', async () => {
    const gateway = await createTestGateway(database);
    const page = await gateway.app.request('/oauth/nope/start?context=x');
    expect(page.status).toBe(404);
    expect(await page.text()).toContain('Page not found');
    const api = await gateway.api('/users/1/links/nope');
    expect(api.status).toBe(404);
    expect(await api.json()).toMatchObject({ error: { code: 'unknown_provider' } });
  });

  it('stops start-up naming the variable when one is present but invalid', async () => {
    await expect(
      createTestGateway(database, { env: { OIDC_PROVIDERS: 'corp', CORP_ISSUER: 'http://idp.example', CORP_CLIENT_ID: 'c' } }),
    ).rejects.toThrow(/^CORP_ISSUER: must be https \(plain http only on loopback\) \(provider "corp"/);
  });

  it('lists every provider variable that is present but invalid at once, and a start-up that failed on its own configuration can read them too', async () => {
    const env = { OIDC_PROVIDERS: 'corp', CORP_ISSUER: 'http://idp.example', CORP_CLIENT_ID: 'c', ANILIST_CLIENT_ID: 'app', ANILIST_CLIENT_SECRET: 's', JELLYFIN_SERVER_URL: 'jellyfin.lan' };
    const error = await createTestGateway(database, { env }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProviderLoadError);
    const expected = [
      /^ANILIST_CLIENT_ID: must be the numeric client id AniList shows \(provider "anilist", .*providers\/anilist\.ts\)$/,
      /^JELLYFIN_SERVER_URL: must be an absolute URL \(provider "jellyfin", .*providers\/jellyfin\.ts\)$/,
      /^CORP_ISSUER: must be https \(plain http only on loopback\) \(provider "corp", .*providers\/oidc\.ts\)$/,
    ];
    const problems = (error as ProviderLoadError).problems;
    expect(problems).toHaveLength(3);
    expected.forEach((pattern, i) => expect(problems[i]).toMatch(pattern));
    expect(await providerVariableProblems(PROVIDERS_DIR, env)).toEqual(problems);
  });

  it.each([
    ['syntax.ts', 'export default {', /syntax\.ts: failed to load/],
    ['shape.ts', 'export default { id: "shape", displayName: "Shape" };', /shape\.ts: the default export must be defineProvider\(\{ id, displayName, env, create \}\): env is missing; create is missing$/],
    ['named.ts', 'import * as v from "valibot"; export default { id: "other", displayName: "X", env: v.object({}), create() { return {}; } };', /named\.ts: provider id "other" must match its file name "named"/],
    ['empty.ts', 'import * as v from "valibot"; export default { id: "empty", displayName: "X", env: v.object({}), create() { return {}; } };', /empty\.ts: create\(\) returned a bad provider: begin is missing; advance is missing$/],
  ])('a module that breaks the contract stops start-up naming the file (%s)', async (file, source, message) => {
    const dir = providersFolder();
    writeFileSync(join(dir, file), source);
    const attempt = createTestGateway(database, { providersDir: dir });
    await expect(attempt).rejects.toThrow(ProviderLoadError);
    await expect(attempt).rejects.toThrow(message);
  });

  it('skips tests and private helpers in the providers folder', async () => {
    const dir = providersFolder();
    writeFileSync(join(dir, 'thing.test.ts'), 'throw new Error("must not load")');
    writeFileSync(join(dir, '_shared.ts'), 'throw new Error("must not load")');
    const gateway = await createTestGateway(database, { providersDir: dir });
    expect(gateway.registry.list()).toEqual([]);
  });
});
