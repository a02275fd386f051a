import { DEFAULT_TENANT } from './ids.ts';

/**
 * A bot, known by the API key it presented. The REST API, `/metrics` and the
 * RPC services all learn who calls through `authenticateBot`, so whatever
 * the key comes to name (its tenant) reaches every surface at once.
 */
export interface Bot {
  /** The key itself: what its requests are counted under. Never logged. */
  key: string;
  /** Whose links it may see. */
  tenant: string;
}

/** The key in `Bearer <key>` (RFC 6750 §2.1), if the header has that shape. */
export function bearerOf(authorization: string | undefined): string | undefined {
  return /^Bearer ([\x21-\x7e]{1,512})$/i.exec(authorization ?? '')?.[1];
}

/**
 * The bot whose key `authorization` carries, and its tenant: `tenantOf` is
 * the tenant store's `resolveApiKey` (the environment's keys are the default
 * tenant's, answered at once; another tenant's from a cache or the database).
 */
export function authenticateBot(
  tenantOf: (presented: string) => string | undefined | Promise<string | undefined>,
  authorization: string | undefined,
): Bot | undefined | Promise<Bot | undefined> {
  const presented = bearerOf(authorization);
  if (presented === undefined) return undefined;
  const tenant = tenantOf(presented);
  if (tenant instanceof Promise) return tenant.then((found) => (found === undefined ? undefined : { key: presented, tenant: found }));
  return tenant === undefined ? undefined : { key: presented, tenant };
}

/** The environment's keys alone (createApiKeyCheck), as the default tenant's: for /metrics. */
export const environmentKeys = (check: (presented: string) => boolean) => (presented: string) => (check(presented) ? DEFAULT_TENANT : undefined);
