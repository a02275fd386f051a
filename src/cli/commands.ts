/**
 * The `linkgate` commands: what each does, its arguments and its --help.
 * They reuse the server's own code (config, link store, unlink, reencrypt,
 * link contexts) rather than repeating it.
 */
import { GENERATED_SECRETS, generateSecret, type Config } from '../config.ts';
import { createKeyring, createUserIdHasher } from '../core/crypto.ts';
import { LinkgateError } from '../core/errors.ts';
import { ProviderId, UserId, userNameSchema } from '../core/ids.ts';
import { DEFAULT_TENANT } from '../core/link-context.ts';
import type { Link, LinkKey } from '../core/links.ts';
import type { Revocation } from '../core/unlink.ts';
import { describeNeeds } from '../registry.ts';
import { argument, CliError, EXIT, type CliIo, type Command, type ParsedArgs } from './cli.ts';
import { print, table } from './output.ts';
import { cliLogger, loadConfig } from './runtime.ts';
import { CONSOLE_COMMANDS } from './console.ts';
import { TENANT_COMMANDS } from './tenants.ts';
import { mcpCommand } from './mcp.ts';

// Loaded by the commands that use them, so `--help`, `secrets generate` and `keys rotate` start at once.
const databaseModule = () => import('./database.ts');
const linkStore = () => import('../core/links.ts');
const gatewayModule = () => import('./gateway.ts');

const tenant = DEFAULT_TENANT;

const USER_ARG = { name: 'userId', help: "the bot's id for its user (letters, digits and ._:@+=-)" };
const PROVIDER_ARG = { name: 'provider', help: 'a provider id, as `linkgate providers` lists them' };

function linkKey(args: ParsedArgs) {
  return { tenant, userId: argument(UserId, args.positionals[0]!), provider: argument(ProviderId, args.positionals[1]!) };
}

const notLinked = (provider: string) => new LinkgateError('not_linked', `this user has no ${provider} link`, { provider });

/** The bot API's answers, as the gateway's routes are checked against them (valibot at the boundary). */
const apiAnswers = () => import('../http/openapi.ts');

const linkPath = (key: LinkKey) => `/users/${encodeURIComponent(key.userId)}/links/${encodeURIComponent(key.provider)}`;

/** A link the gateway answered not to have: not linked, or a provider it does not offer (where the database would say "no link" too). */
const orNotLinked = (provider: string) => (status: number, error: { code: string } | undefined) =>
  status === 404 || error?.code === 'provider_unconfigured' ? new CliError(EXIT.notFound, 'not_linked', notLinked(provider).message) : undefined;

const migrate: Command = {
  path: ['migrate'],
  args: [],
  json: true,
  summary: 'Apply the database migrations that have not run yet.',
  details: [
    'The server migrates at start-up too; run this to prepare a database ahead of a deployment. On PostgreSQL several instances may migrate at once (one waits for the other). While the server runs on the embedded database in DATA_DIR, it says so: the server migrated it before it became ready.',
  ],
  async run(args, io) {
    const { config } = loadConfig(io);
    const { migrationCount, migrationState, withDatabase } = await databaseModule();
    const gateway = (await gatewayModule()).runningGateway(io, config);
    if (gateway) {
      // It migrated before it started serving: ready means up to date.
      const ready = await fetch(new URL('/readyz', gateway.url), { signal: AbortSignal.timeout(10_000) }).then((r) => r.status === 200, () => false);
      if (!ready) throw new CliError(EXIT.failure, 'not_ready', `${gateway.describe} is not ready (GET /readyz): see its log; stop it to run this command on the database directly`);
      const total = migrationCount();
      const result = { database: 'pglite' as const, applied: 0, total };
      print(io, args, result, () => `${gateway.describe} migrated the embedded database at start-up; it is up to date (${total} of ${total})\n`);
      return EXIT.ok;
    }
    const { auditedCommand } = await databaseModule();
    const result = await withDatabase(io, config, async (database) => {
      const before = await migrationState(database);
      await database.migrate();
      const after = await migrationState(database);
      const applied = after.applied - before.applied;
      // Recorded once the audit table exists (a first migration creates it); nothing applied is no change.
      if (applied > 0) await auditedCommand(io, database.db, { action: 'database.migrate', tenant: null, target: 'database' }, async (note) => (note.detail = { applied, total: after.total }));
      return { database: database.kind, applied, total: after.total };
    });
    print(io, args, result, () =>
      `applied ${result.applied} migration${result.applied === 1 ? '' : 's'} to the ${result.database === 'pglite' ? 'embedded' : 'PostgreSQL'} database; it is up to date (${result.total} of ${result.total})\n`,
    );
    return EXIT.ok;
  },
};

