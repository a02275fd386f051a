/**
 * The MCP server (Model Context Protocol, modelcontextprotocol.io): the bot
 * API's questions as tools an agent can call for a chat user, at `/mcp` over
 * Streamable HTTP (and through `linkgate mcp` on stdio, which relays to it).
 *
 * - `link_status`: linked (which account), or not linked / needs the user
 *   again, with a link URL to hand over;
 * - `create_link_url`: a link URL for the user;
 * - `call_provider`: the provider's API with the user's link, through the
 *   proxy and its allowlist (`callProvider`, src/core/proxy.ts).
 *
 * An agent never gets a token: the answers are link states, link URLs and
 * the provider's answers. The bot API key names the tenant, counted under
 * the API rate limit (`botGate`). The endpoint is stateless — a new server
 * and transport per request, answers as JSON, no session — so any instance
 * can answer any request. The SDK validates the JSON-RPC messages with its own
 * schemas; the tools' arguments are ours, described (tools/list) and parsed
 * with valibot like every other input.
 */
import { toJsonSchema } from '@valibot/to-json-schema';
import { Hono } from 'hono';
import type { Logger } from 'pino';
import * as v from 'valibot';
import { LinkgateError, isLinkgateError } from '../core/errors.ts';
import { ProviderId, userIdSchema, userNameSchema } from '../core/ids.ts';
import { ScopeList } from '../core/link-context.ts';
import type { LinkKey, LinkStore } from '../core/links.ts';
import { callProvider, PROXY_METHODS, type ProxyAnswer } from '../core/proxy.ts';
import type { ProviderDirectory } from '../core/tenant-providers.ts';
import type { TokenService } from '../core/tokens.ts';
import { parseInput } from '../core/validation.ts';
import { databaseFailure, logCause } from '../db/errors.ts';
import type { RegisteredProvider } from '../registry.ts';
import { botGate, signLinkUrl, unconfigured, type ApiRoutesDeps } from './api.ts';
import type { AppEnv } from './middleware.ts';

export interface McpDeps extends Pick<ApiRoutesDeps, 'tenants' | 'limiter' | 'apiKeys' | 'now' | 'publicBaseUrl' | 'contextTtlSeconds'> {
  providers: ProviderDirectory;
  links: LinkStore;
  tokens: TokenService;
}

/** What the server calls itself in `initialize`. */
export const MCP_SERVER_INFO = { name: 'linkgate', version: '1' } as const;

const userId = v.pipe(userIdSchema('user_id'), v.description("the bot's id for its chat user (a Discord user id, say), as text"));
const provider = v.pipe(ProviderId, v.description('a provider id: anilist, discord, jellyfin, or another this gateway offers'));

const LinkStatusArgs = v.object({ user_id: userId, provider });
const CreateLinkUrlArgs = v.object({
  user_id: userId,
  provider,
  user_name: v.optional(v.pipe(userNameSchema('user_name'), v.description('the name the chat user goes by, shown on the page so they can tell the link is theirs'))),
  scopes: v.optional(v.pipe(ScopeList('scopes'), v.description("scopes to ask the provider for on top of the gateway's configured ones"))),
});
const CallProviderArgs = v.object({
  user_id: userId,
  provider,
  method: v.optional(v.pipe(v.picklist(PROXY_METHODS, 'method must be GET, POST, PUT, PATCH or DELETE'), v.description('the HTTP method; GET if left out')), 'GET'),
  path: v.pipe(
    v.string('path must be a string'),
    v.maxLength(2048, 'path is too long'),
    v.description("the API path under the provider's API base, e.g. users/@me/guilds for Discord, or an empty string for its root (AniList's GraphQL endpoint); the operator's allowlist decides what may be called"),
  ),
  query: v.optional(v.pipe(v.record(v.string(), v.string('each query value must be a string')), v.description('query parameters, name to value'))),
  body: v.optional(
    v.pipe(
      v.union([v.string(), v.record(v.string(), v.unknown())], 'body must be a string or a JSON object'),
      v.description('the request body: a JSON object (sent as application/json) or text'),
    ),
  ),
});

type ToolName = 'link_status' | 'create_link_url' | 'call_provider';

interface ToolSpec {
  name: ToolName;
  title: string;
  description: string;
  args: v.GenericSchema;
  annotations: { readOnlyHint: boolean; openWorldHint: boolean; idempotentHint?: boolean; destructiveHint?: boolean };
}

const TOOLS: readonly ToolSpec[] = [
  {
    name: 'link_status',
    title: 'Is this user linked?',
    description:
      'Whether a chat user has linked their account at a provider. "linked" names the account; "not_linked" and "needs_reauth" come with linkUrl: send it to that user (only to them) and ask them to open it, then check again. Never returns a token.',
    args: LinkStatusArgs,
    annotations: { readOnlyHint: true, openWorldHint: false, idempotentHint: true },
  },
  {
    name: 'create_link_url',
    title: 'Make a link URL',
    description:
      'A link URL for a chat user to link (or relink) their account at a provider. Hand it to that user only: whoever opens it links their account to this user. It works once and expires (expiresAt).',
    args: CreateLinkUrlArgs,
    annotations: { readOnlyHint: true, openWorldHint: false, idempotentHint: false },
  },
  {
    name: 'call_provider',
    title: "Call the provider's API as the user",
    description:
      "Calls the provider's own API with the user's linked account, for the calls the operator allows (anything else is refused with proxy_not_allowed). Answers the provider's status and body. When the user is not linked or must link again, the error carries linkUrl to hand over.",
    args: CallProviderArgs,
    annotations: { readOnlyHint: false, openWorldHint: true, destructiveHint: true },
  },
];

