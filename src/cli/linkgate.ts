/**
 * Process entry of the `linkgate` command (bin/linkgate.js loads it):
 * the only module of the command line that touches `process`.
 */
import pino from 'pino';
import { withDotEnv, type Env } from '../config.ts';
import { isProcessAlive } from '../db/lock.ts';
import { runCli } from './cli.ts';
import { COMMANDS } from './commands.ts';

let env: Env;
try {
  // The working directory's .env, under the real environment, as `npm start` reads it.
  env = withDotEnv(process.env, process.cwd());
} catch (error) {
  process.stderr.write(`linkgate: configuration error: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}

process.exitCode = await runCli(process.argv.slice(2), COMMANDS, {
  env,
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  log: pino.destination({ fd: 2, sync: true }),
  pid: process.pid,
  isAlive: isProcessAlive,
  now: Date.now,
  stdio: { input: process.stdin, output: process.stdout },
  async readStdin() {
    let text = '';
    for await (const chunk of process.stdin) text += String(chunk);
    return text;
  },
});
