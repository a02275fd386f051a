/**
 * One-time form tokens: a console form that makes something shown once (an
 * API key, a context secret, an app's client secret, an invite link, a
 * relink URL) carries a random token, and the gateway makes the thing only
 * for the first request that brings it. Reloading the page that answered the
 * form makes the browser send the form again: without the token that was a
 * second key (or invite) nobody ever saw.
 *
 * Nothing secret is kept: only the SHA-256 of each token spent and the id
 * of what its form made (as the audit trail names it), in
 * `console_form_tokens`, until no console session that could send its form
 * again is left; the purge deletes it after that.
 */
import * as v from 'valibot';
import type { Db } from '../db/client.ts';
import { eq } from '../db/orm.ts';
import { consoleFormTokens } from '../db/schema.ts';
import { randomToken, sha256 } from './crypto.ts';

/** The form field a token travels in. */
export const FORM_TOKEN_FIELD = 'once';

/** A form without one (or with a wrong one) did not come from the page as the gateway made it. */
export const FormToken = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{22}$/, 'this form has no valid one-time token: reload its page'));

/** A new token for one form on one page. */
export const newFormToken = (): string => randomToken(16);

export interface FormTokens {
  /**
   * Spends a token: `true` the first time; for every later request that
   * brings it, what the first one made (its audit target, `api_key:<id>`),
   * or null while it is being made (or if it failed).
   */
  spend(token: string): Promise<true | { made: string | null }>;
  /** Notes what the request that spent the token made, for the answer to a second send. */
  made(token: string, target: string): Promise<void>;
  /** Makes a token usable again: the request that spent it was refused, and made nothing. */
  release(token: string): Promise<void>;
}

/** `keepSeconds`: how long a spent token is remembered; as long as a session that holds its form can last. */
export function createFormTokens(db: Db, keepSeconds: number, now: () => number): FormTokens {
  return {
    async spend(token) {
      const tokenHash = sha256(token);
      const spent = await db
        .insert(consoleFormTokens)
        .values({ tokenHash, expiresAt: new Date(now() + keepSeconds * 1000) })
        .onConflictDoNothing()
        .returning({ tokenHash: consoleFormTokens.tokenHash });
      if (spent.length === 1) return true;
      const [earlier] = await db.select({ made: consoleFormTokens.made }).from(consoleFormTokens).where(eq(consoleFormTokens.tokenHash, tokenHash));
      return { made: earlier?.made ?? null };
    },
    async made(token, target) {
      await db.update(consoleFormTokens).set({ made: target }).where(eq(consoleFormTokens.tokenHash, sha256(token)));
    },
    async release(token) {
      await db.delete(consoleFormTokens).where(eq(consoleFormTokens.tokenHash, sha256(token)));
    },
  };
}
