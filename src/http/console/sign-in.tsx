/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/**
 * The console's signing in and out: the chooser, the sign-in form, an invite's
 * page, the refusal page, sign-out; and `finish`, where a console sign-in's
 * flow ends (src/http/oauth.tsx hands it here): an admin gets a session, an
 * invite is spent, anyone else is refused and audited.
 */
import type { Hono, Context } from 'hono';
import * as v from 'valibot';
import { InviteToken, INVITE_TTL_SECONDS, inviteOpen, acceptInvite } from '../../core/console-invites.ts';
import { randomToken } from '../../core/crypto.ts';
import { LinkgateError } from '../../core/errors.ts';
import { DEFAULT_TENANT, ProviderId } from '../../core/ids.ts';
import type { Outcome } from '../../core/linking.ts';
import { parseInput } from '../../core/validation.ts';
import { checkCsrfToken, checkSameOrigin, readForm } from '../cookie-session.ts';
import type { AppEnv } from '../middleware.ts';
import { readBrowserCookie, setBrowserCookie } from '../oauth.tsx';
import { MessagePage } from '../pages.tsx';
import { CONSOLE_SESSION, type ConsoleKit } from './kit.tsx';

export function signInRoutes(app: Hono<AppEnv>, kit: ConsoleKit): void {
  const { deps, db, now, origin, sessions, cookie, signedInUrl, inviteCookie, configuredProviders, signInProviders, frame, audit, signedIn } = kit;

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
}

/**
 * Where a console sign-in ends (src/http/oauth.tsx calls it), the person
 * known: an admin gets a session and goes to the tenants; an invite in this
 * browser is spent on someone not yet an admin; anyone else is refused, and
 * the refusal audited.
 */
export function finishSignIn(kit: ConsoleKit) {
  const { deps, db, now, sessions, cookie, inviteCookie, adminOf, audit } = kit;

  return async function finish(c: Context<AppEnv>, outcome: Extract<Outcome, { kind: 'web_signed_in' }>): Promise<URL> {
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
  };
}
