/** @jsxRuntime automatic @jsxImportSource hono/jsx */
import { Hono, type Context } from 'hono';
import { getCookie, setCookie } from 'hono/cookie';
import * as v from 'valibot';
import { randomToken } from '../core/crypto.ts';
import { LinkgateError } from '../core/errors.ts';
import { ProviderId } from '../core/ids.ts';
import type { LinkContextFormat, PresentedContext } from '../core/link-context.ts';
import { requireProvider, type Linking, type Outcome, type Reopened } from '../core/linking.ts';
import type { Registry } from '../registry.ts';
import { parseInput } from '../core/validation.ts';
import type { StepInput } from '../provider.ts';
import { bodyLimit, type AppEnv } from './middleware.ts';
import type { Brand } from '../config.ts';
import { CancelledPage, ConfirmPage, FormPage, LinkedPage, MessagePage, WaitPage, type PageFrame } from './pages.tsx';

/**
 * The cookie that binds a flow to the browser that started it. Over https it
 * is `__Host-linkgate_browser`: Secure, `Path=/`, no `Domain`, so a sibling
 * subdomain cannot plant one (browsers enforce the prefix; RFC 6265bis
 * §4.1.3.2). Over plain http (loopback development) the prefix is not
 * allowed, and the cookie keeps its name and `Path=/oauth`.
 */
export const BROWSER_COOKIE = 'linkgate_browser';

const State = v.optional(v.pipe(v.string(), v.maxLength(256, 'state is too long')));
const ContextText = v.pipe(v.string(), v.minLength(1, 'the link has no context'), v.maxLength(4096, 'the context is too long'));
const Csrf = v.optional(v.pipe(v.string(), v.maxLength(128, 'the confirmation token is too long')));
const BrowserId = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/));

/** This browser's id, from its cookie (see `BROWSER_COOKIE`). */
export function readBrowserCookie(c: Context<AppEnv>, secureCookies: boolean): string | undefined {
  const value = getCookie(c, BROWSER_COOKIE, secureCookies ? 'host' : undefined);
  return v.is(BrowserId, value) ? value : undefined;
}

/** Sets (or renews) the browser cookie for as long as a flow started now can live. */
export function setBrowserCookie(c: Context<AppEnv>, browser: string, options: { secureCookies: boolean; stateTtlSeconds: number }): void {
  setCookie(c, BROWSER_COOKIE, browser, {
    httpOnly: true,
    sameSite: 'Lax', // sent on the provider's top-level redirect back to us, not on cross-site POSTs
    maxAge: options.stateTtlSeconds,
    ...(options.secureCookies ? { prefix: 'host', secure: true, path: '/' } : { path: '/oauth' }),
  });
}

export interface OauthRoutesDeps {
  linking: Linking;
  /** The link-context formats links may carry, each in its own query parameter. */
  formats: readonly LinkContextFormat[];
  registry: Registry;
  stateTtlSeconds: number;
  secureCookies: boolean;
  /** The gateway's branding (LINKGATE_BRAND_*), on pages not yet tied to a tenant. */
  brand: Brand;
  /** A tenant's branding: its own when it has one, else the gateway's. */
  brandOf?: (tenant: string) => Brand | Promise<Brand>;
  /** Hands a finished sign-in back to the OpenID Provider (src/http/openid-provider.tsx): where the browser goes next. */
  finishSignIn?: (outcome: Extract<Outcome, { kind: 'signed_in' }>) => Promise<URL>;
  /** Starts the cookie session of a finished web-session sign-in on this answer (src/http/web-session.ts): where the browser goes next. */
  finishWebSession?: (c: Context<AppEnv>, outcome: Extract<Outcome, { kind: 'web_signed_in' }>) => Promise<URL>;
}

function providerParam(c: Context<AppEnv>): string {
  const id = c.req.param('provider');
  if (!v.is(ProviderId, id)) throw new LinkgateError('unknown_provider', 'there is no such provider');
  return id;
}

/** Our pages post forms; anything else is not from them. */
async function readForm(c: Context<AppEnv>): Promise<URLSearchParams> {
  if (!/^application\/x-www-form-urlencoded\b/i.test(c.req.header('content-type') ?? '')) {
    throw new LinkgateError('bad_request', 'expected a form (application/x-www-form-urlencoded)');
  }
  return new URLSearchParams(await c.req.text());
}

