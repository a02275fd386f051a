/**
 * `linkgate tenants …`: the operator API (/api/admin/v1, src/http/admin.ts)
 * on the command line, working on the database directly, or through that
 * API when a gateway holds the embedded database in DATA_DIR. The same schemas
 * check the input and the same functions make the answers, so `--json`
 * prints exactly what the API answers; a route that answers 204 prints
 * nothing with --json (its exit code says it worked). A bot API key and a
 * context secret are printed once, by the command that creates them;
 * provider secrets show masked, the webhook secret never.
 */
import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import { DEFAULT_TENANT } from '../core/ids.ts';
import type { ProviderDirectory } from '../core/tenant-providers.ts';
import type { TenantStore } from '../core/tenants.ts';
import type { Database } from '../db/client.ts';
import type * as v from 'valibot';
import type { AuditAction } from '../core/audit.ts';
import type { CommandAuditNote } from './database.ts';
import type { RunningGateway } from './gateway.ts';
import { CliError, EXIT, type CliIo, type Command, type ParsedArgs } from './cli.ts';
import { fields, print, table } from './output.ts';
import { cliLogger, loadConfig, type CliConfig } from './runtime.ts';

// Loaded when a command runs, so `--help` starts at once.
const admin = () => import('../http/admin.ts');
const parseInput = async () => (await import('../core/validation.ts')).parseInput;

/** A command and the operator API route it mirrors. */
type OperatorCommand = Command & { route: string };

const TENANT_ARG = { name: 'tenant', help: 'a tenant id, as `linkgate tenants list` shows it' };

interface TenantContext {
  loaded: CliConfig;
  config: Config;
  database: Database;
  tenants: TenantStore;
  logger: Logger;
  /** Every tenant's providers, loaded on first use (only the commands about providers, and delete, need them). */
  providers(): Promise<ProviderDirectory>;
}

/** Opens the database with the tenant store the server would make. */
async function withTenants<T>(io: CliIo, run: (context: TenantContext) => Promise<T>, loaded = loadConfig(io)): Promise<T> {
  const { config } = loaded;
  const logger = cliLogger(io, config);
  const { loadProviderDirectory, requireMigrated, withDatabase } = await import('./database.ts');
  const { createTenantStore } = await import('../core/tenants.ts');
  const { createKeyring } = await import('../core/crypto.ts');
  return withDatabase(io, config, async (database) => {
    await requireMigrated(database);
    const tenants = createTenantStore({
      database,
      keyring: createKeyring(config.encryptionKeys),
      environment: { apiKeys: config.apiKeys, contextSigningSecret: config.contextSigningSecret, webhook: config.webhook && { url: config.webhook.url, secret: config.webhook.secret } },
      now: io.now,
    });
    let directory: Promise<ProviderDirectory> | undefined;
    const providers = () => (directory ??= loadProviderDirectory(io, loaded, database, tenants, logger));
    return run({ loaded, config, database, tenants, logger, providers });
  });
}

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** A change's audit row: its action, whose, and what it acted on (src/core/audit.ts); `after` adds what the answer says (a created id, a version). */
interface Audit {
  action: AuditAction;
  tenant: string;
  target?: string;
}

/**
 * Runs a command through the operator API of the gateway holding the
 * embedded database in DATA_DIR when one runs (`read` turns its answer into
 * what `direct` returns; that API audits it), else `direct` on the
 * database, appending the change's audit row (actor `cli`) when `audit` names one.
 */
async function operate<T>(
  io: CliIo,
  route: { method: Method; path: string; body?: unknown },
  read: (response: Response, gateway: RunningGateway) => Promise<T>,
  direct: (context: TenantContext) => Promise<T>,
  audit?: Audit & { after?: (answer: T) => CommandAuditNote },
): Promise<T> {
  const loaded = loadConfig(io);
  const { config } = loaded;
  const { operatorRequest, runningGateway } = await import('./gateway.ts');
  const gateway = runningGateway(io, config);
  if (!gateway && !audit) return withTenants(io, direct, loaded);
  if (!gateway && audit) {
    const { auditedCommand } = await import('./database.ts');
    return withTenants(
      io,
      (context) =>
        auditedCommand(io, context.database.db, audit, async (note) => {
          const answer = await direct(context);
          Object.assign(note, audit.after?.(answer));
          return answer;
        }),
      loaded,
    );
  }
  return read(await operatorRequest(gateway!, config, route.method, route.path, { body: route.body }), gateway!);
}

/** The answer of a route that answers JSON, checked with the operator API's schema for it. */
const json =
  <S extends v.GenericSchema>(schema: S) =>
  async (response: Response, gateway: RunningGateway): Promise<v.InferOutput<S>> =>
    (await import('./gateway.ts')).answerOf(gateway, response, schema);
/** A route that answers 204. */
const nothing = async () => {};
const at = (...segments: string[]) => segments.map((segment) => `/${encodeURIComponent(segment)}`).join('');