const secretsGenerate: Command = {
  path: ['secrets', 'generate'],
  args: [],
  json: true,
  summary: 'Print fresh secrets for a new deployment, in .env format.',
  details: [
    `Prints new values for ${GENERATED_SECRETS.join(', ')}. Nothing is read or stored: redirect the output into your secrets file (\`linkgate secrets generate >> .env\`) and keep it secret. Back LINKGATE_ENCRYPTION_KEYS up: stored links cannot be read without it.`,
  ],
  async run(args, io) {
    const secrets = Object.fromEntries(GENERATED_SECRETS.map((name) => [name, generateSecret(name)]));
    print(io, args, secrets, () =>
      [`# Linkgate secrets generated ${new Date(io.now()).toISOString()}. Keep them secret; back LINKGATE_ENCRYPTION_KEYS up.`, ...Object.entries(secrets).map(([k, value]) => `${k}=${value}`), ''].join('\n'),
    );
    return EXIT.ok;
  },
};

const keysRotate: Command = {
  path: ['keys', 'rotate'],
  args: [],
  options: { reencrypt: { type: 'boolean', help: 're-seal every stored value under the first configured key instead (step 2)' } },
  json: true,
  summary: 'Rotate the credential encryption key.',
  details: [
    'Step 1, `linkgate keys rotate`: prints LINKGATE_ENCRYPTION_KEYS with a new key in front of the configured ones. Nothing is stored: set that value on every instance and restart them (new data is sealed with the new key; old data still opens with the old ones).',
    'Step 2, `linkgate keys rotate --reencrypt`: re-seals every stored credential, flow and key-value entry under the first configured key, and names the older keys, which can then be dropped (step 3). Safe while the server runs on PostgreSQL; with the embedded database, stop the server first (the command refuses while it runs: the API has no equivalent).',
  ],
  async run(args, io) {
    const loaded = loadConfig(io);
    const { config } = loaded;
    if (args.values.reencrypt) {
      const { refuse, runningGateway } = await gatewayModule();
      const gateway = runningGateway(io, config);
      if (gateway) throw refuse(gateway, 're-sealing every stored value needs the database itself (the gateway has no API for it)', 'keys rotate --reencrypt');
      const { auditedCommand, requireMigrated, withDatabase } = await databaseModule();
      const { reencryptAll } = await import('../core/reencrypt.ts');
      const report = await withDatabase(io, config, async (database) => {
        await requireMigrated(database);
        return auditedCommand(io, database.db, { action: 'keys.reencrypt', tenant: null, target: 'database' }, async (note) => {
          const done = await reencryptAll(database.db, createKeyring(config.encryptionKeys));
          note.detail = { primaryKid: config.encryptionKeys[0]!.kid, reencrypted: Object.values(done).reduce((n, r) => n + r.reencrypted, 0) };
          return done;
        });
      });
      const [primary, ...older] = config.encryptionKeys.map((k) => k.kid);
      // Values it had to leave (a link being refreshed at that moment) still need an older key.
      const left = Object.values(report).reduce((n, r) => n + Number('left' in r ? r.left : 0), 0);
      // Values no configured key opens: they stay as they are, and dropping a key will not make them readable either.
      const unreadable = Object.values(report).reduce((n, r) => n + Number('unreadable' in r ? r.unreadable : 0), 0);
      print(io, args, { primaryKid: primary, ...report, olderKids: older }, () =>
        [
          `re-sealed under ${primary}: ${Object.entries(report).map(([table, r]) => `${table} ${r.reencrypted} of ${r.scanned}`).join(', ')} (the others already were)`,
          ...(unreadable > 0
            ? [`${unreadable} stored value${unreadable === 1 ? '' : 's'} opened with none of the configured keys (sealed with a key no longer configured, or altered) and ${unreadable === 1 ? 'was' : 'were'} left as ${unreadable === 1 ? 'it was' : 'they were'}: ${Object.entries(report).filter(([, r]) => r.unreadable > 0).map(([table, r]) => `${table} ${r.unreadable}`).join(', ')}`]
            : []),
          left > 0
            ? `${left} value${left === 1 ? ' was' : 's were'} being written meanwhile and still need${left === 1 ? 's' : ''} an older key: run this again before dropping one`
            : older.length > 0
              ? `every stored value now opens with ${primary}: remove ${older.join(', ')} from LINKGATE_ENCRYPTION_KEYS once every instance runs with ${primary} first`
              : 'only one key is configured: nothing to drop',
          '',
        ].join('\n'),
      );
      return EXIT.ok;
    }
    const kids = config.encryptionKeys.map((k) => k.kid);
    const fresh = generateSecret('LINKGATE_ENCRYPTION_KEYS');
    const at = fresh.indexOf(':');
    // The generated id is the date: a second rotation on one day needs another.
    let kid = fresh.slice(0, at);
    for (let n = 2; kids.includes(kid); n += 1) kid = `${fresh.slice(0, at)}-${n}`;
    const configured = (loaded.env.LINKGATE_ENCRYPTION_KEYS ?? '').split(',').map((k) => k.trim()).filter(Boolean);
    const value = [`${kid}${fresh.slice(at)}`, ...configured].join(',');
    print(io, args, { LINKGATE_ENCRYPTION_KEYS: value, kid, previousKids: kids }, () => `LINKGATE_ENCRYPTION_KEYS=${value}\n`);
    io.err(`linkgate: set this LINKGATE_ENCRYPTION_KEYS on every instance and restart them, then run \`linkgate keys rotate --reencrypt\`\n`);
    return EXIT.ok;
  },
};

