import { createHmac } from 'node:crypto';
import { compactVerify, decodeJwt, errors as joseErrors } from 'jose';
import * as v from 'valibot';
import { randomToken } from './crypto.ts';
import { LinkgateError } from './errors.ts';
import { DEFAULT_TENANT, userIdSchema, userNameSchema } from './ids.ts';

/** A verified link context: who is linking which provider, and where to go afterwards. */
export interface LinkContext {
  tenant: string;
  userId: string;
  provider: string;
  jti: string;
  expiresAt: Date;
  /** The last moment this context verifies (`exp` plus the clock skew): its `jti` must be remembered until then. */
  acceptedUntil: Date;
  returnTo: string | undefined;
  /** The bot's display name for its user (`name` claim), shown on the confirmation page. */
  userName: string | undefined;
  /** Scopes asked for on top of the provider's own (`scopes` claim). */
  scopes: string[];
}

export { DEFAULT_TENANT };
/**
 * A bot's clock may run a little ahead of ours: `iat` may be this far in the
 * future and a context is still accepted this long after its `exp`.
 */
export const CONTEXT_CLOCK_SKEW_SECONDS = 30;
const MAX_CONTEXT_LENGTH = 4096;

// Every message names its claim and never the value: they end up in logs and API answers.
const text = (claim: string, max: number) =>
  v.pipe(v.string(`${claim} must be a string`), v.minLength(1, `${claim} must not be empty`), v.maxLength(max, `${claim} must be at most ${max} characters`));
const seconds = (claim: string) =>
  v.pipe(v.number(`${claim} must be a number of seconds since 1970`), v.integer(`${claim} must be a whole number of seconds`));

/** Extra scopes a bot asks for with a link: at most 20 scope tokens (RFC 6749 §3.3's characters), no duplicates. */
export const ScopeList = (name: string) =>
  v.pipe(
    v.array(v.pipe(v.string(`each of ${name} must be a string`), v.regex(/^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/, `each of ${name} must be a scope token (printable, no spaces, quotes or backslashes, at most 128 characters)`)), `${name} must be a list of scopes`),
    v.maxLength(20, `${name} may list at most 20 scopes`),
    v.check((list) => new Set(list).size === list.length, `${name} must not repeat a scope`),
  );

const TENANT_CLAIM = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,39}$/));

const Claims = v.object(
  {
    sub: userIdSchema('sub'),
    provider: text('provider', 64),
    jti: v.pipe(v.string('jti must be a string'), v.minLength(8, 'jti must be at least 8 characters'), v.maxLength(128, 'jti must be at most 128 characters')),
    iat: seconds('iat'),
    exp: seconds('exp'),
    nbf: v.optional(seconds('nbf')),
    tenant: v.optional(text('tenant', 40)),
    return_to: v.optional(v.pipe(v.string('return_to must be a string'), v.maxLength(2048, 'return_to must be at most 2048 characters'))),
    name: v.optional(userNameSchema('name')),
    scopes: v.optional(ScopeList('scopes')),
  },
  'the payload must be a JSON object',
);

/** What is wrong with a claim, in the claim schema's own words. */
function claimProblem(issue: v.BaseIssue<unknown>): string {
  const claim = issue.path?.[0]?.key;
  if (typeof claim === 'string' && issue.kind === 'schema' && issue.input === undefined) return `${claim} is missing`;
  return issue.message;
}

export interface LinkContextOptions {
  /** The default tenant's secret: OAUTH_CONTEXT_SIGNING_SECRET. */
  secret: string;
  /**
   * The secrets a context naming `tenant` may be signed with, newest first;
   * undefined when there is no such tenant (src/core/tenants.ts). Without it
   * only the default tenant exists, its one secret `secret`.
   */
  secretsFor?: (tenant: string) => Promise<readonly string[] | undefined>;
  ttlSeconds: number;
  returnToOrigins: readonly string[];
  now: () => number;
}

/**
 * A way a bot carries a link context in its link. The JWT below is ours;
 * a bot that signs its own format (src/compat/annie-mei/context.ts) gets a
 * format of its own, and the routes treat every format alike.
 */
export interface LinkContextFormat {
  /** Its name in logs and metrics. */
  readonly id: string;
  /** The query parameter of the link, and the field the confirmation form posts it back in. */
  readonly param: string;
  /** What error pages about such a link tell a person to do next, when the bot has its own words for it. */
  readonly nextStep?: string;
  /** Verifies a context (signature, then claims) for `provider`; does not consume it. */
  verify(token: string, provider: string, options: LinkContextOptions): Promise<LinkContext>;
}