/** Prints a 204's nothing with --json, else a line for a person. */
function done(io: CliIo, args: ParsedArgs, text: string): void {
  if (!args.json) io.out(text);
}

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;

// ── Tenants ─────────────────────────────────────────────────────────────────

const create: OperatorCommand = {
  path: ['tenants', 'create'],
  args: [
    { name: 'id', help: 'the new tenant id: 1–40 lowercase letters, digits and hyphens' },
    { name: 'name', help: 'its name, shown to the operator (quote it if it has spaces)' },
  ],
  json: true,
  summary: 'Create a tenant.',
  route: 'POST /api/admin/v1/tenants',
  details: ['Then give it an API key (`linkgate tenants keys create`), a context secret if its bot signs link URLs itself, its provider apps and its webhook.'],
  async run(args, io) {
    const { CreateTenantBody, TenantAnswer, tenantAnswer } = await admin();
    const body = (await parseInput())(CreateTenantBody, { id: args.positionals[0], name: args.positionals[1] });
    const answer = await operate(io, { method: 'POST', path: '/tenants', body }, json(TenantAnswer), async ({ tenants }) => tenantAnswer(await tenants.create(body.id, body.name)), { action: 'tenant.create', tenant: body.id, after: () => ({ detail: { name: body.name } }) });
    print(io, args, answer, () => `created tenant ${answer.id} (${answer.name})\nnext: linkgate tenants keys create ${answer.id} <name>\n`);
    return EXIT.ok;
  },
};

const list: OperatorCommand = {
  path: ['tenants', 'list'],
  args: [],
  json: true,
  summary: 'List the tenants, `default` included.',
  route: 'GET /api/admin/v1/tenants',
  async run(args, io) {
    const { TenantsAnswer, tenantAnswer } = await admin();
    const answer = await operate(io, { method: 'GET', path: '/tenants' }, json(TenantsAnswer), async ({ tenants }) => ({ tenants: (await tenants.list()).map(tenantAnswer) }));
    print(io, args, answer, () => table(['ID', 'NAME', 'CREATED'], answer.tenants.map((t) => [t.id, t.name, t.createdAt])));
    return EXIT.ok;
  },
};

const show: OperatorCommand = {
  path: ['tenants', 'show'],
  args: [TENANT_ARG],
  json: true,
  summary: 'Show a tenant: its webhook URL and how many API keys and context secrets it has.',
  route: 'GET /api/admin/v1/tenants/:tenant',
  details: ['Exits with 3 when there is no such tenant.'],
  async run(args, io) {
    const { TenantDetailAnswer, TenantParams, tenantDetail } = await admin();
    const { tenant } = (await parseInput())(TenantParams, { tenant: args.positionals[0] });
    const answer = await operate(io, { method: 'GET', path: `/tenants${at(tenant)}` }, json(TenantDetailAnswer), ({ tenants }) => tenantDetail(tenants, tenant));
    print(io, args, answer, () =>
      fields([
        ['id', answer.id],
        ['name', answer.name],
        ['createdAt', answer.createdAt],
        ['webhookUrl', answer.webhookUrl ?? '-'],
        ['userProvider', answer.userProvider ?? '-'],
        ['apiKeys', String(answer.apiKeys)],
        ['contextSecrets', String(answer.contextSecrets)],
      ]),
    );
    return EXIT.ok;
  },
};

const remove: OperatorCommand = {
  path: ['tenants', 'delete'],
  args: [TENANT_ARG],
  json: true,
  summary: 'Delete a tenant with all its links and settings.',
  route: 'DELETE /api/admin/v1/tenants/:tenant',
  details: [
    'Every link of the tenant is unlinked first, revoked at the provider where it can be (best effort, as `links delete`), then its flows, used contexts, webhook log, providers\' stored keys, API keys, context secrets, provider apps and webhook are removed. `default` cannot be deleted. There is no undo. With --json it prints nothing, as the API answers 204.',
  ],
  async run(args, io) {
    const { TenantParams } = await admin();
    const { tenant } = (await parseInput())(TenantParams, { tenant: args.positionals[0] });
    const { deleteTenant } = await import('../core/tenant-deletion.ts');
    const { createLinkStore } = await import('../core/links.ts');
    const { createKeyring, createUserIdHasher } = await import('../core/crypto.ts');
    // The route answers 204 with the count in a header (absent from a gateway older than this command).
    const unlinkedOf = async (response: Response) => {
      const header = response.headers.get('linkgate-unlinked');
      return { unlinked: header !== null && /^\d+$/.test(header) ? Number(header) : undefined };
    };
    const { unlinked } = await operate(io, { method: 'DELETE', path: `/tenants${at(tenant)}` }, unlinkedOf, async ({ config, database, tenants, logger, providers }) =>
      deleteTenant(
        {
          db: database.db,
          tenants,
          links: createLinkStore(database.db, createKeyring(config.encryptionKeys), { webhookEvents: config.webhook !== undefined }),
          providers: await providers(),
          hashUserId: createUserIdHasher(config.userIdHashSalt),
          now: io.now,
        },
        tenant,
        logger,
      ),
      { action: 'tenant.delete', tenant, after: (a) => ({ detail: { unlinked: a.unlinked ?? null } }) });
    done(io, args, `deleted tenant ${tenant} and everything it had${unlinked === undefined ? '' : ` (${plural(unlinked, 'link')} unlinked)`}\n`);
    return EXIT.ok;
  },
};

