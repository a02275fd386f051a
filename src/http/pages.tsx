/** @jsxRuntime automatic @jsxImportSource hono/jsx */
import { raw } from 'hono/html';
import type { Child } from 'hono/jsx';
import type { Brand } from '../config.ts';
import { pollInterval } from '../core/bounds.ts';
import type { ErrorCode } from '../core/errors.ts';
import type { FormSpec, StepAction, WaitDisplay } from '../provider.ts';

/** What every page needs besides its content: the CSP nonce of this response, and the operator's branding. */
export interface PageFrame {
  nonce: string;
  brand: Brand;
}

const STYLE = `
:root { color-scheme: light dark; --fg: #1b1b1f; --bg: #f7f7f9; --card: #fff; --muted: #4a4a55; --accent: #2952cc; --bad: #a3222a; }
@media (prefers-color-scheme: dark) { :root { --fg: #ececf1; --bg: #16161a; --card: #222228; --muted: #b9b9c6; --accent: #8fa8ff; --bad: #ff9a9f; } }
* { box-sizing: border-box; }
body { margin: 0; font: 1.0625rem/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 34rem; margin: 2rem auto; padding: 1.5rem; background: var(--card); border-radius: .75rem; }
h1 { font-size: 1.5rem; margin: 0 0 1rem; }
p { margin: .5rem 0; } .muted { color: var(--muted); } .error { color: var(--bad); font-weight: 600; }
label { display: block; font-weight: 600; margin-top: 1rem; }
input { width: 100%; font: inherit; padding: .6rem; margin-top: .25rem; border: 1px solid var(--muted); border-radius: .4rem; background: var(--bg); color: var(--fg); }
button, a.button { display: inline-block; margin-top: 1.25rem; font: inherit; font-weight: 600; padding: .65rem 1.25rem; border: 0; border-radius: .4rem; background: var(--accent); color: var(--card); text-decoration: none; cursor: pointer; }
button.secondary { background: transparent; color: var(--accent); border: 2px solid var(--accent); }
.actions { display: flex; flex-wrap: wrap; gap: 0 .75rem; align-items: center; }
.actions form { margin: 0; }
header.brand { display: flex; align-items: center; gap: .75rem; margin: 0 0 1rem; font-weight: 600; }
header.brand img { width: 2.5rem; height: 2.5rem; border-radius: .5rem; object-fit: contain; }
ul.access { margin: .5rem 0; padding-left: 1.25rem; }
footer { max-width: 34rem; margin: 0 auto 2rem; padding: 0 1.5rem; font-size: .9rem; color: var(--muted); }
footer a { color: var(--accent); }
a { color: var(--accent); }
code { overflow-wrap: anywhere; }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.code { font: 700 2.5rem/1.2 ui-monospace, monospace; letter-spacing: .2em; text-align: center; padding: 1rem; margin: 1rem 0; border: 2px dashed var(--muted); border-radius: .5rem; }
`;

/** WCAG 2.x relative luminance of `#rrggbb`. */
function luminance(hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255).map((c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  return 0.2126 * r! + 0.7152 * g! + 0.0722 * b!;
}

/**
 * The operator's colour on buttons, with the text colour that reads best on
 * it (black or white, by WCAG contrast), in light and dark mode alike.
 */
function brandStyle(color: string | undefined): string {
  if (!color) return '';
  const l = luminance(color);
  const onColor = (1.05 / (l + 0.05) >= (l + 0.05) / 0.05) ? '#fff' : '#000';
  return `button:not(.secondary), a.button { background: ${color}; color: ${onColor}; } main { border-top: .35rem solid ${color}; }`;
}

/**
 * Every page's frame. `wide` and `style`: the signed-in pages'
 * (src/http/signed-in-layout.tsx) wider main and their own rules, under the same nonce.
 */
export function Layout(props: { title: string; frame: PageFrame; children: Child; wide?: boolean; style?: string }) {
  const { brand, nonce } = props.frame;
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="robots" content="noindex" />
        <title>{`${props.title} · ${brand.name ?? 'Linkgate'}`}</title>
        <link rel="icon" href={brand.iconUrl ?? '/favicon.svg'} />
        <style nonce={nonce}>{raw(STYLE + brandStyle(brand.color) + (props.style ?? ''))}</style>
      </head>
      <body>
        <main class={props.wide ? 'wide' : undefined}>
          {brand.name || brand.iconUrl ? (
            <header class="brand">
              {brand.iconUrl ? <img src={brand.iconUrl} alt="" /> : null}
              {brand.name ? <span>{brand.name}</span> : null}
            </header>
          ) : null}
          {props.children}
        </main>
        {brand.supportUrl ? (
          <footer>
            Need help? <a href={brand.supportUrl}>Contact {brand.name ?? 'the bot'}’s support</a>
          </footer>
        ) : null}
      </body>
    </html>
  );
}

