/**
 * The provider contract's bounds (`LIMITS` in src/provider.ts), enforced
 * where the gateway takes a provider's answer: a `done` step before its link
 * is stored, refreshed credentials before they replace the stored ones, and
 * a `wait` step's poll interval wherever the page gets it.
 */
import * as v from 'valibot';
import { LIMITS, type Account, type Credentials } from '../provider.ts';
import { LinkgateError } from './errors.ts';

const DEFAULT_POLL_MS = 2000;
const noControlCharacters = /^[^\p{Cc}]*$/u;

const AccountShape = v.object({
  id: v.pipe(
    v.string('its account id is not a string'),
    v.minLength(1, 'its account id is empty'),
    v.maxLength(LIMITS.accountId, `its account id is longer than ${LIMITS.accountId} characters`),
    v.regex(noControlCharacters, 'its account id holds control characters'),
  ),
  name: v.optional(
    v.pipe(
      v.string('its account name is not a string'),
      v.maxLength(LIMITS.accountName, `its account name is longer than ${LIMITS.accountName} characters`),
      v.regex(noControlCharacters, 'its account name holds control characters'),
    ),
  ),
});

const Scopes = v.optional(
  v.pipe(
    v.array(v.pipe(v.string(), v.maxLength(LIMITS.scope, `a scope is longer than ${LIMITS.scope} characters`)), 'its scopes are not a list of strings'),
    v.maxLength(LIMITS.scopes, `it granted more than ${LIMITS.scopes} scopes`),
  ),
);

/** Refuses what the gateway would not store: the message names the bound, never the value. */
function refuse(provider: string, message: string): never {
  throw new LinkgateError('provider_response_invalid', `the provider's answer was refused: ${message}`, { provider });
}

export function checkedCredentials(credentials: Credentials, provider: string): Credentials {
  const scopes = v.safeParse(Scopes, credentials.scopes);
  if (!scopes.success) refuse(provider, scopes.issues[0].message);
  if (Buffer.byteLength(JSON.stringify(credentials)) > LIMITS.credentialsBytes) refuse(provider, `its credentials are larger than ${LIMITS.credentialsBytes} bytes`);
  return credentials;
}

/** The account and credentials of a `done` step, if they are within the contract's bounds. */
export function checkedAccount(account: Account, credentials: Credentials, provider: string): Account {
  const parsed = v.safeParse(AccountShape, account);
  if (!parsed.success) refuse(provider, parsed.issues[0].message);
  checkedCredentials(credentials, provider);
  return parsed.output;
}

/**
 * A poll interval the wait page can put in its script: a whole number of
 * milliseconds within `LIMITS.pollMs`, whatever was stored or returned.
 */
export function pollInterval(value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) return DEFAULT_POLL_MS;
  return Math.min(LIMITS.pollMs.max, Math.max(LIMITS.pollMs.min, Math.round(value)));
}