// ── API keys ────────────────────────────────────────────────────────────────

const keysCreate: OperatorCommand = {
  path: ['tenants', 'keys', 'create'],
  args: [TENANT_ARG, { name: 'name', help: 'what the key is for, shown in the list (e.g. production)' }],
  json: true,
  summary: 'Create a bot API key for a tenant and print it, this once.',
  route: 'POST /api/admin/v1/tenants/:tenant/api-keys',
  details: ['Only its digest is stored: copy the key now, it cannot be shown again. The bot sends it as `Authorization: Bearer <key>`; it names the tenant.'],
  async run(args, io) {
    const { CreateApiKeyBody, CreatedApiKeyAnswer, TenantParams, createdApiKeyAnswer } = await admin();
    const parse = await parseInput();
    const { tenant } = parse(TenantParams, { tenant: args.positionals[0] });
    const body = parse(CreateApiKeyBody, { name: args.positionals[1] });
    const answer = await operate(io, { method: 'POST', path: `/tenants${at(tenant)}/api-keys`, body }, json(CreatedApiKeyAnswer), async ({ tenants }) => createdApiKeyAnswer(await tenants.createApiKey(tenant, body.name)), { action: 'api_key.create', tenant, after: (a) => ({ target: `api_key:${a.id}`, detail: { name: a.name } }) });
    print(io, args, answer, () => `created API key ${answer.id} (${answer.name}) for tenant ${tenant}:\n\n  ${answer.key}\n\nThis is the only time it is shown: store it with the bot now.\n`);
    return EXIT.ok;
  },
};

const keysList: OperatorCommand = {
  path: ['tenants', 'keys', 'list'],
  args: [TENANT_ARG],
  json: true,
  summary: "List a tenant's API keys, never the keys themselves.",
  route: 'GET /api/admin/v1/tenants/:tenant/api-keys',
  async run(args, io) {
    const { ApiKeysAnswer, TenantParams, apiKeyAnswer } = await admin();
    const { tenant } = (await parseInput())(TenantParams, { tenant: args.positionals[0] });
    const answer = await operate(io, { method: 'GET', path: `/tenants${at(tenant)}/api-keys` }, json(ApiKeysAnswer), async ({ tenants }) => ({ apiKeys: (await tenants.listApiKeys(tenant)).map(apiKeyAnswer) }));
    print(io, args, answer, () =>
      answer.apiKeys.length === 0
        ? `tenant ${tenant} has no API keys stored here${tenant === DEFAULT_TENANT ? " (the environment's LINKGATE_API_KEYS are its keys too)" : ''}\n`
        : table(['ID', 'NAME', 'CREATED', 'LAST USED'], answer.apiKeys.map((k) => [k.id, k.name, k.createdAt, k.lastUsedAt ?? 'never'])),
    );
    return EXIT.ok;
  },
};

const keysDelete: OperatorCommand = {
  path: ['tenants', 'keys', 'delete'],
  args: [TENANT_ARG, { name: 'id', help: 'the key id, key_…, as `tenants keys list` shows it' }],
  json: true,
  summary: 'Revoke a bot API key.',
  route: 'DELETE /api/admin/v1/tenants/:tenant/api-keys/:id',
  details: ['It stops working at once on every instance on PostgreSQL (they are notified), within a minute at most should one miss it. Exits with 3 when the tenant has no such key. With --json it prints nothing, as the API answers 204.'],
  async run(args, io) {
    const { ApiKeyParams } = await admin();
    const { tenant, id } = (await parseInput())(ApiKeyParams, { tenant: args.positionals[0], id: args.positionals[1] });
    const { LinkgateError } = await import('../core/errors.ts');
    await operate(io, { method: 'DELETE', path: `/tenants${at(tenant)}/api-keys${at(id)}` }, nothing, async ({ tenants }) => {
      if (!(await tenants.deleteApiKey(tenant, id))) throw new LinkgateError('not_found', 'this tenant has no API key with this id');
    }, { action: 'api_key.revoke', tenant, target: `api_key:${id}` });
    done(io, args, `revoked API key ${id} of tenant ${tenant}\n`);
    return EXIT.ok;
  },
};

// ── Link-context secrets ────────────────────────────────────────────────────

