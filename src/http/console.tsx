/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/**
 * The admin console, `/admin` (issue #21): server-rendered pages for the
 * operators LINKGATE_ADMINS names. Mounted only when that list has an entry
 * (src/app.tsx): otherwise every /admin URL is the gateway's 404 and nothing
 * here runs, reads or writes.
 *
 * Sign-in is the gateway's own: a chooser of the default tenant's providers
 * that some admin signs in with, then the linking core's web sign-in
 * (`startWebSignIn`), which the provider's callback (src/http/oauth.tsx)
 * hands to `finish` here. Only an identity LINKGATE_ADMINS lists gets a
 * session (`console` purpose of src/core/web-sessions.ts: 8 h at most, 30 min
 * idle, revocable); anyone else is refused, and the refusal audited.
 *
 * Every change goes through the function the operator API uses for it
 * (src/http/admin.ts) and is audited the same way, the actor being
 * `admin:<provider>:<externalId>`. Every write checks Origin and the
 * session's CSRF token (src/http/cookie-session.ts), then the role: `owner`
 * everything, `admin` everything in its tenants, `support` nothing (its
 * pages have no write control, and a forced post is refused and audited).
 * Owners also manage admins (`/admin/admins`): LINKGATE_ADMINS' entries are
 * shown read-only; owners made by invites are removed there (their sessions
 * end at once), and invites made and revoked.
 */
import { Hono, type Context } from 'hono';
import type { Logger } from 'pino';
import * as v from 'valibot';
import type { Brand, ConsoleAdmin } from '../config.ts';
import { AUDIT_ACTIONS, AuditQuery, csvExport, list as listAudit, outcomeOf, record, type AuditAction, type AuditFact, type AuditFilter } from '../core/audit.ts';
import { acceptInvite, InviteId, InviteToken, INVITE_TTL_SECONDS, inviteOpen, invitedOwner, invitedOwners, invitedProviders, openInvites, removeInvitedOwner, revokeInvite } from '../core/console-invites.ts';
import { randomToken } from '../core/crypto.ts';
import { isLinkgateError, LinkgateError } from '../core/errors.ts';
import { DEFAULT_TENANT, ProviderId, UserId } from '../core/ids.ts';
import { createLinkUrl } from '../core/link-context.ts';
import { listLinkEvents } from '../core/link-events.ts';
import type { Linking, Outcome } from '../core/linking.ts';
import { searchLinks, type LinkStore } from '../core/links.ts';
import type { OpenIdApps } from '../core/openid-storage.ts';
import { isSecretVariable, MASKED, type ProviderDirectory } from '../core/tenant-providers.ts';
import { ApiKeyName, TenantId, TenantName, type TenantStore } from '../core/tenants.ts';
import type { TokenService } from '../core/tokens.ts';
import { unlink } from '../core/unlink.ts';
import { parseInput } from '../core/validation.ts';
import { createWebSessions, type WebSession } from '../core/web-sessions.ts';
import { listDeliveries, retryDelivery } from '../core/webhooks.ts';
import type { Db } from '../db/client.ts';
import type { LinkRow } from '../db/schema.ts';
import { configureProvider, CreateAppBody, createTenantApp, deleteTenantApp, environmentOnly, makeInvite, streamOf, tenantProviders, webhookEndpoint, WebhookBody } from './admin.ts';
import { checkCsrfToken, checkSameOrigin, csrfTokenOf, readForm, sessionCookie } from './cookie-session.ts';
import { bodyLimit, type AppEnv } from './middleware.ts';
import { readBrowserCookie, setBrowserCookie } from './oauth.tsx';
import { MessagePage, type PageFrame } from './pages.tsx';
import { PostButton, CsrfField, ShownOnce, SignedInLayout, Table, when, type NavItem } from './signed-in-layout.tsx';

/** The console's session cookie (`__Host-linkgate_console` over https). */
export const CONSOLE_COOKIE = 'linkgate_console';
/** A console session lives 8 hours at most and ends after 30 minutes unused. */
export const CONSOLE_SESSION = { purpose: 'console', ttlSeconds: 8 * 3600, idleSeconds: 30 * 60 } as const;
/** Where a console sign-in's flow says it ends; only the console starts flows that end here. */
export const CONSOLE_SIGNED_IN = '/admin/signed-in';
/** The cookie of an invite being used (`__Host-linkgate_console_invite` over https). */
export const INVITE_COOKIE = 'linkgate_console_invite';

export interface ConsoleDeps {
  admins: readonly ConsoleAdmin[];
  db: Db;
  tenants: TenantStore;
  providers: ProviderDirectory;
  links: LinkStore;
  apps: OpenIdApps;
  tokens: TokenService;
  linking: Linking;
  publicBaseUrl: URL;
  production: boolean;
  secureCookies: boolean;
  stateTtlSeconds: number;
  contextTtlSeconds: number;
  hashUserId: (tenant: string, userId: string) => string;
  addressOf: (c: Context<AppEnv>) => string;
  brand: Brand;
  logger: Logger;
  now: () => number;
}

/** Who is signed in, on this request. */
interface SignedIn {
  admin: ConsoleAdmin;
  session: WebSession;
  token: string;
  csrf: string;
  /** `discord:80351110224678912`. */
  id: string;
}

const LinkParams = v.object({ tenant: TenantId, provider: ProviderId, userId: UserId });
const LinkFilter = v.object({
  q: v.optional(v.pipe(v.string(), v.trim(), v.maxLength(200, 'the search is too long'))),
  provider: v.optional(v.union([v.literal(''), ProviderId])),
  status: v.optional(v.picklist(['', 'active', 'needs_reauth'], 'status must be active or needs_reauth')),
});
const KeyId = v.pipe(v.string(), v.regex(/^key_[A-Za-z0-9_-]{1,40}$/, 'not an API key id'));
const SecretId = v.pipe(v.string(), v.regex(/^cs_[A-Za-z0-9_-]{1,40}$/, 'not a context secret id'));
const ClientId = v.pipe(v.string(), v.regex(/^app_[A-Za-z0-9_-]{1,40}$/, 'not an app id'));
const DeliveryId = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{1,64}$/, 'not a delivery id'));
/** An admin's identity, `<provider>:<externalId>` (the external id is everything after the first colon). */
const AdminIdentity = v.pipe(
  v.string('identity is required'),
  v.maxLength(300, 'identity is too long'),
  v.check((text) => text.includes(':') && v.is(ProviderId, text.slice(0, text.indexOf(':'))) && text.length > text.indexOf(':') + 1, 'identity must look like provider:externalId'),
);
/** `NAME=value` lines of the provider form's extra box. */
const VARIABLE_LINE = /^([A-Z][A-Z0-9_]{0,63})=(.*)$/;

