/**
 * The link context of the Annie Mei Discord bot (annie-mei/annie-mei,
 * `src/utils/oauth/mod.rs`), as its AniList auth service (annie-mei/auth,
 * `verify_oauth_context`) verified it, so the bot's `/register` button works
 * against Linkgate unchanged:
 *
 *   `?ctx=<payload>.<signature>`, both base64url without padding; the payload
 *   is compact JSON `{"v":1,"discord_user_id","guild_id"?,"interaction_id",
 *   "nonce","iat","exp"}`, the signature HMAC-SHA256 over the payload
 *   segment's ASCII text, keyed with the UTF-8 bytes of
 *   OAUTH_CONTEXT_SIGNING_SECRET.
 *
 * The old service's refusals all hold: a bad signature (compared in constant
 * time, before anything of the payload is read), `v` other than 1, an empty
 * `discord_user_id` or `nonce`, `exp <= now`, `iat > now + 60`, `exp < iat`
 * and `exp - iat` over OAUTH_CONTEXT_TTL_SECONDS. Ours is never stricter: an
 * `exp` is accepted for the same 30 s of clock skew as our JWTs, and `iat`
 * may be 60 s ahead as there. The `nonce` is the single-use id (the old
 * service did not remember it; Linkgate spends it on Continue as any jti).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import * as v from 'valibot';
import { LinkgateError } from '../../core/errors.ts';
import { DEFAULT_TENANT, userIdSchema } from '../../core/ids.ts';
import { CONTEXT_CLOCK_SKEW_SECONDS, type LinkContext, type LinkContextFormat, type LinkContextOptions } from '../../core/link-context.ts';

/** How far ahead of our clock the bot's `iat` may be: the old service's `MAX_CONTEXT_FUTURE_SKEW_SECONDS`. */
const FUTURE_IAT_SECONDS = Math.max(60, CONTEXT_CLOCK_SKEW_SECONDS);
const MAX_LENGTH = 4096;
const BASE64URL = /^[A-Za-z0-9_-]+$/;
/** Spent nonces share the used-context table with JWT `jti`s: a prefix keeps the two apart. */
const JTI_PREFIX = 'annie-mei:';

const invalid = (message: string) => new LinkgateError('context_invalid', message);

const seconds = (field: string) =>
  v.pipe(v.number(`${field} must be a number of seconds since 1970`), v.integer(`${field} must be a whole number of seconds`), v.safeInteger(`${field} is out of range`));
const notBlank = (field: string, max: number) =>
  v.pipe(
    v.string(`${field} must be a string`),
    v.check((s) => s.trim() !== '', `${field} must not be empty`),
    v.maxLength(max, `${field} must be at most ${max} characters`),
  );

// Serde ignored unknown fields and read a JSON null as an absent `guild_id`; so does this.
const Payload = v.object(
  {
    v: v.literal(1, 'v must be 1'),
    discord_user_id: v.pipe(notBlank('discord_user_id', 128), userIdSchema('discord_user_id')),
    guild_id: v.nullish(v.pipe(v.string('guild_id must be a string'), v.maxLength(128, 'guild_id must be at most 128 characters'))),
    interaction_id: v.pipe(v.string('interaction_id must be a string'), v.maxLength(128, 'interaction_id must be at most 128 characters')),
    nonce: notBlank('nonce', 128),
    iat: seconds('iat'),
    exp: seconds('exp'),
  },
  'the payload must be a JSON object',
);

/** Strict base64url without padding, as the Rust `URL_SAFE_NO_PAD` engine decodes it (canonical only). */
function decodeSegment(segment: string): Buffer | undefined {
  if (!BASE64URL.test(segment)) return undefined;
  const bytes = Buffer.from(segment, 'base64url');
  return bytes.toString('base64url') === segment ? bytes : undefined;
}

function fieldProblem(issue: v.BaseIssue<unknown>): string {
  const field = issue.path?.[0]?.key;
  if (typeof field === 'string' && issue.kind === 'schema' && issue.input === undefined) return `${field} is missing`;
  return issue.message;
}

export async function verifyAnnieMeiContext(token: string, provider: string, options: LinkContextOptions): Promise<LinkContext> {
  if (token.length > MAX_LENGTH) throw invalid('the link context is too long');
  const dot = token.indexOf('.');
  if (dot <= 0) throw invalid('the link context is malformed');
  const payloadSegment = token.slice(0, dot);
  const signature = decodeSegment(token.slice(dot + 1));
  if (!signature) throw invalid('the link context is malformed');
  const expected = createHmac('sha256', Buffer.from(options.secret, 'utf8')).update(payloadSegment, 'utf8').digest();
  if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) throw invalid('the link context was refused (bad signature)');

  const payloadBytes = decodeSegment(payloadSegment);
  let json: unknown;
  try {
    if (!payloadBytes) throw new Error('not base64url');
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payloadBytes));
  } catch {
    throw invalid('the link context is malformed');
  }
  const parsed = v.safeParse(Payload, json);
  if (!parsed.success) throw invalid(`the link context has a bad field: ${fieldProblem(parsed.issues[0])}`);
  const { discord_user_id: userId, nonce, iat, exp } = parsed.output;

  const nowSeconds = Math.floor(options.now() / 1000);
  if (exp <= nowSeconds - CONTEXT_CLOCK_SKEW_SECONDS) throw new LinkgateError('context_expired', 'the link has expired');
  if (iat > nowSeconds + FUTURE_IAT_SECONDS) throw invalid('the link context was issued in the future');
  if (exp < iat) throw invalid('the link context expires before it was issued');
  if (exp - iat > options.ttlSeconds) throw invalid(`the link context lives longer than the allowed ${options.ttlSeconds} seconds`);
  return {
    tenant: DEFAULT_TENANT,
    userId,
    provider,
    jti: `${JTI_PREFIX}${nonce}`,
    expiresAt: new Date(exp * 1000),
    acceptedUntil: new Date((exp + CONTEXT_CLOCK_SKEW_SECONDS) * 1000),
    returnTo: undefined,
    userName: undefined,
    // The Annie Mei link asks for AniList's own scopes only (AniList has none to add).
    scopes: [],
  };
}

/** The bot's `/register` link: `/oauth/anilist/start?ctx=…`. */
export const annieMeiContextFormat: LinkContextFormat = {
  id: 'annie-mei',
  param: 'ctx',
  nextStep: 'Run /register in Discord again to get a new link.',
  verify: verifyAnnieMeiContext,
};
