import type { Logger } from 'pino';
import { and, asc, eq, gt, or } from '../db/orm.ts';
import type { Db } from '../db/client.ts';
import { links } from '../db/schema.ts';
import type { Registry } from '../registry.ts';
import { checkedAccount } from './bounds.ts';
import type { Keyring } from './crypto.ts';
import { createLinkStore } from './links.ts';

const BATCH = 500;

export interface ReconcileDeps {
  db: Db;
  keyring: Keyring;
  registry: Registry;
  logger: Logger;
  /** Write a `link.updated` webhook event for each link whose id changes. */
  webhookEvents: boolean;
  now?: () => number;
}

/**
 * Brings stored links' external ids in line with how their providers derive
 * them now (`ProviderInstance.currentAccountId`), so a link made before a
 * provider changed its ids is keyed, compared for shared accounts and shown
 * to bots like a new one. Run at start-up, after the migrations; reading
 * every link of those providers, a batch at a time. Safe with several
 * instances starting at once: a row changes only if it still has the id read.
 * A link whose credentials do not open with the configured keys is left as
 * it is (the token API reports it). Returns how many links changed.
 */
export async function reconcileAccountIds(deps: ReconcileDeps): Promise<number> {
  const store = createLinkStore(deps.db, deps.keyring, { webhookEvents: deps.webhookEvents });
  const now = deps.now ?? Date.now;
  let changed = 0;
  for (const provider of deps.registry.list()) {
    const derive = provider.instance?.currentAccountId?.bind(provider.instance);
    if (!derive) continue;
    let after: { tenant: string; userId: string } | undefined;
    let rekeyed = 0;
    for (;;) {
      const rows = await deps.db
        .select()
        .from(links)
        .where(
          and(
            eq(links.provider, provider.id),
            after ? or(gt(links.tenant, after.tenant), and(eq(links.tenant, after.tenant), gt(links.userId, after.userId))) : undefined,
          ),
        )
        .orderBy(asc(links.tenant), asc(links.userId))
        .limit(BATCH);
      for (const row of rows) {
        let id: string | undefined;
        try {
          const credentials = store.openCredentials(row);
          id = derive(credentials);
          if (id !== undefined) checkedAccount({ id }, credentials, provider.id);
        } catch {
          continue;
        }
        if (id === undefined || id === row.externalId) continue;
        if (await store.rekey(row, id, new Date(now()))) rekeyed += 1;
      }
      if (rows.length < BATCH) break;
      const last = rows.at(-1)!;
      after = { tenant: last.tenant, userId: last.userId };
    }
    if (rekeyed > 0) deps.logger.info({ provider: provider.id, changed: rekeyed }, 'stored account ids brought up to date');
    changed += rekeyed;
  }
  return changed;
}
