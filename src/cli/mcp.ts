/**
 * `linkgate mcp`: the gateway's MCP tools (src/http/mcp.ts) on standard
 * input and output, for an agent that starts MCP servers as commands.
 *
 * It relays each message to the gateway's `/mcp` endpoint with a bot API key
 * and writes the answers back, rather than opening the database itself: the
 * tools then run where the bot API runs, with its tenant (the key names it),
 * rate limit, proxy allowlist and refresh leases, and this process holds
 * no encryption key and no database connection — an agent's machine needs
 * only a URL and a bot key. (The embedded database serves one process, so
 * a command could not open it next to a running gateway anyway.)
 */
import * as v from 'valibot';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { isLoopback } from '../config.ts';
import { CliError, EXIT, type Command } from './cli.ts';
import { loadConfig } from './runtime.ts';

const GatewayUrl = v.pipe(
  v.string(),
  v.url('LINKGATE_URL must be an absolute URL such as https://link.example'),
  v.check((url) => /^https?:$/.test(new URL(url).protocol), 'LINKGATE_URL must be an http or https URL'),
  // The bot key travels with every call: in the clear only to this machine.
  v.check((url) => new URL(url).protocol === 'https:' || isLoopback(new URL(url)), 'LINKGATE_URL must be https, or plain http on a loopback address (the bot API key is sent with every call)'),
);
const ApiKey = v.pipe(v.string(), v.regex(/^[\x21-\x7e]{1,512}$/, 'LINKGATE_API_KEY must be a bot API key (printable, no spaces)'));

/** Where to relay to, and with which key: LINKGATE_URL and LINKGATE_API_KEY, else the gateway running on DATA_DIR with the first of LINKGATE_API_KEYS. */
async function target(env: Record<string, string | undefined>, io: Parameters<Command['run']>[1]): Promise<{ url: URL; key: string }> {
  const usage = (message: string) => new CliError(EXIT.usage, 'usage', message);
  const parse = <S extends v.GenericSchema<string, string>>(schema: S, value: string) => {
    const result = v.safeParse(schema, value);
    if (!result.success) throw usage(result.issues[0].message);
    return result.output;
  };
  if (env.LINKGATE_URL !== undefined) {
    if (env.LINKGATE_API_KEY === undefined) throw usage('set LINKGATE_API_KEY to a bot API key of the gateway at LINKGATE_URL');
    return { url: new URL(parse(GatewayUrl, env.LINKGATE_URL)), key: parse(ApiKey, env.LINKGATE_API_KEY) };
  }
  const { config } = loadConfig(io);
  const { runningGateway } = await import('./gateway.ts');
  const gateway = runningGateway(io, config);
  if (!gateway) throw usage('set LINKGATE_URL (and LINKGATE_API_KEY) to the gateway to serve the tools of; no gateway runs on this DATA_DIR');
  return { url: new URL(gateway.url), key: env.LINKGATE_API_KEY === undefined ? config.apiKeys[0]! : parse(ApiKey, env.LINKGATE_API_KEY) };
}

/** Fails before serving when the gateway is not there or refuses the key: the agent's log says why, once. */
async function checkKey(url: URL, key: string): Promise<void> {
  let response: Response;
  try {
    response = await fetch(new URL('/api/v1/providers', url), { headers: { authorization: `Bearer ${key}` }, signal: AbortSignal.timeout(10_000) });
  } catch (error) {
    const why = error instanceof Error && error.cause instanceof Error ? error.cause.message : error instanceof Error ? error.message : String(error);
    throw new CliError(EXIT.failure, 'gateway_unreachable', `the gateway at ${url.origin} did not answer (${why})`);
  }
  await response.body?.cancel().catch(() => {});
  if (response.status === 401) throw new CliError(EXIT.failure, 'unauthorized', `the gateway at ${url.origin} refused the API key (LINKGATE_API_KEY)`);
  if (!response.ok) throw new CliError(EXIT.failure, 'failed', `the gateway at ${url.origin} answered ${response.status} to GET /api/v1/providers`);
}

/** An `initialize` answer: the only result with both. */
const InitializeAnswer = v.object({ protocolVersion: v.pipe(v.string(), v.maxLength(32)), serverInfo: v.object({ name: v.string() }) });

const isRequest = (message: JSONRPCMessage): message is JSONRPCMessage & { id: string | number; method: string } => 'method' in message && 'id' in message;

export const mcpCommand: Command = {
  path: ['mcp'],
  args: [],
  json: false,
  summary: "Serve the gateway's MCP tools (link_status, create_link_url, call_provider) on standard input and output.",
  details: [
    'For an agent that starts MCP servers as commands. Every message goes to the gateway\'s /mcp endpoint with a bot API key, so the tools act for that key\'s tenant: set LINKGATE_URL (the gateway, e.g. https://link.example) and LINKGATE_API_KEY. Without LINKGATE_URL it serves the gateway running on the embedded database in DATA_DIR, with LINKGATE_API_KEY or the first of LINKGATE_API_KEYS.',
    'It checks the key first and stops with exit code 1 if the gateway refuses it or does not answer; then it runs until standard input closes. Nothing is written to standard output but MCP messages.',
  ],
  async run(_args, io) {
    if (!io.stdio) throw new CliError(EXIT.failure, 'no_stdio', 'linkgate mcp needs the process\'s standard input and output');
    const { url, key } = await target(io.env, io);
    await checkKey(url, key);
    const [{ StdioServerTransport }, { StreamableHTTPClientTransport }] = await Promise.all([
      import('@modelcontextprotocol/sdk/server/stdio.js'),
      import('@modelcontextprotocol/sdk/client/streamableHttp.js'),
    ]);
    const { input, output } = io.stdio;
    const local = new StdioServerTransport(input, output);
    const upstream = new StreamableHTTPClientTransport(new URL('/mcp', url), { requestInit: { headers: { authorization: `Bearer ${key}` } } });
    /** A request the gateway did not answer gets an error answer: the agent is never left waiting. */
    const unanswered = (message: JSONRPCMessage, error: unknown) => {
      const why = error instanceof Error ? error.message.slice(0, 300) : 'unknown error';
      io.err(`linkgate mcp: the gateway did not take a message (${why})\n`);
      if (isRequest(message)) void local.send({ jsonrpc: '2.0', id: message.id, error: { code: -32603, message: `the gateway did not answer: ${why}` } });
    };
    local.onmessage = (message) => void upstream.send(message).catch((error: unknown) => unanswered(message, error));
    upstream.onmessage = (message) => {
      // The version the gateway agreed to goes on every later request (MCP, Streamable HTTP: protocol version header).
      if ('result' in message) {
        const initialized = v.safeParse(InitializeAnswer, message.result);
        if (initialized.success) upstream.setProtocolVersion(initialized.output.protocolVersion);
      }
      void local.send(message);
    };
    upstream.onerror = (error) => io.err(`linkgate mcp: ${error.message.slice(0, 300)}\n`);
    await upstream.start();
    await local.start();
    await new Promise<void>((resolve) => {
      input.once('end', resolve);
      input.once('close', resolve);
    });
    await local.close();
    await upstream.close();
    return EXIT.ok;
  },
};