/** A tool's arguments as JSON Schema, from the same valibot schema that parses them. */
function inputSchema(args: v.GenericSchema): { type: 'object'; [key: string]: unknown } {
  const { $schema: _, ...schema } = toJsonSchema(args, { target: 'draft-2020-12', errorMode: 'ignore' }) as Record<string, unknown>;
  return { ...schema, type: 'object' };
}

let described: ReturnType<typeof describeTools> | undefined;
const describeTools = () => TOOLS.map((tool) => ({ name: tool.name, title: tool.title, description: tool.description, inputSchema: inputSchema(tool.args), annotations: tool.annotations }));
/** What `tools/list` answers (the same for every tenant), described once. */
export const toolList = () => (described ??= describeTools());

/** A tool's answer: its JSON as text, and as structured content. */
interface ToolResult {
  content: { type: 'text'; text: string }[];
  structuredContent: Record<string, unknown>;
  isError?: boolean;
  [key: string]: unknown;
}
const answer = (data: Record<string, unknown>, isError = false): ToolResult => ({
  content: [{ type: 'text', text: JSON.stringify(data) }],
  structuredContent: data,
  ...(isError ? { isError: true } : {}),
});

/** The upstream body for an agent: JSON as JSON, text as text, anything else base64. */
function upstreamBody(result: ProxyAnswer): Record<string, unknown> {
  const text = () => new TextDecoder('utf-8', { fatal: true }).decode(result.body);
  if (result.contentType.startsWith('application/json')) {
    try {
      return { body: JSON.parse(text()) };
    } catch {
      // Not JSON after all: as text, or bytes.
    }
  }
  if (result.contentType.startsWith('application/json') || result.contentType.startsWith('text/')) {
    try {
      return { body: text() };
    } catch {
      // Not UTF-8: as bytes.
    }
  }
  return { body: Buffer.from(result.body).toString('base64'), bodyEncoding: 'base64' };
}

/**
 * The tools of one tenant's bot, as plain functions: arguments in (unknown,
 * parsed here), a tool result out. Refusals (`LinkgateError`) are results
 * with `isError`, as MCP wants tool failures reported (the model reads
 * them); anything else is logged and answered as `internal_error`.
 */
