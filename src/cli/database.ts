/**
 * The server's database (and the DATA_DIR lock in front of the embedded
 * one) and provider registry, for the commands that need them.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { count, pgSchema, serial } from '../db/orm.ts';
import type { Logger } from 'pino';
import * as v from 'valibot';
import type { Config } from '../config.ts';
import { createKeyring } from '../core/crypto.ts';
import { untrustedFetch } from '../core/outbound.ts';
import { createProviderDirectory, type ProviderDirectory } from '../core/tenant-providers.ts';
import type { TenantStore } from '../core/tenants.ts';
import { PROVIDER_TIMEOUT_MS, fetchWithTimeout, providerToolsFactory } from '../core/tools.ts';
import { migrationsFolder, openDatabase, type Database } from '../db/client.ts';
import { databaseFailure } from '../db/errors.ts';
import { lockDataDir } from '../db/lock.ts';
import type { ProviderTools } from '../provider.ts';
import { loadProviders, type Registry } from '../registry.ts';
import { CliError, EXIT, type CliIo } from './cli.ts';
import type { CliConfig } from './runtime.ts';

/**
 * Opens the server's database for the length of `run`. The embedded one is
 * locked first, as the server does: while another process holds DATA_DIR,
 * the command refuses instead of corrupting it, and the server cannot start
 * while the command runs. (While a server holds it, commands with an HTTP
 * equivalent ask that server instead: gateway.ts.)
 */
export async function withDatabase<T>(io: CliIo, config: Config, run: (database: Database) => Promise<T>): Promise<T> {
  let unlock: (() => void) | undefined;
  if (!config.databaseUrl) {
    try {
      unlock = lockDataDir(config.dataDir, io.pid, io.isAlive);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (/in use by another Linkgate process/.test(message)) {
        throw new CliError(EXIT.failure, 'data_dir_in_use', `${message} Try again once it has finished or, if it is a server still starting, once it is ready (then the command goes through it).`);
      }
      throw error;
    }
  }
  try {
    const database = await openDatabase({ url: config.databaseUrl, dataDir: join(config.dataDir, 'pgdata'), maxConnections: 2 });
    try {
      return await run(database);
    } finally {
      await database.close();
    }
  } finally {
    unlock?.();
  }
}

// drizzle-orm's migrator keeps its log here (drizzle.__drizzle_migrations, one row per applied migration).
const migrationLog = pgSchema('drizzle').table('__drizzle_migrations', { id: serial('id').primaryKey() });
const Journal = v.object({ entries: v.array(v.object({ tag: v.string() })) });

/** How many migrations drizzle/ holds. */
export function migrationCount(): number {
  return v.parse(Journal, JSON.parse(readFileSync(join(migrationsFolder, 'meta', '_journal.json'), 'utf8'))).entries.length;
}

/** How many of the migrations in drizzle/ the database has applied. */
export async function migrationState(database: Database): Promise<{ applied: number; total: number }> {
  let applied = 0;
  try {
    [{ n: applied } = { n: 0 }] = await database.db.select({ n: count() }).from(migrationLog);
  } catch (error) {
    // 3F000: no drizzle schema, 42P01: no log table: a database nothing has migrated yet.
    const code = databaseFailure(error)?.summary.code;
    if (code !== '3F000' && code !== '42P01') throw error;
  }
  return { applied, total: migrationCount() };
}

/** Commands that read or write links need the current schema; they do not migrate on their own. */
export async function requireMigrated(database: Database): Promise<void> {
  const { applied, total } = await migrationState(database);
  if (applied < total) {
    throw new CliError(
      EXIT.failure,
      'not_migrated',
      `the database has ${applied} of ${total} migrations applied: run \`linkgate migrate\` (or start the server) first`,
    );
  }
}

/** The providers with tools on the open database, as the server builds them (revocation may need their key-value store). */
export async function loadRegistry(io: CliIo, { config, env }: CliConfig, database: Database, logger: Logger): Promise<Registry> {
  const keyring = createKeyring(config.encryptionKeys);
  return loadProviders(config.providersDir, env, providerToolsFactory({ database, keyring, logger, publicBaseUrl: config.publicBaseUrl, now: io.now, timeoutMs: config.providerTimeoutMs }));
}

/** Every tenant's providers, as the server makes them: the environment's for `default`, the stored configurations for the others. */
export async function loadProviderDirectory(io: CliIo, { config, env }: CliConfig, database: Database, tenants: TenantStore, logger: Logger): Promise<ProviderDirectory> {
  const toolsFor = providerToolsFactory({ database, keyring: createKeyring(config.encryptionKeys), logger, publicBaseUrl: config.publicBaseUrl, now: io.now, timeoutMs: config.providerTimeoutMs });
  const registry = await loadProviders(config.providersDir, env, toolsFor);
  return createProviderDirectory({ registry, tenants, toolsFor, logger, now: io.now });
}

/**
 * The providers for commands that only read configuration (`providers`,
 * `link-url`): they do not open the database, so they work while the
 * server holds the embedded one. No provider uses its store or lock when it
 * is created; one that did would get this error rather than a database.
 */
export async function loadRegistryWithoutDatabase(io: CliIo, { config, env }: CliConfig, logger: Logger): Promise<Registry> {
  const noDatabase = async (): Promise<never> => {
    throw new Error('this command reads the configuration only and does not open the database');
  };
  const toolsFor = (providerId: string): ProviderTools => ({
    fetch: fetchWithTimeout(globalThis.fetch, PROVIDER_TIMEOUT_MS),
    logger: logger.child({ provider: providerId }),
    kv: { get: noDatabase, set: noDatabase, delete: noDatabase },
    clock: { now: io.now },
    untrustedFetch,
    publicBaseUrl: config.publicBaseUrl,
    lock: noDatabase,
  });
  return loadProviders(config.providersDir, env, toolsFor);
}

/** What a command adds to its audit row once it knows (a created key's id, counts). */
export interface CommandAuditNote {
  target?: string;
  detail?: Record<string, import('../core/audit.ts').AuditFact>;
}

/**
 * Runs a command's change on the open database and appends its audit row
 * (actor `cli`), whatever its end: ok, refused with the error code, failed.
 * A command that goes through a running gateway's API is audited there
 * instead, as the operator key it used.
 */
export async function auditedCommand<T>(
  io: CliIo,
  db: Database['db'],
  entry: { action: import('../core/audit.ts').AuditAction; tenant: string | null; target?: string },
  run: (note: CommandAuditNote) => Promise<T>,
): Promise<T> {
  const { outcomeOf, record } = await import('../core/audit.ts');
  const note: CommandAuditNote = {};
  let end: { outcome: 'ok' | 'refused' | 'failed'; code?: string } = { outcome: 'ok' };
  try {
    return await run(note);
  } catch (error) {
    end = outcomeOf(error);
    throw error;
  } finally {
    await record(db, {
      actor: { kind: 'cli' },
      action: entry.action,
      tenant: entry.tenant,
      target: note.target ?? entry.target ?? (entry.tenant ? `tenant:${entry.tenant}` : null),
      ...end,
      ...(note.detail ? { detail: note.detail } : {}),
      at: new Date(io.now()),
    });
  }
}
