/**
 * linkgate.v1.LoginService (issue #22, done-when 2–4) against the ATProto
 * network in this process (test/fakes/atproto-pds.ts), through a client we
 * did not write (@grpc/grpc-js reading proto/): InitiateLogin resolves the
 * handle and pushes the authorization request, the person signs in at the
 * PDS, and AwaitLogin streams the app's token, on this instance and, late,
 * on another one (its own connection pool and LISTEN on PostgreSQL).
 */
import { createHook } from 'node:async_hooks';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getEventListeners } from 'node:events';
import { status as GrpcStatus, type Metadata } from '@grpc/grpc-js';
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import * as v from 'valibot';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { sha256 } from '../../src/core/crypto.ts';
import { purgeExpired } from '../../src/core/purge.ts';
import { openDatabase, type Database } from '../../src/db/client.ts';
import { eq } from '../../src/db/orm.ts';
import { loginSessions } from '../../src/db/schema.ts';
import { AppsAnswer, CreatedApiKeyAnswer, CreatedAppAnswer, SigningKeyAnswer } from '../../src/http/admin.ts';
import { authorizeInBrowserless, rejectInBrowserless, startAtprotoNetwork, type AtprotoAccount, type AtprotoNetwork } from '../fakes/atproto-pds.ts';
import { startFakeJellyfin, type FakeJellyfin } from '../fakes/jellyfin.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, createTestGateway, listen, type TestGateway } from '../helpers/gateway.ts';
import { ROOT } from '../helpers/process.ts';
import { grpcClient, grpcErrorDetails, type GrpcClient } from '../helpers/rpc.ts';

const ADMIN_KEY = 'admin_login_0123456789abcdefghijklmnopqrstuv';
const PUBLIC_BASE_URL = 'http://127.0.0.1:8000';
const LEGACY_SECRET = 'seed-003-jwt-secret-0123456789abcdefghij';
const PASSWORDS = { alice: 'alice-pds-password-3141', bob: 'bob-pds-password-2718' };
const HEARTBEAT_MS = 200;

let network: AtprotoNetwork;
let alice: AtprotoAccount;
let database: Database & { url: string | undefined };
let second: Database | undefined;
let gateway: TestGateway;
let other: TestGateway;
let served: Awaited<ReturnType<typeof listen>>;
let servedOther: Awaited<ReturnType<typeof listen>>;
let login: GrpcClient;
let loginOther: GrpcClient;
const stopping = new AbortController();
/** Queries Drizzle ran on the first instance's database, while counting. */
let queries: string[] | undefined;
const apps: Record<'external' | 'user' | 'legacy' | 'corpOnly', string> = { external: '', user: '', legacy: '', corpOnly: '' };

const JELLYFIN_USER = '4f6a1b2c3d4e5f60718293a4b5c6d7e8';
const JELLYFIN_PASSWORD = 'tr0ub4dor&3-jellyfin';
let jellyfin: FakeJellyfin;

const envFor = () => ({
  PUBLIC_BASE_URL,
  LINKGATE_ADMIN_KEYS: ADMIN_KEY,
  LINKGATE_METRICS: 'true',
  JELLYFIN_SERVER_URL: jellyfin.url,
  ATPROTO_ALLOW_PRIVATE_SERVERS: 'true',
  ATPROTO_PLC_DIRECTORY_URL: network.plcUrl,
  ATPROTO_HANDLE_RESOLVER_URL: network.pdsUrl,
  // Calls are not counted here (the rate limits have tests of their own), so an idle stream's queries are its own.
  LINKGATE_API_RATE_LIMIT: '0',
});

