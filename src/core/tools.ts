import type { Logger } from 'pino';
import type { Database } from '../db/client.ts';
import type { ProviderTools } from '../provider.ts';
import type { ToolsFor } from '../registry.ts';
import { DEFAULT_TENANT } from './ids.ts';
import type { Keyring } from './crypto.ts';
import { createKeyValueStore } from './kv.ts';
import { createNamedLock } from './named-lock.ts';
import { publicOnlyFetch, untrustedFetch } from './outbound.ts';

/** Every request to a provider gives up after this long (`LINKGATE_PROVIDER_TIMEOUT_SECONDS`). */
export const PROVIDER_TIMEOUT_MS = 10_000;

/**
 * The most requests a provider makes one after the other in one step or
 * refresh: OIDC discovery, the token request, the JWKS for the ID token and
 * userinfo; a typed Jellyfin server: info, Quick Connect check, initiate.
 */
const PROVIDER_REQUESTS_PER_STEP = 4;
/** Our own database work around the provider's, with room to spare. */
const STEP_MARGIN_MS = 5_000;

/**
 * How long one step or refresh may take in the worst case, every provider
 * request running into the timeout: what a flow claim or a refresh lease
 * must outlast, so it does not lapse while its holder is still working.
 */
export function providerStepBudgetMs(timeoutMs: number): number {
  return timeoutMs * PROVIDER_REQUESTS_PER_STEP + STEP_MARGIN_MS;
}

/** Our timeout applies even when the caller (openid-client) passes a longer signal of its own. */
export function fetchWithTimeout(fetchImpl: typeof fetch, timeoutMs: number): typeof fetch {
  return (input, init) => {
    const timeout = AbortSignal.timeout(timeoutMs);
    return fetchImpl(input, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, timeout]) : timeout });
  };
}

export interface ToolsDeps {
  database: Database;
  keyring: Keyring;
  logger: Logger;
  publicBaseUrl: URL;
  now?: () => number;
  fetch?: typeof fetch;
  timeoutMs?: number;
  /**
   * Production: a tenant other than `default` (configured through the
   * operator API or the console, not the environment) reaches public
   * addresses only (`publicOnlyFetch`).
   */
  publicOnlyForTenants?: boolean;
}

/** The tools the registry hands each provider's `create`. */
export function providerToolsFactory(deps: ToolsDeps): ToolsFor {
  const now = deps.now ?? Date.now;
  const timeoutMs = deps.timeoutMs ?? PROVIDER_TIMEOUT_MS;
  const fetchImpl = fetchWithTimeout(deps.fetch ?? globalThis.fetch, timeoutMs);
  const tenantFetch = deps.publicOnlyForTenants ? publicOnlyFetch(fetchImpl) : fetchImpl;
  const lock = createNamedLock(deps.database);
  return (providerId, tenant = DEFAULT_TENANT) => {
    // Another tenant's instance of the same provider keeps its own keys and locks (`<tenant>/<provider>`).
    const space = tenant === DEFAULT_TENANT ? providerId : `${tenant}/${providerId}`;
    return {
      fetch: tenant === DEFAULT_TENANT ? fetchImpl : tenantFetch,
      logger: deps.logger.child(tenant === DEFAULT_TENANT ? { provider: providerId } : { provider: providerId, tenant }),
      kv: createKeyValueStore(deps.database.db, deps.keyring, space, now),
      clock: { now },
      untrustedFetch: (url, init, options) => untrustedFetch(url, init, { timeoutMs, ...options }),
      publicBaseUrl: deps.publicBaseUrl,
      lock: (name, fn) => lock(`${space}:${name}`, fn),
    };
  };
}
