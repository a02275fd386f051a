/**
 * scripts/patch-postgres.js fix 2: postgres.js's queues must not keep a slot
 * for every item that ever passed through them. Unpatched, the pool's busy
 * queue grew by one `undefined` per query under steady load and every query
 * scanned them all (porsager/postgres#747), so a gateway slowed down for as
 * long as it was busy. What the queues hold is read through the V8
 * inspector; the speed itself is the benchmark's business (bench/README.md).
 * (Fix 1, the closed-socket write, is test/reliability/database-outage.test.ts.)
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresDriver } from '../../src/db/orm.ts';
import { openClosureInspector, type ClosureInspector, type RemoteValue } from '../helpers/closure.ts';

interface Queue<T> {
  readonly length: number;
  push(x: T): T;
  shift(): T | undefined;
  remove(x: T): T | null;
}

// cjs/src/index.js is the package's `require` entry; the ESM build is src/ at the package root.
const cjsDir = dirname(createRequire(import.meta.url).resolve('postgres'));
const builds: Record<string, () => Promise<(initial?: unknown[]) => Queue<object>>> = {
  'CommonJS build (what the gateway loads)': async () => createRequire(import.meta.url)(join(cjsDir, 'queue.js')) as never,
  'ESM build': async () => ((await import(pathToFileURL(join(cjsDir, '..', '..', 'src', 'queue.js')).href)) as { default: never }).default,
};

let inspector: ClosureInspector;
beforeAll(() => {
  inspector = openClosureInspector();
});
afterAll(() => inspector.close());

/** The length of the array behind a queue: the `xs` its methods close over. */
async function backingLength(queuePush: RemoteValue | Queue<object>['push']): Promise<number> {
  const scopes = typeof queuePush === 'function' ? await inspector.scopes(queuePush) : await inspector.remoteScopes(queuePush.objectId!);
  const xs = await inspector.variable(scopes, 'xs');
  if (!xs?.objectId) throw new Error('the queue has no `xs`: postgres.js changed; see scripts/patch-postgres.js');
  return (await inspector.call(xs.objectId, 'function () { return this.length; }')) as number;
}

describe('postgres.js queues (patched by scripts/patch-postgres.js)', () => {
  for (const [build, load] of Object.entries(builds)) {
    it(`${build}: a queue emptied by remove() starts afresh`, async () => {
      const Queue = await load();
      const busy = Queue();
      const a = {};
      const b = {};
      // The pool's busy queue under load: connections join it, one is taken
      // for the next query (shift), another finishes and leaves (remove).
      for (let i = 0; i < 10_000; i += 1) {
        busy.push(a);
        busy.push(b);
        expect(busy.shift()).toBe(a);
        expect(busy.remove(b)).toBe(b);
        expect(busy.length).toBe(0);
      }
      // Unpatched: 10 000 slots, one per shift.
      expect(await backingLength(busy.push)).toBe(0);

      // Still a queue: first in, first out, and remove() takes any item.
      const [c, d, e] = [{}, {}, {}];
      busy.push(c);
      busy.push(d);
      busy.push(e);
      expect(busy.remove(d)).toBe(d);
      expect(busy.remove(d)).toBeNull();
      expect(busy.shift()).toBe(c);
      expect(busy.shift()).toBe(e);
      expect(busy.length).toBe(0);
    });
  }

  it.skipIf(!process.env.TEST_DATABASE_URL)('after 4 000 queries from 40 callers over 4 connections, no pool queue holds more than the pool', async () => {
    const { postgres } = postgresDriver();
    const sql = postgres(process.env.TEST_DATABASE_URL!, { max: 4, onnotice: () => {} });
    try {
      let left = 4_000;
      await Promise.all(
        Array.from({ length: 40 }, async () => {
          while (left > 0) {
            left -= 1;
            const [row] = await sql<{ n: number }[]>`select ${left}::int as n`;
            expect(typeof row!.n).toBe('number');
          }
        }),
      );
      const pool = await inspector.scopes(sql);
      const sizes: Record<string, number> = {};
      for (const name of ['open', 'closed', 'ended', 'connecting', 'reserved', 'busy', 'full', 'queries']) {
        const queue = await inspector.variable(pool, name);
        const push = (await inspector.properties(queue!.objectId!)).result.find((p) => p.name === 'push')!.value!;
        sizes[name] = await backingLength(push);
      }
      // Unpatched, `busy` held a slot for nearly every query.
      for (const size of Object.values(sizes)) expect(size).toBeLessThanOrEqual(4);
      expect(Object.values(sizes).reduce((a, b) => a + b)).toBeGreaterThan(0); // the connections are somewhere
    } finally {
      await sql.end();
    }
  });
});
