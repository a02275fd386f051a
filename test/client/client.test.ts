/**
 * The typed client's source (`linkgate/client`, packages/client/src/index.ts)
 * against a real gateway (test/client/scenarios.ts; package.test.ts runs the
 * same cases on the built package), and the example bot commands built on it.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { createLinkgateClient } from 'linkgate/client';
import { API_KEY } from '../helpers/gateway.ts';
import { ROOT } from '../helpers/process.ts';
import { completeLink, describeClient, useClientGateway } from './scenarios.ts';

const at = useClientGateway();

describeClient('linkgate/client', () => import('linkgate/client'), at, 'discord');

describe('the example bot commands (examples/bot-commands.ts)', () => {
  it('/whoami asks to link first, /register gives a link and confirms once the user finishes, then /whoami knows them', async () => {
    const { botCommands } = await import('../../examples/bot-commands.ts');
    const bot = botCommands(createLinkgateClient({ baseUrl: at.baseUrl, apiKey: API_KEY, timeoutMs: 5000 }), 'pin');
    expect(await bot.whoami('discord:42')).toMatch(/^Please link your account first: http:\/\/127\.0\.0\.1:8000\/oauth\/pin\/start\?context=/);
    const reply = await bot.register('discord:42');
    const url = /(http\S+)$/.exec(reply)![1]!;
    const confirmation = bot.registered('discord:42', 20);
    await completeLink(at.baseUrl, url, 'lovelace');
    expect(await confirmation).toBe('Linked! You are lovelace.');
    expect(await bot.whoami('discord:42')).toMatch(/^You are lovelace \(linked \d{4}-\d{2}-\d{2}\)\.$/);
    expect(await bot.register('discord:42')).toBe('You are already linked as lovelace.');
  });
});

/** `node examples/bot-commands.ts …` as the README runs it, from a terminal. */
function runExample(args: string[], gatewayUrl: string, onOutput?: (stdout: string) => void) {
  const child = spawn(process.execPath, ['examples/bot-commands.ts', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, LINKGATE_URL: gatewayUrl, LINKGATE_API_KEY: API_KEY },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
    onOutput?.(stdout);
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

describe('the example bot commands run from a terminal', () => {
  it('on a gateway with the default providers and no variables, says AniList is not configured and what it needs, for /whoami and /register', async () => {
    const expected = 'Linking is not available yet: AniList is not configured (missing ANILIST_CLIENT_ID, ANILIST_CLIENT_SECRET).\n';
    for (const command of ['whoami', 'register']) {
      expect(await runExample([command, '80351110224678912', 'anilist'], at.standardUrl)).toEqual({ code: 0, stdout: expected, stderr: '' });
    }
  });

  it('register prints a link and waits for the user to finish it; whoami then names them', { timeout: 60_000 }, async () => {
    let opened: Promise<void> | undefined;
    const registered = await runExample(['register', 'discord:77', 'pin'], at.baseUrl, (stdout) => {
      const url = /(http:\/\/\S+\/oauth\/pin\/start\?context=\S+)/.exec(stdout)?.[1];
      if (url && !opened) opened = completeLink(at.baseUrl, url, 'hopper');
    });
    await opened;
    expect(registered.code).toBe(0);
    expect(registered.stdout).toMatch(/^Open this link to connect your account \(it works once, for a few minutes\): http\S+\nLinked! You are hopper\.\n$/);
    const whoami = await runExample(['whoami', 'discord:77', 'pin'], at.baseUrl);
    expect(whoami).toMatchObject({ code: 0, stderr: '' });
    expect(whoami.stdout).toMatch(/^You are hopper \(linked \d{4}-\d{2}-\d{2}\)\.\n$/);
  });
});
