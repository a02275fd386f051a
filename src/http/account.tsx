/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/**
 * The account page (issue #21): a person signs in with their tenant's user
 * provider (the Discord account the bot knows them by) and sees, unlinks and
 * links the accounts they linked there. `/me` is the default tenant's page,
 * `/t/:tenant/me` another tenant's: a bot's `/accounts` command sends its
 * users to its own tenant's address.
 *
 * One sign-in is one tenant's. The sign-in runs the tenant's own provider
 * configuration (its Discord app, its OpenID issuer), and a provider id says
 * nothing about whose accounts it names across tenants (two tenants' `corp`
 * may be two IdPs), so a session of one tenant is never taken as proof for
 * another; each tenant's session has its own cookie, so a person known to
 * several tenants can keep each page open at once.
 *
 * Sign-in is the gateway's own web-session sign-in (the linking core's
 * `startWebSignIn` with purpose `account`), finished by the provider's
 * callback (src/http/oauth.tsx) through `finish` here. Sessions are
 * src/core/web-sessions.ts's under the purpose `account`: 8 hours at most,
 * 30 minutes idle, revoked at sign-out. Every POST of a signed-in page checks
 * Origin (Fetch Metadata) and the session's CSRF token
 * (src/http/cookie-session.ts). Unlinking is the bot API's unlink
 * (src/core/unlink.ts: upstream revocation, link event, webhook).
 */
import { Hono, type Context } from 'hono';
import * as v from 'valibot';
import { randomToken } from '../core/crypto.ts';
import { LinkgateError } from '../core/errors.ts';
import { DEFAULT_TENANT, ProviderId } from '../core/ids.ts';
import { createLinkUrl } from '../core/link-context.ts';
import type { Linking, Outcome } from '../core/linking.ts';
import type { LinkStore } from '../core/links.ts';
import type { Metrics } from '../core/metrics.ts';
import type { ProviderDirectory } from '../core/tenant-providers.ts';
import { TenantId, type TenantStore } from '../core/tenants.ts';
import { unlink } from '../core/unlink.ts';
import { parseInput } from '../core/validation.ts';
import type { WebSession, WebSessions } from '../core/web-sessions.ts';
import type { LinkRow } from '../db/schema.ts';
import type { Brand } from '../config.ts';
import type { Registry } from '../registry.ts';
import { checkCsrfToken, checkSameOrigin, csrfTokenOf, readForm, sessionCookie } from './cookie-session.ts';
import { bodyLimit, type AppEnv } from './middleware.ts';
import { readBrowserCookie, setBrowserCookie } from './oauth.tsx';
import { Layout, type PageFrame } from './pages.tsx';

/** The sessions' rules (issue #21: as the console's): 8 hours at most, 30 minutes without use. */
export const ACCOUNT_SESSION = { purpose: 'account', ttlSeconds: 8 * 3600, idleSeconds: 30 * 60 } as const;

/**
 * The session cookie of a tenant's account page: `linkgate_account` for the
 * default tenant, `linkgate_account_<tenant>` for another (with the
 * `__Host-` prefix over https).
 */
export const accountCookieName = (tenant: string) => (tenant === DEFAULT_TENANT ? 'linkgate_account' : `linkgate_account_${tenant}`);

/** The account page's address for a tenant: what a bot gives its users. */
export const accountPath = (tenant: string) => (tenant === DEFAULT_TENANT ? '/me' : `/t/${tenant}/me`);

export interface AccountRoutesDeps {
  linking: Linking;
  links: LinkStore;
  providers: ProviderDirectory;
  tenants: TenantStore;
  sessions: WebSessions;
  /** The provider whose account id is the user id, per tenant (LINKGATE_USER_PROVIDER). */
  userProviderOf: (tenant: string) => string | Promise<string>;
  brandOf: (tenant: string) => Brand | Promise<Brand>;
  publicBaseUrl: URL;
  secureCookies: boolean;
  stateTtlSeconds: number;
  contextTtlSeconds: number;
  hashUserId: (tenant: string, userId: string) => string;
  now: () => number;
  metrics?: Metrics | undefined;
}

const Csrf = v.optional(v.pipe(v.string(), v.maxLength(128, 'the form token is too long')));
/** What the page's buttons post: a provider and the session's token. Nothing names a user: the session does. */
const ProviderForm = v.object({ provider: ProviderId, csrf: Csrf });
const CsrfForm = v.object({ csrf: Csrf });
/** What the page says after a POST sent the browser back to it. */
const PageQuery = v.object({ unlinked: v.optional(ProviderId), signed_out: v.optional(v.literal('')) });

/** One row of the page: a linked account as its owner sees it (no token, no scope list, no ids of ours). */
interface ShownLink {
  provider: string;
  providerName: string;
  accountName: string;
  linkedAt: Date;
  status: LinkRow['status'];
  /** The account the person signed in with: unlinking it signs them out. */
  signedInWith: boolean;
}