const secretsCreate: OperatorCommand = {
  path: ['tenants', 'secrets', 'create'],
  args: [TENANT_ARG],
  json: true,
  summary: 'Create a link-context secret for a tenant and print it, this once.',
  route: 'POST /api/admin/v1/tenants/:tenant/context-secrets',
  details: [
    'A bot that signs its own link URLs signs them with it; the gateway signs the URLs it makes with the newest. To rotate: create a new one, move the bot to it, then retire the old one. It is stored sealed and never shown again.',
  ],
  async run(args, io) {
    const { CreatedContextSecretAnswer, TenantParams, createdContextSecretAnswer } = await admin();
    const { tenant } = (await parseInput())(TenantParams, { tenant: args.positionals[0] });
    const answer = await operate(io, { method: 'POST', path: `/tenants${at(tenant)}/context-secrets` }, json(CreatedContextSecretAnswer), async ({ tenants }) => createdContextSecretAnswer(await tenants.createContextSecret(tenant)), { action: 'context_secret.create', tenant, after: (a) => ({ target: `context_secret:${a.id}` }) });
    print(io, args, answer, () => `created context secret ${answer.id} for tenant ${tenant}:\n\n  ${answer.secret}\n\nThis is the only time it is shown: give it to the bot now.\n`);
    return EXIT.ok;
  },
};

const secretsList: OperatorCommand = {
  path: ['tenants', 'secrets', 'list'],
  args: [TENANT_ARG],
  json: true,
  summary: "List a tenant's active context secrets, by id only.",
  route: 'GET /api/admin/v1/tenants/:tenant/context-secrets',
  async run(args, io) {
    const { ContextSecretsAnswer, TenantParams, contextSecretAnswer } = await admin();
    const { tenant } = (await parseInput())(TenantParams, { tenant: args.positionals[0] });
    const answer = await operate(io, { method: 'GET', path: `/tenants${at(tenant)}/context-secrets` }, json(ContextSecretsAnswer), async ({ tenants }) => ({ contextSecrets: (await tenants.listContextSecrets(tenant)).map(contextSecretAnswer) }));
    print(io, args, answer, () =>
      answer.contextSecrets.length === 0
        ? `tenant ${tenant} has no active context secrets stored here\n`
        : table(['ID', 'CREATED'], answer.contextSecrets.map((s) => [s.id, s.createdAt])),
    );
    return EXIT.ok;
  },
};

const secretsRetire: OperatorCommand = {
  path: ['tenants', 'secrets', 'retire'],
  args: [TENANT_ARG, { name: 'id', help: 'the secret id, cs_…, as `tenants secrets list` shows it' }],
  json: true,
  summary: 'Retire a context secret: link URLs signed with it are refused from now on.',
  route: 'DELETE /api/admin/v1/tenants/:tenant/context-secrets/:id',
  details: ['Exits with 3 when the tenant has no active secret with this id. With --json it prints nothing, as the API answers 204.'],
  async run(args, io) {
    const { ContextSecretParams } = await admin();
    const { tenant, id } = (await parseInput())(ContextSecretParams, { tenant: args.positionals[0], id: args.positionals[1] });
    const { LinkgateError } = await import('../core/errors.ts');
    await operate(io, { method: 'DELETE', path: `/tenants${at(tenant)}/context-secrets${at(id)}` }, nothing, async ({ tenants }) => {
      if (!(await tenants.retireContextSecret(tenant, id))) throw new LinkgateError('not_found', 'this tenant has no active context secret with this id');
    }, { action: 'context_secret.retire', tenant, target: `context_secret:${id}` });
    done(io, args, `retired context secret ${id} of tenant ${tenant}\n`);
    return EXIT.ok;
  },
};

// ── Provider apps ───────────────────────────────────────────────────────────

const providersList: OperatorCommand = {
  path: ['tenants', 'providers', 'list'],
  args: [TENANT_ARG],
  json: true,
  summary: "List a tenant's providers and whether each is configured.",
  route: 'GET /api/admin/v1/tenants/:tenant/providers',
  async run(args, io) {
    const { TenantParams, TenantProvidersAnswer, tenantProviders } = await admin();
    const { tenant } = (await parseInput())(TenantParams, { tenant: args.positionals[0] });
    const answer = await operate(io, { method: 'GET', path: `/tenants${at(tenant)}/providers` }, json(TenantProvidersAnswer), async ({ tenants, providers }) => tenantProviders(tenants, await providers(), tenant));
    print(io, args, answer, () => table(['ID', 'NAME', 'CONFIGURED'], answer.providers.map((p) => [p.id, p.displayName, p.configured ? 'yes' : `no (missing ${p.missing ?? '-'})`])));
    return EXIT.ok;
  },
};

/** `NAME=value` arguments as an object; a mistake is named by its position or name, never by its value. */
function variables(words: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  words.forEach((word, i) => {
    const at = word.indexOf('=');
    if (at <= 0) throw new CliError(EXIT.usage, 'usage', `variable ${i + 1} must be NAME=value (e.g. DISCORD_CLIENT_ID=…)`);
    const name = word.slice(0, at);
    if (Object.hasOwn(env, name)) throw new CliError(EXIT.usage, 'usage', `${name} is given twice`);
    env[name] = word.slice(at + 1);
  });
  return env;
}

