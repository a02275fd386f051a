/**
 * Providers per tenant. The default tenant's are the environment's registry,
 * as before tenants. Another tenant's are made from the configurations the
 * operator stored for it (src/core/tenants.ts): each is the object of
 * variables the provider module reads from the environment, checked by that
 * module's own `env` schema, and the instance is made by the module's own
 * `create`, once per (tenant, provider, configuration version).
 *
 * A flow and a link remember the version they were made with: the callback,
 * refresh and revocation use that version's client, also after the tenant
 * changed its app.
 */
import type { Logger } from 'pino';
import * as v from 'valibot';
import type { ProviderDefinition, ProviderInstance } from '../provider.ts';
import { checkVariables, create, missingNames, ProviderLoadError, proxyRules, type RegisteredProvider, type Registry, type ToolsFor } from '../registry.ts';
import { proxyAllowName } from './proxy.ts';
import { LinkgateError } from './errors.ts';
import { DEFAULT_TENANT } from './ids.ts';
import type { TenantStore } from './tenants.ts';

export interface ProviderDirectory {
  /** The environment's providers: the default tenant's. */
  readonly defaults: Registry;
  /** A tenant's providers; the default tenant's at once (the status API's hot path never waits for it). */
  of(tenant: string): Registry | Promise<Registry>;
  /**
   * The instance a flow or link of `tenant` was made with: the environment's
   * for a null version (the default tenant), else that version of the
   * tenant's configuration. Undefined when there is none (any more).
   */
  instance(tenant: string, provider: string, version: number | null): Promise<ProviderInstance | undefined>;
  /**
   * Checks a configuration for `provider` as a tenant would store it: every
   * name one the provider reads, every value valid, nothing required
   * missing, and `create` succeeds. Returns the provider's display name.
   */
  check(provider: string, env: Record<string, string>, context: { publicBaseUrl: URL }): Promise<{ displayName: string }>;
  /** What a tenant without a configuration for each provider would need (ids the tenant may configure). */
  configurable(): Array<{ id: string; displayName: string; needs: string[][] }>;
}

/**
 * Variable names that hold secrets: write-only in the operator API (shown
 * masked), never logged. Any provider's names end like one of these.
 */
const SECRET_NAME = /(SECRET|PASSWORD|PRIVATE_KEYS?|API_KEY|TOKEN|_KEY)$/;
export const isSecretVariable = (name: string) => SECRET_NAME.test(name);
export const MASKED = '********';

/** A configuration as the operator API shows it: secret values masked. */
export function maskSecrets(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).map(([name, value]) => [name, isSecretVariable(name) ? MASKED : value]));
}

/** Every variable name a provider's `env` schema reads (object entries, through unions and pipes). */
export function variableNames(schema: v.GenericSchema): Set<string> {
  const names = new Set<string>();
  const visit = (node: unknown) => {
    if (typeof node !== 'object' || node === null) return;
    const s = node as { type?: string; entries?: Record<string, unknown>; options?: unknown[] };
    if (s.entries) for (const name of Object.keys(s.entries)) names.add(name);
    if (Array.isArray(s.options)) for (const option of s.options) visit(option);
  };
  visit(schema);
  return names;
}

const configInvalid = (message: string) => new LinkgateError('bad_request', message);