interface SignedIn {
  token: string;
  session: WebSession;
  /** The account they signed in with, as it is linked now. */
  identity: LinkRow;
}

export function accountRoutes(deps: AccountRoutesDeps) {
  const { sessions, links } = deps;
  const ownOrigin = deps.publicBaseUrl.origin;
  const cookieOf = (tenant: string) => sessionCookie({ name: accountCookieName(tenant), secureCookies: deps.secureCookies });
  const registryOf = async (tenant: string): Promise<Registry> => deps.providers.of(tenant);
  const frame = async (c: Context<AppEnv>, tenant: string): Promise<PageFrame> => ({ nonce: c.get('secureHeadersNonce') ?? '', brand: await deps.brandOf(tenant) });

  /** The tenant a path names: `/me` the default, `/t/:tenant/me` an existing other one (else 404). */
  async function tenantOf(c: Context<AppEnv>): Promise<string> {
    // Error pages of these routes send people back here rather than to the bot.
    c.set('nextStep', 'Open your accounts page again and try once more.');
    const named = c.req.param('tenant');
    if (named === undefined) return DEFAULT_TENANT;
    const tenant = parseInput(TenantId, named);
    // One address per tenant: the default tenant's page is /me.
    if (tenant === DEFAULT_TENANT || !(await deps.tenants.get(tenant))) throw new LinkgateError('not_found', 'there is no such page');
    return tenant;
  }

  /**
   * This browser's live account session for this tenant, or undefined. A
   * session is only ever this tenant's (another tenant's cookie value moved
   * into this cookie is not), made with the tenant's user provider as it is
   * now, for an account still linked: unlinked (here or by the bot) or
   * relinked to another account, the session ends.
   */
  async function signedIn(c: Context<AppEnv>, tenant: string): Promise<SignedIn | undefined> {
    const token = cookieOf(tenant).read(c);
    const session = await sessions.find(token);
    if (!token || !session || session.tenant !== tenant) return undefined;
    const identity = await links.get({ tenant, userId: session.userId, provider: session.provider });
    if (session.provider !== (await deps.userProviderOf(tenant)) || !identity || identity.externalId !== session.externalId) {
      await sessions.revoke(token);
      return undefined;
    }
    return { token, session, identity };
  }

  /** A write of a signed-in page: from our own pages, with this session's token. Not signed in: 401. */
  async function signedInWrite(c: Context<AppEnv>, tenant: string, csrf: string | undefined): Promise<SignedIn> {
    checkSameOrigin(c, ownOrigin);
    const current = await signedIn(c, tenant);
    if (!current) throw new LinkgateError('not_signed_in', 'not signed in: no session, or it ended');
    checkCsrfToken(current.token, csrf);
    return current;
  }

  async function page(c: Context<AppEnv>) {
    const tenant = await tenantOf(c);
    const query = parseInput(PageQuery, { unlinked: c.req.query('unlinked'), signed_out: c.req.query('signed_out') });
    const registry = await registryOf(tenant);
    const base = accountPath(tenant);
    const current = await signedIn(c, tenant);
    if (!current) {
      const provider = registry.get(await deps.userProviderOf(tenant));
      return c.html(<AccountSignInPage frame={await frame(c, tenant)} action={`${base}/sign-in`} providerName={provider?.displayName ?? 'your account'} signedOut={query.signed_out !== undefined} />);
    }
    const { session, identity } = current;
    const nameOf = (provider: string) => registry.get(provider)?.displayName ?? provider;
    const rows = await links.list(tenant, session.userId);
    const shown: ShownLink[] = rows.map((row) => ({
      provider: row.provider,
      providerName: nameOf(row.provider),
      accountName: row.externalName ?? row.externalId,
      linkedAt: row.linkedAt,
      status: row.status,
      signedInWith: row.provider === session.provider,
    }));
    const linked = new Set(rows.map((row) => row.provider));
    const missing = registry
      .list()
      .filter((p) => p.instance !== undefined && !linked.has(p.id))
      .map((p) => ({ id: p.id, displayName: p.displayName }));
    return c.html(
      <AccountPage
        frame={await frame(c, tenant)}
        base={base}
        you={identity.externalName ?? identity.externalId}
        youProvider={nameOf(session.provider)}
        links={shown}
        missing={missing}
        csrf={csrfTokenOf(current.token)}
        // Said only while it is true: a link to `?unlinked=discord` does not claim what did not happen.
        unlinked={query.unlinked === undefined || linked.has(query.unlinked) ? undefined : nameOf(query.unlinked)}
      />,
    );
  }

  /** Starts the sign-in with the tenant's user provider in this browser; the callback ends it in `finish`. */
  async function signIn(c: Context<AppEnv>) {
    const tenant = await tenantOf(c);
    checkSameOrigin(c, ownOrigin);
    const provider = await deps.userProviderOf(tenant);
    const browser = readBrowserCookie(c, deps.secureCookies) ?? randomToken(32);
    const started = await deps.linking.startWebSignIn(tenant, provider, browser, new URL(accountPath(tenant), deps.publicBaseUrl).href, ACCOUNT_SESSION.purpose);
    setBrowserCookie(c, browser, deps);
    // 303: the browser follows a POST with GET (RFC 9110 §15.4.4).
    if (started.kind === 'redirect') return c.redirect(started.url.href, 303);
    return c.redirect(`/oauth/${provider}/continue?state=${encodeURIComponent(started.state)}`, 303);
  }

  /** Unlinks one of the session user's accounts, revoking it at the provider, as the bot API's DELETE does. */
  async function unlinkOne(c: Context<AppEnv>) {
    const tenant = await tenantOf(c);
    const form = parseInput(ProviderForm, Object.fromEntries(await readForm(c)));
    const { token, session } = await signedInWrite(c, tenant, form.csrf);
    const base = accountPath(tenant);
    const deleted = await unlink({ links, providers: deps.providers, hashUserId: deps.hashUserId, now: deps.now, metrics: deps.metrics }, { tenant, userId: session.userId, provider: form.provider }, c.get('log')(), 'account');
    // Already gone (a second click, or the bot unlinked it): the page shows it gone either way.
    if (!deleted) return c.redirect(base, 303);
    if (form.provider === session.provider) {
      // The account they signed in with: the session was that link's, and ends with it.
      await sessions.revoke(token);
      cookieOf(tenant).clear(c);
      return c.redirect(`${base}?signed_out=`, 303);
    }
    return c.redirect(`${base}?unlinked=${form.provider}`, 303);
  }

  /** A fresh link URL for the session user and a provider, as the bot would mint it: the browser goes there now. */
  async function linkOne(c: Context<AppEnv>) {
    const tenant = await tenantOf(c);
    const form = parseInput(ProviderForm, Object.fromEntries(await readForm(c)));
    const { session, identity } = await signedInWrite(c, tenant, form.csrf);
    const provider = (await registryOf(tenant)).get(form.provider);
    if (!provider) throw new LinkgateError('unknown_provider', 'there is no such provider', { provider: form.provider });
    if (!provider.instance) throw new LinkgateError('provider_unconfigured', `${provider.displayName} is not set up for this bot`, { provider: provider.id });
    const { url } = await createLinkUrl(
      { userId: session.userId, provider: provider.id, tenant, ...(identity.externalName ? { userName: identity.externalName } : {}) },
      { secret: await deps.tenants.signingSecret(tenant), ttlSeconds: deps.contextTtlSeconds, publicBaseUrl: deps.publicBaseUrl, now: deps.now() },
    );
    return c.redirect(url, 303);
  }

  /** Ends the session for good, on the server: the cookie's value no longer opens anything. */
  async function signOut(c: Context<AppEnv>) {
    const tenant = await tenantOf(c);
    const form = parseInput(CsrfForm, Object.fromEntries(await readForm(c)));
    const { token } = await signedInWrite(c, tenant, form.csrf);
    await sessions.revoke(token);
    cookieOf(tenant).clear(c);
    return c.redirect(`${accountPath(tenant)}?signed_out=`, 303);
  }

  const app = new Hono<AppEnv>();
  for (const prefix of ['/me', '/t/:tenant/me']) {
    app.get(prefix, page);
    app.post(`${prefix}/sign-in`, bodyLimit(16 * 1024), signIn);
    app.post(`${prefix}/unlink`, bodyLimit(16 * 1024), unlinkOne);
    app.post(`${prefix}/link`, bodyLimit(16 * 1024), linkOne);
    app.post(`${prefix}/sign-out`, bodyLimit(16 * 1024), signOut);
  }

  return {
    routes: app,

    /**
     * An account sign-in ended with the person known (the provider's
     * callback, or the wait page's poll): their session starts on this
     * answer, and the browser goes to the page. Only the tenant's user
     * provider says who a user is here.
     */
    async finish(c: Context<AppEnv>, outcome: Extract<Outcome, { kind: 'web_signed_in' }>): Promise<URL> {
      if (outcome.purpose !== ACCOUNT_SESSION.purpose) throw new LinkgateError('internal_error', 'not an account sign-in');
      if (outcome.provider.id !== (await deps.userProviderOf(outcome.tenant))) {
        throw new LinkgateError('sign_in_provider', 'the account page signs people in with the tenant\'s user provider only', { provider: outcome.provider.id });
      }
      const cookie = cookieOf(outcome.tenant);
      // Signing in again leaves the old session behind: it ends here.
      await sessions.revoke(cookie.read(c));
      const { token, session } = await sessions.create({ tenant: outcome.tenant, userId: outcome.userId, provider: outcome.provider.id, externalId: outcome.externalId });
      cookie.set(c, token, session.expiresAt);
      return new URL(accountPath(outcome.tenant), deps.publicBaseUrl);
    },
  };
}