const admin = (path: string, body?: unknown) =>
  gateway.app.request(`/api/admin/v1${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });

async function createApp(body: Record<string, unknown>): Promise<string> {
  const created = await admin('/tenants/default/apps', { name: 'Seed app', redirectUris: ['https://app.example/callback'], type: 'confidential', ...body });
  expect(created.status).toBe(201);
  return v.parse(CreatedAppAnswer, await created.json()).clientId;
}

beforeAll(async () => {
  network = await startAtprotoNetwork();
  alice = await network.createAccount({ handle: 'alice.test', email: 'alice@example.com', password: PASSWORDS.alice });
  await network.createAccount({ handle: 'bob.test', email: 'bob@example.com', password: PASSWORDS.bob });
  jellyfin = await startFakeJellyfin({ serverName: 'Home' });
  jellyfin.users.set(JELLYFIN_USER, { id: JELLYFIN_USER, name: 'Ada', password: JELLYFIN_PASSWORD });
  database = await createTestDatabase({ logQuery: (query) => queries?.push(query) });
  gateway = await createTestGateway(database, { env: envFor(), stopping: stopping.signal, rpcHeartbeatMs: HEARTBEAT_MS });
  // Another instance: its own pool and LISTEN connection on PostgreSQL; the same PGlite (one process) otherwise.
  second = database.url ? await openDatabase({ url: database.url, maxConnections: 5 }) : undefined;
  other = await createTestGateway(second ?? database, { env: envFor(), rpcHeartbeatMs: HEARTBEAT_MS });
  served = await listen(gateway);
  servedOther = await listen(other);
  login = grpcClient(served.port, API_KEY, {}, 'LoginService');
  loginOther = grpcClient(servedOther.port, API_KEY, {}, 'LoginService');
  apps.external = await createApp({ subject: 'external', providers: ['atproto'] });
  apps.user = await createApp({});
  apps.legacy = await createApp({ subject: 'external', legacyJwtSecret: LEGACY_SECRET });
  apps.corpOnly = await createApp({ providers: ['discord'] });
}, 60_000);
afterAll(async () => {
  login?.close();
  loginOther?.close();
  await served?.close();
  await servedOther?.close();
  await second?.close();
  await database?.close();
  await network?.close();
  await jellyfin?.close();
});

type Event = { event: string; completed?: { token: string }; failed?: { reason: string } };

/** An AwaitLogin stream's messages as they come, and how it ended. */
function collect(stream: ReturnType<GrpcClient['stream']>) {
  const events: Event[] = [];
  const ended = new Promise<{ code: number; details?: string; metadata?: Metadata }>((resolve) => {
    stream.on('data', (message: Event) => events.push(message));
    stream.on('error', (error: { code: number; details: string; metadata: Metadata }) => resolve(error));
    stream.on('end', () => resolve({ code: GrpcStatus.OK }));
  });
  return { events, ended };
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; !check(); i += 1) {
    if (i > 400) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function initiate(appId: string, identifier = 'alice.test', client = login) {
  const answer = await client.unary<{ oauth_url: string; session_id: string; expires_at: { seconds: number } }>('InitiateLogin', { identifier, app_id: appId });
  if (!answer.ok) throw new Error(`InitiateLogin failed: ${answer.code} ${answer.details}`);
  return answer.value;
}

/** The person signs in at the PDS and their browser comes back to the gateway's callback. */
async function signInAtPds(oauthUrl: string, as: { identifier: string; password: string } | 'deny'): Promise<Response> {
  const back = as === 'deny' ? await rejectInBrowserless(oauthUrl) : await authorizeInBrowserless(oauthUrl, as);
  expect(back.origin + back.pathname).toBe(`${PUBLIC_BASE_URL}/oauth/atproto/callback`);
  return fetch(`${served.base}${back.pathname}${back.search}`, { redirect: 'manual' });
}

const jwks = async () => createLocalJWKSet((await (await fetch(`${served.base}/oidc/jwks`)).json()) as JSONWebKeySet);

describe('an ATProto sign-in over LoginService', () => {
  it('InitiateLogin answers a PAR-backed authorize URL; AwaitLogin streams the ID token to a waiter, and to a late caller on another instance at once', async () => {
    const started = await initiate(apps.external);
    const authorize = new URL(started.oauth_url);
    expect(authorize.origin).toBe(network.pdsUrl);
    // PAR (RFC 9126): the browser carries only the client id and a request_uri, never the parameters.
    expect([...authorize.searchParams.keys()].sort()).toEqual(['client_id', 'request_uri']);
    expect(authorize.searchParams.get('request_uri')).toMatch(/^urn:ietf:params:oauth:request_uri:/);
    expect(started.session_id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(started.expires_at.seconds * 1000).toBeGreaterThan(Date.now());

    const waiting = collect(login.stream('AwaitLogin', { session_id: started.session_id }));
    await until(() => waiting.events.length > 0, 'pending');
    expect(waiting.events[0]).toEqual({ event: 'pending', pending: {} });
    await until(() => waiting.events.some((e) => e.event === 'heartbeat'), 'a heartbeat');

    const page = await signInAtPds(started.oauth_url, { identifier: 'alice.test', password: PASSWORDS.alice });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('You can close this tab and go back to the app');

    expect(await waiting.ended).toEqual({ code: GrpcStatus.OK });
    const last = waiting.events.at(-1)!;
    expect(last.event).toBe('completed');
    const token = last.completed!.token;
    expect(waiting.events.slice(1, -1).every((e) => e.event === 'heartbeat')).toBe(true);

    // The app's ID token: the tenant's key, its issuer, the app as audience; sub is the DID (subject "external").
    const { payload, protectedHeader } = await jwtVerify(token, await jwks(), { issuer: PUBLIC_BASE_URL, audience: apps.external });
    expect(protectedHeader.alg).toBe('ES256');
    expect(payload).toMatchObject({ sub: alice.did, idp: 'atproto', external_id: alice.did, name: 'alice.test' });

    // Later, on another instance: the same token at once.
    const late = Date.now();
    const again = collect(loginOther.stream('AwaitLogin', { session_id: started.session_id }));
    expect(await again.ended).toEqual({ code: GrpcStatus.OK });
    expect(again.events.map((e) => e.event)).toEqual(['pending', 'completed']);
    expect(again.events[1]!.completed!.token).toBe(token);
    expect(Date.now() - late).toBeLessThan(HEARTBEAT_MS * 5);

    // The account is the user's link, as for any sign-in; and neither the token nor the session id is in a log line or stored in the clear.
    const rows = await database.db.select().from(loginSessions);
    expect(JSON.stringify(rows)).not.toContain(token);
    expect(JSON.stringify(rows)).not.toContain(started.session_id);
    for (const logs of [gateway.logs, other.logs]) {
      expect(logs.filter((line) => line.includes(token) || line.includes(started.session_id))).toEqual([]);
      expect(logs.some((line) => line.includes('"rpc":"linkgate.v1.LoginService/AwaitLogin"') && line.includes('"status":"OK"'))).toBe(true);
    }
  });

  it('gives an app with subject "user" the Linkgate user id as sub, the same user each time', async () => {
    const tokens: string[] = [];
    for (let i = 0; i < 2; i += 1) {
      const started = await initiate(apps.user);
      const waiting = collect(login.stream('AwaitLogin', { session_id: started.session_id }));
      expect((await signInAtPds(started.oauth_url, { identifier: 'alice.test', password: PASSWORDS.alice })).status).toBe(200);
      await waiting.ended;
      tokens.push(waiting.events.at(-1)!.completed!.token);
    }
    const [first, next] = await Promise.all(tokens.map(async (token) => (await jwtVerify(token, await jwks(), { issuer: PUBLIC_BASE_URL, audience: apps.user })).payload));
    expect(first!.sub).not.toBe(alice.did);
    expect(first!.sub).toBe(next!.sub);
    expect(first).toMatchObject({ idp: 'atproto', external_id: alice.did });
    // The bot API shows that user's link.
    expect(await (await gateway.api(`/users/${first!.sub}/links/atproto`)).json()).toMatchObject({ externalId: alice.did, status: 'active' });
  });

  it('in legacy mode answers the seed\'s HS256 JWT, signed with the app\'s secret: sub is the DID, exp 24 h after iat', async () => {
    const listed = v.parse(AppsAnswer, await (await admin('/tenants/default/apps')).json());
    expect(listed.apps.find((app) => app.clientId === apps.legacy)).toMatchObject({ legacyJwt: true });
    expect(JSON.stringify(listed)).not.toContain(LEGACY_SECRET);

    const started = await initiate(apps.legacy);
    expect((await signInAtPds(started.oauth_url, { identifier: 'alice.test', password: PASSWORDS.alice })).status).toBe(200);
    // Opened after the callback: the outcome at once.
    const waiting = collect(loginOther.stream('AwaitLogin', { session_id: started.session_id }));
    expect(await waiting.ended).toEqual({ code: GrpcStatus.OK });
    const token = waiting.events.at(-1)!.completed!.token;
    const { payload, protectedHeader } = await jwtVerify(token, new TextEncoder().encode(LEGACY_SECRET), { algorithms: ['HS256'] });
    expect(protectedHeader.alg).toBe('HS256');
    expect(payload.sub).toBe(alice.did);
    expect(payload.exp! - payload.iat!).toBe(24 * 3600);
    await expect(jwtVerify(token, await jwks())).rejects.toThrow();
    expect(gateway.logs.filter((line) => line.includes(LEGACY_SECRET))).toEqual([]);
  });

  it('signs with the tenant\'s new key once a rotation makes it the signing one, as the OpenID Provider does', async () => {
    const rotated = await admin('/tenants/default/signing-keys', { publishSeconds: 0 });
    expect(rotated.status).toBe(201);
    const next = v.parse(SigningKeyAnswer, await rotated.json());
    const started = await initiate(apps.external);
    expect((await signInAtPds(started.oauth_url, { identifier: 'alice.test', password: PASSWORDS.alice })).status).toBe(200);
    const waiting = collect(login.stream('AwaitLogin', { session_id: started.session_id }));
    await waiting.ended;
    const { protectedHeader } = await jwtVerify(waiting.events.at(-1)!.completed!.token, await jwks(), { issuer: PUBLIC_BASE_URL, audience: apps.external });
    expect(protectedHeader.kid).toBe(next.kid);
  });

  it('streams failed { reason } when the person refuses at their server, and for someone else than the handle asked', async () => {
    const refused = await initiate(apps.external);
    const waiting = collect(login.stream('AwaitLogin', { session_id: refused.session_id }));
    await until(() => waiting.events.length > 0, 'pending');
    expect((await signInAtPds(refused.oauth_url, 'deny')).status).toBe(400);
    expect(await waiting.ended).toEqual({ code: GrpcStatus.OK });
    expect(waiting.events.at(-1)).toEqual({ event: 'failed', failed: { reason: 'provider_denied' } });

    const mismatch = await initiate(apps.external);
    expect((await signInAtPds(mismatch.oauth_url, { identifier: 'bob.test', password: PASSWORDS.bob })).status).toBe(400);
    const late = collect(loginOther.stream('AwaitLogin', { session_id: mismatch.session_id }));
    await late.ended;
    expect(late.events.at(-1)).toEqual({ event: 'failed', failed: { reason: 'account_mismatch' } });
  });

  it('streams failed { reason: "app_not_found" } when the app is deleted while the person signs in', async () => {
    const doomed = await createApp({ subject: 'external' });
    const started = await initiate(doomed);
    const deleted = await gateway.app.request(`/api/admin/v1/tenants/default/apps/${doomed}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    expect(deleted.status).toBe(204);
    expect((await signInAtPds(started.oauth_url, { identifier: 'alice.test', password: PASSWORDS.alice })).status).toBe(200);
    const late = collect(login.stream('AwaitLogin', { session_id: started.session_id }));
    await late.ended;
    expect(late.events.at(-1)).toEqual({ event: 'failed', failed: { reason: 'app_not_found' } });
  });

  it('streams expired when the person does not finish in time', async () => {
    const started = await initiate(apps.external);
    // The sign-in's deadline passes (as OAUTH_STATE_TTL_SECONDS would make it).
    await database.db.update(loginSessions).set({ deadline: new Date(Date.now() + 300) }).where(eq(loginSessions.sessionHash, sha256(started.session_id)));
    const waiting = collect(login.stream('AwaitLogin', { session_id: started.session_id }));
    expect(await waiting.ended).toEqual({ code: GrpcStatus.OK });
    expect(waiting.events.at(-1)).toEqual({ event: 'expired', expired: {} });
  });
});

