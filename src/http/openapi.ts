/**
 * The bot API described as OpenAPI 3.1, generated from the valibot schemas
 * the routes validate with (requests) and answer with (responses, checked
 * against real answers in test/http/openapi.test.ts). `GET /openapi.json`
 * serves it; `GET /docs` renders it as a page.
 */
import { toJsonSchema, type JsonSchema } from '@valibot/to-json-schema';
import * as v from 'valibot';
import { DeliveriesQuery, DeliveryParams, LinkEventsQuery, LinkParams, LinkQuery, LinkUrlBody, ProxyParams, UserParams, WaitQuery, XrpcBody, XrpcParams } from './api.ts';

// ── Answers ────────────────────────────────────────────────────────────────

const IsoTime = v.pipe(v.string(), v.isoTimestamp());

export const LinkAnswer = v.strictObject({
  userId: v.string(),
  provider: v.string(),
  externalId: v.pipe(v.string(), v.description('the account id at the provider (a user id, a DID)')),
  externalName: v.nullable(v.pipe(v.string(), v.description('a name a person recognises (username, handle)'))),
  status: v.pipe(v.picklist(['active', 'needs_reauth']), v.description('`needs_reauth`: the user must link again')),
  scopes: v.array(v.string()),
  linkedAt: IsoTime,
  updatedAt: IsoTime,
  expiresAt: v.nullable(v.pipe(IsoTime, v.description('when the access token expires; refreshed by the token route'))),
});

export const ErrorAnswer = v.strictObject({
  error: v.strictObject({
    code: v.pipe(v.string(), v.description('stable, machine-readable: not_linked, needs_reauth, unauthorized, bad_request, …')),
    message: v.pipe(v.string(), v.description('safe to show; never holds a token or a user id')),
  }),
});

export const RelinkAnswer = v.strictObject({
  error: v.strictObject({ code: v.picklist(['not_linked', 'needs_reauth', 'insufficient_scope']), message: v.string() }),
  linkUrl: v.pipe(v.string(), v.url(), v.description('a fresh link URL to send the user (an unconfigured provider answers 503 instead)')),
});

export const ProvidersAnswer = v.strictObject({
  providers: v.array(v.strictObject({ id: v.string(), displayName: v.string(), configured: v.boolean() })),
});

export const LinkUrlAnswer = v.strictObject({ url: v.pipe(v.string(), v.url()), expiresAt: IsoTime });

export const LinksAnswer = v.strictObject({ links: v.array(LinkAnswer) });

export const ImportAnswer = v.strictObject({
  results: v.array(
    v.strictObject({
      line: v.number(),
      status: v.picklist(['created', 'updated', 'unchanged', 'invalid']),
      error: v.optional(v.strictObject({ code: v.string(), message: v.pipe(v.string(), v.description('names the field, never its value')) })),
    }),
  ),
  counts: v.strictObject({ created: v.number(), updated: v.number(), unchanged: v.number(), invalid: v.number() }),
});

export const TokenAnswer = v.pipe(
  v.looseObject({
    accessToken: v.optional(v.string()),
    tokenType: v.optional(v.string()),
    expiresAt: v.optional(v.nullable(IsoTime)),
  }),
  v.description('an access token and the provider’s own fields (a server URL, an external id); ATProto answers { did, handle, pdsUrl } and no token. Never a refresh token.'),
);

