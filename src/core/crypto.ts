import { createCipheriv, createDecipheriv, createHmac, hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { blake3 } from '@noble/hashes/blake3.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { LinkgateError } from './errors.ts';
import { DEFAULT_TENANT } from './ids.ts';

export interface EncryptionKey {
  /** Short id written into every envelope, so any key of the ring can open it. */
  kid: string;
  /** 32 bytes for AES-256-GCM. */
  key: Buffer;
}

/**
 * Envelope: `v1.<kid>.<iv>.<ciphertext‖tag>`, base64url parts. The associated
 * data (for a link: tenant, user and provider) is not stored; it must be given
 * again to open, so a ciphertext copied to another row does not decrypt.
 */
export interface Keyring {
  /** The key new envelopes are sealed with. */
  readonly primaryKid: string;
  seal(plaintext: string, associatedData: string): string;
  open(envelope: string, associatedData: string): string;
  /** The key id an envelope was sealed with (for re-encryption), or undefined if it is not one. */
  kidOf(envelope: string): string | undefined;
}

const VERSION = 'v1';
const IV_BYTES = 12; // 96-bit IV, NIST SP 800-38D §8.2
const TAG_BYTES = 16;

export function createKeyring(keys: readonly EncryptionKey[]): Keyring {
  const [primary] = keys;
  if (!primary) throw new Error('a keyring needs at least one key');
  const byKid = new Map<string, Buffer>();
  for (const { kid, key } of keys) {
    if (key.length !== 32) throw new Error(`encryption key "${kid}" must be 32 bytes`);
    if (byKid.has(kid)) throw new Error(`encryption key id "${kid}" appears twice`);
    byKid.set(kid, key);
  }

  return {
    primaryKid: primary.kid,
    seal(plaintext, associatedData) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', primary.key, iv);
      cipher.setAAD(Buffer.from(associatedData, 'utf8'));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
      return [VERSION, primary.kid, iv.toString('base64url'), body.toString('base64url')].join('.');
    },
    open(envelope, associatedData) {
      const parts = envelope.split('.');
      const [version, kid, ivText, bodyText] = parts;
      const key = kid === undefined ? undefined : byKid.get(kid);
      if (parts.length !== 4 || version !== VERSION || !key || ivText === undefined || bodyText === undefined) {
        throw new LinkgateError('decrypt_failed', 'stored data is sealed with an unknown key or format');
      }
      const iv = Buffer.from(ivText, 'base64url');
      const body = Buffer.from(bodyText, 'base64url');
      if (iv.length !== IV_BYTES || body.length < TAG_BYTES) {
        throw new LinkgateError('decrypt_failed', 'stored data is truncated');
      }
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, iv);
        decipher.setAAD(Buffer.from(associatedData, 'utf8'));
        decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
        return Buffer.concat([decipher.update(body.subarray(0, body.length - TAG_BYTES)), decipher.final()]).toString('utf8');
      } catch (cause) {
        throw new LinkgateError('decrypt_failed', 'stored data does not belong here or was altered', { cause });
      }
    },
    kidOf(envelope) {
      const [version, kid] = envelope.split('.', 2);
      return version === VERSION && kid !== undefined && byKid.has(kid) ? kid : undefined;
    },
  };
}

// Tokens are cut from a pool of random bytes refilled 4 KiB at a time, as
// Node does for crypto.randomUUID(): one call into OpenSSL per ~128 tokens
// instead of one per token (the status API makes one for every link URL).
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let poolOffset = 0;

/** Random bytes as base64url: states, browser ids, PKCE verifiers, generated secrets. */
export function randomToken(bytes = 32): string {
  if (bytes > POOL_BYTES) return randomBytes(bytes).toString('base64url');
  if (poolOffset + bytes > pool.length) {
    pool = randomBytes(POOL_BYTES);
    poolOffset = 0;
  }
  const token = pool.toString('base64url', poolOffset, poolOffset + bytes);
  // Each byte is handed out once; clearing it keeps spent tokens out of the pool.
  pool.fill(0, poolOffset, poolOffset + bytes);
  poolOffset += bytes;
  return token;
}

export function sha256(text: string): string {
  return hash('sha256', text, 'base64url');
}

/**
 * What logs and Sentry see instead of a user id: the first 16 hex characters
 * of BLAKE3(USERID_HASH_SALT ‖ user id), the fingerprint the Annie Mei bot
 * and its auth service log (annie-mei/auth `identifier_fingerprint`), so one
 * user can be followed across the bot's and the gateway's logs. Stable for
 * one deployment, useless without the salt. A tenant other than `default`
 * goes in front of the id with a NUL, which no user id contains, so the same
 * id in two tenants is two users.
 */
export function createUserIdHasher(salt: string): (tenant: string, userId: string) => string {
  const encoder = new TextEncoder();
  return (tenant, userId) => {
    const input = tenant === DEFAULT_TENANT ? `${salt}${userId}` : `${salt}${tenant}\0${userId}`;
    return bytesToHex(blake3(encoder.encode(input))).slice(0, 16);
  };
}

/**
 * SHA-256 of `text` as bytes. Node 24's one-shot `hash` is 2–3 times slower
 * asked for a Buffer than for a string (880 against 314 ns for an API key
 * here), so the digest comes as latin1, one character per byte, and is
 * turned into bytes from that (382 ns): checked on every bot API request.
 */
export function sha256Bytes(text: string): Buffer {
  return Buffer.from(hash('sha256', text, 'latin1'), 'latin1');
}

/**
 * Checks a presented API key against the configured ones. Keys are kept only
 * as SHA-256 digests and every digest is compared, in constant time, whatever
 * matched, so neither timing nor memory tells a key apart.
 */
export function createApiKeyCheck(keys: readonly string[]): (presented: string) => boolean {
  const digests = keys.map(sha256Bytes);
  return (presented) => {
    const digest = sha256Bytes(presented);
    let ok = false;
    for (const known of digests) ok = timingSafeEqual(known, digest) || ok;
    return ok;
  };
}

/**
 * A key's public name: the first 12 hex characters of its SHA-256, as
 * `printf %s "$KEY" | sha256sum | cut -c1-12` prints it. It tells the
 * configured keys apart in the audit trail and gives away nothing of a
 * 256-bit key.
 */
export function keyDigestId(key: string): string {
  return hash('sha256', key, 'hex').slice(0, 12);
}

/**
 * As `createApiKeyCheck`, answering which key matched (its `keyDigestId`)
 * instead of a yes: every digest is still compared in constant time.
 */
export function createApiKeyIdentifier(keys: readonly string[]): (presented: string) => string | undefined {
  const known = keys.map((key) => ({ digest: sha256Bytes(key), id: keyDigestId(key) }));
  return (presented) => {
    const digest = sha256Bytes(presented);
    let found: string | undefined;
    for (const key of known) if (timingSafeEqual(key.digest, digest)) found = key.id;
    return found;
  };
}