describe('another provider over LoginService: Jellyfin, whose flow is on the gateway\'s own pages', () => {
  const startJellyfin = async () => {
    const answer = await login.unary<{ oauth_url: string; session_id: string }>('InitiateLogin', { provider: 'jellyfin', app_id: apps.user });
    if (!answer.ok) throw new Error(`InitiateLogin failed: ${answer.code} ${answer.details}`);
    const url = new URL(answer.value.oauth_url);
    // The gateway's page for the flow: no browser holds it yet, whoever opens the URL does.
    expect(url.origin + url.pathname).toBe(`${PUBLIC_BASE_URL}/oauth/jellyfin/continue`);
    const browser = new TestBrowser((path, init) => fetch(`${served.base}${path}`, { ...init, redirect: 'manual' }));
    const page = await browser.get(url);
    expect(page.status).toBe(200);
    const state = /name="state" value="([^"]+)"/.exec(await page.text())![1]!;
    return { ...answer.value, browser, state };
  };

  it('answers the flow\'s page; the password form there completes it, and AwaitLogin streams an ID token with idp jellyfin', async () => {
    const { session_id, browser, state } = await startJellyfin();
    const waiting = collect(login.stream('AwaitLogin', { session_id }));
    expect(await (await browser.post('/oauth/jellyfin/callback', { state, linkgate_action: 'password' })).text()).toContain('Sign in to Jellyfin');
    const done = await browser.post('/oauth/jellyfin/callback', { state, username: 'Ada', password: JELLYFIN_PASSWORD });
    expect(done.status).toBe(200);
    expect(await done.text()).toContain('You are signed in with Jellyfin as Ada');
    expect(await waiting.ended).toEqual({ code: GrpcStatus.OK });
    const { payload } = await jwtVerify(waiting.events.at(-1)!.completed!.token, await jwks(), { issuer: PUBLIC_BASE_URL, audience: apps.user });
    expect(payload).toMatchObject({ idp: 'jellyfin', name: 'Ada', sub: expect.stringMatching(/^usr_/) });
  });

  it('streams failed { reason: "cancelled" } when the person presses Cancel there', async () => {
    const { session_id, browser, state } = await startJellyfin();
    const waiting = collect(login.stream('AwaitLogin', { session_id }));
    await until(() => waiting.events.length > 0, 'pending');
    const cancelled = await browser.post('/oauth/jellyfin/cancel', { state }, { follow: false });
    expect(cancelled.status).toBe(303);
    expect(await waiting.ended).toEqual({ code: GrpcStatus.OK });
    expect(waiting.events.at(-1)).toEqual({ event: 'failed', failed: { reason: 'cancelled' } });
  });
});

