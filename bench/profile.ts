/**
 * Reads a V8 CPU profile (`node --cpu-prof`) and says where the time went:
 * self time per area (our src/ files, each package under node_modules, Node's
 * internals, the garbage collector) and the functions with the most self time.
 * Used by `BENCH_PROFILE=<dir> npm run bench`; also runs alone:
 * `node --import tsx bench/profile.ts <file.cpuprofile>`.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function area(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return 'node internals';
  const ours = /\/(src|providers|bench)\/(.+)$/.exec(url);
  return ours ? `${ours[1]}/${ours[2]}` : url;
}

/** With `requests` (how many the profiled process answered), each row also says its CPU time per request. */
export function summarize(file: string, top = 20, requests?: number): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const perArea = new Map<string, number>();
  const perFunction = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i += 1) {
    const node = byId.get(profile.samples[i]!)!;
    const micros = profile.timeDeltas[i] ?? 0;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') continue;
    total += micros;
    const where = area(url, functionName);
    perArea.set(where, (perArea.get(where) ?? 0) + micros);
    const name = `${functionName || '(anonymous)'} ${url ? `${where}:${lineNumber + 1}` : ''}`.trim();
    perFunction.set(name, (perFunction.get(name) ?? 0) + micros);
  }
  const rows = (entries: Map<string, number>, count: number) =>
    [...entries]
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(([name, micros]) => `| ${((100 * micros) / total).toFixed(1)} % |${requests ? ` ${(micros / requests).toFixed(1)} |` : ''} ${name} |`);
  const perRequest = requests ? ' µs per request |' : '';
  const rule = requests ? ' --- |' : '';
  return [
    `CPU time, not idle: ${(total / 1e6).toFixed(2)} s${requests ? ` for ${requests} requests: ${(total / requests).toFixed(1)} µs per request` : ''}`,
    '',
    `| share |${perRequest} area |`,
    `| --- |${rule} --- |`,
    ...rows(perArea, 15),
    '',
    `| share |${perRequest} function (self time) |`,
    `| --- |${rule} --- |`,
    ...rows(perFunction, top),
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node --import tsx bench/profile.ts <file.cpuprofile>\n');
    process.exit(2);
  }
  process.stdout.write(`${summarize(file)}\n`);
}
