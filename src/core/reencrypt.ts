import type { SQL } from 'drizzle-orm';
import { and, asc, eq, isNotNull, not, sql } from '../db/orm.ts';
import type { PgColumn, PgTable } from 'drizzle-orm/pg-core';
import type { Db } from '../db/client.ts';
import { flows, kv, links, loginSessions, oidcApps, oidcPayloads, oidcSigningKeys, tenantContextSecrets, tenantProviderConfigs, tenantWebhooks } from '../db/schema.ts';
import type { Keyring } from './crypto.ts';
import { flowAad } from './flows.ts';
import { kvAad } from './kv.ts';
import { linkAad } from './links.ts';
import { providerConfigAad, secretAad, webhookAad } from './tenants.ts';
import { appLegacySecretAad, appSecretAad, payloadAad, signingKeyAad } from './openid-storage.ts';
import { loginResultAad } from './logins.ts';

interface SealedColumn {
  name: string;
  table: PgTable;
  /** The primary key columns, in order. */
  keys: PgColumn[];
  value: PgColumn;
  /** The property name of `value` in the Drizzle table. */
  field: string;
  aad(key: Array<string | number>): string;
  /** Rows that must be left alone for now (the next run gets them). */
  busy?: SQL;
}

/** Every sealed value the gateway stores, with how to find its associated data. */
const SEALED: SealedColumn[] = [
  {
    name: 'links',
    table: links,
    keys: [links.tenant, links.userId, links.provider],
    value: links.credentials,
    field: 'credentials',
    aad: ([tenant, userId, provider]) => linkAad({ tenant: String(tenant), userId: String(userId), provider: String(provider) }),
    // A refresh in flight writes only over the ciphertext it read: re-sealing it meanwhile would make
    // the refresher drop its new tokens (a rotated refresh token is then lost). It writes under the primary key anyway.
    busy: sql`(${links.refreshLeaseUntil} is not null and ${links.refreshLeaseUntil} > now())`,
  },
  { name: 'kv', table: kv, keys: [kv.namespace, kv.key], value: kv.value, field: 'value', aad: ([namespace, key]) => kvAad(String(namespace), String(key)) },
  { name: 'flows', table: flows, keys: [flows.stateHash], value: flows.data, field: 'data', aad: ([stateHash]) => flowAad(String(stateHash)) },
  // Tenants' secrets (src/core/tenants.ts): context secrets, provider apps (every version), webhook secrets.
  {
    name: 'tenant_context_secrets',
    table: tenantContextSecrets,
    keys: [tenantContextSecrets.tenant, tenantContextSecrets.id],
    value: tenantContextSecrets.secret,
    field: 'secret',
    aad: ([tenant, id]) => secretAad(String(tenant), String(id)),
  },
  {
    name: 'tenant_provider_configs',
    table: tenantProviderConfigs,
    keys: [tenantProviderConfigs.tenant, tenantProviderConfigs.provider, tenantProviderConfigs.version],
    value: tenantProviderConfigs.env,
    field: 'env',
    aad: ([tenant, provider, version]) => providerConfigAad(String(tenant), String(provider), Number(version)),
  },
  { name: 'tenant_webhooks', table: tenantWebhooks, keys: [tenantWebhooks.tenant], value: tenantWebhooks.secret, field: 'secret', aad: ([tenant]) => webhookAad(String(tenant)) },
  // The OpenID Provider's (src/core/openid-storage.ts).
  {
    name: 'oidc_payloads',
    table: oidcPayloads,
    keys: [oidcPayloads.tenant, oidcPayloads.model, oidcPayloads.idHash],
    value: oidcPayloads.payload,
    field: 'payload',
    aad: ([tenant, model, idHash]) => payloadAad(String(tenant), String(model), String(idHash)),
  },
  { name: 'oidc_signing_keys', table: oidcSigningKeys, keys: [oidcSigningKeys.tenant, oidcSigningKeys.kid], value: oidcSigningKeys.privateJwk, field: 'privateJwk', aad: ([tenant, kid]) => signingKeyAad(String(tenant), String(kid)) },
  { name: 'oidc_apps', table: oidcApps, keys: [oidcApps.tenant, oidcApps.clientId], value: oidcApps.secret, field: 'secret', aad: ([tenant, clientId]) => appSecretAad(String(tenant), String(clientId)) },
  {
    name: 'oidc_apps.legacy_jwt_secret',
    table: oidcApps,
    keys: [oidcApps.tenant, oidcApps.clientId],
    value: oidcApps.legacyJwtSecret,
    field: 'legacyJwtSecret',
    aad: ([tenant, clientId]) => appLegacySecretAad(String(tenant), String(clientId)),
  },
  // RPC sign-ins' tokens (src/core/logins.ts), kept 30 minutes.
  { name: 'login_sessions', table: loginSessions, keys: [loginSessions.sessionHash], value: loginSessions.result, field: 'result', aad: ([sessionHash]) => loginResultAad(String(sessionHash)) },
];

