/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/**
 * The admin console, `/admin` (issue #21): server-rendered pages for the
 * operators LINKGATE_ADMINS names. Mounted only when that list has an entry
 * (src/app.tsx): otherwise every /admin URL is the gateway's 404 and nothing
 * here runs, reads or writes.
 *
 * Sign-in is the gateway's own: a chooser of the default tenant's providers
 * that some admin signs in with, then the linking core's web sign-in
 * (`startWebSignIn`), which the provider's callback (src/http/oauth.tsx)
 * hands to `finish` here. Only an identity LINKGATE_ADMINS lists gets a
 * session (`console` purpose of src/core/web-sessions.ts: 8 h at most, 30 min
 * idle, revocable); anyone else is refused, and the refusal audited.
 *
 * Every change goes through the function the operator API uses for it
 * (src/http/admin.ts) and is audited the same way, the actor being
 * `admin:<provider>:<externalId>`. Every write checks Origin and the
 * session's CSRF token (src/http/cookie-session.ts), then the role: `owner`
 * everything, `admin` everything in its tenants, `support` nothing (its
 * pages have no write control, and a forced post is refused and audited).
 * Owners also manage admins (`/admin/admins`): LINKGATE_ADMINS' entries are
 * shown read-only; owners made by invites are removed there (their sessions
 * end at once), and invites made and revoked.
 *
 * The screens are modules of this folder, each given the shared kit
 * (kit.tsx): sign-in.tsx, tenants.tsx, providers.tsx, keys.tsx (API keys and
 * context secrets), apps.tsx, webhook.tsx, links.tsx, admins.tsx, audit.tsx.
 */
import { Hono } from 'hono';
import { isLinkgateError } from '../../core/errors.ts';
import { bodyLimit, type AppEnv } from '../middleware.ts';
import { MessagePage } from '../pages.tsx';
import { adminScreens } from './admins.tsx';
import { appScreens } from './apps.tsx';
import { auditScreens } from './audit.tsx';
import { keyScreens } from './keys.tsx';
import { createConsoleKit, FormAlreadySent, type ConsoleDeps } from './kit.tsx';
import { linkScreens } from './links.tsx';
import { providerScreens } from './providers.tsx';
import { finishSignIn, signInRoutes } from './sign-in.tsx';
import { tenantScreens } from './tenants.tsx';
import { webhookScreens } from './webhook.tsx';

export { CONSOLE_COOKIE, CONSOLE_SESSION, CONSOLE_SIGNED_IN, INVITE_COOKIE, type ConsoleDeps } from './kit.tsx';

export function consoleRoutes(deps: ConsoleDeps) {
  const kit = createConsoleKit(deps);
  const { frame } = kit;
  const app = new Hono<AppEnv>();
  // Forms only, as every browser form post of the gateway (SECURITY.md): 16 KiB.
  app.use('*', bodyLimit(16 * 1024));
  // The screens, in the order their routes were registered.
  signInRoutes(app, kit);
  tenantScreens(app, kit);
  providerScreens(app, kit);
  keyScreens(app, kit);
  appScreens(app, kit);
  webhookScreens(app, kit);
  linkScreens(app, kit);
  adminScreens(app, kit);
  auditScreens(app, kit);

  // An error's message is written for the API (lower case, no full stop); on a page it is a sentence.
  const asSentence = (message: string) => `${message.charAt(0).toUpperCase()}${message.slice(1)}${/[.!?]$/.test(message) ? '' : '.'}`;

  // A refusal on a console page is said in the console's words; the gateway's onError keeps the rest.
  app.onError((error, c) => {
    if (!isLinkgateError(error) || error.status >= 500) throw error;
    c.get('log')().info({ errorCode: error.code, status: error.status, message: error.message }, 'request refused');
    const title = error instanceof FormAlreadySent ? 'This form was already sent' : error.status === 403 ? 'Not allowed' : error.status === 404 ? 'Not found' : error.status === 401 ? 'Not signed in' : 'This could not be done';
    return c.html(
      <MessagePage frame={frame(c)} title={title} lines={[asSentence(error.message)]} code={error.code}>
        {error instanceof FormAlreadySent ? (
          <p>
            <a href={error.back}>Back to the page</a>
          </p>
        ) : null}
      </MessagePage>,
      error.status as 400,
    );
  });

  return {
    routes: app,
    finish: finishSignIn(kit),
  };
}

export type Console = ReturnType<typeof consoleRoutes>;