const providers: Command = {
  path: ['providers'],
  args: [],
  json: true,
  summary: 'List the providers and whether each is configured.',
  details: ['An unconfigured provider names the variables it still needs. While the server runs on the embedded database in DATA_DIR, the list is what it offers (GET /api/v1/providers).'],
  async run(args, io) {
    const loaded = loadConfig(io);
    const { loadRegistryWithoutDatabase } = await databaseModule();
    const registry = await loadRegistryWithoutDatabase(io, loaded, cliLogger(io, loaded.config));
    let list = registry.list().map((p) => ({ id: p.id, displayName: p.displayName, configured: p.instance !== undefined, missing: p.missing, needs: p.needs }));
    const { answerOf, botRequest, runningGateway } = await gatewayModule();
    const gateway = runningGateway(io, loaded.config);
    if (gateway) {
      // What the running gateway offers; what an unconfigured one still needs is read from the configuration, as above.
      const answer = await answerOf(gateway, await botRequest(gateway, loaded.config, 'GET', '/providers'), (await apiAnswers()).ProvidersAnswer);
      list = answer.providers.map((p) => {
        const here = list.find((l) => l.id === p.id);
        return { ...p, missing: p.configured ? [] : (here?.missing ?? []), needs: p.configured ? [] : (here?.needs ?? []) };
      });
    }
    print(io, args, { providers: list }, () =>
      table(
        ['ID', 'NAME', 'CONFIGURED'],
        list.map((p) => [p.id, p.displayName, p.configured ? 'yes' : `no (missing ${describeNeeds(p.needs)})`]),
      ),
    );
    return EXIT.ok;
  },
};

