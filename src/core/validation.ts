import * as v from 'valibot';
import { LinkgateError } from './errors.ts';

/**
 * A valibot issue as a message safe to show and log: the path and what was
 * expected, never the value received (it may be a secret or a user id).
 */
export function issueMessage(issue: v.BaseIssue<unknown>): string {
  const path = issue.path?.map((item) => String(item.key)).join('.');
  if (issue.input === undefined && issue.kind === 'schema') return path ? `${path} is missing` : 'a value is missing';
  const message = issue.message.replace(/:? *but received .*$/s, '').replace(/^Invalid (\w+): Expected /, 'invalid $1, expected ');
  return path ? `${path}: ${message}` : message;
}

/** Parses outside input; a failure is a 400 `bad_request` naming the first bad field. */
export function parseInput<S extends v.GenericSchema>(schema: S, input: unknown): v.InferOutput<S> {
  const result = v.safeParse(schema, input);
  if (!result.success) throw new LinkgateError('bad_request', issueMessage(result.issues[0]));
  return result.output;
}
