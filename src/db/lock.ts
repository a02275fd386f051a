import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/**
 * PGlite does not lock its data directory, and two processes on one silently
 * lose writes. The gateway holds `DATA_DIR/linkgate.lock` (its pid inside)
 * for its lifetime; a second process refuses to start. A lock left by a
 * process that no longer runs is taken over.
 */
export function lockDataDir(dataDir: string, pid: number, isAlive: (pid: number) => boolean): () => void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = join(dataDir, 'linkgate.lock');
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, String(pid));
      closeSync(fd);
      return () => rmSync(file, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = Number.parseInt(readFileSync(file, 'utf8'), 10);
      if (Number.isInteger(holder) && holder > 0 && holder !== pid && isAlive(holder)) {
        throw new Error(
          `DATA_DIR ${dataDir} is in use by another Linkgate process (pid ${holder}). ` +
            'The embedded database serves one process; set DATABASE_URL to PostgreSQL to run several.',
        );
      }
      rmSync(file, { force: true });
    }
  }
  throw new Error(`could not lock DATA_DIR ${dataDir}`);
}