export const DeliveryAnswer = v.strictObject({
  id: v.string(),
  type: v.picklist(['link.created', 'link.updated', 'link.deleted', 'link.needs_reauth', 'link.refresh_failed', 'link.recovered', 'link.cancelled']),
  status: v.pipe(v.picklist(['pending', 'delivered', 'dead']), v.description('`dead`: every attempt failed; POST …/retry to try again')),
  attempts: v.number(),
  lastStatus: v.nullable(v.pipe(v.number(), v.description('the receiver’s last HTTP status'))),
  lastError: v.nullable(v.string()),
  createdAt: IsoTime,
  nextAttemptAt: v.nullable(IsoTime),
  deliveredAt: v.nullable(IsoTime),
  event: v.pipe(
    v.union([
      v.strictObject({ id: v.string(), type: v.picklist(['link.created', 'link.updated', 'link.deleted', 'link.needs_reauth', 'link.recovered']), createdAt: IsoTime, link: LinkAnswer }),
      v.strictObject({
        id: v.string(),
        type: v.literal('link.refresh_failed'),
        createdAt: IsoTime,
        link: LinkAnswer,
        refreshFailure: v.strictObject({
          reason: v.pipe(v.string(), v.description('the error code: provider_unavailable, provider_timeout, refresh_failed, …')),
          willRetry: v.pipe(v.boolean(), v.description('true: the provider was down or slow, and the next use of the link tries again')),
        }),
      }),
      v.strictObject({
        id: v.string(),
        type: v.literal('link.cancelled'),
        createdAt: IsoTime,
        cancellation: v.strictObject({
          userId: v.string(),
          provider: v.string(),
          reason: v.pipe(v.picklist(['user', 'provider_denied']), v.description('`user` pressed Cancel on our page; `provider_denied` refused access at the provider')),
        }),
      }),
    ]),
    v.description('the body that is (or was) POSTed to LINKGATE_WEBHOOK_URL'),
  ),
});

export const LinkEventsAnswer = v.strictObject({
  events: v.array(
    v.strictObject({
      id: v.string(),
      kind: v.pipe(
        v.picklist(['linked', 'relinked', 'refreshed', 'refresh_failed', 'needs_reauth', 'token_served', 'unlinked']),
        v.description('`refresh_failed`: the first failure after the link worked (detail.reason); `token_served`: tokens handed out in the hour starting at `at` (count)'),
      ),
      at: IsoTime,
      count: v.pipe(v.number(), v.description('1, or the tokens served in that hour')),
      detail: v.pipe(v.nullable(v.record(v.string(), v.unknown())), v.description('facts, never a credential: externalId, externalName, scopes, via; expiresAt; reason, willRetry')),
    }),
  ),
  nextCursor: v.pipe(v.nullable(v.string()), v.description('pass as cursor for older events; null on the last page')),
});

export const DeliveriesAnswer = v.strictObject({ deliveries: v.array(DeliveryAnswer) });

export const HealthAnswer = v.strictObject({ status: v.literal('healthy') });
export const ReadyAnswer = v.strictObject({ status: v.picklist(['ready', 'unavailable']), database: v.picklist(['postgres', 'pglite']) });

// ── Operations ─────────────────────────────────────────────────────────────

type Schema = v.GenericSchema;
interface Response {
  description: string;
  schema?: Schema;
  /** Response headers worth a bot's attention, by name. */
  headers?: Record<string, { description: string; schema: JsonSchema }>;
}
export interface Operation {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** Hono style (`/api/v1/users/:userId/links`). */
  path: string;
  summary: string;
  description?: string;
  tag: 'links' | 'providers' | 'health' | 'atproto' | 'webhooks' | 'proxy';
  params?: v.ObjectSchema<v.ObjectEntries, undefined>;
  query?: v.ObjectSchema<v.ObjectEntries, undefined>;
  body?: Schema;
  public?: boolean;
  responses: Record<number, Response>;
}

const unauthorized: Response = { description: 'missing or wrong API key', schema: ErrorAnswer };
const badRequest: Response = { description: 'a parameter or the body is invalid', schema: ErrorAnswer };
const relink = (description: string): Response => ({ description, schema: RelinkAnswer });
const unconfigured: Response = { description: 'the provider is not configured (the message says what it needs)', schema: ErrorAnswer };

