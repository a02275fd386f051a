import type { FakeDiscord } from '../fakes/discord.ts';
import { mintContext } from './context.ts';
import { atFake } from './gateway.ts';
/**
 * A browser for `app.request()`: it keeps cookies (name=value, as a browser
 * sends them back) and lets a test follow or inspect redirects by hand.
 */
export class TestBrowser {
  readonly cookies = new Map<string, string>();

  constructor(private readonly request: (path: string, init?: RequestInit) => Response | Promise<Response>) {}

  /**
   * GET, following the gateway's own 303 to a result page (`/oauth/:provider/linked`
   * or `/cancelled`) as a browser would; `{ follow: false }` returns it as it is.
   */
  async get(url: string | URL, options: { follow?: boolean } = {}): Promise<Response> {
    return this.follow(await this.send(url, { method: 'GET' }), options.follow ?? true);
  }

  private async follow(response: Response, follow: boolean): Promise<Response> {
    const location = response.headers.get('location');
    if (follow && response.status === 303 && location && /^\/oauth\/[^/]+\/(linked|cancelled)$/.test(location)) return this.send(location, { method: 'GET' });
    return response;
  }

  /**
   * Opens a link URL the way a person does: loads the confirmation page,
   * presses Continue, and follows the gateway's own 303 to the flow's page.
   * A 303 elsewhere (to the provider, to `return_to`) and any refusal are
   * returned as they are.
   */
  async openLink(url: string | URL): Promise<Response> {
    const page = await this.get(url);
    if (page.status !== 200) return page;
    const { action, fields } = confirmationForm(await page.text());
    const continued = await this.post(action, fields);
    const location = continued.headers.get('location');
    return continued.status === 303 && location?.startsWith('/') ? this.get(location) : continued;
  }

  async post(url: string | URL, form: Record<string, string>, options: { follow?: boolean } = {}): Promise<Response> {
    return this.follow(await this.sendForm(url, form), options.follow ?? true);
  }

  /**
   * Opens `page` and sends its form that posts to `action`, as a person
   * clicking its button does: the form's hidden fields (its CSRF and one-time
   * tokens) with `fields` filled in.
   */
  async submit(page: string, action: string, fields: Record<string, string> = {}, options: { follow?: boolean } = {}): Promise<Response> {
    const html = await (await this.get(page)).text();
    return this.post(action, { ...hiddenFields(html, action), ...fields }, options);
  }

  private async sendForm(url: string | URL, form: Record<string, string>): Promise<Response> {
    return this.send(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
    });
  }

  private async send(url: string | URL, init: RequestInit): Promise<Response> {
    const target = new URL(url, 'http://127.0.0.1:8000');
    const headers = new Headers(init.headers);
    if (this.cookies.size > 0) headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    const response = await this.request(target.pathname + target.search, { ...init, headers });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const at = pair!.indexOf('=');
      this.cookies.set(pair!.slice(0, at).trim(), pair!.slice(at + 1).trim());
    }
    return response;
  }
}

/** The hidden fields of the page's form that posts to `action`. */
export function hiddenFields(html: string, action: string): Record<string, string> {
  const form = [...html.matchAll(/<form method="post" action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/g)].find((m) => unescapeHtml(m[1]!) === action);
  if (!form) throw new Error(`no form posts to ${action} on this page: ${html.slice(0, 200)}`);
  return Object.fromEntries([...form[2]!.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1]!, unescapeHtml(m[2]!)]));
}

const unescapeHtml = (text: string) => text.replaceAll('&quot;', '"').replaceAll('&#39;', "'").replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&amp;', '&');

/** The confirmation page's form: where it posts and its hidden fields (the context and the CSRF token). */
export function confirmationForm(html: string): { action: string; fields: Record<string, string> } {
  const form = /<form method="post" action="([^"]+)">([\s\S]*?)<\/form>/.exec(html);
  if (!form || !/name="csrf"/.test(form[2]!)) throw new Error(`not a confirmation page: ${html.slice(0, 200)}`);
  const fields = Object.fromEntries([...form[2]!.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1]!, unescapeHtml(m[2]!)]));
  return { action: unescapeHtml(form[1]!), fields };
}

/**
 * A person opens `url` (a link URL of the `pin` test provider) on a gateway
 * listening at `base` and completes its password form and wait, over real HTTP.
 * Resolves with the last poll's answer (`{ status: 'linked' }` once linked).
 */
export async function completePinLink(base: string, url: string, userId: string): Promise<unknown> {
  const browser = new TestBrowser((path, init) => fetch(new URL(path, base), { ...init, redirect: 'manual' }));
  const form = await (await browser.openLink(url)).text();
  const state = /name="state" value="([^"]+)"/.exec(form)![1]!;
  await browser.post('/oauth/pin/callback', { state, username: userId, password: 'correct horse' });
  await browser.get(`/oauth/pin/poll?state=${state}`);
  return (await browser.get(`/oauth/pin/poll?state=${state}`)).json();
}

/**
 * A person links their account `accountId` at a fake OAuth provider (the
 * fake Discord or AniList) to the bot's `userId`: the link URL opened,
 * Continue, and consent at the fake.
 */
export async function linkAtFake<Id>(
  app: { request(path: string, init?: RequestInit): Response | Promise<Response> },
  provider: { id: 'discord' | 'anilist'; fake: { origin: string; approve(authorizeUrl: URL, accountId: Id): URL } },
  userId: string,
  accountId: Id,
  options: { now?: number } = {},
): Promise<void> {
  const browser = new TestBrowser((path, init) => app.request(path, init));
  const start = await browser.openLink(`/oauth/${provider.id}/start?context=${await mintContext(provider.id, userId, options.now === undefined ? {} : { now: options.now })}`);
  const approved = await browser.get(provider.fake.approve(atFake(new URL(start.headers.get('location')!), provider.fake.origin), accountId));
  if (approved.status !== 200) throw new Error(`linking at the fake ${provider.id} answered ${approved.status}`);
}

/** `linkAtFake` at the fake Discord. */
export const linkAtFakeDiscord = (app: Parameters<typeof linkAtFake>[0], discord: Pick<FakeDiscord, 'approve' | 'origin'>, userId: string, discordId: string, options: { now?: number } = {}) =>
  linkAtFake(app, { id: 'discord', fake: discord }, userId, discordId, options);