const linkUrl: Command = {
  path: ['link-url'],
  args: [USER_ARG, PROVIDER_ARG],
  options: {
    'return-to': { type: 'string', value: 'URL', help: 'where to send the browser afterwards (its origin must be in LINKGATE_RETURN_TO_ORIGINS)' },
    'user-name': { type: 'string', value: 'NAME', help: "the bot's display name for the user, shown on the confirmation page" },
  },
  json: true,
  summary: 'Print a link URL for a user, signed here with OAUTH_CONTEXT_SIGNING_SECRET.',
  details: [
    'The same link as POST /api/v1/link-urls gives, valid for OAUTH_CONTEXT_TTL_SECONDS and usable once; anyone holding it can link their account to this user, so hand it to that user only. While the server runs on the embedded database in DATA_DIR, that server signs it (POST /api/v1/link-urls).',
  ],
  async run(args, io) {
    const { userId, provider: providerId } = linkKey(args);
    const returnToValue = args.values['return-to'];
    const userNameValue = args.values['user-name'];
    const userName = typeof userNameValue === 'string' ? argument(userNameSchema('--user-name'), userNameValue) : undefined;
    const loaded = loadConfig(io);
    const { config } = loaded;
    const { answerOf, botRequest, runningGateway } = await gatewayModule();
    const gateway = runningGateway(io, config);
    if (gateway) {
      // Signed by the running gateway, with the secret it verifies with.
      const body = { userId, provider: providerId, ...(typeof returnToValue === 'string' ? { returnTo: returnToValue } : {}), ...(userName ? { userName } : {}) };
      const answer = await answerOf(gateway, await botRequest(gateway, config, 'POST', '/link-urls', { body }), (await apiAnswers()).LinkUrlAnswer);
      print(io, args, answer, () => `${answer.url}\n`);
      return EXIT.ok;
    }
    const { checkReturnTo, createLinkUrl } = await import('../core/link-context.ts');
    const returnTo = typeof returnToValue === 'string' ? checkReturnTo(returnToValue, config.returnToOrigins) : undefined;
    const { loadRegistryWithoutDatabase } = await databaseModule();
    const registry = await loadRegistryWithoutDatabase(io, loaded, cliLogger(io, config));
    const provider = registry.get(providerId);
    if (!provider) throw new LinkgateError('unknown_provider', `there is no provider called "${providerId}"`);
    if (!provider.instance) {
      throw new LinkgateError('provider_unconfigured', `${provider.displayName} is not configured (missing ${describeNeeds(provider.needs)})`);
    }
    const { url, expiresAt } = await createLinkUrl(
      { userId, provider: providerId, tenant, ...(returnTo ? { returnTo } : {}), ...(userName ? { userName } : {}) },
      { secret: config.contextSigningSecret, ttlSeconds: config.contextTtlSeconds, publicBaseUrl: config.publicBaseUrl, now: io.now() },
    );
    print(io, args, { url, expiresAt: expiresAt.toISOString() }, () => `${url}\n`);
    return EXIT.ok;
  },
};

function linkText(link: Link): string {
  const rows: [string, string][] = [
    ['userId', link.userId],
    ['provider', link.provider],
    ['externalId', link.externalId],
    ['externalName', link.externalName ?? '-'],
    ['status', link.status],
    ['scopes', link.scopes.join(' ') || '-'],
    ['linkedAt', link.linkedAt],
    ['updatedAt', link.updatedAt],
    ['expiresAt', link.expiresAt ?? '-'],
  ];
  return rows.map(([k, value]) => `${`${k}:`.padEnd(14)}${value}`).join('\n') + '\n';
}

/** A user's links: from the gateway holding the embedded database, else from the database. */
async function readLinks(io: CliIo, config: Config, userId: string): Promise<Link[]> {
  const { answerOf, botRequest, runningGateway } = await gatewayModule();
  const gateway = runningGateway(io, config);
  if (gateway) return (await answerOf(gateway, await botRequest(gateway, config, 'GET', `/users/${encodeURIComponent(userId)}/links`), (await apiAnswers()).LinksAnswer)).links;
  const { requireMigrated, withDatabase } = await databaseModule();
  const { createLinkStore, toApiLink } = await linkStore();
  const rows = await withDatabase(io, config, async (database) => {
    await requireMigrated(database);
    return createLinkStore(database.db, createKeyring(config.encryptionKeys)).list(tenant, userId);
  });
  return rows.map(toApiLink);
}

/** One link, the same way; a missing one is `not_linked` (exit 3). */
async function readLink(io: CliIo, config: Config, key: LinkKey): Promise<Link> {
  const { answerOf, botRequest, runningGateway } = await gatewayModule();
  const gateway = runningGateway(io, config);
  if (gateway) return answerOf(gateway, await botRequest(gateway, config, 'GET', linkPath(key), { failure: orNotLinked(key.provider) }), (await apiAnswers()).LinkAnswer);
  const { requireMigrated, withDatabase } = await databaseModule();
  const { createLinkStore, toApiLink } = await linkStore();
  const row = await withDatabase(io, config, async (database) => {
    await requireMigrated(database);
    return createLinkStore(database.db, createKeyring(config.encryptionKeys)).get(key);
  });
  if (!row) throw notLinked(key.provider);
  return toApiLink(row);
}