const providersSet: OperatorCommand = {
  path: ['tenants', 'providers', 'set'],
  args: [TENANT_ARG, { name: 'provider', help: 'a provider id: a module (discord) or a name of the OIDC family (corp)' }],
  rest: { name: 'NAME=value', help: 'the variables the provider reads, as a single-tenant deployment sets them' },
  options: { 'env-stdin': { type: 'boolean', help: 'also read NAME=value lines from standard input (keeps secrets out of the command line)' } },
  json: true,
  summary: "Configure a tenant's app at a provider.",
  route: 'PUT /api/admin/v1/tenants/:tenant/providers/:provider',
  details: [
    'Give exactly the variables the provider reads from the environment in a single-tenant deployment; they replace the previous configuration as a new version (links made with an older one keep refreshing with it). The provider module checks them and starts once with them before anything is stored: a name it does not read, a bad value or a missing variable is refused, naming the variable and never its value. Secret values are shown masked. Prefer --env-stdin for secrets: arguments are visible to other users of this machine.',
  ],
  async run(args, io) {
    const { ProviderConfigAnswer, ProviderConfigBody, TenantProviderParams, configureProvider, environmentOnly } = await admin();
    const parse = await parseInput();
    const { tenant, provider } = parse(TenantProviderParams, { tenant: args.positionals[0], provider: args.positionals[1] });
    if (tenant === DEFAULT_TENANT) throw environmentOnly('providers');
    const words = args.positionals.slice(2);
    if (args.values['env-stdin'] === true) words.push(...(await io.readStdin()).split(/\r?\n/).filter((line) => line.trim() !== '' && !line.trimStart().startsWith('#')));
    const { env } = parse(ProviderConfigBody, { env: variables(words) });
    const answer = await operate(io, { method: 'PUT', path: `/tenants${at(tenant, 'providers', provider)}`, body: { env } }, json(ProviderConfigAnswer), async ({ config, tenants, providers }) => configureProvider({ tenants, providers: await providers(), publicBaseUrl: config.publicBaseUrl }, tenant, provider, env), { action: 'provider.configure', tenant, target: `provider:${provider}`, after: (a) => ({ detail: { variables: Object.keys(env).sort(), version: a.version } }) });
    print(io, args, answer, () =>
      [`configured ${answer.displayName} for tenant ${tenant} (version ${answer.version}):`, ...Object.entries(answer.env).map(([name, value]) => `  ${name}=${value}`), ''].join('\n'),
    );
    return EXIT.ok;
  },
};

const providersRemove: OperatorCommand = {
  path: ['tenants', 'providers', 'remove'],
  args: [TENANT_ARG, { name: 'provider', help: 'the provider id' }],
  json: true,
  summary: 'Stop offering a provider in a tenant.',
  route: 'DELETE /api/admin/v1/tenants/:tenant/providers/:provider',
  details: ['No new links are made with it; links it made keep refreshing with their version. Exits with 3 when the tenant has no configuration for it. With --json it prints nothing, as the API answers 204.'],
  async run(args, io) {
    const { TenantProviderParams, environmentOnly } = await admin();
    const { tenant, provider } = (await parseInput())(TenantProviderParams, { tenant: args.positionals[0], provider: args.positionals[1] });
    if (tenant === DEFAULT_TENANT) throw environmentOnly('providers');
    const { LinkgateError } = await import('../core/errors.ts');
    await operate(io, { method: 'DELETE', path: `/tenants${at(tenant, 'providers', provider)}` }, nothing, async ({ tenants }) => {
      if (!(await tenants.removeProviderConfig(tenant, provider))) throw new LinkgateError('not_found', 'this tenant has no configuration for this provider');
    }, { action: 'provider.remove', tenant, target: `provider:${provider}` });
    done(io, args, `removed ${provider} from tenant ${tenant}\n`);
    return EXIT.ok;
  },
};

// ── Apps (OpenID clients, and the web-session allowlist) ────────────────────

/** The tenant's apps, as the server makes them (`createOpenIdApps`). */
async function appsOf(context: TenantContext, io: CliIo) {
  const { createOpenIdApps } = await import('../core/openid-storage.ts');
  const { createKeyring } = await import('../core/crypto.ts');
  return createOpenIdApps(context.database.db, createKeyring(context.config.encryptionKeys), io.now);
}

/** A list given as one argument: URLs separated by spaces, provider ids by commas or spaces. */
const words = (value: string | boolean | undefined, separator: RegExp): string[] | undefined =>
  typeof value === 'string' ? value.split(separator).filter((word) => word !== '') : undefined;

