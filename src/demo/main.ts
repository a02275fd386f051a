/**
 * `npm run demo`: Linkgate on a throwaway embedded database, with a local
 * OpenID provider configured as provider `demo`, and a bot's side of a link
 * played in the terminal: a link URL to open, then the stored link as the
 * bot API returns it, the webhook the bot receives (a small receiver here,
 * LINKGATE_WEBHOOK_URL) and the gateway's metrics. Enter prints a new link
 * URL at any time. Runs until Ctrl-C, then stops the gateway and deletes
 * its data.
 *
 * The gateway is `src/server.ts` itself, in a child process, started with an
 * environment built here from nothing (not the caller's): a developer's
 * DATABASE_URL, DATA_DIR or keys never reach it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as v from 'valibot';
import { createLinkgateClient, type Link, type LinkgateClient } from 'linkgate/client';
import { GENERATED_SECRETS, generateSecret } from '../config.ts';
import { randomToken } from '../core/crypto.ts';
import { issueMessage } from '../core/validation.ts';
import { DEMO_ACCOUNT, DemoPortError, startDemoIdp, type DemoIdp } from './idp.ts';
import { startWebhookReceiver, type WebhookEvent, type WebhookReceiver } from './webhooks.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SERVER = fileURLToPath(new URL('../server.ts', import.meta.url));
const PROVIDER = 'demo';
const USER_ID = 'demo-user';
/** Long enough for a first read of the pages; a new URL is printed when it runs out. */
const CONTEXT_TTL_SECONDS = 1800;
const READY_WITHIN_MS = 60_000;
/** The gateway's webhook worker looks for events every second. */
const WEBHOOK_WITHIN_MS = 15_000;
const STOP_WITHIN_MS = 15_000;
/** What the gateway may inherit from the caller: where programs and home are, nothing of Linkgate's. */
const INHERITED = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ', 'SYSTEMROOT'];

const port = (fallback: string) =>
  v.optional(
    v.pipe(v.string(), v.regex(/^\d+$/, 'must be a port number'), v.transform(Number), v.maxValue(65535, 'must be at most 65535')),
    fallback,
  );
const DemoEnv = v.object({
  PORT: v.pipe(port('8000'), v.minValue(1, 'must be at least 1 (the printed link needs a fixed port)')),
  DEMO_IDP_PORT: port('0'),
  LOG_LEVEL: v.optional(v.picklist(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'must be one of fatal, error, warn, info, debug, trace, silent'), 'warn'),
});

class DemoError extends Error {
  override name = 'DemoError';
}

const say = (text = '') => process.stdout.write(`${text}\n`);

