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

/** The bot whose key `authorization` carries, when `check` (createApiKeyCheck) accepts it. */
export function authenticateBot(check: (presented: string) => boolean, authorization: string | undefined): Bot | undefined {
  const presented = bearerOf(authorization);
  return presented !== undefined && check(presented) ? { key: presented, tenant: DEFAULT_TENANT } : undefined;
}
