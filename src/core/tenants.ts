/**
 * Tenants: the bots and apps one gateway serves, each with its own API keys,
 * link-context secrets, provider apps and webhook endpoint
 * (docs/tenants.md). `default` always exists and is configured by the
 * environment, as a single-tenant deployment always was; every other tenant
 * is configured through the operator API, its settings in the database:
 * API keys as SHA-256 digests, everything secret sealed with the keyring.
 *
 * What the hot paths ask (which tenant an API key belongs to, a tenant's
 * context secrets) is cached in memory. A change on any instance is
 * announced on `linkgate_tenant_changed` (NOTIFY, the tenant id as payload)
 * and every instance drops what it cached for that tenant; the caches also
 * lapse on their own after a minute, should a notification be missed.
 */
import { hash } from 'node:crypto';
import * as v from 'valibot';
import type { Brand, RateLimitRule } from '../config.ts';
import type { Database } from '../db/client.ts';
import { and, asc, desc, eq, isNull, sql } from '../db/orm.ts';
import { tenantApiKeys, tenantContextSecrets, tenantProviderConfigs, tenants, tenantWebhooks, type TenantRow } from '../db/schema.ts';
import { createApiKeyCheck, randomToken, type Keyring } from './crypto.ts';
import { LinkgateError } from './errors.ts';
import { DEFAULT_TENANT } from './ids.ts';
import type { WebhookEndpoint } from './webhooks.ts';

export const TENANT_CHANGED = 'linkgate_tenant_changed';
/** How long a cached answer is trusted without a change notification. */
const CACHE_MS = 60_000;
/** An unknown key is looked up again after this long (a key created on another instance). */
const UNKNOWN_KEY_MS = 5_000;
/** `last_used_at` is written at most this often per key. */
const LAST_USED_EVERY_MS = 60_000;

export const TenantId = v.pipe(
  v.string('the tenant id must be a string'),
  v.regex(/^[a-z0-9][a-z0-9-]{0,39}$/, 'the tenant id must be 1–40 lowercase letters, digits and hyphens, starting with a letter or digit'),
);

const shownText = (name: string, max: number) =>
  v.pipe(
    v.string(`${name} must be a string`),
    v.trim(),
    v.minLength(1, `${name} must not be empty`),
    v.maxLength(max, `${name} must be at most ${max} characters`),
    v.regex(/^[^\p{Cc}\p{Cf}<>]*$/u, `${name} must not contain control characters or < >`),
  );
export const TenantName = shownText('name', 100);
export const ApiKeyName = shownText('name', 100);

export interface Tenant {
  id: string;
  name: string;
  createdAt: Date;
  /** Its bots' API rate limit per key, instead of the gateway's. */
  apiRateLimit: RateLimitRule | undefined;
  /** Its pages' branding, instead of the gateway's. */
  brand: Brand | undefined;
  /** The provider whose account id is the user id of a sign-in; undefined: `discord`. */
  userProvider: string | undefined;
}

/** What the hot paths need of a tenant: its rate limit and branding (cached like its secrets). */
export interface TenantSettings {
  apiRateLimit: RateLimitRule | undefined;
  brand: Brand | undefined;
  userProvider: string | undefined;
}

// Stored by the operator API after validation; read back leniently (a row that does not parse is no setting).
const StoredRule = v.object({ limit: v.pipe(v.number(), v.integer(), v.minValue(0)), windowSeconds: v.pipe(v.number(), v.integer(), v.minValue(1)) });
const StoredBrand = v.object({ name: v.optional(v.string()), iconUrl: v.optional(v.string()), color: v.optional(v.string()), supportUrl: v.optional(v.string()) });

export interface ApiKeyInfo {
  id: string;
  name: string;
  createdAt: Date;
  lastUsedAt: Date | null;
}


/** A tenant's stored provider configuration: the variables, opened, and which version they are. */
export interface StoredProviderConfig {
  provider: string;
  version: number;
  env: Record<string, string>;
  createdAt: Date;
}

export interface TenantStoreDeps {
  database: Database;
  keyring: Keyring;
  /** The default tenant's keys and secret: the environment's. */
  environment: { apiKeys: readonly string[]; contextSigningSecret: string; webhook: WebhookEndpoint | undefined };
  now?: () => number;
}