/** An error page; `code` is the stable error code, for whoever the user asks for help. */
export function MessagePage(props: { frame: PageFrame; title: string; lines: string[]; code?: string; children?: Child }) {
  return (
    <Layout title={props.title} frame={props.frame}>
      <h1>{props.title}</h1>
      {props.lines.map((line) => (
        <p>{line}</p>
      ))}
      {props.children}
      {props.code ? (
        <p class="muted">
          Error code: <code id="error-code">{props.code}</code>
        </p>
      ) : null}
    </Layout>
  );
}

/**
 * What a link is about to do, before anything happens: who asks (the
 * operator's name), what they will be able to do (the provider's `access`),
 * and, if the bot put one in the link, its display name for the user who
 * asked — never the raw user id. Continue POSTs the context with a token
 * bound to this browser's cookie; Cancel ends it, and the bot hears of it.
 */
export function ConfirmPage(props: {
  frame: PageFrame;
  action: string;
  cancelAction: string;
  providerName: string;
  access: readonly string[];
  userName: string | undefined;
  contextField: string;
  context: string;
  csrfToken: string;
}) {
  const who = props.frame.brand.name ?? 'The chat bot that gave you this link';
  const hidden = (
    <>
      <input type="hidden" name={props.contextField} value={props.context} />
      <input type="hidden" name="csrf" value={props.csrfToken} />
    </>
  );
  return (
    <Layout title={`Link your ${props.providerName} account?`} frame={props.frame}>
      <h1>Link your {props.providerName} account?</h1>
      {props.access.length > 0 ? (
        <>
          <p>{who} will be able to:</p>
          <ul class="access">
            {props.access.map((sentence) => (
              <li>{sentence}</li>
            ))}
          </ul>
        </>
      ) : (
        <p>{who} will be able to use your {props.providerName} account.</p>
      )}
      {props.userName ? (
        <p>
          Asked for by <strong>{props.userName}</strong> in the chat.
        </p>
      ) : null}
      <p class="muted">Only continue if you asked for this link yourself. If someone sent it to you, press Cancel.</p>
      <div class="actions">
        <form method="post" action={props.action}>
          {hidden}
          <button type="submit">Continue</button>
        </form>
        <form method="post" action={props.cancelAction}>
          {hidden}
          <button type="submit" class="secondary">
            Cancel
          </button>
        </form>
      </div>
    </Layout>
  );
}

export function LinkedPage(props: { frame: PageFrame; providerName: string; accountName: string | undefined }) {
  return (
    <Layout title="Account linked" frame={props.frame}>
      <h1>Account linked</h1>
      <p>
        Your {props.providerName} account{props.accountName ? <> <strong>{props.accountName}</strong></> : null} is now linked.
      </p>
      <p class="muted">You can close this tab and go back to the chat.</p>
    </Layout>
  );
}

/**
 * An app's sign-in: one button per provider the app offers. Each posts to
 * `action` (the interaction's own address, where the browser holds its
 * cookie) with the provider's id.
 */
export function ChooserPage(props: { frame: PageFrame; appName: string; action: string; providers: ReadonlyArray<{ id: string; displayName: string }> }) {
  return (
    <Layout title={`Sign in to ${props.appName}`} frame={props.frame}>
      <h1>Sign in to {props.appName}</h1>
      {props.providers.length > 0 ? (
        <>
          <p>Choose how to sign in:</p>
          <div class="actions">
            {props.providers.map((provider) => (
              <form method="post" action={props.action}>
                <input type="hidden" name="provider" value={provider.id} />
                <button type="submit">Continue with {provider.displayName}</button>
              </form>
            ))}
          </div>
        </>
      ) : (
        <p>No way to sign in is set up for this app yet. Please tell its owner.</p>
      )}
    </Layout>
  );
}

/** After Cancel: nothing happened, and the bot knows. */
export function CancelledPage(props: { frame: PageFrame; providerName: string }) {
  return (
    <Layout title="Linking cancelled" frame={props.frame}>
      <h1>Linking cancelled</h1>
      <p>You cancelled, so your {props.providerName} account was not linked. The bot has been told.</p>
      <p class="muted">You can close this tab. To link later, ask the bot for a new link.</p>
    </Layout>
  );
}

