import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import { afterEach, describe, expect, it } from 'vitest';

import { parseMediaBrowserAuthorization, startFakeJellyfin, type FakeJellyfin, type StartFakeJellyfinOptions } from './jellyfin.ts';

const USER_ID = '6b0f1ac1a5a34a5c9c1f3e2d4b5a6978';
const OTHER_ID = '0c2d4e6f8a1b3c5d7e9f1a2b3c4d5e6f';
const PASSWORD = 'correct horse battery staple';
const HEX32 = /^[0-9a-f]{32}$/;
const JF_DATE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$/;

const started: FakeJellyfin[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((fake) => fake.close()));
});

async function setup(opts: StartFakeJellyfinOptions = {}) {
  const fake = await startFakeJellyfin({ serverName: 'Home', ...opts });
  started.push(fake);
  fake.users.set(USER_ID, { id: USER_ID, name: 'Ada', password: PASSWORD });
  fake.users.set(OTHER_ID, { id: OTHER_ID, name: 'Grace', password: 'grace-password' });
  return fake;
}

const newDeviceId = () => randomUUID().replaceAll('-', '');

/** The header a real client (jellyfin-sdk-typescript's getAuthorizationHeader) sends. */
function mediaBrowser(deviceId: string, token?: string, extra: { client?: string; device?: string; version?: string } = {}): string {
  const parts = [
    `Client="${encodeURIComponent(extra.client ?? 'Linkgate Tests')}"`,
    `Device="${encodeURIComponent(extra.device ?? 'Test Runner')}"`,
    `DeviceId="${deviceId}"`,
    `Version="${extra.version ?? '1.2.3'}"`,
  ];
  if (token !== undefined) parts.push(`Token="${token}"`);
  return `MediaBrowser ${parts.join(', ')}`;
}

function call(fake: FakeJellyfin, method: string, path: string, { auth, json, headers = {} }: { auth?: string; json?: unknown; headers?: Record<string, string> } = {}) {
  const all: Record<string, string> = { accept: 'application/json', ...headers };
  if (auth !== undefined) all.authorization = auth;
  if (json !== undefined) all['content-type'] = 'application/json';
  return fetch(`${fake.url}${path}`, { method, headers: all, ...(json !== undefined ? { body: JSON.stringify(json) } : {}) });
}

interface QuickConnectResult {
  Authenticated: boolean;
  Secret: string;
  Code: string;
  DeviceId: string;
  DeviceName: string;
  AppName: string;
  AppVersion: string;
  DateAdded: string;
}

interface AuthenticationResult {
  User: { Id: string; Name: string; ServerId: string };
  SessionInfo: { UserId: string; DeviceId: string; Client: string };
  AccessToken: string;
  ServerId: string;
}

async function initiate(fake: FakeJellyfin, deviceId = newDeviceId()): Promise<QuickConnectResult> {
  const res = await call(fake, 'POST', '/QuickConnect/Initiate', { auth: mediaBrowser(deviceId) });
  expect(res.status).toBe(200);
  return (await res.json()) as QuickConnectResult;
}

async function byName(fake: FakeJellyfin, deviceId: string, username = 'Ada', pw = PASSWORD): Promise<Response> {
  return call(fake, 'POST', '/Users/AuthenticateByName', { auth: mediaBrowser(deviceId), json: { Username: username, Pw: pw } });
}

async function signIn(fake: FakeJellyfin, deviceId: string, username = 'Ada', pw = PASSWORD): Promise<AuthenticationResult> {
  const res = await byName(fake, deviceId, username, pw);
  expect(res.status).toBe(200);
  return (await res.json()) as AuthenticationResult;
}

const me = (fake: FakeJellyfin, token: string, deviceId = newDeviceId()) => call(fake, 'GET', '/Users/Me', { auth: mediaBrowser(deviceId, token) });

