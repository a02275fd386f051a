import { and, desc, eq, gt, isNull, lt, or, sql } from '../db/orm.ts';
import * as v from 'valibot';
import type { Db } from '../db/client.ts';
import { flows, type FlowRow } from '../db/schema.ts';
import type { Flow, FormSpec, Json, WaitDisplay } from '../provider.ts';
import { randomToken, sha256, type Keyring } from './crypto.ts';

/** The step a browser is looking at, saved so it can be shown again (errors, polls, reloads). */
export type ShownStep = { kind: 'form'; form: FormSpec } | { kind: 'wait'; display: WaitDisplay; pollMs: number } | { kind: 'redirect' };

const JsonValue: v.GenericSchema<Json> = v.union([
  v.string(),
  v.number(),
  v.boolean(),
  v.null(),
  v.array(v.lazy(() => JsonValue)),
  v.record(v.string(), v.lazy(() => JsonValue)),
]);
const SealedFlowData = v.object({
  codeVerifier: v.string(),
  data: v.record(v.string(), JsonValue),
  // Absent in flows stored before a used link could be reopened.
  state: v.optional(v.string()),
  resumeUrl: v.optional(v.string()),
});

/**
 * What a flow keeps sealed: the PKCE verifier and the provider's scratch
 * data, and, so that the browser that opened the link can reopen it and land
 * where it was, the state itself and the provider URL it was sent to.
 */
export interface FlowSecrets {
  codeVerifier: string;
  data: Flow['data'];
  state?: string | undefined;
  /** The provider page the browser was sent to (a `redirect` step), to send it there again. */
  resumeUrl?: string | undefined;
}

export const flowAad = (stateHash: string) => `flow:${stateHash}`;

export interface NewFlow {
  state: string;
  codeVerifier: string;
  resumeUrl?: string | undefined;
  browserId: string;
  tenant: string;
  userId: string;
  provider: string;
  returnTo: string | undefined;
  step: ShownStep;
  data: Flow['data'];
  expiresAt: Date;
  /** The tenant's provider configuration version it began with (null: the environment's). */
  configVersion?: number | null;
  /** A sign-in flow: the OpenID Provider interaction it finishes (its `userId` is empty until then). */
  signIn?: string;
  /** A web-session sign-in flow: `returnTo` is the app's `postLoginRedirect` (its `userId` is empty until done). */
  webSession?: boolean;
  /** A web-session sign-in flow's kind of session (`account`); absent: the web-session API's. */
  sessionPurpose?: string;
}

export interface FlowStoreOptions {
  /**
   * How long one request may hold a flow while a provider answers: longer
   * than the provider can take (see `providerStepBudgetMs`), so a claim does
   * not lapse while its holder is still working.
   */
  claimMs: number;
}

