import { SignJWT } from 'jose';
import { randomUUID } from 'node:crypto';
import { TEST_SECRETS } from './gateway.ts';

export interface MintOptions {
  /** Defaults to the test signing secret. */
  secret?: string;
  /** Epoch ms the context is issued at (a test clock); default now. */
  now?: number;
  ttlSeconds?: number;
  /** Extra claims (`name`, `return_to`, …). */
  claims?: Record<string, unknown>;
  /** Default: a random UUID. */
  jti?: string;
}

/** A link context signed with jose, the way a bot signs one — not with our own signing code. */
export function mintContext(provider: string, userId: string, options: MintOptions = {}): Promise<string> {
  const iat = Math.floor((options.now ?? Date.now()) / 1000);
  return new SignJWT({ provider, ...options.claims })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(userId)
    .setJti(options.jti ?? randomUUID())
    .setIssuedAt(iat)
    .setExpirationTime(iat + (options.ttlSeconds ?? 300))
    .sign(new TextEncoder().encode(options.secret ?? TEST_SECRETS.OAUTH_CONTEXT_SIGNING_SECRET));
}
