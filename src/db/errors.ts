import { DrizzleQueryError } from './orm.ts';

/** Connection-level failures (postgres-js codes, Node socket codes). */
const CONNECTION_CODES = new Set([
  'CONNECTION_ENDED', 'CONNECTION_CLOSED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT',
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND',
]);

export interface DatabaseFailure {
  /** The database cannot be reached right now (503), as opposed to a failed statement. */
  unavailable: boolean;
  /**
   * What may be logged: the driver's error name, code and message. Never
   * Drizzle's own message, which carries the query's parameters (user ids,
   * sealed credentials).
   */
  summary: { name: string; code: string | undefined; message: string };
}

export function databaseFailure(error: unknown): DatabaseFailure | undefined {
  if (!(error instanceof DrizzleQueryError)) return undefined;
  const cause = error.cause;
  const rawCode: unknown = cause && 'code' in cause ? cause.code : undefined;
  const code = typeof rawCode === 'string' ? rawCode : undefined;
  const message = cause?.message ?? 'query failed';
  const unavailable =
    (code !== undefined && (CONNECTION_CODES.has(code) || code.startsWith('08') || /^57P0[123]$/.test(code))) || /PGlite is closed/.test(message);
  return { unavailable, summary: { name: cause?.name ?? 'Error', code, message: message.slice(0, 200) } };
}

/** An error as a log field: a database failure's summary, or an error's name and message. */
export function logCause(error: unknown): { name: string; code?: string | undefined; message: string } {
  const failure = databaseFailure(error);
  if (failure) return failure.summary;
  return error instanceof Error ? { name: error.name, message: error.message.slice(0, 200) } : { name: 'Error', message: String(error).slice(0, 200) };
}
