/**
 * The gateway's HTTP APIs described as OpenAPI 3.1, generated from the
 * valibot schemas the routes validate with (requests) and answer with
 * (responses, checked against real answers in test/http/openapi.test.ts):
 * the bot API (`/api/v1`, src/http/api.ts), the operator API
 * (`/api/admin/v1`, src/http/admin.ts) and the web-session API
 * (`/api/auth`, src/http/web-session.ts). `GET /openapi.json` serves it;
 * `GET /docs` renders it as a page. A new route is one more entry in
 * `botOperations`, `operatorOperations` or `signInOperations` below (the test
 * fails until it is, and until each status it documents has a real request).
 */
import { toJsonSchema, type JsonSchema } from '@valibot/to-json-schema';
import * as v from 'valibot';
import type { ErrorCode } from '../core/errors.ts';
import {
  ApiKeyParams,
  ApiKeysAnswer,
  AppParams,
  AppsAnswer,
  AuditAnswer,
  ContextSecretParams,
  ContextSecretsAnswer,
  CreateApiKeyBody,
  CreateAppBody,
  CreatedApiKeyAnswer,
  CreatedAppAnswer,
  CreatedContextSecretAnswer,
  CreateTenantBody,
  ExportQuery,
  PassphraseHeaders,
  ProviderConfigAnswer,
  ProviderConfigBody,
  RotateSigningKeyBody,
  SigningKeyAnswer,
  SigningKeysAnswer,
  TenantAnswer,
  TenantDetailAnswer,
  TenantLinkParams,
  TenantParams,
  TenantProviderParams,
  TenantProvidersAnswer,
  TenantsAnswer,
  UpdateTenantBody,
  WebhookAnswer,
  WebhookBody,
  CreatedInviteAnswer,
  InviteParams,
  InvitesAnswer,
} from './admin.ts';
import { AuditQuery } from '../core/audit.ts';
import { DeliveriesQuery, DeliveryParams, LinkEventsQuery, LinkParams, LinkQuery, LinkUrlBody, ProxyParams, UserParams, WaitQuery, XrpcBody, XrpcParams } from './api.ts';
import { SESSION_COOKIE, SessionAnswer, SessionQuery, StartAnswer, StartParams, StartQuery, TenantHeaders } from './web-session.ts';

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