export function consoleRoutes(deps: ConsoleDeps) {
  const { db, tenants, now } = deps;
  const origin = deps.publicBaseUrl.origin;
  const sessions = createWebSessions(db, { ...CONSOLE_SESSION, now });
  const cookie = sessionCookie({ name: CONSOLE_COOKIE, secureCookies: deps.secureCookies });
  const signedInUrl = new URL(CONSOLE_SIGNED_IN, deps.publicBaseUrl).href;
  /** The console's cookie of an invite being used (`/admin/invite/:token`), read when the sign-in it starts ends. */
  const inviteCookie = sessionCookie({ name: INVITE_COOKIE, secureCookies: deps.secureCookies });
  /** An identity's entry in LINKGATE_ADMINS, else an owner an invite made, else undefined. */
  async function adminOf(provider: string, externalId: string): Promise<ConsoleAdmin | undefined> {
    const listed = deps.admins.find((a) => a.provider === provider && a.externalId === externalId);
    if (listed) return listed;
    return (await invitedOwner(db, `${provider}:${externalId}`)) ? { role: 'owner', provider, externalId, tenants: null } : undefined;
  }
  /** Every provider of the default tenant that works: an invited person may sign in with any. */
  const configuredProviders = () => deps.providers.defaults.list().filter((p) => p.instance);
  /** The providers some admin signs in with (listed, or an invited owner), among the default tenant's configured ones. */
  const signInProviders = async () => {
    const invited = await invitedProviders(db);
    return configuredProviders().filter((p) => invited.has(p.id) || deps.admins.some((a) => a.provider === p.id));
  };

  const sees = (admin: ConsoleAdmin, tenant: string) => admin.role === 'owner' || admin.tenants === null || admin.tenants.includes(tenant);
  const writes = (admin: ConsoleAdmin, tenant: string) => admin.role !== 'support' && sees(admin, tenant);
  const frame = (c: Context<AppEnv>): PageFrame => ({ nonce: c.get('secureHeadersNonce') ?? '', brand: deps.brand });

  async function audit(c: Context<AppEnv>, actor: string, entry: { action: AuditAction; tenant: string | null; target: string | null; outcome: 'ok' | 'refused' | 'failed'; code?: string; detail?: Record<string, AuditFact> }) {
    try {
      await record(db, { ...entry, actor: { kind: 'admin', id: actor }, clientAddress: deps.addressOf(c), userAgent: c.req.header('user-agent') ?? null, at: new Date(now()) });
    } catch (error) {
      c.get('log')().error({ cause: error instanceof Error ? { name: error.name, message: error.message.slice(0, 200) } : 'unknown', action: entry.action }, 'audit row not written');
    }
  }

  /** This browser's admin, or undefined: no cookie, an ended session, or an identity no longer in LINKGATE_ADMINS. */
  async function signedIn(c: Context<AppEnv>): Promise<SignedIn | undefined> {
    const token = cookie.read(c);
    const session = await sessions.find(token);
    if (!session || !token) return undefined;
    const admin = await adminOf(session.provider, session.externalId);
    if (!admin) return undefined;
    return { admin, session, token, csrf: csrfTokenOf(token), id: `${session.provider}:${session.externalId}` };
  }

  const notSignedIn = () => new LinkgateError('not_signed_in', 'you are not signed in to the console (or your session ended): sign in again at /admin');
  const forbidden = (what: string) => new LinkgateError('forbidden', `your role cannot ${what}`);
  const noTenant = () => new LinkgateError('tenant_not_found', 'there is no such tenant, or it is not one of yours', { status: 404 });

  /** A page: signed in (else back to the sign-in page), and the tenant of the path one this admin sees. */
  const view =
    (render: (c: Context<AppEnv>, who: SignedIn) => Promise<Response>) =>
    async (c: Context<AppEnv>): Promise<Response> => {
      const who = await signedIn(c);
      if (!who) return c.redirect('/admin', 303);
      const raw = c.req.param('tenant');
      if (raw !== undefined && (!v.is(TenantId, raw) || !sees(who.admin, raw))) throw noTenant();
      return render(c, who);
    };

  /** What a change adds to its audit row (as the operator API's `AuditNote`). */
  interface Note {
    tenant?: string;
    target?: string;
    detail?: Record<string, AuditFact>;
  }

  /**
   * A change: same origin, the session's CSRF token, a role that may make it
   * (`owner`: only owners; `tenant`: writers of the path's tenant), then one
   * audit row whatever its end, as the operator API writes.
   */
  const change =
    (action: AuditAction, who_may: 'owner' | 'tenant', handle: (c: Context<AppEnv>, form: URLSearchParams, who: SignedIn, note: Note) => Promise<Response>) =>
    async (c: Context<AppEnv>): Promise<Response> => {
      checkSameOrigin(c, origin);
      const who = await signedIn(c);
      if (!who) throw notSignedIn();
      const form = await readForm(c);
      checkCsrfToken(who.token, form.get('csrf') ?? undefined);
      const raw = c.req.param('tenant');
      const tenant = raw !== undefined && v.is(TenantId, raw) ? raw : null;
      if (raw !== undefined && (tenant === null || !sees(who.admin, tenant))) throw noTenant();
      const note: Note = {};
      let end: { outcome: 'ok' | 'refused' | 'failed'; code?: string } = { outcome: 'ok' };
      try {
        if (who_may === 'owner' ? who.admin.role !== 'owner' : tenant === null || !writes(who.admin, tenant)) throw forbidden('make this change');
        return await handle(c, form, who, note);
      } catch (error) {
        end = outcomeOf(error);
        throw error;
      } finally {
        const whose = note.tenant ?? tenant;
        await audit(c, who.id, { action, tenant: whose, target: note.target ?? (whose ? `tenant:${whose}` : null), ...end, ...(note.detail ? { detail: note.detail } : {}) });
      }
    };

  const tenantPath = (tenant: string, rest = '') => `/admin/t/${tenant}${rest}`;

  /** The frame of every signed-in page. */
  function Page(props: { c: Context<AppEnv>; who: SignedIn; title: string; section: 'tenants' | 'audit' | 'admins'; tenant?: string; tab?: string; children: unknown }) {
    const nav: NavItem[] = [
      { href: '/admin/tenants', label: 'Tenants', current: props.section === 'tenants' && !props.tenant },
      { href: '/admin/audit', label: 'Audit trail', current: props.section === 'audit' },
      // Only owners manage admins: the others have no link to the page (and are refused it).
      ...(props.who.admin.role === 'owner' ? [{ href: '/admin/admins', label: 'Admins', current: props.section === 'admins' }] : []),
    ];
    const t = props.tenant;
    const subnav = t
      ? [
          ['', 'Providers'],
          ['/links', 'Links'],
          ['/api-keys', 'API keys'],
          ['/context-secrets', 'Context secrets'],
          ['/apps', 'Apps'],
          ['/webhook', 'Webhook'],
        ].map(([rest, label]) => ({ href: tenantPath(t, rest), label: label!, current: props.tab === rest }))
      : undefined;
    return (
      <SignedInLayout
        title={props.title}
        frame={frame(props.c)}
        who={`${props.who.id} · ${props.who.admin.role}`}
        signOutAction="/admin/sign-out"
        csrf={props.who.csrf}
        nav={nav}
        subnav={subnav}
      >
        {props.children as never}
      </SignedInLayout>
    );
  }

  const app = new Hono<AppEnv>();
  // Forms only, as every browser form post of the gateway (SECURITY.md): 16 KiB.
  app.use('*', bodyLimit(16 * 1024));

  // ── Signing in and out ──────────────────────────────────────────────────

  app.get('/', async (c) => {
    if (await signedIn(c)) return c.redirect('/admin/tenants', 303);
    const choices = await signInProviders();
    return c.html(
      <MessagePage frame={frame(c)} title="Sign in to the Linkgate console" lines={[]}>
        {choices.length > 0 ? (
          <>
            <p>Sign in with the account this gateway lists as an admin:</p>
            <div class="actions">
              {choices.map((p) => (
                <form method="post" action="/admin/sign-in">
                  <input type="hidden" name="provider" value={p.id} />
                  <button type="submit">Continue with {p.displayName}</button>
                </form>
              ))}
            </div>
          </>
        ) : (
          <p>None of the providers LINKGATE_ADMINS names is configured on this gateway, so nobody can sign in yet.</p>
        )}
      </MessagePage>,
    );
  });

  app.post('/sign-in', async (c) => {
    // No session yet, so no CSRF token: the Origin check keeps another site from signing this browser in (login CSRF).
    checkSameOrigin(c, origin);
    const form = await readForm(c);
    const provider = parseInput(ProviderId, form.get('provider') ?? undefined);
    // Any configured provider may start a sign-in: who may use the console is decided when it ends (`adminOf`).
    if (!configuredProviders().some((p) => p.id === provider)) throw new LinkgateError('bad_request', 'no admin signs in with this provider');
    const browser = readBrowserCookie(c, deps.secureCookies) ?? randomToken(32);
    const started = await deps.linking.startWebSignIn(DEFAULT_TENANT, provider, browser, signedInUrl, CONSOLE_SESSION.purpose);
    setBrowserCookie(c, browser, deps);
    return c.redirect(started.kind === 'redirect' ? started.url.href : `/oauth/${provider}/continue?state=${encodeURIComponent(started.state)}`, 303);
  });

  /** An invite link (`linkgate admin invite`): remembered in a cookie for the sign-in it starts, which spends it. */
  app.get('/invite/:token', async (c) => {
    const token = c.req.param('token');
    if (!v.is(InviteToken, token) || !(await inviteOpen(db, token, new Date(now())))) {
      return c.html(<MessagePage frame={frame(c)} title="This invite is not valid" lines={['It was already used, it expired (invites work for an hour), or the link was cut off.', 'Ask an owner of this gateway for a new one.']} code="invite_invalid" />, 404);
    }
    inviteCookie.set(c, token, new Date(now() + INVITE_TTL_SECONDS * 1000));
    return c.html(
      <MessagePage frame={frame(c)} title="You are invited to the Linkgate console" lines={['Sign in with the account you will use as an owner of this gateway’s console. The invite works once: after you, nobody else can use it.']}>
        <div class="actions">
          {configuredProviders().map((p) => (
            <form method="post" action="/admin/sign-in">
              <input type="hidden" name="provider" value={p.id} />
              <button type="submit">Continue with {p.displayName}</button>
            </form>
          ))}
        </div>
      </MessagePage>,
    );
  });

  // Where a console sign-in's flow says it went: a second tab polling the finished flow lands here.
  app.get('/signed-in', (c) => c.redirect('/admin', 303));

  app.get('/refused', (c) =>
    c.html(
      <MessagePage
        frame={frame(c)}
        title="You are not an admin here"
        lines={['You signed in, but this account is not one of this gateway’s admins, so the console stays closed. This attempt was recorded.', 'If you should have access, ask the gateway’s owner to add your account to LINKGATE_ADMINS.']}
        code="not_an_admin"
      />,
      403,
    ),
  );

  app.post('/sign-out', async (c) => {
    checkSameOrigin(c, origin);
    const who = await signedIn(c);
    const form = await readForm(c);
    if (who) {
      checkCsrfToken(who.token, form.get('csrf') ?? undefined);
      await sessions.revoke(who.token);
      await audit(c, who.id, { action: 'admin.sign_out', tenant: null, target: 'console', outcome: 'ok' });
    }
    cookie.clear(c);
    return c.redirect('/admin', 303);
  });

  // ── Tenants ─────────────────────────────────────────────────────────────

  app.get(
    '/tenants',
    view(async (c, who) => {
      const all = (await tenants.list()).filter((t) => sees(who.admin, t.id));
      return c.html(
        <Page c={c} who={who} title="Tenants" section="tenants">
          <h1>Tenants</h1>
          <Table label="Tenants" head={['Id', 'Name', 'Created']} rows={all.length} empty="No tenant is yours yet.">
            {all.map((t) => (
              <tr>
                <td>
                  <a href={tenantPath(t.id)}>{t.id}</a>
                </td>
                <td>{t.name}</td>
                <td>{when(t.createdAt)}</td>
              </tr>
            ))}
          </Table>
          {who.admin.role === 'owner' ? (
            <>
              <h2>Create a tenant</h2>
              <form method="post" action="/admin/tenants" class="inline">
                <CsrfField csrf={who.csrf} />
                <div>
                  <label for="tenant-id">Id</label>
                  <input id="tenant-id" name="id" required pattern="[a-z0-9][a-z0-9\-]{0,39}" aria-describedby="tenant-id-help" />
                </div>
                <div>
                  <label for="tenant-name">Name</label>
                  <input id="tenant-name" name="name" required maxlength={100} />
                </div>
                <button type="submit">Create tenant</button>
              </form>
              <p class="muted" id="tenant-id-help">
                The id: 1–40 lowercase letters, digits and hyphens; bots send it as <code>x-tenant-id</code>.
              </p>
            </>
          ) : null}
        </Page>,
      );
    }),
  );

  app.post(
    '/tenants',
    change('tenant.create', 'owner', async (c, form, _who, note) => {
      const id = parseInput(TenantId, form.get('id') ?? undefined);
      note.tenant = id;
      const tenant = await tenants.create(id, parseInput(TenantName, form.get('name') ?? undefined));
      note.detail = { name: tenant.name };
      return c.redirect(tenantPath(tenant.id), 303);
    }),
  );

  // ── A tenant's providers ────────────────────────────────────────────────

  app.get(
    '/t/:tenant',
    view(async (c, who) => {
      const tenant = c.req.param('tenant')!;
      const found = await tenants.require(tenant);
      const { providers } = await tenantProviders(tenants, deps.providers, tenant);
      const editable = writes(who.admin, tenant) && tenant !== DEFAULT_TENANT;
      return c.html(
        <Page c={c} who={who} title={`${found.name}: providers`} section="tenants" tenant={tenant} tab="">
          <h1>
            {found.name} <span class="muted">({tenant})</span>
          </h1>
          <h2>Providers</h2>
          {tenant === DEFAULT_TENANT ? <p class="muted">The default tenant’s providers are configured by the environment (a single-tenant deployment’s variables).</p> : null}
          <Table label="Providers" head={['Provider', 'Status', 'Action']} rows={providers.length}>
            {providers.map((p) => (
              <tr>
                <td>
                  {p.displayName} <code>{p.id}</code>
                </td>
                <td>{p.configured ? <span class="badge">configured</span> : <span class="muted">needs {p.missing}</span>}</td>
                <td>{tenant !== DEFAULT_TENANT ? <a href={tenantPath(tenant, `/providers/${p.id}`)}>{editable ? 'Configure' : 'View'}</a> : null}</td>
              </tr>
            ))}
          </Table>
          {editable ? (
            <form method="get" action={tenantPath(tenant, '/providers')} class="inline">
              <div>
                <label for="new-provider">Another provider, by id</label>
                <input id="new-provider" name="provider" required pattern="[a-z][a-z0-9_\-]{0,31}" aria-describedby="new-provider-help" />
              </div>
              <button type="submit">Configure</button>
            </form>
          ) : null}
          {editable ? (
            <p class="muted" id="new-provider-help">
              A name of your own for an OpenID Connect provider (corp), configured with CORP_ISSUER, CORP_CLIENT_ID and CORP_CLIENT_SECRET.
            </p>
          ) : null}
        </Page>,
      );
    }),
  );

  /**
   * The variables a provider's form shows: every name of every way a module
   * can be configured, then those stored. A member of a family (an OIDC
   * provider named `corp`) has no fixed names until its first configuration:
   * its variables go in the "other variables" box.
   */
  function formVariables(provider: string, stored: Record<string, string>): string[] {
    const known = deps.providers.configurable().find((p) => p.id === provider);
    return [...new Set([...(known?.needs.flat() ?? []), ...Object.keys(stored)])];
  }

  app.get(
    '/t/:tenant/providers',
    view(async (c) => c.redirect(tenantPath(c.req.param('tenant')!, `/providers/${parseInput(ProviderId, c.req.query('provider'))}`), 303)),
  );

  async function storedConfig(tenant: string, provider: string) {
    return (await tenants.currentProviderConfigs(tenant)).find((config) => config.provider === provider);
  }

  app.get(
    '/t/:tenant/providers/:provider',
    view(async (c, who) => {
      const tenant = c.req.param('tenant')!;
      const provider = parseInput(ProviderId, c.req.param('provider'));
      const found = await tenants.require(tenant);
      if (tenant === DEFAULT_TENANT) throw environmentOnly('providers');
      const stored = await storedConfig(tenant, provider);
      const env = stored?.env ?? {};
      const names = formVariables(provider, env);
      const displayName = (await deps.providers.of(tenant)).get(provider)?.displayName ?? deps.providers.configurable().find((p) => p.id === provider)?.displayName ?? provider;
      const editable = writes(who.admin, tenant);
      const callback = `${deps.publicBaseUrl.href.replace(/\/$/, '')}/oauth/${provider}/callback`;
      const test = c.req.query('test');
      return c.html(
        <Page c={c} who={who} title={`${found.name}: ${displayName}`} section="tenants" tenant={tenant} tab="">
          <h1>{displayName}</h1>
          <p>
            Callback URL to register at {displayName}: <code id="callback-url">{callback}</code>
          </p>
          {test === 'ok' ? (
            <p role="status" id="test-result">
              The stored configuration works: {displayName} starts with it.
            </p>
          ) : null}
          <p class="muted">
            {stored ? `Configured (version ${stored.version}, ${when(stored.createdAt)}).` : 'Not configured for this tenant yet.'} Secret values are never shown: leave a secret field empty to keep
            the stored value.
          </p>
          {editable ? (
            <form method="post" action={tenantPath(tenant, `/providers/${provider}`)}>
              <CsrfField csrf={who.csrf} />
              {names.map((name) => (
                <>
                  <label for={`v-${name}`}>{name}</label>
                  {isSecretVariable(name) ? (
                    <input id={`v-${name}`} name={`v:${name}`} type="password" autocomplete="off" placeholder={env[name] !== undefined ? 'stored (unchanged if left empty)' : ''} />
                  ) : (
                    <input id={`v-${name}`} name={`v:${name}`} value={env[name] ?? ''} />
                  )}
                </>
              ))}
              <label for="extra">Other variables</label>
              <textarea id="extra" name="extra" aria-describedby="extra-help"></textarea>
              <p class="muted" id="extra-help">
                One NAME=value a line, for variables not listed above.
              </p>
              <button type="submit">Save configuration</button>
            </form>
          ) : (
            <dl class="facts">
              {names.map((name) => (
                <>
                  <dt>{name}</dt>
                  <dd>{env[name] === undefined ? '—' : isSecretVariable(name) ? MASKED : env[name]}</dd>
                </>
              ))}
            </dl>
          )}
          {editable && stored ? (
            <div class="actions">
              <PostButton action={tenantPath(tenant, `/providers/${provider}/test`)} csrf={who.csrf} label="Test the configuration" secondary />
              <PostButton action={tenantPath(tenant, `/providers/${provider}/remove`)} csrf={who.csrf} label="Remove the configuration" danger />
            </div>
          ) : null}
        </Page>,
      );
    }),
  );

  app.post(
    '/t/:tenant/providers/:provider',
    change('provider.configure', 'tenant', async (c, form, _who, note) => {
      const tenant = c.req.param('tenant')!;
      const provider = parseInput(ProviderId, c.req.param('provider'));
      note.target = `provider:${provider}`;
      if (tenant === DEFAULT_TENANT) throw environmentOnly('providers');
      const stored = (await storedConfig(tenant, provider))?.env ?? {};
      const env: Record<string, string> = {};
      for (const [field, value] of form) {
        if (!field.startsWith('v:')) continue;
        const name = field.slice(2);
        // A secret left empty keeps its stored value: secrets are write-only.
        if (value === '' && isSecretVariable(name) && stored[name] !== undefined) env[name] = stored[name];
        else if (value !== '') env[name] = value;
      }
      for (const line of (form.get('extra') ?? '').split(/\r?\n/)) {
        if (line.trim() === '') continue;
        const match = VARIABLE_LINE.exec(line.trim());
        if (!match) throw new LinkgateError('bad_request', 'each line of "Other variables" must be NAME=value');
        env[match[1]!] = match[2]!;
      }
      // The variables' names only: their values hold the provider app's secret.
      note.detail = { variables: Object.keys(env).sort() };
      const configured = await configureProvider(deps, tenant, provider, env);
      note.detail = { ...note.detail, version: configured.version };
      return c.redirect(tenantPath(tenant, `/providers/${provider}`), 303);
    }),
  );

  // Not a change: checks the stored configuration as saving it would (the directory's check: the module starts with it).
  app.post('/t/:tenant/providers/:provider/test', async (c) => {
    checkSameOrigin(c, origin);
    const who = await signedIn(c);
    if (!who) throw notSignedIn();
    checkCsrfToken(who.token, (await readForm(c)).get('csrf') ?? undefined);
    const tenant = parseInput(TenantId, c.req.param('tenant'));
    const provider = parseInput(ProviderId, c.req.param('provider'));
    if (!sees(who.admin, tenant)) throw noTenant();
    if (!writes(who.admin, tenant)) throw forbidden('test a configuration');
    const stored = await storedConfig(tenant, provider);
    if (!stored) throw new LinkgateError('not_found', 'this tenant has no configuration for this provider');
    await deps.providers.check(provider, stored.env, { publicBaseUrl: deps.publicBaseUrl });
    return c.redirect(tenantPath(tenant, `/providers/${provider}?test=ok`), 303);
  });

  app.post(
    '/t/:tenant/providers/:provider/remove',
    change('provider.remove', 'tenant', async (c, _form, _who, note) => {
      const tenant = c.req.param('tenant')!;
      const provider = parseInput(ProviderId, c.req.param('provider'));
      note.target = `provider:${provider}`;
      if (tenant === DEFAULT_TENANT) throw environmentOnly('providers');
      if (!(await tenants.removeProviderConfig(tenant, provider))) throw new LinkgateError('not_found', 'this tenant has no configuration for this provider');
      return c.redirect(tenantPath(tenant), 303);
    }),
  );

  // ── API keys ────────────────────────────────────────────────────────────

  async function apiKeysPage(c: Context<AppEnv>, who: SignedIn, created?: { id: string; key: string }) {
    const tenant = parseInput(TenantId, c.req.param('tenant'));
    const found = await tenants.require(tenant);
    const keys = await tenants.listApiKeys(tenant);
    const editable = writes(who.admin, tenant);
    return c.html(
      <Page c={c} who={who} title={`${found.name}: API keys`} section="tenants" tenant={tenant} tab="/api-keys">
        <h1>API keys</h1>
        {created ? <ShownOnce label={`New API key ${created.id}`} value={created.key} id="new-api-key" /> : null}
        {tenant === DEFAULT_TENANT ? <p class="muted">The environment’s LINKGATE_API_KEYS are this tenant’s keys too; they are not listed.</p> : null}
        <Table label="API keys" head={editable ? ['Id', 'Name', 'Created', 'Last used', 'Action'] : ['Id', 'Name', 'Created', 'Last used']} rows={keys.length} empty="No API keys.">
          {keys.map((k) => (
            <tr>
              <td>
                <code>{k.id}</code>
              </td>
              <td>{k.name}</td>
              <td>{when(k.createdAt)}</td>
              <td>{when(k.lastUsedAt)}</td>
              {editable ? (
                <td>
                  <PostButton action={tenantPath(tenant, `/api-keys/${k.id}/revoke`)} csrf={who.csrf} label={`Revoke`} danger fields={{}} />
                </td>
              ) : null}
            </tr>
          ))}
        </Table>
        {editable ? (
          <>
            <h2>Create an API key</h2>
            <form method="post" action={tenantPath(tenant, '/api-keys')} class="inline">
              <CsrfField csrf={who.csrf} />
              <div>
                <label for="key-name">Name</label>
                <input id="key-name" name="name" required maxlength={100} />
              </div>
              <button type="submit">Create key</button>
            </form>
          </>
        ) : null}
      </Page>,
      created ? 201 : 200,
    );
  }

  app.get('/t/:tenant/api-keys', view((c, who) => apiKeysPage(c, who)));

  app.post(
    '/t/:tenant/api-keys',
    change('api_key.create', 'tenant', async (c, form, who, note) => {
      const tenant = c.req.param('tenant')!;
      const name = parseInput(ApiKeyName, form.get('name') ?? undefined);
      note.detail = { name };
      const created = await tenants.createApiKey(tenant, name);
      note.target = `api_key:${created.id}`;
      // Shown in this answer only: it is stored as a digest.
      return apiKeysPage(c, who, { id: created.id, key: created.key });
    }),
  );

  app.post(
    '/t/:tenant/api-keys/:id/revoke',
    change('api_key.revoke', 'tenant', async (c, _form, _who, note) => {
      const tenant = c.req.param('tenant')!;
      const id = parseInput(KeyId, c.req.param('id'));
      note.target = `api_key:${id}`;
      if (!(await tenants.deleteApiKey(tenant, id))) throw new LinkgateError('not_found', 'this tenant has no API key with this id');
      return c.redirect(tenantPath(tenant, '/api-keys'), 303);
    }),
  );

  // ── Context secrets ─────────────────────────────────────────────────────

  async function secretsPage(c: Context<AppEnv>, who: SignedIn, created?: { id: string; secret: string }) {
    const tenant = parseInput(TenantId, c.req.param('tenant'));
    const found = await tenants.require(tenant);
    const secrets = await tenants.listContextSecrets(tenant);
    const editable = writes(who.admin, tenant);
    return c.html(
      <Page c={c} who={who} title={`${found.name}: context secrets`} section="tenants" tenant={tenant} tab="/context-secrets">
        <h1>Link-context secrets</h1>
        <p class="muted">Bots sign their link contexts with one of these; the newest signs the links the gateway makes.</p>
        {created ? <ShownOnce label={`New context secret ${created.id}`} value={created.secret} id="new-context-secret" /> : null}
        <Table label="Context secrets" head={editable ? ['Id', 'Created', 'Action'] : ['Id', 'Created']} rows={secrets.length} empty="No context secrets.">
          {secrets.map((s) => (
            <tr>
              <td>
                <code>{s.id}</code>
              </td>
              <td>{when(s.createdAt)}</td>
              {editable ? (
                <td>
                  <PostButton action={tenantPath(tenant, `/context-secrets/${s.id}/retire`)} csrf={who.csrf} label="Retire" danger />
                </td>
              ) : null}
            </tr>
          ))}
        </Table>
        {editable ? <PostButton action={tenantPath(tenant, '/context-secrets')} csrf={who.csrf} label="Create a context secret" /> : null}
      </Page>,
      created ? 201 : 200,
    );
  }

  app.get('/t/:tenant/context-secrets', view((c, who) => secretsPage(c, who)));

  app.post(
    '/t/:tenant/context-secrets',
    change('context_secret.create', 'tenant', async (c, _form, who, note) => {
      const created = await tenants.createContextSecret(c.req.param('tenant')!);
      note.target = `context_secret:${created.id}`;
      return secretsPage(c, who, created);
    }),
  );

  app.post(
    '/t/:tenant/context-secrets/:id/retire',
    change('context_secret.retire', 'tenant', async (c, _form, _who, note) => {
      const tenant = c.req.param('tenant')!;
      const id = parseInput(SecretId, c.req.param('id'));
      note.target = `context_secret:${id}`;
      if (!(await tenants.retireContextSecret(tenant, id))) throw new LinkgateError('not_found', 'this tenant has no active context secret with this id');
      return c.redirect(tenantPath(tenant, '/context-secrets'), 303);
    }),
  );

  // ── Apps ────────────────────────────────────────────────────────────────

  async function appsPage(c: Context<AppEnv>, who: SignedIn, created?: { clientId: string; clientSecret?: string }) {
    const tenant = parseInput(TenantId, c.req.param('tenant'));
    const found = await tenants.require(tenant);
    const apps = await deps.apps.list(tenant);
    const editable = writes(who.admin, tenant);
    return c.html(
      <Page c={c} who={who} title={`${found.name}: apps`} section="tenants" tenant={tenant} tab="/apps">
        <h1>Apps</h1>
        <p class="muted">The sign-in clients of this tenant’s OpenID Provider, and the web-session API’s allowlist.</p>
        {created?.clientSecret ? <ShownOnce label={`Client secret of ${created.clientId}`} value={created.clientSecret} id="new-client-secret" /> : null}
        <Table label="Apps" head={editable ? ['Client id', 'Name', 'Type', 'Redirect URIs', 'Action'] : ['Client id', 'Name', 'Type', 'Redirect URIs']} rows={apps.length} empty="No apps.">
          {apps.map((a) => (
            <tr>
              <td>
                <code>{a.clientId}</code>
              </td>
              <td>{a.name}</td>
              <td>{a.type}</td>
              <td>{a.redirectUris.join(' ')}</td>
              {editable ? (
                <td>
                  <PostButton action={tenantPath(tenant, `/apps/${a.clientId}/delete`)} csrf={who.csrf} label="Delete" danger />
                </td>
              ) : null}
            </tr>
          ))}
        </Table>
        {editable ? (
          <>
            <h2>Create an app</h2>
            <form method="post" action={tenantPath(tenant, '/apps')}>
              <CsrfField csrf={who.csrf} />
              <label for="app-name">Name</label>
              <input id="app-name" name="name" required maxlength={100} />
              <label for="app-uris">Redirect URIs (one a line)</label>
              <textarea id="app-uris" name="redirectUris" required></textarea>
              <label for="app-type">Type</label>
              <select id="app-type" name="type">
                <option value="confidential">confidential (a server that keeps a secret)</option>
                <option value="public">public (a browser or native app)</option>
              </select>
              <button type="submit">Create app</button>
            </form>
          </>
        ) : null}
      </Page>,
      created ? 201 : 200,
    );
  }

  app.get('/t/:tenant/apps', view((c, who) => appsPage(c, who)));

  app.post(
    '/t/:tenant/apps',
    change('app.create', 'tenant', async (c, form, who, note) => {
      const tenant = c.req.param('tenant')!;
      const body = parseInput(CreateAppBody, {
        name: form.get('name') ?? undefined,
        redirectUris: (form.get('redirectUris') ?? '').split(/\s+/).filter(Boolean),
        type: form.get('type') ?? undefined,
      });
      note.detail = { name: body.name, type: body.type };
      const created = await createTenantApp(deps, tenant, body);
      note.target = `app:${created.clientId}`;
      return appsPage(c, who, created);
    }),
  );

  app.post(
    '/t/:tenant/apps/:clientId/delete',
    change('app.delete', 'tenant', async (c, _form, _who, note) => {
      const tenant = c.req.param('tenant')!;
      const clientId = parseInput(ClientId, c.req.param('clientId'));
      note.target = `app:${clientId}`;
      await deleteTenantApp(deps, tenant, clientId);
      return c.redirect(tenantPath(tenant, '/apps'), 303);
    }),
  );

  // ── Webhook ─────────────────────────────────────────────────────────────

  app.get(
    '/t/:tenant/webhook',
    view(async (c, who) => {
      const tenant = c.req.param('tenant')!;
      const found = await tenants.require(tenant);
      // The default tenant's is the environment's (tenants.webhook answers it without the database); another's is stored.
      const url = tenant === DEFAULT_TENANT ? (await tenants.webhook(tenant))?.url.href : await tenants.webhookUrl(tenant);
      const deliveries = await listDeliveries(db, { tenant, limit: 50 });
      const editable = writes(who.admin, tenant) && tenant !== DEFAULT_TENANT;
      // A receiver's path or query may carry a token of its own (Slack's and Discord's hooks do): support sees the origin only.
      const shownUrl = url === undefined ? undefined : who.admin.role === 'support' ? `${new URL(url).origin}/…` : url;
      return c.html(
        <Page c={c} who={who} title={`${found.name}: webhook`} section="tenants" tenant={tenant} tab="/webhook">
          <h1>Webhook</h1>
          <p>{shownUrl ? <>Events are sent to <code id="webhook-url">{shownUrl}</code>, signed with its secret (never shown).</> : 'No webhook endpoint.'}</p>
          {tenant === DEFAULT_TENANT ? <p class="muted">The default tenant’s webhook is the environment’s (LINKGATE_WEBHOOK_URL).</p> : null}
          {editable ? (
            <>
              <h2>{url ? 'Change the endpoint' : 'Set an endpoint'}</h2>
              <form method="post" action={tenantPath(tenant, '/webhook')}>
                <CsrfField csrf={who.csrf} />
                <label for="webhook-url-input">URL</label>
                <input id="webhook-url-input" name="url" type="url" required />
                <label for="webhook-secret">Signing secret (32 characters at least)</label>
                <input id="webhook-secret" name="secret" type="password" autocomplete="off" required minlength={32} />
                <button type="submit">Save endpoint</button>
              </form>
              {url ? <PostButton action={tenantPath(tenant, '/webhook/remove')} csrf={who.csrf} label="Remove the endpoint" danger /> : null}
            </>
          ) : null}
          <h2>Deliveries</h2>
          <Table
            label="Webhook deliveries"
            head={writes(who.admin, tenant) ? ['Event', 'Status', 'Attempts', 'Last answer', 'Created', 'Action'] : ['Event', 'Status', 'Attempts', 'Last answer', 'Created']}
            rows={deliveries.length}
            empty="No deliveries yet."
          >
            {deliveries.map((d) => (
              <tr>
                <td>{d.type}</td>
                <td>{d.status}</td>
                <td>{d.attempts}</td>
                <td>{d.lastStatus ?? d.lastError ?? '—'}</td>
                <td>{when(d.createdAt)}</td>
                {writes(who.admin, tenant) ? <td>{d.status !== 'delivered' ? <PostButton action={tenantPath(tenant, `/webhook/deliveries/${d.id}/retry`)} csrf={who.csrf} label="Retry" secondary /> : null}</td> : null}
              </tr>
            ))}
          </Table>
        </Page>,
      );
    }),
  );

  app.post(
    '/t/:tenant/webhook',
    change('webhook.set', 'tenant', async (c, form, _who, note) => {
      const tenant = c.req.param('tenant')!;
      note.target = 'webhook';
      if (tenant === DEFAULT_TENANT) throw environmentOnly('webhook');
      const endpoint = webhookEndpoint(parseInput(WebhookBody, { url: form.get('url') ?? undefined, secret: form.get('secret') ?? undefined }), deps.production);
      note.detail = { origin: endpoint.url.origin };
      await tenants.putWebhook(tenant, endpoint);
      return c.redirect(tenantPath(tenant, '/webhook'), 303);
    }),
  );

  app.post(
    '/t/:tenant/webhook/remove',
    change('webhook.remove', 'tenant', async (c, _form, _who, note) => {
      const tenant = c.req.param('tenant')!;
      note.target = 'webhook';
      if (tenant === DEFAULT_TENANT) throw environmentOnly('webhook');
      if (!(await tenants.deleteWebhook(tenant))) throw new LinkgateError('not_found', 'this tenant has no webhook');
      return c.redirect(tenantPath(tenant, '/webhook'), 303);
    }),
  );

  app.post(
    '/t/:tenant/webhook/deliveries/:id/retry',
    change('webhook.retry', 'tenant', async (c, _form, _who, note) => {
      const tenant = c.req.param('tenant')!;
      const id = parseInput(DeliveryId, c.req.param('id'));
      note.target = `delivery:${id}`;
      if (!(await retryDelivery(db, tenant, id, new Date(now())))) throw new LinkgateError('not_found', 'this tenant has no undelivered delivery with this id, or it is being sent right now');
      return c.redirect(tenantPath(tenant, '/webhook'), 303);
    }),
  );

  // ── Links ───────────────────────────────────────────────────────────────

  const linkPath = (row: Pick<LinkRow, 'tenant' | 'provider' | 'userId'>) => tenantPath(row.tenant, `/links/${row.provider}/${encodeURIComponent(row.userId)}`);

  app.get(
    '/t/:tenant/links',
    view(async (c, who) => {
      const tenant = c.req.param('tenant')!;
      const found = await tenants.require(tenant);
      const filter = parseInput(LinkFilter, { q: c.req.query('q'), provider: c.req.query('provider'), status: c.req.query('status') });
      const providers = (await deps.providers.of(tenant)).list();
      const rows = await searchLinks(db, tenant, { query: filter.q, provider: filter.provider || undefined, status: filter.status || undefined, limit: 100 });
      return c.html(
        <Page c={c} who={who} title={`${found.name}: links`} section="tenants" tenant={tenant} tab="/links">
          <h1>Links</h1>
          <form method="get" action={tenantPath(tenant, '/links')} class="inline" role="search">
            <div>
              <label for="q">User id, external id or name</label>
              <input id="q" name="q" type="search" value={filter.q ?? ''} />
            </div>
            <div>
              <label for="provider">Provider</label>
              <select id="provider" name="provider">
                <option value="">any</option>
                {providers.map((p) => (
                  <option value={p.id} selected={filter.provider === p.id}>
                    {p.displayName}
                  </option>
                ))}
              </select>
            </div>
            <div>
              <label for="status">Status</label>
              <select id="status" name="status">
                <option value="">any</option>
                <option value="active" selected={filter.status === 'active'}>
                  active
                </option>
                <option value="needs_reauth" selected={filter.status === 'needs_reauth'}>
                  needs re-auth
                </option>
              </select>
            </div>
            <button type="submit">Search</button>
          </form>
          <Table label="Links" head={['User', 'Provider', 'Account', 'Status', 'Changed']} rows={rows.length} empty="No link matches.">
            {rows.map((row) => (
              <tr>
                <td>
                  <a href={linkPath(row)}>{row.userId}</a>
                </td>
                <td>{row.provider}</td>
                <td>
                  {row.externalName ?? '—'} <code>{row.externalId}</code>
                </td>
                <td>{row.status}</td>
                <td>{when(row.updatedAt)}</td>
              </tr>
            ))}
          </Table>
        </Page>,
      );
    }),
  );

  async function requireLink(c: Context<AppEnv>) {
    const key = parseInput(LinkParams, { tenant: c.req.param('tenant'), provider: c.req.param('provider'), userId: c.req.param('userId') });
    const row = await deps.links.get(key);
    if (!row) throw new LinkgateError('not_linked', 'this user has not linked this provider (any more)', { status: 404 });
    return { key, row };
  }

  async function linkPage(c: Context<AppEnv>, who: SignedIn, relink?: { url: string; expiresAt: Date }) {
    const { key, row } = await requireLink(c);
    const found = await tenants.require(key.tenant);
    const { events } = await listLinkEvents(db, key, { limit: 50 });
    const lastRefresh = events.find((e) => e.kind === 'refreshed');
    const editable = writes(who.admin, key.tenant);
    return c.html(
      <Page c={c} who={who} title={`${found.name}: ${row.provider} link of ${row.userId}`} section="tenants" tenant={key.tenant} tab="/links">
        <h1>
          {row.provider} link of <code>{row.userId}</code>
        </h1>
        {relink ? <ShownOnce label="Relink URL (send it to this user; it works once, until it expires)" value={relink.url} id="relink-url" /> : null}
        <dl class="facts">
          <dt>Account</dt>
          <dd id="link-account">
            {row.externalName ?? '—'} (<code>{row.externalId}</code>)
          </dd>
          <dt>Status</dt>
          <dd id="link-status">{row.status}</dd>
          <dt>Scopes</dt>
          <dd>{row.scopes.length > 0 ? row.scopes.join(' ') : '—'}</dd>
          <dt>Token expires</dt>
          <dd>{when(row.expiresAt)}</dd>
          <dt>Last refresh</dt>
          <dd>{lastRefresh ? lastRefresh.at.replace('T', ' ').slice(0, 16) + ' UTC' : '—'}</dd>
          <dt>Linked</dt>
          <dd>{when(row.linkedAt)}</dd>
        </dl>
        {editable ? (
          <div class="actions">
            <PostButton action={`${linkPath(row)}/refresh`} csrf={who.csrf} label="Refresh now" secondary />
            <PostButton action={`${linkPath(row)}/relink`} csrf={who.csrf} label="Make a relink URL" secondary />
            <PostButton action={`${linkPath(row)}/unlink`} csrf={who.csrf} label="Unlink" danger />
          </div>
        ) : null}
        <h2>Events</h2>
        <Table label="Link events" head={['When', 'Event', 'Detail']} rows={events.length} empty="No events kept for this link.">
          {events.map((e) => (
            <tr>
              <td>{e.at.replace('T', ' ').slice(0, 19)}</td>
              <td>{e.kind}</td>
              <td>{e.detail ? Object.entries(e.detail).map(([k, value]) => `${k}: ${Array.isArray(value) ? value.join(' ') : String(value)}`).join(', ') : ''}</td>
            </tr>
          ))}
        </Table>
      </Page>,
      relink ? 201 : 200,
    );
  }

  app.get('/t/:tenant/links/:provider/:userId', view((c, who) => linkPage(c, who)));

  app.post(
    '/t/:tenant/links/:provider/:userId/refresh',
    change('link.refresh', 'tenant', async (c, _form, _who, note) => {
      const { key, row } = await requireLink(c);
      note.target = `link:${row.userId}/${row.provider}`;
      await deps.tokens.refreshNow(key);
      return c.redirect(linkPath(row), 303);
    }),
  );

  app.post(
    '/t/:tenant/links/:provider/:userId/relink',
    change('link.relink_url', 'tenant', async (c, _form, who, note) => {
      const { key, row } = await requireLink(c);
      note.target = `link:${row.userId}/${row.provider}`;
      const made = await createLinkUrl(
        { userId: key.userId, provider: key.provider, tenant: key.tenant },
        { secret: await tenants.signingSecret(key.tenant), ttlSeconds: deps.contextTtlSeconds, publicBaseUrl: deps.publicBaseUrl, now: now() },
      );
      // The URL links whoever opens it to this user: shown to this admin only, never audited.
      note.detail = { expiresAt: made.expiresAt.toISOString() };
      return linkPage(c, who, made);
    }),
  );

  app.post(
    '/t/:tenant/links/:provider/:userId/unlink',
    change('link.delete', 'tenant', async (c, _form, _who, note) => {
      const { key, row } = await requireLink(c);
      note.target = `link:${row.userId}/${row.provider}`;
      const done = await unlink({ links: deps.links, providers: deps.providers, hashUserId: deps.hashUserId, now }, key, c.get('log')(), 'console');
      note.detail = { revocation: done?.revocation ?? 'none' };
      return c.redirect(tenantPath(key.tenant, '/links'), 303);
    }),
  );

  // ── Admins (owners only) ────────────────────────────────────────────────

  const ownersOnly = () => new LinkgateError('forbidden', 'only owners manage admins', { status: 403 });

  /** LINKGATE_ADMINS' entries (read-only), the owners invites made (removable), and the open invites (revocable). */
  async function adminsPage(c: Context<AppEnv>, who: SignedIn, created?: { url: string; expiresAt: Date }) {
    if (who.admin.role !== 'owner') throw ownersOnly();
    const at = new Date(now());
    const [invited, open] = await Promise.all([invitedOwners(db), openInvites(db, at)]);
    return c.html(
      <Page c={c} who={who} title="Admins" section="admins">
        <h1>Admins</h1>
        {created ? <ShownOnce label={`Invite link (works once, until ${when(created.expiresAt)}; whoever signs in with it first becomes an owner)`} value={created.url} id="invite-url" /> : null}
        <h2>From LINKGATE_ADMINS</h2>
        <p class="muted">Read from the environment: change LINKGATE_ADMINS and restart the gateway to add or remove one of these.</p>
        <Table label="Admins from LINKGATE_ADMINS" head={['Identity', 'Role', 'Tenants', 'Source']} rows={deps.admins.length}>
          {deps.admins.map((a) => (
            <tr>
              <td>
                <code>
                  {a.provider}:{a.externalId}
                </code>
              </td>
              <td>{a.role}</td>
              <td>{a.tenants === null ? 'all' : a.tenants.join(', ')}</td>
              <td>
                <span class="badge">from LINKGATE_ADMINS</span>
              </td>
            </tr>
          ))}
        </Table>
        <h2>Invited owners</h2>
        <Table label="Invited owners" head={['Identity', 'Invited', 'Accepted', 'Action']} rows={invited.length} empty="No owner was invited.">
          {invited.map((o) => (
            <tr>
              <td>
                <code>{o.identity}</code>
              </td>
              <td>{when(o.invitedAt)}</td>
              <td>{when(o.acceptedAt)}</td>
              <td>
                {o.identity === who.id ? (
                  <span class="muted">you</span>
                ) : deps.admins.some((a) => `${a.provider}:${a.externalId}` === o.identity) ? (
                  <span class="muted">also in LINKGATE_ADMINS</span>
                ) : (
                  <PostButton action="/admin/admins/remove" csrf={who.csrf} label="Remove" danger fields={{ identity: o.identity }} />
                )}
              </td>
            </tr>
          ))}
        </Table>
        <h2>Open invites</h2>
        <Table label="Open invites" head={['Id', 'Created', 'Expires', 'Action']} rows={open.length} empty="No invite is open.">
          {open.map((i) => (
            <tr>
              <td>
                <code>{i.id}</code>
              </td>
              <td>{when(i.createdAt)}</td>
              <td>{when(i.expiresAt)}</td>
              <td>
                <PostButton action={`/admin/admins/invites/${i.id}/revoke`} csrf={who.csrf} label="Revoke" danger />
              </td>
            </tr>
          ))}
        </Table>
        <PostButton action="/admin/admins/invites" csrf={who.csrf} label="Create an invite" describedBy="invite-help" />
        <p class="muted" id="invite-help">
          A link that works once, for an hour: whoever signs in with it first becomes an owner. It is shown once, here.
        </p>
      </Page>,
      created ? 201 : 200,
    );
  }

  app.get('/admins', view((c, who) => adminsPage(c, who)));

  app.post(
    '/admins/invites',
    change('admin.invite', 'owner', async (c, _form, who, note) => {
      const made = await makeInvite(db, deps.publicBaseUrl, new Date(now()));
      note.target = `invite:${made.id}`;
      // The link makes an owner: shown to this owner once, never audited.
      note.detail = { expiresAt: made.expiresAt };
      return adminsPage(c, who, { url: made.url, expiresAt: new Date(made.expiresAt) });
    }),
  );

  app.post(
    '/admins/invites/:id/revoke',
    change('admin.invite_revoke', 'owner', async (c, _form, _who, note) => {
      const id = parseInput(InviteId, c.req.param('id'));
      note.target = `invite:${id}`;
      if (!(await revokeInvite(db, id, new Date(now())))) throw new LinkgateError('not_found', 'there is no open invite with this id (it was used, it expired, or it was revoked)');
      return c.redirect('/admin/admins', 303);
    }),
  );

  app.post(
    '/admins/remove',
    change('admin.remove', 'owner', async (c, form, who, note) => {
      const identity = parseInput(AdminIdentity, form.get('identity') ?? undefined);
      note.target = `admin:${identity}`;
      const colon = identity.indexOf(':');
      const [provider, externalId] = [identity.slice(0, colon), identity.slice(colon + 1)];
      if (deps.admins.some((a) => a.provider === provider && a.externalId === externalId)) {
        throw new LinkgateError('bad_request', 'this admin is listed in LINKGATE_ADMINS: remove the entry there and restart the gateway');
      }
      if (identity === who.id) throw new LinkgateError('bad_request', 'you cannot remove yourself: ask another owner');
      if (!(await removeInvitedOwner(db, identity))) throw new LinkgateError('not_found', 'no invite made this identity an owner');
      // Out at once: no session of theirs outlives the removal (signedIn would refuse it anyway).
      note.detail = { sessionsEnded: await sessions.revokeIdentity({ provider, externalId }) };
      return c.redirect('/admin/admins', 303);
    }),
  );

  // ── Audit trail ─────────────────────────────────────────────────────────

  /** The filter of the audit page and its CSV: a non-owner reads one of its tenants at a time. */
  function auditFilter(c: Context<AppEnv>, who: SignedIn): AuditFilter {
    const query = Object.fromEntries(Object.entries(c.req.query()).filter(([name, value]) => value !== '' && name !== 'format'));
    const filter = parseInput(AuditQuery, query);
    if (who.admin.role !== 'owner' && (filter.tenant === undefined || !sees(who.admin, filter.tenant))) {
      throw new LinkgateError('forbidden', 'choose one of your tenants: only owners read the whole audit trail', { status: 403 });
    }
    return filter;
  }

  app.get(
    '/audit',
    view(async (c, who) => {
      const visible = (await tenants.list()).filter((t) => sees(who.admin, t.id));
      const owner = who.admin.role === 'owner';
      if (!owner && c.req.query('tenant') === undefined && visible[0]) return c.redirect(`/admin/audit?tenant=${visible[0].id}`, 303);
      const filter = auditFilter(c, who);
      const page = await listAudit(db, filter);
      const query = new URLSearchParams(Object.entries(c.req.query()).filter(([name, value]) => value !== '' && name !== 'cursor'));
      const next = page.nextCursor ? `/admin/audit?${new URLSearchParams([...query, ['cursor', page.nextCursor]])}` : undefined;
      return c.html(
        <Page c={c} who={who} title="Audit trail" section="audit">
          <h1>Audit trail</h1>
          <form method="get" action="/admin/audit" class="inline">
            <div>
              <label for="a-tenant">Tenant</label>
              <select id="a-tenant" name="tenant">
                {owner ? <option value="">any</option> : null}
                {visible.map((t) => (
                  <option value={t.id} selected={filter.tenant === t.id}>
                    {t.id}
                  </option>
                ))}
              </select>
            </div>
            <div>
              <label for="a-action">Action</label>
              <select id="a-action" name="action">
                <option value="">any</option>
                {AUDIT_ACTIONS.map((name) => (
                  <option value={name} selected={filter.action === name}>
                    {name}
                  </option>
                ))}
              </select>
            </div>
            <div>
              <label for="a-actor">Actor</label>
              <input id="a-actor" name="actor" value={filter.actor ?? ''} placeholder="admin:discord:… or cli" />
            </div>
            <button type="submit">Filter</button>
          </form>
          <p>
            <a href={`/admin/audit.csv?${query}`} id="audit-csv">
              Export these rows as CSV
            </a>{' '}
            <span class="muted">(the export is itself recorded)</span>
          </p>
          <Table label="Audit trail" head={['When', 'Actor', 'Action', 'Tenant', 'Target', 'Outcome', 'Address']} rows={page.events.length} empty="No rows match.">
            {page.events.map((e) => (
              <tr>
                <td>{e.at.replace('T', ' ').slice(0, 19)}</td>
                <td>
                  <code>{e.actor}</code>
                </td>
                <td>{e.action}</td>
                <td>{e.tenant ?? '—'}</td>
                <td>{e.target ?? '—'}</td>
                <td>
                  {e.outcome}
                  {e.code ? ` (${e.code})` : ''}
                </td>
                <td>{e.clientAddress ?? '—'}</td>
              </tr>
            ))}
          </Table>
          {next ? <a href={next}>Older rows</a> : null}
        </Page>,
      );
    }),
  );

  /** The same rows as CSV, every page of them; the export is itself audited. */
  app.get('/audit.csv', async (c) => {
    // A download writes an audit row: only from the console's own pages, never a link on another site.
    const site = c.req.header('sec-fetch-site');
    if (site !== undefined && site !== 'same-origin' && site !== 'none') throw new LinkgateError('csrf_failed', 'this request came from another site', { status: 403 });
    const who = await signedIn(c);
    if (!who) throw notSignedIn();
    const { cursor: _, limit: __, ...filter } = auditFilter(c, who);
    const facts: Record<string, AuditFact> = {};
    for (const [name, value] of Object.entries(filter)) if (value !== undefined) facts[name] = value instanceof Date ? value.toISOString() : String(value);
    await audit(c, who.id, { action: 'audit.export', tenant: filter.tenant ?? null, target: 'audit', outcome: 'ok', detail: facts });
    return c.body(streamOf(csvExport(db, filter)), 200, { 'content-type': 'text/csv; charset=utf-8', 'content-disposition': 'attachment; filename="linkgate-audit.csv"' });
  });

  // A refusal on a console page is said in the console's words; the gateway's onError keeps the rest.
  app.onError((error, c) => {
    if (!isLinkgateError(error) || error.status >= 500) throw error;
    c.get('log')().info({ errorCode: error.code, status: error.status, message: error.message }, 'request refused');
    const title = error.status === 403 ? 'Not allowed' : error.status === 404 ? 'Not found' : error.status === 401 ? 'Not signed in' : 'This could not be done';
    return c.html(<MessagePage frame={frame(c)} title={title} lines={[error.message]} code={error.code} />, error.status as 400);
  });

  return {
    routes: app,

    /**
     * A console sign-in ended with the person known: an admin gets a session
     * and goes to the tenants; anyone else is refused, and the refusal audited.
     */
    async finish(c: Context<AppEnv>, outcome: Extract<Outcome, { kind: 'web_signed_in' }>): Promise<URL> {
      const id = `${outcome.provider.id}:${outcome.externalId}`;
      let admin = await adminOf(outcome.provider.id, outcome.externalId);
      const invite = inviteCookie.read(c);
      if (invite !== undefined) {
        inviteCookie.clear(c);
        // Spent by this sign-in only: an admin already gets nothing more from it, and leaves it for whom it was meant.
        if (!admin && (await acceptInvite(db, invite, id, new Date(now())))) {
          admin = { role: 'owner', provider: outcome.provider.id, externalId: outcome.externalId, tenants: null };
          await audit(c, id, { action: 'admin.invite_accept', tenant: null, target: 'console', outcome: 'ok' });
        }
      }
      if (!admin) {
        await audit(c, id, { action: 'admin.sign_in_refused', tenant: null, target: 'console', outcome: 'refused', code: 'not_an_admin' });
        return new URL('/admin/refused', deps.publicBaseUrl);
      }
      // A browser signing in again leaves its old session behind: it ends here.
      await sessions.revoke(cookie.read(c));
      const { token, session } = await sessions.create({ tenant: DEFAULT_TENANT, userId: outcome.userId, provider: outcome.provider.id, externalId: outcome.externalId });
      cookie.set(c, token, session.expiresAt);
      await audit(c, id, { action: 'admin.sign_in', tenant: null, target: 'console', outcome: 'ok', detail: { role: admin.role } });
      return new URL('/admin/tenants', deps.publicBaseUrl);
    },
  };
}

export type Console = ReturnType<typeof consoleRoutes>;
