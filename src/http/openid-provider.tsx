/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/**
 * Linkgate as an OpenID Provider, one per tenant (docs/sign-in.md): panva's
 * oidc-provider serves discovery, JWKS, authorization (code + PKCE), token,
 * refresh, revocation and RP-initiated logout; the login interaction is ours.
 * An app's authorization request lands on a chooser of the tenant's
 * providers (or goes straight to one with `idp=`), the provider's own flow
 * runs through the linking core as a sign-in flow, and its `done` says who
 * the person is (`signedIn` in src/core/linking.ts). The callback route then
 * hands the user id back here (`finishSignIn`) and the browser returns to
 * oidc-provider, which issues the code.
 *
 * A device (a CLI, a bot) signs in with the device authorization grant
 * (RFC 8628): the person types its code on our page at `/oidc/device`,
 * confirms, and the same chooser and provider sign-in follow. A third-party
 * app (`firstParty: false`) gets our consent page after the sign-in.
 *
 * Issuers: `PUBLIC_BASE_URL` for the default tenant, `PUBLIC_BASE_URL/t/<tenant>`
 * for the others. Each serves `/.well-known/openid-configuration` and
 * `/oidc/…` under its own path, so no tenant's routes clash with /oauth,
 * /api or /docs, nor with another tenant's.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpBindings } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { Hono, type Context } from 'hono';
import { raw } from 'hono/html';
import type { Logger } from 'pino';
import type Provider from 'oidc-provider';
import type { Configuration, KoaContextWithOIDC, LoginRecord } from 'oidc-provider';
import * as v from 'valibot';
import type { Brand } from '../config.ts';
import { randomToken, type Keyring } from '../core/crypto.ts';
import { LinkgateError } from '../core/errors.ts';
import { DEFAULT_TENANT, ProviderId } from '../core/ids.ts';
import type { Linking, Outcome } from '../core/linking.ts';
import type { LinkStore } from '../core/links.ts';
import { createOpenIdAdapter, createOpenIdApps, createSigningKeys, ID_TOKEN_TTL_SECONDS, SIGNING_ALG, type OpenIdApps } from '../core/openid-storage.ts';
import type { ProviderDirectory } from '../core/tenant-providers.ts';
import { TenantId, type TenantStore } from '../core/tenants.ts';
import { parseInput } from '../core/validation.ts';
import type { Db } from '../db/client.ts';
import { ConsentPage, DeviceCodePage, DeviceConfirmPage, DeviceDonePage, DeviceRestartPage, type CodeProblem } from './device-pages.tsx';
import { bodyLimit, pageHeadersFor, type AppEnv } from './middleware.ts';
import { readBrowserCookie, setBrowserCookie } from './oauth.tsx';
import { ChooserPage, Layout, MessagePage, type PageFrame } from './pages.tsx';

export interface OpenIdProvidersDeps {
  db: Db;
  keyring: Keyring;
  tenants: TenantStore;
  providers: ProviderDirectory;
  links: LinkStore;
  linking: Linking;
  publicBaseUrl: URL;
  /** Derives the key oidc-provider signs its cookies with. */
  cookieSecret: string;
  secureCookies: boolean;
  stateTtlSeconds: number;
  /** How long a device's code may wait for the person (RFC 8628 `expires_in`). */
  deviceCodeTtlSeconds: number;
  brand: Brand;
  brandOf: (tenant: string) => Brand | Promise<Brand>;
  logger: Logger;
  now: () => number;
}

type NodeEnv = AppEnv & { Bindings: Partial<HttpBindings> };

/**
 * What a route answers once oidc-provider has written the response itself:
 * @hono/node-server's "already sent" marker, with the status that was sent,
 * so the request's log line and metrics say what happened.
 */
function alreadySent(status: number): Response {
  return new Response(null, { status: status >= 200 && status <= 599 ? status : 200, headers: RESPONSE_ALREADY_SENT.headers });
}
/** Our cookie helpers read and set cookies only: any env will do. */
const asAppContext = (c: Context<NodeEnv>) => c as unknown as Context<AppEnv>;

