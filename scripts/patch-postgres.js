/**
 * `npm install` runs this (postinstall): it fixes two faults in postgres.js
 * 3.4.9, in both its builds (src/ for import, cjs/src/ for require). Each fix
 * is applied once (marked), and stops `npm install` when the code it expects
 * is not there: drop a fix when a postgres.js release has it.
 *
 * 1. A connection dropping while a transaction is open takes the whole
 *    process down (porsager/postgres#1208, #1154; the fixes proposed
 *    upstream, #1209 and #1215, are not released yet):
 *    - a write scheduled with setImmediate runs after the connection closed
 *      and calls `null.write` outside any promise: an uncaught TypeError;
 *    - the handle of that cleared or failed write is never reset, so every
 *      later write on the connection (its reconnect's start-up message too)
 *      waits forever, and the connection times out on every reconnect.
 *    The fix fails the write's query with CONNECTION_CLOSED instead, and
 *    clears the pending write when the connection closes.
 *
 * 2. The pool slows down for as long as it is busy (porsager/postgres#747,
 *    "speed dropped", open). Its queues (queue.js) take items from the front
 *    by moving an index and leaving `undefined` behind, and only start a
 *    fresh array when a take empties the queue. Connections also leave a
 *    queue through `remove`, which searched from the start, holes included,
 *    and never started afresh. Under steady load the busy queue is emptied
 *    by `remove`, so its array grew by one hole per query and every query
 *    scanned all of them: 50 callers over 10 connections fell from 42 000 to
 *    11 000 queries/s within 20 s, and kept falling. The fix searches from
 *    the index and starts afresh when `remove` empties the queue: a steady
 *    90 000 queries/s. test/db/postgres-driver.test.ts checks both fixes.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const patches = [
  {
    file: 'connection.js',
    mark: '/* linkgate: closed-socket write fix */',
    edits: (mark) => [
      {
        what: 'a write that runs after the connection closed fails its query',
        from: '  function nextWrite(fn) {\n    const x = socket.write(chunk, fn)',
        to:
          `  function nextWrite(fn) {\n    ${mark}\n    if (!socket) {\n      nextWriteTimer !== null && clearImmediate(nextWriteTimer)\n` +
          `      chunk = nextWriteTimer = null\n      error(Errors.connection('CONNECTION_CLOSED', options))\n      return false\n    }\n    const x = socket.write(chunk, fn)`,
      },
      {
        what: 'a closing connection drops its pending write',
        from: '    incomings = null\n    clearImmediate(nextWriteTimer)\n',
        to: '    incomings = null\n    clearImmediate(nextWriteTimer)\n    chunk = nextWriteTimer = null\n',
      },
    ],
  },
  {
    file: 'queue.js',
    mark: '/* linkgate: queue remove fix */',
    edits: (mark) => [
      {
        what: 'remove() skips the taken slots and starts afresh when it empties the queue',
        from: '    remove: (x) => {\n      const index = xs.indexOf(x)\n      return index === -1\n        ? null\n        : (xs.splice(index, 1), x)\n    },\n',
        to:
          `    remove: (x) => {\n      ${mark}\n      const at = xs.indexOf(x, index)\n      if (at === -1)\n        return null\n      xs.splice(at, 1)\n` +
          '      if (index === xs.length) {\n        index = 0\n        xs = []\n      }\n      return x\n    },\n',
      },
    ],
  },
];

// The package's `default` export is cjs/src/index.js; its root is two folders up.
const root = join(dirname(createRequire(import.meta.url).resolve('postgres')), '..', '..');
for (const build of ['src', 'cjs/src']) {
  for (const patch of patches) {
    const path = join(root, build, patch.file);
    let text = readFileSync(path, 'utf8');
    if (text.includes(patch.mark)) continue;
    for (const edit of patch.edits(patch.mark)) {
      if (!text.includes(edit.from)) {
        throw new Error(`scripts/patch-postgres.js: ${path} does not have the code to patch (${edit.what}); check whether this postgres.js version still needs the patch`);
      }
      text = text.replace(edit.from, edit.to);
    }
    writeFileSync(path, text);
  }
}