/** One component renders every provider form from its data description. */
export function FormPage(props: { frame: PageFrame; action: string; cancelAction: string; state: string; form: FormSpec; values: Record<string, string> }) {
  const { form } = props;
  return (
    <Layout title={form.title} frame={props.frame}>
      <h1>{form.title}</h1>
      {form.description ? <p>{form.description}</p> : null}
      {form.error ? (
        <p class="error" role="alert" id="form-error">
          {form.error}
        </p>
      ) : null}
      <form method="post" action={props.action}>
        <input type="hidden" name="state" value={props.state} />
        {form.fields.map((field) => (
          <>
            <label for={`f-${field.name}`}>{field.label}</label>
            {field.description ? (
              <p class="muted" id={`f-${field.name}-help`}>
                {field.description}
              </p>
            ) : null}
            <input
              id={`f-${field.name}`}
              name={field.name}
              type={field.type}
              value={field.type === 'password' ? undefined : props.values[field.name]}
              autofocus={form.error !== undefined && (field.type === 'password' || !props.values[field.name]) ? true : undefined}
              required={field.required ?? true}
              placeholder={field.placeholder}
              autocomplete={field.autocomplete}
              aria-describedby={field.description ? `f-${field.name}-help` : undefined}
              aria-invalid={form.error ? 'true' : undefined}
            />
          </>
        ))}
        <button type="submit">{form.submitLabel ?? 'Continue'}</button>
      </form>
      <ActionButtons action={props.action} state={props.state} actions={form.actions} />
      <CancelButton action={props.cancelAction} state={props.state} />
    </Layout>
  );
}

/** Ends the flow: the user gives up linking, and the bot hears of it. */
function CancelButton(props: { action: string; state: string }) {
  return (
    <form method="post" action={props.action}>
      <input type="hidden" name="state" value={props.state} />
      <button type="submit" class="secondary">
        Cancel
      </button>
    </form>
  );
}

/** Secondary choices, each its own small form so it needs none of the main form's fields. */
function ActionButtons(props: { action: string; state: string; actions: StepAction[] | undefined }) {
  return (
    <>
      {(props.actions ?? []).map((choice) => (
        <form method="post" action={props.action}>
          <input type="hidden" name="state" value={props.state} />
          <input type="hidden" name="linkgate_action" value={choice.action} />
          <button type="submit" class="secondary">
            {choice.label}
          </button>
        </form>
      ))}
    </>
  );
}

/** A code to approve elsewhere; the page polls, and a button does the same without JavaScript. */
export function WaitPage(props: { frame: PageFrame; action: string; cancelAction: string; cancelledUrl: string; pollUrl: string; state: string; display: WaitDisplay; pollMs: number }) {
  const { display } = props;
  // Goes into the script as it is: only ever a bounded whole number.
  const pollMs = pollInterval(props.pollMs);
  const script = `(() => {
  const url = ${JSON.stringify(props.pollUrl).replaceAll('<', '\\u003c')};
  const tick = async () => {
    try {
      const response = await fetch(url, { credentials: 'same-origin' });
      // Rate-limited (many people behind one address): wait as long as asked, then ask again.
      if (response.status === 429) return setTimeout(tick, (Number(response.headers.get('retry-after')) || 5) * 1000);
      const answer = await response.json();
      if (answer.status === 'pending') return setTimeout(tick, answer.pollMs || ${pollMs});
      if (answer.status === 'cancelled') return location.assign(${JSON.stringify(props.cancelledUrl).replaceAll('<', '\\u003c')});
      if (answer.status === 'linked') {
        if (answer.returnTo) return location.assign(answer.returnTo);
        // Success in place, no reload: the same words as the success page.
        const main = document.querySelector('main');
        const heading = document.createElement('h1');
        heading.textContent = 'Account linked';
        const line = document.createElement('p');
        line.textContent = 'Your account is now linked. You can close this tab and go back to the chat.';
        main.replaceChildren(heading, line);
        document.title = 'Account linked · Linkgate';
        return;
      }
      document.getElementById('check').submit();
    } catch { setTimeout(tick, ${pollMs * 2}); }
  };
  setTimeout(tick, ${pollMs});
})();`;
  return (
    <Layout title={display.title} frame={props.frame}>
      <h1>{display.title}</h1>
      {display.code ? (
        <p class="code" aria-label={`Code: ${display.code.split('').join(' ')}`}>
          {display.code}
        </p>
      ) : null}
      {display.instructions.map((line) => (
        <p>{line}</p>
      ))}
      <form method="post" action={props.action} id="check">
        <input type="hidden" name="state" value={props.state} />
        <input type="hidden" name="linkgate_action" value="poll" />
        <button type="submit">I have approved it</button>
      </form>
      <ActionButtons action={props.action} state={props.state} actions={display.actions} />
      <CancelButton action={props.cancelAction} state={props.state} />
      {/* Text in a script element is not HTML: it goes in raw; the only outside value is JSON-encoded above. */}
      <script nonce={props.frame.nonce}>{raw(script)}</script>
    </Layout>
  );
}

