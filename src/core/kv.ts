import { and, eq, gt, isNull, or } from '../db/orm.ts';
import type { Db } from '../db/client.ts';
import { kv } from '../db/schema.ts';
import type { Json, KeyValueStore } from '../provider.ts';
import type { Keyring } from './crypto.ts';

export const kvAad = (namespace: string, key: string) => `kv:${JSON.stringify([namespace, key])}`;

/** A provider's own key-value store: one namespace per provider, every value sealed. */
export function createKeyValueStore(db: Db, keyring: Keyring, namespace: string, now: () => number): KeyValueStore {
  const where = (key: string) => and(eq(kv.namespace, namespace), eq(kv.key, key));
  return {
    async get(key) {
      const [row] = await db
        .select({ value: kv.value })
        .from(kv)
        .where(and(where(key), or(isNull(kv.expiresAt), gt(kv.expiresAt, new Date(now())))));
      return row ? (JSON.parse(keyring.open(row.value, kvAad(namespace, key))) as Json) : undefined;
    },
    async set(key, value, options = {}) {
      const sealed = keyring.seal(JSON.stringify(value), kvAad(namespace, key));
      const expiresAt = options.ttlSeconds === undefined ? null : new Date(now() + options.ttlSeconds * 1000);
      await db
        .insert(kv)
        .values({ namespace, key, value: sealed, expiresAt })
        .onConflictDoUpdate({ target: [kv.namespace, kv.key], set: { value: sealed, expiresAt } });
    },
    async delete(key) {
      await db.delete(kv).where(where(key));
    },
  };
}
