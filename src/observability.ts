import type * as Sentry from '@sentry/node';
import pino, { type DestinationStream, type Logger } from 'pino';
import type { Config } from './config.ts';

/**
 * Structured JSON logs. Nothing logs tokens on purpose; the redaction list is
 * the second line of defence should a credential-shaped field slip into one.
 */
export function createLogger(level: Config['logLevel'], destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'linkgate' },
      redact: {
        paths: [
          'accessToken', 'refreshToken', 'password', 'code', 'state', 'context', 'authorization', 'cookie',
          '*.accessToken', '*.refreshToken', '*.password', '*.state', '*.context', '*.authorization', '*.cookie',
        ],
        censor: '[redacted]',
      },
    },
    destination,
  );
}

const KEEP_HEADERS = new Set(['user-agent', 'content-type', 'accept', 'x-request-id']);

/** Paths carry user ids; queries carry contexts, states and codes. */
export function scrubUrl(url: string): string {
  const withoutQuery = url.replace(/[?#].*$/s, '');
  return withoutQuery.replace(/\/users\/[^/]+/g, '/users/:userId');
}

/**
 * Removes from a Sentry event everything that could hold a secret or a user
 * id: cookies, bodies, queries, most headers, the user, and URLs in
 * breadcrumbs. Runs in `beforeSend`, so nothing leaves the process unscrubbed.
 */
export function scrubEvent<E extends Sentry.Event>(event: E): E {
  if (event.request) {
    const { request } = event;
    delete request.cookies;
    delete request.data;
    delete request.query_string;
    if (request.url) request.url = scrubUrl(request.url);
    if (request.headers) {
      request.headers = Object.fromEntries(Object.entries(request.headers).filter(([name]) => KEEP_HEADERS.has(name.toLowerCase())));
    }
  }
  delete event.user;
  for (const crumb of event.breadcrumbs ?? []) scrubBreadcrumb(crumb);
  return event;
}

export function scrubBreadcrumb(crumb: Sentry.Breadcrumb): Sentry.Breadcrumb {
  if (crumb.data) {
    for (const key of Object.keys(crumb.data)) {
      const value = crumb.data[key];
      if (typeof value === 'string' && /url|from|to/i.test(key)) crumb.data[key] = scrubUrl(value);
      else if (/query|body|cookie|token|authorization/i.test(key)) delete crumb.data[key];
    }
  }
  if (crumb.message) crumb.message = crumb.message.replace(/https?:\/\/\S+/g, (url) => scrubUrl(url));
  return crumb;
}

/**
 * Starts Sentry when SENTRY_DSN is set; returns how to report an unexpected
 * error. Imported only then: the SDK costs ~55 MB of memory and start-up time
 * a deployment without Sentry should not pay.
 */
export async function initSentry(config: Config): Promise<((error: unknown) => void) | undefined> {
  if (!config.sentry.dsn) return undefined;
  const sentry = await import('@sentry/node');
  sentry.init({
    dsn: config.sentry.dsn,
    environment: config.sentry.environment,
    tracesSampleRate: config.sentry.tracesSampleRate,
    beforeSend: (event) => scrubEvent(event),
    beforeSendTransaction: (event) => scrubEvent(event),
    beforeBreadcrumb: (crumb) => scrubBreadcrumb(crumb),
  });
  return (error) => sentry.captureException(error);
}