export const operations: Operation[] = [
  {
    method: 'get',
    path: '/api/v1/providers',
    summary: 'List providers',
    tag: 'providers',
    responses: { 200: { description: 'every provider module, and whether it is configured', schema: ProvidersAnswer }, 401: unauthorized },
  },
  {
    method: 'post',
    path: '/api/v1/link-urls',
    summary: 'Create a link URL',
    description: 'A link URL signed by the gateway, the same a bot could sign itself; valid once, for OAUTH_CONTEXT_TTL_SECONDS.',
    tag: 'links',
    body: LinkUrlBody,
    responses: {
      201: { description: 'the URL to send the user', schema: LinkUrlAnswer },
      400: badRequest,
      401: unauthorized,
      404: { description: 'no such provider', schema: ErrorAnswer },
      503: unconfigured,
    },
  },
  {
    method: 'get',
    path: '/api/v1/users/:userId/links',
    summary: 'List a user’s links',
    tag: 'links',
    params: UserParams,
    responses: { 200: { description: 'every link of the user', schema: LinksAnswer }, 400: badRequest, 401: unauthorized },
  },
  {
    method: 'get',
    path: '/api/v1/users/:userId/links/:provider',
    summary: 'Get a link',
    description: 'The hot path: "is this user linked?". With verify=true the provider is asked whether the token still works.',
    tag: 'links',
    params: LinkParams,
    query: LinkQuery,
    responses: {
      200: { description: 'the link', schema: LinkAnswer },
      400: badRequest,
      401: unauthorized,
      404: relink('not linked: send the user linkUrl'),
      409: relink('`insufficient_scope`: the link lacks a scope of requireScopes; linkUrl asks the provider for them'),
      503: { description: 'not linked, and the provider is not configured', schema: ErrorAnswer },
    },
  },
  {
    method: 'delete',
    path: '/api/v1/users/:userId/links/:provider',
    summary: 'Unlink',
    description: 'Revokes upstream where the provider can, then deletes.',
    tag: 'links',
    params: LinkParams,
    responses: {
      204: {
        description: 'deleted',
        headers: {
          'Linkgate-Revocation': {
            description: 'what the provider said: revoked, not_supported (it has no revocation), failed (it refused or was down; the link is deleted anyway), provider_unavailable (not configured here)',
            schema: { type: 'string', enum: ['revoked', 'not_supported', 'failed', 'provider_unavailable'] },
          },
        },
      },
      400: badRequest,
      401: unauthorized,
      404: { description: 'not linked', schema: ErrorAnswer },
    },
  },
  {
    method: 'post',
    path: '/api/v1/users/:userId/links/:provider/token',
    summary: 'Get fresh credentials',
    description: 'Refreshed first when due, once per link at a time across every instance.',
    tag: 'links',
    params: LinkParams,
    responses: {
      200: { description: 'the credentials', schema: TokenAnswer },
      400: badRequest,
      401: unauthorized,
      404: relink('not linked'),
      409: relink('the user must link again'),
      502: { description: 'the provider failed; the stored credentials are unchanged', schema: ErrorAnswer },
      503: unconfigured,
      504: { description: 'the provider timed out; the stored credentials are unchanged', schema: ErrorAnswer },
    },
  },
  {
    method: 'get',
    path: '/api/v1/users/:userId/links/:provider/wait',
    summary: 'Wait for a link',
    description:
      'Long-poll: answers the moment the user has an active link (at once if they already do), or 409 `link_cancelled` the moment they cancel (on our page, or by refusing access at the provider). `since` (ISO 8601, e.g. when the link URL was made) also reports a cancellation from before the wait, up to OAUTH_STATE_TTL_SECONDS ago.',
    tag: 'links',
    params: LinkParams,
    query: WaitQuery,
    responses: {
      200: { description: 'linked', schema: LinkAnswer },
      204: { description: 'not linked before the timeout' },
      400: badRequest,
      401: unauthorized,
      409: { description: '`link_cancelled`: the user cancelled linking', schema: ErrorAnswer },
      503: { description: 'not linked, and the provider is not configured: nobody can link it now', schema: ErrorAnswer },
    },
  },
  {
    method: 'get',
    path: '/api/v1/users/:userId/links/:provider/events',
    summary: 'A link’s event log',
    description:
      'Newest first: linked, relinked, refreshed, refresh_failed, needs_reauth, token_served (one entry per hour with its count), unlinked. Kept LINKGATE_LINK_EVENT_RETENTION_DAYS (90) days, also after an unlink. Tokens served on another instance show within a few seconds.',
    tag: 'links',
    params: LinkParams,
    query: LinkEventsQuery,
    responses: {
      200: { description: 'a page of events', schema: LinkEventsAnswer },
      400: badRequest,
      401: unauthorized,
      404: { description: 'no such provider', schema: ErrorAnswer },
    },
  },
  ...(['get', 'post'] as const).map(
    (method): Operation => ({
      method,
      path: '/api/v1/users/:userId/links/:provider/xrpc/:nsid',
      summary: method === 'get' ? 'XRPC query through the user’s session' : 'XRPC procedure through the user’s session',
      description: 'ATProto: the call is made on the user’s PDS with their DPoP-bound session; the upstream status and body come back unchanged.',
      tag: 'atproto',
      params: XrpcParams,
      ...(method === 'post' ? { body: XrpcBody } : {}),
      responses: {
        200: { description: 'the PDS’s answer, as it is' },
        400: badRequest,
        401: unauthorized,
        403: { description: 'the NSID is not in ATPROTO_XRPC_ALLOW', schema: ErrorAnswer },
        404: relink('not linked'),
        409: relink('the session no longer works: link again'),
        503: unconfigured,
      },
    }),
  ),
  ...(['get', 'post', 'put', 'patch', 'delete'] as const).map(
    (method): Operation => ({
      method,
      path: '/api/v1/users/:userId/links/:provider/proxy/*',
      summary: `${method.toUpperCase()} on the provider’s own API, as the user`,
      description:
        'The path after /proxy/ goes to the provider’s API base (Discord https://discord.com/api/, AniList https://graphql.anilist.co, an OpenID provider’s <ID>_API_BASE) with the link’s access token, refreshed when due; only calls listed in <ID>_PROXY_ALLOW (METHOD path-prefix, comma-separated) go through. The upstream status and body (at most 1 MiB) come back as they are, Retry-After too; a 401 upstream is retried once after a refresh, then the link needs the user again.',
      tag: 'proxy',
      params: ProxyParams,
      ...(method === 'post' || method === 'put' || method === 'patch' ? { body: v.pipe(v.unknown(), v.description('passed on as it is, with its content-type')) } : {}),
      responses: {
        200: { description: 'the provider’s answer, as it is (any status it gave)', schema: v.pipe(v.unknown(), v.description('the provider’s own body')) },
        400: badRequest,
        401: unauthorized,
        403: { description: '`proxy_not_allowed`: the call is not in <ID>_PROXY_ALLOW (nothing was sent upstream)', schema: ErrorAnswer },
        404: relink('not linked'),
        409: relink('the provider refused the token, also after a refresh: link again'),
        502: { description: 'the provider could not be reached, or answered more than 1 MiB', schema: ErrorAnswer },
        503: unconfigured,
      },
    }),
  ),
  {
    method: 'post',
    path: '/api/v1/links:import',
    summary: 'Import links',
    description:
      'JSON lines (Content-Type: application/x-ndjson), one link per line: { userId, provider, externalId, externalName?, credentials: { accessToken, refreshToken?, expiresAt?, scopes? } }, at most 10 000 lines and 8 MiB; or an export of the operator API with its Linkgate-Passphrase header. Each line is validated and stored (sealed) on its own; a line identical to what is stored is unchanged.',
    tag: 'links',
    body: v.pipe(v.unknown(), v.description('JSON lines: one link object per line (the example shows one line)')),
    responses: {
      200: { description: 'what happened to each line', schema: ImportAnswer },
      400: badRequest,
      401: unauthorized,
      413: { description: 'more than 8 MiB or 10 000 lines', schema: ErrorAnswer },
    },
  },
  {
    method: 'get',
    path: '/api/v1/webhooks/deliveries',
    summary: 'Webhook delivery log',
    description: 'Newest first; every event written since LINKGATE_WEBHOOK_URL was set, until 30 days after it was delivered or given up on.',
    tag: 'webhooks',
    query: DeliveriesQuery,
    responses: { 200: { description: 'deliveries', schema: DeliveriesAnswer }, 400: badRequest, 401: unauthorized },
  },
  {
    method: 'post',
    path: '/api/v1/webhooks/deliveries/:id/retry',
    summary: 'Send a delivery again',
    description: 'Queues it for the next round, with a fresh set of attempts.',
    tag: 'webhooks',
    params: DeliveryParams,
    responses: {
      202: { description: 'queued', schema: DeliveryAnswer },
      400: badRequest,
      401: unauthorized,
      404: { description: 'no such delivery, or already delivered', schema: ErrorAnswer },
    },
  },
  { method: 'get', path: '/healthz', summary: 'Liveness', tag: 'health', public: true, responses: { 200: { description: 'the process answers', schema: HealthAnswer } } },
  {
    method: 'get',
    path: '/readyz',
    summary: 'Readiness',
    tag: 'health',
    public: true,
    responses: { 200: { description: 'the database answers', schema: ReadyAnswer }, 503: { description: 'the database does not answer', schema: ReadyAnswer } },
  },
];

