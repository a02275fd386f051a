import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyring } from '../../src/core/crypto.ts';
import { createFlowStore } from '../../src/core/flows.ts';
import type { Database } from '../../src/db/client.ts';
import { createTestDatabase } from '../helpers/database.ts';

const KEYRING = createKeyring([{ kid: 'k1', key: Buffer.alloc(32, 3) }]);
const CLAIM_MS = 45_000;
const T0 = new Date('2026-11-23T10:00:00Z');
const at = (ms: number) => new Date(T0.getTime() + ms);

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(() => database.close());

async function openFlow(state: string) {
  const store = createFlowStore(database.db, KEYRING, { claimMs: CLAIM_MS });
  await store.insert({
    state,
    codeVerifier: 'verifier',
    browserId: 'browser',
    tenant: 'default',
    userId: 'flow-user',
    provider: 'corp',
    returnTo: undefined,
    step: { kind: 'redirect' },
    data: { step: 'first' },
    expiresAt: at(300_000),
  });
  return { store, row: (await store.find(state))! };
}

describe('holding a flow', () => {
  it('refuses a second claim while the first holds the flow, and allows a takeover once the claim lapsed', async () => {
    const { store, row } = await openFlow('state-busy');
    const first = await store.claim(row, T0);
    expect(first).toBeDefined();
    expect(await store.claim(row, at(CLAIM_MS - 1000))).toBeUndefined();
    const second = await store.claim(row, at(CLAIM_MS + 1000));
    expect(second).toBeDefined();
    expect(second!.claimToken).not.toBe(first!.claimToken);
  });

  it('lets a holder whose claim was taken over neither save, release, nor end the flow', async () => {
    const { store, row } = await openFlow('state-taken-over');
    const first = (await store.claim(row, T0))!;
    const second = (await store.claim(row, at(CLAIM_MS + 1000)))!;

    // The first holder comes back late: nothing it does applies.
    expect(await store.release(first, { codeVerifier: 'verifier', data: { step: 'late' } }, { kind: 'redirect' })).toBe(false);
    expect(await store.unlock(first)).toBe(false);
    expect(await store.finish(first, 'completed')).toBe(false);
    const untouched = (await store.find('state-taken-over'))!;
    expect(untouched).toMatchObject({ status: 'open', claimToken: second.claimToken, lockedUntil: second.lockedUntil });
    expect(store.open(untouched).data).toEqual({ step: 'first' });

    // The holder of the flow can.
    expect(await store.release(second, { codeVerifier: 'verifier', data: { step: 'second' } }, { kind: 'redirect' })).toBe(true);
    const released = (await store.find('state-taken-over'))!;
    expect(released).toMatchObject({ status: 'open', claimToken: null, lockedUntil: null });
    expect(store.open(released).data).toEqual({ step: 'second' });

    // And a released claim is spent: its holder cannot end the flow the next request now owns.
    const third = (await store.claim(released, at(CLAIM_MS + 2000)))!;
    expect(await store.finish(second, 'failed')).toBe(false);
    expect(await store.finish(third, 'completed')).toBe(true);
    expect((await store.find('state-taken-over'))!.status).toBe('completed');
  });
});
