/**
 * Moving links in and out (issue #23): import from JSON lines, one link per
 * line, each line validated and answered on its own; export as JSON lines,
 * the credentials sealed with a passphrase the caller gives (or in plaintext
 * only when asked for explicitly). An export imports back as it is.
 *
 * A line: `{ "userId", "provider", "externalId", "externalName"?, "credentials":
 * { "accessToken", "refreshToken"?, "expiresAt"?, "scopes"?, "tokenType"? } }`
 * (`expiresAt` an ISO 8601 time or epoch milliseconds). A sealed export starts
 * with a header line `{ "format": "linkgate-links-v1", "kdf": "scrypt", "salt" }`
 * and carries each line's credentials as `v1.<iv>.<ciphertext‖tag>`: AES-256-GCM
 * under scrypt(passphrase, salt) (N = 2^15, r = 8, p = 1), the line's tenant,
 * user and provider as associated data.
 */
import { createCipheriv, createDecipheriv, randomBytes, scryptSync } from 'node:crypto';
import * as v from 'valibot';
import type { Db } from '../db/client.ts';
import { and, asc, eq, gt, or } from '../db/orm.ts';
import { links as linksTable } from '../db/schema.ts';
import type { Credentials } from '../provider.ts';
import { checkedAccount, checkedCredentials } from './bounds.ts';
import { isLinkgateError, LinkgateError } from './errors.ts';
import { ProviderId, UserId } from './ids.ts';
import type { LinkStore } from './links.ts';
import { issueMessage } from './validation.ts';

export const EXPORT_FORMAT = 'linkgate-links-v1';
/** At most this many lines per import request. */
export const IMPORT_MAX_LINES = 10_000;
const SCRYPT = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;

const Line = v.object({
  userId: UserId,
  provider: ProviderId,
  externalId: v.pipe(v.string('externalId must be a string'), v.minLength(1, 'externalId must not be empty')),
  externalName: v.optional(v.nullable(v.string('externalName must be a string'))),
  /** An export's: a link that needed the user still does after the import. */
  status: v.optional(v.picklist(['active', 'needs_reauth'], 'status must be active or needs_reauth')),
  credentials: v.unknown(),
});
const PlainCredentials = v.object(
  {
    accessToken: v.pipe(v.string('credentials.accessToken must be a string'), v.minLength(1, 'credentials.accessToken must not be empty')),
    refreshToken: v.optional(v.string('credentials.refreshToken must be a string')),
    tokenType: v.optional(v.string('credentials.tokenType must be a string')),
    expiresAt: v.optional(
      v.union(
        [
          v.pipe(v.string(), v.isoTimestamp(), v.transform((text) => Date.parse(text))),
          v.pipe(v.number(), v.integer(), v.minValue(0)),
        ],
        'credentials.expiresAt must be an ISO 8601 time or epoch milliseconds',
      ),
    ),
    scopes: v.optional(v.array(v.string('each scope must be a string'), 'credentials.scopes must be a list')),
    extra: v.optional(v.record(v.string(), v.any())),
  },
  'credentials must be an object',
);
const Header = v.object({ format: v.literal(EXPORT_FORMAT), kdf: v.literal('scrypt'), salt: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{16,64}$/)) });

export type ImportStatus = 'created' | 'updated' | 'unchanged' | 'invalid';
export interface ImportResult {
  line: number;
  status: ImportStatus;
  /** Why a line was refused: a field and what is wrong with it, never a value. */
  error?: { code: string; message: string };
}

const aadOf = (tenant: string, userId: string, provider: string) => Buffer.from(`linkgate-export:${JSON.stringify([tenant, userId, provider])}`);
const keyOf = (passphrase: string, salt: string) => scryptSync(passphrase, Buffer.from(salt, 'base64url'), 32, SCRYPT);

function seal(key: Buffer, plaintext: string, aad: Buffer): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return `v1.${iv.toString('base64url')}.${body.toString('base64url')}`;
}