export interface ReencryptReport {
  /**
   * `left`: values still sealed with an older key after this run (busy rows); run again before dropping a key.
   * `unreadable`: values no configured key opens (a key already dropped, or altered data): left as they are, counted.
   */
  [table: string]: { scanned: number; reencrypted: number; left: number; unreadable: number };
}

/**
 * Re-seals, under the keyring's primary key, every stored value sealed with
 * an older one, a batch at a time. Each row is updated only if it still holds
 * what was read (a concurrent refresh or relink already wrote it under the
 * primary key), so nothing written meanwhile is overwritten, and a link being
 * refreshed is left to its refresher (counted in `left`). Once a run
 * leaves nothing, the old key can be dropped from LINKGATE_ENCRYPTION_KEYS.
 */
export async function reencryptAll(db: Db, keyring: Keyring, batchSize = 500): Promise<ReencryptReport> {
  const report: ReencryptReport = {};
  for (const column of SEALED) report[column.name] = await reencryptColumn(db, keyring, column, batchSize);
  return report;
}

async function reencryptColumn(db: Db, keyring: Keyring, column: SealedColumn, batchSize: number) {
  const tuple = (values: SQL[]) => sql.join(values, sql`, `);
  let scanned = 0;
  let reencrypted = 0;
  let left = 0;
  let unreadable = 0;
  let after: unknown[] | undefined;
  for (;;) {
    const selection = Object.fromEntries([...column.keys.map((k, i) => [`k${i}`, k]), ['value', column.value]]) as Record<string, PgColumn>;
    const rows = (await db
      .select(selection)
      .from(column.table)
      .where(
        and(
          isNotNull(column.value),
          after ? sql`(${tuple(column.keys.map((k) => sql`${k}`))}) > (${tuple(after.map((a) => sql`${a}`))})` : undefined,
        ),
      )
      .orderBy(...column.keys.map((k) => asc(k)))
      .limit(batchSize)) as Record<string, string | number>[];
    for (const row of rows) {
      scanned += 1;
      const key = column.keys.map((_, i) => row[`k${i}`]!);
      const sealed = String(row.value);
      if (keyring.kidOf(sealed) === keyring.primaryKid) continue;
      const aad = column.aad(key);
      let opened: string;
      try {
        opened = keyring.open(sealed, aad);
      } catch {
        // One value that does not open must not stop the rest from moving to the new key.
        unreadable += 1;
        continue;
      }
      const resealed = keyring.seal(opened, aad);
      const updated = await db
        .update(column.table)
        .set({ [column.field]: resealed })
        .where(and(...column.keys.map((k, i) => eq(k, key[i]!)), eq(column.value, sealed), column.busy ? not(column.busy) : undefined))
        .returning({ v: column.value });
      reencrypted += updated.length;
      if (updated.length === 0) {
        const [now] = (await db
          .select({ value: column.value })
          .from(column.table)
          .where(and(...column.keys.map((k, i) => eq(k, key[i]!))))) as Array<{ value: string | null }>;
        if (now?.value && keyring.kidOf(now.value) !== keyring.primaryKid) left += 1;
      }
    }
    if (rows.length < batchSize) break;
    after = column.keys.map((_, i) => rows.at(-1)![`k${i}`]!);
  }
  return { scanned, reencrypted, left, unreadable };
}