/** Where a tenant's OpenID Provider lives, under `PUBLIC_BASE_URL`. */
export const issuerPath = (tenant: string) => (tenant === DEFAULT_TENANT ? '' : `/t/${tenant}`);

// oidc-provider's endpoints, under each issuer's path (discovery stays at /.well-known/openid-configuration).
const ROUTES = {
  authorization: '/oidc/auth',
  token: '/oidc/token',
  jwks: '/oidc/jwks',
  end_session: '/oidc/session/end',
  revocation: '/oidc/token/revocation',
  userinfo: '/oidc/me',
  introspection: '/oidc/token/introspection',
  pushed_authorization_request: '/oidc/request',
  registration: '/oidc/reg',
  backchannel_authentication: '/oidc/backchannel',
  code_verification: '/oidc/device',
  device_authorization: '/oidc/device/auth',
  challenge: '/oidc/challenge',
} satisfies Configuration['routes'];

const OIDC_METHODS = ['GET', 'HEAD', 'POST', 'OPTIONS'];

const TTL = {
  AccessToken: 3600,
  AuthorizationCode: 60,
  IdToken: ID_TOKEN_TTL_SECONDS,
  RefreshToken: 30 * 24 * 3600,
  Interaction: 30 * 60,
  Session: 14 * 24 * 3600,
  Grant: 30 * 24 * 3600,
};

const Amr = v.array(v.string());
const Uid = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{1,64}$/, 'the sign-in id is not valid'));
const ChosenProvider = v.object({ provider: v.pipe(ProviderId, v.description('the provider chosen on the sign-in page')) });
const Consent = v.object({
  decision: v.picklist(['allow', 'deny'], 'decision must be allow or deny'),
  csrf: v.pipe(v.string('the form is missing its token'), v.maxLength(128, 'the form token is too long')),
});
/** `verification_uri_complete`'s code, shown in the input for the person to check (oidc-provider would submit it at once). */
const PrefilledCode = v.optional(v.pipe(v.string(), v.maxLength(64, 'the code is too long')));

/** What the code input page says for each of oidc-provider's re-render errors (lib/helpers/re_render_errors.js). */
const CODE_PROBLEMS: Record<string, CodeProblem> = {
  NoCodeError: { title: 'Enter the code', line: 'Type the code your device shows, then press Continue.' },
  NotFoundError: { title: 'That code is not right', line: 'No device is waiting with this code. Check it against your device and try again.' },
  ExpiredError: { title: 'That code has expired', line: 'Codes last a few minutes. Start the sign-in again on your device to get a new code.' },
  AlreadyUsedError: { title: 'That code was already used', line: 'Each code works once. Start the sign-in again on your device to get a new code.' },
  // A form whose secret no longer matches (another tab, or long ago): a fresh form.
  InvalidRequest: { title: 'Please enter the code again', line: 'This form was opened in another tab or too long ago.' },
};

/**
 * The upstream provider of this sign-in: oidc-provider keeps the login's
 * `amr` with the session and with every code and refresh token it leads to.
 */
function idpOf(ctx: KoaContextWithOIDC, token?: LoginRecord): string | undefined {
  const entities = ctx.oidc?.entities;
  const amr = token?.amr ?? entities?.AuthorizationCode?.amr ?? entities?.DeviceCode?.amr ?? entities?.RefreshToken?.amr ?? ctx.oidc?.session?.amr;
  const parsed = v.safeParse(Amr, amr);
  return parsed.success ? parsed.output[0] : undefined;
}

