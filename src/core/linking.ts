import { createHmac, timingSafeEqual } from 'node:crypto';
import * as v from 'valibot';
import { and, asc, eq, sql } from '../db/orm.ts';
import { logCause } from '../db/errors.ts';
import type { Logger } from 'pino';
import type { Db } from '../db/client.ts';
import { links as links_, usedContexts, type FlowRow } from '../db/schema.ts';
import type { Flow, FormSpec, ProviderInstance, Step, StepInput, WaitDisplay } from '../provider.ts';
import type { RegisteredProvider, Registry } from '../registry.ts';
import { DEFAULT_TENANT, UserId } from './ids.ts';
import type { ProviderDirectory } from './tenant-providers.ts';
import { checkedAccount, pollInterval } from './bounds.ts';
import { randomToken, sha256 } from './crypto.ts';
import { isLinkgateError, LinkgateError } from './errors.ts';
import type { LinkEvents } from './events.ts';
import type { FlowSecrets, FlowStore, ShownStep } from './flows.ts';
import { enqueueCancelEvent, type CancelReason } from './webhooks.ts';
import { claimedTenantOf, type LinkContext, type LinkContextOptions, type PresentedContext } from './link-context.ts';
import type { LinkStore } from './links.ts';
import type { Metrics } from './metrics.ts';

/** What the browser is shown next. */
export type Outcome =
  | { kind: 'redirect'; url: URL }
  /** `values`: what the user typed last time, for fields that are not passwords. `tenant`: whose pages these are (their branding). */
  | { kind: 'form'; tenant: string; state: string; form: FormSpec; values?: Record<string, string> }
  | { kind: 'wait'; tenant: string; state: string; display: WaitDisplay; pollMs: number }
  | { kind: 'linked'; tenant: string; provider: RegisteredProvider; accountName: string | undefined; returnTo: string | undefined }
  /** A sign-in flow found who the person is: the OpenID Provider's interaction `signIn` is finished next. */
  | { kind: 'signed_in'; tenant: string; signIn: string; userId: string; provider: RegisteredProvider }
  /** A sign-in an app started over RPC is finished (its token is stored for AwaitLogin): the person goes back to the app. */
  | { kind: 'logged_in'; tenant: string; provider: RegisteredProvider; accountName: string | undefined }
  /**
   * A web-session sign-in flow found who the person is: the HTTP layer starts
   * their cookie session (src/http/web-session.ts) and sends them to
   * `postLoginRedirect`. `credentialsExpireAt`: when the provider's access
   * token ends (epoch ms), if it said; the session ends no later. `purpose`:
   * the kind of session it was started for (`web`, or `account` for the
   * account page), which decides who starts it.
   */
  | { kind: 'web_signed_in'; tenant: string; userId: string; provider: RegisteredProvider; externalId: string; credentialsExpireAt: number | undefined; postLoginRedirect: string; purpose: string };

/** What the confirmation page shows before anything is started. */
export interface Confirmation {
  /** The tenant whose bot sent the link (its branding). */
  tenant: string;
  provider: RegisteredProvider;
  /** The bot's display name for its user, if the context carries one; never the raw user id. */
  userName: string | undefined;
  /** The anti-CSRF token the confirmation form posts back (see `confirmationToken`). */
  csrfToken: string;
}

/** Where `start` leaves the browser: at the provider, or on our page for this flow. */
export type Started = { kind: 'redirect'; url: URL } | { kind: 'linked'; returnTo: string } | { kind: 'show'; state: string };

/** Where a sign-in's start leaves the browser, with the flow's `state` either way. */
export type SignInStarted = { kind: 'redirect'; url: URL; state: string } | { kind: 'show'; state: string };

/**
 * Where `startLogin` leaves an RPC sign-in: the URL to send the person to
 * (the provider's, or our page for the flow) and until when it works; or
 * refused, the provider's form asking again (ATProto: the handle does not
 * resolve), in its words.
 */
export type LoginStarted = { kind: 'started'; url: URL; expiresAt: Date } | { kind: 'refused'; message: string };

/** What the RPC sign-ins (src/core/logins.ts) hear from their flows. */
export interface LoginOutcomes {
  /** The person signed in: `userId` found or made, the account stored as their link. */
  completed(sessionHash: string, who: { tenant: string; userId: string; provider: string; externalId: string; name: string | undefined }): Promise<void>;
  /** The flow ended without a sign-in: `reason` is the error code. */
  failed(sessionHash: string, reason: string): Promise<void>;
}

/**
 * What opening a link shows: the confirmation, or, when this browser already
 * pressed Continue on it, where its flow is (`Started`).
 */
export type Opened = { kind: 'confirm'; confirmation: Confirmation } | Reopened;

/** Where a link opened again by the browser that used it goes: as `start` would, or straight to its result. */
export type Reopened = Started | { kind: 'result'; outcome: Outcome };

export type PollAnswer =
  | { status: 'pending'; pollMs: number }
  | { status: 'linked'; returnTo?: string }
  | { status: 'failed' }
  | { status: 'cancelled' }
  | { status: 'expired' }
  /** The flow moved on to a step the page must reload to show. */
  | { status: 'continue' }
  /** A sign-in flow found who the person is: the HTTP layer finishes the interaction and sends the page there. */
  | { status: 'signed_in'; outcome: Extract<Outcome, { kind: 'signed_in' | 'web_signed_in' }> };

