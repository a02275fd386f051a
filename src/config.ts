import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseEnv } from 'node:util';
import * as v from 'valibot';
import { randomToken, type EncryptionKey } from './core/crypto.ts';
import { issueMessage } from './core/validation.ts';

export type Env = Readonly<Record<string, string | undefined>>;

export interface Config {
  readonly nodeEnv: 'development' | 'production' | 'test';
  readonly host: string;
  readonly port: number;
  /** Where browsers reach the gateway; link URLs and default redirect URIs are built on it. */
  readonly publicBaseUrl: URL;
  readonly databaseUrl: string | undefined;
  readonly dataDir: string;
  readonly providersDir: string;
  readonly contextSigningSecret: string;
  readonly contextTtlSeconds: number;
  readonly stateTtlSeconds: number;
  /** How long an RPC sign-in's outcome is kept for AwaitLogin after InitiateLogin (the sweep). */
  readonly loginSessionTtlSeconds: number;
  readonly userIdHashSalt: string;
  readonly apiKeys: readonly string[];
  /** Keys of the operator API (/api/admin/v1); empty: that API answers 404. */
  readonly adminKeys: readonly string[];
  /** Who may sign in to the console at /admin (LINKGATE_ADMINS); empty: every /admin URL answers 404. */
  readonly admins: readonly ConsoleAdmin[];
  readonly encryptionKeys: readonly EncryptionKey[];
  /** Origins a link context's `return_to` may send the browser back to. */
  readonly returnToOrigins: readonly string[];
  readonly allowSharedAccounts: boolean;
  /** The provider whose account id is the user id of a sign-in (the default tenant's; docs/sign-in.md). */
  readonly userProvider: string;
  /** How long a device's sign-in code waits for the person (RFC 8628 `expires_in`; docs/sign-in.md). */
  readonly deviceCodeTtlSeconds: number;
  /** The web-session API's cookie sessions: their longest life, and the idle timeout if any (docs/sign-in.md). */
  readonly webSession: { readonly ttlSeconds: number; readonly idleSeconds: number | undefined };
  /** The token API refreshes a token that expires within this many seconds. */
  readonly refreshMarginSeconds: number;
  /** How often one instance re-checks `needs_reauth` links (LINKGATE_REAUTH_RECHECK_MINUTES); 0: never. */
  readonly reauthRecheckMs: number;
  /** How long each link's event log keeps an event (LINKGATE_LINK_EVENT_RETENTION_DAYS, 90). */
  readonly linkEventRetentionDays: number;
  /** Every request to a provider (or a server a user typed) gives up after this long. */
  readonly providerTimeoutMs: number;
  /** Where link events are POSTed, signed; `undefined`: no webhooks. */
  readonly webhook: { readonly url: URL; readonly secret: string; readonly maxAttempts: number; readonly retryBaseMs: number } | undefined;
  /** Serve Prometheus metrics at /metrics (with an API key). */
  readonly metrics: boolean;
  /** Requests allowed per API key, and per client address on the browser routes; `limit` 0 turns a rule off. */
  readonly rateLimits: { readonly api: RateLimitRule; readonly browser: RateLimitRule };
  /** How many reverse proxies in front of the gateway append to X-Forwarded-For (0: use the socket address). */
  readonly trustProxyHops: number;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** `pretty` (readable lines) in development, `json` (one object a line) in production and tests. */
  readonly logFormat: 'json' | 'pretty';
  readonly sentry: { readonly dsn: string | undefined; readonly environment: string; readonly tracesSampleRate: number };
  /**
   * Keep the Annie Mei bot's view of the database (`annie_auth.oauth_credentials`
   * and `oauth_sessions`) on PostgreSQL when AniList is configured
   * (src/compat/annie-mei/database.ts).
   */
  readonly annieMeiCompat: boolean;
  readonly brand: Brand;
  /** Things that work but deserve the operator's attention, logged once at start-up. */
  readonly warnings: readonly string[];
}

/** How the operator's pages look and whom they name (LINKGATE_BRAND_*, LINKGATE_SUPPORT_URL). */
export interface Brand {
  /** The bot's or operator's name: "<name> will be able to …". */
  readonly name?: string | undefined;
  /** A `data:` image, or an image on PUBLIC_BASE_URL's origin: the pages' CSP allows nothing else. */
  readonly iconUrl?: string | undefined;
  /** `#rrggbb`, for buttons. */
  readonly color?: string | undefined;
  /** Where a person gets help (https, or mailto:). */
  readonly supportUrl?: string | undefined;
}

