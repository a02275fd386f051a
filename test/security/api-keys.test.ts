import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKeyCheck } from '../../src/core/crypto.ts';
import { openClosureInspector, type ClosureInspector, type RemoteValue } from '../helpers/closure.ts';

/**
 * The API key check keeps the configured keys only as SHA-256 digests and
 * compares digests: what its closure holds is read back through the V8
 * inspector (the `[[Scopes]]` of the function), so a check that kept or
 * compared the keys themselves would show them there.
 *
 * That the comparison takes the same time whichever key (or how much of one)
 * matched is not tested here: the difference a plain string comparison makes
 * is a few nanoseconds, far below what a test on a shared machine can measure
 * without being flaky. It rests on `timingSafeEqual` over fixed-length
 * digests, every digest compared on every call (src/core/crypto.ts).
 */
let inspector: ClosureInspector;
beforeAll(() => {
  inspector = openClosureInspector();
});
afterAll(() => inspector.close());

/** Every value the function's closures hold, as text: strings as they are, buffers and typed arrays as hex. */
async function closureContents(fn: unknown): Promise<{ names: string[]; texts: string[] }> {
  const names: string[] = [];
  const texts: string[] = [];
  const seen = new Set<string>();
  async function walk(value: RemoteValue | undefined, depth: number): Promise<void> {
    if (!value || depth > 6) return;
    if (value.type === 'string') texts.push(String(value.value));
    if (!value.objectId || value.type !== 'object' || seen.has(value.objectId)) return;
    seen.add(value.objectId);
    if (value.subtype === 'typedarray' || value.subtype === 'arraybuffer') {
      // Read the bytes back through the inspector.
      texts.push(String(await inspector.call(value.objectId, 'function () { return Buffer.from(this.buffer ?? this, this.byteOffset ?? 0, this.byteLength).toString("hex"); }')));
      return;
    }
    const { result: props, internalProperties = [] } = await inspector.properties(value.objectId);
    for (const prop of [...props, ...internalProperties].filter((p) => p.name !== '__proto__' && p.name !== '[[Prototype]]')) {
      if (depth <= 1) names.push(prop.name);
      await walk(prop.value, depth + 1);
    }
  }
  // Global scope aside: only the closure's own variables.
  for (const scope of await inspector.scopes(fn)) await walk(scope, 0);
  return { names, texts };
}

describe('the API key check', () => {
  it('holds the SHA-256 digests of the keys and not the keys', async () => {
    const keys = [`lg_${randomBytes(24).toString('hex')}`, `lg_${randomBytes(24).toString('hex')}`];
    const check = createApiKeyCheck(keys);
    expect(check(keys[0]!)).toBe(true);
    expect(check(keys[1]!)).toBe(true);
    expect(check(`${keys[0]!.slice(0, -1)}x`)).toBe(false);

    const { names, texts } = await closureContents(check);
    const everything = texts.join('\n');
    // The digests are there (the walk does see what the closure holds) …
    for (const key of keys) expect(everything).toContain(createHash('sha256').update(key).digest('hex'));
    // … and the keys are not, in any form.
    for (const key of keys) {
      expect(everything).not.toContain(key);
      expect(everything).not.toContain(Buffer.from(key).toString('hex'));
    }
    expect(names).not.toContain('keys');
  });
});
