/**
 * Process entry of the `linkgate` command (bin/linkgate.js loads it):
 * the only module of the command line that touches `process`.
 */
import pino from 'pino';
import { runCli } from './cli.ts';
import { COMMANDS } from './commands.ts';

/** Whether a process holding the DATA_DIR lock still runs (EPERM: it does, as another user). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

process.exitCode = await runCli(process.argv.slice(2), COMMANDS, {
  env: process.env,
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  log: pino.destination({ fd: 2, sync: true }),
  pid: process.pid,
  isAlive,
  now: Date.now,
});