describe('refusals: documented status codes, never INTERNAL', () => {
  const failure = (answer: { ok: boolean }) => {
    expect(answer.ok).toBe(false);
    const { code, details, metadata } = answer as unknown as { code: number; details: string; metadata: Metadata };
    expect(code).not.toBe(GrpcStatus.INTERNAL);
    expect(decodeURIComponent(details)).not.toMatch(/\n\s+at |\.ts:\d+/);
    return { code, details: decodeURIComponent(details), info: grpcErrorDetails(metadata) };
  };
  const awaitFailure = async (session_id: string, key?: string | null, client = login) => {
    const { ended, events } = collect(client.stream('AwaitLogin', { session_id }, key));
    const end = await ended;
    expect(events).toEqual([]);
    return failure({ ok: false, ...end } as never);
  };

  it.each([
    [{ identifier: 'alice.test', app_id: 'nope' }, 'app_id'],
    [{ identifier: 'alice.test', app_id: 'app_x', provider: 'Not A Provider' }, 'provider'],
    [{ identifier: 'x'.repeat(2049), app_id: 'app_x' }, 'identifier'],
  ])('InitiateLogin %j: INVALID_ARGUMENT naming %s', async (request, field) => {
    const { code, details, info } = failure(await login.unary('InitiateLogin', request));
    expect(code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(details).toMatch(new RegExp(`^${field}: `));
    expect(info.badRequest?.field_violations[0]?.field).toBe(field);
  });

  it('InitiateLogin: an identifier that leads nowhere or is missing is INVALID_ARGUMENT identifier; an unknown app, an unknown provider NOT_FOUND; a provider the app does not offer INVALID_ARGUMENT sign_in_provider', async () => {
    const nowhere = failure(await login.unary('InitiateLogin', { identifier: 'nobody.test', app_id: apps.external }));
    expect(nowhere).toMatchObject({ code: GrpcStatus.INVALID_ARGUMENT, details: expect.stringContaining('We could not find that account') });
    expect(nowhere.info.badRequest?.field_violations[0]?.field).toBe('identifier');
    expect(failure(await login.unary('InitiateLogin', { identifier: '', app_id: apps.external }))).toMatchObject({ code: GrpcStatus.INVALID_ARGUMENT, details: expect.stringMatching(/^identifier: /) });
    expect(failure(await login.unary('InitiateLogin', { identifier: 'alice.test', app_id: 'app_doesnotexist' }))).toMatchObject({ code: GrpcStatus.NOT_FOUND, info: { errorInfo: { reason: 'app_not_found' } } });
    expect(failure(await login.unary('InitiateLogin', { identifier: 'alice.test', app_id: apps.external, provider: 'nosuch' }))).toMatchObject({ code: GrpcStatus.NOT_FOUND, info: { errorInfo: { reason: 'unknown_provider' } } });
    expect(failure(await login.unary('InitiateLogin', { identifier: 'alice.test', app_id: apps.corpOnly }))).toMatchObject({ code: GrpcStatus.INVALID_ARGUMENT, info: { errorInfo: { reason: 'sign_in_provider' } } });
    // A third-party app is asked for consent on the OpenID Provider's pages, which this path has not.
    const thirdParty = await createApp({ firstParty: false });
    expect(failure(await login.unary('InitiateLogin', { identifier: 'alice.test', app_id: thirdParty }))).toMatchObject({ code: GrpcStatus.INVALID_ARGUMENT, details: expect.stringMatching(/^app_id: a third-party app/) });
    expect((await database.db.select().from(loginSessions)).filter((row) => row.clientId === thirdParty)).toEqual([]);
    // Nothing was left waiting for those.
    expect((await database.db.select().from(loginSessions)).filter((row) => row.clientId === apps.corpOnly)).toEqual([]);
  });

  it('AwaitLogin: a malformed session id is INVALID_ARGUMENT, an unknown one NOT_FOUND login_not_found', async () => {
    expect(await awaitFailure('not-a-session')).toMatchObject({ code: GrpcStatus.INVALID_ARGUMENT, details: expect.stringMatching(/^session_id: /) });
    expect(await awaitFailure('A'.repeat(43))).toMatchObject({ code: GrpcStatus.NOT_FOUND, info: { errorInfo: { reason: 'login_not_found' } } });
  });

  it('no key or a wrong key is UNAUTHENTICATED; another tenant\'s key does not see the session (NOT_FOUND) nor the app', async () => {
    const started = await initiate(apps.external);
    expect(await awaitFailure(started.session_id, null)).toMatchObject({ code: GrpcStatus.UNAUTHENTICATED, info: { errorInfo: { reason: 'unauthorized' } } });
    expect(failure(await login.unary('InitiateLogin', { identifier: 'alice.test', app_id: apps.external }, 'lg_wrong_key_0123456789'))).toMatchObject({ code: GrpcStatus.UNAUTHENTICATED });

    expect((await admin('/tenants', { id: 'otherbot', name: 'Other Bot' })).status).toBe(201);
    const otherKey = v.parse(CreatedApiKeyAnswer, await (await admin('/tenants/otherbot/api-keys', { name: 'bot' })).json()).key;
    expect(await awaitFailure(started.session_id, otherKey)).toMatchObject({ code: GrpcStatus.NOT_FOUND, info: { errorInfo: { reason: 'login_not_found' } } });
    expect(failure(await login.unary('InitiateLogin', { identifier: 'alice.test', app_id: apps.external }, otherKey))).toMatchObject({ code: GrpcStatus.NOT_FOUND, info: { errorInfo: { reason: 'app_not_found' } } });
  });
});

describe('keeping outcomes, limits and metrics', () => {
  it('keeps an outcome until the sweep, 30 minutes after InitiateLogin; then the session id is NOT_FOUND', async () => {
    const started = await initiate(apps.external);
    expect((await signInAtPds(started.oauth_url, { identifier: 'alice.test', password: PASSWORDS.alice })).status).toBe(200);
    // Other files' rows do not share this database; earlier tests' rows here are as old as this one's.
    expect(await purgeExpired(database.db, new Date(Date.now() + 29 * 60_000))).toMatchObject({ loginSessions: 0 });
    const kept = collect(login.stream('AwaitLogin', { session_id: started.session_id }));
    expect(await kept.ended).toEqual({ code: GrpcStatus.OK });
    expect(kept.events.map((e) => e.event)).toEqual(['pending', 'completed']);
    const purged = await purgeExpired(database.db, new Date(Date.now() + 31 * 60_000));
    expect(purged.loginSessions).toBeGreaterThanOrEqual(1);
    const gone = collect(login.stream('AwaitLogin', { session_id: started.session_id }));
    expect(await gone.ended).toMatchObject({ code: GrpcStatus.NOT_FOUND });
  });

  it('counts calls against the key\'s rate limit (RESOURCE_EXHAUSTED with RetryInfo) and in /metrics, as LinkService\'s', async () => {
    const key = 'lg_login_limited_key_0123456789abcdef';
    const limited = await createTestGateway(database, { env: { ...envFor(), LINKGATE_API_KEYS: key, LINKGATE_API_RATE_LIMIT: '2', LINKGATE_API_RATE_WINDOW_SECONDS: '60' } });
    const port = await listen(limited);
    const client = grpcClient(port.port, key, {}, 'LoginService');
    try {
      const codes: number[] = [];
      for (let i = 0; i < 3; i += 1) codes.push((await collect(client.stream('AwaitLogin', { session_id: 'B'.repeat(43) })).ended).code);
      expect(codes).toEqual([GrpcStatus.NOT_FOUND, GrpcStatus.NOT_FOUND, GrpcStatus.RESOURCE_EXHAUSTED]);
      const refused = await client.unary('InitiateLogin', { identifier: 'alice.test', app_id: apps.external });
      expect(refused).toMatchObject({ ok: false, code: GrpcStatus.RESOURCE_EXHAUSTED });
      expect(grpcErrorDetails((refused as { metadata: Metadata }).metadata).retryInfo?.retry_delay.seconds).toBeGreaterThanOrEqual(1);
    } finally {
      client.close();
      await port.close();
    }
    const metrics = await (await fetch(`${served.base}/metrics`, { headers: { authorization: `Bearer ${API_KEY}` } })).text();
    expect(metrics).toMatch(/^linkgate_rpc_duration_seconds_count\{rpc="linkgate\.v1\.LoginService\/InitiateLogin",status="OK"\} [1-9]/m);
    expect(metrics).toMatch(/^linkgate_rpc_duration_seconds_count\{rpc="linkgate\.v1\.LoginService\/AwaitLogin",status="NOT_FOUND"\} [1-9]/m);
  });
});

describe('docs/grpc.md, Sign-in over RPC', () => {
  const block = /<!-- sh: covered by test\/rpc\/login-service\.test\.ts -->\n```sh\n([\s\S]*?)\n```/.exec(readFileSync(join(ROOT, 'docs/grpc.md'), 'utf8'))?.[1];
  const lines = (block ?? '').split('\n').filter((line) => line.trim() !== '' && !line.startsWith('export '));
  /** One line as written, against this test's gateway and PDS (its handles end in .test). */
  const run = (line: string, env: Record<string, string>) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) =>
      // Not spawnSync: the gateway answers from this process's event loop.
      execFile(
        'bash',
        ['-c', line.replaceAll('http://127.0.0.1:8000', served.base).replaceAll('alice.bsky.social', 'alice.test')],
        { cwd: ROOT, encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH, HOME: process.env.HOME, LINKGATE_API_KEY: API_KEY, npm_config_update_notifier: 'false', ...env } },
        (error, stdout, stderr) => resolve({ status: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }),
      ),
    );

  it('InitiateLogin and AwaitLogin with buf curl, as written: the URL, then the token once the person signed in', async () => {
    expect(lines.map((line) => /LoginService\/(\w+)/.exec(line)?.[1])).toEqual(['InitiateLogin', 'AwaitLogin']);
    const initiated = await run(lines[0]!, { APP_ID: apps.external });
    expect({ status: initiated.status, stderr: initiated.stderr }).toEqual({ status: 0, stderr: '' });
    const { oauthUrl, sessionId } = JSON.parse(initiated.stdout) as { oauthUrl: string; sessionId: string };
    expect(new URL(oauthUrl).origin).toBe(network.pdsUrl);
    expect((await signInAtPds(oauthUrl, { identifier: 'alice.test', password: PASSWORDS.alice })).status).toBe(200);
    const awaited = await run(lines[1]!, { SESSION_ID: sessionId });
    expect({ status: awaited.status, stderr: awaited.stderr }).toEqual({ status: 0, stderr: '' });
    expect(awaited.stdout).toContain('"pending"');
    const token = /"token": ?"([^"]+)"/.exec(awaited.stdout)?.[1];
    expect((await jwtVerify(token!, await jwks(), { issuer: PUBLIC_BASE_URL, audience: apps.external })).payload.sub).toBe(alice.did);
  });
});

