/**
 * `npm run atproto:keygen`: prints a new ES256 private key as a JWK, ready
 * to put first in ATPROTO_PRIVATE_KEYS (a JSON array). With the current
 * value as an argument, prints the rotated array: the new key first (new
 * sessions use it), the old ones kept (their sessions still refresh with them).
 */
import { generateKeyPairSync } from 'node:crypto';

const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
const key = { ...jwk, kid: `k${new Date().toISOString().slice(0, 10).replaceAll('-', '')}-${Math.random().toString(36).slice(2, 6)}`, alg: 'ES256' };

const current = process.argv[2];
let existing: unknown[] = [];
if (current) {
  try {
    const parsed: unknown = JSON.parse(current);
    if (!Array.isArray(parsed)) throw new Error('not an array');
    existing = parsed;
  } catch {
    console.error('linkgate atproto:keygen: the argument must be the current ATPROTO_PRIVATE_KEYS (a JSON array)');
    process.exit(1);
  }
}
console.log(JSON.stringify([key, ...existing]));
