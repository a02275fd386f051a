/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/**
 * What the console's screens share: its constants and dependencies, who is
 * signed in (`signedIn`), the role checks (`sees`, `writes`), `view` (a page:
 * signed in, the path's tenant one this admin sees), `change` (a write: Origin,
 * CSRF token, role, then one audit row whatever its end), and the signed-in
 * frame (`Page`). Each screen's module (src/http/console/*.tsx) takes it.
 */
import type { Context } from 'hono';
import type { Logger } from 'pino';
import * as v from 'valibot';
import type { Brand, ConsoleAdmin } from '../../config.ts';
import { outcomeOf, record, type AuditAction, type AuditFact } from '../../core/audit.ts';
import { invitedOwner, invitedProviders } from '../../core/console-invites.ts';
import { LinkgateError } from '../../core/errors.ts';
import { createFormTokens, FORM_TOKEN_FIELD, FormToken } from '../../core/form-tokens.ts';
import type { Linking } from '../../core/linking.ts';
import type { LinkStore } from '../../core/links.ts';
import type { Metrics } from '../../core/metrics.ts';
import type { OpenIdApps } from '../../core/openid-storage.ts';
import type { ProviderDirectory } from '../../core/tenant-providers.ts';
import { TenantId, type TenantStore } from '../../core/tenants.ts';
import type { TokenService } from '../../core/tokens.ts';
import { parseInput } from '../../core/validation.ts';
import { createWebSessions, type WebSession } from '../../core/web-sessions.ts';
import type { Db } from '../../db/client.ts';
import { logCause } from '../../db/errors.ts';
import { checkCsrfToken, checkSameOrigin, csrfTokenOf, readForm, sessionCookie } from '../cookie-session.ts';
import type { AppEnv } from '../middleware.ts';
import type { PageFrame } from '../pages.tsx';
import { SignedInLayout, type NavItem } from '../signed-in-layout.tsx';

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
  /** LINKGATE_METRICS: an unlink here counts as `via="console"`. */
  metrics?: Metrics | undefined;
  now: () => number;
}

/** Who is signed in, on this request. */
export interface SignedIn {
  admin: ConsoleAdmin;
  session: WebSession;
  token: string;
  csrf: string;
  /** `discord:80351110224678912`. */
  id: string;
}

/** What a change adds to its audit row (as the operator API's `AuditNote`). */
export interface Note {
  tenant?: string;
  target?: string;
  detail?: Record<string, AuditFact>;
}

/**
 * A one-time form sent again: nothing was made. `made` is what its first send
 * made (its audit target), when known; `back` is the page to go on from.
 */
export class FormAlreadySent extends LinkgateError {
  constructor(
    readonly back: string,
    made: string | null,
  ) {
    super('form_already_sent', alreadySentMessage(made));
  }
}

/**
 * What the 409 page says. The first send's answer held the secret; a reload
 * shows this page after it, but a double click shows it instead of it, so
 * the page names what was made and how to undo it.
 */
function alreadySentMessage(made: string | null): string {
  const colon = made?.indexOf(':') ?? -1;
  const [kind, id] = made && colon > 0 ? [made.slice(0, colon), made.slice(colon + 1)] : ['', ''];
  const named: Record<string, [string, string]> = {
    api_key: [`API key ${id}`, `revoke ${id} and make another`],
    context_secret: [`context secret ${id}`, `retire ${id} and make another`],
    app: [`app ${id}`, `delete ${id} and make another`],
    invite: [`invite ${id}`, `revoke ${id} and make another`],
    link: ['a relink URL', 'make another (the first expires unused)'],
  };
  const known = named[kind];
  // The page's title already says the form was sent before: the message says what came of it.
  if (!known) return 'nothing new was made. To make another, open the page again';
  return `its first send made ${known[0]}, shown once in the answer to that send, and nothing new was made. If that answer was not shown (a second click), ${known[1]} from the page`;
}

/** The console's shared state and helpers, made once per gateway (src/http/console/index.tsx). */
export function createConsoleKit(deps: ConsoleDeps) {
  const { db, tenants, now } = deps;
  const origin = deps.publicBaseUrl.origin;
  const sessions = createWebSessions(db, { ...CONSOLE_SESSION, now });
  // A spent token is remembered as long as a session that holds its form can last.
  const forms = createFormTokens(db, CONSOLE_SESSION.ttlSeconds, now);
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

  /** Runs a bookkeeping write whose failure must not replace the answer: logged instead. */
  async function noting(c: Context<AppEnv>, write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } catch (error) {
      c.get('log')().error({ cause: logCause(error) }, 'form token not updated');
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

  /**
   * A change: same origin, the session's CSRF token, a role that may make it
   * (`owner`: only owners; `tenant`: writers of the path's tenant), then one
   * audit row whatever its end, as the operator API writes.
   *
   * `once`: the change makes something shown once, and its form carries a
   * one-time token (`OnceField`): a second request with the same token (the
   * answer page reloaded, a double click) makes nothing and is answered 409,
   * naming what the first made, with a link to the `back` page. A refused
   * change gives its token back, so the form, corrected, can be sent again.
   */
  const change =
    (action: AuditAction, who_may: 'owner' | 'tenant', handle: (c: Context<AppEnv>, form: URLSearchParams, who: SignedIn, note: Note) => Promise<Response>, options: { once?: (c: Context<AppEnv>) => string } = {}) =>
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
      let spent: string | undefined;
      try {
        if (who_may === 'owner' ? who.admin.role !== 'owner' : tenant === null || !writes(who.admin, tenant)) throw forbidden('make this change');
        if (options.once) {
          const token = parseInput(FormToken, form.get(FORM_TOKEN_FIELD) ?? '');
          const first = await forms.spend(token);
          if (first !== true) {
            if (first.made) note.target = first.made;
            throw new FormAlreadySent(options.once(c), first.made);
          }
          spent = token;
        }
        const answer = await handle(c, form, who, note);
        if (spent !== undefined && note.target) await noting(c, () => forms.made(spent!, note.target!));
        return answer;
      } catch (error) {
        end = outcomeOf(error);
        // Refused: nothing was made, and the corrected form may be sent again. A failure keeps the token (it may have made something).
        if (spent !== undefined && end.outcome === 'refused') await noting(c, () => forms.release(spent!));
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

  return { deps, db, tenants, now, origin, sessions, cookie, signedInUrl, inviteCookie, adminOf, configuredProviders, signInProviders, sees, writes, frame, audit, signedIn, notSignedIn, forbidden, noTenant, view, change, tenantPath, Page };
}

export type ConsoleKit = ReturnType<typeof createConsoleKit>;