/** The operator API's unlink answer (`linkgate links delete --json` prints the same). */
export const OperatorUnlinkAnswer = v.strictObject({
  deleted: LinkAnswer,
  revocation: v.pipe(
    v.picklist(['revoked', 'not_supported', 'failed', 'provider_unavailable']),
    v.description('what the provider said: revoked, not_supported (it has no revocation), failed (it refused or was down; the link is deleted anyway), provider_unavailable (not configured here)'),
  ),
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
type Fields = v.ObjectSchema<v.ObjectEntries, undefined>;
interface Response {
  description: string;
  schema?: Schema;
  /** The body's media type, when it is not JSON (a CSV file, JSON lines). */
  contentType?: string;
  /** The error codes (src/core/errors.ts) this status answers with; the test checks real answers carry one of them. */
  codes?: readonly ErrorCode[];
  /** Response headers worth a caller's attention, by name. */
  headers?: Record<string, { description: string; schema: JsonSchema }>;
}
/**
 * Who may call: `bot` a bot API key (LINKGATE_API_KEYS or a tenant's),
 * `operator` an operator key (LINKGATE_ADMIN_KEYS), `session` a browser with
 * a web-session cookie, `public` anyone.
 */
export type Auth = 'bot' | 'operator' | 'session' | 'public';
export interface Operation {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** Hono style (`/api/v1/users/:userId/links`). */
  path: string;
  summary: string;
  description?: string;
  tag: 'links' | 'providers' | 'health' | 'atproto' | 'webhooks' | 'proxy' | 'operator' | 'sign-in';
  /** Default `bot`. */
  auth?: Auth;
  params?: Fields;
  query?: Fields;
  /** Request headers the route reads, by lower-case name. */
  headers?: Fields;
  body?: Schema;
  /** The request body's media type, when it is not JSON. */
  bodyType?: string;
  responses: Record<number, Response>;
}

export const authOf = (op: Operation): Auth => op.auth ?? 'bot';

/** An error answer: its codes lead the description, as the page and the document show them. */
const failure = (codes: readonly ErrorCode[], description: string): Response => ({
  description: `${codes.map((code) => `\`${code}\``).join(' or ')}: ${description}`,
  schema: ErrorAnswer,
  codes,
});

/** The bot API's unlink answer: what the provider said about revoking, in a header. */
const unlinked: Response = {
  description: 'deleted',
  headers: {
    'Linkgate-Revocation': {
      description: 'what the provider said: revoked, not_supported (it has no revocation), failed (it refused or was down; the link is deleted anyway), provider_unavailable (not configured here)',
      schema: { type: 'string', enum: ['revoked', 'not_supported', 'failed', 'provider_unavailable'] },
    },
  },
};

const unauthorized: Response = { description: 'missing or wrong API key', schema: ErrorAnswer };
const badRequest: Response = { description: 'a parameter or the body is invalid', schema: ErrorAnswer };
const relink = (description: string): Response => ({ description, schema: RelinkAnswer });
const unconfigured: Response = { description: 'the provider is not configured (the message says what it needs)', schema: ErrorAnswer };

const botRoutes: Operation[] = [
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
      204: unlinked,
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
    headers: PassphraseHeaders,
    body: v.pipe(v.unknown(), v.description('JSON lines: one link object per line (the example shows one line)')),
    bodyType: 'application/x-ndjson',
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
  { method: 'get', path: '/healthz', summary: 'Liveness', tag: 'health', auth: 'public', responses: { 200: { description: 'the process answers', schema: HealthAnswer } } },
  {
    method: 'get',
    path: '/readyz',
    summary: 'Readiness',
    tag: 'health',
    auth: 'public',
    responses: { 200: { description: 'the database answers', schema: ReadyAnswer }, 503: { description: 'the database does not answer', schema: ReadyAnswer } },
  },
];

/**
 * Every /api/v1 route: a key names its tenant, and an `x-tenant-id` header
 * may only confirm it (src/http/api.ts's botGate), else 403 `tenant_mismatch`.
 */
const TenantCheck = v.object({
  'x-tenant-id': v.optional(v.pipe(v.string(), v.description('the tenant the bot means; a key of another tenant is refused (403 tenant_mismatch)'))),
});
const mismatch = 'x-tenant-id names another tenant than the API key’s';
const checksTenant = (op: Operation): Operation => {
  if (!op.path.startsWith('/api/v1/')) return op;
  const refused = op.responses[403];
  return {
    ...op,
    headers: v.object({ ...op.headers?.entries, ...TenantCheck.entries }),
    responses: { ...op.responses, 403: refused ? { ...refused, description: `${refused.description}; or \`tenant_mismatch\`: ${mismatch}` } : failure(['tenant_mismatch'], mismatch) },
  };
};

export const botOperations: Operation[] = botRoutes.map(checksTenant);

// ── The operator API (src/http/admin.ts) ───────────────────────────────────

const ADMIN = '/api/admin/v1';
const operatorUnauthorized = failure(['unauthorized'], 'missing or wrong operator key (the answer says `WWW-Authenticate: Bearer`)');
/** Every operator route answers 404 `not_found` when LINKGATE_ADMIN_KEYS is unset, as if it did not exist. */
const OFF = 'the operator API is off (LINKGATE_ADMIN_KEYS unset)';
const operatorOff = failure(['not_found'], OFF);
const noTenant = failure(['tenant_not_found', 'not_found'], `no such tenant; or ${OFF}`);
const noSuch = (what: string) => failure(['tenant_not_found', 'not_found'], `no such tenant, or it has no ${what}; or ${OFF}`);
const invalid = (what = 'a parameter or the body is invalid (the message names the field, never its value)') => failure(['bad_request'], what);
const badTenant = invalid('the tenant id is not one (1–40 lowercase letters, digits and hyphens)');
const deleted: Response = { description: 'deleted' };