export function mcpTools(deps: McpDeps, tenant: string, logger: Logger) {
  async function knownProvider(id: string): Promise<RegisteredProvider> {
    const known = (await deps.providers.of(tenant)).get(id);
    if (!known) throw new LinkgateError('unknown_provider', `there is no provider called "${id}"`, { provider: id });
    return known;
  }

  /** The answer for a user who must link (again): a link URL to hand over, when the provider can link at all. */
  async function relink(known: RegisteredProvider, key: LinkKey, status: 'not_linked' | 'needs_reauth') {
    if (!known.instance) throw unconfigured(known);
    const { url, expiresAt } = await signLinkUrl(deps, tenant, key.userId, known.id);
    const message =
      status === 'not_linked'
        ? `This user has not linked ${known.displayName}. Send them linkUrl and ask them to open it.`
        : `This user's ${known.displayName} link stopped working. Send them linkUrl to link it again.`;
    return { status, provider: known.id, userId: key.userId, linkUrl: url, expiresAt, message };
  }

  const run: Record<ToolName, (args: unknown) => Promise<ToolResult>> = {
    async link_status(raw) {
      const args = parseInput(LinkStatusArgs, raw ?? {});
      const known = await knownProvider(args.provider);
      const key = { tenant, userId: args.user_id, provider: known.id };
      const row = await deps.links.get(key);
      if (row?.status === 'active') {
        return answer({ status: 'linked', provider: known.id, userId: row.userId, externalId: row.externalId, externalName: row.externalName, scopes: row.scopes, linkedAt: row.linkedAt.toISOString() });
      }
      return answer(await relink(known, key, row ? 'needs_reauth' : 'not_linked'));
    },

    async create_link_url(raw) {
      const args = parseInput(CreateLinkUrlArgs, raw ?? {});
      const known = await knownProvider(args.provider);
      if (!known.instance) throw unconfigured(known);
      const { url, expiresAt } = await signLinkUrl(deps, tenant, args.user_id, known.id, { ...(args.user_name ? { userName: args.user_name } : {}), ...(args.scopes ? { scopes: args.scopes } : {}) });
      return answer({ provider: known.id, userId: args.user_id, linkUrl: url, expiresAt, message: 'Send linkUrl to this user only; it works once.' });
    },

    async call_provider(raw) {
      const args = parseInput(CallProviderArgs, raw ?? {});
      const known = await knownProvider(args.provider);
      if (!known.instance) throw unconfigured(known);
      const key = { tenant, userId: args.user_id, provider: known.id };
      const json = typeof args.body === 'object';
      const body = args.body === undefined ? undefined : new TextEncoder().encode(typeof args.body === 'string' ? args.body : JSON.stringify(args.body));
      try {
        const result = await callProvider(deps.tokens, known, key, {
          method: args.method,
          rawPath: args.path.replace(/^\/+/, ''),
          query: new URLSearchParams(args.query ?? {}),
          headers: { accept: 'application/json', ...(body ? { 'content-type': json ? 'application/json' : 'text/plain; charset=utf-8' } : {}) },
          body,
        });
        return answer({ status: result.status, contentType: result.contentType, ...(result.retryAfter ? { retryAfter: result.retryAfter } : {}), ...upstreamBody(result) });
      } catch (error) {
        if (isLinkgateError(error, 'not_linked') || isLinkgateError(error, 'needs_reauth')) {
          const { status, ...rest } = await relink(known, key, error.code as 'not_linked' | 'needs_reauth');
          return answer({ error: { code: status, message: rest.message }, ...rest }, true);
        }
        throw error;
      }
    },
  };

  return {
    has: (name: string): name is ToolName => Object.hasOwn(run, name),
    async call(name: ToolName, args: unknown): Promise<ToolResult> {
      try {
        const result = await run[name](args);
        logger.info({ tool: name, tenant, outcome: result.isError ? 'refused' : 'ok' }, 'mcp tool called');
        return result;
      } catch (error) {
        const failure = isLinkgateError(error)
          ? error
          : databaseFailure(error)?.unavailable
            ? new LinkgateError('database_unavailable', 'the database is not answering; try again shortly', { cause: databaseFailure(error)!.summary })
            : new LinkgateError('internal_error', 'internal error', { cause: error });
        const fields = { tool: name, tenant, errorCode: failure.code, provider: failure.provider, cause: failure.cause instanceof Error ? logCause(failure.cause) : undefined };
        if (failure.status >= 500) logger.error(fields, 'mcp tool failed');
        else logger.info(fields, 'mcp tool refused');
        return answer({ error: { code: failure.code, message: failure.message } }, true);
      }
    },
  };
}

/** The SDK loads with the first MCP request, not at start-up (like oidc-provider). */
let sdk: Promise<[typeof import('@modelcontextprotocol/sdk/server/mcp.js'), typeof import('@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js'), typeof import('@modelcontextprotocol/sdk/types.js')]> | undefined;
const loadSdk = () =>
  (sdk ??= Promise.all([import('@modelcontextprotocol/sdk/server/mcp.js'), import('@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js'), import('@modelcontextprotocol/sdk/types.js')]));

/** An MCP server whose tools are `tools`, not yet connected. */
export async function createMcpServer(tools: ReturnType<typeof mcpTools>) {
  const [{ McpServer }, , { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError }] = await loadSdk();
  const mcp = new McpServer(MCP_SERVER_INFO, {
    capabilities: { tools: {} },
    instructions:
      'Linkgate links chat users to their accounts at other services. Before acting for a user at a provider, call link_status; if it answers a linkUrl, send that URL to the user and wait for them to link. Tokens are never handed out: call_provider calls the provider for you.',
  });
  // Tools with valibot arguments: the low-level handlers (McpServer.registerTool takes zod schemas only).
  const list = toolList();
  mcp.server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: list }));
  mcp.server.setRequestHandler(CallToolRequestSchema, (request) => {
    const { name, arguments: args } = request.params;
    if (!tools.has(name)) throw new McpError(ErrorCode.InvalidParams, `there is no tool called "${name.slice(0, 64)}"`);
    return tools.call(name, args);
  });
  return mcp;
}

/**
 * `/mcp`: Streamable HTTP (MCP 2025-03-26 and later, "Transports"), stateless:
 * POST carries the messages and gets the answers as JSON; GET (a stream for
 * server-initiated messages) and DELETE (end a session) are 405, as there is
 * no session (the spec allows 405 for both).
 */
export function mcpRoutes(deps: McpDeps) {
  const app = new Hono<AppEnv>();
  app.use('*', botGate(deps));
  // No session, nothing server-initiated: no stream to open (GET) or session to end (DELETE).
  app.on(['GET', 'DELETE'], '/', (c) => c.json({ error: { code: 'method_not_allowed', message: 'this MCP endpoint is stateless: POST each message' } }, 405, { allow: 'POST' }));
  app.post('/', async (c) => {
    const [, { WebStandardStreamableHTTPServerTransport }] = await loadSdk();
    const server = await createMcpServer(mcpTools(deps, c.get('tenant'), c.get('log')()));
    const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    await server.connect(transport);
    try {
      return await transport.handleRequest(c.req.raw);
    } finally {
      await server.close();
    }
  });
  return app;
}