export const ADMIN_ROLES = ['owner', 'admin', 'support'] as const;
export type AdminRole = (typeof ADMIN_ROLES)[number];

/**
 * One entry of LINKGATE_ADMINS: an identity at one of the default tenant's
 * providers, its role, and (admin and support only) the tenants it is given;
 * `tenants` null: every tenant.
 */
export interface ConsoleAdmin {
  readonly role: AdminRole;
  readonly provider: string;
  readonly externalId: string;
  readonly tenants: readonly string[] | null;
}

/**
 * `role[@tenant+tenant…]=provider:externalId`: `owner=discord:80351110224678912`,
 * `support@quizbot=atproto:did:plc:abc123`. The external id is everything
 * after the first colon (a DID has colons of its own); the tenants sit on the
 * role's side so that an id may hold any character but a comma.
 */
export const ConsoleAdminEntry = v.pipe(
  v.string(),
  v.regex(
    /^(owner|admin|support)(@[a-z0-9][a-z0-9-]{0,39}(\+[a-z0-9][a-z0-9-]{0,39})*)?=[a-z][a-z0-9_-]{0,31}:\S{1,256}$/,
    'each entry must look like role=provider:externalId (role owner, admin or support; admin@tenant1+tenant2=… limits an admin or support to those tenants)',
  ),
  v.check((entry) => !entry.startsWith('owner@'), 'an owner has every tenant: owner@… takes no tenant list'),
  v.transform((entry): ConsoleAdmin => {
    const equals = entry.indexOf('=');
    const [role, tenants] = entry.slice(0, equals).split('@') as [AdminRole, string | undefined];
    const identity = entry.slice(equals + 1);
    const colon = identity.indexOf(':');
    return Object.freeze({ role, provider: identity.slice(0, colon), externalId: identity.slice(colon + 1), tenants: tenants === undefined ? null : Object.freeze(tenants.split('+')) });
  }),
);

/** At most `limit` requests in any `windowSeconds` (approximately: see src/core/rate-limit.ts). */
export interface RateLimitRule {
  readonly limit: number;
  readonly windowSeconds: number;
}

/**
 * The configuration's problems, all of them at once: each one line that
 * names the variable and says what is wrong, never its value.
 */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly problems: readonly string[];
  constructor(problems: string | readonly string[]) {
    const list = typeof problems === 'string' ? [problems] : problems;
    super(list.join('; '));
    this.problems = list;
  }
}

/** The secrets generated for development when they are missing. */
export const GENERATED_SECRETS = [
  'OAUTH_CONTEXT_SIGNING_SECRET',
  'USERID_HASH_SALT',
  'LINKGATE_API_KEYS',
  'LINKGATE_ENCRYPTION_KEYS',
] as const;

const defaultProvidersDir = fileURLToPath(new URL('../providers', import.meta.url));

/** Where provider modules are read from (LINKGATE_PROVIDERS_DIR, else this checkout's providers/). */
export function providersDirOf(env: Env): string {
  const dir = env.LINKGATE_PROVIDERS_DIR?.trim();
  return dir ? resolve(dir) : defaultProvidersDir;
}

const integer = (min: number, max: number) =>
  v.pipe(
    v.string(),
    v.regex(/^\d+$/, 'must be a whole number'),
    v.transform(Number),
    v.minValue(min, `must be at least ${min}`),
    v.maxValue(max, `must be at most ${max}`),
  );

const secret = v.pipe(v.string(), v.minLength(32, 'must be at least 32 characters'));

/**
 * The two secrets a bot shares with the gateway (the Annie Mei bot's `.env`
 * has them at any length): a short one is accepted with a warning, because
 * refusing it would mean changing the bot too.
 */
const SHARED_SECRETS = ['OAUTH_CONTEXT_SIGNING_SECRET', 'USERID_HASH_SALT'] as const;
const sharedSecret = v.pipe(v.string(), v.minLength(1, 'must not be empty'));
const SHORT_SECRET = 32;

const list = <T>(item: v.GenericSchema<string, T>, message: string) =>
  v.pipe(
    v.string(),
    v.transform((s) => s.split(',').map((part) => part.trim()).filter((part) => part !== '')),
    v.minLength(1, message),
    v.array(item),
  );