describe('waiting costs', () => {
  it('a stream whose client goes away leaves no subscription, timer or listener behind', async () => {
    const started = await initiate(apps.external);
    const live = new Set<number>();
    const hook = createHook({
      init(id, type) {
        if (type === 'Timeout' && new Error().stack?.includes('src/rpc/login-service.ts')) live.add(id);
      },
      destroy: (id) => live.delete(id),
    }).enable();
    onTestFinished(() => void hook.disable());
    const abortListeners = () => getEventListeners(stopping.signal, 'abort').length;
    const before = { waiting: gateway.logins.waiting(), listeners: abortListeners(), timers: live.size };
    const calls = Array.from({ length: 5 }, () => login.stream('AwaitLogin', { session_id: started.session_id }));
    for (const call of calls) call.on('error', () => {}).on('data', () => {});
    await until(() => gateway.logins.waiting() === before.waiting + 5, 'five waits');
    expect(abortListeners()).toBe(before.listeners + 5);
    await until(() => live.size === before.timers + 5, 'a timer for each wait');
    for (const call of calls) call.cancel();
    await until(() => gateway.logins.waiting() === before.waiting && abortListeners() === before.listeners, 'the waits to end');
    await until(() => live.size === before.timers, 'their timers to go');
  });

  it('200 idle AwaitLogin streams run no database query while they wait (heartbeats included)', async () => {
    const started = await initiate(apps.external);
    const streams = Array.from({ length: 200 }, () => collect(login.stream('AwaitLogin', { session_id: started.session_id })));
    await until(() => streams.every((s) => s.events.length > 0), 'every stream pending');
    queries = [];
    // Several heartbeats' worth of waiting.
    await new Promise((resolve) => setTimeout(resolve, HEARTBEAT_MS * 5));
    const idle = queries;
    queries = undefined;
    expect(idle).toEqual([]);
    expect(streams.every((s) => s.events.filter((e) => e.event === 'heartbeat').length >= 3)).toBe(true);
    // And they all still get the outcome (the count sees the queries that brings).
    queries = [];
    expect((await signInAtPds(started.oauth_url, { identifier: 'alice.test', password: PASSWORDS.alice })).status).toBe(200);
    const ends = await Promise.all(streams.map((s) => s.ended));
    expect(queries.length).toBeGreaterThan(0);
    queries = undefined;
    expect(ends.every((end) => end.code === GrpcStatus.OK)).toBe(true);
    const tokens = new Set(streams.map((s) => s.events.at(-1)?.completed?.token));
    expect(tokens.size).toBe(1);
    expect(decodeJwt([...tokens][0]!).sub).toBe(alice.did);
  });

  it('ends open streams with UNAVAILABLE when the gateway shuts down', async () => {
    const started = await initiate(apps.external);
    const streams = [0, 1].map(() => collect(login.stream('AwaitLogin', { session_id: started.session_id })));
    await until(() => streams.every((s) => s.events.length > 0), 'pending');
    stopping.abort();
    const ends = await Promise.all(streams.map((s) => s.ended));
    expect(ends.map((e) => e.code)).toEqual([GrpcStatus.UNAVAILABLE, GrpcStatus.UNAVAILABLE]);
    expect(gateway.logins.waiting()).toBe(0);
  });
});