const linksList: Command = {
  path: ['links', 'list'],
  args: [USER_ARG],
  json: true,
  summary: "List a user's links (never their credentials).",
  details: ['A user without links is not an error: the list is empty. While the server runs on the embedded database in DATA_DIR, the list comes from it (GET /api/v1/users/:userId/links).'],
  async run(args, io) {
    const userId = argument(UserId, args.positionals[0]!);
    const { config } = loadConfig(io);
    const list = await readLinks(io, config, userId);
    print(io, args, { links: list }, () =>
      list.length === 0
        ? 'this user has no links\n'
        : table(
            ['PROVIDER', 'STATUS', 'ACCOUNT', 'LINKED'],
            list.map((l) => [l.provider, l.status, l.externalName ? `${l.externalName} (${l.externalId})` : l.externalId, l.linkedAt]),
          ),
    );
    return EXIT.ok;
  },
};

const linksShow: Command = {
  path: ['links', 'show'],
  args: [USER_ARG, PROVIDER_ARG],
  json: true,
  summary: "Show one of a user's links (never its credentials).",
  details: ['Exits with 3 when the user has no link to that provider. While the server runs on the embedded database in DATA_DIR, the link comes from it (GET /api/v1/users/:userId/links/:provider).'],
  async run(args, io) {
    const key = linkKey(args);
    const { config } = loadConfig(io);
    const link = await readLink(io, config, key);
    print(io, args, link, () => linkText(link));
    return EXIT.ok;
  },
};

const REVOCATION_TEXT: Record<Revocation, string> = {
  revoked: 'the provider revoked its credentials',
  failed: 'revoking its credentials at the provider failed (the warning above says why)',
  not_supported: 'the provider has no revocation',
  provider_unavailable: 'the provider is not configured here, so its credentials were not revoked upstream',
};

const linksDelete: Command = {
  path: ['links', 'delete'],
  args: [USER_ARG, PROVIDER_ARG],
  json: true,
  summary: "Delete a user's link and revoke its credentials at the provider.",
  details: [
    'Does what DELETE /api/v1/users/:userId/links/:provider does: the link is deleted, then the provider is asked to revoke its tokens. Revocation is best effort: the link is deleted whatever the provider answers, and the output says what it answered, and that no link.deleted event will be sent when LINKGATE_WEBHOOK_URL is not set. The deletion is in the audit trail. While the server runs on the embedded database in DATA_DIR, it deletes the link through the operator API (LINKGATE_ADMIN_KEYS), audited as that key. Exits with 3 when there is no such link.',
  ],
  async run(args, io) {
    const key = linkKey(args);
    const loaded = loadConfig(io);
    const { config } = loaded;
    const logger = cliLogger(io, config);
    const { answerOf, operatorRequest, runningGateway } = await gatewayModule();
    const gateway = runningGateway(io, config);
    let deleted: { link: Link; revocation: Revocation };
    if (gateway) {
      // The operator API answers with the link as it was and the revocation.
      const response = await operatorRequest(gateway, config, 'DELETE', `/tenants/${tenant}${linkPath(key)}`, { commands: '`links delete` and the tenants commands', failure: orNotLinked(key.provider) });
      const answer = await answerOf(gateway, response, (await apiAnswers()).OperatorUnlinkAnswer);
      deleted = { link: answer.deleted, revocation: answer.revocation };
    } else {
      const { auditedCommand, loadRegistry, requireMigrated, withDatabase } = await databaseModule();
      const { createLinkStore, toApiLink } = await linkStore();
      const { unlink } = await import('../core/unlink.ts');
      const row = await withDatabase(io, config, async (database) => {
        await requireMigrated(database);
        const links = createLinkStore(database.db, createKeyring(config.encryptionKeys), { webhookEvents: config.webhook !== undefined });
        const registry = await loadRegistry(io, loaded, database, logger);
        // The CLI's links are the default tenant's: the environment's providers revoke them.
        const providers = { instance: async (_tenant: string, provider: string, version: number | null) => (version === null ? registry.get(provider)?.instance : undefined) };
        return auditedCommand(io, database.db, { action: 'link.delete', tenant, target: `link:${key.userId}/${key.provider}` }, async (note) => {
          const deleted = await unlink({ links, providers, hashUserId: createUserIdHasher(config.userIdHashSalt) }, key, logger, 'cli');
          if (!deleted) throw notLinked(key.provider);
          note.detail = { revocation: deleted.revocation };
          return deleted;
        });
      });
      if (!row) throw notLinked(key.provider);
      deleted = { link: toApiLink(row.row), revocation: row.revocation };
    }
    // The failure's warning is in the gateway's log when the gateway deleted it.
    const revocationText = gateway && deleted.revocation === 'failed' ? 'revoking its credentials at the provider failed (the gateway\'s log says why)' : REVOCATION_TEXT[deleted.revocation];
    print(io, args, { deleted: deleted.link, revocation: deleted.revocation }, () =>
      [
        `deleted the ${key.provider} link; ${revocationText}`,
        // The CLI's links are the default tenant's, whose webhook is the environment's.
        ...(config.webhook ? [] : ['no link.deleted event will be sent: no webhook is configured (LINKGATE_WEBHOOK_URL)']),
        '',
      ].join('\n'),
    );
    return EXIT.ok;
  },
};

