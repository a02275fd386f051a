/**
 * A child process for test/db/lock.test.ts: on `race`, waits for the given
 * instant (so two racers start together), tries to lock the directory and
 * reports; on `release`, lets it go. Run by Node directly (type stripping).
 */
import { isProcessAlive, lockDataDir } from '../../src/db/lock.ts';

/**
 * The gateway's liveness check, taking a few milliseconds as it may on a
 * loaded host: it widens the window between seeing a stale lock and acting
 * on it, where two processes taking over one stale lock could collide.
 */
const isAlive = (pid: number) => {
  const until = performance.now() + 3;
  while (performance.now() < until) {
    // a slow kill(2)
  }
  return isProcessAlive(pid);
};

const held = new Map<string, () => void>();

process.on('message', (message: { kind: 'race' | 'release'; dir: string; at?: number }) => {
  if (message.kind === 'race') {
    while (Date.now() < message.at!) {
      // spin: both racers leave this loop within the same millisecond
    }
    try {
      held.set(message.dir, lockDataDir(message.dir, process.pid, isAlive));
      process.send!({ dir: message.dir, held: true });
    } catch (error) {
      process.send!({ dir: message.dir, held: false, message: (error as Error).message });
    }
  } else {
    held.get(message.dir)?.();
    held.delete(message.dir);
    process.send!({ dir: message.dir, released: true });
  }
});
process.send!({ ready: true });
