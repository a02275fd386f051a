import { createRequire } from 'node:module';
import type * as Sentry from '@sentry/node';
import pino, { type DestinationStream, type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';
import type { Config } from './config.ts';

/**
 * Structured logs: JSON lines, or in development readable lines
 * (`pretty`, pino-pretty). Nothing logs tokens on purpose; the redaction list
 * is the second line of defence should a credential-shaped field slip into
 * one, and applies to both formats (pino-pretty formats the redacted line).
 */
export function createLogger(level: Config['logLevel'], destination?: DestinationStream, format: Config['logFormat'] = 'json', color = false): Logger {
  return pino(
    {
      level,
      base: { service: 'linkgate' },
      redact: {
        paths: [
          'accessToken', 'refreshToken', 'password', 'code', 'state', 'context', 'ctx', 'authorization', 'cookie',
          '*.accessToken', '*.refreshToken', '*.password', '*.state', '*.context', '*.ctx', '*.authorization', '*.cookie',
        ],
        censor: '[redacted]',
      },
    },
    format === 'pretty' ? prettyStream(destination, color) : destination,
  );
}

/**
 * pino-pretty in this thread, writing synchronously (development only):
 * its lines keep their order with what the process prints itself (the
 * start-up banner), which a worker-thread transport would not promise.
 * Loaded on first use, so a production process never loads it. `color`:
 * the caller knows whether it writes to a terminal.
 */
function prettyStream(destination: DestinationStream | undefined, color: boolean): DestinationStream {
  const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
  return pretty({
    ...(destination ? { destination } : {}),
    sync: true,
    // Its own guess turns colours on wherever CI is set; a file or a pipe gets plain text.
    colorize: color,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,service',
    singleLine: true,
  });
}

const KEEP_HEADERS = new Set(['user-agent', 'content-type', 'accept', 'x-request-id']);

/** Paths carry user ids; queries carry contexts, states and codes. */
export function scrubUrl(url: string): string {
  const withoutQuery = url.replace(/[?#].*$/s, '');
  return withoutQuery.replace(/\/users\/[^/]+/g, '/users/:userId');
}

/** Free text (a span name, a transaction, a log line): every URL or path in it scrubbed. */
export function scrubText(text: string): string {
  return text.replace(/\S*[/?#]\S*/g, (token) => scrubUrl(token));
}

/**
 * Attribute names whose values can hold a secret or identify a person:
 * queries and bodies, credentials, the user and their address.
 */
const SECRET_ATTRIBUTE = /query|body|cookie|authorization|token|password|secret|^user\.|^client\.address$|^network\.peer\.address$/i;

/**
 * Scrubs span or trace attributes in place: drops secret-bearing ones and
 * headers other than a few harmless ones, and scrubs every string left
 * (`url.full`, `url.path`, `http.target`, `http.url`, `sentry.segment.name`, …).
 */
export function scrubAttributes(attributes: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(attributes)) {
    const header = /^http\.(?:request|response)\.header\.(.+)$/i.exec(key);
    if (header ? !KEEP_HEADERS.has(header[1]!.toLowerCase()) : SECRET_ATTRIBUTE.test(key)) {
      delete attributes[key];
    } else if (typeof value === 'object' && value !== null && 'value' in value) {
      attributes[key] = { ...value, value: scrubValue(value.value) };
    } else {
      attributes[key] = scrubValue(value);
    }
  }
}

function scrubValue(value: unknown): unknown {
  if (typeof value === 'string') return scrubText(value);
  if (Array.isArray(value)) return value.map((item: unknown) => (typeof item === 'string' ? scrubText(item) : item));
  return value;
}

type StreamedSpan = Parameters<NonNullable<Sentry.NodeOptions['beforeSendSpan']>>[0];

/**
 * Scrubs a span before it leaves the process. With the SDK's default span
 * streaming, spans are sent on their own and never pass `beforeSend` or
 * `beforeSendTransaction`: this (`beforeSendSpan`) is their only gate.
 */
export function scrubSpan<S extends StreamedSpan>(span: S): S {
  span.name = scrubText(span.name);
  scrubAttributes(span.attributes);
  for (const link of span.links ?? []) if (link.attributes) scrubAttributes(link.attributes);
  return span;
}

/**
 * Removes from a Sentry event everything that could hold a secret or a user
 * id: cookies, bodies, queries, most headers, the user, local variables, and
 * URLs in the transaction name, trace data and breadcrumbs. Runs in `beforeSend`, so no
 * error event leaves the process unscrubbed.
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
  // Local variables of a frame can hold anything (a decrypted credential): never sent.
  for (const exception of event.exception?.values ?? []) for (const frame of exception.stacktrace?.frames ?? []) delete frame.vars;
  if (event.transaction) event.transaction = scrubText(event.transaction);
  const trace = event.contexts?.trace;
  if (trace?.data) scrubAttributes(trace.data);
  for (const span of event.spans ?? []) {
    if (span.description) span.description = scrubText(span.description);
    if (span.data) scrubAttributes(span.data);
  }
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
  if (crumb.message) crumb.message = scrubText(crumb.message);
  return crumb;
}

/** What the gateway hands Sentry: unexpected errors, and each request's route. */
export interface Observer {
  reportError(error: unknown): void;
  /** A fault that ends the process (src/server.ts): reported as fatal. */
  reportFatal(error: unknown): void;
  /** Sends what is queued, waiting `timeoutMs` at most. */
  flush(timeoutMs: number): Promise<void>;
  /** Names the current request's trace (and errors it reports) after its route pattern. */
  nameRoute(name: string): void;
}

/**
 * Starts Sentry when SENTRY_DSN is set. Imported only then: the SDK costs
 * ~55 MB of memory and start-up time a deployment without Sentry should not
 * pay. `overrides` is for tests (a transport that keeps what would be sent);
 * the scrubbing callbacks always win.
 */
export async function initSentry(config: Config, overrides: Partial<Sentry.NodeOptions> = {}): Promise<Observer | undefined> {
  if (!config.sentry.dsn) return undefined;
  const sentry = await import('@sentry/node');
  sentry.init({
    ...overrides,
    dsn: config.sentry.dsn,
    environment: config.sentry.environment,
    tracesSampleRate: config.sentry.tracesSampleRate,
    // Collect less in the first place; the callbacks below are the guarantee.
    dataCollection: {
      userInfo: false,
      cookies: false,
      httpHeaders: { request: { allow: [...KEEP_HEADERS] }, response: { allow: ['content-type'] } },
      httpBodies: [],
      urlQueryParams: false,
      databaseQueryData: false,
      stackFrameVariables: false,
    },
    // The gateway's own handlers (src/server.ts) log, report and end the process on a fault
    // nothing handles: the SDK's would keep it running after a rejection (its `warn` mode)
    // and print the stack on stderr, outside the log.
    integrations: (defaults) => defaults.filter((integration) => integration.name !== 'OnUncaughtException' && integration.name !== 'OnUnhandledRejection'),
    beforeSend: (event) => scrubEvent(event),
    beforeSendSpan: (span) => scrubSpan(span),
    beforeBreadcrumb: (crumb) => scrubBreadcrumb(crumb),
  });
  return {
    reportError: (error) => sentry.captureException(error),
    reportFatal: (error) => sentry.captureException(error, { level: 'fatal' }),
    flush: async (timeoutMs) => {
      await sentry.flush(timeoutMs);
    },
    nameRoute(name) {
      // Without this the SDK names a request after its raw path, user id included.
      sentry.getIsolationScope().setTransactionName(name);
      const span = sentry.getActiveSpan();
      if (span) sentry.updateSpanName(sentry.getRootSpan(span), name);
    },
  };
}