/**
 * The Annie Mei takeover needs the bot's database: PostgreSQL. `prepare`:
 * `migrate` brings Linkgate's tables first (as the server does at start-up),
 * `check` requires them, `none` reads what is there.
 */
async function withAnnieMeiDatabase<T>(
  io: CliIo,
  prepare: 'migrate' | 'check' | 'none',
  run: (deps: import('../compat/annie-mei/database.ts').AnnieMeiDeps, webhooks: boolean) => Promise<T>,
): Promise<T> {
  const { config } = loadConfig(io);
  if (!config.databaseUrl) {
    throw new CliError(EXIT.usage, 'needs_postgres', 'the Annie Mei tables live in its PostgreSQL database: set DATABASE_URL to it (the same as in the old service\'s .env)');
  }
  const { requireMigrated, withDatabase } = await databaseModule();
  const hash = createUserIdHasher(config.userIdHashSalt);
  return withDatabase(io, config, async (database) => {
    if (prepare === 'migrate') await database.migrate();
    if (prepare === 'check') await requireMigrated(database);
    const deps = { db: database.db, keyring: createKeyring(config.encryptionKeys), logger: cliLogger(io, config), fingerprint: (id: string) => hash(tenant, id), now: io.now };
    return run(deps, config.webhook !== undefined);
  });
}

const importAnnieMei: Command = {
  path: ['import', 'annie-mei'],
  args: [],
  options: { 'dry-run': { type: 'boolean', help: 'say what would be imported and changed, and change nothing' } },
  json: true,
  summary: "Take over the Annie Mei auth service's tables in DATABASE_URL (the server does this at start-up).",
  details: [
    'When annie_auth.oauth_credentials is still the old service\'s table, every row becomes an AniList link of the default tenant (tokens sealed with LINKGATE_ENCRYPTION_KEYS, `needs_reauth` where relink_required_at is set), the old tables are renamed to oauth_credentials_legacy and oauth_sessions_legacy with their tokens cleared, and views with the same names, columns and grants take their place, all in one transaction. Stop the old service first. Running it again imports nothing.',
  ],
  async run(args, io) {
    const { planTakeover, takeOver } = await import('../compat/annie-mei/database.ts');
    const dryRun = args.values['dry-run'] === true;
    const { auditedCommand } = await databaseModule();
    const result = await withAnnieMeiDatabase(io, dryRun ? 'none' : 'migrate', async (deps, webhooks) => {
      const plan = await planTakeover(deps);
      if (dryRun || plan.found !== 'legacy') return { ...plan, imported: 0, dryRun };
      const report = await auditedCommand(io, deps.db, { action: 'annie_mei.import', tenant, target: 'annie_auth' }, async (note) => {
        const done = await takeOver(deps, { webhooks });
        note.detail = { imported: done?.imported ?? 0 };
        return done;
      });
      return { ...plan, ...report, dryRun };
    });
    print(io, args, result, () => {
      if (result.found === 'views') return 'annie_auth.oauth_credentials is already Linkgate\'s view: there is nothing to import\n';
      if (result.found === 'none') return `there are no annie_auth tables in this database: nothing to import${dryRun ? '' : ' (the server creates the views at start-up)'}\n`;
      const grants = result.grants.map((g) => `${g.grantee}: ${g.privileges.join(', ')} on ${g.table}`).join('; ') || 'none besides the owner';
      const verb = dryRun ? 'would import' : 'imported';
      return [
        `annie_auth.oauth_credentials is the old service's table with ${result.rows} row${result.rows === 1 ? '' : 's'}:`,
        `  ${verb} ${dryRun ? result.rows - result.alreadyLinked : result.imported} as AniList links (${result.needsReauth} needing the user to link again, ${result.alreadyLinked} already linked here and kept as they are)`,
        `  ${dryRun ? 'would rename' : 'renamed'} oauth_credentials and oauth_sessions to *_legacy, their token columns cleared`,
        `  ${dryRun ? 'would create' : 'created'} the views annie_auth.oauth_credentials and oauth_sessions, granted as the old tables were (${grants})`,
        ...(dryRun ? ['nothing was changed'] : []),
        '',
      ].join('\n');
    });
    return EXIT.ok;
  },
};