const boolean = v.pipe(
  v.picklist(['true', 'false', '1', '0'], 'must be true or false'),
  v.transform((s) => s === 'true' || s === '1'),
);

const httpUrl = v.pipe(
  v.string(),
  v.url('must be an absolute URL'),
  v.transform((s) => new URL(s)),
  v.check((u) => u.protocol === 'https:' || u.protocol === 'http:', 'must be an http(s) URL'),
);

const encryptionKey = v.pipe(
  v.string(),
  v.regex(/^[A-Za-z0-9_-]{1,32}:[A-Za-z0-9+/=_-]+$/, 'each key must look like kid:base64-of-32-bytes'),
  v.transform((s): EncryptionKey => {
    const at = s.indexOf(':');
    return { kid: s.slice(0, at), key: Buffer.from(s.slice(at + 1), 'base64') };
  }),
  v.check((k) => k.key.length === 32, 'each key must be 32 bytes once base64-decoded'),
);

const origin = v.pipe(
  v.string(),
  v.url('each origin must be an absolute URL such as https://bot.example'),
  v.transform((s) => new URL(s)),
  v.check((u) => u.protocol === 'https:' || u.protocol === 'http:', 'each origin must be http(s)'),
  v.transform((u) => u.origin),
);

/** How the pages look and whom they name: the environment's (LINKGATE_BRAND_*), or a tenant's own (src/http/admin.ts). */
export const BrandName = v.pipe(v.string(), v.maxLength(60, 'must be at most 60 characters'), v.regex(/^[^\p{Cc}\p{Cf}<>]*$/u, 'must not contain control characters or < >'));
export const BrandIconUrl = v.pipe(
  v.string(),
  v.maxLength(100_000, 'must be at most 100 000 characters (a small image)'),
  v.check(
    (s) => (s.startsWith('data:') ? /^data:image\/(png|jpeg|gif|webp|svg\+xml);base64,[A-Za-z0-9+/]+=*$/.test(s) : URL.canParse(s) && /^https?:$/.test(new URL(s).protocol)),
    'must be a data:image/…;base64 URL or a URL on PUBLIC_BASE_URL',
  ),
);
export const BrandColor = v.pipe(
  v.string(),
  v.regex(/^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$/, 'must be a colour like #5865f2'),
  v.transform((s) => (s.length === 4 ? `#${[...s.slice(1)].map((c) => c + c).join('')}` : s).toLowerCase()),
);
export const SupportUrl = v.pipe(
  v.string(),
  v.check((s) => URL.canParse(s) && ['https:', 'http:', 'mailto:'].includes(new URL(s).protocol), 'must be an http(s) or mailto: URL'),
);

