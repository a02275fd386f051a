/**
 * The Jellyfin registry of seed 004 (a Discord bot's agent, in Python) keeps
 * its users' Jellyfin sign-ins in a SQLite table:
 *
 *   user_auth(discord_id, service, external_user_id, external_name, credentials)
 *
 * `credentials` being JSON with at least `AccessToken` and `ServerURL`
 * (`DeviceId` too, where it kept one). `readJellyfinRegistry` reads it,
 * read-only, with Node's own `node:sqlite`, and turns each Jellyfin row into
 * what one line of a link import holds (src/core/link-transfer.ts), keyed and
 * shaped by the Jellyfin provider itself (`adopt`), so an imported link is
 * one a sign-in here would have made. Every row is checked with valibot:
 * another system's data is outside input.
 */
import { createHash } from 'node:crypto';
import * as v from 'valibot';
import { LinkgateError } from '../core/errors.ts';
import { userIdSchema } from '../core/ids.ts';
import { issueMessage } from '../core/validation.ts';
import type { ProviderInstance } from '../provider.ts';

/** What became of one row, before anything is stored. */
export type RegistryRow =
  | { row: number; kind: 'link'; record: { userId: string; provider: 'jellyfin'; externalId: string; externalName?: string; credentials: Record<string, unknown> } }
  | { row: number; kind: 'skipped'; reason: string }
  | { row: number; kind: 'invalid'; error: { code: string; message: string } };

// SQLite gives integers as bigint here (`setReadBigInts`): a Discord id does not fit a double.
const Text = (name: string) => v.pipe(v.union([v.string(), v.pipe(v.bigint(), v.transform(String))], `${name} must be text or an integer`), v.string());
const RegistryCredentials = v.object(
  {
    AccessToken: v.pipe(v.string('credentials.AccessToken must be a string'), v.minLength(1, 'credentials.AccessToken must not be empty'), v.maxLength(512, 'credentials.AccessToken is too long')),
    ServerURL: v.pipe(v.string('credentials.ServerURL must be a string'), v.maxLength(2048, 'credentials.ServerURL is too long')),
    DeviceId: v.optional(v.pipe(v.string('credentials.DeviceId must be a string'), v.regex(/^[\w-]{1,128}$/, 'credentials.DeviceId must be letters, digits, _ and -'))),
  },
  'credentials must be a JSON object',
);
const Row = v.object({
  rowid: v.bigint(),
  discord_id: v.pipe(Text('discord_id'), userIdSchema('discord_id')),
  service: Text('service'),
  // A Jellyfin user id is a Guid; it becomes part of the account id.
  external_user_id: v.pipe(Text('external_user_id'), v.regex(/^[\w-]{1,64}$/, 'external_user_id must be a Jellyfin user id')),
  external_name: v.nullish(v.pipe(v.string('external_name must be text'), v.maxLength(256, 'external_name is too long'))),
  credentials: v.pipe(v.string('credentials must be JSON text'), v.parseJson(undefined, 'credentials must be JSON'), RegistryCredentials),
});

/**
 * A device id for a token the registry kept none for: the same for the same
 * server and user on every run, so importing again changes nothing.
 */
const deviceIdFor = (serverUrl: string, userId: string) => createHash('sha256').update(`linkgate-import\0${serverUrl}\0${userId}`).digest('hex').slice(0, 32);

/** Every row of the registry's `user_auth`, in table order, each as a link to import or the reason it is not one. */
export async function readJellyfinRegistry(path: string, jellyfin: ProviderInstance): Promise<RegistryRow[]> {
  const adopt = jellyfin.adopt?.bind(jellyfin);
  if (!adopt) throw new LinkgateError('provider_unconfigured', 'the jellyfin provider cannot adopt links from elsewhere');
  const { DatabaseSync } = await import('node:sqlite');
  let rows: unknown[];
  let database: InstanceType<typeof DatabaseSync> | undefined;
  try {
    database = new DatabaseSync(path, { readOnly: true });
    const table = database.prepare("select 1 from sqlite_master where type = 'table' and name = 'user_auth'").get();
    if (!table) throw new LinkgateError('bad_request', `${path} has no user_auth table: is it the Jellyfin registry's database?`);
    const select = database.prepare('select rowid as rowid, discord_id, service, external_user_id, external_name, credentials from user_auth order by rowid');
    select.setReadBigInts(true);
    rows = select.all();
  } catch (error) {
    if (error instanceof LinkgateError) throw error;
    // SQLite's message says what is wrong (no such file, not a database, no such column); it holds no row data.
    throw new LinkgateError('bad_request', `cannot read ${path} as the Jellyfin registry (${error instanceof Error ? error.message : String(error)})`, { cause: error });
  } finally {
    database?.close();
  }
  return rows.map((raw, index): RegistryRow => {
    const parsed = v.safeParse(Row, raw);
    const row = parsed.success ? Number(parsed.output.rowid) : index + 1;
    if (!parsed.success) return { row, kind: 'invalid', error: { code: 'bad_request', message: issueMessage(parsed.issues[0]) } };
    const { discord_id: userId, service, external_user_id: jellyfinUserId, external_name: name, credentials } = parsed.output;
    if (service.toLowerCase() !== 'jellyfin') return { row, kind: 'skipped', reason: `a ${service.slice(0, 40)} sign-in, not Jellyfin` };
    const adopted = adopt({
      accessToken: credentials.AccessToken,
      tokenType: 'MediaBrowser',
      extra: { serverUrl: credentials.ServerURL, deviceId: credentials.DeviceId ?? deviceIdFor(credentials.ServerURL, jellyfinUserId), userId: jellyfinUserId },
    });
    if (!adopted) {
      return { row, kind: 'invalid', error: { code: 'bad_request', message: 'credentials.ServerURL is not a server this gateway links (JELLYFIN_SERVER_URL, JELLYFIN_ALLOW_USER_SERVER)' } };
    }
    return {
      row,
      kind: 'link',
      record: { userId, provider: 'jellyfin', externalId: adopted.accountId, ...(name ? { externalName: name } : {}), credentials: { ...adopted.credentials } },
    };
  });
}