const importJellyfinRegistry: Command = {
  path: ['import', 'jellyfin-registry'],
  args: [{ name: 'path', help: "the registry's SQLite file (auth.db)" }],
  json: true,
  summary: "Import the Jellyfin links of seed 004's registry (its SQLite user_auth table) as links of the default tenant.",
  details: [
    "Reads user_auth (discord_id, service, external_user_id, external_name, credentials JSON with AccessToken and ServerURL) read-only with node:sqlite. Each Jellyfin row becomes the Jellyfin link of the user discord_id, keyed as a sign-in here would key it (the Jellyfin user id on JELLYFIN_SERVER_URL's server, <user id>@<origin> on a server users typed, which needs JELLYFIN_ALLOW_USER_SERVER=true), its token sealed with LINKGATE_ENCRYPTION_KEYS. Rows of other services are skipped; a row that does not check out is reported and not imported. Prints each row's result. Running it again changes nothing. Recorded in the audit trail as links.import. While the server runs on the embedded database in DATA_DIR, the links go through its import: the operator API's with LINKGATE_ADMIN_KEYS (audited there), else POST /api/v1/links:import.",
  ],
  async run(args, io) {
    const path = args.positionals[0]!;
    const loaded = loadConfig(io);
    const { config } = loaded;
    const logger = cliLogger(io, config);
    const { auditedCommand, loadRegistryWithoutDatabase, loadRegistry, requireMigrated, withDatabase } = await databaseModule();
    const jellyfin = (await loadRegistryWithoutDatabase(io, loaded, logger)).get('jellyfin');
    if (!jellyfin?.instance) throw new LinkgateError('provider_unconfigured', `Jellyfin is not configured (missing ${jellyfin ? describeNeeds(jellyfin.needs) : 'providers/jellyfin.ts'})`);
    const { readJellyfinRegistry } = await import('../compat/jellyfin-registry.ts');
    const rows = await readJellyfinRegistry(path, jellyfin.instance);
    const linkRows = rows.filter((row) => row.kind === 'link');
    const records = linkRows.map((row) => row.record);
    const { answerOf, botRequest, runningGateway } = await gatewayModule();
    const gateway = runningGateway(io, config);
    let imported: { results: { line: number; status: string; error?: { code: string; message: string } | undefined }[] };
    if (records.length === 0) imported = { results: [] };
    else if (gateway) {
      const response = await callImport(gateway, config, records.map((record) => JSON.stringify(record)).join('\n'));
      imported = await answerOf(gateway, response, (await apiAnswers()).ImportAnswer);
    } else {
      const { createLinkStore } = await linkStore();
      const { importRecords } = await import('../core/link-transfer.ts');
      imported = await withDatabase(io, config, async (database) => {
        await requireMigrated(database);
        const registry = await loadRegistry(io, loaded, database, logger);
        const links = createLinkStore(database.db, createKeyring(config.encryptionKeys), { webhookEvents: config.webhook !== undefined });
        // Audited as a link import (through a gateway, its operator API audits it).
        return auditedCommand(io, database.db, { action: 'links.import', tenant, target: 'jellyfin-registry' }, async (note) => {
          const answer = await importRecords({ links, tenant, provider: (provider) => registry.get(provider), allowSharedAccounts: config.allowSharedAccounts, now: io.now }, records);
          // The whole file's counts: rows refused or skipped before the import too.
          const before = (kind: string) => rows.filter((row) => row.kind === kind).length;
          note.detail = { ...answer.counts, invalid: answer.counts.invalid + before('invalid'), skipped: before('skipped') };
          return answer;
        });
      });
    }
    // Each row's result, by its row in user_auth (the import's lines are the Jellyfin rows, in order).
    const results = rows.map((row) => {
      if (row.kind === 'skipped') return { row: row.row, status: 'skipped' as const, reason: row.reason };
      if (row.kind === 'invalid') return { row: row.row, status: 'invalid' as const, error: row.error };
      const result = imported.results[linkRows.indexOf(row)]!;
      return { row: row.row, userId: row.record.userId, externalId: row.record.externalId, status: result.status, ...(result.error ? { error: result.error } : {}) };
    });
    const counts = { created: 0, updated: 0, unchanged: 0, invalid: 0, skipped: 0 };
    for (const result of results) counts[result.status as keyof typeof counts] += 1;
    print(io, args, { results, counts }, () =>
      [
        ...results.map((r) => `row ${r.row}: ${r.status}${'userId' in r ? ` (user ${r.userId}, Jellyfin ${r.externalId})` : ''}${'reason' in r ? ` (${r.reason})` : ''}${'error' in r && r.error ? `: ${r.error.message}` : ''}`),
        `${counts.created} created, ${counts.updated} updated, ${counts.unchanged} unchanged, ${counts.invalid} invalid, ${counts.skipped} skipped`,
        '',
      ].join('\n'),
    );
    return counts.invalid > 0 ? EXIT.failure : EXIT.ok;
  },
};