const EnvSchema = v.object({
  NODE_ENV: v.optional(v.picklist(['development', 'production', 'test'], 'must be development, production or test'), 'development'),
  HOST: v.optional(v.pipe(v.string(), v.minLength(1)), '127.0.0.1'),
  PORT: v.optional(integer(0, 65535), '8000'),
  PUBLIC_BASE_URL: v.optional(httpUrl),
  DATABASE_URL: v.optional(
    v.pipe(v.string(), v.regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')),
  ),
  DATA_DIR: v.optional(v.pipe(v.string(), v.minLength(1)), './.linkgate'),
  LINKGATE_PROVIDERS_DIR: v.optional(v.pipe(v.string(), v.minLength(1))),
  OAUTH_CONTEXT_SIGNING_SECRET: sharedSecret,
  OAUTH_CONTEXT_TTL_SECONDS: v.optional(integer(10, 86400), '300'),
  OAUTH_STATE_TTL_SECONDS: v.optional(integer(60, 3600), '300'),
  LINKGATE_LOGIN_SESSION_TTL_SECONDS: v.optional(integer(60, 86400), '1800'),
  USERID_HASH_SALT: sharedSecret,
  LINKGATE_API_KEYS: list(secret, 'must list at least one key'),
  LINKGATE_ADMIN_KEYS: v.optional(list(secret, 'must list at least one key')),
  LINKGATE_ADMINS: v.optional(
    v.pipe(
      list(ConsoleAdminEntry, 'must list at least one admin'),
      v.check((admins) => new Set(admins.map((a) => `${a.provider}:${a.externalId}`)).size === admins.length, 'each identity may be listed once'),
    ),
  ),
  LINKGATE_ENCRYPTION_KEYS: v.pipe(
    list(encryptionKey, 'must list at least one key'),
    v.check((keys) => new Set(keys.map((k) => k.kid)).size === keys.length, 'key ids must be unique'),
  ),
  LINKGATE_RETURN_TO_ORIGINS: v.optional(list(origin, 'must list at least one origin')),
  LINK_ALLOW_SHARED_ACCOUNTS: v.optional(boolean, 'false'),
  LINKGATE_USER_PROVIDER: v.optional(v.pipe(v.string(), v.regex(/^[a-z][a-z0-9_-]{0,31}$/, 'must be a provider id (lowercase letters, digits, _ and -)')), 'discord'),
  LINKGATE_DEVICE_CODE_TTL_SECONDS: v.optional(integer(2, 3600), '600'),
  LINKGATE_WEB_SESSION_TTL_SECONDS: v.optional(integer(300, 7 * 86400), '28800'),
  LINKGATE_WEB_SESSION_IDLE_SECONDS: v.optional(integer(60, 7 * 86400)),
  LINKGATE_REFRESH_MARGIN_SECONDS: v.optional(integer(0, 3600), '60'),
  LINKGATE_REAUTH_RECHECK_MINUTES: v.optional(integer(0, 10080), '60'),
  LINKGATE_LINK_EVENT_RETENTION_DAYS: v.optional(integer(1, 3650), '90'),
  LINKGATE_PROVIDER_TIMEOUT_SECONDS: v.optional(integer(1, 60), '10'),
  LINKGATE_METRICS: v.optional(boolean, 'false'),
  LINKGATE_WEBHOOK_URL: v.optional(
    v.pipe(httpUrl, v.check((u) => !u.username && !u.password, 'must not contain a user name or password (sign with LINKGATE_WEBHOOK_SECRET)')),
  ),
  LINKGATE_WEBHOOK_SECRET: v.optional(secret),
  LINKGATE_WEBHOOK_MAX_ATTEMPTS: v.optional(integer(1, 50), '10'),
  LINKGATE_WEBHOOK_RETRY_BASE_SECONDS: v.optional(
    v.pipe(v.string(), v.regex(/^\d+(\.\d+)?$/, 'must be a number of seconds'), v.transform(Number), v.minValue(0.01, 'must be at least 0.01'), v.maxValue(3600, 'must be at most 3600')),
    '10',
  ),
  LINKGATE_API_RATE_LIMIT: v.optional(integer(0, 1_000_000_000), '100'),
  LINKGATE_API_RATE_WINDOW_SECONDS: v.optional(integer(1, 3600), '2'),
  LINKGATE_BROWSER_RATE_LIMIT: v.optional(integer(0, 1_000_000_000), '60'),
  LINKGATE_BROWSER_RATE_WINDOW_SECONDS: v.optional(integer(1, 3600), '60'),
  // A count, never `true` or an address list (Express's forms): a value that does not parse stops start-up.
  LINKGATE_TRUST_PROXY: v.optional(
    v.pipe(v.string(), v.regex(/^\d{1,2}$/, 'must be how many reverse proxies in front append to X-Forwarded-For (0–10), not true/false or addresses'), v.transform(Number), v.maxValue(10, 'must be at most 10')),
    '0',
  ),
  LINKGATE_ANNIE_MEI_COMPAT: v.optional(boolean, 'true'),
  LINKGATE_BRAND_NAME: v.optional(BrandName),
  LINKGATE_BRAND_ICON_URL: v.optional(BrandIconUrl),
  LINKGATE_BRAND_COLOR: v.optional(BrandColor),
  LINKGATE_SUPPORT_URL: v.optional(SupportUrl),
  LOG_LEVEL: v.optional(
    v.picklist(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'must be one of fatal, error, warn, info, debug, trace, silent'),
    'info',
  ),
  LOG_FORMAT: v.optional(v.picklist(['json', 'pretty'], 'must be json or pretty')),
  SENTRY_DSN: v.optional(v.pipe(v.string(), v.url('must be a URL'))),
  SENTRY_ENVIRONMENT: v.optional(v.string()),
  SENTRY_TRACES_SAMPLE_RATE: v.optional(
    v.pipe(
      v.string(),
      v.transform(Number),
      v.number('must be a number'),
      v.minValue(0, 'must be between 0 and 1'),
      v.maxValue(1, 'must be between 0 and 1'),
    ),
    '0',
  ),
});

/** Empty values (`SENTRY_DSN=` in a .env file) mean "unset". */
function withoutEmpty(env: Env): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined && e[1].trim() !== ''));
}

