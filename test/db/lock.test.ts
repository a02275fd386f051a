import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { announceGateway, announcedGateway, isProcessAlive, lockDataDir, lockHolder } from '../../src/db/lock.ts';

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

describe('gateway.json: where the gateway holding DATA_DIR listens', () => {
  const fresh = () => mkdtempSync(join(root, 'announce-'));
  const alive = (pid: number) => pid === process.pid || isProcessAlive(pid);

  it('names the gateway while it holds the lock, readable by its user only, and goes at shutdown', () => {
    const dir = fresh();
    const unlock = lockDataDir(dir, process.pid, alive);
    const unannounce = announceGateway(dir, { pid: process.pid, url: 'http://127.0.0.1:8000' });
    expect(lockHolder(dir, alive)).toBe(process.pid);
    expect(announcedGateway(dir, alive)).toEqual({ pid: process.pid, url: 'http://127.0.0.1:8000' });
    expect(statSync(join(dir, 'gateway.json')).mode & 0o777).toBe(0o600);
    unannounce();
    expect(readdirSync(dir).filter((name) => name.startsWith('gateway'))).toEqual([]);
    unlock();
    expect(lockHolder(dir, alive)).toBeUndefined();
  });

  it('is not trusted when its process is not the live lock holder: dead, or a pid that now holds nothing', async () => {
    const dir = fresh();
    const dead = await deadPid();
    // A killed gateway's claim and file.
    writeFileSync(join(dir, `linkgate.${dead}.0123456789abcdef.lock`), String(dead));
    writeFileSync(join(dir, 'gateway.json'), JSON.stringify({ pid: dead, url: 'http://127.0.0.1:9' }));
    expect(announcedGateway(dir, alive)).toBeUndefined();
    // Reading leaves the stale claim for the next taker.
    expect(readdirSync(dir)).toContain(`linkgate.${dead}.0123456789abcdef.lock`);
    // A live pid (ours) that holds no lock: a reused pid.
    writeFileSync(join(dir, 'gateway.json'), JSON.stringify({ pid: process.pid, url: 'http://127.0.0.1:9' }));
    expect(announcedGateway(dir, alive)).toBeUndefined();
    writeFileSync(join(dir, 'gateway.json'), 'not json');
    expect(announcedGateway(dir, alive)).toBeUndefined();
  });

  it("a gateway's shutdown leaves a later gateway's file alone", () => {
    const dir = fresh();
    const first = announceGateway(dir, { pid: 1111, url: 'http://127.0.0.1:8000' });
    announceGateway(dir, { pid: 2222, url: 'http://127.0.0.1:8001' });
    first();
    expect(readdirSync(dir)).toContain('gateway.json');
  });
});