async function main(): Promise<void> {
  const parsed = v.safeParse(DemoEnv, Object.fromEntries(Object.entries(process.env).filter(([, value]) => value !== undefined && value.trim() !== '')));
  if (!parsed.success) {
    const issue = parsed.issues[0];
    throw new DemoError(`${String(issue.path?.[0]?.key ?? 'environment')}: ${issueMessage({ ...issue, path: undefined })}`);
  }
  const env = parsed.output;
  const base = `http://127.0.0.1:${env.PORT}`;
  await ensurePortFree(env.PORT);

  const dataDir = mkdtempSync(join(tmpdir(), 'linkgate-demo-'));
  let idp: DemoIdp | undefined;
  let receiver: WebhookReceiver | undefined;
  let gateway: ChildProcess | undefined;
  let stopping = false;
  // Ends the demo's own requests (a pending wait) at once, so the gateway's shutdown does not wait for them.
  const ending = new AbortController();
  // Not a terminal-mode interface: Ctrl-C stays a signal for the whole process group.
  const input = createInterface({ input: process.stdin, terminal: false });

  const cleanUp = async () => {
    ending.abort();
    input.close();
    if (gateway && gateway.exitCode === null && gateway.signalCode === null) {
      const exited = new Promise((resolve) => gateway!.once('exit', resolve));
      gateway.kill('SIGTERM');
      const force = setTimeout(() => gateway!.kill('SIGKILL'), STOP_WITHIN_MS);
      await exited;
      clearTimeout(force);
    }
    await idp?.close();
    await receiver?.close();
    rmSync(dataDir, { recursive: true, force: true });
  };
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    say(`\n${signal}: stopping the gateway and the OpenID provider, deleting ${dataDir}`);
    cleanUp().then(
      () => {
        say('Stopped.');
        process.exit(0);
      },
      (error: unknown) => {
        console.error(`linkgate demo: could not stop cleanly: ${error instanceof Error ? error.message : String(error)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('Ctrl-C'));
  process.on('SIGTERM', () => stop('SIGTERM'));

  // Webhooks are printed as they arrive, once the first one has been shown after the link.
  const webhooks = { live: false, pending: [] as WebhookEvent[], arrived: () => {} };
  try {
    idp = await startDemoIdp({ port: env.DEMO_IDP_PORT, redirectUri: `${base}/oauth/${PROVIDER}/callback` });
    const secrets = Object.fromEntries(GENERATED_SECRETS.map((name) => [name, generateSecret(name)]));
    const webhookSecret = randomToken(32);
    receiver = await startWebhookReceiver({
      secret: webhookSecret,
      onEvent(event) {
        if (webhooks.live) return printWebhook(event, receiver!.url);
        webhooks.pending.push(event);
        webhooks.arrived();
      },
      onRefused(why) {
        say();
        say(`The webhook receiver refused ${why}.`);
      },
    });
    gateway = startGateway({
      ...Object.fromEntries(INHERITED.flatMap((name) => (process.env[name] === undefined ? [] : [[name, process.env[name]]]))),
      ...secrets,
      NODE_ENV: 'development',
      HOST: '127.0.0.1',
      PORT: String(env.PORT),
      DATA_DIR: dataDir,
      LOG_LEVEL: env.LOG_LEVEL,
      OAUTH_CONTEXT_TTL_SECONDS: String(CONTEXT_TTL_SECONDS),
      OIDC_PROVIDERS: PROVIDER,
      DEMO_ISSUER: idp.issuer,
      DEMO_CLIENT_ID: idp.clientId,
      DEMO_CLIENT_SECRET: idp.clientSecret,
      DEMO_SCOPES: 'openid profile email',
      DEMO_DISPLAY_NAME: 'Demo IdP',
      LINKGATE_WEBHOOK_URL: receiver.url,
      LINKGATE_WEBHOOK_SECRET: webhookSecret,
      LINKGATE_METRICS: 'true',
    });
    gateway.once('exit', (code, signal) => {
      if (stopping) return;
      stopping = true;
      console.error(`linkgate demo: the gateway stopped unexpectedly (${signal ?? `exit code ${code}`}); its output is above.`);
      cleanUp().finally(() => process.exit(1));
    });
    await waitUntilReady(base, gateway);

    const apiKey = secrets.LINKGATE_API_KEYS!;
    const client = createLinkgateClient({
      baseUrl: base,
      apiKey,
      fetch: (input, init) => fetch(input, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, ending.signal]) : ending.signal }),
    });
    const provider = (await client.listProviders()).find((p) => p.id === PROVIDER);
    if (!provider?.configured) throw new DemoError(`the gateway did not configure provider "${PROVIDER}"`);

    say();
    say('Linkgate demo');
    say();
    say(`  Gateway           ${base}   (API reference: ${base}/docs)`);
    say(`  OpenID provider   ${idp.issuer}   (configured in the gateway as provider "${PROVIDER}")`);
    say(`  Data              ${dataDir}   (embedded PostgreSQL, deleted when the demo stops)`);
    say(`  Webhook receiver  ${receiver.url}   (LINKGATE_WEBHOOK_URL: the bot's side, here in the demo)`);
    say();
    say(`A bot asked Linkgate for a link URL for its user "${USER_ID}". Open it in a browser:`);
    const urls = linkUrls(client, () => stopping);
    // Enter prints a new link URL, before the first link and after it.
    input.on('line', () => void urls.print());
    const link = await urls.untilLinked();
    if (!link) return;

    const path = `/api/v1/users/${encodeURIComponent(USER_ID)}/links/${PROVIDER}`;
    say();
    say(`Linked: "${USER_ID}" is ${link.externalName ?? link.externalId} at ${provider.displayName}. The bot API answers GET ${path} with:`);
    say();
    say(JSON.stringify(link, null, 2).replace(/^/gm, '  '));

    // The same moment, as the bot's webhook receiver hears of it (the gateway's worker sends it within a second or so).
    if (webhooks.pending.length === 0) {
      await new Promise<void>((resolve) => {
        webhooks.arrived = resolve;
        setTimeout(resolve, WEBHOOK_WITHIN_MS).unref();
      });
    }
    if (webhooks.pending.length === 0) say(`\nNo webhook arrived within ${WEBHOOK_WITHIN_MS / 1000} s; the gateway's output above says why.`);
    for (const event of webhooks.pending.splice(0)) printWebhook(event, receiver.url);
    webhooks.live = true;

    const metrics = await metricLines(base, apiKey, ending.signal);
    say();
    say(`The gateway's metrics (LINKGATE_METRICS=true), GET ${base}/metrics:`);
    say();
    for (const line of metrics) say(`  ${line}`);
    say();
    say('Try it yourself. This gateway and its data live only until Ctrl-C, so its secrets are printed here:');
    say();
    say(`  LINKGATE_API_KEY=${apiKey}   (one of the gateway's LINKGATE_API_KEYS)`);
    say(`  OAUTH_CONTEXT_SIGNING_SECRET=${secrets.OAUTH_CONTEXT_SIGNING_SECRET}   (for a bot that signs its own link URLs: signLinkContext in linkgate/client)`);
    say(`  LINKGATE_WEBHOOK_SECRET=${webhookSecret}   (checks each webhook's Linkgate-Signature)`);
    say();
    say(`  curl -H 'Authorization: Bearer ${apiKey}' ${base}${path}`);
    say(`  curl -H 'Authorization: Bearer ${apiKey}' ${base}/metrics`);
    say('or as a bot would, with the example in examples/bot-commands.ts:');
    say(`  LINKGATE_URL=${base} LINKGATE_API_KEY=${apiKey} node examples/bot-commands.ts whoami ${USER_ID} ${PROVIDER}`);
    say();
    say('Enter prints a new link URL (linking again sends a link.updated webhook).');
    say(`The API reference is at ${base}/docs. Press Ctrl-C to stop.`);
  } catch (error) {
    if (stopping) return;
    stopping = true;
    await cleanUp();
    throw error;
  }
}

/**
 * Link URLs for the demo user: `print` prints a fresh one (Enter);
 * `untilLinked` prints the first, waits for the link (a fresh URL when one
 * runs out) and resolves with it, `undefined` once stopping.
 */
function linkUrls(client: LinkgateClient, isStopping: () => boolean) {
  let expiresAt = 0;
  let first = true;
  async function print(): Promise<void> {
    try {
      const created = await client.createLinkUrl(USER_ID, PROVIDER);
      expiresAt = Date.parse(created.expiresAt);
      say();
      say(`  ${created.url}`);
      say();
      if (first) {
        say(`Sign in at the demo provider as   username: ${DEMO_ACCOUNT.username}   password: ${DEMO_ACCOUNT.password}`);
        say('Waiting for the link... (Enter prints a new link URL, Ctrl-C stops)');
        first = false;
      } else {
        say(`A new link URL for "${USER_ID}" (it works once). Enter prints another.`);
      }
    } catch (error) {
      if (!isStopping()) console.error(`linkgate demo: could not make a link URL: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  async function untilLinked(): Promise<Link | undefined> {
    await print();
    for (;;) {
      // The wait route answers the moment the link is stored (also if it already was).
      const link = await client.waitForLink(USER_ID, PROVIDER, { timeoutSeconds: 5 }).catch(async (error: unknown) => {
        // Ctrl-C reaches the gateway (same process group) as it reaches us, in no set order:
        // its connection can close before our own handler has run. Give the signal a moment.
        if (!isStopping()) await new Promise((resolve) => setTimeout(resolve, 500));
        if (isStopping()) return undefined;
        throw error;
      });
      if (isStopping()) return undefined;
      if (link) return link;
      if (Date.now() >= expiresAt) await print();
    }
  }
  return { print, untilLinked };
}

function printWebhook(event: WebhookEvent, url: string): void {
  say();
  say(`Webhook: ${event.type} for "${event.link.userId}" (${event.link.externalName ?? event.link.externalId}) arrived at ${url}, signature verified. Its body:`);
  say();
  say(JSON.stringify(event, null, 2).replace(/^/gm, '  '));
}

/** The demo's counters from /metrics: flows, and webhook deliveries once the first is counted (the gateway counts it after our answer). */
async function metricLines(base: string, apiKey: string, signal: AbortSignal): Promise<string[]> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const response = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${apiKey}` }, signal: AbortSignal.any([signal, AbortSignal.timeout(5000)]) });
    if (!response.ok) throw new DemoError(`GET /metrics answered ${response.status}`);
    const lines = (await response.text()).split('\n').filter((line) => /^linkgate_(flows_\w+|webhook_deliveries_total)\{/.test(line));
    if (lines.some((line) => line.startsWith('linkgate_webhook_deliveries_total')) || Date.now() > deadline) return lines;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function startGateway(env: Record<string, string | undefined>): ChildProcess {
  const child = spawn(process.execPath, ['--liftoff-only', '--import', 'tsx', SERVER], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  for (const [from, to] of [
    [child.stdout, process.stdout],
    [child.stderr, process.stderr],
  ] as const) {
    createInterface({ input: from, terminal: false }).on('line', (line) => to.write(`[gateway] ${line}\n`));
  }
  return child;
}

async function ensurePortFree(port: number): Promise<void> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new DemoError(
          error.code === 'EADDRINUSE'
            ? `port ${port} is already in use (another Linkgate, perhaps \`npm start\`?). Stop it, or pick another port: PORT=8080 npm run demo`
            : `cannot listen on 127.0.0.1:${port} (${error.code ?? error.message}); pick another port: PORT=8080 npm run demo`,
        ),
      ),
    );
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve()));
  });
}

async function waitUntilReady(base: string, gateway: ChildProcess): Promise<void> {
  const deadline = Date.now() + READY_WITHIN_MS;
  while (Date.now() < deadline) {
    if (gateway.exitCode !== null || gateway.signalCode !== null) throw new DemoError('the gateway did not start; its output is above');
    const ready = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2000) }).then(
      (response) => response.ok,
      () => false,
    );
    if (ready) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new DemoError(`the gateway was not ready within ${READY_WITHIN_MS / 1000} s`);
}

main().catch((error: unknown) => {
  const known = error instanceof DemoError || error instanceof DemoPortError;
  console.error(`linkgate demo: ${known ? error.message : `failed: ${error instanceof Error ? error.message : String(error)}`}`);
  process.exit(1);
});