export function parseConfig(rawEnv: Env): Config {
  const env = withoutEmpty(rawEnv);
  const result = v.safeParse(EnvSchema, env);
  // Every problem in one error: an operator fixes them all before the next start, not one per start.
  const problems = [...(result.success ? [] : schemaProblems(result.issues, env)), ...crossProblems(env)];
  if (!result.success || problems.length > 0) throw new ConfigError(problems);
  const e = result.output;
  const publicBaseUrl = e.PUBLIC_BASE_URL ?? defaultPublicBaseUrl(e.HOST, e.PORT);
  publicBaseUrl.pathname = publicBaseUrl.pathname.replace(/\/+$/, '');
  const warnings = SHARED_SECRETS.filter((name) => e[name].length < SHORT_SECRET).map(
    (name) => `${name} is shorter than ${SHORT_SECRET} characters: accepted because a bot shares it, but a longer random value is safer (change it in the bot and here together)`,
  );
  return Object.freeze({
    nodeEnv: e.NODE_ENV,
    host: e.HOST,
    port: e.PORT,
    publicBaseUrl,
    databaseUrl: e.DATABASE_URL,
    dataDir: resolve(e.DATA_DIR),
    providersDir: providersDirOf({ LINKGATE_PROVIDERS_DIR: e.LINKGATE_PROVIDERS_DIR }),
    contextSigningSecret: e.OAUTH_CONTEXT_SIGNING_SECRET,
    contextTtlSeconds: e.OAUTH_CONTEXT_TTL_SECONDS,
    stateTtlSeconds: e.OAUTH_STATE_TTL_SECONDS,
    loginSessionTtlSeconds: e.LINKGATE_LOGIN_SESSION_TTL_SECONDS,
    userIdHashSalt: e.USERID_HASH_SALT,
    apiKeys: Object.freeze(e.LINKGATE_API_KEYS),
    adminKeys: Object.freeze(e.LINKGATE_ADMIN_KEYS ?? []),
    admins: Object.freeze(e.LINKGATE_ADMINS ?? []),
    encryptionKeys: Object.freeze(e.LINKGATE_ENCRYPTION_KEYS),
    returnToOrigins: Object.freeze(e.LINKGATE_RETURN_TO_ORIGINS ?? []),
    allowSharedAccounts: e.LINK_ALLOW_SHARED_ACCOUNTS,
    userProvider: e.LINKGATE_USER_PROVIDER,
    deviceCodeTtlSeconds: e.LINKGATE_DEVICE_CODE_TTL_SECONDS,
    webSession: Object.freeze({ ttlSeconds: e.LINKGATE_WEB_SESSION_TTL_SECONDS, idleSeconds: e.LINKGATE_WEB_SESSION_IDLE_SECONDS }),
    refreshMarginSeconds: e.LINKGATE_REFRESH_MARGIN_SECONDS,
    reauthRecheckMs: e.LINKGATE_REAUTH_RECHECK_MINUTES * 60_000,
    linkEventRetentionDays: e.LINKGATE_LINK_EVENT_RETENTION_DAYS,
    providerTimeoutMs: e.LINKGATE_PROVIDER_TIMEOUT_SECONDS * 1000,
    webhook: e.LINKGATE_WEBHOOK_URL
      ? Object.freeze({
          url: e.LINKGATE_WEBHOOK_URL,
          secret: e.LINKGATE_WEBHOOK_SECRET!,
          maxAttempts: e.LINKGATE_WEBHOOK_MAX_ATTEMPTS,
          retryBaseMs: Math.round(e.LINKGATE_WEBHOOK_RETRY_BASE_SECONDS * 1000),
        })
      : undefined,
    metrics: e.LINKGATE_METRICS,
    rateLimits: Object.freeze({
      api: Object.freeze({ limit: e.LINKGATE_API_RATE_LIMIT, windowSeconds: e.LINKGATE_API_RATE_WINDOW_SECONDS }),
      browser: Object.freeze({ limit: e.LINKGATE_BROWSER_RATE_LIMIT, windowSeconds: e.LINKGATE_BROWSER_RATE_WINDOW_SECONDS }),
    }),
    trustProxyHops: e.LINKGATE_TRUST_PROXY,
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT ?? (e.NODE_ENV === 'development' ? 'pretty' : 'json'),
    sentry: Object.freeze({
      dsn: e.SENTRY_DSN,
      environment: e.SENTRY_ENVIRONMENT ?? e.NODE_ENV,
      tracesSampleRate: e.SENTRY_TRACES_SAMPLE_RATE,
    }),
    annieMeiCompat: e.LINKGATE_ANNIE_MEI_COMPAT,
    brand: Object.freeze({
      name: e.LINKGATE_BRAND_NAME,
      iconUrl: e.LINKGATE_BRAND_ICON_URL,
      color: e.LINKGATE_BRAND_COLOR,
      supportUrl: e.LINKGATE_SUPPORT_URL,
    }),
    warnings: Object.freeze(warnings),
  });
}

