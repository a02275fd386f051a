/**
 * The demo's OpenID provider: a real one (`openid-provider.ts`) with sign-in
 * and consent pages a person can use, served on 127.0.0.1, with one fixed
 * account. It stands in for a company's single sign-on, so `npm run demo`
 * needs no account anywhere. Its state lives in memory and ends with it.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { html, raw } from 'hono/html';
import type Provider from 'oidc-provider';
import type { InteractionDetails } from 'oidc-provider';
import { abortInteraction, createLocalOpenIdProvider, finishConsent, finishLogin, INTERACTION_PREFIX, readForm } from './openid-provider.ts';

/** The one account that can sign in; its password is printed by the demo. */
export const DEMO_ACCOUNT = Object.freeze({
  username: 'ada',
  password: 'analytical-engine',
  claims: { name: 'Ada Lovelace', preferred_username: 'ada', email: 'ada@demo.test', email_verified: true },
});

export interface DemoIdp {
  /** `http://127.0.0.1:<port>` */
  issuer: string;
  clientId: string;
  clientSecret: string;
  close(): Promise<void>;
}

export interface StartDemoIdpOptions {
  /** 0 picks a free port. */
  port: number;
  /** The gateway's callback for this provider, e.g. `http://127.0.0.1:8000/oauth/demo/callback`. */
  redirectUri: string;
}

/** Listening failed: the port is taken or not ours to use. */
export class DemoPortError extends Error {
  override name = 'DemoPortError';
}

export async function startDemoIdp(options: StartDemoIdpOptions): Promise<DemoIdp> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(new DemoPortError(`the demo OpenID provider cannot listen on 127.0.0.1:${options.port} (${error.code ?? error.message})`)),
    );
    server.listen(options.port, '127.0.0.1', () => resolve());
  });
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const clientId = 'linkgate-demo';
  const clientSecret = randomBytes(24).toString('base64url');

  const provider = await createLocalOpenIdProvider({
    issuer,
    clientId,
    clientSecret,
    clientName: 'Linkgate (demo)',
    redirectUris: [options.redirectUri],
    claims: (sub) => (sub === DEMO_ACCOUNT.username ? DEMO_ACCOUNT.claims : {}),
    renderError: (ctx, out) => {
      ctx.type = 'text/html';
      ctx.body = document(
        'Sign-in error',
        html`<h1>Something went wrong</h1>
          <p>${out.error_description ?? 'The sign-in request was not valid.'}</p>
          <p class="muted">Error: <code>${out.error}</code>. Go back to the link you were given and start again.</p>`,
        randomBytes(16).toString('base64'),
      );
    },
  });
  provider.on('server_error', (_ctx: unknown, error: Error) => console.error('demo OpenID provider: server error:', error.message));

  const oidcHandler = provider.callback();
  server.on('request', (req, res) => {
    const pathname = new URL(req.url ?? '/', issuer).pathname;
    const handled = pathname.startsWith(INTERACTION_PREFIX) ? interaction(provider, req, res, pathname) : oidcHandler(req, res);
    Promise.resolve(handled).catch((error: unknown) => {
      console.error('demo OpenID provider: request failed:', error instanceof Error ? error.message : String(error));
      if (!res.headersSent) sendPage(res, 500, 'Sign-in error', html`<h1>Something went wrong</h1><p>Please try again.</p>`);
      else res.destroy();
    });
  });

  let closed: Promise<void> | undefined;
  return {
    issuer,
    clientId,
    clientSecret,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}

const sameText = (a: string, b: string) => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