/** A route of one tenant, `:tenant` in its path: the same 400, 401 and 404 as every other. */
const tenantRoute = (op: Omit<Operation, 'tag' | 'auth' | 'path'> & { path: string }): Operation => ({
  tag: 'operator',
  auth: 'operator',
  params: TenantParams,
  ...op,
  path: `${ADMIN}/tenants/:tenant${op.path}`,
  responses: { 400: badTenant, 401: operatorUnauthorized, 404: noTenant, ...op.responses },
});

/** The console-invite routes refuse while the console is closed: an invite never opens it. */
const consoleClosed = failure(['console_closed'], 'LINKGATE_ADMINS is unset: the console is closed');

export const operatorOperations: Operation[] = [
  {
    method: 'get',
    path: `${ADMIN}/audit`,
    summary: 'Read the audit trail',
    description: 'Every change made through the operator API, the console and the command line, and every request refused for its operator key; newest first, a page at a time.',
    tag: 'operator',
    auth: 'operator',
    query: AuditQuery,
    responses: { 200: { description: 'a page of rows', schema: AuditAnswer }, 400: invalid('a filter is invalid'), 401: operatorUnauthorized, 404: operatorOff },
  },
  {
    method: 'get',
    path: `${ADMIN}/audit.csv`,
    summary: 'Export the audit trail as CSV',
    description: 'Every row the filters select (cursor and limit aside), newest first, as an RFC 4180 file with a header line; the export is itself audited.',
    tag: 'operator',
    auth: 'operator',
    query: AuditQuery,
    responses: {
      200: { description: 'the rows: id, at, tenant, actor, action, target, outcome, code, clientAddress, userAgent, detail (JSON)', contentType: 'text/csv', schema: v.pipe(v.string(), v.description('CSV, a header line first')) },
      400: invalid('a filter is invalid'),
      401: operatorUnauthorized,
      404: operatorOff,
    },
  },
  {
    method: 'post',
    path: `${ADMIN}/console/invites`,
    summary: 'Invite an owner to the admin console',
    description:
      'A one-time link, valid for an hour, that makes whoever signs in through it first an owner of the console (as `linkgate admin invite`). The link is in this answer only: the gateway keeps its digest. An invite never opens a closed console.',
    tag: 'operator',
    auth: 'operator',
    responses: {
      201: { description: 'the invite and its link', schema: CreatedInviteAnswer },
      401: operatorUnauthorized,
      404: operatorOff,
      409: consoleClosed,
    },
  },
  {
    method: 'get',
    path: `${ADMIN}/console/invites`,
    summary: 'List the open console invites',
    description: 'Invites not used, not expired and not revoked, by id; never their links.',
    tag: 'operator',
    auth: 'operator',
    responses: {
      200: { description: 'the open invites', schema: InvitesAnswer },
      401: operatorUnauthorized,
      404: operatorOff,
      409: consoleClosed,
    },
  },
  {
    method: 'delete',
    path: `${ADMIN}/console/invites/:id`,
    summary: 'Revoke a console invite',
    tag: 'operator',
    auth: 'operator',
    params: InviteParams,
    responses: {
      204: { description: 'revoked: its link no longer works' },
      400: invalid('the id is not an invite id'),
      401: operatorUnauthorized,
      404: failure(['not_found'], `no open invite with this id (used, expired or revoked); or ${OFF}`),
      409: consoleClosed,
    },
  },
  {
    method: 'post',
    path: `${ADMIN}/tenants`,
    summary: 'Create a tenant',
    tag: 'operator',
    auth: 'operator',
    body: CreateTenantBody,
    responses: {
      201: { description: 'created', schema: TenantAnswer },
      400: invalid('the id or the name is invalid'),
      401: operatorUnauthorized,
      404: operatorOff,
      409: failure(['tenant_exists'], 'a tenant with this id exists'),
    },
  },
  {
    method: 'get',
    path: `${ADMIN}/tenants`,
    summary: 'List tenants',
    tag: 'operator',
    auth: 'operator',
    responses: { 200: { description: 'every tenant, default included', schema: TenantsAnswer }, 401: operatorUnauthorized, 404: operatorOff },
  },
  tenantRoute({
    method: 'get',
    path: '',
    summary: 'Show a tenant',
    responses: { 200: { description: 'the tenant, its settings, and how many keys and secrets it has', schema: TenantDetailAnswer } },
  }),
  tenantRoute({
    method: 'patch',
    path: '',
    summary: 'Change a tenant',
    description: 'Renames it, or sets (null: clears) its API rate limit per key, its pages’ branding and its user provider; the default tenant’s are the environment’s.',
    body: UpdateTenantBody,
    responses: { 200: { description: 'the tenant as it now is', schema: TenantDetailAnswer }, 400: invalid('a field is invalid, or names a setting of the default tenant (the environment’s)') },
  }),
  tenantRoute({
    method: 'delete',
    path: '',
    summary: 'Delete a tenant',
    description: 'Unlinks every link it has (revoking upstream where the provider can), then removes it and everything it has. The default tenant cannot be deleted.',
    responses: {
      204: {
        description: 'deleted',
        headers: { 'Linkgate-Unlinked': { description: 'how many links went with it', schema: { type: 'string', pattern: '^[0-9]+$' } } },
      },
      400: invalid('the tenant id is invalid, or it is the default tenant'),
    },
  }),
  tenantRoute({
    method: 'post',
    path: '/api-keys',
    summary: 'Create a bot API key',
    description: 'The key is in this answer only; the gateway keeps its digest.',
    body: CreateApiKeyBody,
    responses: { 201: { description: 'the key, shown once', schema: CreatedApiKeyAnswer }, 400: invalid('the tenant id or the name is invalid') },
  }),
  tenantRoute({
    method: 'get',
    path: '/api-keys',
    summary: 'List bot API keys',
    responses: { 200: { description: 'the tenant’s keys, never a key itself', schema: ApiKeysAnswer } },
  }),
  tenantRoute({
    method: 'delete',
    path: '/api-keys/:id',
    summary: 'Revoke a bot API key',
    params: ApiKeyParams,
    responses: { 204: deleted, 400: invalid('the tenant id or the key id is invalid'), 404: noSuch('API key with this id') },
  }),
  tenantRoute({
    method: 'post',
    path: '/context-secrets',
    summary: 'Create a link-context secret',
    description: 'A secret the tenant’s bots sign link contexts with; several may be active at once, for rotation. The secret is in this answer only.',
    responses: { 201: { description: 'the secret, shown once', schema: CreatedContextSecretAnswer } },
  }),
  tenantRoute({
    method: 'get',
    path: '/context-secrets',
    summary: 'List active link-context secrets',
    responses: { 200: { description: 'ids and times, never a secret', schema: ContextSecretsAnswer } },
  }),
  tenantRoute({
    method: 'delete',
    path: '/context-secrets/:id',
    summary: 'Retire a link-context secret',
    description: 'Contexts signed with it are refused from now on.',
    params: ContextSecretParams,
    responses: { 204: { description: 'retired' }, 400: invalid('the tenant id or the secret id is invalid'), 404: noSuch('active context secret with this id') },
  }),
  tenantRoute({
    method: 'get',
    path: '/providers',
    summary: 'List a tenant’s providers',
    responses: { 200: { description: 'every provider, whether this tenant configured it, and what it still needs', schema: TenantProvidersAnswer } },
  }),
  tenantRoute({
    method: 'put',
    path: '/providers/:provider',
    summary: 'Configure a provider for a tenant',
    description:
      'Exactly the variables the provider reads from the environment in a single-tenant deployment (DISCORD_CLIENT_ID…; for an OpenID provider `corp`, CORP_ISSUER, CORP_CLIENT_ID…), checked as the module reads them and stored sealed as the tenant’s next version; links made with an older version keep refreshing with it. Secret values are never shown again.',
    params: TenantProviderParams,
    body: ProviderConfigBody,
    responses: {
      200: { description: 'configured; secret values masked', schema: ProviderConfigAnswer },
      400: failure(['bad_request', 'provider_not_per_tenant'], 'a variable is missing or invalid (named, never its value), the tenant is default (configured by the environment), or the provider is the gateway’s only'),
      404: failure(['tenant_not_found', 'unknown_provider', 'not_found'], `no such tenant or provider; or ${OFF}`),
    },
  }),
  tenantRoute({
    method: 'delete',
    path: '/providers/:provider',
    summary: 'Remove a tenant’s provider',
    params: TenantProviderParams,
    responses: { 204: { description: 'removed' }, 400: invalid('an id is invalid, or the tenant is default (configured by the environment)'), 404: noSuch('configuration for this provider') },
  }),
  tenantRoute({
    method: 'post',
    path: '/apps',
    summary: 'Create an app people sign in to',
    description: 'An OpenID client of the tenant’s OpenID Provider, and an allowlist of the web-session API’s postLoginRedirect. A confidential app’s client secret is in this answer only.',
    body: CreateAppBody,
    responses: { 201: { description: 'the client id (and secret)', schema: CreatedAppAnswer }, 400: invalid('a field is invalid, or names a provider the tenant does not have') },
  }),
  tenantRoute({
    method: 'get',
    path: '/apps',
    summary: 'List a tenant’s apps',
    responses: { 200: { description: 'the apps, never a secret', schema: AppsAnswer } },
  }),
  tenantRoute({
    method: 'delete',
    path: '/apps/:clientId',
    summary: 'Delete an app',
    description: 'Its sign-ins stop at once, and its redirect URIs leave the web-session allowlist.',
    params: AppParams,
    responses: { 204: deleted, 400: invalid('the tenant id or the client id is invalid'), 404: noSuch('app with this client id') },
  }),
  tenantRoute({
    method: 'get',
    path: '/signing-keys',
    summary: 'List the OpenID Provider’s signing keys',
    description: 'The keys in the tenant’s JWKS: the one signing, a next one, retired ones until their tokens expire.',
    responses: { 200: { description: 'the keys, never a private part', schema: SigningKeysAnswer } },
  }),
  tenantRoute({
    method: 'post',
    path: '/signing-keys',
    summary: 'Rotate the signing key',
    description: 'The next key is published now and signs `publishSeconds` later (default a day), so relying parties have it before the first token it signs; the current one then retires.',
    body: RotateSigningKeyBody,
    responses: {
      201: { description: 'the next key', schema: SigningKeyAnswer },
      400: invalid('the tenant id or publishSeconds is invalid'),
      409: failure(['key_rotation_pending'], 'the last rotation’s next key has not started signing yet'),
    },
  }),
  tenantRoute({
    method: 'put',
    path: '/webhook',
    summary: 'Set the webhook endpoint',
    description: 'The tenant’s link events are POSTed to `url`, signed with `secret` (never shown again).',
    body: WebhookBody,
    responses: { 200: { description: 'set', schema: WebhookAnswer }, 400: invalid('the url or secret is invalid (plain http off this machine in production), or the tenant is default (the environment’s)') },
  }),
  tenantRoute({
    method: 'delete',
    path: '/webhook',
    summary: 'Remove the webhook endpoint',
    responses: { 204: { description: 'removed' }, 400: invalid('the tenant id is invalid, or the tenant is default (the environment’s)'), 404: noSuch('webhook') },
  }),
  tenantRoute({
    method: 'delete',
    path: '/users/:userId/links/:provider',
    summary: 'Delete a user’s link',
    description:
      'As the bot API’s unlink, in this tenant, and audited (`link.delete`): the link is deleted and `link.deleted` sent; its credentials are revoked at the provider where it can. The answer is the link as it was and what the provider said. The provider need not be configured any more (then the revocation is `provider_unavailable`). `linkgate links delete` uses it while the gateway runs on the embedded database.',
    params: TenantLinkParams,
    responses: {
      200: { description: 'deleted: the link as it was, and what the provider said about revoking its credentials', schema: OperatorUnlinkAnswer },
      400: invalid('the tenant id, user id or provider id is invalid'),
      404: failure(['tenant_not_found', 'not_linked', 'not_found'], `no such tenant, or the user has no such link; or ${OFF}`),
    },
  }),
  tenantRoute({
    method: 'post',
    path: '/links:import',
    summary: 'Import a tenant’s links',
    description:
      'As the bot API’s import, into this tenant: JSON lines (Content-Type: application/x-ndjson), one link per line, at most 10 000 lines and 8 MiB; or an export of this API with its Linkgate-Passphrase header. Each line is validated and stored (sealed) on its own.',
    headers: PassphraseHeaders,
    body: v.pipe(v.unknown(), v.description('JSON lines: one link object per line (the example shows one line)')),
    bodyType: 'application/x-ndjson',
    responses: {
      200: { description: 'what happened to each line', schema: ImportAnswer },
      400: invalid('not JSON lines, an export without its passphrase (or with a wrong one), or the tenant id is invalid'),
      413: failure(['payload_too_large'], 'more than 8 MiB or 10 000 lines'),
    },
  }),
  tenantRoute({
    method: 'get',
    path: '/links:export',
    summary: 'Export a tenant’s links',
    description:
      'Every link of the tenant as JSON lines, the credentials sealed with the Linkgate-Passphrase given (12 characters at least), or in plaintext only with `?plaintext=true`. Imports back as it is, here or into another gateway.',
    query: ExportQuery,
    headers: PassphraseHeaders,
    responses: {
      200: { description: 'the links', contentType: 'application/x-ndjson', schema: v.pipe(v.string(), v.description('JSON lines: one link per line, after a header line (format, kdf, salt) when sealed')) },
      400: invalid('neither a passphrase nor plaintext=true, a passphrase shorter than 12 characters, or the tenant id is invalid'),
    },
  }),
];