/** A loopback URL: plain http is allowed there in production (it never leaves the machine). */
export const isLoopback = (url: URL) => url.hostname === 'localhost' || url.hostname === '[::1]' || /^127(\.\d{1,3}){3}$/.test(url.hostname);

function defaultPublicBaseUrl(host: string, port: number | string): URL {
  const loopbackHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  return new URL(`http://${loopbackHost.includes(':') ? `[${loopbackHost}]` : loopbackHost}:${port}`);
}

/** One line per variable the schema refuses (its first issue). */
function schemaProblems(issues: readonly v.BaseIssue<unknown>[], env: Record<string, string>): string[] {
  const byName = new Map<string, string>();
  for (const issue of issues) {
    const key = issue.path?.[0]?.key;
    const name = typeof key === 'string' ? key : 'environment';
    if (byName.has(name)) continue;
    byName.set(name, issue.input === undefined ? missingMessage(env) : issueMessage({ ...issue, path: undefined }));
  }
  return [...byName].map(([name, what]) => `${name}: ${what}`);
}

/**
 * The rules between variables, read from the raw values so that they are
 * reported together with the schema's problems (a value the schema refuses
 * is left to it).
 */
function crossProblems(env: Record<string, string>): string[] {
  const problems: string[] = [];
  const production = env.NODE_ENV === 'production';
  const given = env.PUBLIC_BASE_URL;
  if (production && given === undefined) {
    problems.push('PUBLIC_BASE_URL: required in production (the https URL browsers reach the gateway at)');
  }
  let publicBaseUrl: URL | undefined;
  if (given !== undefined) {
    if (URL.canParse(given)) publicBaseUrl = new URL(given);
  } else if (/^\d+$/.test(env.PORT ?? '8000')) {
    publicBaseUrl = defaultPublicBaseUrl(env.HOST ?? '127.0.0.1', env.PORT ?? '8000');
  }
  // Codes, states and the browser cookie travel in it: in clear only on this machine.
  if (production && publicBaseUrl && given !== undefined && publicBaseUrl.protocol === 'http:' && !isLoopback(publicBaseUrl)) {
    problems.push('PUBLIC_BASE_URL: must be https in production (plain http only on a loopback address)');
  }
  // Pages, redirects and the cookie path are root-relative: under a path prefix the Continue form
  // would post the context and its CSRF token to whatever serves /oauth at the host's root.
  if (publicBaseUrl && (publicBaseUrl.pathname.replace(/\/+$/, '') !== '' || publicBaseUrl.search || publicBaseUrl.hash || publicBaseUrl.username || publicBaseUrl.password)) {
    problems.push('PUBLIC_BASE_URL: must be an origin like https://link.example, with no path, query or user name (serving under a path prefix is not supported)');
  }
  if (publicBaseUrl) problems.push(...redirectUriProblems(env, publicBaseUrl));
  // An operator key that is also a bot key would hand every bot the operator API.
  const split = (text: string | undefined) => new Set((text ?? '').split(',').map((key) => key.trim()).filter(Boolean));
  const botKeys = split(env.LINKGATE_API_KEYS);
  if ([...split(env.LINKGATE_ADMIN_KEYS)].some((key) => botKeys.has(key))) {
    problems.push('LINKGATE_ADMIN_KEYS: must not repeat a key of LINKGATE_API_KEYS (operator keys are separate from bot keys)');
  }
  if (env.LINKGATE_WEBHOOK_URL !== undefined && env.LINKGATE_WEBHOOK_SECRET === undefined) {
    problems.push('LINKGATE_WEBHOOK_SECRET: required with LINKGATE_WEBHOOK_URL (receivers verify every event with it)');
  }
  // Events name users and their accounts: in clear only to this machine.
  const webhook = env.LINKGATE_WEBHOOK_URL;
  if (production && webhook !== undefined && URL.canParse(webhook) && new URL(webhook).protocol === 'http:' && !isLoopback(new URL(webhook))) {
    problems.push('LINKGATE_WEBHOOK_URL: must be https in production (plain http only on a loopback address)');
  }
  // The pages allow images from our own origin and data: URLs only (CSP img-src).
  const icon = env.LINKGATE_BRAND_ICON_URL;
  if (icon !== undefined && publicBaseUrl && !icon.startsWith('data:') && URL.canParse(icon) && new URL(icon).origin !== publicBaseUrl.origin) {
    problems.push('LINKGATE_BRAND_ICON_URL: must be a data:image/…;base64 URL or a URL on PUBLIC_BASE_URL (the pages load images from nowhere else)');
  }
  return problems;
}

