import { and, isNull, lt, ne } from '../db/orm.ts';
import type { Db } from '../db/client.ts';
import { consoleFormTokens, consoleInvites, flows, kv, loginSessions, oidcPayloads, rateLimits, usedContexts, webhookDeliveries, webSessions } from '../db/schema.ts';
import { LINK_EVENT_RETENTION_DAYS, purgeLinkEvents } from './link-events.ts';
import { endedSessions } from './web-sessions.ts';

/** How long the webhook delivery log keeps what was delivered or given up on. */
export const DELIVERY_LOG_DAYS = 30;

/**
 * Deletes flows, used context ids, key-value entries, rate-limit windows and
 * the OpenID Provider's sessions, codes and tokens and the RPC sign-ins
 * (LoginService: the sweep, 30 minutes after each began) whose time has
 * passed, cookie sessions a day after they ended, old finished webhook deliveries,
 * link events older than their retention, console invites that expired
 * unused (a used one is kept: it is what makes its owner one), and the
 * console's spent form tokens once no session could send them. Never the audit
 * trail: it is append-only (src/core/audit.ts).
 */
export async function purgeExpired(
  db: Db,
  now: Date,
  options: { linkEventRetentionDays?: number } = {},
): Promise<{ flows: number; usedContexts: number; kv: number; rateLimits: number; webhookDeliveries: number; openIdPayloads: number; webSessions: number; linkEvents: number; loginSessions: number; consoleInvites: number; consoleFormTokens: number }> {
  const logStart = new Date(now.getTime() - DELIVERY_LOG_DAYS * 24 * 3600 * 1000);
  const [f, u, k, r, w, o, s, e, l, i, t] = await Promise.all([
    db.delete(flows).where(lt(flows.expiresAt, now)).returning({ x: flows.stateHash }),
    db.delete(usedContexts).where(lt(usedContexts.expiresAt, now)).returning({ x: usedContexts.jti }),
    db.delete(kv).where(lt(kv.expiresAt, now)).returning({ x: kv.key }),
    db.delete(rateLimits).where(lt(rateLimits.expiresAt, now)).returning({ x: rateLimits.keyHash }),
    db
      .delete(webhookDeliveries)
      .where(and(ne(webhookDeliveries.status, 'pending'), lt(webhookDeliveries.createdAt, logStart)))
      .returning({ x: webhookDeliveries.id }),
    db.delete(oidcPayloads).where(lt(oidcPayloads.expiresAt, now)).returning({ x: oidcPayloads.idHash }),
    db.delete(webSessions).where(endedSessions(now)).returning({ x: webSessions.idHash }),
    purgeLinkEvents(db, now, options.linkEventRetentionDays ?? LINK_EVENT_RETENTION_DAYS),
    db.delete(loginSessions).where(lt(loginSessions.expiresAt, now)).returning({ x: loginSessions.sessionHash }),
    db.delete(consoleInvites).where(and(isNull(consoleInvites.usedAt), lt(consoleInvites.expiresAt, now))).returning({ x: consoleInvites.idHash }),
    db.delete(consoleFormTokens).where(lt(consoleFormTokens.expiresAt, now)).returning({ x: consoleFormTokens.tokenHash }),
  ]);
  return { flows: f.length, usedContexts: u.length, kv: k.length, rateLimits: r.length, webhookDeliveries: w.length, openIdPayloads: o.length, webSessions: s.length, linkEvents: e, loginSessions: l.length, consoleInvites: i.length, consoleFormTokens: t.length };
}
