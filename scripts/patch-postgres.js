/**
 * `npm install` runs this (postinstall): it fixes a fault in postgres.js
 * 3.4.x that takes the whole process down when a connection to PostgreSQL
 * drops while a transaction is open (porsager/postgres#1208, #1154; the fixes
 * proposed upstream, #1209 and #1215, are not released yet):
 *
 * - a write scheduled with setImmediate runs after the connection closed and
 *   calls `null.write` outside any promise: an uncaught TypeError;
 * - the handle of that cleared or failed write is never reset, so every
 *   later write on the connection (its reconnect's start-up message too)
 *   waits forever, and the connection times out on every reconnect.
 *
 * The patch fails the write's query with CONNECTION_CLOSED instead, and
 * clears the pending write when the connection closes. It is applied once
 * (marked), and stops `npm install` when the code it expects is not there:
 * drop this script when a fixed postgres.js is released.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const MARK = '/* linkgate: closed-socket write fix */';

const edits = [
  {
    what: 'a write that runs after the connection closed fails its query',
    from: '  function nextWrite(fn) {\n    const x = socket.write(chunk, fn)',
    to:
      `  function nextWrite(fn) {\n    ${MARK}\n    if (!socket) {\n      nextWriteTimer !== null && clearImmediate(nextWriteTimer)\n` +
      `      chunk = nextWriteTimer = null\n      error(Errors.connection('CONNECTION_CLOSED', options))\n      return false\n    }\n    const x = socket.write(chunk, fn)`,
  },
  {
    what: 'a closing connection drops its pending write',
    from: '    incomings = null\n    clearImmediate(nextWriteTimer)\n',
    to: '    incomings = null\n    clearImmediate(nextWriteTimer)\n    chunk = nextWriteTimer = null\n',
  },
];

// The package's `default` export is cjs/src/index.js; its root is two folders up.
const root = join(dirname(createRequire(import.meta.url).resolve('postgres')), '..', '..');
for (const file of ['src/connection.js', 'cjs/src/connection.js']) {
  const path = join(root, file);
  let text = readFileSync(path, 'utf8');
  if (text.includes(MARK)) continue;
  for (const edit of edits) {
    if (!text.includes(edit.from)) {
      throw new Error(`scripts/patch-postgres.js: ${path} does not have the code to patch (${edit.what}); check whether this postgres.js version still needs the patch`);
    }
    text = text.replace(edit.from, edit.to);
  }
  writeFileSync(path, text);
}
