/**
 * What every command shares with the server: the configuration, read the
 * server's way, and a logger on stderr. Light on purpose: the database and
 * the providers (database.ts) load only for the commands that use them.
 */
import type { Logger } from 'pino';
import { parseConfig, withDevelopmentSecrets, type Config, type Env } from '../config.ts';
import { createLogger } from '../observability.ts';
import type { CliIo } from './cli.ts';

export interface CliConfig {
  config: Config;
  /** The environment with development secrets filled in: what providers read their variables from. */
  env: Env;
}

/** The server's configuration, read the server's way (secrets from DATA_DIR/secrets.env outside production). */
export function loadConfig(io: CliIo): CliConfig {
  const { env, generated, file } = withDevelopmentSecrets(io.env);
  const config = parseConfig(env);
  if (generated.length > 0) io.err(`linkgate: generated development secrets into ${file} (${generated.join(', ')}); set them yourself in production\n`);
  return { config, env };
}

/** Logs on stderr: warnings only unless LOG_LEVEL is set, so a command's own output stays readable. */
export function cliLogger(io: CliIo, config: Config): Logger {
  return createLogger(io.env.LOG_LEVEL ? config.logLevel : 'warn', io.log);
}