const appsCreate: OperatorCommand = {
  path: ['tenants', 'apps', 'create'],
  args: [TENANT_ARG, { name: 'name', help: 'its name, shown on the sign-in page (quote it if it has spaces)' }, { name: 'type', help: '"confidential" (a server that keeps a secret) or "public" (a browser or native app)' }],
  rest: { name: 'REDIRECT_URI', help: 'where people may come back to after signing in: 1–20 absolute URLs (https, or http on a loopback address)' },
  options: {
    'post-logout-redirect-uris': { type: 'string', value: 'URLS', help: 'where they may go after signing out: URLs separated by spaces (quote them)' },
    providers: { type: 'string', value: 'IDS', help: 'the providers its sign-in offers, separated by commas (default: all the tenant has)' },
    subject: { type: 'string', value: 'user|external', help: '"user" (default): sub is the user id; "external": the provider\'s account id' },
    'legacy-jwt-secret-stdin': {
      type: 'boolean',
      help: 'read a legacy JWT secret from the first line of standard input: LoginService then answers HS256 JWTs signed with it (the old ATProto login service\'s JWT_SECRET); never given as an argument, which others on this machine could see',
    },
    'device-flow': { type: 'boolean', help: 'may use the device flow (a CLI or a bot); then it needs no redirect URI' },
    'third-party': { type: 'boolean', help: 'someone else\'s app: people see a consent page after signing in' },
  },
  json: true,
  summary: 'Register an app people sign in to, and print its client id and secret (this once).',
  route: 'POST /api/admin/v1/tenants/:tenant/apps',
  details: [
    'A confidential app gets a client secret: copy it now, it cannot be shown again. Its redirect URIs are also where the web-session API may send people after signing in (`postLoginRedirect`).',
  ],
  async run(args, io) {
    const { CreateAppBody, CreatedAppAnswer, TenantParams, createTenantApp } = await admin();
    const parse = await parseInput();
    const { tenant } = parse(TenantParams, { tenant: args.positionals[0] });
    const postLogout = words(args.values['post-logout-redirect-uris'], /\s+/);
    const providers = words(args.values.providers, /[\s,]+/);
    const legacyJwtSecret = args.values['legacy-jwt-secret-stdin'] === true ? ((await io.readStdin()).split(/\r?\n/)[0] ?? '').trim() : undefined;
    const body = parse(CreateAppBody, {
      name: args.positionals[1],
      type: args.positionals[2],
      redirectUris: args.positionals.slice(3),
      ...(postLogout ? { postLogoutRedirectUris: postLogout } : {}),
      ...(providers ? { providers } : {}),
      ...(typeof args.values.subject === 'string' ? { subject: args.values.subject } : {}),
      ...(legacyJwtSecret === undefined ? {} : { legacyJwtSecret }),
      ...(args.values['device-flow'] === true ? { deviceFlow: true } : {}),
      ...(args.values['third-party'] === true ? { firstParty: false } : {}),
    });
    const answer = await operate(io, { method: 'POST', path: `/tenants${at(tenant)}/apps`, body }, json(CreatedAppAnswer), async (context) =>
      createTenantApp({ tenants: context.tenants, providers: await context.providers(), apps: await appsOf(context, io) }, tenant, body),
      { action: 'app.create', tenant, after: (a) => ({ target: `app:${a.clientId}`, detail: { name: body.name, type: body.type, firstParty: body.firstParty, deviceFlow: body.deviceFlow } }) },
    );
    print(io, args, answer, () =>
      answer.clientSecret === undefined
        ? `created app ${answer.clientId} (${body.name}) for tenant ${tenant}\n`
        : `created app ${answer.clientId} (${body.name}) for tenant ${tenant}; its client secret:\n\n  ${answer.clientSecret}\n\nThis is the only time it is shown: store it with the app now.\n`,
    );
    return EXIT.ok;
  },
};

const appsList: OperatorCommand = {
  path: ['tenants', 'apps', 'list'],
  args: [TENANT_ARG],
  json: true,
  summary: "List a tenant's apps, never their secrets.",
  route: 'GET /api/admin/v1/tenants/:tenant/apps',
  async run(args, io) {
    const { AppsAnswer, TenantParams, tenantApps } = await admin();
    const { tenant } = (await parseInput())(TenantParams, { tenant: args.positionals[0] });
    const answer = await operate(io, { method: 'GET', path: `/tenants${at(tenant)}/apps` }, json(AppsAnswer), async (context) => tenantApps({ tenants: context.tenants, apps: await appsOf(context, io) }, tenant));
    print(io, args, answer, () =>
      answer.apps.length === 0
        ? `tenant ${tenant} has no apps\n`
        : table(
            ['CLIENT ID', 'NAME', 'TYPE', 'REDIRECT URIS', 'PROVIDERS', 'GRANTS'],
            answer.apps.map((a) => [
              a.clientId,
              a.name,
              a.type,
              a.redirectUris.join(' ') || '-',
              a.providers?.join(',') ?? 'all',
              [...(a.redirectUris.length > 0 ? ['code'] : []), ...(a.deviceFlow ? ['device'] : []), ...(a.firstParty ? [] : ['third-party'])].join(','),
            ]),
          ),
    );
    return EXIT.ok;
  },
};

