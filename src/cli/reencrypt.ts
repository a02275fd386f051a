/**
 * `npm run reencrypt`: re-seals every stored credential, flow and key-value
 * entry under the first key of LINKGATE_ENCRYPTION_KEYS. Rotate a key by
 * putting the new one first, restarting, running this, then dropping the old.
 */
import { join } from 'node:path';
import { parseConfig, withDevelopmentSecrets } from '../config.ts';
import { createKeyring } from '../core/crypto.ts';
import { reencryptAll } from '../core/reencrypt.ts';
import { openDatabase } from '../db/client.ts';
import { lockDataDir } from '../db/lock.ts';

async function main(): Promise<void> {
  const config = parseConfig(withDevelopmentSecrets(process.env).env);
  // PGlite serves one process: with the embedded database, stop the gateway first.
  const unlock = config.databaseUrl ? undefined : lockDataDir(config.dataDir, process.pid, () => true);
  const database = await openDatabase({ url: config.databaseUrl, dataDir: join(config.dataDir, 'pgdata') });
  try {
    await database.migrate();
    const report = await reencryptAll(database.db, createKeyring(config.encryptionKeys));
    console.log(JSON.stringify({ primaryKid: config.encryptionKeys[0]!.kid, ...report }));
  } finally {
    await database.close();
    unlock?.();
  }
}

main().catch((error: unknown) => {
  console.error(`linkgate reencrypt: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