/** A link context as a link carried it: which format, and the text. */
export interface PresentedContext {
  format: LinkContextFormat;
  token: string;
}

const invalid = (message: string) => new LinkgateError('context_invalid', message);

/**
 * Verifies a link context: the HS256 signature (jose), then the claims
 * (valibot): present and well-typed, not expired, not issued in the future,
 * `exp` at most the configured TTL after `iat`, the provider it was minted
 * for, and a `return_to` on an allowed origin. Does not consume the `jti`.
 */
export async function verifyLinkContext(token: string, provider: string, options: LinkContextOptions): Promise<LinkContext> {
  if (token.length > MAX_CONTEXT_LENGTH) throw invalid('the link context is too long');
  // The tenant it names says which secrets may have signed it; nothing else is read before the signature.
  let named: unknown;
  try {
    named = decodeJwt(token).tenant;
  } catch {
    throw invalid('the link context is malformed');
  }
  if (named !== undefined && typeof named !== 'string') throw invalid('the link context has a bad claim: tenant must be a string');
  const claimedTenant = named === undefined ? DEFAULT_TENANT : v.is(TENANT_CLAIM, named) ? named : undefined;
  if (claimedTenant === undefined) throw invalid('the link context has a bad claim: tenant must be a tenant id (lowercase letters, digits and hyphens)');
  const secrets = options.secretsFor ? await options.secretsFor(claimedTenant) : claimedTenant === DEFAULT_TENANT ? [options.secret] : undefined;
  // A tenant this gateway does not have: refused before any provider is contacted.
  if (secrets === undefined) throw new LinkgateError('context_wrong_tenant', 'the link was made for another tenant');
  let payload: unknown;
  let refusal: unknown = new joseErrors.JWSSignatureVerificationFailed();
  for (const secret of secrets) {
    try {
      const verified = await compactVerify(token, new TextEncoder().encode(secret), { algorithms: ['HS256'] });
      payload = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(verified.payload));
      break;
    } catch (cause) {
      refusal = cause;
      // Only a wrong signature is worth trying the next secret for.
      if (!(cause instanceof joseErrors.JWSSignatureVerificationFailed)) break;
    }
  }
  if (payload === undefined) {
    throw invalid(refusal instanceof joseErrors.JOSEError ? `the link context was refused (${refusal.code})` : 'the link context is malformed');
  }
  const claims = v.safeParse(Claims, payload);
  if (!claims.success) throw invalid(`the link context has a bad claim: ${claimProblem(claims.issues[0])}`);
  const { sub, jti, iat, exp, nbf, tenant = DEFAULT_TENANT, return_to: returnTo, name, scopes = [] } = claims.output;
  const nowSeconds = Math.floor(options.now() / 1000);
  // RFC 7519 §4.1.4 and §4.1.5, with the same tolerance either way.
  if (exp <= nowSeconds - CONTEXT_CLOCK_SKEW_SECONDS) throw new LinkgateError('context_expired', 'the link has expired');
  if (nbf !== undefined && nbf > nowSeconds + CONTEXT_CLOCK_SKEW_SECONDS) throw invalid('the link context is not valid yet (nbf)');
  if (iat > nowSeconds + CONTEXT_CLOCK_SKEW_SECONDS) throw invalid('the link context was issued in the future');
  // As the Annie Mei format does: a context that expires before it was issued was never valid.
  if (exp < iat) throw invalid('the link context expires before it was issued (exp is before iat)');
  if (exp - iat > options.ttlSeconds) {
    throw invalid(`the link context lives longer than the allowed ${options.ttlSeconds} seconds`);
  }
  if (claims.output.provider !== provider) {
    throw new LinkgateError('context_wrong_provider', 'the link was made for another provider');
  }
  // Signed with the secret of the tenant it names (checked above): the claim read before and after verification agree.
  if (tenant !== claimedTenant) throw invalid('the link context is malformed');
  return {
    tenant,
    userId: sub,
    provider,
    jti,
    expiresAt: new Date(exp * 1000),
    acceptedUntil: new Date((exp + CONTEXT_CLOCK_SKEW_SECONDS) * 1000),
    returnTo: returnTo === undefined ? undefined : checkReturnTo(returnTo, options.returnToOrigins),
    userName: name,
    scopes,
  };
}

