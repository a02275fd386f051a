/**
 * Deleting a tenant: what `DELETE /api/admin/v1/tenants/:tenant` and
 * `linkgate tenants delete` both do. Every link is unlinked first (revoked
 * upstream where the provider can), then the tenant and everything it had
 * are removed: flows, used contexts, its providers' stored keys, its
 * webhook log, its links' event logs, its OpenID Provider's sessions and
 * tokens, its cookie sessions, its apps and signing keys, and its settings.
 * Its audit rows stay.
 */
import type { Logger } from 'pino';
import type { Db } from '../db/client.ts';
import { eq, sql } from '../db/orm.ts';
import { flows, kv, linkEvents, links, loginSessions, oidcPayloads, usedContexts, webhookDeliveries, webSessions } from '../db/schema.ts';
import { LinkgateError } from './errors.ts';
import { DEFAULT_TENANT } from './ids.ts';
import type { TenantStore } from './tenants.ts';
import { unlink, type UnlinkDeps } from './unlink.ts';

export interface TenantDeletionDeps extends UnlinkDeps {
  db: Db;
  tenants: Pick<TenantStore, 'require' | 'remove'>;
}

/** Deletes `tenant` with everything it has; throws `tenant_not_found` for no such tenant. Returns how many links were unlinked. */
export async function deleteTenant(deps: TenantDeletionDeps, tenant: string, logger: Logger): Promise<{ unlinked: number }> {
  if (tenant === DEFAULT_TENANT) throw new LinkgateError('bad_request', 'the default tenant cannot be deleted');
  await deps.tenants.require(tenant);
  let unlinked = 0;
  for (;;) {
    const batch = await deps.db.select({ userId: links.userId, provider: links.provider }).from(links).where(eq(links.tenant, tenant)).limit(100);
    if (batch.length === 0) break;
    for (const key of batch) {
      if (await unlink(deps, { tenant, ...key }, logger, 'tenant_deleted')) unlinked += 1;
    }
  }
  await deps.db.transaction(async (tx) => {
    await tx.delete(flows).where(eq(flows.tenant, tenant));
    await tx.delete(usedContexts).where(eq(usedContexts.tenant, tenant));
    await tx.delete(webhookDeliveries).where(eq(webhookDeliveries.tenant, tenant));
    // Its links' event logs: nobody can ask for them any more (its audit rows stay: the audit trail is append-only).
    await tx.delete(linkEvents).where(eq(linkEvents.tenant, tenant));
    // Its OpenID Provider's sessions, codes and tokens (its apps and signing keys go with the tenant's row).
    await tx.delete(oidcPayloads).where(eq(oidcPayloads.tenant, tenant));
    await tx.delete(loginSessions).where(eq(loginSessions.tenant, tenant));
    await tx.delete(webSessions).where(eq(webSessions.tenant, tenant));
    // Providers' own keys of this tenant (src/core/tools.ts names them `<tenant>/<provider>`).
    await tx.execute(sql`delete from ${kv} where starts_with(${kv.namespace}, ${`${tenant}/`})`);
  });
  await deps.tenants.remove(tenant);
  logger.info({ tenant, unlinked }, 'tenant deleted');
  return { unlinked };
}
