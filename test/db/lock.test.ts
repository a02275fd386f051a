import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isProcessAlive, lockDataDir } from '../../src/db/lock.ts';

const RACER = fileURLToPath(new URL('../helpers/lock-racer.ts', import.meta.url));
const ROUNDS = 25;
const root = mkdtempSync(join(tmpdir(), 'linkgate-lock-'));

interface Racer {
  child: ChildProcess;
  next(): Promise<Record<string, unknown>>;
}

function startRacer(): Promise<Racer> {
  const child = fork(RACER, [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const inbox: Array<Record<string, unknown>> = [];
  const waiting: Array<(m: Record<string, unknown>) => void> = [];
  child.on('message', (m: Record<string, unknown>) => (waiting.length > 0 ? waiting.shift()!(m) : inbox.push(m)));
  const racer = { child, next: () => (inbox.length > 0 ? Promise.resolve(inbox.shift()!) : new Promise<Record<string, unknown>>((r) => waiting.push(r))) };
  return racer.next().then(() => racer);
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid!;
}

let racers: Racer[] = [];
beforeAll(async () => {
  racers = await Promise.all([startRacer(), startRacer()]);
});
afterAll(() => {
  for (const { child } of racers) child.kill();
  rmSync(root, { recursive: true, force: true });
});

describe('the DATA_DIR lock', () => {
  it('refuses a second holder while the first runs, and names its pid', () => {
    const dir = join(root, 'live');
    const release = lockDataDir(dir, process.pid, isProcessAlive);
    const other = racers[0]!.child.pid!;
    expect(() => lockDataDir(dir, other, isProcessAlive)).toThrow(`is in use by another Linkgate process (pid ${process.pid})`);
    release();
    expect(readdirSync(dir)).toEqual([]);
    lockDataDir(dir, other, isProcessAlive)();
  });

  it(`gives a stale lock to exactly one of two processes racing for it (${ROUNDS} rounds)`, async () => {
    const stale = await deadPid();
    const outcomes: string[] = [];
    for (let round = 0; round < ROUNDS; round += 1) {
      const dir = join(root, `race-${round}`);
      mkdirSync(dir);
      // Left by a crashed gateway: the old single lock file, or a claim of the current scheme.
      if (round % 2 === 0) writeFileSync(join(dir, 'linkgate.lock'), String(stale));
      else writeFileSync(join(dir, `linkgate.${stale}.0123456789abcdef.lock`), String(stale));
      const at = Date.now() + 40;
      for (const racer of racers) racer.child.send({ kind: 'race', dir, at });
      const answers = await Promise.all(racers.map((r) => r.next()));
      outcomes.push(answers.map((a) => (a.held ? 'held' : 'refused')).join('+'));
      for (const racer of racers) racer.child.send({ kind: 'release', dir });
      await Promise.all(racers.map((r) => r.next()));
    }
    expect(outcomes.filter((o) => o !== 'held+refused' && o !== 'refused+held')).toEqual([]);
  }, 60_000);
});
