import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createApiKeyCheck, createKeyring, createUserIdHasher, randomToken, sha256Bytes } from '../../src/core/crypto.ts';
import { LinkgateError } from '../../src/core/errors.ts';

const key = (byte: number) => Buffer.alloc(32, byte);

describe('keyring', () => {
  it('seals with the first key and opens with any key of the ring', () => {
    const old = createKeyring([{ kid: 'old', key: key(1) }]);
    const sealed = old.seal('{"accessToken":"at-secret"}', 'aad');
    expect(sealed.startsWith('v1.old.')).toBe(true);
    expect(sealed).not.toContain('at-secret');

    const rotated = createKeyring([{ kid: 'new', key: key(2) }, { kid: 'old', key: key(1) }]);
    expect(rotated.open(sealed, 'aad')).toBe('{"accessToken":"at-secret"}');
    expect(rotated.kidOf(sealed)).toBe('old');
    expect(rotated.kidOf(rotated.seal('x', 'aad'))).toBe('new');
  });

  it('uses a fresh IV every time', () => {
    const ring = createKeyring([{ kid: 'k', key: key(3) }]);
    expect(ring.seal('same', 'aad')).not.toBe(ring.seal('same', 'aad'));
  });

  it('refuses other associated data, altered ciphertext and unknown keys', () => {
    const ring = createKeyring([{ kid: 'k', key: key(3) }]);
    const sealed = ring.seal('secret', 'tenant/user-1/provider');
    expect(() => ring.open(sealed, 'tenant/user-2/provider')).toThrow(LinkgateError);
    const parts = sealed.split('.');
    const body = Buffer.from(parts[3]!, 'base64url');
    body[0]! ^= 1;
    expect(() => ring.open([...parts.slice(0, 3), body.toString('base64url')].join('.'), 'tenant/user-1/provider')).toThrow(/altered/);
    const other = createKeyring([{ kid: 'other', key: key(4) }]);
    expect(() => other.open(sealed, 'tenant/user-1/provider')).toThrow(/unknown key/);
  });

  it('rejects keys that are not 32 bytes and duplicate ids', () => {
    expect(() => createKeyring([{ kid: 'k', key: Buffer.alloc(16) }])).toThrow(/32 bytes/);
    expect(() => createKeyring([{ kid: 'k', key: key(1) }, { kid: 'k', key: key(2) }])).toThrow(/twice/);
  });
});

describe('API key check', () => {
  it('accepts every configured key and nothing else', () => {
    const check = createApiKeyCheck(['a'.repeat(32), 'b'.repeat(40)]);
    expect(check('a'.repeat(32))).toBe(true);
    expect(check('b'.repeat(40))).toBe(true);
    expect(check('a'.repeat(31))).toBe(false);
    expect(check('')).toBe(false);
  });
});

describe('sha256Bytes', () => {
  it('is the SHA-256 of the text as UTF-8, byte for byte', () => {
    for (const text of ['', 'lg_abcdefghijklmnopqrstuvwxyz012345678', 'clé-ü', '鍵🔑', '\u0000\u00ff']) {
      const bytes = sha256Bytes(text);
      expect(bytes).toHaveLength(32);
      expect(bytes.equals(createHash('sha256').update(text, 'utf8').digest())).toBe(true);
    }
  });
});

describe('user id hashing', () => {
  it('is stable per salt and does not contain the id', () => {
    const hash = createUserIdHasher('salt-one-0123456789abcdef0123456789');
    const other = createUserIdHasher('salt-two-0123456789abcdef0123456789');
    const h = hash('default', '123456789012345678');
    expect(h).toBe(hash('default', '123456789012345678'));
    expect(h).not.toBe(other('default', '123456789012345678'));
    expect(h).not.toContain('123456789012345678');
  });

  it('is the Annie Mei fingerprint: the first 16 hex characters of BLAKE3(salt ‖ user id)', () => {
    // BLAKE3("abc") = 6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85 (the reference
    // implementation's value), and BLAKE3("") = af1349b9…; salt "a" and id "bc" make "abc".
    expect(createUserIdHasher('a')('default', 'bc')).toBe('6437b3ac38465133');
    expect(createUserIdHasher('')('default', '')).toBe('af1349b9f5f9a1a6');
    // Another tenant's user with the same id is another fingerprint.
    expect(createUserIdHasher('a')('acme', 'bc')).toMatch(/^[0-9a-f]{16}$/);
    expect(createUserIdHasher('a')('acme', 'bc')).not.toBe('6437b3ac38465133');
  });
});

describe('random tokens (cut from a pool of random bytes)', () => {
  it('have the length asked for and are never handed out twice, across pool refills', () => {
    const sizes = [16, 32, 48, 7, 5000]; // 5000: more than the 4 KiB pool, taken directly
    const seen = new Set<string>();
    let bytes = 0;
    for (let i = 0; i < 2000; i += 1) {
      const size = sizes[i % sizes.length]!;
      const token = randomToken(size);
      expect(Buffer.from(token, 'base64url').length).toBe(size);
      expect(token).toMatch(/^[\w-]+$/);
      seen.add(token);
      bytes += size;
    }
    expect(bytes).toBeGreaterThan(100 * 4096); // many refills
    expect(seen.size).toBe(2000);
  });

  it('are not made of the zeros a spent slot is cleared to', () => {
    // 2 000 tokens of 32 bytes: a slot handed out twice (after being cleared) would show as a run of zero bytes.
    const zeroRun = Buffer.alloc(8).toString('base64url').slice(0, 10);
    for (let i = 0; i < 2000; i += 1) expect(randomToken(32)).not.toContain(zeroRun);
  });
});