export interface LinkingDeps {
  db: Db;
  metrics?: Metrics;
  /** Every tenant's providers (the default tenant's: the environment's registry). */
  providers: ProviderDirectory;
  flows: FlowStore;
  links: LinkStore;
  events: LinkEvents;
  logger: Logger;
  now: () => number;
  context: Omit<LinkContextOptions, 'now'>;
  stateTtlSeconds: number;
  publicBaseUrl: URL;
  allowSharedAccounts: boolean;
  hashUserId: (tenant: string, userId: string) => string;
  /** Write webhook events (`link.cancelled`) with the flow changes. */
  webhookEvents?: boolean;
  /**
   * The provider whose account id is a sign-in's user id, per tenant
   * (LINKGATE_USER_PROVIDER, `discord` by default): a bot that knows its
   * users by that id and the app they sign in to see the same user.
   */
  userProviderOf?: (tenant: string) => string | Promise<string>;
  /** Where RPC sign-ins (LoginService) are told how their flow ended. */
  logins?: LoginOutcomes;
  /**
   * Session purposes whose sign-ins only say who the person is (the admin
   * console's): their account is not stored as a link of the tenant, and the
   * provider's tokens are dropped with the flow.
   */
  identifyOnly?: readonly string[];
}

/** A flow that signs a person in (the OpenID Provider's, the web-session API's, LoginService's): no user until `done`. */
const isSignIn = (row: FlowRow) => row.signIn !== null || row.webSession || row.loginSession !== null;

/** A user made by a sign-in with an account no user of the tenant has linked yet. */
const newUserId = () => `usr_${randomToken(16)}`;

/** Finds a provider that can run a flow: unknown → 404, not configured → 503. */
export function requireProvider(registry: Registry, id: string): RegisteredProvider & { instance: ProviderInstance } {
  const provider = registry.get(id);
  if (!provider) throw new LinkgateError('unknown_provider', `there is no provider called "${id}"`, { provider: id });
  if (!provider.instance) {
    throw new LinkgateError('provider_unconfigured', `${provider.displayName} is not set up on this gateway yet`, { provider: id });
  }
  return provider as RegisteredProvider & { instance: ProviderInstance };
}

/**
 * Errors a provider throws that are not ours become ours: a timeout is 504,
 * anything else a 502 whose cause is logged but never shown.
 */
export function asProviderError(error: unknown, provider: string): LinkgateError {
  if (isLinkgateError(error)) return error;
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
    return new LinkgateError('provider_timeout', 'the provider did not answer in time', { provider, cause: error });
  }
  return new LinkgateError('provider_unavailable', 'the provider could not be reached or answered unexpectedly', { provider, cause: error });
}

/** This request's hold on the flow lapsed and another request took it over: what it did is not saved. */
const claimLost = (provider: string) => new LinkgateError('flow_busy', 'this sign-in is already being completed', { provider });

