/** @jsxRuntime automatic @jsxImportSource hono/jsx */
import { Hono, type Context } from 'hono';
import { getCookie, setCookie } from 'hono/cookie';
import * as v from 'valibot';
import { randomToken } from '../core/crypto.ts';
import { LinkgateError } from '../core/errors.ts';
import { ProviderId } from '../core/ids.ts';
import type { Linking, Outcome } from '../core/linking.ts';
import { parseInput } from '../core/validation.ts';
import type { StepInput } from '../provider.ts';
import { bodyLimit, type AppEnv } from './middleware.ts';
import { FormPage, LinkedPage, WaitPage } from './pages.tsx';

/** The cookie that binds a flow to the browser that started it. */
export const BROWSER_COOKIE = 'linkgate_browser';

const State = v.optional(v.pipe(v.string(), v.maxLength(256, 'state is too long')));
const StartQuery = v.object({
  context: v.pipe(v.string('the link has no context'), v.minLength(1, 'the link has no context'), v.maxLength(4096, 'the context is too long')),
});
const BrowserId = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/));

export interface OauthRoutesDeps {
  linking: Linking;
  stateTtlSeconds: number;
  secureCookies: boolean;
}

function providerParam(c: Context<AppEnv>): string {
  const id = c.req.param('provider');
  if (!v.is(ProviderId, id)) throw new LinkgateError('unknown_provider', 'there is no such provider');
  return id;
}

function browserId(c: Context<AppEnv>): string | undefined {
  const value = getCookie(c, BROWSER_COOKIE);
  return v.is(BrowserId, value) ? value : undefined;
}

export function oauthRoutes(deps: OauthRoutesDeps) {
  const { linking } = deps;
  const app = new Hono<AppEnv>();

  function render(c: Context<AppEnv>, provider: string, outcome: Outcome) {
    const nonce = c.get('secureHeadersNonce') ?? '';
    const action = `/oauth/${provider}/callback`;
    switch (outcome.kind) {
      // 303 so a browser that POSTed a form follows with GET (RFC 9110 §15.4.4).
      case 'redirect':
        return c.redirect(outcome.url.href, 303);
      case 'form':
        return c.html(<FormPage nonce={nonce} action={action} state={outcome.state} form={outcome.form} values={outcome.values ?? {}} />);
      case 'wait': {
        const pollUrl = `/oauth/${provider}/poll?state=${encodeURIComponent(outcome.state)}`;
        return c.html(<WaitPage nonce={nonce} action={action} pollUrl={pollUrl} state={outcome.state} display={outcome.display} pollMs={outcome.pollMs} />);
      }
      case 'linked':
        if (outcome.returnTo) return c.redirect(outcome.returnTo, 303);
        return c.html(<LinkedPage nonce={nonce} providerName={outcome.provider.displayName} accountName={outcome.accountName} />);
    }
  }

  app.get('/:provider/start', async (c) => {
    const provider = providerParam(c);
    const { context } = parseInput(StartQuery, { context: c.req.query('context') });
    // One id per browser, reused across flows so two tabs can link two providers.
    const browser = browserId(c) ?? randomToken(32);
    setCookie(c, BROWSER_COOKIE, browser, {
      httpOnly: true,
      sameSite: 'Lax', // sent on the provider's top-level redirect back to us, not on cross-site POSTs
      secure: deps.secureCookies,
      path: '/oauth',
      maxAge: deps.stateTtlSeconds,
    });
    return render(c, provider, await linking.start(provider, context, browser));
  });

  app.get('/:provider/callback', async (c) => {
    const provider = providerParam(c);
    const params = new URL(c.req.url).searchParams;
    const state = parseInput(State, params.get('state') ?? undefined);
    return render(c, provider, await linking.callback(provider, state, browserId(c), { kind: 'callback', params }));
  });

  app.post('/:provider/callback', bodyLimit(16 * 1024), async (c) => {
    const provider = providerParam(c);
    if (!/^application\/x-www-form-urlencoded\b/i.test(c.req.header('content-type') ?? '')) {
      throw new LinkgateError('bad_request', 'expected a form (application/x-www-form-urlencoded)');
    }
    const body = new URLSearchParams(await c.req.text());
    const state = parseInput(State, body.get('state') ?? undefined);
    const fields: Record<string, string> = {};
    for (const [name, value] of body) if (name !== 'state' && name !== 'linkgate_action') fields[name] = value;
    const action = body.get('linkgate_action') ?? undefined;
    const input: StepInput = action === 'poll' ? { kind: 'poll' } : { kind: 'form', fields, ...(action ? { action: action.slice(0, 64) } : {}) };
    return render(c, provider, await linking.callback(provider, state, browserId(c), input));
  });

  app.get('/:provider/poll', async (c) => {
    const provider = providerParam(c);
    const state = parseInput(State, c.req.query('state'));
    return c.json(await linking.poll(provider, state, browserId(c)));
  });

  return app;
}
