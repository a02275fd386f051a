/**
 * `npm run build`: the gateway as JavaScript, for `npm run start:prod` and the
 * Dockerfile, so that production does not load tsx (about 17 MB of memory,
 * and compiling on first start). docs/operating.md says when to use it;
 * docs/performance.md what it changes.
 *
 * One output file per source file, the same tree under dist/ (dist/src,
 * dist/providers), so every module keeps its identity and its place:
 * `src/config.ts` finds `../providers` beside it, `src/db/client.ts` finds
 * `../../drizzle` (copied to dist/drizzle). Imports are not bundled; the
 * relative ones are renamed from .ts/.tsx to .js, packages stay packages.
 *
 * Provider modules outside the checkout (LINKGATE_PROVIDERS_DIR) still
 * import `linkgate/provider` and `linkgate/oauth`: package.json sends those
 * to dist/ under the `linkgate-dist` condition that start:prod sets, so both
 * sides share one copy of each module.
 *
 * esbuild, already installed with tsx, does the compiling: it reads
 * tsconfig.json's JSX settings, and compiles the whole tree in well under a
 * second.
 *
 * `npm run build -- <dir>` writes to <dir> instead (the tests build into a
 * copy of the package, never into the checkout's dist/). The tree is made
 * beside its place and then put there, so a failed build leaves the last one.
 */
import { cpSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = process.argv[2] ? resolve(process.argv[2]) : join(root, 'dist');
const building = `${dist}.building-${process.pid}`;

/** The .ts and .tsx modules under `dir`, without tests and declaration files. */
function sources(dir) {
  return readdirSync(join(root, dir), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && /\.tsx?$/.test(entry.name) && !/\.(test|spec|d)\.tsx?$/.test(entry.name))
    .map((entry) => relative(root, join(entry.parentPath, entry.name)));
}

rmSync(building, { recursive: true, force: true });
try {
  await build({
    absWorkingDir: root,
    entryPoints: [...sources('src'), ...sources('providers')],
    outdir: building,
    outbase: '.',
    platform: 'node',
    format: 'esm',
    target: 'node22',
    // Stack traces (logs, Sentry) name the TypeScript lines: start:prod runs with --enable-source-maps.
    sourcemap: 'linked',
    // Bundling only to see every import: each one is left as an import, so every file stays its own module.
    bundle: true,
    logLevel: 'warning',
    plugins: [
      {
        name: 'one-file-per-module',
        setup(on) {
          on.onResolve({ filter: /.*/ }, (args) => {
            if (args.kind === 'entry-point') return undefined;
            if (/^\.\.?\//.test(args.path)) return { path: args.path.replace(/\.tsx?$/, '.js'), external: true };
            return { path: args.path, external: true };
          });
        },
      },
    ],
  });
  cpSync(join(root, 'drizzle'), join(building, 'drizzle'), { recursive: true });
} catch (error) {
  rmSync(building, { recursive: true, force: true });
  throw error;
}
rmSync(dist, { recursive: true, force: true });
renameSync(building, dist);