// ── The web-session API (src/http/web-session.ts) ─────────────────────────

export const signInOperations: Operation[] = [
  {
    method: 'get',
    path: '/api/auth/:provider/start',
    summary: 'Start a sign-in that ends in a cookie session',
    description:
      'For an app behind the same reverse proxy as the gateway. The tenant is x-tenant-id, else tenantId, else the current session’s, else default. postLoginRedirect is checked against the redirect URIs of the tenant’s first-party apps before any provider is contacted. Send the browser to authorizationUrl; the provider’s callback sets the session cookie (HttpOnly, SameSite=Lax, `__Host-` over https) and answers 303 to postLoginRedirect.',
    tag: 'sign-in',
    auth: 'public',
    params: StartParams,
    query: StartQuery,
    headers: TenantHeaders,
    responses: {
      200: { description: 'mode=json: where to send the browser', schema: StartAnswer },
      302: { description: 'mode=redirect: to the provider (or the gateway’s own form)', headers: { Location: { description: 'where the sign-in goes on', schema: { type: 'string', format: 'uri' } } } },
      400: failure(['bad_request', 'redirect_not_allowed'], 'a parameter is invalid, x-tenant-id and tenantId disagree, or postLoginRedirect is not a redirect URI of the tenant’s first-party apps (for this provider)'),
      404: failure(['tenant_not_found', 'unknown_provider'], 'no such tenant, or no such provider'),
      502: failure(['provider_unavailable', 'provider_response_invalid'], 'the provider could not be reached, or cannot sign people in'),
      503: failure(['provider_unconfigured'], 'the provider is not configured for this tenant'),
      504: failure(['provider_timeout'], 'the provider did not answer in time'),
    },
  },
  {
    method: 'get',
    path: '/api/auth/session',
    summary: 'The signed-in person',
    description: 'The session this browser’s cookie opens: the user, the account they signed in with, and when the session ends (8 hours, or the provider token’s lifetime when shorter). Unlinking that account ends it.',
    tag: 'sign-in',
    auth: 'session',
    query: SessionQuery,
    headers: TenantHeaders,
    responses: {
      200: { description: 'signed in', schema: SessionAnswer },
      400: failure(['bad_request'], 'tenantId or x-tenant-id is invalid, or they disagree'),
      401: failure(['not_signed_in'], 'no session cookie, or its session ended (expired, logged out, unlinked, or another tenant’s)'),
    },
  },
  {
    method: 'post',
    path: '/api/auth/logout',
    summary: 'Sign out',
    description: 'Ends the session on the server and clears its cookie; with no session it does nothing and says the same.',
    tag: 'sign-in',
    auth: 'session',
    responses: {
      204: { description: 'signed out' },
      403: failure(['csrf_failed'], 'a browser’s request from another site (Sec-Fetch-Site and Origin are neither the gateway’s nor one of the tenant’s apps’)'),
    },
  },
];