export function createProviderDirectory(deps: { registry: Registry; tenants: TenantStore; toolsFor: ToolsFor; logger: Logger; now?: () => number }): ProviderDirectory {
  const { registry, tenants } = deps;
  const catalog = registry.catalog ?? { definitions: [], families: [] };
  /** Each tenant's registry: the promise while it loads, then the registry itself (answered at once, as the status API's plain path needs). */
  const registries = new Map<string, Registry | Promise<Registry>>();
  const instances = new Map<string, Promise<RegisteredProvider>>();

  tenants.onChange((tenant) => {
    registries.delete(tenant);
    // Versions never change, but a deleted tenant's instances must not outlive it.
    for (const key of instances.keys()) if (key.startsWith(`${tenant}\0`)) instances.delete(key);
  });

  /** The module (or family member) a tenant configures as `id`, given its variables. */
  function definitionFor(id: string, env: Record<string, string | undefined>): { definition: ProviderDefinition<unknown>; file: string } | undefined {
    const single = catalog.definitions.find(({ definition }) => definition.id === id);
    if (single) return single;
    for (const { family, file } of catalog.families) {
      const definition = family.member?.(id, env);
      if (definition) return { definition, file };
    }
    return undefined;
  }

  /** The instance made from one stored version (cached: a version never changes). */
  function instanceOf(tenant: string, id: string, version: number, env: Record<string, string>): Promise<RegisteredProvider> {
    const key = `${tenant}\0${id}\0${version}`;
    let made = instances.get(key);
    if (!made) {
      made = (async () => {
        const found = definitionFor(id, env);
        if (!found) return { id, displayName: id, file: '', instance: undefined, missing: [], needs: [] };
        const checked = checkVariables(found.definition, found.file, env);
        if (!('parsed' in checked)) {
          return { id, displayName: found.definition.displayName, file: found.file, instance: undefined, missing: 'needs' in checked ? missingNames(checked.needs) : [], needs: 'needs' in checked ? checked.needs : [] };
        }
        const registered = await create(found.definition, { id, displayName: found.definition.displayName, file: found.file }, checked.parsed, deps.toolsFor, tenant);
        const proxy = proxyRules(id, env);
        return { ...registered, configVersion: version, proxyAllow: 'rules' in proxy ? proxy.rules : [] };
      })();
      instances.set(key, made);
      // A provider that failed to start (its issuer down) is tried again next time.
      made.catch(() => instances.delete(key));
    }
    return made;
  }

  async function load(tenant: string): Promise<Registry> {
    const configs = await tenants.currentProviderConfigs(tenant);
    const byId = new Map<string, RegisteredProvider>();
    for (const { definition, file } of catalog.definitions) {
      if (definition.perTenant === false) continue;
      const checked = checkVariables(definition, file, {});
      const needs = 'needs' in checked ? checked.needs : [];
      byId.set(definition.id, { id: definition.id, displayName: definition.displayName, file, instance: undefined, missing: missingNames(needs), needs });
    }
    for (const config of configs) {
      try {
        byId.set(config.provider, await instanceOf(tenant, config.provider, config.version, config.env));
      } catch (error) {
        // Stored and checked once, but not working now (the issuer unreachable): listed as not configured.
        deps.logger.warn({ tenant, provider: config.provider, error: error instanceof Error ? error.message : String(error) }, 'a tenant provider could not be started');
      }
    }
    const sorted = [...byId.values()].sort((a, b) => a.id.localeCompare(b.id));
    return { list: () => sorted, get: (id) => byId.get(id) };
  }

  return {
    defaults: registry,

    of(tenant) {
      if (tenant === DEFAULT_TENANT) return registry;
      const known = registries.get(tenant);
      if (known) return known;
      tenants.watch();
      const loading = load(tenant);
      registries.set(tenant, loading);
      // Unless the tenant changed meanwhile (its entry dropped, or loading again).
      loading.then(
        (registry) => registries.get(tenant) === loading && registries.set(tenant, registry),
        () => registries.get(tenant) === loading && registries.delete(tenant),
      );
      return loading;
    },

    async instance(tenant, provider, version) {
      // Only the default tenant's links have no version (drizzle/0016 gave one to those imported into other tenants before).
      if (version === null) return tenant === DEFAULT_TENANT ? registry.get(provider)?.instance : undefined;
      const stored = await tenants.providerConfig(tenant, provider, version);
      if (!stored) return undefined;
      return (await instanceOf(tenant, provider, version, stored.env)).instance;
    },

    async check(provider, env, context) {
      const found = definitionFor(provider, env);
      if (!found) throw new LinkgateError('unknown_provider', `there is no provider called "${provider}"`, { provider });
      if (found.definition.perTenant === false) {
        throw new LinkgateError('provider_not_per_tenant', `${found.definition.displayName} is configured for the whole gateway (by the environment), not per tenant`, { provider });
      }
      const known = variableNames(found.definition.env as v.GenericSchema);
      // The proxy's allowlist is the gateway's, for any provider (src/core/proxy.ts).
      known.add(proxyAllowName(provider));
      const proxy = proxyRules(provider, env);
      if ('problem' in proxy) throw configInvalid(proxy.problem);
      const unknown = Object.keys(env).filter((name) => !known.has(name));
      if (unknown.length > 0) {
        throw configInvalid(`${unknown[0]}: ${found.definition.displayName} reads no such variable (it reads ${[...known].sort().join(', ')})`);
      }
      for (const [name, value] of Object.entries(env)) {
        // Reaching the gateway's own network is the operator's decision, made in the environment, never a tenant's.
        if (name.endsWith('_ALLOW_PRIVATE_SERVERS') && !/^(false|0)$/i.test(value)) {
          throw configInvalid(`${name}: only the gateway's own configuration (its environment) may let a provider reach private networks`);
        }
        // The sign-in cookie is only sent to the gateway's own origin: a callback elsewhere could never finish.
        if (name.endsWith('_REDIRECT_URI') && (!URL.canParse(value) || new URL(value).origin !== context.publicBaseUrl.origin)) {
          throw configInvalid(`${name}: must be on the gateway's origin (${context.publicBaseUrl.origin})`);
        }
      }
      const checked = checkVariables(found.definition, found.file, env);
      if ('problem' in checked) throw configInvalid(checked.problem.replace(/ \(provider "[^"]*", [^)]*\)$/, ''));
      if ('needs' in checked) throw configInvalid(`${found.definition.displayName} also needs ${checked.needs.length > 1 ? `either ${checked.needs.map((way) => way.join(', ')).join(', or ')}` : (checked.needs[0] ?? []).join(', ')}`);
      try {
        // Made once here with throwaway tools, so a configuration that cannot start is refused now, not at the first link.
        const made = await create(found.definition, { id: provider, displayName: found.definition.displayName, file: found.file }, checked.parsed, deps.toolsFor, '(check)');
        if (!made.instance) throw configInvalid(`${found.definition.displayName} is not usable with these variables (missing ${made.missing.join(', ')})`);
      } catch (error) {
        if (error instanceof LinkgateError) throw error;
        const why = error instanceof ProviderLoadError ? error.message.replace(/^[^:]*: create\(\) failed for provider "[^"]*": /, '') : 'it could not be started';
        throw configInvalid(`${found.definition.displayName} could not be started with these variables: ${why}`);
      }
      return { displayName: found.definition.displayName };
    },

    configurable() {
      return catalog.definitions
        .filter(({ definition }) => definition.perTenant !== false)
        .map(({ definition, file }) => {
          const checked = checkVariables(definition, file, {});
          return { id: definition.id, displayName: definition.displayName, needs: 'needs' in checked ? checked.needs : [] };
        });
    },
  };
}