/**
 * The tenant a link context names, read without verifying anything: only
 * to decide which tenant's providers to look at first (a context naming no
 * tenant, or not readable, is the default tenant's). Never trusted for more.
 */
export function claimedTenantOf(presented: PresentedContext): string {
  if (presented.format.id !== jwtContextFormat.id) return DEFAULT_TENANT;
  try {
    const named = decodeJwt(presented.token).tenant;
    return typeof named === 'string' && v.is(TENANT_CLAIM, named) ? named : DEFAULT_TENANT;
  } catch {
    return DEFAULT_TENANT;
  }
}

/** Linkgate's own link context: an HS256 JWT in `?context=`. */
export const jwtContextFormat: LinkContextFormat = { id: 'jwt', param: 'context', verify: verifyLinkContext };

/**
 * Newlines and other control characters, percent-encoded (the URL parser
 * encodes raw ones outside the host): C0 controls, DEL, NEL and the Unicode
 * line and paragraph separators. Whoever reads the URL next may decode it.
 */
const ENCODED_CONTROL = /%(?:[01][0-9a-f]|7f)|%c2%85|%e2%80%a[89]/i;

/**
 * `return_to` must be an absolute http(s) URL on one of the configured
 * origins, compared after WHATWG URL parsing, so `//evil`, `https:evil`,
 * backslashes and userinfo tricks cannot pass as an allowed origin; raw or
 * percent-encoded newlines and control characters are refused anywhere in it.
 */
export function checkReturnTo(value: string, allowedOrigins: readonly string[]): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new LinkgateError('return_to_not_allowed', 'return_to must be an absolute URL');
  }
  if (/[\s\\]/.test(value) || ENCODED_CONTROL.test(url.href)) {
    throw new LinkgateError('return_to_not_allowed', 'return_to must not contain whitespace, backslashes, newlines or control characters');
  }
  if (!/^https?:$/.test(url.protocol) || url.username !== '' || url.password !== '' || !allowedOrigins.includes(url.origin)) {
    throw new LinkgateError('return_to_not_allowed', 'return_to is not on an allowed origin');
  }
  return url.href;
}

export interface SignLinkContextInput {
  userId: string;
  provider: string;
  tenant?: string;
  returnTo?: string;
  /** The bot's display name for the user, shown on the confirmation page. */
  userName?: string;
  /** Scopes to ask for on top of the provider's own. */
  scopes?: readonly string[];
}

/**
 * Signs a context the way a bot would (used by `POST /api/v1/link-urls` and
 * every `not_linked` answer). HS256 is one HMAC over two base64url JSON
 * parts (RFC 7515 §7.1, RFC 7518 §3.2); done synchronously here because the
 * status API signs one for every unlinked user it answers. Verification
 * stays with jose.
 */
export async function signLinkContext(input: SignLinkContextInput, secret: string, ttlSeconds: number, now: number): Promise<{ token: string; expiresAt: Date }> {
  const iat = Math.floor(now / 1000);
  const exp = iat + ttlSeconds;
  const claims: Record<string, string | number | readonly string[]> = { sub: input.userId, provider: input.provider, jti: randomToken(16), iat, exp };
  if (input.tenant && input.tenant !== DEFAULT_TENANT) claims.tenant = input.tenant;
  if (input.returnTo) claims.return_to = input.returnTo;
  if (input.userName) claims.name = input.userName;
  if (input.scopes && input.scopes.length > 0) claims.scopes = input.scopes;
  const signingInput = `${HS256_HEADER}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const signature = createHmac('sha256', secret).update(signingInput).digest('base64url');
  return { token: `${signingInput}.${signature}`, expiresAt: new Date(exp * 1000) };
}

const HS256_HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');

/** The link a bot sends its user to: the provider's start page with a freshly signed context. */
export async function createLinkUrl(
  input: SignLinkContextInput,
  options: { secret: string; ttlSeconds: number; publicBaseUrl: URL; now: number },
): Promise<{ url: string; expiresAt: Date }> {
  const { token, expiresAt } = await signLinkContext(input, options.secret, options.ttlSeconds, options.now);
  // A JWS is base64url parts joined by dots: nothing in it needs escaping in a query.
  const url = `${options.publicBaseUrl.href.replace(/\/$/, '')}/oauth/${encodeURIComponent(input.provider)}/start?context=${token}`;
  return { url, expiresAt };
}
