/**
 * What the gateway's own signed-in pages share (the admin console at /admin;
 * the account page at /me can use the same): a cookie holding a session
 * token of src/core/web-sessions.ts, the CSRF token every form of the session
 * carries, and the Origin check every write passes.
 *
 * The cookie: over https `__Host-<name>`, Secure, `Path=/`, no `Domain`, so a
 * sibling subdomain can neither set nor shadow it (RFC 6265bis §4.1.3.2);
 * HttpOnly; `SameSite=Lax`: sent when the provider's redirect brings the
 * browser back from signing in (a `Strict` cookie set at that callback would
 * be withheld from the page it redirects to, the redirect chain having
 * started cross-site), never on a cross-site POST. Lax alone is not the
 * defence: every write also checks Origin and the CSRF token.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { LinkgateError } from '../core/errors.ts';
import type { AppEnv } from './middleware.ts';

export interface SessionCookieOptions {
  /** The cookie's name without the prefix: `linkgate_console`. */
  name: string;
  /** PUBLIC_BASE_URL is https: the `__Host-` prefix and Secure. */
  secureCookies: boolean;
}

export function sessionCookie(options: SessionCookieOptions) {
  const prefix = options.secureCookies ? ({ prefix: 'host', secure: true } as const) : {};
  return {
    read: (c: Context<AppEnv>): string | undefined => getCookie(c, options.name, options.secureCookies ? 'host' : undefined),
    set(c: Context<AppEnv>, token: string, expires: Date): void {
      setCookie(c, options.name, token, { httpOnly: true, sameSite: 'Lax', path: '/', expires, ...prefix });
    },
    clear(c: Context<AppEnv>): void {
      deleteCookie(c, options.name, { path: '/', httpOnly: true, sameSite: 'Lax', ...prefix });
    },
  };
}

export type SessionCookie = ReturnType<typeof sessionCookie>;

/**
 * The CSRF token of a session: an HMAC keyed with the session token itself,
 * so it is per session, needs no storage, and only someone holding the
 * HttpOnly cookie's value can compute it (the synchronizer-token pattern of
 * OWASP's CSRF cheat sheet, derived instead of stored).
 */
export const csrfTokenOf = (sessionToken: string): string => createHmac('sha256', sessionToken).update('linkgate csrf v1').digest('base64url');

/** The form's token is this session's; compared in constant time. */
export function checkCsrfToken(sessionToken: string, presented: string | undefined): void {
  const expected = Buffer.from(csrfTokenOf(sessionToken));
  const given = Buffer.from(presented ?? '');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new LinkgateError('csrf_failed', 'this form did not come from a page of this session', { status: 403 });
  }
}

/**
 * A write must come from the gateway's own pages: Fetch Metadata says
 * `same-origin` (browsers that send it; our pages' `Referrer-Policy:
 * no-referrer` makes Chromium send `Origin: null` on their own forms, so
 * Sec-Fetch-Site is the header to believe), or, without it, the Origin is
 * ours. A request with neither header is not a browser's (it carries no
 * ambient cookie an attacker could borrow, and still needs the CSRF token).
 */
export function checkSameOrigin(c: Context<AppEnv>, ownOrigin: string): void {
  const site = c.req.header('sec-fetch-site');
  if (site !== undefined) {
    if (site !== 'same-origin') throw crossSite();
    return;
  }
  const origin = c.req.header('origin');
  if (origin !== undefined && origin !== ownOrigin) throw crossSite();
}

const crossSite = () => new LinkgateError('csrf_failed', 'this request came from another site', { status: 403 });

/** Our pages post URL-encoded forms; anything else is not from them. */
export async function readForm(c: Context<AppEnv>): Promise<URLSearchParams> {
  if (!/^application\/x-www-form-urlencoded\b/i.test(c.req.header('content-type') ?? '')) {
    throw new LinkgateError('bad_request', 'expected a form (application/x-www-form-urlencoded)');
  }
  return new URLSearchParams(await c.req.text());
}
