import { readdir, stat } from 'node:fs/promises';
import { basename, extname, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as v from 'valibot';
import { ProviderId } from './core/ids.ts';
import { issueMessage } from './core/validation.ts';
import { ProxyAllow, proxyAllowName, type ProxyRule } from './core/proxy.ts';
import { ProviderNotConfigured, type ProviderDefinition, type ProviderFamily, type ProviderInstance, type ProviderTools } from './provider.ts';

export interface RegisteredProvider {
  id: string;
  displayName: string;
  /** The module it came from, for messages. */
  file: string;
  /** Present when every required variable is set. */
  instance: ProviderInstance | undefined;
  /** The variables it still needs when it is not configured. */
  missing: string[];
  /**
   * What would configure it, as alternatives (Jellyfin: a server URL, or
   * `JELLYFIN_ALLOW_USER_SERVER=true`); each lists what to set. Empty when configured.
   */
  needs: string[][];
  /** A tenant's provider: the version of its stored configuration the instance was made from. */
  configVersion?: number;
  /** What the provider API proxy may forward (`<ID>_PROXY_ALLOW`, src/core/proxy.ts); none: nothing. */
  proxyAllow?: readonly ProxyRule[];
}

/**
 * `<ID>_PROXY_ALLOW` of a provider from a set of variables: its rules, or a
 * problem naming the variable (never its value).
 */
export function proxyRules(id: string, env: Readonly<Record<string, string | undefined>>): { rules: ProxyRule[] } | { problem: string } {
  const name = proxyAllowName(id);
  const text = env[name];
  if (text === undefined || text.trim() === '') return { rules: [] };
  const parsed = v.safeParse(ProxyAllow, text);
  return parsed.success ? { rules: parsed.output } : { problem: `${name}: ${issueMessage({ ...parsed.issues[0], path: undefined })}` };
}

/**
 * The provider modules themselves, for configuring them per tenant
 * (src/core/tenant-providers.ts): single providers by id, and the families
 * whose members a tenant names (`corp` of the generic OIDC module).
 */
export interface ProviderCatalog {
  definitions: ReadonlyArray<{ definition: ProviderDefinition<unknown>; file: string }>;
  families: ReadonlyArray<{ family: ProviderFamily; file: string }>;
}

/** Makes a provider's tools: kv, locks and logs are kept apart per tenant (none given: the default tenant). */
export type ToolsFor = (providerId: string, tenant?: string) => ProviderTools;

/** `needs` for people: "A, B", or "either A, or B=true". */
export function describeNeeds(needs: readonly (readonly string[])[]): string {
  const ways = needs.map((way) => way.join(', '));
  return ways.length > 1 ? `either ${ways.join(', or ')}` : (ways[0] ?? 'configuration');
}

export interface Registry {
  list(): RegisteredProvider[];
  get(id: string): RegisteredProvider | undefined;
  /** The modules it was loaded from (the environment's registry only). */
  catalog?: ProviderCatalog;
}

/** Start-up stops on this: a module breaks the contract, or its configuration is wrong (every such variable at once). */
export class ProviderLoadError extends Error {
  override name = 'ProviderLoadError';
  readonly problems: readonly string[];
  constructor(problems: string | readonly string[], options?: { cause?: unknown }) {
    const list = typeof problems === 'string' ? [problems] : problems;
    super(list.join('; '), options);
    this.problems = list;
  }
}

const isSchema = (value: unknown) =>
  typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'schema';

const DefinitionShape = v.object({
  id: ProviderId,
  displayName: v.pipe(v.string('displayName must be a string'), v.minLength(1, 'displayName must not be empty')),
  env: v.custom(isSchema, 'env must be a valibot schema'),
  create: v.function('create must be a function'),
});

const FamilyShape = v.object({
  family: v.pipe(v.string(), v.minLength(1)),
  expand: v.function('expand must be a function'),
  member: v.optional(v.function('member must be a function')),
});

const InstanceShape = v.object({
  access: v.optional(v.pipe(v.array(v.pipe(v.string('access must list sentences'), v.minLength(1), v.maxLength(200, 'each access sentence must be at most 200 characters'))), v.maxLength(20, 'access must list at most 20 sentences'))),
  begin: v.function('begin must be a function'),
  advance: v.function('advance must be a function'),
  refresh: v.optional(v.function('refresh must be a function')),
  revoke: v.optional(v.function('revoke must be a function')),
  verify: v.optional(v.function('verify must be a function')),
  tokenFields: v.optional(v.function('tokenFields must be a function')),
  callbackState: v.optional(v.function('callbackState must be a function')),
  currentAccountId: v.optional(v.function('currentAccountId must be a function')),
  documents: v.optional(v.record(v.pipe(v.string(), v.regex(/^[a-z0-9-]+\.json$/, 'document names look like name.json')), v.function('documents must map names to functions'))),
  xrpc: v.optional(v.function('xrpc must be a function')),
});

/** Provider modules in a folder: `id.ts` / `id.js`, or `id/index.ts`; tests and `_private` files are skipped. */
async function providerFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    if (name.startsWith('_') || name.startsWith('.')) continue;
    const path = join(dir, name);
    if ((await stat(path)).isDirectory()) {
      for (const index of ['index.ts', 'index.js']) {
        if (await stat(join(path, index)).then((s) => s.isFile(), () => false)) {
          files.push(join(path, index));
          break;
        }
      }
    } else if (/\.(ts|js|mjs)$/.test(name) && !/\.(test|spec|d)\.(ts|js|mjs)$/.test(name)) {
      files.push(path);
    }
  }
  return files;
}