export interface HomeProvider {
  id: string;
  displayName: string;
  /** `undefined` when configured; else what it still needs, in words. */
  needs: string | undefined;
}

/**
 * `/` for the operator in development: what runs, where the API key and the
 * docs are, and which providers work or what each still needs. Nothing
 * here is a secret.
 */
export function OperatorHomePage(props: { frame: PageFrame; publicBaseUrl: string; database: string; secretsFile: string; providers: HomeProvider[]; webhooks: boolean; metrics: boolean }) {
  return (
    <Layout title="Linkgate is running" frame={props.frame}>
      <h1>Linkgate is running</h1>
      <p>
        In development, at <code>{props.publicBaseUrl}</code>, on {props.database}. Bots call its API with a key from <code>LINKGATE_API_KEYS</code>: the generated one
        is in <code>{props.secretsFile}</code>.
      </p>
      <p>
        <a class="button" href="/docs">
          Read the API reference
        </a>
      </p>
      <h2>Providers</h2>
      <ul>
        {props.providers.map((p) => (
          <li>
            <strong>{p.displayName}</strong> (<code>{p.id}</code>): {p.needs === undefined ? 'ready' : <>not configured; set {p.needs}</>}
          </li>
        ))}
      </ul>
      <p class="muted">
        Webhooks are {props.webhooks ? 'on' : 'off (LINKGATE_WEBHOOK_URL)'}; metrics are {props.metrics ? 'at /metrics' : 'off (LINKGATE_METRICS)'}. Set variables in ./.env or the environment
        (.env.example lists them), then restart. In production this page only says what the gateway is.
      </p>
    </Layout>
  );
}

/** `/` in production: what this is, and nothing about how it is set up. */
export function PublicHomePage(props: { frame: PageFrame }) {
  const who = props.frame.brand.name;
  return (
    <Layout title="Account linking" frame={props.frame}>
      <h1>Account linking</h1>
      <p>{who ? `${who} uses this service` : 'A chat bot uses this service'} to link your accounts on other sites to your chat account, when you ask it to.</p>
      <p class="muted">Links to it come from the bot. There is nothing else to do here.</p>
    </Layout>
  );
}

const ASK_BOT = 'Ask the bot for a new link and try again.';

/**
 * What a person reads for each error: what happened, then what to do.
 * `nextStep` is how this bot's users get a new link, when the link's format
 * says (the Annie Mei bot: "Run /register in Discord again").
 */