const appsDelete: OperatorCommand = {
  path: ['tenants', 'apps', 'delete'],
  args: [TENANT_ARG, { name: 'clientId', help: 'the app\'s client id, app_…, as `tenants apps list` shows it' }],
  json: true,
  summary: 'Delete an app: its sign-ins and tokens stop working at once.',
  route: 'DELETE /api/admin/v1/tenants/:tenant/apps/:clientId',
  details: ['Its redirect URIs also stop being places the web-session API may send people. Exits with 3 when the tenant has no such app. With --json it prints nothing, as the API answers 204.'],
  async run(args, io) {
    const { AppParams, deleteTenantApp } = await admin();
    const { tenant, clientId } = (await parseInput())(AppParams, { tenant: args.positionals[0], clientId: args.positionals[1] });
    await operate(io, { method: 'DELETE', path: `/tenants${at(tenant)}/apps${at(clientId)}` }, nothing, async (context) => deleteTenantApp({ tenants: context.tenants, apps: await appsOf(context, io) }, tenant, clientId), {
      action: 'app.delete',
      tenant,
      target: `app:${clientId}`,
    });
    done(io, args, `deleted app ${clientId} of tenant ${tenant}\n`);
    return EXIT.ok;
  },
};

// ── Webhook ─────────────────────────────────────────────────────────────────

const webhookSet: OperatorCommand = {
  path: ['tenants', 'webhook', 'set'],
  args: [TENANT_ARG, { name: 'url', help: 'where its link events go: an absolute http(s) URL (https in production, except on loopback)' }],
  options: {
    'secret-stdin': { type: 'boolean', help: 'read the signing secret from standard input' },
    'secret-env': { type: 'string', value: 'VARIABLE', help: 'read the signing secret from this environment variable' },
  },
  json: true,
  summary: "Set where a tenant's link events go and the secret that signs them.",
  route: 'PUT /api/admin/v1/tenants/:tenant/webhook',
  details: [
    'The secret (32–512 characters) is never taken as an argument, where other users of this machine could see it: pipe it in with --secret-stdin (one trailing newline is dropped) or name a variable holding it with --secret-env. It is stored sealed and never printed.',
  ],
  async run(args, io) {
    const { TenantParams, WebhookAnswer, WebhookBody, environmentOnly, webhookEndpoint } = await admin();
    const parse = await parseInput();
    const { tenant } = parse(TenantParams, { tenant: args.positionals[0] });
    if (tenant === DEFAULT_TENANT) throw environmentOnly('webhook');
    const fromEnv = args.values['secret-env'];
    if ((args.values['secret-stdin'] === true) === (typeof fromEnv === 'string')) {
      throw new CliError(EXIT.usage, 'usage', 'give the webhook secret with exactly one of --secret-stdin or --secret-env VARIABLE');
    }
    let secret: string | undefined;
    if (typeof fromEnv === 'string') {
      secret = io.env[fromEnv];
      if (secret === undefined) throw new CliError(EXIT.usage, 'usage', `--secret-env: ${fromEnv} is not set`);
    } else {
      secret = (await io.readStdin()).replace(/\r?\n$/, '');
    }
    const body = parse(WebhookBody, { url: args.positionals[1], secret });
    const answer = await operate(io, { method: 'PUT', path: `/tenants${at(tenant)}/webhook`, body }, json(WebhookAnswer), async ({ config, tenants }) => {
      const endpoint = webhookEndpoint(body, config.nodeEnv === 'production');
      await tenants.putWebhook(tenant, endpoint);
      return { url: endpoint.url.href };
    }, { action: 'webhook.set', tenant, target: 'webhook', after: (a) => ({ detail: { origin: new URL(a.url).origin } }) });
    print(io, args, answer, () => `tenant ${tenant}'s link events go to ${answer.url}, signed with the secret given\n`);
    return EXIT.ok;
  },
};

const webhookRemove: OperatorCommand = {
  path: ['tenants', 'webhook', 'remove'],
  args: [TENANT_ARG],
  json: true,
  summary: "Stop sending a tenant's link events.",
  route: 'DELETE /api/admin/v1/tenants/:tenant/webhook',
  details: ['Exits with 3 when the tenant has no webhook. With --json it prints nothing, as the API answers 204.'],
  async run(args, io) {
    const { TenantParams, environmentOnly } = await admin();
    const { tenant } = (await parseInput())(TenantParams, { tenant: args.positionals[0] });
    if (tenant === DEFAULT_TENANT) throw environmentOnly('webhook');
    const { LinkgateError } = await import('../core/errors.ts');
    await operate(io, { method: 'DELETE', path: `/tenants${at(tenant)}/webhook` }, nothing, async ({ tenants }) => {
      if (!(await tenants.deleteWebhook(tenant))) throw new LinkgateError('not_found', 'this tenant has no webhook');
    }, { action: 'webhook.remove', tenant, target: 'webhook' });
    done(io, args, `tenant ${tenant} has no webhook any more\n`);
    return EXIT.ok;
  },
};

