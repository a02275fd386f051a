/** How commands print: their data as JSON with --json, else text for a person. */
import type { CliIo, ParsedArgs } from './cli.ts';

export function print(io: CliIo, args: ParsedArgs, data: unknown, text: () => string): void {
  io.out(args.json ? `${JSON.stringify(data, null, 2)}\n` : text());
}

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

/** `key: value` lines, aligned. */
export function fields(rows: [string, string][]): string {
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  return rows.map(([k, value]) => `${`${k}:`.padEnd(width)}${value}`).join('\n') + '\n';
}
