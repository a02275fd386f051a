import { lt } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { flows, kv, usedContexts } from '../db/schema.ts';

/** Deletes flows, used context ids and key-value entries whose time has passed. */
export async function purgeExpired(db: Db, now: Date): Promise<{ flows: number; usedContexts: number; kv: number }> {
  const [f, u, k] = await Promise.all([
    db.delete(flows).where(lt(flows.expiresAt, now)).returning({ x: flows.stateHash }),
    db.delete(usedContexts).where(lt(usedContexts.expiresAt, now)).returning({ x: usedContexts.jti }),
    db.delete(kv).where(lt(kv.expiresAt, now)).returning({ x: kv.key }),
  ]);
  return { flows: f.length, usedContexts: u.length, kv: k.length };
}