export function createOpenIdProviders(deps: OpenIdProvidersDeps) {
  const { db, keyring, now } = deps;
  const apps = createOpenIdApps(db, keyring, now);
  const signingKeys = createSigningKeys(db, keyring, now);
  const base = deps.publicBaseUrl.href.replace(/\/$/, '');
  const cookieKey = createHmac('sha256', deps.cookieSecret).update('linkgate openid provider cookies v1').digest('base64url');
  /** A tenant's provider, until its keys change by themselves (`changesAt`) or the tenant changes. */
  type Made = { provider: Provider; handle: ReturnType<Provider['callback']>; changesAt: number | undefined };
  const made = new Map<string, Promise<Made>>();
  deps.tenants.onChange((tenant) => made.delete(tenant));
  /** The code in a `verification_uri_complete` link, by request, for the input page to show. */
  const prefilled = new WeakMap<IncomingMessage, string>();
  /** The consent form's token: bound to the interaction, which is bound to this browser's cookie. */
  const consentToken = (tenant: string, uid: string) => createHmac('sha256', cookieKey).update(`consent\0${tenant}\0${uid}`).digest('base64url');

  /** The user's link with the provider they signed in with: where `external_id` and `name` come from. */
  const linkOf = (tenant: string, userId: string, idp: string | undefined) => (idp ? deps.links.get({ tenant, userId, provider: idp }) : Promise.resolve(undefined));

  async function create(tenant: string): Promise<Made> {
    const path = issuerPath(tenant);
    const jwks = await signingKeys.jwks(tenant);
    // Loaded on the first sign-in, not at start-up: a gateway nobody signs in to does not carry it (about 20 MB).
    const { default: OidcProvider, interactionPolicy } = await import('oidc-provider');
    const policy = interactionPolicy.base();
    // A device's sign-in always asks who is signing in: the browser's session may be someone else's.
    policy.get('login')?.checks.add(
      new interactionPolicy.Check('device_sign_in', 'a device sign-in asks who signs in', (ctx) => /^(code_verification|device_resume)$/.test(ctx.oidc.route ?? '') && !ctx.oidc.result?.login),
    );
    // Forms post to a path: the page works at whatever address reached it.
    const codePage = `${path}${ROUTES.code_verification}`;
    const provider = new OidcProvider(`${base}${path}`, {
      adapter: createOpenIdAdapter(db, keyring, tenant, apps, now),
      jwks: { keys: jwks.keys },
      cookies: { keys: [cookieKey] },
      routes: ROUTES,
      claims: { openid: ['sub', 'idp', 'external_id'], profile: ['name', 'preferred_username'] },
      scopes: ['openid', 'offline_access', 'profile'],
      // The profile claims go in the ID token too: apps rarely call userinfo, and it is off (see `features`).
      conformIdTokenClaims: false,
      responseTypes: ['code'],
      subjectTypes: ['public', 'pairwise'],
      // An app with `subject: "external"` sees the provider's account id as `sub` (oidc-provider's pairwise hook).
      pairwiseIdentifier: async (ctx, accountId) => {
        const link = await linkOf(tenant, accountId, idpOf(ctx));
        if (!link) throw new LinkgateError('not_linked', 'the account this sign-in used is no longer linked');
        return link.externalId;
      },
      enabledJWA: { idTokenSigningAlgValues: [SIGNING_ALG] },
      pkce: { required: (_ctx, client) => client.clientAuthMethod === 'none' },
      extraParams: ['idp'],
      features: {
        devInteractions: { enabled: false },
        deviceFlow: {
          enabled: true,
          // RFC 8628 §6.1: eight letters without vowels, shown as ABCD-EFGH.
          charset: 'base-20',
          mask: '****-****',
          userCodeInputSource: async (ctx: KoaContextWithOIDC, _form: string, out: { error: string } | undefined, error: Error & { userCode?: string } | undefined) => {
            const frame = await frameFor(ctx, tenant);
            const problem = error ? CODE_PROBLEMS[error.name] : undefined;
            const session = ctx.oidc.session;
            if (error && session && session.exp === undefined) {
              // A form posted with no session of this browser (its xsrf check failed): oidc-provider just
              // made a session for a new form secret but cannot keep it (its session was never stored),
              // so the person starts again from the code page, which makes one.
              session.touched = false;
              ctx.status = 400;
              ctx.body = page(<DeviceRestartPage frame={frame} href={codePage} />);
            } else if (error?.name === 'AbortedError') {
              ctx.body = page(<MessagePage frame={frame} title="Sign-in cancelled" lines={['Nothing was shared with the app, and your device has been told.', 'You can close this tab.']} />);
            } else if (error && !problem) {
              ctx.body = page(
                <MessagePage frame={frame} title="Sign-in could not be completed" lines={['Start the sign-in again on your device to get a new code.', `(${out?.error ?? 'server_error'})`]} code={out?.error} />,
              );
            } else {
              ctx.body = page(
                <DeviceCodePage frame={frame} action={codePage} xsrf={ctx.oidc.session?.state?.secret ?? ''} userCode={error?.userCode ?? prefilled.get(ctx.req)} problem={problem} />,
              );
            }
          },
          userCodeConfirmSource: async (ctx: KoaContextWithOIDC, _form: string, client: { clientId: string; clientName?: string }, _deviceInfo: unknown, userCode: string) => {
            const frame = await frameFor(ctx, tenant);
            ctx.body = page(
              <DeviceConfirmPage frame={frame} action={codePage} xsrf={ctx.oidc.session?.state?.secret ?? ''} userCode={userCode} appName={client.clientName ?? client.clientId} />,
            );
          },
          successSource: async (ctx: KoaContextWithOIDC) => {
            const client = ctx.oidc.client;
            ctx.body = page(<DeviceDonePage frame={await frameFor(ctx, tenant)} appName={client?.clientName ?? client?.clientId ?? 'the app'} />);
          },
        },
        revocation: { enabled: true },
        // Which provider a user signed in with is known to codes and refresh tokens, not to access tokens.
        userinfo: { enabled: false },
        rpInitiatedLogout: {
          enabled: true,
          logoutSource: async (ctx: KoaContextWithOIDC, form: string) => {
            const frame = await frameFor(ctx, tenant);
            ctx.body = page(
              <Layout title="Sign out" frame={frame}>
                <h1>Sign out?</h1>
                {raw(form)}
                <div class="actions">
                  <button type="submit" form="op.logoutForm" value="yes" name="logout">
                    Sign out
                  </button>
                  <button type="submit" form="op.logoutForm" class="secondary">
                    Stay signed in
                  </button>
                </div>
              </Layout>,
            );
          },
          postLogoutSuccessSource: async (ctx: KoaContextWithOIDC) => {
            ctx.body = page(<MessagePage frame={await frameFor(ctx, tenant)} title="Signed out" lines={['You are signed out. You can close this tab.']} />);
          },
        },
      },
      interactions: { url: (_ctx, interaction) => `${path}/oidc/interaction/${interaction.uid}`, policy },
      findAccount: async (ctx, sub, token) => {
        const idp = idpOf(ctx, token);
        const link = await linkOf(tenant, sub, idp);
        // Unlinked since: the sign-in (and its refresh tokens) end with the link.
        if (!link) return undefined;
        return {
          accountId: sub,
          claims: async () => ({ sub, idp: link.provider, external_id: link.externalId, ...(link.externalName ? { name: link.externalName } : {}) }),
        };
      },
      // First-party apps are the tenant's own: no consent screen, every scope they ask for.
      loadExistingGrant: async (ctx) => {
        const client = ctx.oidc.client;
        const session = ctx.oidc.session;
        if (!client || !session?.accountId) return undefined;
        const grantId = ctx.oidc.result?.consent?.grantId ?? session.grantIdFor(client.clientId);
        const existing = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
        const app = await apps.get(tenant, client.clientId);
        if (!app?.firstParty) return existing;
        const grant = existing ?? new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
        grant.addOIDCScope('openid profile offline_access');
        await grant.save();
        return grant;
      },
      issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
      expiresWithSession: async () => false,
      // A browser app may call the token endpoint from the origins it redirects to.
      clientBasedCORS: (_ctx, origin, client) => client.redirectUris?.some((uri) => URL.canParse(uri) && new URL(uri).origin === origin) ?? false,
      renderError: async (ctx, out) => {
        const frame = await frameFor(ctx, tenant);
        ctx.body = page(
          <MessagePage frame={frame} title="Sign-in could not start" lines={['The app sent a request this gateway cannot accept. Go back to the app and try again.', `(${out.error_description ?? out.error})`]} code={out.error} />,
        );
      },
      ttl: { ...TTL, DeviceCode: deps.deviceCodeTtlSeconds },
    });
    // The address people use is PUBLIC_BASE_URL's, whatever reached the socket (see `nodeRequest`).
    provider.proxy = true;
    provider.on('server_error', (_ctx: unknown, error: Error) => deps.logger.error({ tenant, cause: { name: error.name, message: error.message } }, 'OpenID Provider error'));
    return { provider, handle: provider.callback(), changesAt: jwks.changesAt };
  }

  const page = (element: unknown) => `<!DOCTYPE html>${String(element)}`;

  /**
   * The frame of a page oidc-provider sends itself (our page middleware
   * never sees it): the same headers as every page, a nonce of its own.
   */
  async function frameFor(ctx: { type: string; set(field: string, value: string): void }, tenant: string): Promise<PageFrame> {
    const nonce = randomToken(16);
    ctx.type = 'html';
    for (const [name, value] of Object.entries(pageHeadersFor(nonce))) ctx.set(name, value);
    return { nonce, brand: await deps.brandOf(tenant) };
  }

  /**
   * The tenant's OpenID Provider, made once and kept until the tenant changes
   * or its keys do (a next key starts signing, a retired one leaves the JWKS).
   * No such tenant: 404.
   */
  async function providerOf(tenant: string): Promise<Made> {
    const entry = made.get(tenant);
    if (entry) {
      const current = await entry;
      if (current.changesAt === undefined || now() < current.changesAt) return current;
      if (made.get(tenant) === entry) made.delete(tenant);
      return providerOf(tenant);
    }
    const making = (async () => {
      if (tenant !== DEFAULT_TENANT && !(await deps.tenants.get(tenant))) throw new LinkgateError('tenant_not_found', 'there is no such tenant', { status: 404 });
      return create(tenant);
    })();
    made.set(tenant, making);
    making.catch(() => made.delete(tenant));
    return making;
  }

  /**
   * The Node request and response under the request, as oidc-provider sees
   * them: the path without the tenant's prefix (kept in `originalUrl`, its
   * mount path) and the host and scheme of PUBLIC_BASE_URL.
   */
  function nodeRequest(c: Context<NodeEnv>, tenant: string): { req: IncomingMessage & { originalUrl?: string }; res: ServerResponse } {
    const req: (IncomingMessage & { originalUrl?: string }) | undefined = c.env?.incoming;
    const res = c.env?.outgoing;
    if (!req || !res) throw new LinkgateError('not_found', 'the OpenID Provider is served over HTTP only');
    const path = issuerPath(tenant);
    if (req.originalUrl === undefined) {
      req.originalUrl = req.url ?? '/';
      req.url = req.originalUrl.slice(path.length) || '/';
    }
    req.headers['x-forwarded-proto'] = deps.publicBaseUrl.protocol.slice(0, -1);
    req.headers['x-forwarded-host'] = deps.publicBaseUrl.host;
    return { req, res };
  }

  const tenantOf = (c: Context<NodeEnv>) => {
    const param = c.req.param('tenant');
    return param === undefined ? DEFAULT_TENANT : parseInput(TenantId, param);
  };

  /** Hands the request to the tenant's oidc-provider, which answers it; `prepare` may adjust it first. */
  async function handOver(c: Context<NodeEnv>, prepare?: (req: IncomingMessage) => void) {
    const tenant = tenantOf(c);
    const { handle } = await providerOf(tenant);
    const { req, res } = nodeRequest(c, tenant);
    prepare?.(req);
    await handle(req, res);
    return alreadySent(res.statusCode);
  }
  const serve = (c: Context<NodeEnv>) => handOver(c);

  /**
   * The code input page. oidc-provider would submit a `?user_code=` at
   * once (its auto-posting form, RFC 8628 §3.3.1); we show it in the input
   * instead, for the person to compare with the device and press Continue.
   */
  function serveCodeInput(c: Context<NodeEnv>) {
    const userCode = parseInput(PrefilledCode, c.req.query('user_code'));
    return handOver(c, (req) => {
      if (userCode === undefined) return;
      prefilled.set(req, userCode);
      req.url = (req.url ?? '/').replace(/\?.*$/, '');
    });
  }

  /** A page's form post: only a form, read as one. */
  async function readForm(c: Context<NodeEnv>): Promise<URLSearchParams> {
    if (!/^application\/x-www-form-urlencoded\b/i.test(c.req.header('content-type') ?? '')) throw new LinkgateError('bad_request', 'expected a form (application/x-www-form-urlencoded)');
    return new URLSearchParams(await c.req.text());
  }

  /** The interaction this browser holds (oidc-provider's interaction cookie), or `sign_in_expired`. */
  async function interactionOf(c: Context<NodeEnv>, tenant: string) {
    const uid = parseInput(Uid, c.req.param('uid'));
    const { provider } = await providerOf(tenant);
    const { req, res } = nodeRequest(c, tenant);
    const details = await provider.interactionDetails(req, res).catch(() => undefined);
    if (!details || details.uid !== uid) throw new LinkgateError('sign_in_expired', 'this sign-in request expired, was finished, or was started in another browser');
    const clientId = v.parse(v.string(), details.params.client_id);
    const app = await apps.get(tenant, clientId);
    if (!app) throw new LinkgateError('sign_in_expired', 'this app no longer exists');
    return { uid, details, app, provider, req, res };
  }

  /** What a third-party app receives, in words, for the scopes it asked for (see `claims` above). */
  function accessOf(scope: unknown): string[] {
    const asked = new Set(typeof scope === 'string' ? scope.split(' ') : []);
    return [
      'Who you are: an id for you, the service you sign in with, and your account id there',
      ...(asked.has('profile') ? ['Your name at that service'] : []),
      // The refresh token's life: the app keeps this without asking again (signing out here does not end it).
      `All this again, without asking you, for up to ${TTL.RefreshToken / 86400} days`,
    ];
  }

  /** The providers an app's sign-in offers: the tenant's configured ones, narrowed to the app's list. */
  async function offered(tenant: string, app: { providers: string[] | null }) {
    const registry = await deps.providers.of(tenant);
    return registry.list().filter((p) => p.instance !== undefined && (app.providers === null || app.providers.includes(p.id)));
  }

  /** Opens the sign-in flow for `providerId` in this browser and sends it to the provider (or our form). */
  async function start(c: Context<NodeEnv>, tenant: string, uid: string, app: { providers: string[] | null }, providerId: string) {
    if (!(await offered(tenant, app)).some((p) => p.id === providerId)) {
      throw new LinkgateError('sign_in_provider', 'the app does not offer this way of signing in', { provider: providerId });
    }
    const browser = readBrowserCookie(asAppContext(c), deps.secureCookies) ?? randomToken(32);
    const started = await deps.linking.startSignIn(tenant, providerId, browser, uid);
    setBrowserCookie(asAppContext(c), browser, deps);
    if (started.kind === 'redirect') return c.redirect(started.url.href, 303);
    if (started.kind === 'show') return c.redirect(`/oauth/${providerId}/continue?state=${encodeURIComponent(started.state)}`, 303);
    throw new LinkgateError('internal_error', 'a sign-in cannot start this way');
  }

  function routes() {
    const app = new Hono<NodeEnv>();

    for (const prefix of ['', '/t/:tenant']) {
      app.get(`${prefix}/oidc/interaction/:uid`, async (c) => {
        const tenant = tenantOf(c);
        const { uid, details, app: client } = await interactionOf(c, tenant);
        const frame = { nonce: c.get('secureHeadersNonce') ?? '', brand: await deps.brandOf(tenant) };
        if (details.prompt.name === 'consent') {
          return c.html(
            <ConsentPage
              frame={frame}
              action={`${issuerPath(tenant)}/oidc/interaction/${uid}/consent`}
              csrf={consentToken(tenant, uid)}
              appName={client.name}
              operator={frame.brand.name}
              access={accessOf(details.params.scope)}
            />,
          );
        }
        const idp = details.params.idp;
        if (typeof idp === 'string') return start(c, tenant, uid, client, parseInput(ProviderId, idp));
        const choices = await offered(tenant, client);
        return c.html(
          <ChooserPage
            frame={frame}
            appName={client.name}
            action={`${issuerPath(tenant)}/oidc/interaction/${uid}`}
            providers={choices.map((p) => ({ id: p.id, displayName: p.displayName }))}
          />,
        );
      });

      app.post(`${prefix}/oidc/interaction/:uid`, bodyLimit(16 * 1024), async (c) => {
        const tenant = tenantOf(c);
        const form = await readForm(c);
        const { provider } = parseInput(ChosenProvider, { provider: form.get('provider') ?? undefined });
        const { uid, details, app: client } = await interactionOf(c, tenant);
        if (details.prompt.name !== 'login') throw new LinkgateError('sign_in_expired', 'this sign-in has moved on: reload the page');
        return start(c, tenant, uid, client, provider);
      });

      /** A third-party app's consent: Allow grants what it asked for; Deny sends it `access_denied`. */
      app.post(`${prefix}/oidc/interaction/:uid/consent`, bodyLimit(16 * 1024), async (c) => {
        const tenant = tenantOf(c);
        const form = await readForm(c);
        const { decision, csrf } = parseInput(Consent, { decision: form.get('decision') ?? undefined, csrf: form.get('csrf') ?? undefined });
        const { uid, details, provider, req, res } = await interactionOf(c, tenant);
        const expected = Buffer.from(consentToken(tenant, uid));
        const presented = Buffer.from(csrf);
        if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) throw new LinkgateError('csrf_failed', 'the consent did not come from the page this browser was shown');
        const accountId = details.session?.accountId;
        if (details.prompt.name !== 'consent' || !accountId) throw new LinkgateError('sign_in_expired', 'this sign-in has moved on: reload the page');
        if (decision === 'deny') {
          // OpenID Connect Core §3.1.2.6: the app hears `access_denied`.
          const returnTo = await provider.interactionResult(req, res, { error: 'access_denied', error_description: 'the person did not allow this app' }, { mergeWithLastSubmission: false });
          return c.redirect(returnTo, 303);
        }
        const grant = (details.grantId ? await provider.Grant.find(details.grantId) : undefined) ?? new provider.Grant({ accountId, clientId: v.parse(v.string(), details.params.client_id) });
        const { missingOIDCScope, missingOIDCClaims } = details.prompt.details;
        if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
        if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
        const grantId = await grant.save();
        const returnTo = await provider.interactionResult(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
        return c.redirect(returnTo, 303);
      });

      app.get(`${prefix}/oidc/device`, serveCodeInput);

      // The methods oidc-provider answers (OPTIONS: CORS preflights of browser apps), named so that the
      // request's metrics and traces carry this route's pattern (`app.all` routes look like middleware).
      app.on(OIDC_METHODS, `${prefix}/.well-known/openid-configuration`, serve);
      app.on(OIDC_METHODS, `${prefix}/oidc/*`, serve);
    }
    return app;
  }

  return {
    apps,
    routes,

    /** The tenants' signing keys (docs/sign-in.md, "Rotating signing keys"). */
    signingKeys: {
      list: signingKeys.list,
      /** Makes the next key; every instance makes its provider again with it. */
      async rotate(tenant: string, publishSeconds?: number) {
        const key = await signingKeys.rotate(tenant, publishSeconds);
        await deps.tenants.announce(tenant);
        return key;
      },
    },

    /**
     * A sign-in flow ended with the person known: their user id (and the
     * provider, as `amr`) become the interaction's login, and the browser
     * goes back to oidc-provider to receive the code.
     */
    async finishSignIn(outcome: Extract<Outcome, { kind: 'signed_in' }>): Promise<URL> {
      const { provider } = await providerOf(outcome.tenant);
      const interaction = await provider.Interaction.find(outcome.signIn);
      if (!interaction) throw new LinkgateError('sign_in_expired', 'the app\'s sign-in request expired before the provider answered');
      interaction.result = { login: { accountId: outcome.userId, amr: [outcome.provider.id] } };
      await interaction.save(Math.max(1, interaction.exp - Math.floor(now() / 1000)));
      return new URL(interaction.returnTo);
    },
  };
}

export type OpenIdProviders = ReturnType<typeof createOpenIdProviders>;
export type { OpenIdApps };
