import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import * as v from 'valibot';

/** Written by gateways before this scheme: one `linkgate.lock` holding the pid. Still honoured while its process runs. */
const LEGACY_LOCK = 'linkgate.lock';
const CLAIM = /^linkgate\.(\d+)\.[0-9a-f]+\.lock$/;
const ATTEMPTS = 8;

/**
 * PGlite does not lock its data directory, and two processes on one silently
 * lose writes. The gateway holds a lock in `DATA_DIR` for its lifetime and a
 * second process refuses to start; a lock left by a process that no longer
 * runs is taken over.
 *
 * Each process creates a claim file of its own (`linkgate.<pid>.<random>.lock`,
 * O_EXCL), then lists the directory: claims of processes that no longer run
 * are removed, and if a claim of a live process is there too it withdraws
 * its own. Creating before looking makes this safe without any atomic
 * takeover: of two processes, the one that looked last saw the other's claim,
 * so at most one holds the lock. Two that start together may both withdraw;
 * they try again after a random pause, and refuse once a live holder stays.
 *
 * Limits: a process is "alive" as far as `kill(pid, 0)` tells, so processes
 * in separate pid namespaces (two containers on one volume) cannot tell each
 * other apart; run several instances on PostgreSQL instead.
 */
export function lockDataDir(dataDir: string, pid: number, isAlive: (pid: number) => boolean): () => void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  let holder = 0;
  for (let attempt = 0; attempt < ATTEMPTS; attempt += 1) {
    if (attempt > 0) pause(5 + Math.floor(Math.random() * 20));
    const mine = `linkgate.${pid}.${randomBytes(8).toString('hex')}.lock`;
    const path = join(dataDir, mine);
    const fd = openSync(path, 'wx', 0o600);
    try {
      writeSync(fd, String(pid));
    } finally {
      closeSync(fd);
    }
    const other = liveHolder(dataDir, mine, pid, isAlive);
    if (other === undefined) return () => rmSync(path, { force: true });
    rmSync(path, { force: true });
    holder = other;
  }
  throw new Error(
    `DATA_DIR ${dataDir} is in use by another Linkgate process (pid ${holder}). ` +
      'The embedded database serves one process; set DATABASE_URL to PostgreSQL to run several.',
  );
}

/**
 * The live process holding DATA_DIR's lock, if any, read without touching
 * anything (the claims of dead processes stay for the next taker to remove).
 */
export function lockHolder(dataDir: string, isAlive: (pid: number) => boolean): number | undefined {
  let names: string[];
  try {
    names = readdirSync(dataDir);
  } catch {
    return undefined; // no DATA_DIR yet: nobody holds it
  }
  for (const name of names) {
    const holder = name === LEGACY_LOCK ? legacyHolder(join(dataDir, name)) : Number(CLAIM.exec(name)?.[1] ?? Number.NaN);
    if (holder > 0 && isAlive(holder)) return holder;
  }
  return undefined;
}

const GATEWAY_FILE = 'gateway.json';
const Announcement = v.object({ pid: v.pipe(v.number(), v.integer(), v.minValue(1)), url: v.pipe(v.string(), v.url()) });
export type Announcement = v.InferOutput<typeof Announcement>;

/**
 * Where the gateway holding DATA_DIR listens, for the command line: a
 * command that cannot open the embedded database while the gateway holds it
 * asks the gateway instead (src/cli/gateway.ts). Readable by this user only;
 * the returned function removes it (at shutdown).
 */
export function announceGateway(dataDir: string, announcement: Announcement): () => void {
  const path = join(dataDir, GATEWAY_FILE);
  const partial = join(dataDir, `${GATEWAY_FILE}.${announcement.pid}.tmp`);
  rmSync(partial, { force: true });
  writeFileSync(partial, `${JSON.stringify(announcement)}\n`, { mode: 0o600, flag: 'wx' });
  // Renamed into place: a reader sees the old file or the whole new one.
  renameSync(partial, path);
  return () => {
    // Only our own: a later gateway on this DATA_DIR may have written its own meanwhile.
    if (readAnnouncement(path)?.pid === announcement.pid) rmSync(path, { force: true });
  };
}

/**
 * The gateway that `gateway.json` names, only when it is the live holder of
 * DATA_DIR's lock: a file left by a gateway that was killed, or naming a pid
 * that now belongs to another process, is not trusted.
 */
export function announcedGateway(dataDir: string, isAlive: (pid: number) => boolean): Announcement | undefined {
  const announcement = readAnnouncement(join(dataDir, GATEWAY_FILE));
  if (!announcement) return undefined;
  return lockHolder(dataDir, isAlive) === announcement.pid ? announcement : undefined;
}

function readAnnouncement(path: string): Announcement | undefined {
  try {
    const parsed = v.safeParse(Announcement, JSON.parse(readFileSync(path, 'utf8')));
    return parsed.success ? parsed.output : undefined;
  } catch {
    return undefined; // absent or not JSON
  }
}

/** The pid of another live process holding a claim, after removing the claims of dead ones. */
function liveHolder(dataDir: string, mine: string, pid: number, isAlive: (pid: number) => boolean): number | undefined {
  let live: number | undefined;
  for (const name of readdirSync(dataDir)) {
    if (name === mine) continue;
    const holder = name === LEGACY_LOCK ? legacyHolder(join(dataDir, name)) : Number(CLAIM.exec(name)?.[1] ?? Number.NaN);
    if (Number.isNaN(holder)) continue;
    // Our own pid on another claim is an earlier life of this pid (a restarted container): stale too.
    if (holder > 0 && holder !== pid && isAlive(holder)) live ??= holder;
    else rmSync(join(dataDir, name), { force: true });
  }
  return live;
}

function legacyHolder(file: string): number {
  try {
    const holder = Number.parseInt(readFileSync(file, 'utf8'), 10);
    return Number.isInteger(holder) ? holder : 0;
  } catch {
    return Number.NaN; // gone meanwhile
  }
}

/** Whether a process runs, as far as `kill(pid, 0)` tells (EPERM: it runs as another user). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A synchronous pause: the lock is taken before anything else starts. */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