function open(key: Buffer, envelope: string, aad: Buffer): string {
  const [version, ivText, bodyText] = envelope.split('.');
  if (version !== 'v1' || !ivText || !bodyText) throw new LinkgateError('bad_request', 'credentials are not sealed in the export format');
  const iv = Buffer.from(ivText, 'base64url');
  const body = Buffer.from(bodyText, 'base64url');
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAAD(aad);
    decipher.setAuthTag(body.subarray(body.length - 16));
    return Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]).toString('utf8');
  } catch {
    throw new LinkgateError('bad_request', 'credentials do not open with this passphrase (or were altered)');
  }
}

const sameCredentials = (a: Credentials, b: Credentials) =>
  a.accessToken === b.accessToken && a.refreshToken === b.refreshToken && a.expiresAt === b.expiresAt && JSON.stringify(a.scopes ?? []) === JSON.stringify(b.scopes ?? []) && (a.tokenType ?? 'Bearer') === (b.tokenType ?? 'Bearer');

export interface ImportDeps {
  links: LinkStore;
  tenant: string;
  /**
   * The tenant's provider `provider`, undefined when it has none: its links
   * are stored with the configuration version new links get, so that the
   * tenant's app refreshes and revokes them (undefined: the environment's).
   */
  provider(provider: string): { configVersion?: number } | undefined | Promise<{ configVersion?: number } | undefined>;
  allowSharedAccounts: boolean;
  now: () => number;
}

/**
 * Imports JSON lines (or a sealed export, with its passphrase): each line is
 * validated, bounded and stored on its own, sealed with the keyring on
 * arrival. A line identical to what is stored changes nothing, so importing
 * the same lines again is `unchanged` throughout.
 */
export async function importLinks(deps: ImportDeps, text: string, passphrase: string | undefined): Promise<{ results: ImportResult[]; counts: Record<ImportStatus, number> }> {
  const lines = text.split('\n').map((line, index) => ({ line: index + 1, text: line.trim() })).filter((l) => l.text !== '');
  let key: Buffer | undefined;
  const first = lines[0];
  if (first && first.text.includes(`"${EXPORT_FORMAT}"`)) {
    const header = v.safeParse(Header, safeJson(first.text));
    if (!header.success) throw new LinkgateError('bad_request', 'line 1: not a valid export header');
    if (!passphrase) throw new LinkgateError('bad_request', 'this export is sealed: give its passphrase (Linkgate-Passphrase header)');
    key = keyOf(passphrase, header.output.salt);
    lines.shift();
  }
  if (lines.length > IMPORT_MAX_LINES) throw new LinkgateError('payload_too_large', `at most ${IMPORT_MAX_LINES} lines per import`);
  const parsed = (raw: string) => {
    const entry = safeJson(raw);
    if (entry === undefined) throw new LinkgateError('bad_request', 'the line is not JSON');
    return entry;
  };
  return importEach(deps, lines.map(({ line, text }) => ({ line, entry: () => parsed(text) })), key);
}

/**
 * Imports links already read from elsewhere (`linkgate import jellyfin-registry`):
 * each record is what one JSON line holds, validated and stored the same way;
 * `line` in the results is the record's place, from 1.
 */
export function importRecords(deps: ImportDeps, records: readonly unknown[]): Promise<{ results: ImportResult[]; counts: Record<ImportStatus, number> }> {
  return importEach(deps, records.map((record, index) => ({ line: index + 1, entry: () => record })), undefined);
}