export function oauthRoutes(deps: OauthRoutesDeps) {
  const { linking, formats } = deps;

  /**
   * The link context a link (or the confirmation form) carries, in whichever
   * format's parameter it is. Its format's words for "get a new link" go to
   * the error pages of this request.
   */
  function presentedContext(c: Context<AppEnv>, read: (name: string) => string | undefined): PresentedContext {
    const present = formats.filter((format) => read(format.param) !== undefined);
    if (present.length > 1) throw new LinkgateError('context_invalid', 'the link carries more than one context');
    const format = present[0];
    if (!format) throw new LinkgateError('bad_request', 'the link has no context');
    if (format.nextStep) c.set('nextStep', format.nextStep);
    return { format, token: parseInput(ContextText, read(format.param)) };
  }
  const app = new Hono<AppEnv>();
  const browserId = (c: Context<AppEnv>) => readBrowserCookie(c, deps.secureCookies);
  const bindBrowser = (c: Context<AppEnv>, browser: string) => setBrowserCookie(c, browser, deps);

  const frame = (c: Context<AppEnv>, brand: Brand = deps.brand): PageFrame => ({ nonce: c.get('secureHeadersNonce') ?? '', brand });
  /** The page frame of a tenant's page: its branding. */
  const tenantFrame = async (c: Context<AppEnv>, tenant: string): Promise<PageFrame> => frame(c, deps.brandOf ? await deps.brandOf(tenant) : deps.brand);

  async function render(c: Context<AppEnv>, provider: string, outcome: Outcome) {
    const action = `/oauth/${provider}/callback`;
    const cancelAction = `/oauth/${provider}/cancel`;
    switch (outcome.kind) {
      // 303 so a browser that POSTed a form follows with GET (RFC 9110 §15.4.4).
      case 'redirect':
        return c.redirect(outcome.url.href, 303);
      case 'form':
        return c.html(<FormPage frame={await tenantFrame(c, outcome.tenant)} action={action} cancelAction={cancelAction} state={outcome.state} form={outcome.form} values={outcome.values ?? {}} />);
      case 'wait': {
        const pollUrl = `/oauth/${provider}/poll?state=${encodeURIComponent(outcome.state)}`;
        return c.html(
          <WaitPage frame={await tenantFrame(c, outcome.tenant)} action={action} cancelAction={cancelAction} cancelledUrl={`/oauth/${provider}/cancelled`} pollUrl={pollUrl} state={outcome.state} display={outcome.display} pollMs={outcome.pollMs} />,
        );
      }
      case 'signed_in': {
        if (!deps.finishSignIn) throw new LinkgateError('not_found', 'sign-in is not served here');
        return c.redirect((await deps.finishSignIn(outcome)).href, 303);
      }
      case 'logged_in':
        // An app's RPC sign-in: the app has its token (AwaitLogin); the person goes back to it.
        return c.html(
          <MessagePage
            frame={await tenantFrame(c, outcome.tenant)}
            title="Signed in"
            lines={[`You are signed in with ${outcome.provider.displayName}${outcome.accountName ? ` as ${outcome.accountName}` : ''}.`, 'You can close this tab and go back to the app.']}
          />,
        );
      case 'web_signed_in': {
        if (!deps.finishWebSession) throw new LinkgateError('not_found', 'sign-in is not served here');
        return c.redirect((await deps.finishWebSession(c, outcome)).href, 303);
      }
      case 'linked':
        if (outcome.returnTo) return c.redirect(outcome.returnTo, 303);
        // The result has an address of its own: a reload shows it again, and the code and state leave the address bar.
        return c.redirect(`/oauth/${provider}/linked`, 303);
    }
  }

  /**
   * Opening a link shows what it will do and asks to continue: a stranger's
   * link (login CSRF), a link preview or a reload starts nothing by itself.
   */
  app.get('/:provider/start', async (c) => {
    const provider = providerParam(c);
    const presented = presentedContext(c, (name) => c.req.query(name));
    // One id per browser, reused across flows so two tabs can link two providers.
    const browser = browserId(c) ?? randomToken(32);
    const opened = await linking.confirmation(provider, presented, browser);
    bindBrowser(c, browser);
    if (opened.kind !== 'confirm') return followed(c, provider, opened);
    const { confirmation } = opened;
    return c.html(
      <ConfirmPage
        frame={await tenantFrame(c, confirmation.tenant)}
        action={`/oauth/${provider}/start`}
        cancelAction={`/oauth/${provider}/cancel`}
        providerName={confirmation.provider.displayName}
        access={confirmation.provider.instance?.access ?? []}
        userName={confirmation.userName}
        contextField={presented.format.param}
        context={presented.token}
        csrfToken={confirmation.csrfToken}
      />,
    );
  });

  /** Where a started (or reopened) flow sends the browser. Always 303 (RFC 9110 §15.4.4). */
  function followed(c: Context<AppEnv>, provider: string, started: Reopened) {
    switch (started.kind) {
      case 'redirect':
        return c.redirect(started.url.href, 303);
      case 'linked':
        return c.redirect(started.returnTo, 303);
      case 'show':
        return c.redirect(`/oauth/${provider}/continue?state=${encodeURIComponent(started.state)}`, 303);
      case 'result':
        return render(c, provider, started.outcome);
    }
  }

  /** The confirmation form: only this starts a flow and contacts the provider. Always 303 (RFC 9110 §15.4.4). */
  app.post('/:provider/start', bodyLimit(16 * 1024), async (c) => {
    const provider = providerParam(c);
    const form = await readForm(c);
    const presented = presentedContext(c, (name) => form.get(name) ?? undefined);
    const csrf = parseInput(Csrf, form.get('csrf') ?? undefined);
    const browser = browserId(c);
    if (!browser || !csrf) {
      throw new LinkgateError('csrf_failed', 'the confirmation did not come from this browser', { provider });
    }
    const started = await linking.start(provider, presented, browser, csrf);
    bindBrowser(c, browser);
    return followed(c, provider, started);
  });

  /** The success page, reloadable for as long as the flow row lives (see `linking.result`). */
  app.get('/:provider/linked', async (c) => {
    const provider = providerParam(c);
    const outcome = await linking.result(provider, browserId(c));
    if (outcome.kind !== 'linked') throw new LinkgateError('result_gone', 'there is nothing to show', { provider });
    return c.html(<LinkedPage frame={await tenantFrame(c, outcome.tenant)} providerName={outcome.provider.displayName} accountName={outcome.accountName} />);
  });

  /**
   * Cancel, from the confirmation page (the context and its token) or a
   * flow's page (its state). 303 to a page that says so, which a reload
   * shows again.
   */
  app.post('/:provider/cancel', bodyLimit(16 * 1024), async (c) => {
    const provider = providerParam(c);
    const form = await readForm(c);
    const state = form.get('state');
    if (state !== null) {
      await linking.cancel(provider, browserId(c), { state: parseInput(State, state) });
    } else {
      const context = presentedContext(c, (name) => form.get(name) ?? undefined);
      const csrf = parseInput(Csrf, form.get('csrf') ?? undefined);
      if (!csrf) throw new LinkgateError('csrf_failed', 'the confirmation did not come from this browser', { provider });
      await linking.cancel(provider, browserId(c), { context, csrf });
    }
    return c.redirect(`/oauth/${provider}/cancelled`, 303);
  });

  app.get('/:provider/cancelled', (c) => {
    const provider = requireProvider(deps.registry, providerParam(c));
    return c.html(<CancelledPage frame={frame(c)} providerName={provider.displayName} />);
  });

  app.get('/:provider/continue', async (c) => {
    const provider = providerParam(c);
    const state = parseInput(State, c.req.query('state'));
    return render(c, provider, await linking.show(provider, state, browserId(c)));
  });

  app.get('/:provider/callback', async (c) => {
    const provider = providerParam(c);
    const params = new URL(c.req.url).searchParams;
    const state = parseInput(State, params.get('state') ?? undefined);
    return render(c, provider, await linking.callback(provider, state, browserId(c), { kind: 'callback', params }));
  });

  app.post('/:provider/callback', bodyLimit(16 * 1024), async (c) => {
    const provider = providerParam(c);
    const body = await readForm(c);
    const state = parseInput(State, body.get('state') ?? undefined);
    const fields: Record<string, string> = {};
    for (const [name, value] of body) if (name !== 'state' && name !== 'linkgate_action') fields[name] = value;
    const action = body.get('linkgate_action') ?? undefined;
    const input: StepInput = action === 'poll' ? { kind: 'poll' } : { kind: 'form', fields, ...(action ? { action: action.slice(0, 64) } : {}) };
    return render(c, provider, await linking.callback(provider, state, browserId(c), input));
  });

  // Public documents a provider publishes (ATProto client metadata and JWKS).
  app.get('/:provider/:document{[a-z0-9-]+\\.json}', async (c) => {
    const provider = requireProvider(deps.registry, providerParam(c));
    const document = provider.instance.documents?.[c.req.param('document')];
    if (!document) throw new LinkgateError('not_found', 'there is no such document');
    return c.json(await document());
  });

  app.get('/:provider/poll', async (c) => {
    const provider = providerParam(c);
    const state = parseInput(State, c.req.query('state'));
    const answer = await linking.poll(provider, state, browserId(c));
    if (answer.status !== 'signed_in') return c.json(answer);
    const { outcome } = answer;
    // A web-session sign-in approved while the page waited: this answer carries the session cookie.
    if (outcome.kind === 'web_signed_in') {
      if (!deps.finishWebSession) throw new LinkgateError('not_found', 'sign-in is not served here');
      return c.json({ status: 'linked', returnTo: (await deps.finishWebSession(c, outcome)).href });
    }
    // A sign-in approved while the page waited: the page goes back to the app's sign-in.
    if (!deps.finishSignIn) throw new LinkgateError('not_found', 'sign-in is not served here');
    return c.json({ status: 'linked', returnTo: (await deps.finishSignIn(outcome)).href });
  });

  return app;
}
