import type { Logger } from 'pino';
import type { LinkRow } from '../db/schema.ts';
import type { ProviderDirectory } from './tenant-providers.ts';
import { LinkgateError } from './errors.ts';
import type { LinkKey, LinkStore } from './links.ts';
import type { Metrics } from './metrics.ts';

/**
 * What the provider said when a deleted link's credentials were revoked:
 * `revoked` (it accepted), `failed` (it refused or could not be reached),
 * `not_supported` (the provider has no revocation, or none for these
 * credentials: an OpenID provider without a revocation endpoint), `provider_unavailable`
 * (the provider is not configured or no longer loaded here).
 */
export type Revocation = 'revoked' | 'failed' | 'not_supported' | 'provider_unavailable';

export interface UnlinkDeps {
  links: LinkStore;
  /** Finds the instance that made the link (its tenant's configuration version) to revoke with. */
  providers: Pick<ProviderDirectory, 'instance'>;
  hashUserId: (tenant: string, userId: string) => string;
  now?: () => number;
  /** LINKGATE_METRICS: each deletion counts in `linkgate_links_deleted_total`, by `via`. */
  metrics?: Metrics | undefined;
}

/**
 * Deletes a user's link, then asks the provider to revoke its credentials.
 * Revocation is best effort: the link is gone here whatever the provider
 * says, so a user who unlinks is unlinked even while the provider is down.
 * Every unlink goes through here (the API's DELETE, RPC, the operator API,
 * the account page, the console, `linkgate links delete`); `via` says which,
 * in the link's `unlinked` event and the deletion count. Returns undefined
 * when there was no link.
 */
export async function unlink(deps: UnlinkDeps, key: LinkKey, logger: Logger, via: string): Promise<{ row: LinkRow; revocation: Revocation } | undefined> {
  const row = await deps.links.delete(key, new Date((deps.now ?? Date.now)()), via);
  if (!row) return undefined;
  deps.metrics?.inc('linkgate_links_deleted_total', { provider: key.provider, tenant: key.tenant, via });
  const fields = { provider: key.provider, user: deps.hashUserId(key.tenant, key.userId) };
  const instance = await deps.providers.instance(row.tenant, row.provider, row.configVersion).catch(() => undefined);
  let revocation: Revocation = instance ? 'not_supported' : 'provider_unavailable';
  if (instance?.revoke) {
    try {
      const answer = await instance.revoke(deps.links.openCredentials(row));
      revocation = answer === 'not_supported' ? 'not_supported' : 'revoked';
    } catch (error) {
      revocation = 'failed';
      logger.warn(
        { ...fields, errorCode: error instanceof LinkgateError ? error.code : 'revoke_failed' },
        'upstream revocation failed; the link was deleted anyway',
      );
    }
  }
  logger.info({ ...fields, revocation }, 'link deleted');
  return { row, revocation };
}