export function createLinking(deps: LinkingDeps) {
  const { flows, links, logger } = deps;
  const callbackUrl = (provider: string) => new URL(`${deps.publicBaseUrl.href.replace(/\/$/, '')}/oauth/${provider}/callback`).href;

  async function run<T = Step>(provider: RegisteredProvider & { instance: ProviderInstance }, call: (p: ProviderInstance) => Promise<T>): Promise<T> {
    try {
      return await call(provider.instance);
    } catch (error) {
      throw asProviderError(error, provider.id);
    }
  }

  /** A tenant's provider that can start a flow: unknown → 404, not configured → 503. */
  async function tenantProvider(tenant: string, id: string): Promise<RegisteredProvider & { instance: ProviderInstance }> {
    const registry = deps.providers.of(tenant);
    return requireProvider(registry instanceof Promise ? await registry : registry, id);
  }

  /**
   * The provider a flow runs with: its tenant's, made from the configuration
   * version the flow began with (so the callback exchanges the code with the
   * client that sent the user away, even if the tenant changed its app since).
   */
  async function flowProvider(row: FlowRow): Promise<RegisteredProvider & { instance: ProviderInstance }> {
    if (row.tenant === DEFAULT_TENANT && row.configVersion === null) return requireProvider(deps.providers.defaults, row.provider);
    const instance = await deps.providers.instance(row.tenant, row.provider, row.configVersion);
    if (!instance) throw new LinkgateError('provider_unconfigured', 'this sign-in\'s provider is no longer set up', { provider: row.provider });
    return { ...(await shownProvider(row)), instance, ...(row.configVersion === null ? {} : { configVersion: row.configVersion }) };
  }

  /** The provider as a result page names it (configured or not any more). */
  async function shownProvider(row: Pick<FlowRow, 'tenant' | 'provider'>): Promise<RegisteredProvider> {
    const registry = deps.providers.of(row.tenant);
    const listed = (registry instanceof Promise ? await registry : registry).get(row.provider) ?? deps.providers.defaults.get(row.provider);
    return listed ?? { id: row.provider, displayName: row.provider, file: '', instance: undefined, missing: [], needs: [] };
  }

  /** Finds the flow for `state` and checks it belongs to this provider and this browser. */
  async function findFlow(providerId: string, state: string | undefined, browserId: string | undefined): Promise<FlowRow> {
    const row = state ? await flows.find(state) : undefined;
    if (row?.status === 'cancelled' && row.provider === providerId && browserId && sha256(browserId) === row.browserHash) {
      throw new LinkgateError('link_cancelled', 'this sign-in was cancelled', { provider: providerId });
    }
    if (!row || row.provider !== providerId || row.status !== 'open' || row.expiresAt.getTime() <= deps.now()) {
      throw new LinkgateError('flow_not_found', 'this sign-in has expired or was already used', { provider: providerId });
    }
    // An RPC sign-in belongs to no browser: its URL went to the app, which gave it to the person.
    if (row.loginSession === null && (!browserId || sha256(browserId) !== row.browserHash)) {
      throw new LinkgateError('flow_browser_mismatch', 'this sign-in was started in another browser', { provider: providerId });
    }
    return row;
  }

  /** The outcome of a flow this browser already completed, if it is one. */
  async function linkedFlow(providerId: string, state: string | undefined, browserId: string | undefined): Promise<Outcome | undefined> {
    const row = state ? await flows.find(state) : undefined;
    if (!row || row.status !== 'completed' || row.provider !== providerId || !browserId || sha256(browserId) !== row.browserHash) return undefined;
    const link = await links.get({ tenant: row.tenant, userId: row.userId, provider: providerId });
    if (!link) return undefined;
    return { kind: 'linked', tenant: row.tenant, provider: await shownProvider(row), accountName: link.externalName ?? undefined, returnTo: row.returnTo ?? undefined };
  }

  /** Moves a claimed flow to `step`: stores the link on `done`, saves anything else. */
  async function settle(
    provider: RegisteredProvider,
    row: FlowRow,
    state: string,
    flow: Flow,
    step: Step,
    previous?: FlowSecrets,
  ): Promise<Outcome> {
    if (step.kind === 'done' && isSignIn(row)) return signedIn(provider, row, step);
    if (step.kind === 'done') {
      // Before anything is written: an account outside the contract's bounds links nothing.
      const account = checkedAccount(step.account, step.credentials, provider.id);
      const key = { tenant: row.tenant, userId: row.userId, provider: provider.id };
      // The link is stored only by the request still holding the flow, in one transaction with ending it.
      await deps.db.transaction(async (tx) => {
        if (!(await flows.using(tx).finish(row, 'completed', new Date(deps.now())))) throw claimLost(provider.id);
        await links.using(tx).store(key, account, step.credentials, { allowShared: deps.allowSharedAccounts, now: new Date(deps.now()), configVersion: row.configVersion });
      });
      logger.info({ provider: provider.id, user: deps.hashUserId(row.tenant, row.userId) }, 'link stored');
      deps.metrics?.inc('linkgate_flows_completed_total', { provider: provider.id, tenant: row.tenant });
      await deps.events.publish(key);
      return { kind: 'linked', tenant: row.tenant, provider, accountName: account.name, returnTo: row.returnTo ?? undefined };
    }
    const shown: ShownStep = step.kind === 'redirect' ? { kind: 'redirect' } : step.kind === 'wait' ? { ...step, pollMs: pollInterval(step.pollMs) } : step;
    const resumeUrl = step.kind === 'redirect' ? step.url.href : previous?.resumeUrl;
    if (!(await flows.release(row, { codeVerifier: flow.codeVerifier, data: flow.data, state, resumeUrl }, shown))) throw claimLost(provider.id);
    return outcomeOf(step, state, row.tenant);
  }

  /**
   * A sign-in flow's `done`: who the person is. With the tenant's user
   * provider the account id is the user id; with another provider, the user
   * who linked that account already, or a new one. The account is stored as
   * that user's link (a relink refreshes its credentials), in the transaction
   * that ends the flow.
   */
  async function signedIn(provider: RegisteredProvider, row: FlowRow, step: Extract<Step, { kind: 'done' }>): Promise<Outcome> {
    const account = checkedAccount(step.account, step.credentials, provider.id);
    if (row.webSession && row.sessionPurpose && deps.identifyOnly?.includes(row.sessionPurpose)) return identified(provider, row, account.id, step);
    const byAccountId = provider.id === ((await deps.userProviderOf?.(row.tenant)) ?? 'discord');
    if (byAccountId && !v.is(UserId, account.id)) {
      throw new LinkgateError('provider_response_invalid', 'the provider\'s account id cannot be a user id', { provider: provider.id });
    }
    const userId = await deps.db.transaction(async (tx) => {
      // The same lock links.store takes: two first sign-ins with one account make one user.
      await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`link:${row.tenant}:${provider.id}:${account.id}`}))`);
      let user = byAccountId ? account.id : undefined;
      if (user === undefined) {
        const [linked] = await tx
          .select({ userId: links_.userId })
          .from(links_)
          .where(and(eq(links_.tenant, row.tenant), eq(links_.provider, provider.id), eq(links_.externalId, account.id)))
          .orderBy(asc(links_.linkedAt))
          .limit(1);
        user = linked?.userId ?? newUserId();
      }
      if (!(await flows.using(tx).finish(row, 'completed', new Date(deps.now())))) throw claimLost(provider.id);
      const key = { tenant: row.tenant, userId: user, provider: provider.id };
      await links.using(tx).store(key, account, step.credentials, { allowShared: deps.allowSharedAccounts, now: new Date(deps.now()), configVersion: row.configVersion, via: 'sign_in' });
      return user;
    });
    logger.info({ provider: provider.id, user: deps.hashUserId(row.tenant, userId), via: row.loginSession === null ? 'openid' : 'rpc' }, 'signed in');
    deps.metrics?.inc('linkgate_flows_completed_total', { provider: provider.id, tenant: row.tenant });
    await deps.events.publish({ tenant: row.tenant, userId, provider: provider.id });
    if (row.loginSession !== null) {
      await deps.logins?.completed(row.loginSession, { tenant: row.tenant, userId, provider: provider.id, externalId: account.id, name: account.name });
      return { kind: 'logged_in', tenant: row.tenant, provider, accountName: account.name };
    }
    if (row.webSession) {
      if (!row.returnTo) throw new LinkgateError('internal_error', 'a web-session sign-in without its postLoginRedirect', { provider: provider.id });
      return {
        kind: 'web_signed_in',
        tenant: row.tenant,
        userId,
        provider,
        externalId: account.id,
        credentialsExpireAt: step.credentials.expiresAt,
        postLoginRedirect: row.returnTo,
        purpose: row.sessionPurpose ?? 'web',
      };
    }
    return { kind: 'signed_in', tenant: row.tenant, signIn: row.signIn!, userId, provider };
  }

  /**
   * An identify-only sign-in's `done`: the flow ends and the account id is
   * handed on; no user is looked up or made, no link stored, and the
   * credentials are not kept (nor revoked: at Discord, revoking would end
   * every token of that person's authorization of the app, a bot link's too).
   */
  async function identified(provider: RegisteredProvider, row: FlowRow, externalId: string, step: Extract<Step, { kind: 'done' }>): Promise<Outcome> {
    if (!(await flows.finish(row, 'completed', new Date(deps.now())))) throw claimLost(provider.id);
    if (!row.returnTo) throw new LinkgateError('internal_error', 'a web-session sign-in without its postLoginRedirect', { provider: provider.id });
    logger.info({ provider: provider.id, purpose: row.sessionPurpose }, 'identified');
    deps.metrics?.inc('linkgate_flows_completed_total', { provider: provider.id, tenant: row.tenant });
    return { kind: 'web_signed_in', tenant: row.tenant, userId: '', provider, externalId, credentialsExpireAt: step.credentials.expiresAt, postLoginRedirect: row.returnTo, purpose: row.sessionPurpose ?? 'web' };
  }

  /** What the browser is shown for a step, fresh from the provider or read back from the flow's row. */
  function outcomeOf(step: Exclude<Step, { kind: 'done' }>, state: string, tenant: string): Outcome {
    switch (step.kind) {
      case 'redirect':
        return { kind: 'redirect', url: step.url };
      case 'form':
        return { kind: 'form', tenant, state, form: step.form };
      case 'wait':
        // The page puts it in its script: a number within bounds, whatever the row holds.
        return { kind: 'wait', tenant, state, display: step.display, pollMs: pollInterval(step.pollMs) };
    }
  }

  /** Claims the flow, runs `advance`, and ends the flow if anything fails. */
  async function advance(providerId: string, state: string, browserId: string | undefined, input: StepInput, row: FlowRow): Promise<Outcome> {
    const provider = await flowProvider(row);
    const claimed = await flows.claim(row, new Date(deps.now()));
    if (!claimed) throw new LinkgateError('flow_busy', 'this sign-in is already being completed', { provider: providerId });
    let flow: Flow;
    try {
      const secrets = flows.open(claimed);
      flow = { state, codeVerifier: secrets.codeVerifier, redirectUri: callbackUrl(providerId), expiresAt: claimed.expiresAt.getTime(), data: secrets.data };
      const step = await run(provider, (p) => p.advance(flow, input));
      return await settle(provider, claimed, state, flow, step, secrets);
    } catch (error) {
      // While the user waits on a code, a provider hiccup is not the end: the next poll tries again.
      const transient = isLinkgateError(error) && (error.code === 'provider_unavailable' || error.code === 'provider_timeout');
      if (input.kind === 'poll' && transient) await flows.unlock(claimed);
      else if (isLinkgateError(error, 'provider_denied') && isSignIn(claimed)) {
        // No bot is waiting on a sign-in: the flow just ends (an app waiting over RPC hears why).
        await flows.finish(claimed, 'cancelled', new Date(deps.now()));
        if (claimed.loginSession !== null) await deps.logins?.failed(claimed.loginSession, 'provider_denied');
      } else if (isLinkgateError(error, 'provider_denied')) {
        // Refusing access at the provider is the user's Cancel too: the bot hears of it.
        await endCancelled(claimed, 'provider_denied');
      } else {
        await flows.finish(claimed, 'failed', new Date(deps.now()));
        deps.metrics?.inc('linkgate_flows_failed_total', { provider: providerId, tenant: claimed.tenant, reason: isLinkgateError(error) ? error.code : 'internal_error' });
        if (claimed.loginSession !== null) await deps.logins?.failed(claimed.loginSession, isLinkgateError(error) ? error.code : 'internal_error');
      }
      throw error;
    }
  }

  /**
   * Ends a flow as cancelled, with its `link.cancelled` event in the same
   * transaction, and wakes the bot's waits. False if the flow was no longer
   * this request's to end.
   */
  async function endCancelled(claimed: FlowRow, reason: CancelReason): Promise<boolean> {
    const now = new Date(deps.now());
    const ended = await deps.db.transaction(async (tx) => {
      if (!(await flows.using(tx).finish(claimed, 'cancelled', now))) return false;
      await enqueueCancelEvent(tx, { tenant: claimed.tenant, userId: claimed.userId, provider: claimed.provider, reason }, now, deps.webhookEvents ?? false);
      return true;
    });
    if (ended) await announceCancel({ tenant: claimed.tenant, userId: claimed.userId, provider: claimed.provider }, reason);
    return ended;
  }

  async function announceCancel(key: { tenant: string; userId: string; provider: string }, reason: CancelReason): Promise<void> {
    logger.info({ provider: key.provider, user: deps.hashUserId(key.tenant, key.userId), reason }, 'linking cancelled');
    deps.metrics?.inc('linkgate_flows_cancelled_total', { provider: key.provider, tenant: key.tenant, reason });
    await deps.events.publish(key);
  }

  // A key of its own for confirmation tokens, derived so it never doubles as the context signing key.
  const confirmationKey = createHmac('sha256', deps.context.secret).update('linkgate start confirmation v1').digest();

  /**
   * The token the confirmation form carries: an HMAC over the context's
   * `jti` and this browser's cookie (OWASP's signed double-submit). Another
   * browser, or a page that never saw our form, cannot produce it.
   */
  function confirmationToken(context: LinkContext, browserId: string): string {
    return createHmac('sha256', confirmationKey).update(`${context.tenant}\0${context.provider}\0${context.jti}\0${browserId}`).digest('base64url');
  }

  function sameToken(presented: string, expected: string): boolean {
    const a = Buffer.from(presented);
    const b = Buffer.from(expected);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  async function verifiedContext(providerId: string, presented: PresentedContext): Promise<LinkContext> {
    return presented.format.verify(presented.token, providerId, { ...deps.context, now: deps.now });
  }

  /**
   * The verified context and its tenant's provider. A link for the default
   * tenant finds its provider first (an unknown one is 404, an unconfigured
   * one 503, whatever the context), as before tenants; another tenant's
   * providers are only looked at once the context proved it is that tenant's.
   */
  async function contextAndProvider(providerId: string, presented: PresentedContext): Promise<{ context: LinkContext; provider: RegisteredProvider & { instance: ProviderInstance } }> {
    if (claimedTenantOf(presented) === DEFAULT_TENANT) requireProvider(deps.providers.defaults, providerId);
    const context = await verifiedContext(providerId, presented);
    return { context, provider: await tenantProvider(context.tenant, providerId) };
  }

  const usedByOthers = (providerId: string) =>
    new LinkgateError('context_replayed', 'this link was already used', { provider: providerId });

  /**
   * A link whose context is spent, opened again. The browser that pressed
   * Continue on it goes back to its flow: to the provider page it was sent
   * to, to the flow's own page, or to the result once linked. Anyone else,
   * and that browser once its flow failed or expired, is told the link was
   * used (`context_replayed`: "your account may already be linked").
   */
  async function reopen(providerId: string, context: LinkContext, browserId: string): Promise<Reopened> {
    const [used] = await deps.db
      .select({ browserHash: usedContexts.browserHash, stateHash: usedContexts.stateHash })
      .from(usedContexts)
      .where(and(eq(usedContexts.tenant, context.tenant), eq(usedContexts.jti, context.jti)));
    if (!used?.browserHash || sha256(browserId) !== used.browserHash) throw usedByOthers(providerId);
    // Spent by this browser's Cancel: no flow was ever opened.
    if (!used.stateHash) throw new LinkgateError('link_cancelled', 'this link was cancelled', { provider: providerId });
    const row = await flows.findByHash(used.stateHash);
    if (!row || row.provider !== providerId || row.browserHash !== used.browserHash) throw usedByOthers(providerId);
    if (row.status === 'completed') {
      const link = await links.get({ tenant: row.tenant, userId: row.userId, provider: providerId });
      if (!link) throw usedByOthers(providerId);
      if (row.returnTo) return { kind: 'linked', returnTo: row.returnTo };
      return { kind: 'result', outcome: { kind: 'linked', tenant: row.tenant, provider: await shownProvider(row), accountName: link.externalName ?? undefined, returnTo: undefined } };
    }
    if (row.status !== 'open' || row.expiresAt.getTime() <= deps.now() || row.data === null) throw usedByOthers(providerId);
    const secrets = flows.open(row);
    if (!secrets.state) throw usedByOthers(providerId); // a flow stored before reopening existed
    const shown = row.step as ShownStep | null;
    if (shown?.kind === 'form' || shown?.kind === 'wait') return { kind: 'show', state: secrets.state };
    if (!secrets.resumeUrl) throw usedByOthers(providerId);
    return { kind: 'redirect', url: new URL(secrets.resumeUrl) };
  }

  /** Opens a sign-in flow (for no user yet) in this browser and runs `begin`; `signedIn` decides who it is. */
  async function openSignIn(
    tenant: string,
    providerId: string,
    browserId: string,
    ends: { signIn: string } | { webSession: true; returnTo: string; purpose: string | undefined },
    loginHint?: string,
  ): Promise<SignInStarted> {
    const provider = await tenantProvider(tenant, providerId);
    const state = randomToken(32);
    const flow: Flow = { state, codeVerifier: randomToken(32), redirectUri: callbackUrl(providerId), expiresAt: deps.now() + deps.stateTtlSeconds * 1000, ...(loginHint ? { loginHint } : {}), data: {} };
    const step = await run(provider, (p) => p.begin(flow));
    if (step.kind === 'done') throw new LinkgateError('provider_unavailable', 'this provider cannot sign people in', { provider: providerId });
    await flows.insert({
      state,
      codeVerifier: flow.codeVerifier,
      browserId,
      tenant,
      userId: '',
      provider: providerId,
      returnTo: 'returnTo' in ends ? ends.returnTo : undefined,
      data: flow.data,
      expiresAt: new Date(flow.expiresAt),
      configVersion: provider.configVersion ?? null,
      ...('signIn' in ends ? { signIn: ends.signIn } : { webSession: true, ...(ends.purpose ? { sessionPurpose: ends.purpose } : {}) }),
      ...(step.kind === 'redirect' ? { resumeUrl: step.url.href } : {}),
      step: step.kind === 'redirect' ? { kind: 'redirect' } : step,
    });
    logger.info({ provider: providerId, step: step.kind, signIn: true }, 'flow started');
    deps.metrics?.inc('linkgate_flows_started_total', { provider: providerId, tenant });
    return step.kind === 'redirect' ? { kind: 'redirect', url: step.url, state } : { kind: 'show', state };
  }

  return {
    /**
     * `GET /oauth/:provider/start`: verifies the context and says what the
     * confirmation page shows. Safe and repeatable: nothing is spent, no flow
     * is opened and the provider is not contacted, so a link preview, a
     * reload or a stranger's link cannot start anything on its own.
     */
    async confirmation(providerId: string, presented: PresentedContext, browserId: string): Promise<Opened> {
      const { context, provider } = await contextAndProvider(providerId, presented);
      const [spent] = await deps.db
        .select({ jti: usedContexts.jti })
        .from(usedContexts)
        .where(and(eq(usedContexts.tenant, context.tenant), eq(usedContexts.jti, context.jti)));
      if (spent) return reopen(providerId, context, browserId);
      return { kind: 'confirm', confirmation: { tenant: context.tenant, provider, userName: context.userName, csrfToken: confirmationToken(context, browserId) } };
    },

    /**
     * `POST /oauth/:provider/start`, the confirmation form: checks its token
     * against this browser, spends the context's `jti` (one winner; the
     * browser that spent it pressing again goes back to its flow), opens a
     * flow and runs `begin`.
     */
    async start(providerId: string, presented: PresentedContext, browserId: string, csrfToken: string): Promise<Reopened> {
      const { context, provider } = await contextAndProvider(providerId, presented);
      // Before the jti is spent: a forged POST must not use up the user's link.
      if (!sameToken(csrfToken, confirmationToken(context, browserId))) {
        throw new LinkgateError('csrf_failed', 'the confirmation did not come from this browser', { provider: providerId });
      }
      const state = randomToken(32);
      const usedKey = and(eq(usedContexts.tenant, context.tenant), eq(usedContexts.jti, context.jti), eq(usedContexts.stateHash, sha256(state)));
      const spent = await deps.db
        .insert(usedContexts)
        // Remembered as long as the context verifies (skew included): a purge before then would let it be replayed.
        .values({ tenant: context.tenant, jti: context.jti, expiresAt: context.acceptedUntil, browserHash: sha256(browserId), stateHash: sha256(state) })
        .onConflictDoNothing()
        .returning({ jti: usedContexts.jti });
      if (spent.length === 0) return reopen(providerId, context, browserId);

      const flow: Flow = {
        state,
        codeVerifier: randomToken(32),
        redirectUri: callbackUrl(providerId),
        expiresAt: deps.now() + deps.stateTtlSeconds * 1000,
        ...(context.scopes.length > 0 ? { scopes: context.scopes } : {}),
        data: {},
      };
      let step: Step;
      try {
        step = await run(provider, (p) => p.begin(flow));
      } catch (error) {
        // Nothing was opened: the link stays usable, so the user can press Continue again once the provider answers.
        await deps.db
          .delete(usedContexts)
          .where(usedKey)
          .catch((cause: unknown) => logger.warn({ provider: providerId, cause: logCause(cause) }, 'could not make the link usable again'));
        throw error;
      }
      const now = deps.now();
      const record = {
        state,
        codeVerifier: flow.codeVerifier,
        browserId,
        tenant: context.tenant,
        userId: context.userId,
        provider: providerId,
        returnTo: context.returnTo,
        data: flow.data,
        expiresAt: new Date(flow.expiresAt),
        configVersion: provider.configVersion ?? null,
      };
      logger.info({ provider: providerId, user: deps.hashUserId(context.tenant, context.userId), step: step.kind, format: presented.format.id }, 'flow started');
      deps.metrics?.inc('linkgate_flows_started_total', { provider: providerId, tenant: context.tenant });
      if (step.kind === 'done') {
        // A provider that needs no interaction: record the flow only to store the link through it.
        await flows.insert({ ...record, step: { kind: 'redirect' } });
        const row = await flows.find(state);
        const claimed = row && (await flows.claim(row, new Date(now)));
        if (!claimed) throw new LinkgateError('flow_busy', 'this sign-in is already being completed', { provider: providerId });
        const linked = await settle(provider, claimed, state, flow, step);
        return linked.kind === 'linked' && linked.returnTo ? { kind: 'linked', returnTo: linked.returnTo } : { kind: 'show', state };
      }
      await flows.insert({ ...record, ...(step.kind === 'redirect' ? { resumeUrl: step.url.href } : {}), step: step.kind === 'redirect' ? { kind: 'redirect' } : step });
      return step.kind === 'redirect' ? { kind: 'redirect', url: step.url } : { kind: 'show', state };
    },

    /**
     * A sign-in (the OpenID Provider's login interaction `signIn`): opens a
     * flow for no user yet, in this browser, and runs `begin`. Who the person
     * is is decided when the provider says `done` (`signedIn`). The caller
     * has checked that this browser holds the interaction.
     */
    startSignIn: (tenant: string, providerId: string, browserId: string, signIn: string, loginHint?: string): Promise<SignInStarted> => openSignIn(tenant, providerId, browserId, { signIn }, loginHint),

    /**
     * A web-session sign-in (`GET /api/auth/:provider/start`): as
     * `startSignIn`, but it ends in a cookie session and a 303 to
     * `postLoginRedirect`, which the caller has checked against the tenant's
     * allowlist before calling (this is where the provider is first contacted).
     * `purpose`: another kind of cookie session than the web-session API's
     * (`account`: the account page's sign-in, which ends on the page itself).
     */
    startWebSignIn: (tenant: string, providerId: string, browserId: string, postLoginRedirect: string, purpose?: string): Promise<SignInStarted> =>
      openSignIn(tenant, providerId, browserId, { webSession: true, returnTo: postLoginRedirect, purpose }),

    /**
     * A sign-in an app started over RPC (LoginService.InitiateLogin): a flow
     * for no user and no browser yet, tied to the login session
     * `loginSession` (the digest of its id), and `begin` with the app's
     * `identifier` as the login hint (ATProto resolves it and pushes its
     * authorization request here). The URL goes back to the app, which sends
     * the person there; whoever finishes it is who the token names.
     */
    async startLogin(tenant: string, providerId: string, loginSession: string, loginHint: string | undefined): Promise<LoginStarted> {
      const provider = await tenantProvider(tenant, providerId);
      const state = randomToken(32);
      const flow: Flow = { state, codeVerifier: randomToken(32), redirectUri: callbackUrl(providerId), expiresAt: deps.now() + deps.stateTtlSeconds * 1000, ...(loginHint ? { loginHint } : {}), data: {} };
      const step = await run(provider, (p) => p.begin(flow));
      if (step.kind === 'done') throw new LinkgateError('provider_unavailable', 'this provider cannot sign people in', { provider: providerId });
      // The identifier did not lead anywhere (the provider asks again): the app hears it now, not the person later.
      if (step.kind === 'form' && step.form.error && loginHint) return { kind: 'refused', message: step.form.error };
      await flows.insert({
        state,
        codeVerifier: flow.codeVerifier,
        // Bound to no browser (a random id nobody holds): see `findFlow`.
        browserId: randomToken(32),
        tenant,
        userId: '',
        provider: providerId,
        returnTo: undefined,
        data: flow.data,
        expiresAt: new Date(flow.expiresAt),
        configVersion: provider.configVersion ?? null,
        loginSession,
        ...(step.kind === 'redirect' ? { resumeUrl: step.url.href } : {}),
        step: step.kind === 'redirect' ? { kind: 'redirect' } : step,
      });
      logger.info({ provider: providerId, step: step.kind, signIn: true, via: 'rpc' }, 'flow started');
      deps.metrics?.inc('linkgate_flows_started_total', { provider: providerId, tenant });
      const url = step.kind === 'redirect' ? step.url : new URL(`${deps.publicBaseUrl.href.replace(/\/$/, '')}/oauth/${providerId}/continue?state=${encodeURIComponent(state)}`);
      return { kind: 'started', url, expiresAt: new Date(flow.expiresAt) };
    },

    /**
     * `GET /oauth/:provider/continue`: the page a flow is on (a form, a code
     * to approve, or "linked"), shown again after `start` and on reload.
     */
    async show(providerId: string, state: string | undefined, browserId: string | undefined): Promise<Outcome> {
      const finished = await linkedFlow(providerId, state, browserId);
      if (finished) return finished;
      const row = await findFlow(providerId, state, browserId);
      const shown = row.step as ShownStep | null;
      if (shown?.kind === 'form' || shown?.kind === 'wait') return outcomeOf(shown, state!, row.tenant);
      // The browser was sent to the provider: there is nothing of ours to show until it comes back.
      throw new LinkgateError('flow_not_found', 'this sign-in continues at the provider', { provider: providerId });
    },

    /** `GET|POST /oauth/:provider/callback`: the provider (or our form) hands the flow back. */
    async callback(providerId: string, state: string | undefined, browserId: string | undefined, input: StepInput): Promise<Outcome> {
      if (input.kind === 'poll') {
        // The wait page reloads after its poll saw the flow finish: show the result, not "expired".
        const finished = await linkedFlow(providerId, state, browserId);
        if (finished) return finished;
      }
      if (input.kind === 'callback') {
        // Some client libraries send their own `state` to the provider and keep ours beside it.
        // (Only the environment's providers have one: ATProto is configured for the whole gateway.)
        const provider = deps.providers.defaults.get(providerId);
        const { params } = input;
        if (provider?.instance?.callbackState) {
          state = (await run(provider as RegisteredProvider & { instance: ProviderInstance }, (p) => p.callbackState!(params))) ?? state;
        }
      }
      const row = await findFlow(providerId, state, browserId);
      // A wait step has no provider redirect: the page's "check now" button lands here.
      const shown = row.step as ShownStep | null;
      const effective: StepInput = shown?.kind === 'wait' && input.kind !== 'form' ? { kind: 'poll' } : input;
      const outcome = await advance(providerId, state!, browserId, effective, row);
      if (outcome.kind === 'form' && input.kind === 'form') {
        // Shown again (a refused password): keep what was typed, except secrets.
        const secret = new Set(outcome.form.fields.filter((f) => f.type === 'password').map((f) => f.name));
        return { ...outcome, values: Object.fromEntries(Object.entries(input.fields).filter(([name]) => !secret.has(name))) };
      }
      return outcome;
    },

    /**
     * `GET /oauth/:provider/linked`: the result of the flow this browser last
     * completed, shown for as long as its row lives, so a reload of the
     * success page (which the callback redirects to) still says "linked".
     */
    async result(providerId: string, browserId: string | undefined): Promise<Outcome> {
      const row = browserId ? await flows.lastCompleted(browserId, providerId, new Date(deps.now())) : undefined;
      const link = row ? await links.get({ tenant: row.tenant, userId: row.userId, provider: providerId }) : undefined;
      if (!row || !link) {
        if (!deps.providers.defaults.get(providerId)) throw new LinkgateError('unknown_provider', `there is no provider called "${providerId}"`, { provider: providerId });
        throw new LinkgateError('result_gone', 'there is no recent sign-in of this browser to show', { provider: providerId });
      }
      return { kind: 'linked', tenant: row.tenant, provider: await shownProvider(row), accountName: link.externalName ?? undefined, returnTo: undefined };
    },

    /**
     * `POST /oauth/:provider/cancel`: the user pressed Cancel. On the
     * confirmation page (`context`) the link is spent and nothing starts; on a
     * flow's own page (`state`) the flow ends. Either way the bot hears of it:
     * a `link.cancelled` event, and its waits answer `link_cancelled`.
     */
    async cancel(providerId: string, browserId: string | undefined, target: { context: PresentedContext; csrf: string } | { state: string | undefined }): Promise<void> {
      if ('state' in target) {
        const row = await findFlow(providerId, target.state, browserId);
        const claimed = await flows.claim(row, new Date(deps.now()));
        if (!claimed) throw claimLost(providerId);
        if (isSignIn(claimed)) {
          // No bot waits on a sign-in (its user is not known yet): it just ends; an app waiting over RPC hears it.
          if (!(await flows.finish(claimed, 'cancelled', new Date(deps.now())))) throw claimLost(providerId);
          deps.metrics?.inc('linkgate_flows_cancelled_total', { provider: providerId, tenant: claimed.tenant, reason: 'user' });
          if (claimed.loginSession !== null) await deps.logins?.failed(claimed.loginSession, 'cancelled');
          return;
        }
        if (!(await endCancelled(claimed, 'user'))) throw claimLost(providerId);
        return;
      }
      const { context } = await contextAndProvider(providerId, target.context);
      if (!browserId || !sameToken(target.csrf, confirmationToken(context, browserId))) {
        throw new LinkgateError('csrf_failed', 'the confirmation did not come from this browser', { provider: providerId });
      }
      const now = new Date(deps.now());
      const cancelled = await deps.db.transaction(async (tx) => {
        const spent = await tx
          .insert(usedContexts)
          .values({ tenant: context.tenant, jti: context.jti, expiresAt: context.acceptedUntil, browserHash: sha256(browserId) })
          .onConflictDoNothing()
          .returning({ jti: usedContexts.jti });
        if (spent.length === 0) return false;
        await flows.using(tx).insertCancelled({ tenant: context.tenant, userId: context.userId, provider: providerId, browserId, now, expiresAt: new Date(now.getTime() + deps.stateTtlSeconds * 1000) });
        await enqueueCancelEvent(tx, { tenant: context.tenant, userId: context.userId, provider: providerId, reason: 'user' }, now, deps.webhookEvents ?? false);
        return true;
      });
      if (!cancelled) throw usedByOthers(providerId);
      await announceCancel({ tenant: context.tenant, userId: context.userId, provider: providerId }, 'user');
    },

    /** Whether the user gave up linking `provider` at or after `since` (the wait API's `link_cancelled`). */
    cancelledSince: (key: { tenant: string; userId: string; provider: string }, since: Date) => flows.cancelledSince(key, since),

    /** `GET /oauth/:provider/poll`: is the flow behind a `wait` step finished yet? */
    async poll(providerId: string, state: string | undefined, browserId: string | undefined): Promise<PollAnswer> {
      const row = state ? await flows.find(state) : undefined;
      if (!row || row.provider !== providerId || (row.loginSession === null && (!browserId || sha256(browserId) !== row.browserHash))) return { status: 'expired' };
      if (row.status === 'completed') return { status: 'linked', ...(row.returnTo ? { returnTo: row.returnTo } : {}) };
      if (row.status === 'failed') return { status: 'failed' };
      if (row.status === 'cancelled') return { status: 'cancelled' };
      if (row.expiresAt.getTime() <= deps.now()) return { status: 'expired' };
      const shown = row.step as ShownStep | null;
      if (shown?.kind !== 'wait') return { status: 'continue' };
      if (row.lockedUntil && row.lockedUntil.getTime() > deps.now()) return { status: 'pending', pollMs: pollInterval(shown.pollMs) };
      try {
        const outcome = await advance(providerId, state!, browserId, { kind: 'poll' }, row);
        if (outcome.kind === 'linked') return { status: 'linked', ...(outcome.returnTo ? { returnTo: outcome.returnTo } : {}) };
        if (outcome.kind === 'signed_in' || outcome.kind === 'web_signed_in') return { status: 'signed_in', outcome };
        if (outcome.kind === 'logged_in') return { status: 'linked' };
        if (outcome.kind === 'wait') return { status: 'pending', pollMs: outcome.pollMs };
        return { status: 'continue' };
      } catch (error) {
        if (isLinkgateError(error, 'flow_busy') || isLinkgateError(error, 'provider_unavailable') || isLinkgateError(error, 'provider_timeout')) {
          return { status: 'pending', pollMs: pollInterval(shown.pollMs) };
        }
        logger.warn({ provider: providerId, errorCode: isLinkgateError(error) ? error.code : 'unexpected' }, 'flow failed while polling');
        return { status: 'failed' };
      }
    },
  };
}

export type Linking = ReturnType<typeof createLinking>;
