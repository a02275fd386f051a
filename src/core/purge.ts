import { lt } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { flows, kv, rateLimits, usedContexts } from '../db/schema.ts';

/** Deletes flows, used context ids, key-value entries and rate-limit windows whose time has passed. */
export async function purgeExpired(db: Db, now: Date): Promise<{ flows: number; usedContexts: number; kv: number; rateLimits: number }> {
  const [f, u, k, r] = await Promise.all([
    db.delete(flows).where(lt(flows.expiresAt, now)).returning({ x: flows.stateHash }),
    db.delete(usedContexts).where(lt(usedContexts.expiresAt, now)).returning({ x: usedContexts.jti }),
    db.delete(kv).where(lt(kv.expiresAt, now)).returning({ x: kv.key }),
    db.delete(rateLimits).where(lt(rateLimits.expiresAt, now)).returning({ x: rateLimits.keyHash }),
  ]);
  return { flows: f.length, usedContexts: u.length, kv: k.length, rateLimits: r.length };
}