export function describeError(
  code: ErrorCode | 'internal_error',
  providerName: string | undefined,
  nextStep?: string,
  retryAfterSeconds?: number,
): { title: string; lines: string[] } {
  const provider = providerName ?? 'the provider';
  const NEW_LINK = nextStep ?? ASK_BOT;
  switch (code) {
    case 'context_expired':
      return { title: 'This link has expired', lines: ['Links are only valid for a few minutes.', NEW_LINK] };
    case 'context_replayed':
      return {
        title: 'This link was already used',
        lines: ['Each link works once, and this one has already been used. Your account may already be linked: check with the bot.', `If it is not, ${lowerFirst(NEW_LINK)}`],
      };
    case 'csrf_failed':
      return {
        title: 'Please continue from the link in this browser',
        lines: ['This confirmation did not come from the page we showed this browser, or your browser blocked our cookie. Nothing was started.', `Open the link from the bot again, or ${lowerFirst(NEW_LINK)}`],
      };
    case 'context_invalid':
    case 'context_wrong_provider':
    case 'context_wrong_tenant':
      return { title: 'This link is not valid', lines: ['It may have been cut off or changed when it was copied.', NEW_LINK] };
    case 'flow_not_found':
      return { title: 'This sign-in has expired', lines: ['It took too long, or this page was already used.', NEW_LINK] };
    case 'flow_browser_mismatch':
      return {
        title: 'Please finish in the same browser',
        lines: ['This sign-in was started in another browser or app, or your browser blocked our cookie.', `Open the link from the bot in this browser, or ${lowerFirst(NEW_LINK)}`],
      };
    case 'flow_busy':
      return { title: 'Already in progress', lines: ['This sign-in is being completed in another tab. Check that tab, or wait a moment and reload.'] };
    case 'provider_denied':
      return { title: 'Linking cancelled', lines: [`Access was not allowed at ${provider}, so nothing was linked. The bot has been told.`, `If you change your mind, ${lowerFirst(NEW_LINK)}`] };
    case 'link_cancelled':
      return { title: 'Linking cancelled', lines: ['This sign-in was cancelled, so nothing was linked.', `To link after all, ${lowerFirst(NEW_LINK)}`] };
    case 'result_gone':
      return { title: 'Nothing to show here any more', lines: ['If you linked your account a while ago, you are done: check with the bot.', `Otherwise, ${lowerFirst(NEW_LINK)}`] };
    case 'exchange_failed':
    case 'provider_error':
      return { title: 'Sign-in could not be completed', lines: [`${provider} refused to finish the sign-in.`, NEW_LINK] };
    case 'provider_unavailable':
    case 'provider_response_invalid':
      return { title: `${provider} is not answering properly`, lines: ['Nothing was linked. Please try again in a few minutes.', NEW_LINK] };
    case 'provider_timeout':
      return { title: `${provider} is too slow right now`, lines: ['Nothing was linked. Please try again in a few minutes.', NEW_LINK] };
    case 'provider_unconfigured':
      return { title: `${provider} is not available`, lines: ['This gateway has not been set up for it yet. Please tell the bot’s owner.'] };
    case 'unknown_provider':
    case 'not_found':
      return { title: 'Page not found', lines: ['There is nothing at this address. Check the link the bot gave you.'] };
    case 'account_mismatch':
      return {
        title: 'You signed in as someone else',
        lines: [`The ${provider} account you signed in with is not the one you asked to link, so nothing was linked.`, NEW_LINK],
      };
    case 'account_already_linked':
      return { title: 'Account already linked', lines: [`This ${provider} account is already linked to another user.`, 'Sign in with a different account, or unlink it from the other user first.'] };
    case 'return_to_not_allowed':
      return { title: 'This link is not valid', lines: ['It points somewhere this gateway does not send people to.', NEW_LINK] };
    case 'database_unavailable':
      return { title: 'Linkgate is briefly unavailable', lines: ['Nothing was lost. Please reload this page in a minute.'] };
    case 'sign_in_expired':
      return { title: 'This sign-in has expired', lines: ['It took too long, was already finished, or was started in another browser.', 'Go back to the app and sign in again.'] };
    case 'sign_in_provider':
      return { title: 'This way of signing in is not offered', lines: ['The app asked for a provider it does not offer.', 'Go back to the app and choose another way to sign in.'] };
    case 'redirect_not_allowed':
      return { title: 'This app no longer takes sign-ins here', lines: ['The page you were signing in for is no longer one this gateway sends people to, so you were not signed in.', 'Go back to the app and sign in again.'] };
    case 'too_many_attempts':
      return {
        title: 'Too many wrong passwords',
        lines: [`This sign-in has ended after too many wrong passwords, and nothing was linked. Check your ${provider} username and password.`, `Then ${NEW_LINK.toLowerCase()}`],
      };
    case 'not_signed_in':
      return { title: 'You are signed out', lines: ['Your session ended: it lasts 8 hours, and ends after 30 minutes without use or when you sign out. Nothing was changed.', NEW_LINK] };
    case 'rate_limited':
      return { title: 'Too many attempts', lines: [`Please wait ${waitFor(retryAfterSeconds)}, then reload this page.`] };
    case 'bad_request':
    case 'payload_too_large':
      return { title: 'Something is wrong with this request', lines: ['The address or form looks damaged.', NEW_LINK] };
    default:
      return { title: 'Something went wrong', lines: ['Nothing was linked. This is a problem on our side; please try again later.', NEW_LINK] };
  }
}

/** "Run /register …" → "run /register …", keeping the rest as written (names, commands). */
function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}

function waitFor(seconds: number | undefined): string {
  if (seconds === undefined) return 'a minute';
  if (seconds < 60) return seconds <= 1 ? 'a second' : `${seconds} seconds`;
  const minutes = Math.ceil(seconds / 60);
  return minutes === 1 ? 'a minute' : `${minutes} minutes`;
}