const apiKeyDigest = (key: string) => hash('sha256', key, 'base64url');
export const secretAad = (tenant: string, id: string) => `tenant-context-secret:${JSON.stringify([tenant, id])}`;
export const webhookAad = (tenant: string) => `tenant-webhook:${JSON.stringify([tenant])}`;
export const providerConfigAad = (tenant: string, provider: string, version: number) => `tenant-provider:${JSON.stringify([tenant, provider, version])}`;

const NO_SETTINGS: TenantSettings = Object.freeze({ apiRateLimit: undefined, brand: undefined, userProvider: undefined });
const noSuchTenant = (id: string) => new LinkgateError('tenant_not_found', `there is no tenant "${id}"`);

export function createTenantStore(deps: TenantStoreDeps) {
  const { keyring } = deps;
  const db = deps.database.db;
  const now = deps.now ?? Date.now;
  const environmentKeys = createApiKeyCheck(deps.environment.apiKeys);

  const keys = new Map<string, { tenant: string; id: string; until: number } | { tenant: undefined; until: number }>();
  const secrets = new Map<string, { list: Promise<string[] | undefined>; until: number }>();
  const lastUsedWritten = new Map<string, number>();
  const listeners = new Set<(tenant: string) => void>();
  let listening: Promise<unknown> | undefined;

  function forget(tenant: string): void {
    for (const [digest, entry] of keys) if (entry.tenant === tenant || entry.tenant === undefined) keys.delete(digest);
    secrets.delete(tenant);
    settingsCache.delete(tenant);
    for (const listener of listeners) listener(tenant);
  }

  /** Hears other instances' changes (once, on first use of a cache). */
  function listen(): void {
    listening ??= deps.database
      .listen(TENANT_CHANGED, (payload) => {
        if (v.is(TenantId, payload)) forget(payload);
      })
      .catch(() => {
        // Without notifications the caches still lapse after CACHE_MS.
        listening = undefined;
      });
  }

  /** Drops what every instance cached for `tenant`. */
  async function changed(tenant: string): Promise<void> {
    forget(tenant);
    await deps.database.notify(TENANT_CHANGED, tenant).catch(() => {});
  }

  async function requireTenant(id: string): Promise<Tenant> {
    const [row] = await db.select().from(tenants).where(eq(tenants.id, id));
    if (!row) throw noSuchTenant(id);
    return toTenant(row);
  }

  const toTenant = (row: TenantRow): Tenant => {
    const rule = v.safeParse(StoredRule, row.apiRateLimit);
    const brand = v.safeParse(StoredBrand, row.brand);
    return { id: row.id, name: row.name, createdAt: row.createdAt, apiRateLimit: rule.success ? rule.output : undefined, brand: brand.success ? brand.output : undefined, userProvider: row.userProvider ?? undefined };
  };
  const settingsCache = new Map<string, { value: TenantSettings | Promise<TenantSettings>; until: number }>();

  return {
    /**
     * Starts hearing other instances' changes, on first use of something
     * cached (a gateway that only ever serves the default tenant from the
     * environment never holds a LISTEN connection for it).
     */
    watch: listen,

    /** Tells this instance and the others that something of the tenant's changed outside this store (its signing keys). */
    announce: changed,

    /** Called with a tenant's id whenever its settings change, here or on another instance. */
    onChange(listener: (tenant: string) => void): () => void {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    async create(id: string, name: string): Promise<Tenant> {
      const [row] = await db.insert(tenants).values({ id, name, createdAt: new Date(now()) }).onConflictDoNothing().returning();
      if (!row) throw new LinkgateError('tenant_exists', `a tenant "${id}" already exists`);
      return toTenant(row);
    },

    async list(): Promise<Tenant[]> {
      return (await db.select().from(tenants).orderBy(asc(tenants.id))).map(toTenant);
    },

    async get(id: string): Promise<Tenant | undefined> {
      const [row] = await db.select().from(tenants).where(eq(tenants.id, id));
      return row && toTenant(row);
    },

    require: requireTenant,

    /** Renames a tenant or changes its rate limit or branding (`null` goes back to the gateway's). */
    async update(id: string, change: { name?: string; apiRateLimit?: RateLimitRule | null; brand?: Brand | null; userProvider?: string | null }): Promise<Tenant> {
      const set: Partial<typeof tenants.$inferInsert> = {};
      if (change.name !== undefined) set.name = change.name;
      if (change.apiRateLimit !== undefined) set.apiRateLimit = change.apiRateLimit;
      if (change.brand !== undefined) set.brand = change.brand;
      if (change.userProvider !== undefined) set.userProvider = change.userProvider;
      const [row] = Object.keys(set).length > 0 ? await db.update(tenants).set(set).where(eq(tenants.id, id)).returning() : await db.select().from(tenants).where(eq(tenants.id, id));
      if (!row) throw noSuchTenant(id);
      await changed(id);
      return toTenant(row);
    },

    /**
     * A tenant's rate limit and branding, for the API gate and the pages: at
     * once when cached (the default tenant's are the environment's: none here).
     */
    settings(tenant: string): TenantSettings | Promise<TenantSettings> {
      if (tenant === DEFAULT_TENANT) return NO_SETTINGS;
      const at = now();
      const cached = settingsCache.get(tenant);
      if (cached && cached.until > at) return cached.value;
      listen();
      const loading = db
        .select()
        .from(tenants)
        .where(eq(tenants.id, tenant))
        .then(([row]) => {
          const found = row ? toTenant(row) : undefined;
          const value: TenantSettings = { apiRateLimit: found?.apiRateLimit, brand: found?.brand, userProvider: found?.userProvider };
          settingsCache.set(tenant, { value, until: at + CACHE_MS });
          return value;
        });
      settingsCache.set(tenant, { value: loading, until: at + CACHE_MS });
      loading.catch(() => settingsCache.delete(tenant));
      return loading;
    },

    /** Removes the tenant's row and every setting (the caller has unlinked its links first). */
    async remove(id: string): Promise<boolean> {
      if (id === DEFAULT_TENANT) throw new LinkgateError('bad_request', 'the default tenant cannot be deleted');
      const removed = await db.delete(tenants).where(eq(tenants.id, id)).returning({ id: tenants.id });
      await changed(id);
      return removed.length > 0;
    },

    /**
     * The tenant a bot API key belongs to, or undefined for no key of ours:
     * the environment's keys are the default tenant's (checked in constant
     * time, as before tenants); other keys by their digest, cached.
     */
    resolveApiKey(presented: string): string | undefined | Promise<string | undefined> {
      if (environmentKeys(presented)) return DEFAULT_TENANT;
      const digest = apiKeyDigest(presented);
      const cached = keys.get(digest);
      const at = now();
      if (cached && cached.until > at) {
        if (cached.tenant !== undefined) touch(cached.id, at);
        return cached.tenant;
      }
      listen();
      return db
        .select({ id: tenantApiKeys.id, tenant: tenantApiKeys.tenant })
        .from(tenantApiKeys)
        .where(eq(tenantApiKeys.digest, digest))
        .then(([row]) => {
          if (keys.size > 10_000) keys.clear();
          keys.set(digest, row ? { tenant: row.tenant, id: row.id, until: at + CACHE_MS } : { tenant: undefined, until: at + UNKNOWN_KEY_MS });
          if (row) touch(row.id, at);
          return row?.tenant;
        });
    },

    async createApiKey(tenant: string, name: string): Promise<ApiKeyInfo & { key: string }> {
      await requireTenant(tenant);
      const key = `lg_${randomToken(32)}`;
      const [row] = await db
        .insert(tenantApiKeys)
        .values({ id: `key_${randomToken(12)}`, tenant, name, digest: apiKeyDigest(key), createdAt: new Date(now()) })
        .returning();
      await changed(tenant);
      return { id: row!.id, name: row!.name, createdAt: row!.createdAt, lastUsedAt: null, key };
    },

    async listApiKeys(tenant: string): Promise<ApiKeyInfo[]> {
      await requireTenant(tenant);
      return db
        .select({ id: tenantApiKeys.id, name: tenantApiKeys.name, createdAt: tenantApiKeys.createdAt, lastUsedAt: tenantApiKeys.lastUsedAt })
        .from(tenantApiKeys)
        .where(eq(tenantApiKeys.tenant, tenant))
        .orderBy(asc(tenantApiKeys.createdAt), asc(tenantApiKeys.id));
    },

    async deleteApiKey(tenant: string, id: string): Promise<boolean> {
      await requireTenant(tenant);
      const removed = await db.delete(tenantApiKeys).where(and(eq(tenantApiKeys.tenant, tenant), eq(tenantApiKeys.id, id))).returning({ id: tenantApiKeys.id });
      await changed(tenant);
      return removed.length > 0;
    },

    /**
     * The secrets a link context naming `tenant` may be signed with, or
     * undefined when there is no such tenant. The default tenant's are the
     * environment's OAUTH_CONTEXT_SIGNING_SECRET and any it was given here.
     */
    contextSecrets(tenant: string): Promise<string[] | undefined> {
      const at = now();
      const cached = secrets.get(tenant);
      if (cached && cached.until > at) return cached.list;
      listen();
      const list = (async () => {
        if (tenant !== DEFAULT_TENANT && !(await db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenant))).length) return undefined;
        const rows = await db
          .select()
          .from(tenantContextSecrets)
          .where(and(eq(tenantContextSecrets.tenant, tenant), isNull(tenantContextSecrets.retiredAt)))
          .orderBy(desc(tenantContextSecrets.createdAt), desc(tenantContextSecrets.id));
        const stored = rows.map((row) => keyring.open(row.secret, secretAad(tenant, row.id)));
        return tenant === DEFAULT_TENANT ? [deps.environment.contextSigningSecret, ...stored] : stored;
      })();
      secrets.set(tenant, { list, until: at + CACHE_MS });
      list.catch(() => secrets.delete(tenant));
      return list;
    },

    /** The secret new contexts of `tenant` are signed with: its newest (the default tenant: the environment's). */
    signingSecret(tenant: string): string | Promise<string> {
      if (tenant === DEFAULT_TENANT) return deps.environment.contextSigningSecret;
      return this.contextSecrets(tenant).then((list) => {
        if (!list) throw noSuchTenant(tenant);
        const [newest] = list;
        if (!newest) throw new LinkgateError('tenant_unconfigured', `tenant "${tenant}" has no link-context secret yet (the operator creates one: linkgate tenants secrets create ${tenant})`);
        return newest;
      });
    },

    async createContextSecret(tenant: string): Promise<{ id: string; secret: string; createdAt: Date }> {
      await requireTenant(tenant);
      const id = `cs_${randomToken(12)}`;
      const secret = randomToken(32);
      const [row] = await db
        .insert(tenantContextSecrets)
        .values({ id, tenant, secret: keyring.seal(secret, secretAad(tenant, id)), createdAt: new Date(now()) })
        .returning({ createdAt: tenantContextSecrets.createdAt });
      await changed(tenant);
      return { id, secret, createdAt: row!.createdAt };
    },

    async listContextSecrets(tenant: string): Promise<Array<{ id: string; createdAt: Date }>> {
      await requireTenant(tenant);
      return db
        .select({ id: tenantContextSecrets.id, createdAt: tenantContextSecrets.createdAt })
        .from(tenantContextSecrets)
        .where(and(eq(tenantContextSecrets.tenant, tenant), isNull(tenantContextSecrets.retiredAt)))
        .orderBy(asc(tenantContextSecrets.createdAt), asc(tenantContextSecrets.id));
    },

    /** Retires a secret: contexts signed with it are refused from now on. */
    async retireContextSecret(tenant: string, id: string): Promise<boolean> {
      await requireTenant(tenant);
      const retired = await db
        .update(tenantContextSecrets)
        .set({ retiredAt: new Date(now()) })
        .where(and(eq(tenantContextSecrets.tenant, tenant), eq(tenantContextSecrets.id, id), isNull(tenantContextSecrets.retiredAt)))
        .returning({ id: tenantContextSecrets.id });
      await changed(tenant);
      return retired.length > 0;
    },

    /** Stores a new version of the tenant's configuration of `provider` (already checked by the caller). */
    async putProviderConfig(tenant: string, provider: string, env: Record<string, string>): Promise<StoredProviderConfig> {
      await requireTenant(tenant);
      const stored = await db.transaction(async (tx) => {
        // One writer per (tenant, provider) at a time: versions are numbered without gaps or clashes.
        await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`tenant-provider:${tenant}:${provider}`}))`);
        const [last] = await tx
          .select({ version: tenantProviderConfigs.version })
          .from(tenantProviderConfigs)
          .where(and(eq(tenantProviderConfigs.tenant, tenant), eq(tenantProviderConfigs.provider, provider)))
          .orderBy(desc(tenantProviderConfigs.version))
          .limit(1);
        const version = (last?.version ?? 0) + 1;
        const [row] = await tx
          .insert(tenantProviderConfigs)
          .values({ tenant, provider, version, env: keyring.seal(JSON.stringify(env), providerConfigAad(tenant, provider, version)), createdAt: new Date(now()) })
          .returning({ createdAt: tenantProviderConfigs.createdAt });
        return { provider, version, env, createdAt: row!.createdAt };
      });
      await changed(tenant);
      return stored;
    },

    /** The tenant's current provider configurations (the newest version of each, unless removed). */
    async currentProviderConfigs(tenant: string): Promise<StoredProviderConfig[]> {
      const rows = await db
        .selectDistinctOn([tenantProviderConfigs.provider])
        .from(tenantProviderConfigs)
        .where(eq(tenantProviderConfigs.tenant, tenant))
        .orderBy(asc(tenantProviderConfigs.provider), desc(tenantProviderConfigs.version));
      return rows
        .filter((row) => row.removedAt === null)
        .map((row) => ({ provider: row.provider, version: row.version, createdAt: row.createdAt, env: openEnv(row.env, tenant, row.provider, row.version) }));
    },

    /** One version of a tenant's provider configuration, removed or not (links made with it still refresh with it). */
    async providerConfig(tenant: string, provider: string, version: number): Promise<StoredProviderConfig | undefined> {
      const [row] = await db
        .select()
        .from(tenantProviderConfigs)
        .where(and(eq(tenantProviderConfigs.tenant, tenant), eq(tenantProviderConfigs.provider, provider), eq(tenantProviderConfigs.version, version)));
      return row && { provider, version, createdAt: row.createdAt, env: openEnv(row.env, tenant, provider, version) };
    },

    /** The tenant stops offering `provider`: no new links; links it made keep refreshing with their version. */
    async removeProviderConfig(tenant: string, provider: string): Promise<boolean> {
      await requireTenant(tenant);
      const removed = await db
        .update(tenantProviderConfigs)
        .set({ removedAt: new Date(now()) })
        .where(and(eq(tenantProviderConfigs.tenant, tenant), eq(tenantProviderConfigs.provider, provider), isNull(tenantProviderConfigs.removedAt)))
        .returning({ version: tenantProviderConfigs.version });
      await changed(tenant);
      return removed.length > 0;
    },

    async putWebhook(tenant: string, endpoint: WebhookEndpoint): Promise<void> {
      await requireTenant(tenant);
      const values = { url: endpoint.url.href, secret: keyring.seal(endpoint.secret, webhookAad(tenant)), updatedAt: new Date(now()) };
      await db.insert(tenantWebhooks).values({ tenant, ...values }).onConflictDoUpdate({ target: tenantWebhooks.tenant, set: values });
      await changed(tenant);
    },

    async deleteWebhook(tenant: string): Promise<boolean> {
      await requireTenant(tenant);
      const removed = await db.delete(tenantWebhooks).where(eq(tenantWebhooks.tenant, tenant)).returning({ tenant: tenantWebhooks.tenant });
      await changed(tenant);
      return removed.length > 0;
    },

    /** Where `tenant`'s events go: the environment's endpoint for the default tenant, else its own, if any. */
    async webhook(tenant: string): Promise<WebhookEndpoint | undefined> {
      if (tenant === DEFAULT_TENANT) return deps.environment.webhook;
      const [row] = await db.select().from(tenantWebhooks).where(eq(tenantWebhooks.tenant, tenant));
      return row && { url: new URL(row.url), secret: keyring.open(row.secret, webhookAad(tenant)) };
    },

    /** Whether any tenant has a webhook endpoint (the worker runs only when someone does). */
    async anyWebhook(): Promise<boolean> {
      const [row] = await db.select({ tenant: tenantWebhooks.tenant }).from(tenantWebhooks).limit(1);
      return row !== undefined;
    },

    /** The URL of a tenant's webhook, for showing (never its secret). */
    async webhookUrl(tenant: string): Promise<string | undefined> {
      const [row] = await db.select({ url: tenantWebhooks.url }).from(tenantWebhooks).where(eq(tenantWebhooks.tenant, tenant));
      return row?.url;
    },
  };

  function openEnv(sealed: string, tenant: string, provider: string, version: number): Record<string, string> {
    return v.parse(v.record(v.string(), v.string()), JSON.parse(keyring.open(sealed, providerConfigAad(tenant, provider, version))));
  }

  /** Notes a key's use in the database, at most once a minute per key, without holding up the request. */
  function touch(id: string, at: number): void {
    const last = lastUsedWritten.get(id);
    if (last !== undefined && at - last < LAST_USED_EVERY_MS) return;
    if (lastUsedWritten.size > 10_000) lastUsedWritten.clear();
    lastUsedWritten.set(id, at);
    db.update(tenantApiKeys)
      .set({ lastUsedAt: new Date(at) })
      .where(eq(tenantApiKeys.id, id))
      .then(
        () => {},
        () => lastUsedWritten.delete(id),
      );
  }
}

export type TenantStore = ReturnType<typeof createTenantStore>;