// ── OpenID signing keys ─────────────────────────────────────────────────────

/** The tenant's signing keys, on the database directly (what the gateway's providers use). */
async function signingKeysOf({ config, database }: TenantContext) {
  const { createSigningKeys } = await import('../core/openid-storage.ts');
  const { createKeyring } = await import('../core/crypto.ts');
  return createSigningKeys(database.db, createKeyring(config.encryptionKeys));
}

const signingKeysList: OperatorCommand = {
  path: ['tenants', 'signing-keys', 'list'],
  args: [TENANT_ARG],
  json: true,
  summary: "List the keys in a tenant's JWKS: the one signing its ID tokens, a next one, retired ones.",
  route: 'GET /api/admin/v1/tenants/:tenant/signing-keys',
  details: ['A tenant gets its first key on its first sign-in; until then the list is empty.'],
  async run(args, io) {
    const { SigningKeysAnswer, TenantParams, signingKeyAnswer } = await admin();
    const { tenant } = (await parseInput())(TenantParams, { tenant: args.positionals[0] });
    const answer = await operate(io, { method: 'GET', path: `/tenants${at(tenant)}/signing-keys` }, json(SigningKeysAnswer), async (context) => {
      await context.tenants.require(tenant);
      return { signingKeys: (await (await signingKeysOf(context)).list(tenant)).map(signingKeyAnswer) };
    });
    print(io, args, answer, () =>
      answer.signingKeys.length === 0
        ? `tenant ${tenant} has no signing key yet (it gets one on its first sign-in)\n`
        : table(['KID', 'STATE', 'SIGNS FROM', 'LEAVES THE JWKS'], answer.signingKeys.map((k) => [k.kid, k.state, k.signsFrom, k.expiresAt ?? '-'])),
    );
    return EXIT.ok;
  },
};

const signingKeysRotate: OperatorCommand = {
  path: ['tenants', 'signing-keys', 'rotate'],
  args: [TENANT_ARG],
  options: { 'publish-for': { type: 'string', value: 'SECONDS', help: 'how long the next key is published before it signs (default 3600; 0 signs at once)' } },
  json: true,
  summary: "Rotate a tenant's ID-token signing key.",
  route: 'POST /api/admin/v1/tenants/:tenant/signing-keys',
  details: [
    'The next key is published in the JWKS at once and signs after --publish-for seconds, so apps that cached the JWKS meet it before any token it signed. The key signing now retires then and stays in the JWKS an hour longer (an ID token\'s lifetime, plus five minutes), so its tokens keep verifying. Exits with 1 (key_rotation_pending) while a next key waits to sign.',
  ],
  async run(args, io) {
    const { RotateSigningKeyBody, SigningKeyAnswer, TenantParams, signingKeyAnswer } = await admin();
    const parse = await parseInput();
    const { tenant } = parse(TenantParams, { tenant: args.positionals[0] });
    const seconds = args.values['publish-for'];
    const body = parse(RotateSigningKeyBody, typeof seconds === 'string' ? { publishSeconds: /^\d+$/.test(seconds) ? Number(seconds) : seconds } : {});
    const answer = await operate(io, { method: 'POST', path: `/tenants${at(tenant)}/signing-keys`, body }, json(SigningKeyAnswer), async (context) => {
      await context.tenants.require(tenant);
      const key = await (await signingKeysOf(context)).rotate(tenant, body.publishSeconds);
      await context.tenants.announce(tenant);
      return signingKeyAnswer(key);
    }, { action: 'signing_key.rotate', tenant, after: (a) => ({ target: `signing_key:${a.kid}`, detail: { publishSeconds: body.publishSeconds, signsFrom: a.signsFrom } }) });
    print(io, args, answer, () => `tenant ${tenant}: key ${answer.kid} is published now and signs from ${answer.signsFrom}\n`);
    return EXIT.ok;
  },
};

/** The route a command mirrors opens its --help. */
const withRoute = ({ route, ...command }: OperatorCommand): Command => ({
  ...command,
  details: [
    `Does what the operator API's ${route} does: on the database directly, or through that route when a gateway runs on the embedded database in DATA_DIR (it needs LINKGATE_ADMIN_KEYS then); --json prints the answer that route gives.`,
    ...(command.details ?? []),
  ],
});

export const TENANT_COMMANDS: readonly Command[] = ([
  create,
  list,
  show,
  remove,
  keysCreate,
  keysList,
  keysDelete,
  secretsCreate,
  secretsList,
  secretsRetire,
  providersList,
  providersSet,
  providersRemove,
  appsCreate,
  appsList,
  appsDelete,
  webhookSet,
  webhookRemove,
  signingKeysList,
  signingKeysRotate,
] satisfies OperatorCommand[]).map(withRoute);
