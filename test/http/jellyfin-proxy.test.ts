/**
 * The provider API proxy for Jellyfin (issue #23): a bot calls the API of
 * the server its user linked, with the link's token in Jellyfin's
 * MediaBrowser header, for the calls JELLYFIN_PROXY_ALLOW lists. A server the
 * user typed is reached only through the guarded fetch: one on a private
 * address is refused unless JELLYFIN_ALLOW_PRIVATE_SERVERS says otherwise, and
 * nothing reaches it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { startFakeJellyfin, type FakeJellyfin } from '../fakes/jellyfin.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, type TestGateway } from '../helpers/gateway.ts';

const USER_ID = '4f6a1b2c3d4e5f60718293a4b5c6d7e8';
const DEVICE_ID = 'c0ffee00c0ffee00c0ffee00c0ffee00';
const OTHER_ID = '5b7c2d3e4f5a6b70829304b5c6d7e8f9';

let database: Database;
let jellyfin: FakeJellyfin;

beforeAll(async () => {
  database = await createTestDatabase();
  jellyfin = await startFakeJellyfin({ serverName: 'Home' });
  jellyfin.users.set(USER_ID, { id: USER_ID, name: 'Ada', password: 'tr0ub4dor&3-jellyfin' });
  jellyfin.users.set(OTHER_ID, { id: OTHER_ID, name: 'Grace', password: 'grace-password' });
});
afterAll(async () => {
  await jellyfin?.close();
  await database?.close();
});

/** A Jellyfin link of `userId` on `serverUrl`, through the import API, with a token the server issued. */
async function importLink(gateway: TestGateway, userId: string, serverUrl: string, externalId: string, jellyfinUser = USER_ID): Promise<string> {
  const accessToken = jellyfin.issueToken(jellyfinUser, DEVICE_ID);
  const line = { userId, provider: 'jellyfin', externalId, credentials: { accessToken, tokenType: 'MediaBrowser', extra: { serverUrl, deviceId: DEVICE_ID, userId: jellyfinUser } } };
  const answer = await gateway.api('/links:import', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: JSON.stringify(line) });
  expect(((await answer.json()) as { counts: { created: number } }).counts.created).toBe(1);
  return accessToken;
}

const proxy = (gateway: TestGateway, userId: string, path: string, init: RequestInit = {}) => gateway.api(`/users/${userId}/links/jellyfin/proxy/${path}`, init);

describe('the Jellyfin API proxy', () => {
  it("answers the user's server's own answer, with the link's token in the MediaBrowser header, and only for allowed calls", async () => {
    const gateway = await createTestGateway(database, { env: { JELLYFIN_SERVER_URL: jellyfin.url, JELLYFIN_PROXY_ALLOW: 'GET Users/Me' } });
    const token = await importLink(gateway, 'jf-proxy-fixed', jellyfin.url, USER_ID);
    const answer = await proxy(gateway, 'jf-proxy-fixed', 'Users/Me');
    expect(answer.status).toBe(200);
    const text = await answer.text();
    expect(JSON.parse(text)).toMatchObject({ Id: USER_ID, Name: 'Ada', ServerId: jellyfin.serverId });
    expect(text).not.toContain(token);
    expect(jellyfin.authHeaders.at(-1)).toMatchObject({ Token: token, DeviceId: DEVICE_ID, Client: 'Linkgate' });

    // Outside the allowlist: refused, and the server hears nothing.
    const requests = jellyfin.requests.length;
    const refused = await proxy(gateway, 'jf-proxy-fixed', 'Sessions/Logout', { method: 'POST' });
    expect(refused.status).toBe(403);
    expect(jellyfin.requests.length).toBe(requests);
    expect(jellyfin.isActive(token)).toBe(true);
    expect(gateway.logs.join('\n')).not.toContain(token);
  });

  it('turns a token the server no longer accepts into needs_reauth with a link URL (Jellyfin has nothing to refresh with)', async () => {
    const gateway = await createTestGateway(database, { env: { JELLYFIN_SERVER_URL: jellyfin.url, JELLYFIN_PROXY_ALLOW: 'GET Users/Me' } });
    const token = await importLink(gateway, 'jf-proxy-out', jellyfin.url, OTHER_ID, OTHER_ID);
    // Signed out elsewhere: the same device signing in again replaces the token.
    jellyfin.issueToken(OTHER_ID, DEVICE_ID);
    expect(jellyfin.isActive(token)).toBe(false);
    const answer = await proxy(gateway, 'jf-proxy-out', 'Users/Me');
    expect(answer.status).toBe(409);
    expect(await answer.json()).toMatchObject({ error: { code: 'needs_reauth' }, linkUrl: expect.stringContaining('/oauth/jellyfin/start?context=') });
  });

  it('reaches a server the user typed only through the guard: a private address is refused before any request, unless allowed', async () => {
    const typedId = `${USER_ID}@${jellyfin.url}`;
    const guarded = await createTestGateway(database, { env: { JELLYFIN_ALLOW_USER_SERVER: 'true', JELLYFIN_PROXY_ALLOW: 'GET Users/Me' } });
    await importLink(guarded, 'jf-proxy-typed', jellyfin.url, typedId);
    const requests = jellyfin.requests.length;
    const refused = await proxy(guarded, 'jf-proxy-typed', 'Users/Me');
    expect(refused.status).toBe(502);
    expect(await refused.json()).toEqual({ error: { code: 'provider_unavailable', message: 'the Jellyfin server refused: that server address is on a private network' } });
    expect(jellyfin.requests.length).toBe(requests);
    // The link is not the user's fault: it stays active.
    expect(((await (await guarded.api('/users/jf-proxy-typed/links/jellyfin')).json()) as { status: string }).status).toBe('active');

    const lan = await createTestGateway(database, { env: { JELLYFIN_ALLOW_USER_SERVER: 'true', JELLYFIN_ALLOW_PRIVATE_SERVERS: 'true', JELLYFIN_PROXY_ALLOW: 'GET Users/Me' } });
    const answer = await proxy(lan, 'jf-proxy-typed', 'Users/Me');
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ Id: USER_ID, Name: 'Ada' });
  });
});
