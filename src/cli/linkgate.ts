/**
 * Process entry of the `linkgate` command (bin/linkgate.js loads it):
 * the only module of the command line that touches `process`.
 */
import pino from 'pino';
import { isProcessAlive } from '../db/lock.ts';
import { runCli } from './cli.ts';
import { COMMANDS } from './commands.ts';

process.exitCode = await runCli(process.argv.slice(2), COMMANDS, {
  env: process.env,
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  log: pino.destination({ fd: 2, sync: true }),
  pid: process.pid,
  isAlive: isProcessAlive,
  now: Date.now,
});