async function importEach(deps: ImportDeps, entries: { line: number; entry: () => unknown }[], key: Buffer | undefined) {
  const results: ImportResult[] = [];
  for (const { line, entry } of entries) {
    try {
      results.push({ line, status: await importEntry(deps, entry(), key) });
    } catch (error) {
      if (!isLinkgateError(error) || error.status >= 500) throw error;
      results.push({ line, status: 'invalid', error: { code: error.code, message: error.message } });
    }
  }
  const counts: Record<ImportStatus, number> = { created: 0, updated: 0, unchanged: 0, invalid: 0 };
  for (const result of results) counts[result.status] += 1;
  return { results, counts };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

async function importEntry(deps: ImportDeps, entry: unknown, key: Buffer | undefined): Promise<ImportStatus> {
  const line = v.safeParse(Line, entry);
  if (!line.success) throw new LinkgateError('bad_request', issueMessage(line.issues[0]));
  const { userId, provider, externalId, externalName } = line.output;
  const known = await deps.provider(provider);
  if (!known) throw new LinkgateError('unknown_provider', `there is no provider called "${provider}"`);
  let credentialsInput = line.output.credentials;
  if (key) {
    if (typeof credentialsInput !== 'string') throw new LinkgateError('bad_request', 'credentials must be sealed in a sealed export');
    credentialsInput = safeJson(open(key, credentialsInput, aadOf(deps.tenant, userId, provider)));
  }
  const credentialsParsed = v.safeParse(PlainCredentials, credentialsInput);
  if (!credentialsParsed.success) throw new LinkgateError('bad_request', issueMessage(credentialsParsed.issues[0]));
  const { extra, ...rest } = credentialsParsed.output;
  let credentials: Credentials;
  let account: { id: string; name?: string };
  try {
    // The same bounds as what a provider answers (src/core/bounds.ts).
    credentials = checkedCredentials({ ...rest, ...(extra ? { extra } : {}) } as Credentials, provider);
    account = checkedAccount({ id: externalId, ...(externalName ? { name: externalName } : {}) }, credentials, provider);
  } catch (error) {
    if (isLinkgateError(error, 'provider_response_invalid')) throw new LinkgateError('bad_request', error.message.replace("the provider's answer was refused: ", 'the line exceeds what a link may hold: '));
    throw error;
  }
  const linkKey = { tenant: deps.tenant, userId, provider };
  const existing = await deps.links.get(linkKey);
  const status = line.output.status ?? 'active';
  if (existing && existing.externalId === account.id && (existing.externalName ?? undefined) === account.name && existing.status === status && sameCredentials(deps.links.openCredentials(existing), credentials)) return 'unchanged';
  const stored = await deps.links.store(linkKey, account, credentials, { allowShared: deps.allowSharedAccounts, now: new Date(deps.now()), configVersion: known.configVersion ?? null, via: 'import' });
  if (status === 'needs_reauth') await deps.links.setStatus(stored, 'needs_reauth', new Date(deps.now()), 'imported as needing the user');
  return existing ? 'updated' : 'created';
}

/**
 * Every link of a tenant as JSON lines, a batch at a time: sealed with
 * `passphrase` (the header line first), or in plaintext when it is undefined.
 */
export async function* exportLinks(db: Db, store: LinkStore, tenant: string, passphrase: string | undefined): AsyncGenerator<string> {
  let key: Buffer | undefined;
  if (passphrase !== undefined) {
    const salt = randomBytes(16).toString('base64url');
    key = keyOf(passphrase, salt);
    yield `${JSON.stringify({ format: EXPORT_FORMAT, kdf: 'scrypt', salt })}\n`;
  }
  let after: { userId: string; provider: string } | undefined;
  for (;;) {
    const rows = await db
      .select()
      .from(linksTable)
      .where(and(eq(linksTable.tenant, tenant), after ? or(gt(linksTable.userId, after.userId), and(eq(linksTable.userId, after.userId), gt(linksTable.provider, after.provider))) : undefined))
      .orderBy(asc(linksTable.userId), asc(linksTable.provider))
      .limit(500);
    for (const row of rows) {
      const credentials = store.openCredentials(row);
      const plain = { ...credentials, ...(credentials.expiresAt === undefined ? {} : { expiresAt: new Date(credentials.expiresAt).toISOString() }) };
      const sealed = key ? seal(key, JSON.stringify(plain), aadOf(tenant, row.userId, row.provider)) : plain;
      yield `${JSON.stringify({ userId: row.userId, provider: row.provider, externalId: row.externalId, externalName: row.externalName, status: row.status, credentials: sealed })}\n`;
    }
    if (rows.length < 500) return;
    after = { userId: rows.at(-1)!.userId, provider: rows.at(-1)!.provider };
  }
}
