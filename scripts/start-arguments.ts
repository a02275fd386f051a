/**
 * The node arguments package.json's `start` or `start:prod` runs the gateway
 * with (`node <arguments>`), for the tests and the bench, which start it as
 * those scripts do without npm in between.
 */
import { readFileSync } from 'node:fs';
import * as v from 'valibot';

const PackageScripts = v.object({ scripts: v.record(v.string(), v.string()) });

export function startArguments(script: 'start' | 'start:prod'): string[] {
  const command = v.parse(PackageScripts, JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))).scripts[script] ?? '';
  const [node, ...args] = command.split(' ');
  if (node !== 'node') throw new Error(`package.json's ${script} does not start with node: ${command}`);
  return args;
}