/**
 * Every `<PROVIDER>_REDIRECT_URI` must be on PUBLIC_BASE_URL's origin: the
 * browser cookie that lets a sign-in finish is set there and is only sent
 * back there, so a callback on another origin could never complete. (Each
 * provider checks that its own value is an absolute URL.)
 */
function redirectUriProblems(env: Record<string, string>, publicBaseUrl: URL): string[] {
  return Object.entries(env)
    .filter(([name, value]) => name.endsWith('_REDIRECT_URI') && URL.canParse(value) && new URL(value).origin !== publicBaseUrl.origin)
    .map(([name]) => `${name}: must be on the same origin as PUBLIC_BASE_URL (the sign-in cookie is only sent there)`);
}

function missingMessage(env: Record<string, string>): string {
  return env.NODE_ENV === 'production'
    ? 'is required in production'
    : 'is required (outside production, missing secrets are generated into DATA_DIR)';
}

export function generateSecret(name: (typeof GENERATED_SECRETS)[number]): string {
  switch (name) {
    case 'LINKGATE_ENCRYPTION_KEYS':
      return `k${new Date().toISOString().slice(0, 10).replaceAll('-', '')}:${randomBytes(32).toString('base64')}`;
    case 'LINKGATE_API_KEYS':
      return `lg_${randomToken(32)}`;
    default:
      return randomToken(32);
  }
}

/**
 * Outside production, fills in missing secrets from `DATA_DIR/secrets.env`,
 * generating (once) and saving there (mode 0600) any that file lacks too.
 * Returns the environment to parse, the names it took from that file
 * (`filled`) and those it generated now.
 */
export function withDevelopmentSecrets(rawEnv: Env): { env: Env; generated: string[]; filled: string[]; file: string | undefined } {
  const env = withoutEmpty(rawEnv);
  const missing = GENERATED_SECRETS.filter((name) => env[name] === undefined);
  if (env.NODE_ENV === 'production' || missing.length === 0) return { env, generated: [], filled: [], file: undefined };

  const dataDir = resolve(env.DATA_DIR ?? './.linkgate');
  const file = join(dataDir, 'secrets.env');
  const saved = readEnvFile(file);
  const generated = missing.filter((name) => saved[name] === undefined);
  for (const name of generated) saved[name] = generateSecret(name);
  if (generated.length > 0) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const body = GENERATED_SECRETS.filter((n) => saved[n] !== undefined).map((n) => `${n}=${saved[n]}`).join('\n');
    writeFileSync(file, `# Development secrets generated by Linkgate. Never use them in production.\n${body}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
  }
  const filled = Object.fromEntries(missing.map((name) => [name, saved[name]]));
  return { env: { ...env, ...filled }, generated, filled: missing, file };
}

/**
 * Adds the variables of `<dir>/.env`, when there is one, under the real
 * environment: a variable set in the environment wins over the file. The
 * file is read with Node's own dotenv parser (`util.parseEnv`), as the
 * services Linkgate replaces read theirs (the Annie Mei auth service uses
 * dotenvy in its working directory).
 */
export function withDotEnv(env: Env, dir: string): Env {
  let text: string;
  try {
    text = readFileSync(join(dir, '.env'), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return env;
    throw new ConfigError(`.env: could not be read (${(error as NodeJS.ErrnoException).code ?? 'unknown error'})`);
  }
  const fromFile = Object.fromEntries(Object.entries(parseEnv(text)).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
  return { ...fromFile, ...Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined)) };
}

function readEnvFile(file: string): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return {};
  }
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match?.[1] && match[2]) out[match[1]] = match[2];
  }
  return out;
}
