/**
 * The gateway running on the embedded database in DATA_DIR, for the commands
 * that cannot open that database while it holds it (PGlite serves one
 * process). The gateway says where it listens in DATA_DIR/gateway.json
 * (src/db/lock.ts); a command with an HTTP equivalent sends its request
 * there, with the first of the configured keys, and prints the answer as it
 * would print its own result.
 */
import * as v from 'valibot';
import type { Config } from '../config.ts';
import { announcedGateway } from '../db/lock.ts';
import { answeredError, CliError, EXIT, type CliIo } from './cli.ts';

export interface RunningGateway {
  pid: number;
  url: string;
  /** What to say when a command cannot go through it. */
  describe: string;
}

/** The gateway holding the embedded database in DATA_DIR, if one runs; never on PostgreSQL, where commands share the database. */
export function runningGateway(io: CliIo, config: Config): RunningGateway | undefined {
  if (config.databaseUrl) return undefined;
  const found = announcedGateway(config.dataDir, io.isAlive);
  return found && { ...found, describe: `the gateway running on DATA_DIR ${config.dataDir} (pid ${found.pid})` };
}

const ErrorAnswer = v.object({ error: v.object({ code: v.string(), message: v.string() }) });

export interface GatewayRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** From the root, e.g. `/api/v1/providers`. */
  path: string;
  key: string;
  /** Sent as JSON, or as it is when `contentType` is given. */
  body?: unknown;
  contentType?: string;
  /**
   * Reads an error answer before the usual mapping (the operator API's
   * 404 for "not enabled", say); returns nothing to leave it to that.
   */
  failure?: (status: number, error: { code: string; message: string } | undefined) => CliError | undefined;
}

/** Sends one request to the gateway; an error answer becomes the CliError the same error is on the database directly. */
export async function callGateway(gateway: RunningGateway, request: GatewayRequest): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(new URL(request.path, gateway.url), {
      method: request.method,
      headers: { authorization: `Bearer ${request.key}`, ...(request.body === undefined ? {} : { 'content-type': request.contentType ?? 'application/json' }) },
      ...(request.body === undefined ? {} : { body: request.contentType ? String(request.body) : JSON.stringify(request.body) }),
      signal: AbortSignal.timeout(60_000),
    });
  } catch (error) {
    const why = error instanceof Error && error.cause instanceof Error ? error.cause.message : error instanceof Error ? error.message : String(error);
    throw new CliError(EXIT.failure, 'gateway_unreachable', `${gateway.describe} did not answer at ${gateway.url} (${why}); stop it to run this command on the database directly`);
  }
  if (response.ok) return response;
  const parsed = v.safeParse(ErrorAnswer, await response.json().catch(() => undefined));
  const error = parsed.success ? parsed.output.error : undefined;
  const special = request.failure?.(response.status, error);
  if (special) throw special;
  if (response.status === 401) {
    throw new CliError(EXIT.failure, 'unauthorized', `${gateway.describe} refused the key this command sent: run it with the same configuration as the gateway`);
  }
  if (error) throw answeredError(error.code, error.message);
  throw new CliError(EXIT.failure, 'failed', `${gateway.describe} answered ${response.status} ${response.statusText}`);
}

/** The answer's JSON, checked with the schema the gateway answers with. */
export async function answerOf<S extends v.GenericSchema>(gateway: RunningGateway, response: Response, schema: S): Promise<v.InferOutput<S>> {
  const parsed = v.safeParse(schema, await response.json().catch(() => undefined));
  if (!parsed.success) throw new CliError(EXIT.failure, 'failed', `${gateway.describe} answered in a shape this command does not know: are they the same version?`);
  return parsed.output;
}

/** The bot API (/api/v1) as the default tenant's bot: the first of LINKGATE_API_KEYS. */
export function botRequest(gateway: RunningGateway, config: Config, method: GatewayRequest['method'], path: string, options: Pick<GatewayRequest, 'body' | 'failure'> = {}): Promise<Response> {
  return callGateway(gateway, { method, path: `/api/v1${path}`, key: config.apiKeys[0]!, ...options });
}

/**
 * The operator API (/api/admin/v1): the first of LINKGATE_ADMIN_KEYS, which
 * both must have. `commands` names what goes through it, for the refusal;
 * `failure` reads an error answer first, as in `callGateway`.
 */
export function operatorRequest(
  gateway: RunningGateway,
  config: Config,
  method: GatewayRequest['method'],
  path: string,
  { body, commands = 'tenants commands', failure }: { body?: unknown; commands?: string; failure?: GatewayRequest['failure'] } = {},
): Promise<Response> {
  const noOperatorApi = (why: string) =>
    new CliError(
      EXIT.failure,
      'operator_api_disabled',
      `${gateway.describe} holds the embedded database, and ${commands} then go through its operator API, ${why}: set LINKGATE_ADMIN_KEYS and restart the gateway, or stop it to run this command on the database directly`,
    );
  const [key] = config.adminKeys;
  if (key === undefined) throw noOperatorApi('which needs one of LINKGATE_ADMIN_KEYS, and none is set');
  return callGateway(gateway, {
    method,
    path: `/api/admin/v1${path}`,
    key,
    ...(body === undefined ? {} : { body }),
    // Without LINKGATE_ADMIN_KEYS of its own the gateway has no operator API: every route is 404.
    failure: (status, error) =>
      status === 404 && error?.code === 'not_found' && error.message === 'no such route' ? noOperatorApi('which is off (the gateway runs without LINKGATE_ADMIN_KEYS)') : failure?.(status, error),
  });
}

/** Why a command with no HTTP equivalent cannot run now, and what to do. */
export function refuse(gateway: RunningGateway, why: string, command: string): CliError {
  return new CliError(EXIT.failure, 'data_dir_in_use', `${gateway.describe} holds the embedded database, and ${why}: stop the gateway, run \`linkgate ${command}\`, then start it again`);
}