function describeIssues(issues: readonly v.BaseIssue<unknown>[]): string {
  return issues.map(issueMessage).join('; ');
}

/**
 * Loads every provider module in `dir`, checks it against the contract and
 * creates the configured ones. Throws `ProviderLoadError` naming the file
 * for a broken module or a duplicate id, or listing every present-but-invalid
 * variable of every provider.
 */
export async function loadProviders(
  dir: string,
  env: Readonly<Record<string, string | undefined>>,
  toolsFor: ToolsFor,
): Promise<Registry> {
  const modules = await readModules(dir, env);
  const checked = modules.definitions.map((found) => ({ ...found, variables: checkVariables(found.definition, found.file, env), proxy: proxyRules(found.definition.id, env) }));
  const problems = checked.flatMap(({ variables, proxy }) => [...('problem' in variables ? [variables.problem] : []), ...('problem' in proxy ? [proxy.problem] : [])]);
  if (problems.length > 0) throw new ProviderLoadError(problems);
  const byId = new Map<string, RegisteredProvider>();
  for (const { definition, file, variables, proxy } of checked) {
    const base = { id: definition.id, displayName: definition.displayName, file };
    const registered: RegisteredProvider =
      'needs' in variables
        ? { ...base, instance: undefined, missing: missingNames(variables.needs), needs: variables.needs }
        : await create(definition, base, 'parsed' in variables ? variables.parsed : undefined, toolsFor);
    byId.set(definition.id, { ...registered, proxyAllow: 'rules' in proxy ? proxy.rules : [] });
  }
  const sorted = [...byId.values()].sort((a, b) => a.id.localeCompare(b.id));
  const catalog: ProviderCatalog = {
    definitions: modules.definitions.filter(({ definition }) => !modules.fromFamily.has(definition.id)),
    families: modules.families,
  };
  return { list: () => sorted, get: (id) => byId.get(id), catalog };
}

/**
 * Every present-but-invalid provider variable, without creating anything
 * (no database needed): for a start-up that already failed on its own
 * configuration to report these in the same breath.
 */
export async function providerVariableProblems(dir: string, env: Readonly<Record<string, string | undefined>>): Promise<string[]> {
  return (await readModules(dir, env)).definitions.flatMap(({ definition, file }) => {
    const variables = checkVariables(definition, file, env);
    return 'problem' in variables ? [variables.problem] : [];
  });
}

/**
 * The provider definitions of the modules in `dir`, checked against the
 * contract, ids unique; the families among them, and which ids their
 * expansion gave.
 */
async function readModules(
  dir: string,
  env: Readonly<Record<string, string | undefined>>,
): Promise<{ definitions: Array<{ definition: ProviderDefinition<unknown>; file: string }>; families: Array<{ family: ProviderFamily; file: string }>; fromFamily: Set<string> }> {
  const found = new Map<string, { definition: ProviderDefinition<unknown>; file: string }>();
  const families: Array<{ family: ProviderFamily; file: string }> = [];
  const fromFamily = new Set<string>();
  for (const file of await providerFiles(dir)) {
    const shown = relative(process.cwd(), file) || file;
    let exported: unknown;
    try {
      exported = ((await import(pathToFileURL(file).href)) as { default?: unknown }).default;
    } catch (cause) {
      throw new ProviderLoadError(`${shown}: failed to load: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    }
    let definitions: unknown[];
    const isFamily = v.is(FamilyShape, exported);
    if (isFamily) {
      families.push({ family: exported as unknown as ProviderFamily, file: shown });
      try {
        const expanded: unknown = (exported as ProviderFamily).expand(env);
        if (!Array.isArray(expanded)) throw new Error('expand() must return an array of provider definitions');
        definitions = expanded;
      } catch (cause) {
        throw new ProviderLoadError(`${shown}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
      }
    } else {
      const fileId = basename(file, extname(file)) === 'index' ? basename(join(file, '..')) : basename(file, extname(file));
      const checked = v.safeParse(DefinitionShape, exported);
      if (!checked.success) {
        throw new ProviderLoadError(`${shown}: the default export must be defineProvider({ id, displayName, env, create }): ${describeIssues(checked.issues)}`);
      }
      if (checked.output.id !== fileId) {
        throw new ProviderLoadError(`${shown}: provider id "${checked.output.id}" must match its file name "${fileId}"`);
      }
      definitions = [exported];
    }
    for (const candidate of definitions) {
      const checked = v.safeParse(DefinitionShape, candidate);
      if (!checked.success) throw new ProviderLoadError(`${shown}: ${describeIssues(checked.issues)}`);
      const definition = candidate as ProviderDefinition<unknown>;
      const existing = found.get(definition.id);
      if (existing) {
        throw new ProviderLoadError(`${shown}: provider id "${definition.id}" is already defined by ${existing.file}`);
      }
      found.set(definition.id, { definition, file: shown });
      if (isFamily) fromFamily.add(definition.id);
    }
  }
  return { definitions: [...found.values()], families, fromFamily };
}

