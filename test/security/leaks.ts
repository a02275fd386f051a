import { sql } from '../../src/db/orm.ts';
import type { Db } from '../../src/db/client.ts';

/**
 * The forms a secret could be written in without being recognisable at a
 * glance: as it is, URL-encoded (a query or form body stored whole), and
 * base64, base64url or hex of its bytes (a value encoded on its way into a
 * column or a header). Sealed values are none of these.
 */
export function encodings(secret: string): string[] {
  const bytes = Buffer.from(secret, 'utf8');
  return [...new Set([secret, encodeURIComponent(secret), bytes.toString('base64').replace(/=+$/, ''), bytes.toString('base64url'), bytes.toString('hex')])];
}

/**
 * Where any of `secrets` (name → value) occurs in `text`, in any of its
 * encodings: one line per find, naming the secret and showing what precedes
 * it (never the whole text), so a failure says what leaked where.
 */
export function leaksIn(text: string, secrets: ReadonlyMap<string, string>, where = 'text'): string[] {
  const found: string[] = [];
  const decoded = decodedRuns(text);
  for (const [name, secret] of secrets) {
    if (secret.length < 8) throw new Error(`secret "${name}" is too short to search for without false alarms`);
    for (const form of encodings(secret)) {
      const at = text.indexOf(form);
      if (at !== -1) found.push(`${name} in ${where}: …${text.slice(Math.max(0, at - 80), at)}[HERE]`);
    }
    if (decoded.includes(secret)) found.push(`${name} in ${where}, inside a base64 or hex encoded value`);
  }
  return found;
}

/**
 * Every run of base64, base64url or hex characters in `text`, decoded (from
 * each of the four offsets a base64 run can start at): a secret inside an
 * encoded larger value (a whole JSON document in base64) shows up here.
 * Sealed values decode to random bytes and match nothing.
 */
function decodedRuns(text: string): string {
  const parts: string[] = [];
  for (const [run] of text.matchAll(/[A-Za-z0-9+/_-]{16,}/g)) {
    for (let offset = 0; offset < 4; offset++) parts.push(Buffer.from(run.slice(offset), 'base64').toString('latin1'));
  }
  for (const [run] of text.matchAll(/(?:[0-9a-fA-F]{2}){8,}/g)) {
    for (const offset of [0, 1]) parts.push(Buffer.from(run.slice(offset), 'hex').toString('latin1'));
  }
  return parts.join('\n');
}

/** Rows of a raw query on PGlite (`{ rows }`) and postgres.js (an array) alike. */
export function rowsOf<T>(result: unknown): T[] {
  return ((result as { rows?: T[] }).rows ?? (result as T[])) as T[];
}

export interface StoredValue {
  table: string;
  column: string;
  value: string;
}

/**
 * Every non-null value of every column of every table in the database, as
 * text. The table list comes from information_schema, so a table added later
 * is scanned without changing the test.
 */
export async function everyStoredValue(db: Db): Promise<StoredValue[]> {
  const columns = rowsOf<{ table_schema: string; table_name: string; column_name: string }>(
    await db.execute(sql`
      select c.table_schema, c.table_name, c.column_name
      from information_schema.columns c
      join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name
      where t.table_type = 'BASE TABLE' and c.table_schema not in ('pg_catalog', 'information_schema') and c.table_schema not like 'pg_toast%'
      order by c.table_schema, c.table_name, c.ordinal_position`),
  );
  const values: StoredValue[] = [];
  for (const { table_schema: schema, table_name: table, column_name: column } of columns) {
    const quoted = (name: string) => `"${name.replaceAll('"', '""')}"`;
    const rows = rowsOf<{ v: string | null }>(
      await db.execute(sql.raw(`select ${quoted(column)}::text as v from ${quoted(schema)}.${quoted(table)}`)),
    );
    for (const { v } of rows) if (v !== null) values.push({ table: `${schema}.${table}`, column, value: v });
  }
  return values;
}