const json = (schema: Schema, typeMode: 'input' | 'output'): JsonSchema => {
  const { $schema: _, ...rest } = toJsonSchema(schema, { target: 'draft-2020-12', typeMode, errorMode: 'ignore' }) as JsonSchema & { $schema?: string };
  return rest;
};

// Only a whole segment is a parameter: `/links:import` is a literal name (AIP-136's custom methods).
export const openApiPath = (path: string) => path.replace(/\/:([A-Za-z]+)/g, '/{$1}');

function parameters(where: 'path' | 'query', schema: v.ObjectSchema<v.ObjectEntries, undefined> | undefined) {
  if (!schema) return [];
  return Object.entries(schema.entries).map(([name, entry]) => ({
    name,
    in: where,
    required: where === 'path' || !('default' in entry || entry.type === 'optional'),
    schema: json(entry, 'input'),
  }));
}

/** The OpenAPI 3.1 document for this gateway. */
export function openApiDocument(serverUrl: string) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of operations) {
    const item = (paths[openApiPath(op.path)] ??= {});
    item[op.method] = {
      summary: op.summary,
      ...(op.description ? { description: op.description } : {}),
      tags: [op.tag],
      operationId: `${op.method}${op.path.replace(/[:/{}.-]+(\w)?/g, (_, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
      ...(op.public ? { security: [] } : {}),
      parameters: [...parameters('path', op.params), ...parameters('query', op.query)],
      ...(op.body ? { requestBody: { required: true, content: { 'application/json': { schema: json(op.body, 'input') } } } } : {}),
      responses: Object.fromEntries(
        Object.entries(op.responses).map(([status, response]) => [
          status,
          {
            description: response.description,
            ...(response.headers ? { headers: response.headers } : {}),
            ...(response.schema ? { content: { 'application/json': { schema: json(response.schema, 'output') } } } : {}),
          },
        ]),
      ),
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Linkgate bot API',
      version: '1',
      description: 'Account links for chat bots. Every /api/v1 route needs `Authorization: Bearer <one of LINKGATE_API_KEYS>`; errors are `{ "error": { "code", "message" } }`.',
    },
    servers: [{ url: serverUrl }],
    security: [{ apiKey: [] }],
    components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'one of LINKGATE_API_KEYS' } } },
    tags: [
      { name: 'links', description: 'Link URLs, links, tokens' },
      { name: 'providers', description: 'What can be linked' },
      { name: 'atproto', description: 'Calls made with a user’s ATProto session' },
      { name: 'proxy', description: 'Calls to the provider’s own API with a user’s link' },
      { name: 'webhooks', description: 'Link events sent to LINKGATE_WEBHOOK_URL' },
      { name: 'health', description: 'For load balancers and orchestrators' },
    ],
    paths,
  };
}
