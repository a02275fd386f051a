import type { Logger } from 'pino';
import type { Database } from '../db/client.ts';
import type { ProviderTools } from '../provider.ts';
import type { Keyring } from './crypto.ts';
import { createKeyValueStore } from './kv.ts';
import { createNamedLock } from './named-lock.ts';
import { untrustedFetch } from './outbound.ts';

/** Every request to a provider gives up after this long. */
export const PROVIDER_TIMEOUT_MS = 10_000;

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
}

/** The tools the registry hands each provider's `create`. */
export function providerToolsFactory(deps: ToolsDeps): (providerId: string) => ProviderTools {
  const now = deps.now ?? Date.now;
  const fetchImpl = fetchWithTimeout(deps.fetch ?? globalThis.fetch, deps.timeoutMs ?? PROVIDER_TIMEOUT_MS);
  const lock = createNamedLock(deps.database);
  return (providerId) => ({
    fetch: fetchImpl,
    logger: deps.logger.child({ provider: providerId }),
    kv: createKeyValueStore(deps.database.db, deps.keyring, providerId, now),
    clock: { now },
    untrustedFetch,
    publicBaseUrl: deps.publicBaseUrl,
    lock: (name, fn) => lock(`${providerId}:${name}`, fn),
  });
}
