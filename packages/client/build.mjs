/**
 * Builds dist/ from the package's one source file, src/index.ts, with tsc
 * alone: index.mjs + index.d.mts (ESM) and index.cjs + index.d.cts (CommonJS).
 *
 * tsc picks a file's module format from its extension under NodeNext, so
 * the source is compiled as a copy named index.mts and one named index.cts,
 * in one run: each output gets the right extension and the right kind of
 * declaration file, with no renaming and no bundler. (Line numbers in tsc's
 * messages are those of src/index.ts.)
 *
 * `npm pack` and `npm publish` run it (prepack); in the Linkgate repository
 * also `npm run build:client`.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
// typescript's exports do not include its bin: find it beside its package.json.
const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');

const work = mkdtempSync(join(tmpdir(), 'linkgate-client-build-'));
try {
  for (const extension of ['mts', 'cts']) copyFileSync(join(here, 'src', 'index.ts'), join(work, `index.${extension}`));
  rmSync(dist, { recursive: true, force: true });
  const compiled = spawnSync(
    process.execPath,
    [
      tsc,
      '--ignoreConfig',
      '--module', 'nodenext',
      '--target', 'es2022',
      // The platform the client runs on: fetch, AbortSignal, Web Crypto (Node's globals have the same shapes).
      '--lib', 'es2022,dom',
      '--types', '',
      '--strict',
      '--declaration',
      '--outDir', dist,
      join(work, 'index.mts'),
      join(work, 'index.cts'),
    ],
    { stdio: 'inherit' },
  );
  if (compiled.status !== 0) process.exit(compiled.status ?? 1);
} finally {
  rmSync(work, { recursive: true, force: true });
}