function storeOn(db: Db, keyring: Keyring, options: FlowStoreOptions) {
  const held = (claimed: FlowRow) =>
    and(eq(flows.stateHash, claimed.stateHash), eq(flows.status, 'open'), claimed.claimToken === null ? sql`false` : eq(flows.claimToken, claimed.claimToken));
  async function findByHash(stateHash: string): Promise<FlowRow | undefined> {
    const [row] = await db.select().from(flows).where(eq(flows.stateHash, stateHash));
    return row;
  }
  const seal = (stateHash: string, secrets: FlowSecrets) => keyring.seal(JSON.stringify(secrets), flowAad(stateHash));

  return {
    async insert(flow: NewFlow): Promise<void> {
      const stateHash = sha256(flow.state);
      await db.insert(flows).values({
        stateHash,
        tenant: flow.tenant,
        userId: flow.userId,
        provider: flow.provider,
        browserHash: sha256(flow.browserId),
        returnTo: flow.returnTo ?? null,
        step: flow.step,
        data: seal(stateHash, { codeVerifier: flow.codeVerifier, data: flow.data, state: flow.state, resumeUrl: flow.resumeUrl }),
        expiresAt: flow.expiresAt,
        configVersion: flow.configVersion ?? null,
        signIn: flow.signIn ?? null,
        webSession: flow.webSession ?? false,
        sessionPurpose: flow.sessionPurpose ?? null,
      });
    },

    find: (state: string): Promise<FlowRow | undefined> => findByHash(sha256(state)),

    /**
     * Takes the flow for one request: atomically, only while it is open,
     * unexpired and not held by another request. `undefined` means someone
     * else has it (or it just ended).
     */
    async claim(row: FlowRow, now: Date): Promise<FlowRow | undefined> {
      const [claimed] = await db
        .update(flows)
        .set({ lockedUntil: new Date(now.getTime() + options.claimMs), claimToken: randomToken(16) })
        .where(
          and(
            eq(flows.stateHash, row.stateHash),
            eq(flows.status, 'open'),
            gt(flows.expiresAt, now),
            or(isNull(flows.lockedUntil), lt(flows.lockedUntil, now)),
          ),
        )
        .returning();
      return claimed;
    },

    open(row: FlowRow): FlowSecrets {
      if (row.data === null) throw new Error('flow has no data');
      return v.parse(SealedFlowData, JSON.parse(keyring.open(row.data, flowAad(row.stateHash))));
    },

    findByHash,

    /** Saves the next step and what the flow keeps sealed, and lets the flow go; false if `claimed` no longer holds it. */
    async release(claimed: FlowRow, secrets: FlowSecrets, step: ShownStep): Promise<boolean> {
      const saved = await db
        .update(flows)
        .set({ step, data: seal(claimed.stateHash, secrets), lockedUntil: null, claimToken: null })
        .where(held(claimed))
        .returning({ stateHash: flows.stateHash });
      return saved.length > 0;
    },

    /**
     * Records a flow that ended before it began: the user pressed Cancel on
     * the confirmation page. It has no secrets; the wait API and the webhook
     * learn of the cancellation from it.
     */
    async insertCancelled(flow: { tenant: string; userId: string; provider: string; browserId: string; now: Date; expiresAt: Date }): Promise<void> {
      await db.insert(flows).values({
        stateHash: sha256(randomToken(32)),
        tenant: flow.tenant,
        userId: flow.userId,
        provider: flow.provider,
        browserHash: sha256(flow.browserId),
        status: 'cancelled',
        createdAt: flow.now,
        endedAt: flow.now,
        expiresAt: flow.expiresAt,
      });
    },

    /** The flow this browser last completed with `provider`, while its row lives: what its result page shows. */
    async lastCompleted(browserId: string, provider: string, now: Date): Promise<FlowRow | undefined> {
      const [row] = await db
        .select()
        .from(flows)
        .where(and(eq(flows.browserHash, sha256(browserId)), eq(flows.provider, provider), eq(flows.status, 'completed'), gt(flows.expiresAt, now)))
        .orderBy(desc(flows.endedAt))
        .limit(1);
      return row;
    },

    /** Whether the user cancelled linking `provider` at or after `since` (a flow ended as `cancelled`). */
    async cancelledSince(key: { tenant: string; userId: string; provider: string }, since: Date): Promise<boolean> {
      const [row] = await db
        .select({ stateHash: flows.stateHash })
        .from(flows)
        .where(and(eq(flows.tenant, key.tenant), eq(flows.userId, key.userId), eq(flows.provider, key.provider), eq(flows.status, 'cancelled'), sql`${flows.endedAt} >= ${since.toISOString()}`))
        .limit(1);
      return row !== undefined;
    },

    /** Lets the flow go unchanged, for the next request to try again; false if `claimed` no longer holds it. */
    async unlock(claimed: FlowRow): Promise<boolean> {
      const unlocked = await db.update(flows).set({ lockedUntil: null, claimToken: null }).where(held(claimed)).returning({ stateHash: flows.stateHash });
      return unlocked.length > 0;
    },

    /**
     * Ends the flow for good; its secrets are dropped now, the row when it
     * expires. False if `claimed` no longer holds it.
     */
    async finish(claimed: FlowRow, status: 'completed' | 'failed' | 'cancelled', now: Date = new Date()): Promise<boolean> {
      const ended = await db
        .update(flows)
        .set({ status, data: null, step: null, lockedUntil: null, claimToken: null, endedAt: now })
        .where(held(claimed))
        .returning({ stateHash: flows.stateHash });
      return ended.length > 0;
    },
  };
}

/**
 * Holding a flow: a claimed row carries the holder's random `claimToken`,
 * and saving, ending or letting go of the flow applies only while that
 * token is still the flow's. A request whose claim lapsed and was taken over
 * gets `false` back and must not act on the flow any more.
 */
export function createFlowStore(db: Db, keyring: Keyring, options: FlowStoreOptions) {
  return {
    ...storeOn(db, keyring, options),
    /** The same store over another connection or a transaction. */
    using: (other: Db) => storeOn(other, keyring, options),
  };
}

export type FlowStore = ReturnType<typeof createFlowStore>;
