/**
 * The documentation's code works as written. Every TypeScript snippet in
 * README.md and docs/ is typechecked (strict, the project's tsconfig) as a
 * module of its own; every shell snippet says whether it runs here, and the
 * ones that can run offline are run; configuration snippets name only
 * variables Linkgate reads (.env.example lists every one).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PAGES = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

interface Snippet {
  page: string;
  line: number;
  lang: string;
  code: string;
  /** The HTML comment just before the fence, if any: `sh: run`, `ts-prelude: …`, `quickstart:env`. */
  marker: string | undefined;
}

function snippets(): Snippet[] {
  const found: Snippet[] = [];
  for (const page of PAGES) {
    const text = readFileSync(join(ROOT, page), 'utf8');
    for (const m of text.matchAll(/(?:<!-- ([^\n]*?) -->\s*\n)?([ \t]*)```(ts|sh)\n([\s\S]*?)\n[ \t]*```/g)) {
      const indent = m[2]!;
      const code = m[4]!
        .split('\n')
        .map((line) => (line.startsWith(indent) ? line.slice(indent.length) : line))
        .join('\n');
      found.push({ page, line: text.slice(0, m.index).split('\n').length, lang: m[3]!, code, marker: m[1] });
    }
  }
  return found;
}

const all = snippets();
const ts = all.filter((s) => s.lang === 'ts');
const sh = all.filter((s) => s.lang === 'sh');
const where = (s: Snippet) => `${s.page}:${s.line}`;

const made: string[] = [];
afterAll(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

describe('TypeScript snippets', () => {
  it('exist (the count guards against the extraction silently finding none)', () => {
    expect(ts.length).toBeGreaterThanOrEqual(4);
  });

  it('typecheck, strict, each as a module of its own', { timeout: 120_000 }, () => {
    // Inside the repository, so `linkgate/client`, `linkgate/provider` and the dependencies resolve as for a bot in this checkout.
    const dir = join(ROOT, 'test/.tmp/snippets');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    made.push(dir);
    const files = ts.map((snippet, i) => {
      const file = join(dir, `${snippet.page.replace(/[/.]/g, '_')}_${snippet.line}.ts`);
      const prelude = snippet.marker?.startsWith('ts-prelude: ') ? `${snippet.marker.slice('ts-prelude: '.length)}\n` : '';
      writeFileSync(file, `${prelude}${snippet.code}\nexport {};\n`);
      return file;
    });
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ extends: '../../../tsconfig.json', compilerOptions: { noEmit: true }, include: files.map((f) => f.slice(dir.length + 1)) }));
    const result = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.json')], { encoding: 'utf8' });
    const errors = result.stdout.split('\n').filter((line) => /error TS/.test(line));
    expect(errors).toEqual([]);
    expect(result.status).toBe(0);
  });
});

describe('shell snippets', () => {
  it.each(sh.map((s) => [where(s), s] as const))('%s says whether it runs here, and why not', (_where, snippet) => {
    expect(snippet.marker, 'a <!-- sh: run | env | covered by … | not run: … --> comment before the block').toMatch(/^(sh: (run|env|covered by test\/.+|not run: .+)|quickstart:\w+)$/);
    for (const file of snippet.marker!.matchAll(/test\/[\w/.-]+\.test\.ts/g)) expect(existsSync(join(ROOT, file[0])), file[0]).toBe(true);
    if (snippet.marker!.startsWith('quickstart:')) expect(existsSync(join(ROOT, 'test/e2e/quickstart.test.ts'))).toBe(true);
  });

  const variables = new Set([...readFileSync(join(ROOT, '.env.example'), 'utf8').matchAll(/^#? ?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]!));
  it.each(sh.filter((s) => s.marker === 'sh: env').map((s) => [where(s), s] as const))('%s sets only variables Linkgate reads', (_where, snippet) => {
    const names = [...snippet.code.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!);
    expect(names.length).toBeGreaterThan(0);
    // CORP_* is the example OpenID provider `corp`: its variables are <ID>_*, as .env.example's EXAMPLE_* are.
    const unknown = names.filter((name) => !variables.has(name) && !variables.has(name.replace(/^CORP_/, 'EXAMPLE_')));
    expect(unknown).toEqual([]);
  });

  it.each(sh.filter((s) => s.marker === 'sh: run').map((s) => [where(s), s] as const))('%s runs: every line exits 0', { timeout: 120_000 }, (_where, snippet) => {
    // A folder of its own that looks like a checkout (its files linked to this one's), so nothing is written here.
    const dir = mkdtempSync(join(tmpdir(), 'linkgate-snippet-'));
    made.push(dir);
    for (const entry of readdirSync(ROOT)) if (!['.env', '.linkgate', 'test', '.git'].includes(entry)) symlinkSync(join(ROOT, entry), join(dir, entry));
    const env = { PATH: process.env.PATH, HOME: process.env.HOME, ANILIST_CLIENT_ID: '12345', ANILIST_CLIENT_SECRET: 'snippet-secret', LINKGATE_RETURN_TO_ORIGINS: 'https://bot.example', npm_config_update_notifier: 'false' };
    for (const line of snippet.code.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'))) {
      const result = spawnSync('bash', ['-c', line], { cwd: dir, env, encoding: 'utf8', timeout: 90_000 });
      expect({ line, status: result.status, stderr: result.status === 0 ? '' : result.stderr }).toEqual({ line, status: 0, stderr: '' });
    }
  });
});
