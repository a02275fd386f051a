import { create } from '@bufbuild/protobuf';
import { durationFromMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import * as v from 'valibot';
import type { ErrorCode } from '../core/errors.ts';
import { LinkgateError } from '../core/errors.ts';
import { issueMessage } from '../core/validation.ts';
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from './gen/google/rpc/error_details_pb.ts';

/** ErrorInfo's domain: the reasons are Linkgate's error codes. */
export const ERROR_DOMAIN = 'linkgate';

/**
 * Error codes whose gRPC code is not the one their HTTP status maps to
 * (the table of `codeOfStatus`, as gRPC's HTTP mapping reads it).
 */
const CODES: Partial<Record<ErrorCode, Code>> = {
  // The operator has to configure the provider: calling again will not help.
  provider_unconfigured: Code.FailedPrecondition,
  needs_reauth: Code.FailedPrecondition,
  link_cancelled: Code.FailedPrecondition,
  account_already_linked: Code.AlreadyExists,
  provider_timeout: Code.DeadlineExceeded,
};

function codeOfStatus(status: number): Code {
  if (status === 400) return Code.InvalidArgument;
  if (status === 401) return Code.Unauthenticated;
  if (status === 403) return Code.PermissionDenied;
  if (status === 404) return Code.NotFound;
  if (status === 409) return Code.FailedPrecondition;
  if (status === 413 || status === 429) return Code.ResourceExhausted;
  if (status === 502 || status === 503 || status === 504) return Code.Unavailable;
  return Code.Internal;
}

/**
 * A LinkgateError as the RPC surface answers it: the code gRPC's status
 * table gives its meaning, the same safe message as the REST API, and an
 * ErrorInfo whose `reason` is the REST error code (with `link_url` for
 * `not_linked` and `needs_reauth` when one is given), plus RetryInfo for
 * `rate_limited`.
 */
export function toConnectError(error: LinkgateError, metadata: Record<string, string> = {}): ConnectError {
  const details: NonNullable<ConstructorParameters<typeof ConnectError>[3]> = [
    { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason: error.code, domain: ERROR_DOMAIN, metadata: { ...(error.provider ? { provider: error.provider } : {}), ...metadata } }) },
  ];
  if (error.retryAfterSeconds !== undefined) {
    details.push({ desc: RetryInfoSchema, value: create(RetryInfoSchema, { retryDelay: durationFromMs(error.retryAfterSeconds * 1000) }) });
  }
  return new ConnectError(error.message, CODES[error.code] ?? codeOfStatus(error.status), undefined, details, error);
}

/**
 * Parses a request message (in its proto field names) with a valibot
 * schema: a failure is INVALID_ARGUMENT naming the first bad field, in the
 * REST API's words, with a BadRequest field violation for it.
 */
export function parseRequest<S extends v.GenericSchema>(schema: S, input: unknown): v.InferOutput<S> {
  const result = v.safeParse(schema, input);
  if (result.success) return result.output;
  const issue = result.issues[0];
  const field = issue.path?.map((item) => String(item.key)).join('.') ?? '';
  const message = issueMessage(issue);
  return badField(field, message);
}

/** INVALID_ARGUMENT for one field. */
export function badField(field: string, message: string): never {
  const error = new LinkgateError('bad_request', message);
  const violation = create(BadRequestSchema, { fieldViolations: [{ field, description: message }] });
  const failure = toConnectError(error);
  failure.details.push({ desc: BadRequestSchema, value: violation });
  throw failure;
}