export const operations: Operation[] = [...botOperations, ...operatorOperations, ...signInOperations];

const json = (schema: Schema, typeMode: 'input' | 'output'): JsonSchema => {
  const { $schema: _, ...rest } = toJsonSchema(schema, { target: 'draft-2020-12', typeMode, errorMode: 'ignore' }) as JsonSchema & { $schema?: string };
  return rest;
};

// Only a whole segment is a parameter: `/links:import` is a literal name (AIP-136's custom methods).
export const openApiPath = (path: string) => path.replace(/\/:([A-Za-z]+)/g, '/{$1}');

function parameters(where: 'path' | 'query' | 'header', schema: Fields | undefined) {
  if (!schema) return [];
  return Object.entries(schema.entries).map(([name, entry]) => ({
    name,
    in: where,
    required: where === 'path' || !('default' in entry || entry.type === 'optional'),
    schema: json(entry, 'input'),
  }));
}

const SECURITY: Record<Auth, Array<Record<string, string[]>>> = {
  bot: [{ apiKey: [] }],
  operator: [{ operatorKey: [] }],
  session: [{ sessionCookie: [] }],
  public: [],
};

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
      ...(authOf(op) === 'bot' ? {} : { security: SECURITY[authOf(op)] }),
      parameters: [...parameters('path', op.params), ...parameters('query', op.query), ...parameters('header', op.headers)],
      ...(op.body ? { requestBody: { required: true, content: { [op.bodyType ?? 'application/json']: { schema: json(op.body, 'input') } } } } : {}),
      responses: Object.fromEntries(
        Object.entries(op.responses).map(([status, response]) => [
          status,
          {
            description: response.description,
            ...(response.headers ? { headers: response.headers } : {}),
            ...(response.schema ? { content: { [response.contentType ?? 'application/json']: { schema: json(response.schema, 'output') } } } : {}),
          },
        ]),
      ),
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Linkgate API',
      version: '1',
      description:
        'Account links for chat bots (/api/v1, with a bot API key), the operator API (/api/admin/v1, with an operator key; every route answers 404 while LINKGATE_ADMIN_KEYS is unset) and the web-session API for same-site apps (/api/auth, with a cookie). Errors are `{ "error": { "code", "message" } }` with a stable code. Besides the answers each route lists, any route may answer 413 `payload_too_large` (a body over its limit), 429 `rate_limited` (with Retry-After; requests with a wrong key count against the client address) and 503 `database_unavailable`.',
    },
    servers: [{ url: serverUrl }],
    security: SECURITY.bot,
    components: {
      securitySchemes: {
        apiKey: { type: 'http', scheme: 'bearer', description: 'a bot API key: one of LINKGATE_API_KEYS (the default tenant) or a key the operator API made for a tenant' },
        operatorKey: { type: 'http', scheme: 'bearer', description: 'an operator key: one of LINKGATE_ADMIN_KEYS, kept apart from the bots’ keys' },
        sessionCookie: {
          type: 'apiKey',
          in: 'cookie',
          name: new URL(serverUrl).protocol === 'https:' ? `__Host-${SESSION_COOKIE}` : SESSION_COOKIE,
          description: 'the web-session cookie the sign-in set (HttpOnly: the browser sends it, the app’s scripts cannot read it)',
        },
      },
    },
    tags: [
      { name: 'links', description: 'Link URLs, links, tokens' },
      { name: 'providers', description: 'What can be linked' },
      { name: 'atproto', description: 'Calls made with a user’s ATProto session' },
      { name: 'proxy', description: 'Calls to the provider’s own API with a user’s link' },
      { name: 'webhooks', description: 'Link events sent to LINKGATE_WEBHOOK_URL' },
      { name: 'health', description: 'For load balancers and orchestrators' },
      { name: 'operator', description: 'The operator API: tenants, their keys, secrets, providers, apps and webhooks, links in and out, the audit trail' },
      { name: 'sign-in', description: 'The web-session API: sign a person in to a same-site app with a cookie session' },
    ],
    paths,
  };
}
