/**
 * Getting the right Node: `.nvmrc` names the Node the README asks for, and
 * `npm install` on a Node older than package.json's `engines` stops at once
 * with npm's one-line refusal (`.npmrc`: engine-strict), instead of
 * installing and failing later in the ATProto client.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };

/** A Node older than 22.12 on this machine (Debian's, in CI), and the npm beside it. */
function olderNode(): { node: string; npm: string } | undefined {
  for (const node of [process.env.OLDER_NODE, '/usr/bin/node'].filter((p): p is string => Boolean(p))) {
    if (!existsSync(node)) continue;
    const version = spawnSync(node, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim();
    const [major = 0, minor = 0] = version.split('.').map(Number);
    const npm = ['/usr/lib/node_modules/npm/bin/npm-cli.js', join(node, '../../lib/node_modules/npm/bin/npm-cli.js')].find((p) => existsSync(p));
    if ((major < 22 || (major === 22 && minor < 12)) && npm) return { node, npm };
  }
  return undefined;
}

describe('installing', () => {
  it('.nvmrc names a Node that package.json’s engines accept (24, the current LTS)', () => {
    expect(readFileSync(join(ROOT, '.nvmrc'), 'utf8').trim()).toBe('24');
    expect(pkg.engines.node).toBe('>=22.12');
  });

  const older = olderNode();
  it.skipIf(!older)('npm install on an older Node stops with one line naming the Node it needs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'linkgate-install-'));
    try {
      for (const file of ['package.json', 'package-lock.json', '.npmrc']) copyFileSync(join(ROOT, file), join(dir, file));
      const result = spawnSync(older!.node, [older!.npm, 'install', '--dry-run', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
      expect(result.status).not.toBe(0);
      expect(result.stderr).toContain('npm error notsup Required: {"node":">=22.12"}');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