/**
 * The links as JSON lines to the running gateway's import: the operator API's
 * (audited, as that operator key) when LINKGATE_ADMIN_KEYS is set, else the
 * default tenant's bot API's.
 */
async function callImport(gateway: import('./gateway.ts').RunningGateway, config: Config, lines: string): Promise<Response> {
  const { callGateway } = await gatewayModule();
  const [adminKey] = config.adminKeys;
  const route = adminKey ? { path: `/api/admin/v1/tenants/${tenant}/links:import`, key: adminKey } : { path: '/api/v1/links:import', key: config.apiKeys[0]! };
  return callGateway(gateway, { method: 'POST', ...route, body: lines, contentType: 'application/x-ndjson' });
}

const exportAnnieMei: Command = {
  path: ['export', 'annie-mei'],
  args: [],
  options: { 'dry-run': { type: 'boolean', help: 'say how many links would be written back, and change nothing' } },
  json: true,
  summary: "Give the Annie Mei auth service its tables back (the rollback of `import annie-mei`).",
  details: [
    'Stop Linkgate first. Drops Linkgate\'s annie_auth views, renames oauth_credentials_legacy and oauth_sessions_legacy back, and writes every AniList link of the default tenant into oauth_credentials as it is now, tokens in plaintext as the old service keeps them (links made or removed since the takeover included). Then start the old service; do not start Linkgate on this database again with LINKGATE_ANNIE_MEI_COMPAT on unless you want it to take over again.',
  ],
  async run(args, io) {
    const { giveBack } = await import('../compat/annie-mei/database.ts');
    const dryRun = args.values['dry-run'] === true;
    const { auditedCommand } = await databaseModule();
    const report = await withAnnieMeiDatabase(io, 'check', (deps) =>
      dryRun
        ? giveBack(deps, { dryRun })
        : auditedCommand(io, deps.db, { action: 'annie_mei.export', tenant, target: 'annie_auth' }, async (note) => {
            const done = await giveBack(deps, { dryRun });
            note.detail = { rows: done.rows };
            return done;
          }),
    );
    print(io, args, { ...report, dryRun }, () =>
      dryRun
        ? `would write ${report.rows} AniList link${report.rows === 1 ? '' : 's'} back into annie_auth.oauth_credentials; nothing was changed\n`
        : `wrote ${report.rows} AniList link${report.rows === 1 ? '' : 's'} back into annie_auth.oauth_credentials; the old service can start\n`,
    );
    return EXIT.ok;
  },
};

export const COMMANDS: readonly Command[] = [migrate, secretsGenerate, keysRotate, providers, linkUrl, linksList, linksShow, linksDelete, importAnnieMei, exportAnnieMei, importJellyfinRegistry, mcpCommand, ...TENANT_COMMANDS, ...CONSOLE_COMMANDS];
