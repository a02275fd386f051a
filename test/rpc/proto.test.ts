/**
 * The committed TypeScript in src/rpc/gen is what `npm run proto:generate`
 * makes from proto/ today, and proto/ passes `buf lint` (npm run proto:lint).
 * buf and protoc-gen-es come from npm (devDependencies): no network needed.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/process.ts';

const out = mkdtempSync(join(tmpdir(), 'linkgate-proto-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

const buf = (...args: string[]) =>
  spawnSync(join(ROOT, 'node_modules/.bin/buf'), args, { cwd: ROOT, encoding: 'utf8', env: { ...process.env, PATH: `${join(ROOT, 'node_modules/.bin')}:${process.env.PATH}` } });

function files(dir: string): Record<string, string> {
  const found: Record<string, string> = {};
  const walk = (at: string) => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) walk(path);
      else found[relative(dir, path)] = readFileSync(path, 'utf8');
    }
  };
  walk(dir);
  return found;
}

describe('proto/ and its generated code', () => {
  it('src/rpc/gen is up to date with proto/', () => {
    const generated = buf('generate', '--output', out);
    expect(generated.stderr).toBe('');
    expect(generated.status).toBe(0);
    const fresh = files(join(out, 'src/rpc/gen'));
    expect(Object.keys(fresh).sort()).toEqual(['google/rpc/error_details_pb.ts', 'linkgate/v1/links_pb.ts', 'linkgate/v1/login_pb.ts']);
    expect(files(join(ROOT, 'src/rpc/gen'))).toEqual(fresh);
  });

  it('passes buf lint', () => {
    const linted = buf('lint');
    expect(linted.stdout + linted.stderr).toBe('');
    expect(linted.status).toBe(0);
  });
});