/** `/interaction/:uid` shows the page for the current prompt; `/login`, `/confirm` and `/abort` take its form. */
async function interaction(provider: Provider, req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> {
  const [uid, action, ...extra] = pathname.slice(INTERACTION_PREFIX.length).split('/');
  if (!uid || extra.length > 0) return sendPage(res, 404, 'Not found', html`<h1>Not found</h1>`);
  let details: InteractionDetails;
  try {
    details = await provider.interactionDetails(req, res);
  } catch {
    return sendPage(res, 400, 'Sign-in expired', expiredBody);
  }
  if (details.uid !== uid) return sendPage(res, 400, 'Sign-in expired', expiredBody);

  if (action === undefined) {
    if (req.method !== 'GET') return sendPage(res, 405, 'Not allowed', html`<h1>Not allowed</h1>`);
    return details.prompt.name === 'login' ? sendPage(res, 200, 'Sign in', loginBody(uid)) : sendPage(res, 200, 'Allow access', consentBody(uid, details));
  }
  if (req.method !== 'POST') return sendPage(res, 405, 'Not allowed', html`<h1>Not allowed</h1>`);
  const form = await readForm(req);
  if (action === 'login' && details.prompt.name === 'login') {
    const username = form.get('username')?.trim() ?? '';
    if (!sameText(username, DEMO_ACCOUNT.username) || !sameText(form.get('password') ?? '', DEMO_ACCOUNT.password)) {
      return sendPage(res, 401, 'Sign in', loginBody(uid, username));
    }
    return finishLogin(provider, req, res, DEMO_ACCOUNT.username);
  }
  if (action === 'confirm' && details.prompt.name === 'consent') {
    if (await finishConsent(provider, req, res, details)) return;
    return sendPage(res, 400, 'Sign-in expired', expiredBody);
  }
  if (action === 'abort') return abortInteraction(provider, req, res);
  return sendPage(res, 400, 'Sign-in expired', expiredBody);
}

const expiredBody = html`<h1>This sign-in has expired</h1>
  <p>Go back to the link you were given and start again.</p>`;

function loginBody(uid: string, username?: string) {
  const action = `${INTERACTION_PREFIX}${encodeURIComponent(uid)}`;
  return html`<p class="brand">Demo IdP</p>
    <h1>Sign in to Demo IdP</h1>
    <p class="muted">A local OpenID provider that came with <code>npm run demo</code>. The account to use is printed in the terminal.</p>
    ${username === undefined ? '' : html`<p role="alert" class="error">Wrong username or password.</p>`}
    <form method="post" action="${action}/login">
      <label for="username">Username</label>
      <input id="username" name="username" autocomplete="username" required value="${username ?? ''}" />
      <label for="password">Password</label>
      <input id="password" name="password" type="password" autocomplete="current-password" required />
      <button type="submit">Sign in</button>
    </form>
    <form method="post" action="${action}/abort"><button type="submit" class="secondary">Cancel</button></form>`;
}

const SCOPE_TEXT: Record<string, string> = {
  openid: 'who you are (your account id)',
  profile: 'your name and username',
  email: 'your email address',
};

function consentBody(uid: string, details: InteractionDetails) {
  const action = `${INTERACTION_PREFIX}${encodeURIComponent(uid)}`;
  const requested = details.prompt.details.missingOIDCScope ?? [];
  const scopes = typeof details.params.scope === 'string' ? details.params.scope.split(' ') : [];
  const asked = (requested.length > 0 ? requested : scopes).map((scope) => SCOPE_TEXT[scope] ?? scope);
  return html`<p class="brand">Demo IdP</p>
    <h1>Allow Linkgate (demo) to know who you are?</h1>
    <p>Signed in as <strong>${details.session?.accountId ?? ''}</strong>. Linkgate (demo) asks for:</p>
    <ul>
      ${asked.map((item) => html`<li>${item}</li>`)}
    </ul>
    <form method="post" action="${action}/confirm"><button type="submit">Allow</button></form>
    <form method="post" action="${action}/abort"><button type="submit" class="secondary">Cancel</button></form>`;
}

const STYLE = `
:root { color-scheme: light dark; --fg: #1d1b16; --bg: #f4efe6; --card: #fffdf8; --muted: #5b5448; --accent: #8a4b08; --bad: #a3222a; }
@media (prefers-color-scheme: dark) { :root { --fg: #efe9dd; --bg: #1b1813; --card: #27231c; --muted: #c2b9a8; --accent: #f0b46a; --bad: #ff9a9f; } }
body { margin: 0; font: 1.0625rem/1.5 Georgia, serif; color: var(--fg); background: var(--bg); }
main { max-width: 28rem; margin: 2rem auto; padding: 1.5rem; background: var(--card); border-radius: .5rem; border-top: 6px solid var(--accent); }
h1 { font-size: 1.4rem; margin: 0 0 1rem; } .brand { font-weight: 700; color: var(--accent); margin: 0 0 .5rem; }
.muted { color: var(--muted); } .error { color: var(--bad); font-weight: 700; }
label { display: block; font-weight: 700; margin-top: 1rem; }
input { box-sizing: border-box; width: 100%; font: inherit; padding: .55rem; margin-top: .25rem; border: 1px solid var(--muted); border-radius: .3rem; background: var(--bg); color: var(--fg); }
form { display: inline; } button { margin: 1.25rem .5rem 0 0; font: inherit; font-weight: 700; padding: .6rem 1.2rem; border: 0; border-radius: .3rem; background: var(--accent); color: var(--card); cursor: pointer; }
button.secondary { background: transparent; color: var(--accent); border: 2px solid var(--accent); }
`;

function document(title: string, body: unknown, nonce: string): string {
  return `<!doctype html>${html`<html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      <title>${title} · Demo IdP</title>
      <style nonce="${nonce}">${raw(STYLE)}</style>
    </head>
    <body>
      <main>${body}</main>
    </body>
  </html>`}`;
}

function sendPage(res: ServerResponse, status: number, title: string, body: unknown): void {
  const nonce = randomBytes(16).toString('base64');
  const text = document(title, body, nonce);
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  // No form-action: Chrome applies it to the redirect back to the gateway after a POST.
  res.setHeader('Content-Security-Policy', `default-src 'none'; style-src 'nonce-${nonce}'; frame-ancestors 'none'; base-uri 'none'`);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}
