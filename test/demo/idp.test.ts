import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_ACCOUNT, DemoPortError, startDemoIdp, type DemoIdp } from '../../src/demo/idp.ts';
import { TestBrowser } from '../helpers/browser.ts';

const REDIRECT_URI = 'http://127.0.0.1:9/oauth/demo/callback'; // never called: the tests stop at the redirect

let idp: DemoIdp;
let config: client.Configuration;

beforeAll(async () => {
  idp = await startDemoIdp({ port: 0, redirectUri: REDIRECT_URI });
  config = await client.discovery(new URL(idp.issuer), idp.clientId, undefined, client.ClientSecretBasic(idp.clientSecret), {
    execute: [client.allowInsecureRequests],
  });
});
afterAll(async () => {
  await idp?.close();
});

/** A person's browser at the IdP: cookies kept, redirects followed by hand. */
const newBrowser = () => new TestBrowser((path, init) => fetch(`${idp.issuer}${path}`, { ...init, redirect: 'manual' }));

async function authorize() {
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope: 'openid profile email',
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  return { url, codeVerifier, state, nonce };
}

/** Follows redirects within the IdP: the page it ends on, or the URL it sends the browser off to. */
async function follow(browser: TestBrowser, response: Response): Promise<{ page?: Response; location?: URL }> {
  let current = response;
  for (let hop = 0; hop < 10; hop++) {
    const location = current.headers.get('location');
    if (current.status < 300 || current.status >= 400 || !location) return { page: current };
    const next = new URL(location, idp.issuer);
    if (next.origin !== idp.issuer) return { location: next };
    current = await browser.get(next);
  }
  throw new Error('too many redirects');
}

async function pageText(step: Promise<{ page?: Response }>): Promise<{ status: number; html: string; headers: Headers }> {
  const { page } = await step;
  if (!page) throw new Error('expected a page at the IdP');
  return { status: page.status, html: await page.text(), headers: page.headers };
}

const formAction = (html: string, name: string) => {
  const match = new RegExp(`action="([^"]*/${name})"`).exec(html);
  if (!match) throw new Error(`no ${name} form in: ${html.slice(0, 300)}`);
  return match[1]!;
};

describe('the demo OpenID provider', () => {
  it('signs the demo account in through its pages and the client gets an ID token about it', async () => {
    const browser = newBrowser();
    const { url, codeVerifier, state, nonce } = await authorize();
    const login = await pageText(follow(browser, await browser.get(url)));
    expect(login.status).toBe(200);
    expect(login.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
    expect(login.html).toContain('Sign in to Demo IdP');

    const consent = await pageText(follow(browser, await browser.post(formAction(login.html, 'login'), { username: DEMO_ACCOUNT.username, password: DEMO_ACCOUNT.password })));
    const consentHtml = consent.html;
    expect(consentHtml).toContain('Allow Linkgate (demo) to know who you are?');
    expect(consentHtml).toContain('your name and username');

    const done = await follow(browser, await browser.post(formAction(consentHtml, 'confirm'), {}));
    if (!done.location) throw new Error('expected a redirect to the client');
    expect(`${done.location.origin}${done.location.pathname}`).toBe(REDIRECT_URI);
    const tokens = await client.authorizationCodeGrant(config, done.location, { pkceCodeVerifier: codeVerifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true });
    expect(tokens.claims()).toMatchObject({ sub: 'ada', name: 'Ada Lovelace', preferred_username: 'ada', email: 'ada@demo.test' });
    expect(tokens.refresh_token).toBeTruthy();
  });

  it('refuses a wrong password with the form again, escaping what was typed and never echoing the password', async () => {
    const browser = newBrowser();
    const action = formAction((await pageText(follow(browser, await browser.get((await authorize()).url)))).html, 'login');

    const wrong = await browser.post(action, { username: '<b>ada</b>', password: 'not-the-password-42' });
    expect(wrong.status).toBe(401);
    const html = await wrong.text();
    expect(html).toContain('Wrong username or password.');
    expect(html).toContain('value="&lt;b&gt;ada&lt;/b&gt;"');
    expect(html).not.toContain('<b>ada</b>');
    expect(html).not.toContain('not-the-password-42');

    expect((await browser.post(action, { username: 'ada', password: `${DEMO_ACCOUNT.password}x` })).status).toBe(401);
    // The right password for another name is refused as well.
    expect((await browser.post(action, { username: 'grace', password: DEMO_ACCOUNT.password })).status).toBe(401);
  });

  it('sends a person who cancels back to the client with access_denied', async () => {
    const browser = newBrowser();
    const login = await pageText(follow(browser, await browser.get((await authorize()).url)));
    const cancelled = await follow(browser, await browser.post(formAction(login.html, 'abort'), {}));
    if (!cancelled.location) throw new Error('expected a redirect to the client');
    expect(`${cancelled.location.origin}${cancelled.location.pathname}`).toBe(REDIRECT_URI);
    expect(cancelled.location.searchParams.get('error')).toBe('access_denied');
  });

  it('answers a stale or foreign interaction with a page, not a crash', async () => {
    const response = await newBrowser().get('/interaction/not-a-real-uid');
    expect(response.status).toBe(400);
    expect(await response.text()).toContain('This sign-in has expired');
  });

  it('says which port it could not listen on', async () => {
    await expect(startDemoIdp({ port: Number(new URL(idp.issuer).port), redirectUri: REDIRECT_URI })).rejects.toThrow(DemoPortError);
    await expect(startDemoIdp({ port: Number(new URL(idp.issuer).port), redirectUri: REDIRECT_URI })).rejects.toThrow(/127\.0\.0\.1:\d+ \(EADDRINUSE\)/);
  });
});