export type AccountApi = ReturnType<typeof accountRoutes>;

const ACCOUNT_STYLE = `
ul.links { list-style: none; padding: 0; margin: 1rem 0; }
ul.links li { border: 1px solid var(--muted); border-radius: .5rem; padding: .75rem 1rem; margin: 0 0 .75rem; }
ul.links h2 { font-size: 1.0625rem; margin: 0; }
ul.links dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem .75rem; margin: .5rem 0 0; }
ul.links dt { color: var(--muted); } ul.links dd { margin: 0; overflow-wrap: anywhere; }
ul.links button { margin-top: .75rem; }
.notice { border-left: .25rem solid var(--accent); padding-left: .75rem; }
h2 { font-size: 1.2rem; margin: 1.5rem 0 .5rem; }
`;

const STATUS_TEXT: Record<LinkRow['status'], string> = { active: 'Active', needs_reauth: 'Needs linking again' };

/** "7 December 2026": the day an account was linked, in words that read the same everywhere (UTC). */
const day = (at: Date) => at.toLocaleDateString('en-GB', { day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' });

function AccountSignInPage(props: { frame: PageFrame; action: string; providerName: string; signedOut: boolean }) {
  return (
    <Layout title="Your linked accounts" frame={props.frame}>
      <h1>Your linked accounts</h1>
      {props.signedOut ? (
        <p class="notice" role="status">
          You are signed out.
        </p>
      ) : null}
      <p>Sign in with {props.providerName} to see the accounts you linked, unlink them, or link another one.</p>
      <form method="post" action={props.action}>
        <button type="submit">Sign in with {props.providerName}</button>
      </form>
    </Layout>
  );
}

function AccountPage(props: {
  frame: PageFrame;
  base: string;
  you: string;
  youProvider: string;
  links: ShownLink[];
  missing: Array<{ id: string; displayName: string }>;
  csrf: string;
  unlinked: string | undefined;
}) {
  return (
    <Layout title="Your linked accounts" frame={props.frame}>
      <style nonce={props.frame.nonce}>{ACCOUNT_STYLE}</style>
      <h1>Your linked accounts</h1>
      <p class="muted">
        Signed in as <strong>{props.you}</strong> ({props.youProvider}).
      </p>
      {props.unlinked ? (
        <p class="notice" role="status">
          {props.unlinked} was unlinked.
        </p>
      ) : null}
      <ul class="links" aria-label="Linked accounts">
        {props.links.map((link) => (
          <li>
            <h2>{link.providerName}</h2>
            <dl>
              <dt>Account</dt>
              <dd>{link.accountName}</dd>
              <dt>Since</dt>
              <dd>
                <time datetime={link.linkedAt.toISOString()}>{day(link.linkedAt)}</time>
              </dd>
              <dt>Status</dt>
              <dd>{STATUS_TEXT[link.status]}</dd>
            </dl>
            {link.signedInWith ? <p class="muted">You signed in with this account: unlinking it signs you out.</p> : null}
            <div class="actions">
              {link.status === 'needs_reauth' ? (
                <form method="post" action={`${props.base}/link`}>
                  <input type="hidden" name="csrf" value={props.csrf} />
                  <input type="hidden" name="provider" value={link.provider} />
                  <button type="submit">Link {link.providerName} again</button>
                </form>
              ) : null}
              <form method="post" action={`${props.base}/unlink`}>
                <input type="hidden" name="csrf" value={props.csrf} />
                <input type="hidden" name="provider" value={link.provider} />
                <button type="submit" class="secondary">
                  Unlink {link.providerName}
                </button>
              </form>
            </div>
          </li>
        ))}
      </ul>
      {props.links.length === 0 ? <p>You have no linked accounts.</p> : null}
      {props.missing.length > 0 ? (
        <>
          <h2>Link another account</h2>
          <div class="actions">
            {props.missing.map((provider) => (
              <form method="post" action={`${props.base}/link`}>
                <input type="hidden" name="csrf" value={props.csrf} />
                <input type="hidden" name="provider" value={provider.id} />
                <button type="submit">Link {provider.displayName}</button>
              </form>
            ))}
          </div>
        </>
      ) : null}
      <form method="post" action={`${props.base}/sign-out`}>
        <input type="hidden" name="csrf" value={props.csrf} />
        <button type="submit" class="secondary">
          Sign out
        </button>
      </form>
    </Layout>
  );
}