/** A provider's variables: parsed, missing (what would configure it), or a problem naming the bad one. */
export function checkVariables(
  definition: ProviderDefinition<unknown>,
  file: string,
  env: Readonly<Record<string, string | undefined>>,
): { parsed: unknown } | { needs: string[][] } | { problem: string } {
  // Empty values (`ANILIST_CLIENT_ID=` in a .env file) count as unset.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value.trim() !== ''));
  const parsed = v.safeParse(definition.env, present);
  if (parsed.success) return { parsed: parsed.output };
  const top = parsed.issues.find((issue) => !isMissing(issue));
  const invalid = top && firstPresent(top);
  if (invalid) {
    const name = invalid.path?.map((p) => String(p.key)).join('.') ?? 'environment';
    return { problem: `${name}: ${issueMessage({ ...invalid, path: undefined })} (provider "${definition.id}", ${file})` };
  }
  return { needs: alternatives(definition.env, present) };
}

export const missingNames = (needs: string[][]) => [...new Set(needs.flat().map((need) => need.replace(/=.*$/, '')))];

/** Creates a provider from its parsed variables and checks what `create` returned against the contract. */
export async function create(
  definition: ProviderDefinition<unknown>,
  base: Pick<RegisteredProvider, 'id' | 'displayName' | 'file'>,
  env: unknown,
  toolsFor: ToolsFor,
  tenant?: string,
): Promise<RegisteredProvider> {
  let instance: unknown;
  try {
    instance = await definition.create(env, toolsFor(definition.id, tenant));
  } catch (cause) {
    if (cause instanceof ProviderNotConfigured) return { ...base, instance: undefined, missing: cause.missing, needs: [cause.missing] };
    throw new ProviderLoadError(`${base.file}: create() failed for provider "${definition.id}": ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
  const checked = v.safeParse(InstanceShape, instance);
  if (!checked.success) throw new ProviderLoadError(`${base.file}: create() returned a bad provider: ${describeIssues(checked.issues)}`);
  return { ...base, instance: instance as ProviderInstance, missing: [], needs: [] };
}

// A union ("this variable or that one") is missing when every branch only lacks variables.
// Only a variable itself can be missing: an absent field inside a variable's value (a JSON key) is invalid.
const isMissing = (issue: v.BaseIssue<unknown>): boolean =>
  (issue.input === undefined && (issue.path?.length ?? 0) <= 1) ||
  (issue.issues !== undefined && issue.issues.length > 0 && issue.issues.every(isMissing));
const leaves = (issue: v.BaseIssue<unknown>): v.BaseIssue<unknown>[] =>
  issue.input === undefined || !issue.issues ? [issue] : issue.issues.flatMap(leaves);
const firstPresent = (issue: v.BaseIssue<unknown>): v.BaseIssue<unknown> => {
  const nested = issue.issues?.find((inner) => !isMissing(inner));
  return nested ? firstPresent(nested) : issue;
};

/**
 * What each way of configuring a provider still lacks. A union's issues come
 * out flattened, so each branch is parsed on its own to keep "either … or"
 * apart; a branch that wants a fixed value (`v.literal('true')`) says so.
 */
function alternatives(schema: v.GenericSchema, present: Record<string, string | undefined>): string[][] {
  const branches = schema.type === 'union' && 'options' in schema ? (schema.options as v.GenericSchema[]) : [schema];
  if (branches.length > 1) return branches.flatMap((branch) => alternatives(branch, present));
  const parsed = v.safeParse(schema, present);
  // A branch that a variable already set rules out is no way to configure it.
  if (parsed.success || !parsed.issues.every(isMissing)) return [];
  const entries = 'entries' in schema ? (schema.entries as Record<string, v.GenericSchema>) : {};
  const needs = parsed.issues.filter(isMissing).flatMap(leaves).flatMap((issue) => {
    const name = issue.path?.map((p) => String(p.key)).join('.');
    if (!name) return [];
    const entry = entries[name];
    return [entry?.type === 'literal' && 'literal' in entry ? `${name}=${String(entry.literal)}` : name];
  });
  return needs.length > 0 ? [[...new Set(needs)]] : [];
}
