/**
 * LinkService for a tenant's bot (issue #19 with #22): its key names its
 * tenant over gRPC and Connect as over REST, it sees its tenant's providers
 * and links only, and metadata naming another tenant is PERMISSION_DENIED.
 */
import { status as GrpcStatus } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { API_KEY, createTestGateway, listen, type TestGateway } from '../helpers/gateway.ts';
import { connectJson, grpcClient } from '../helpers/rpc.ts';

const ADMIN_KEY = 'admin_rpc_0123456789abcdefghijklmnopqrstuv';
let database: Database;
let gateway: TestGateway;
let served: Awaited<ReturnType<typeof listen>>;
let tenantKey: string;

beforeAll(async () => {
  database = await createTestDatabase();
  gateway = await createTestGateway(database, { env: { LINKGATE_ADMIN_KEYS: ADMIN_KEY, DISCORD_CLIENT_ID: '123456789012345678', DISCORD_CLIENT_SECRET: 'discord-secret-of-the-environment' } });
  served = await listen(gateway);
  const admin = (path: string, body?: unknown) =>
    fetch(`${served.base}/api/admin/v1${path}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}) });
  expect((await admin('/tenants', { id: 'rpcbot', name: 'RPC bot' })).status).toBe(201);
  tenantKey = ((await (await admin('/tenants/rpcbot/api-keys', { name: 'bot' })).json()) as { key: string }).key;
});
afterAll(async () => {
  await served?.close();
  await database?.close();
});

describe("a tenant's bot over RPC", () => {
  it("lists its own tenant's providers, not the environment's configuration", async () => {
    const mine = await connectJson(served.base, 'ListProviders', {}, tenantKey);
    expect(mine.status).toBe(200);
    const providers = mine.json.providers as Array<{ id: string; configured?: boolean }>;
    // Discord is configured by the environment (the default tenant), not for this tenant.
    expect(providers.find((p) => p.id === 'discord')?.configured ?? false).toBe(false);
    const theirs = await connectJson(served.base, 'ListProviders', {}, API_KEY);
    expect((theirs.json.providers as Array<{ id: string; configured?: boolean }>).find((p) => p.id === 'discord')?.configured).toBe(true);
  });

  it('answers PERMISSION_DENIED when metadata names another tenant than the key, over gRPC', async () => {
    const denied = await grpcClient(served.port, tenantKey, { 'x-tenant-id': 'default' }).unary('ListProviders', {});
    expect(denied.ok).toBe(false);
    if (!denied.ok) expect(denied.code).toBe(GrpcStatus.PERMISSION_DENIED);
    const agreed = await grpcClient(served.port, tenantKey, { 'x-tenant-id': 'rpcbot' }).unary('ListProviders', {});
    expect(agreed.ok).toBe(true);
  });

  it("does not find another tenant's link for the same user id", async () => {
    const answer = await grpcClient(served.port, tenantKey).unary('GetLink', { user_id: 'someone', provider: 'discord' });
    expect(answer.ok).toBe(false);
    // Discord is not configured for this tenant: no link URL can be made (FAILED_PRECONDITION provider_unconfigured), never another tenant's link.
    if (!answer.ok) expect(answer.code).toBe(GrpcStatus.FAILED_PRECONDITION);
  });
});
