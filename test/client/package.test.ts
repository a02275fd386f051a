/**
 * The client as it would be published: `npm pack` of packages/client (which
 * builds it), unpacked into a project's node_modules as `npm install` would
 * put it. Its ESM build (through `import`) and its CommonJS build (through
 * `require`) each pass the client's cases against a real gateway, Node
 * resolves each by the package name, and TypeScript finds its types from
 * ESM and CommonJS code, the package README's example included.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_KEY } from '../helpers/gateway.ts';
import { ROOT } from '../helpers/process.ts';
import { describeClient, useClientGateway, type ClientModule } from './scenarios.ts';

const PACKAGE = join(ROOT, 'packages/client');
const TSC = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');

let work: string;
/** A project that has the package installed. */
let project: string;
let packed: { name: string; version: string; files: Array<{ path: string }> };

function run(command: string, args: string[], cwd: string) {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'linkgate-client-package-'));
  const pack = run('npm', ['pack', '--json', '--pack-destination', work], PACKAGE);
  expect(pack.stderr).not.toMatch(/error/i);
  expect(pack.code).toBe(0);
  packed = (JSON.parse(pack.stdout) as Array<typeof packed & { filename: string }>)[0]!;
  project = join(work, 'bot');
  const installed = join(project, 'node_modules/@linkgate/client');
  mkdirSync(installed, { recursive: true });
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'bot', private: true }));
  expect(run('tar', ['-xzf', join(work, (JSON.parse(pack.stdout) as Array<{ filename: string }>)[0]!.filename), '-C', installed, '--strip-components=1'], work).code).toBe(0);
}, 60_000);
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

const at = useClientGateway();

/** Where Node sends `import('@linkgate/client')` from the project. */
function resolveImport(): string {
  const resolved = run(process.execPath, ['--input-type=module', '-e', "console.log(import.meta.resolve('@linkgate/client'))"], project);
  expect(resolved.code).toBe(0);
  return resolved.stdout.trim();
}
const projectRequire = () => createRequire(join(project, 'package.json'));

describe('npm pack of @linkgate/client', () => {
  it('holds the ESM and CommonJS builds, their declarations and the README, and has no dependencies', () => {
    expect(packed).toMatchObject({ name: '@linkgate/client', version: '0.1.0' });
    expect(packed.files.map((f) => f.path).sort()).toEqual(['README.md', 'dist/index.cjs', 'dist/index.d.cts', 'dist/index.d.mts', 'dist/index.mjs', 'package.json']);
    const manifest = JSON.parse(readFileSync(join(project, 'node_modules/@linkgate/client/package.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest.dependencies).toBeUndefined();
    expect(manifest.peerDependencies).toBeUndefined();
  });

  it('resolves to the ESM build through import and to the CommonJS build through require', () => {
    expect(resolveImport()).toMatch(/\/node_modules\/@linkgate\/client\/dist\/index\.mjs$/);
    expect(projectRequire().resolve('@linkgate/client')).toMatch(/\/node_modules\/@linkgate\/client\/dist\/index\.cjs$/);
  });

  it.each([
    ['an ES module', 'bot.mjs', "import { createLinkgateClient, NotLinkedError } from '@linkgate/client';"],
    ['CommonJS', 'bot.cjs', "const { createLinkgateClient, NotLinkedError } = require('@linkgate/client');"],
  ])('works in a bot written as %s, run by Node', async (_kind, file, load) => {
    writeFileSync(
      join(project, file),
      `${load}
const linkgate = createLinkgateClient({ baseUrl: process.env.LINKGATE_URL, apiKey: process.env.LINKGATE_API_KEY });
(async () => {
  const providers = await linkgate.listProviders();
  const error = await linkgate.requireLink('${file}', 'pin').catch((e) => e);
  console.log(JSON.stringify({ providers, notLinked: error instanceof NotLinkedError, linkUrl: error.linkUrl }));
})();
`,
    );
    // Not spawnSync: the gateway it calls answers from this process.
    const child = spawn(process.execPath, [file], { cwd: project, env: { PATH: process.env.PATH, LINKGATE_URL: at.baseUrl, LINKGATE_API_KEY: API_KEY } });
    const result = { stdout: '', stderr: '' };
    child.stdout.on('data', (chunk: Buffer) => (result.stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (result.stderr += chunk.toString('utf8')));
    expect(await new Promise((resolve) => child.once('close', resolve))).toBe(0);
    expect(result.stderr).toBe('');
    const answer = JSON.parse(result.stdout) as { providers: unknown[]; notLinked: boolean; linkUrl: string };
    expect(answer.providers).toContainEqual({ id: 'pin', displayName: 'Pin', configured: true });
    expect(answer.notLinked).toBe(true);
    expect(answer.linkUrl).toMatch(/\/oauth\/pin\/start\?context=/);
  });

  it("gives TypeScript its types from ES modules and CommonJS, and the README's example typechecks (strict)", () => {
    const readme = readFileSync(join(PACKAGE, 'README.md'), 'utf8');
    const example = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example).toContain("from '@linkgate/client'");
    writeFileSync(join(project, 'readme.mts'), example!);
    for (const file of ['types.mts', 'types.cts']) {
      writeFileSync(
        join(project, file),
        `import { createLinkgateClient, NotLinkedError, ProviderUnconfiguredError, type Link } from '@linkgate/client';
const linkgate = createLinkgateClient({ baseUrl: 'http://127.0.0.1:8000', apiKey: 'key' });
export async function name(userId: string): Promise<string> {
  const link: Link | null = await linkgate.getLink(userId, 'anilist');
  // Types, not any: a wrong use is an error.
  // @ts-expect-error externalId is a string
  const wrong: number = link!.externalId;
  const error: unknown = new NotLinkedError('not linked', 'http://127.0.0.1:8000/oauth/anilist/start?context=x');
  if (error instanceof NotLinkedError) return error.linkUrl.toUpperCase();
  if (error instanceof ProviderUnconfiguredError) return error.code;
  return String(wrong) + (link?.externalName ?? '');
}
`,
      );
    }
    const checked = run(
      process.execPath,
      [TSC, '--noEmit', '--strict', '--module', 'nodenext', '--target', 'es2022', '--lib', 'es2022', '--types', 'node', '--typeRoots', join(ROOT, 'node_modules/@types'), 'readme.mts', 'types.mts', 'types.cts'],
      project,
    );
    expect(checked.stdout + checked.stderr).toBe('');
    expect(checked.code).toBe(0);
  });
});

describeClient('@linkgate/client, ESM build (import)', async () => (await import(resolveImport())) as typeof ClientModule, at, 'esm');
describeClient('@linkgate/client, CommonJS build (require)', async () => projectRequire()('@linkgate/client') as typeof ClientModule, at, 'cjs');