describe('test/fakes/jellyfin', () => {
  it('serves /System/Info/Public and /QuickConnect/Enabled without auth', async () => {
    const fake = await setup();
    expect(fake.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const info = await call(fake, 'GET', '/System/Info/Public');
    expect(info.status).toBe(200);
    expect(info.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await info.json()).toEqual({
      LocalAddress: fake.url,
      ServerName: 'Home',
      Version: expect.stringMatching(/^\d+\.\d+\.\d+$/),
      ProductName: 'Jellyfin Server',
      OperatingSystem: '',
      Id: fake.serverId,
      StartupWizardCompleted: true,
    });
    expect(fake.serverId).toMatch(HEX32);

    const enabled = await call(fake, 'GET', '/QuickConnect/Enabled');
    expect(await enabled.text()).toBe('true');
    fake.quickConnectEnabled = false;
    expect(await (await call(fake, 'GET', '/quickconnect/enabled')).json()).toBe(false); // routes are case-insensitive
    expect(fake.counts).toEqual({ initiate: 0, connect: 0, authenticateQuickConnect: 0, authenticateByName: 0, me: 0, logout: 0 });
  });

  it('runs Quick Connect: initiate → approve → connect → AuthenticateWithQuickConnect → /Users/Me → Logout', async () => {
    const fake = await setup();
    const deviceId = newDeviceId();
    const started = await initiate(fake, deviceId);
    expect(started).toEqual({
      Authenticated: false,
      Secret: expect.stringMatching(/^[0-9A-F]{64}$/),
      Code: expect.stringMatching(/^[1-9]\d{5}$/),
      DeviceId: deviceId,
      DeviceName: 'Test Runner',
      AppName: 'Linkgate Tests',
      AppVersion: '1.2.3',
      DateAdded: expect.stringMatching(JF_DATE),
    });
    expect(Object.keys(started)).toEqual(['Authenticated', 'Secret', 'Code', 'DeviceId', 'DeviceName', 'AppName', 'AppVersion', 'DateAdded']);

    const poll = () => call(fake, 'GET', `/QuickConnect/Connect?secret=${started.Secret}`);
    const before = await poll();
    expect(before.status).toBe(200);
    expect(await before.json()).toEqual(started);

    // Not approved yet: the exchange answers 404 (ResourceNotFoundException), not 400/401.
    const early = await call(fake, 'POST', '/Users/AuthenticateWithQuickConnect', { json: { Secret: started.Secret } });
    expect(early.status).toBe(404);
    expect(await early.text()).toBe('Error processing request.');

    fake.approve(started.Code, USER_ID);
    const after = (await (await poll()).json()) as QuickConnectResult;
    expect(after).toMatchObject({ Authenticated: true, Secret: started.Secret, Code: started.Code });
    expect(Date.parse(after.DateAdded)).toBeGreaterThan(Date.now()); // AuthorizeRequest moves DateAdded one minute ahead

    const exchange = await call(fake, 'POST', '/Users/AuthenticateWithQuickConnect', { auth: mediaBrowser(deviceId), json: { Secret: started.Secret } });
    expect(exchange.status).toBe(200);
    const auth = (await exchange.json()) as AuthenticationResult;
    expect(auth).toMatchObject({
      User: { Id: USER_ID, Name: 'Ada', ServerId: fake.serverId },
      SessionInfo: { UserId: USER_ID, DeviceId: deviceId, Client: 'Linkgate Tests', DeviceName: 'Test Runner', ApplicationVersion: '1.2.3' },
      AccessToken: expect.stringMatching(HEX32),
      ServerId: fake.serverId,
    });
    expect(fake.isActive(auth.AccessToken)).toBe(true);
    // The secret is not consumed: a second exchange returns the same session.
    const again = (await (await call(fake, 'POST', '/Users/AuthenticateWithQuickConnect', { json: { Secret: started.Secret } })).json()) as AuthenticationResult;
    expect(again.AccessToken).toBe(auth.AccessToken);

    const user = await me(fake, auth.AccessToken, deviceId);
    expect(user.status).toBe(200);
    expect(await user.json()).toMatchObject({ Id: USER_ID, Name: 'Ada', ServerId: fake.serverId, HasPassword: true, Policy: { IsAdministrator: false } });

    const logout = await call(fake, 'POST', '/Sessions/Logout', { auth: mediaBrowser(deviceId, auth.AccessToken) });
    expect(logout.status).toBe(204);
    expect(await logout.text()).toBe('');
    expect(fake.isActive(auth.AccessToken)).toBe(false);
    const gone = await me(fake, auth.AccessToken, deviceId);
    expect(gone.status).toBe(401);
    expect(await gone.text()).toBe('');
    expect((await call(fake, 'POST', '/Sessions/Logout', { auth: mediaBrowser(deviceId, auth.AccessToken) })).status).toBe(401);

    expect(fake.counts).toEqual({ initiate: 1, connect: 2, authenticateQuickConnect: 3, authenticateByName: 0, me: 2, logout: 2 });
    expect(fake.authHeaders[0]).toEqual({ Client: 'Linkgate Tests', Device: 'Test Runner', DeviceId: deviceId, Version: '1.2.3' });
    expect(fake.authHeaders.at(-1)).toMatchObject({ DeviceId: deviceId, Token: auth.AccessToken });
  });

  it('refuses Initiate without a complete MediaBrowser header with 400', async () => {
    const fake = await setup();
    const cases: Array<string | undefined> = [
      undefined,
      'Bearer abc',
      `MediaBrowser Client="a", Device="b", Version="1"`, // no DeviceId
      `MediaBrowser Client="a", DeviceId="x", Version="1"`, // no Device
      `MediaBrowser Device="b", DeviceId="x", Version="1"`, // no Client
      `MediaBrowser Client="a", Device="b", DeviceId="x"`, // no Version
      `MediaBrowser client="a", device="b", deviceid="x", version="1"`, // keys are case-sensitive
    ];
    for (const auth of cases) {
      const res = await call(fake, 'POST', '/QuickConnect/Initiate', auth === undefined ? {} : { auth });
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    }
    // Missing header wins over "disabled": the argument checks come first.
    fake.quickConnectEnabled = false;
    expect((await call(fake, 'POST', '/QuickConnect/Initiate')).status).toBe(400);
    expect(fake.counts.initiate).toBe(cases.length + 1);
  });

  it('answers as a server with Quick Connect disabled', async () => {
    const fake = await setup({ quickConnectEnabled: false });
    const deviceId = newDeviceId();
    const res = await call(fake, 'POST', '/QuickConnect/Initiate', { auth: mediaBrowser(deviceId) });
    expect(res.status).toBe(401);
    expect(await res.json()).toBe('Quick connect is disabled');

    // A request started while enabled cannot be polled, approved or exchanged once disabled.
    fake.quickConnectEnabled = true;
    const started = await initiate(fake, deviceId);
    fake.quickConnectEnabled = false;
    const poll = await call(fake, 'GET', `/QuickConnect/Connect?secret=${started.Secret}`);
    expect(poll.status).toBe(401);
    expect(await poll.json()).toBe('Quick connect is disabled');
    expect(() => fake.approve(started.Code, USER_ID)).toThrow(/not active/);
    const exchange = await call(fake, 'POST', '/Users/AuthenticateWithQuickConnect', { json: { Secret: started.Secret } });
    expect(exchange.status).toBe(401);
    expect(await exchange.text()).toBe('Error processing request.');

    // Re-enabled: the request is still there.
    fake.quickConnectEnabled = true;
    expect((await call(fake, 'GET', `/QuickConnect/Connect?secret=${started.Secret}`)).status).toBe(200);
    expect(fake.counts).toMatchObject({ initiate: 2, connect: 2, authenticateQuickConnect: 1 });
  });

  it('answers 404 for an unknown secret and 400 without one; approve() refuses unknown codes, users and double approval', async () => {
    const fake = await setup();
    const unknown = await call(fake, 'GET', '/QuickConnect/Connect?secret=DEADBEEF');
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toBe('Unknown secret');
    const missing = await call(fake, 'GET', '/QuickConnect/Connect');
    expect(missing.status).toBe(400);
    expect(missing.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await missing.json()).toMatchObject({ status: 400, errors: { secret: expect.any(Array) } });
    const noSecret = await call(fake, 'POST', '/Users/AuthenticateWithQuickConnect', { json: {} });
    expect(noSecret.status).toBe(400);

    const started = await initiate(fake);
    expect(() => fake.approve('000000', USER_ID)).toThrow(/no pending/);
    expect(() => fake.approve(started.Code, 'ffffffffffffffffffffffffffffffff')).toThrow(/unknown user/);
    fake.approve(started.Code, USER_ID);
    expect(() => fake.approve(started.Code, USER_ID)).toThrow(/already authorized/);
  });

  it('expires Quick Connect requests (by code, and after the timeout); issued tokens survive', async () => {
    const fake = await setup();
    const pendingOne = await initiate(fake);
    fake.expireQuickConnect(pendingOne.Code);
    expect((await call(fake, 'GET', `/QuickConnect/Connect?secret=${pendingOne.Secret}`)).status).toBe(404);
    expect(() => fake.approve(pendingOne.Code, USER_ID)).toThrow(/no pending/);
    expect(() => fake.expireQuickConnect(pendingOne.Code)).toThrow();

    const approved = await initiate(fake);
    fake.approve(approved.Code, USER_ID);
    const auth = (await (await call(fake, 'POST', '/Users/AuthenticateWithQuickConnect', { json: { Secret: approved.Secret } })).json()) as AuthenticationResult;
    fake.expireQuickConnect(approved.Code);
    expect((await call(fake, 'GET', `/QuickConnect/Connect?secret=${approved.Secret}`)).status).toBe(404);
    expect((await call(fake, 'POST', '/Users/AuthenticateWithQuickConnect', { json: { Secret: approved.Secret } })).status).toBe(404);
    expect(fake.isActive(auth.AccessToken)).toBe(true);

    const short = await setup({ quickConnectTimeoutMs: 30 });
    const stale = await initiate(short);
    await sleep(60);
    expect((await call(short, 'GET', `/QuickConnect/Connect?secret=${stale.Secret}`)).status).toBe(404);
    expect(() => short.approve(stale.Code, USER_ID)).toThrow(/no pending/);
  });

  it('AuthenticateByName: right password signs in, wrong password or unknown user is 401, missing header is 400', async () => {
    const fake = await setup();
    const deviceId = newDeviceId();
    const ok = await signIn(fake, deviceId);
    expect(ok).toMatchObject({ User: { Id: USER_ID, Name: 'Ada' }, SessionInfo: { DeviceId: deviceId, UserId: USER_ID }, AccessToken: expect.stringMatching(HEX32), ServerId: fake.serverId });
    expect(Object.keys(ok)).toEqual(['User', 'SessionInfo', 'AccessToken', 'ServerId']);
    expect(fake.isActive(ok.AccessToken)).toBe(true);

    // User names match case-insensitively; body property names too (System.Text.Json web defaults).
    const lower = await call(fake, 'POST', '/Users/AuthenticateByName', { auth: mediaBrowser(newDeviceId()), json: { username: 'ada', pw: PASSWORD } });
    expect(lower.status).toBe(200);

    const wrong = await byName(fake, newDeviceId(), 'Ada', 'nope');
    expect(wrong.status).toBe(401);
    expect(await wrong.text()).toBe('Error processing request.');
    expect((await byName(fake, newDeviceId(), 'Nobody', PASSWORD)).status).toBe(401);

    const noHeader = await call(fake, 'POST', '/Users/AuthenticateByName', { json: { Username: 'Ada', Pw: PASSWORD } });
    expect(noHeader.status).toBe(400);
    const noDeviceId = await call(fake, 'POST', '/Users/AuthenticateByName', { auth: 'MediaBrowser Client="a", Device="b", Version="1"', json: { Username: 'Ada', Pw: 'nope' } });
    expect(noDeviceId.status).toBe(400); // header checks come before the password check
    const form = await fetch(`${fake.url}/Users/AuthenticateByName`, {
      method: 'POST',
      headers: { authorization: mediaBrowser(newDeviceId()), 'content-type': 'application/x-www-form-urlencoded' },
      body: 'Username=Ada&Pw=x',
    });
    expect(form.status).toBe(415);

    expect(fake.counts.authenticateByName).toBe(7);
    // Passwords are never recorded.
    expect(JSON.stringify(fake.requests)).not.toContain(PASSWORD);
    expect(fake.requests.find((r) => r.path === '/Users/AuthenticateByName')?.body).toEqual({ Username: 'Ada' });
  });

  it('same user + same DeviceId replaces the old token; a different DeviceId or user keeps both', async () => {
    const fake = await setup();
    const deviceA = newDeviceId();
    const first = await signIn(fake, deviceA);
    const second = await signIn(fake, deviceA);
    expect(second.AccessToken).not.toBe(first.AccessToken);
    expect(fake.isActive(first.AccessToken)).toBe(false);
    expect(fake.isActive(second.AccessToken)).toBe(true);
    expect((await me(fake, first.AccessToken)).status).toBe(401);

    const deviceB = newDeviceId();
    const third = await signIn(fake, deviceB);
    expect(fake.isActive(second.AccessToken)).toBe(true);
    expect(fake.isActive(third.AccessToken)).toBe(true);

    // Another user on the same DeviceId does not touch Ada's session.
    const grace = await signIn(fake, deviceA, 'Grace', 'grace-password');
    expect(fake.isActive(grace.AccessToken)).toBe(true);
    expect(fake.isActive(second.AccessToken)).toBe(true);

    // Quick Connect approval on a reused DeviceId revokes that user's token on it too (AuthenticateDirect).
    const qc = await initiate(fake, deviceB);
    fake.approve(qc.Code, USER_ID);
    expect(fake.isActive(third.AccessToken)).toBe(false);
    const fresh = await initiate(fake, newDeviceId());
    fake.approve(fresh.Code, USER_ID);
    expect(fake.isActive(second.AccessToken)).toBe(true);

    // Logout ends only the token presented.
    expect((await call(fake, 'POST', '/Sessions/Logout', { auth: mediaBrowser(deviceA, second.AccessToken) })).status).toBe(204);
    expect(fake.isActive(second.AccessToken)).toBe(false);
    expect(fake.isActive(grace.AccessToken)).toBe(true);
  });

  it('/Users/Me: 401 without or with a bad token; legacy X-Emby-Token only when enabled; ApiKey query works', async () => {
    const fake = await setup();
    const { AccessToken: token } = await signIn(fake, newDeviceId());
    expect((await call(fake, 'GET', '/Users/Me')).status).toBe(401);
    expect((await me(fake, 'ffffffffffffffffffffffffffffffff')).status).toBe(401);
    expect((await call(fake, 'GET', '/Users/Me', { auth: mediaBrowser(newDeviceId(), '') })).status).toBe(401); // Token="" = none
    expect((await call(fake, 'GET', '/Users/Me', { headers: { 'x-emby-token': token } })).status).toBe(401);
    expect((await call(fake, 'GET', '/Users/Me', { headers: { 'x-mediabrowser-token': token } })).status).toBe(401);
    expect((await call(fake, 'GET', '/Users/Me', { auth: `Emby Token="${token}"` })).status).toBe(401);
    // Unquoted Token and Token-only headers work (tests/Jellyfin.Server.Integration.Tests/AuthHelper.cs).
    expect((await call(fake, 'GET', '/Users/Me', { auth: `MediaBrowser Token=${token}` })).status).toBe(200);
    expect((await call(fake, 'GET', `/Users/Me?ApiKey=${token}`)).status).toBe(200);
    expect(fake.counts.me).toBe(8);

    const legacy = await setup({ legacyAuthorization: true });
    const { AccessToken: legacyToken } = await signIn(legacy, newDeviceId());
    expect((await call(legacy, 'GET', '/Users/Me', { headers: { 'x-emby-token': legacyToken } })).status).toBe(200);
    expect((await call(legacy, 'GET', '/Users/Me', { auth: `Emby Token="${legacyToken}"` })).status).toBe(200);

    // A deleted user's tokens stop working.
    fake.users.delete(USER_ID);
    expect(fake.isActive(token)).toBe(false);
    expect((await me(fake, token)).status).toBe(401);
  });

  it('injects faults per endpoint kind, counting the faulted requests', async () => {
    const fake = await setup();
    const deviceId = newDeviceId();

    fake.failNext('initiate', 'http500');
    const failed = await call(fake, 'POST', '/QuickConnect/Initiate', { auth: mediaBrowser(deviceId) });
    expect(failed.status).toBe(500);
    fake.failNext('initiate', 'malformed');
    const cut = await call(fake, 'POST', '/QuickConnect/Initiate', { auth: mediaBrowser(deviceId) });
    expect(cut.status).toBe(200);
    await expect(cut.json()).rejects.toThrow();
    const started = await initiate(fake, deviceId);

    fake.failNext('connect', 'http500', 2);
    expect((await call(fake, 'GET', `/QuickConnect/Connect?secret=${started.Secret}`)).status).toBe(500);
    expect((await call(fake, 'GET', `/QuickConnect/Connect?secret=${started.Secret}`)).status).toBe(500);
    expect((await call(fake, 'GET', `/QuickConnect/Connect?secret=${started.Secret}`)).status).toBe(200);

    fake.approve(started.Code, USER_ID);
    fake.failNext('authenticate', 'http500');
    expect((await call(fake, 'POST', '/Users/AuthenticateWithQuickConnect', { json: { Secret: started.Secret } })).status).toBe(500);
    fake.failNext('authenticate', 'malformed');
    const byNameCut = await byName(fake, newDeviceId());
    expect(byNameCut.status).toBe(200);
    await expect(byNameCut.json()).rejects.toThrow();
    const { AccessToken: token } = await signIn(fake, newDeviceId());

    fake.failNext('me', 'http500');
    expect((await me(fake, token)).status).toBe(500);
    fake.failNext('me', 'hang');
    const hung = me(fake, token, deviceId);
    await expect(Promise.race([hung.then(() => 'answered'), sleep(150).then(() => 'hanging')])).resolves.toBe('hanging');
    hung.catch(() => undefined); // the socket is destroyed by close()

    fake.failNext('logout', 'http500');
    expect((await call(fake, 'POST', '/Sessions/Logout', { auth: mediaBrowser(deviceId, token) })).status).toBe(500);
    expect(fake.isActive(token)).toBe(true); // a faulted logout changed nothing
    expect((await call(fake, 'POST', '/Sessions/Logout', { auth: mediaBrowser(deviceId, token) })).status).toBe(204);

    expect(fake.counts).toEqual({ initiate: 3, connect: 3, authenticateQuickConnect: 1, authenticateByName: 2, me: 2, logout: 2 });
    await fake.close();
    await expect(hung).rejects.toThrow();
  });

  it('parses MediaBrowser headers as AuthorizationContext.GetParts does', () => {
    expect(parseMediaBrowserAuthorization('MediaBrowser Client="Jellyfin.Server%20Integration%20Tests", DeviceId="69420", Device="Apple%20II", Version="10.8.0", Token=abc')).toEqual({
      Client: 'Jellyfin.Server Integration Tests',
      DeviceId: '69420',
      Device: 'Apple II',
      Version: '10.8.0',
      Token: 'abc',
    });
    expect(parseMediaBrowserAuthorization('mediabrowser Client="a, b", Device="c=d"')).toEqual({ Client: 'a, b', Device: 'c=d' });
    expect(parseMediaBrowserAuthorization('MediaBrowser Client="a+b", Token=""')).toEqual({ Client: 'a b', Token: '' });
    expect(parseMediaBrowserAuthorization('Emby Client="a"')).toBeUndefined();
    expect(parseMediaBrowserAuthorization('Emby Client="a"', { allowEmbyScheme: true })).toEqual({ Client: 'a' });
    expect(parseMediaBrowserAuthorization('Bearer abc')).toBeUndefined();
    expect(parseMediaBrowserAuthorization('MediaBrowser')).toBeUndefined();
  });
});
