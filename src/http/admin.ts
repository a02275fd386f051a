/**
 * The operator API, `/api/admin/v1`: tenants, their bot API keys, link-context
 * secrets, provider apps and webhook endpoint (docs/tenants.md). Authorized by
 * `Authorization: Bearer <one of LINKGATE_ADMIN_KEYS>`, keys kept apart from
 * the bots'; without LINKGATE_ADMIN_KEYS every route answers 404, as if the
 * API did not exist. Secrets are write-only: a bot API key and a context
 * secret are shown once, in the answer that creates them; provider secrets
 * and the webhook secret never. Every change, and every request refused for
 * its key, is appended to the audit trail (src/core/audit.ts), which
 * `GET /audit` and `GET /audit.csv` read.
 */
import { Hono, type Context } from 'hono';
import type { Logger } from 'pino';
import * as v from 'valibot';
import { BrandColor, BrandIconUrl, BrandName, isLoopback, SupportUrl } from '../config.ts';
import { AUDIT_ACTIONS, AuditQuery, csvExport, list as listAudit, outcomeOf, record, type AuditAction, type AuditFact, type AuditFilter } from '../core/audit.ts';
import { CONSOLE_CLOSED, createInvite, InviteId, NO_OPEN_INVITE, openInvites, revokeInvite } from '../core/console-invites.ts';
import { createApiKeyIdentifier } from '../core/crypto.ts';
import { LinkgateError } from '../core/errors.ts';
import { DEFAULT_TENANT, ProviderId } from '../core/ids.ts';
import { toApiLink, type LinkStore } from '../core/links.ts';
import type { Metrics } from '../core/metrics.ts';
import { DEFAULT_KEY_PUBLISH_SECONDS, MAX_KEY_PUBLISH_SECONDS, type OpenIdApp, type OpenIdApps, type SigningKeyAdmin, type SigningKeyInfo } from '../core/openid-storage.ts';
import { deleteTenant } from '../core/tenant-deletion.ts';
import { exportLinks } from '../core/link-transfer.ts';
import { unlink } from '../core/unlink.ts';
import { answerImport, IMPORT_MAX_BYTES, LinkParams } from './api.ts';
import { maskSecrets, type ProviderDirectory } from '../core/tenant-providers.ts';
import { ApiKeyName, TenantId, TenantName, type ApiKeyInfo, type Tenant, type TenantStore } from '../core/tenants.ts';
import { parseInput } from '../core/validation.ts';
import type { Db } from '../db/client.ts';
import { describeNeeds } from '../registry.ts';
import { bearerToken, bodyLimit, readJsonBody, type AppEnv } from './middleware.ts';

export interface AdminRoutesDeps {
  adminKeys: readonly string[];
  tenants: TenantStore;
  providers: ProviderDirectory;
  links: LinkStore;
  db: Db;
  publicBaseUrl: URL;
  production: boolean;
  hashUserId: (tenant: string, userId: string) => string;
  /** Counts a request without a valid key against its address (a 429 once over). */
  countRefused: (c: Context<AppEnv>) => void | Promise<void>;
  /** The client's address (X-Forwarded-For as LINKGATE_TRUST_PROXY says), for the audit trail. */
  addressOf: (c: Context<AppEnv>) => string;
  logger: Logger;
  /** LINK_ALLOW_SHARED_ACCOUNTS, for imported links as for linked ones. */
  allowSharedAccounts?: boolean;
  now?: () => number;
  /** The tenants' apps, the OpenID clients people sign in to (docs/sign-in.md). */
  apps: OpenIdApps;
  /** The keys the tenants' OpenID Providers sign with; a rotation reaches every instance. */
  signingKeys: SigningKeyAdmin;
  /** LINKGATE_ADMINS names someone: the admin console is open, and invites to it may be made. */
  consoleOpen: boolean;
  /** LINKGATE_METRICS: an operator's unlink counts as `via="admin"`. */
  metrics?: Metrics | undefined;
}

// ── Requests ────────────────────────────────────────────────────────────────

export const TenantParams = v.object({ tenant: v.pipe(TenantId, v.description('a tenant id: 1–40 lowercase letters, digits and hyphens')) });
export const CreateTenantBody = v.object({ id: TenantId, name: TenantName });
export const TenantLinkParams = v.object({ ...TenantParams.entries, ...LinkParams.entries });
export const CreateApiKeyBody = v.object({ name: ApiKeyName });
const field = (name: string, schema: v.GenericSchema<string, string>) =>
  v.pipe(
    v.string(`${name} must be a string`),
    v.rawTransform(({ dataset, addIssue, NEVER }) => {
      const parsed = v.safeParse(schema, dataset.value);
      if (parsed.success) return parsed.output;
      addIssue({ message: `${name} ${parsed.issues[0].message}` });
      return NEVER;
    }),
  );
export const UpdateTenantBody = v.object({
  name: v.optional(TenantName),
  apiRateLimit: v.optional(
    v.nullable(
      v.object({
        limit: v.pipe(v.number('apiRateLimit.limit must be a number'), v.integer('apiRateLimit.limit must be a whole number'), v.minValue(0, 'apiRateLimit.limit must be at least 0 (0: no limit)'), v.maxValue(1_000_000_000, 'apiRateLimit.limit is too large')),
        windowSeconds: v.pipe(v.number('apiRateLimit.windowSeconds must be a number'), v.integer('apiRateLimit.windowSeconds must be a whole number'), v.minValue(1, 'apiRateLimit.windowSeconds must be at least 1'), v.maxValue(3600, 'apiRateLimit.windowSeconds must be at most 3600')),
      }),
    ),
  ),
  brand: v.optional(
    v.nullable(
      v.object({
        name: v.optional(field('brand.name', BrandName)),
        iconUrl: v.optional(field('brand.iconUrl', BrandIconUrl)),
        color: v.optional(field('brand.color', BrandColor)),
        supportUrl: v.optional(field('brand.supportUrl', SupportUrl)),
      }),
    ),
  ),
  userProvider: v.optional(v.nullable(v.pipe(v.string('userProvider must be a string'), v.regex(/^[a-z][a-z0-9_-]{0,31}$/, 'userProvider must be a provider id (lowercase letters, digits, _ and -)')))),
});
export const ApiKeyParams = v.object({
  tenant: TenantId,
  id: v.pipe(v.string(), v.regex(/^key_[A-Za-z0-9_-]{1,40}$/, 'id must be an API key id like key_…'), v.description('an API key id, key_…, as the list shows it')),
});
export const ContextSecretParams = v.object({
  tenant: TenantId,
  id: v.pipe(v.string(), v.regex(/^cs_[A-Za-z0-9_-]{1,40}$/, 'id must be a context secret id like cs_…'), v.description('a context secret id, cs_…')),
});
export const TenantProviderParams = v.object({ tenant: TenantId, provider: v.pipe(ProviderId, v.description('a provider id: a module (discord) or a name of the OIDC family (corp)')) });
const VariableName = v.pipe(v.string(), v.regex(/^[A-Z][A-Z0-9_]{0,63}$/, 'each variable name must look like DISCORD_CLIENT_ID'));
export const ProviderConfigBody = v.object({
  env: v.pipe(
    v.record(VariableName, v.pipe(v.string('each value must be a string'), v.maxLength(16_384, 'each value must be at most 16 384 characters'))),
    v.check((env) => Object.keys(env).length <= 64, 'env may hold at most 64 variables'),
    v.description('exactly the variables the provider reads from the environment in a single-tenant deployment'),
  ),
});
export const WebhookBody = v.object({
  url: v.pipe(
    v.string('url must be a string'),
    v.maxLength(2048, 'url must be at most 2048 characters'),
    v.check((text) => URL.canParse(text) && /^https?:$/.test(new URL(text).protocol), 'url must be an absolute http(s) URL'),
    v.check((text) => !URL.canParse(text) || (!new URL(text).username && !new URL(text).password), 'url must not contain a user name or password (events are signed with the secret)'),
  ),
  secret: v.pipe(v.string('secret must be a string'), v.minLength(32, 'secret must be at least 32 characters'), v.maxLength(512, 'secret must be at most 512 characters')),
});

const appUris = (name: string) =>
  v.pipe(
    v.array(
      v.pipe(
        v.string(`each of ${name} must be a string`),
        v.maxLength(2048, `each of ${name} must be at most 2048 characters`),
        v.check((text) => URL.canParse(text) && /^https?:$/.test(new URL(text).protocol), `each of ${name} must be an absolute http(s) URL`),
        // RFC 6749 §3.1.2: no fragment; and plain http only where nothing else can listen in (RFC 8252 §7.3).
        v.check((text) => !URL.canParse(text) || !new URL(text).hash, `each of ${name} must not have a fragment (#…)`),
        v.check((text) => !URL.canParse(text) || new URL(text).protocol === 'https:' || isLoopback(new URL(text)), `each of ${name} must be https (plain http only on a loopback address)`),
      ),
      `${name} must be a list of URLs`,
    ),
    v.maxLength(20, `${name} may hold at most 20 URLs`),
  );
export const AppParams = v.object({
  tenant: TenantId,
  clientId: v.pipe(v.string(), v.regex(/^app_[A-Za-z0-9_-]{1,40}$/, 'clientId must be an app id like app_…'), v.description('an app\'s client id, app_…')),
});
export const CreateAppBody = v.object({
  name: TenantName,
  // Required unless the app signs in through the device grant only (checked in createTenantApp).
  redirectUris: v.optional(appUris('redirectUris'), []),
  postLogoutRedirectUris: v.optional(appUris('postLogoutRedirectUris'), []),
  type: v.picklist(['confidential', 'public'], 'type must be "confidential" (a server that keeps a secret) or "public" (a browser or native app)'),
  providers: v.optional(
    v.pipe(v.array(ProviderId, 'providers must be a list of provider ids'), v.minLength(1, 'providers must list at least one provider (leave it out for all of them)'), v.maxLength(32, 'providers may list at most 32')),
  ),
  subject: v.optional(v.picklist(['user', 'external'], 'subject must be "user" or "external"'), 'user'),
  firstParty: v.optional(v.boolean('firstParty must be true or false'), true),
  // RFC 7518 §3.2: an HS256 key of at least 256 bits.
  legacyJwtSecret: v.optional(
    v.pipe(v.string('legacyJwtSecret must be a string'), v.minLength(32, 'legacyJwtSecret must be at least 32 characters'), v.maxLength(512, 'legacyJwtSecret must be at most 512 characters')),
  ),
  deviceFlow: v.optional(v.boolean('deviceFlow must be true or false'), false),
});

// ── Answers (also what the tests check real answers against) ───────────────

const IsoTime = v.pipe(v.string(), v.isoTimestamp());
export const TenantAnswer = v.strictObject({ id: v.string(), name: v.string(), createdAt: IsoTime });
const RuleAnswer = v.strictObject({ limit: v.number(), windowSeconds: v.number() });
const BrandAnswer = v.strictObject({ name: v.optional(v.string()), iconUrl: v.optional(v.string()), color: v.optional(v.string()), supportUrl: v.optional(v.string()) });
export const TenantDetailAnswer = v.strictObject({
  id: v.string(),
  name: v.string(),
  createdAt: IsoTime,
  apiRateLimit: v.nullable(RuleAnswer),
  brand: v.nullable(BrandAnswer),
  webhookUrl: v.nullable(v.string()),
  userProvider: v.nullable(v.string()),
  apiKeys: v.number(),
  contextSecrets: v.number(),
});
export const TenantsAnswer = v.strictObject({ tenants: v.array(TenantAnswer) });
export const ApiKeyAnswer = v.strictObject({ id: v.string(), name: v.string(), createdAt: IsoTime, lastUsedAt: v.nullable(IsoTime) });
export const CreatedApiKeyAnswer = v.strictObject({ id: v.string(), name: v.string(), key: v.string(), createdAt: IsoTime });
export const ApiKeysAnswer = v.strictObject({ apiKeys: v.array(ApiKeyAnswer) });
export const CreatedContextSecretAnswer = v.strictObject({ id: v.string(), secret: v.string(), createdAt: IsoTime });
export const ContextSecretsAnswer = v.strictObject({ contextSecrets: v.array(v.strictObject({ id: v.string(), createdAt: IsoTime })) });
export const ProviderConfigAnswer = v.strictObject({
  id: v.string(),
  displayName: v.string(),
  configured: v.literal(true),
  version: v.number(),
  env: v.record(v.string(), v.string()),
});
export const TenantProvidersAnswer = v.strictObject({
  providers: v.array(v.strictObject({ id: v.string(), displayName: v.string(), configured: v.boolean(), missing: v.optional(v.string()) })),
});
export const WebhookAnswer = v.strictObject({ url: v.string() });
export const CreatedAppAnswer = v.strictObject({ clientId: v.string(), clientSecret: v.optional(v.string()) });
export const AppAnswer = v.strictObject({
  clientId: v.string(),
  name: v.string(),
  type: v.picklist(['confidential', 'public']),
  redirectUris: v.array(v.string()),
  postLogoutRedirectUris: v.array(v.string()),
  providers: v.nullable(v.array(v.string())),
  subject: v.picklist(['user', 'external']),
  firstParty: v.boolean(),
  /** Whether it has a legacy JWT secret (never the secret). */
  legacyJwt: v.boolean(),
  deviceFlow: v.boolean(),
  createdAt: IsoTime,
});
export const AppsAnswer = v.strictObject({ apps: v.array(AppAnswer) });
export const RotateSigningKeyBody = v.object({
  publishSeconds: v.optional(
    v.pipe(
      v.number('publishSeconds must be a number of seconds'),
      v.integer('publishSeconds must be a whole number of seconds'),
      v.minValue(0, 'publishSeconds must be 0 or more'),
      v.maxValue(MAX_KEY_PUBLISH_SECONDS, `publishSeconds must be at most ${MAX_KEY_PUBLISH_SECONDS} (30 days)`),
    ),
    DEFAULT_KEY_PUBLISH_SECONDS,
  ),
});
export const SigningKeyAnswer = v.strictObject({
  kid: v.string(),
  alg: v.string(),
  state: v.picklist(['next', 'signing', 'retired']),
  createdAt: IsoTime,
  signsFrom: IsoTime,
  retiredAt: v.nullable(IsoTime),
  expiresAt: v.nullable(IsoTime),
});
export const SigningKeysAnswer = v.strictObject({ signingKeys: v.array(SigningKeyAnswer) });
export const InviteParams = v.object({ id: v.pipe(InviteId, v.description('an invite id, inv_…, as the list shows it')) });
/** A new invite to the admin console: the link is in this answer only. */
export const CreatedInviteAnswer = v.strictObject({ id: v.string(), url: v.pipe(v.string(), v.url()), expiresAt: IsoTime });
export const InvitesAnswer = v.strictObject({ invites: v.array(v.strictObject({ id: v.string(), createdAt: IsoTime, expiresAt: IsoTime })) });

/** An invite never opens a closed console (src/core/console-invites.ts): asked for one while LINKGATE_ADMINS is empty. */
export const consoleClosed = () =>
  new LinkgateError('console_closed', CONSOLE_CLOSED);

/** Makes an invite (the console's Admins page, this API and `linkgate admin invite`): its link, shown once. */
export async function makeInvite(db: Db, publicBaseUrl: URL, now: Date): Promise<v.InferOutput<typeof CreatedInviteAnswer>> {
  const made = await createInvite(db, now);
  return { id: made.id, url: new URL(`/admin/invite/${made.token}`, publicBaseUrl).href, expiresAt: made.expiresAt.toISOString() };
}

/** `GET /audit`: a page of the audit trail, newest first (src/core/audit.ts's AuditEvent). */
export const AuditAnswer = v.strictObject({
  events: v.array(
    v.strictObject({
      id: v.string(),
      at: IsoTime,
      tenant: v.nullable(v.string()),
      actor: v.pipe(v.string(), v.description('cli, operator-key:<key digest id>, or admin:<provider>:<externalId>')),
      action: v.picklist(AUDIT_ACTIONS),
      target: v.nullable(v.string()),
      outcome: v.picklist(['ok', 'refused', 'failed']),
      code: v.nullable(v.pipe(v.string(), v.description('the error code of a refused or failed change'))),
      clientAddress: v.nullable(v.string()),
      userAgent: v.nullable(v.string()),
      detail: v.pipe(v.nullable(v.record(v.string(), v.union([v.string(), v.number(), v.boolean(), v.null(), v.array(v.string())]))), v.description('facts, never a secret')),
    }),
  ),
  nextCursor: v.pipe(v.nullable(v.string()), v.description('pass as cursor for older rows; null on the last page')),
});

/** `GET …/links:export`: `?plaintext=true` exports the credentials in the clear (without a Linkgate-Passphrase). */
export const ExportQuery = v.object({ plaintext: v.optional(v.picklist(['true', 'false'], 'plaintext must be true or false'), 'false') });
/** The passphrase an export is sealed with, and a sealed export is imported with. */
export const PassphraseHeaders = v.object({
  'linkgate-passphrase': v.optional(v.pipe(v.string(), v.description('seals the credentials (an export: 12 characters at least), or opens a sealed export (an import)'))),
});

export const signingKeyAnswer = (key: SigningKeyInfo): v.InferOutput<typeof SigningKeyAnswer> => ({
  kid: key.kid,
  alg: key.alg,
  state: key.state,
  createdAt: key.createdAt.toISOString(),
  signsFrom: key.signsFrom.toISOString(),
  retiredAt: key.retiredAt?.toISOString() ?? null,
  expiresAt: key.expiresAt?.toISOString() ?? null,
});

export const appAnswer = (app: OpenIdApp): v.InferOutput<typeof AppAnswer> => ({
  clientId: app.clientId,
  name: app.name,
  type: app.type,
  redirectUris: app.redirectUris,
  postLogoutRedirectUris: app.postLogoutRedirectUris,
  providers: app.providers,
  subject: app.subject,
  firstParty: app.firstParty,
  legacyJwt: app.legacyJwt,
  deviceFlow: app.deviceFlow,
  createdAt: app.createdAt.toISOString(),
});

const iso = (date: Date | null) => (date === null ? null : date.toISOString());

// ── What both the routes and `linkgate tenants …` answer ────────────────────

export const tenantAnswer = (t: Tenant): v.InferOutput<typeof TenantAnswer> => ({ id: t.id, name: t.name, createdAt: t.createdAt.toISOString() });
export const apiKeyAnswer = (k: ApiKeyInfo): v.InferOutput<typeof ApiKeyAnswer> => ({ id: k.id, name: k.name, createdAt: k.createdAt.toISOString(), lastUsedAt: iso(k.lastUsedAt) });
export const createdApiKeyAnswer = (k: ApiKeyInfo & { key: string }): v.InferOutput<typeof CreatedApiKeyAnswer> => ({ id: k.id, name: k.name, key: k.key, createdAt: k.createdAt.toISOString() });
export const createdContextSecretAnswer = (s: { id: string; secret: string; createdAt: Date }): v.InferOutput<typeof CreatedContextSecretAnswer> => ({ id: s.id, secret: s.secret, createdAt: s.createdAt.toISOString() });
export const contextSecretAnswer = (s: { id: string; createdAt: Date }) => ({ id: s.id, createdAt: s.createdAt.toISOString() });

export async function tenantDetail(tenants: TenantStore, tenant: string): Promise<v.InferOutput<typeof TenantDetailAnswer>> {
  const found = await tenants.require(tenant);
  const [apiKeys, secrets, webhookUrl] = await Promise.all([tenants.listApiKeys(tenant), tenants.listContextSecrets(tenant), tenants.webhookUrl(tenant)]);
  return {
    id: found.id,
    name: found.name,
    createdAt: found.createdAt.toISOString(),
    apiRateLimit: found.apiRateLimit ?? null,
    brand: found.brand ?? null,
    webhookUrl: webhookUrl ?? null,
    userProvider: found.userProvider ?? null,
    apiKeys: apiKeys.length,
    contextSecrets: secrets.length,
  };
}

export async function tenantProviders(tenants: TenantStore, providers: ProviderDirectory, tenant: string): Promise<v.InferOutput<typeof TenantProvidersAnswer>> {
  await tenants.require(tenant);
  const registry = await providers.of(tenant);
  return {
    providers: registry.list().map((p) => ({
      id: p.id,
      displayName: p.displayName,
      configured: p.instance !== undefined,
      ...(p.instance ? {} : { missing: describeNeeds(p.needs) }),
    })),
  };
}

/** The default tenant's providers and webhook are the environment's: changing them here is refused. */
export const environmentOnly = (what: string) =>
  new LinkgateError('bad_request', `the default tenant's ${what} is configured by the environment (a single-tenant deployment's variables), not here`);

/** Checks a provider configuration as the module reads it and stores it as the tenant's next version. */
export async function configureProvider(
  deps: { tenants: TenantStore; providers: ProviderDirectory; publicBaseUrl: URL },
  tenant: string,
  provider: string,
  env: Record<string, string>,
): Promise<v.InferOutput<typeof ProviderConfigAnswer>> {
  await deps.tenants.require(tenant);
  const { displayName } = await deps.providers.check(provider, env, { publicBaseUrl: deps.publicBaseUrl });
  const stored = await deps.tenants.putProviderConfig(tenant, provider, env);
  return { id: provider, displayName, configured: true as const, version: stored.version, env: maskSecrets(env) };
}

/** Creates a tenant's app (the route and `linkgate tenants apps create`): its client secret, if any, is in this answer only. */
export async function createTenantApp(
  deps: { tenants: TenantStore; providers: ProviderDirectory; apps: OpenIdApps },
  tenant: string,
  body: v.InferOutput<typeof CreateAppBody>,
): Promise<v.InferOutput<typeof CreatedAppAnswer>> {
  await deps.tenants.require(tenant);
  if (body.redirectUris.length === 0 && !body.deviceFlow) {
    throw new LinkgateError('bad_request', 'redirectUris must list at least one URL (only an app with deviceFlow: true may have none)');
  }
  if (body.providers) {
    const registry = await deps.providers.of(tenant);
    const unknown = body.providers.find((id) => !registry.get(id));
    if (unknown !== undefined) throw new LinkgateError('bad_request', `providers: this tenant has no provider "${unknown}"`);
  }
  const created = await deps.apps.create(tenant, { ...body, providers: body.providers });
  return { clientId: created.clientId, ...(created.clientSecret ? { clientSecret: created.clientSecret } : {}) };
}

/** A tenant's apps, never a secret. */
export async function tenantApps(deps: { tenants: TenantStore; apps: OpenIdApps }, tenant: string): Promise<v.InferOutput<typeof AppsAnswer>> {
  await deps.tenants.require(tenant);
  return { apps: (await deps.apps.list(tenant)).map(appAnswer) };
}

/** Removes a tenant's app: its sign-ins stop at once (oidc-provider finds no client; its tokens no longer verify at the token endpoint), and its redirect URIs leave the web-session allowlist. */
export async function deleteTenantApp(deps: { tenants: TenantStore; apps: OpenIdApps }, tenant: string, clientId: string): Promise<void> {
  await deps.tenants.require(tenant);
  if (!(await deps.apps.delete(tenant, clientId))) throw new LinkgateError('not_found', 'this tenant has no app with this client id');
}

/** The endpoint a webhook body names; plain http off this machine is refused in production. */
export function webhookEndpoint(body: v.InferOutput<typeof WebhookBody>, production: boolean): { url: URL; secret: string } {
  const url = new URL(body.url);
  // Events name users and their accounts: in clear only to this machine.
  if (production && url.protocol === 'http:' && !isLoopback(url)) throw new LinkgateError('bad_request', 'url must be https in production (plain http only on a loopback address)');
  return { url, secret: body.secret };
}

/** What a change adds to its audit row: what it acted on (default: the tenant of the path) and facts without secrets. */
interface AuditNote {
  /** When the path names none (creating a tenant). */
  tenant?: string;
  target?: string;
  detail?: Record<string, AuditFact>;
}

export function adminRoutes(deps: AdminRoutesDeps) {
  const app = new Hono<AppEnv>();
  const enabled = deps.adminKeys.length > 0;
  const adminKeyId = createApiKeyIdentifier(deps.adminKeys);
  const limitBody = bodyLimit(64 * 1024);
  const limitImport = bodyLimit(IMPORT_MAX_BYTES);
  const now = deps.now ?? Date.now;

  /** Appends a row; a database that refuses it is logged and reported, and does not undo or fail what was done. */
  async function audit(c: Context<AppEnv>, entry: { action: AuditAction; tenant: string | null; target: string | null; outcome: 'ok' | 'refused' | 'failed'; code?: string; detail?: Record<string, AuditFact> }) {
    const keyId = c.get('operatorKeyId');
    try {
      await record(deps.db, {
        ...entry,
        actor: { kind: 'operator-key', id: keyId ?? 'unknown' },
        clientAddress: deps.addressOf(c),
        userAgent: c.req.header('user-agent') ?? null,
        at: new Date(now()),
      });
    } catch (error) {
      c.get('log')().error({ cause: error instanceof Error ? { name: error.name, message: error.message.slice(0, 200) } : 'unknown', action: entry.action }, 'audit row not written');
    }
  }

  /** A change: one audit row whatever its end (ok, refused with the error code, failed), written before the answer leaves. */
  const audited =
    (action: AuditAction, handler: (c: Context<AppEnv>, note: AuditNote) => Promise<Response>) =>
    async (c: Context<AppEnv>): Promise<Response> => {
      const raw = c.req.param() as Record<string, string | undefined>;
      const tenant = v.is(TenantId, raw.tenant) ? raw.tenant : null;
      const note: AuditNote = {};
      let end: { outcome: 'ok' | 'refused' | 'failed'; code?: string } = { outcome: 'ok' };
      try {
        return await handler(c, note);
      } catch (error) {
        end = outcomeOf(error);
        throw error;
      } finally {
        const whose = note.tenant ?? tenant;
        await audit(c, { action, tenant: whose, target: note.target ?? (whose ? `tenant:${whose}` : null), ...end, ...(note.detail ? { detail: note.detail } : {}) });
      }
    };

  app.use('*', async (c, next) => {
    // Not configured: nothing here exists (and nothing is read or written).
    if (!enabled) throw new LinkgateError('not_found', 'no such route');
    const presented = bearerToken(c);
    const keyId = presented === undefined ? undefined : adminKeyId(presented);
    if (keyId === undefined) {
      // Over the limit this throws 429 before anything is written: a flood of bad keys costs no audit rows.
      await deps.countRefused(c);
      await audit(c, { action: 'operator_api.refused', tenant: null, target: `${c.req.method} ${c.req.path}`.slice(0, 200), outcome: 'refused', code: 'unauthorized', detail: { key: presented === undefined ? 'none' : 'unknown' } });
      c.header('WWW-Authenticate', 'Bearer realm="linkgate-admin"');
      throw new LinkgateError('unauthorized', 'a valid operator key is required (Authorization: Bearer <one of LINKGATE_ADMIN_KEYS>)');
    }
    c.set('operatorKeyId', keyId);
    // An import carries many links: its body may be larger.
    return (c.req.path.endsWith('/links:import') ? limitImport : limitBody)(c, next);
  });

  /** The audit trail, newest first, a page at a time (`nextCursor`). */
  app.get('/audit', async (c) => {
    const filter = parseInput(AuditQuery, c.req.query());
    return c.json(await listAudit(deps.db, filter));
  });

  /** The same rows as CSV, every page of them; the export is itself audited. */
  app.get('/audit.csv', async (c) => {
    const { cursor: _, limit: __, ...filter } = parseInput(AuditQuery, c.req.query());
    const facts: Record<string, AuditFact> = {};
    for (const [name, value] of Object.entries(filter)) if (value !== undefined) facts[name] = value instanceof Date ? value.toISOString() : String(value);
    await audit(c, { action: 'audit.export', tenant: filter.tenant ?? null, target: 'audit', outcome: 'ok', detail: facts });
    const lines = csvExport(deps.db, filter satisfies AuditFilter);
    return c.body(streamOf(lines), 200, { 'content-type': 'text/csv; charset=utf-8', 'content-disposition': 'attachment; filename="linkgate-audit.csv"' });
  });

  app.post(
    '/tenants',
    audited('tenant.create', async (c, note) => {
      const body = parseInput(CreateTenantBody, await readJsonBody(c));
      note.tenant = body.id;
      const tenant = await deps.tenants.create(body.id, body.name);
      note.detail = { name: tenant.name };
      deps.logger.info({ tenant: tenant.id }, 'tenant created');
      return c.json(tenantAnswer(tenant), 201);
    }),
  );

  app.get('/tenants', async (c) => {
    const list = await deps.tenants.list();
    return c.json({ tenants: list.map(tenantAnswer) });
  });

  app.get('/tenants/:tenant', async (c) => {
    const { tenant } = parseInput(TenantParams, c.req.param());
    return c.json(await tenantDetail(deps.tenants, tenant));
  });

  /** Renames a tenant, or sets (null: clears) its API rate limit per key and its pages' branding. */
  app.patch(
    '/tenants/:tenant',
    audited('tenant.update', async (c, note) => {
      const { tenant } = parseInput(TenantParams, c.req.param());
      const body = parseInput(UpdateTenantBody, await readJsonBody(c));
      note.detail = { fields: Object.keys(body).filter((name) => body[name as keyof typeof body] !== undefined) };
      if (tenant === DEFAULT_TENANT && (body.apiRateLimit !== undefined || body.brand !== undefined || body.userProvider !== undefined)) throw environmentOnly('rate limit, branding and user provider');
      const icon = body.brand?.iconUrl;
      // The pages allow images from our own origin and data: URLs only (CSP img-src).
      if (icon !== undefined && !icon.startsWith('data:') && new URL(icon).origin !== deps.publicBaseUrl.origin) {
        throw new LinkgateError('bad_request', `brand.iconUrl must be a data:image/…;base64 URL or a URL on ${deps.publicBaseUrl.origin}`);
      }
      await deps.tenants.update(tenant, body);
      c.get('log')().info({ tenant }, 'tenant updated');
      return c.json(await tenantDetail(deps.tenants, tenant));
    }),
  );

  /** Unlinks every link of the tenant, then removes it and all it has (src/core/tenant-deletion.ts). */
  app.delete(
    '/tenants/:tenant',
    audited('tenant.delete', async (c, note) => {
      const { tenant } = parseInput(TenantParams, c.req.param());
      const { unlinked } = await deleteTenant({ db: deps.db, tenants: deps.tenants, links: deps.links, providers: deps.providers, hashUserId: deps.hashUserId }, tenant, c.get('log')());
      note.detail = { unlinked };
      // How many links went with it, as `linkgate tenants delete` says.
      return c.body(null, 204, { 'Linkgate-Unlinked': String(unlinked) });
    }),
  );

  app.post(
    '/tenants/:tenant/api-keys',
    audited('api_key.create', async (c, note) => {
      const { tenant } = parseInput(TenantParams, c.req.param());
      const body = parseInput(CreateApiKeyBody, await readJsonBody(c));
      note.detail = { name: body.name };
      const created = await deps.tenants.createApiKey(tenant, body.name);
      note.target = `api_key:${created.id}`;
      c.get('log')().info({ tenant, apiKey: created.id }, 'API key created');
      return c.json(createdApiKeyAnswer(created), 201);
    }),
  );

  app.get('/tenants/:tenant/api-keys', async (c) => {
    const { tenant } = parseInput(TenantParams, c.req.param());
    const list = await deps.tenants.listApiKeys(tenant);
    return c.json({ apiKeys: list.map(apiKeyAnswer) });
  });

  app.delete(
    '/tenants/:tenant/api-keys/:id',
    audited('api_key.revoke', async (c, note) => {
      const { tenant, id } = parseInput(ApiKeyParams, c.req.param());
      note.target = `api_key:${id}`;
      if (!(await deps.tenants.deleteApiKey(tenant, id))) throw new LinkgateError('not_found', 'this tenant has no API key with this id');
      c.get('log')().info({ tenant, apiKey: id }, 'API key revoked');
      return c.body(null, 204);
    }),
  );

  app.post(
    '/tenants/:tenant/context-secrets',
    audited('context_secret.create', async (c, note) => {
      const { tenant } = parseInput(TenantParams, c.req.param());
      const created = await deps.tenants.createContextSecret(tenant);
      note.target = `context_secret:${created.id}`;
      c.get('log')().info({ tenant, contextSecret: created.id }, 'context secret created');
      return c.json(createdContextSecretAnswer(created), 201);
    }),
  );

  app.get('/tenants/:tenant/context-secrets', async (c) => {
    const { tenant } = parseInput(TenantParams, c.req.param());
    const list = await deps.tenants.listContextSecrets(tenant);
    return c.json({ contextSecrets: list.map(contextSecretAnswer) });
  });

  app.delete(
    '/tenants/:tenant/context-secrets/:id',
    audited('context_secret.retire', async (c, note) => {
      const { tenant, id } = parseInput(ContextSecretParams, c.req.param());
      note.target = `context_secret:${id}`;
      if (!(await deps.tenants.retireContextSecret(tenant, id))) throw new LinkgateError('not_found', 'this tenant has no active context secret with this id');
      c.get('log')().info({ tenant, contextSecret: id }, 'context secret retired');
      return c.body(null, 204);
    }),
  );

  app.get('/tenants/:tenant/providers', async (c) => {
    const { tenant } = parseInput(TenantParams, c.req.param());
    return c.json(await tenantProviders(deps.tenants, deps.providers, tenant));
  });

  app.put(
    '/tenants/:tenant/providers/:provider',
    audited('provider.configure', async (c, note) => {
      const { tenant, provider } = parseInput(TenantProviderParams, c.req.param());
      note.target = `provider:${provider}`;
      if (tenant === DEFAULT_TENANT) throw environmentOnly('providers');
      const { env } = parseInput(ProviderConfigBody, await readJsonBody(c));
      // The variables' names only: their values hold the provider app's secret.
      note.detail = { variables: Object.keys(env).sort() };
      const configured = await configureProvider(deps, tenant, provider, env);
      note.detail = { ...note.detail, version: configured.version };
      c.get('log')().info({ tenant, provider, version: configured.version }, 'tenant provider configured');
      return c.json(configured);
    }),
  );

  app.delete(
    '/tenants/:tenant/providers/:provider',
    audited('provider.remove', async (c, note) => {
      const { tenant, provider } = parseInput(TenantProviderParams, c.req.param());
      note.target = `provider:${provider}`;
      if (tenant === DEFAULT_TENANT) throw environmentOnly('providers');
      if (!(await deps.tenants.removeProviderConfig(tenant, provider))) throw new LinkgateError('not_found', 'this tenant has no configuration for this provider');
      c.get('log')().info({ tenant, provider }, 'tenant provider removed');
      return c.body(null, 204);
    }),
  );

  /** An app people sign in to: its client secret (confidential apps) is in this answer only. */
  app.post(
    '/tenants/:tenant/apps',
    audited('app.create', async (c, note) => {
      const { tenant } = parseInput(TenantParams, c.req.param());
      const body = parseInput(CreateAppBody, await readJsonBody(c));
      // Whether people are asked for consent, and whether a device may sign in: what makes an app trusted.
      note.detail = { name: body.name, type: body.type, firstParty: body.firstParty, deviceFlow: body.deviceFlow };
      const created = await createTenantApp(deps, tenant, body);
      note.target = `app:${created.clientId}`;
      c.get('log')().info({ tenant, app: created.clientId }, 'app created');
      return c.json(created, 201);
    }),
  );

  app.get('/tenants/:tenant/apps', async (c) => {
    const { tenant } = parseInput(TenantParams, c.req.param());
    return c.json(await tenantApps(deps, tenant));
  });

  app.delete(
    '/tenants/:tenant/apps/:clientId',
    audited('app.delete', async (c, note) => {
      const { tenant, clientId } = parseInput(AppParams, c.req.param());
      note.target = `app:${clientId}`;
      await deleteTenantApp(deps, tenant, clientId);
      c.get('log')().info({ tenant, app: clientId }, 'app deleted');
      return c.body(null, 204);
    }),
  );

  /** The keys in the tenant's JWKS: the one signing, a next one, retired ones until their tokens expire. */
  app.get('/tenants/:tenant/signing-keys', async (c) => {
    const { tenant } = parseInput(TenantParams, c.req.param());
    await deps.tenants.require(tenant);
    return c.json({ signingKeys: (await deps.signingKeys.list(tenant)).map(signingKeyAnswer) });
  });

  /** Rotates: the next key is published now and signs `publishSeconds` later; the current one then retires. */
  app.post(
    '/tenants/:tenant/signing-keys',
    audited('signing_key.rotate', async (c, note) => {
      const { tenant } = parseInput(TenantParams, c.req.param());
      const body = parseInput(RotateSigningKeyBody, await readJsonBody(c));
      await deps.tenants.require(tenant);
      const key = await deps.signingKeys.rotate(tenant, body.publishSeconds);
      note.target = `signing_key:${key.kid}`;
      note.detail = { publishSeconds: body.publishSeconds, signsFrom: key.signsFrom.toISOString() };
      c.get('log')().info({ tenant, kid: key.kid, signsFrom: key.signsFrom.toISOString() }, 'signing key rotated');
      return c.json(signingKeyAnswer(key), 201);
    }),
  );

  // ── Invites to the admin console ────────────────────────────────────────

  /** A one-time link that makes its first user an owner of the console (as `linkgate admin invite`); the link is in this answer only. */
  app.post(
    '/console/invites',
    audited('admin.invite', async (c, note) => {
      if (!deps.consoleOpen) throw consoleClosed();
      const made = await makeInvite(deps.db, deps.publicBaseUrl, new Date(now()));
      note.target = `invite:${made.id}`;
      // The link makes an owner: never audited, never logged.
      note.detail = { expiresAt: made.expiresAt };
      c.get('log')().info({ invite: made.id }, 'console invite made');
      return c.json(made, 201);
    }),
  );

  /** The open invites (not used, not expired), by id. */
  app.get('/console/invites', async (c) => {
    if (!deps.consoleOpen) throw consoleClosed();
    const open = await openInvites(deps.db, new Date(now()));
    return c.json({ invites: open.map((i) => ({ id: i.id, createdAt: i.createdAt.toISOString(), expiresAt: i.expiresAt.toISOString() })) });
  });

  app.delete(
    '/console/invites/:id',
    audited('admin.invite_revoke', async (c, note) => {
      if (!deps.consoleOpen) throw consoleClosed();
      const { id } = parseInput(InviteParams, c.req.param());
      note.target = `invite:${id}`;
      if (!(await revokeInvite(deps.db, id, new Date(now())))) throw new LinkgateError('not_found', NO_OPEN_INVITE);
      c.get('log')().info({ invite: id }, 'console invite revoked');
      return c.body(null, 204);
    }),
  );

  app.put(
    '/tenants/:tenant/webhook',
    audited('webhook.set', async (c, note) => {
      const { tenant } = parseInput(TenantParams, c.req.param());
      note.target = 'webhook';
      if (tenant === DEFAULT_TENANT) throw environmentOnly('webhook');
      const endpoint = webhookEndpoint(parseInput(WebhookBody, await readJsonBody(c)), deps.production);
      // The origin only: a receiver's path or query may carry a token of its own (Slack's and Discord's hooks do).
      note.detail = { origin: endpoint.url.origin };
      await deps.tenants.putWebhook(tenant, endpoint);
      c.get('log')().info({ tenant }, 'tenant webhook set');
      return c.json({ url: endpoint.url.href });
    }),
  );

  app.delete(
    '/tenants/:tenant/webhook',
    audited('webhook.remove', async (c, note) => {
      const { tenant } = parseInput(TenantParams, c.req.param());
      note.target = 'webhook';
      if (tenant === DEFAULT_TENANT) throw environmentOnly('webhook');
      if (!(await deps.tenants.deleteWebhook(tenant))) throw new LinkgateError('not_found', 'this tenant has no webhook');
      return c.body(null, 204);
    }),
  );

  /**
   * A user's link, deleted as the bot API's DELETE does (revoked upstream
   * where the provider can, `link.deleted` sent), by an operator: audited,
   * and answered with the link as it was and the revocation.
   * `linkgate links delete` uses it while the gateway runs on the embedded
   * database. The provider need not be configured any more: its link goes,
   * and the answer says the revocation was `provider_unavailable`.
   */
  app.delete(
    '/tenants/:tenant/users/:userId/links/:provider',
    audited('link.delete', async (c, note) => {
      const { tenant, userId, provider } = parseInput(TenantLinkParams, c.req.param());
      note.target = `link:${userId}/${provider}`;
      await deps.tenants.require(tenant);
      const deleted = await unlink({ links: deps.links, providers: deps.providers, hashUserId: deps.hashUserId, now, metrics: deps.metrics }, { tenant, userId, provider }, c.get('log')(), 'admin');
      if (!deleted) throw new LinkgateError('not_linked', `this user has no ${provider} link in this tenant`, { provider });
      note.detail = { revocation: deleted.revocation };
      // The link as it was, with what the provider said: `linkgate links delete` prints both.
      return c.json({ deleted: toApiLink(deleted.row), revocation: deleted.revocation });
    }),
  );

  /** A tenant's links from JSON lines (or a sealed export and its passphrase), as the bot API's import. */
  app.post(
    '/tenants/:tenant/links:import',
    audited('links.import', async (c, note) => {
      const { tenant } = parseInput(TenantParams, c.req.param());
      note.target = 'links';
      await deps.tenants.require(tenant);
      const answer = await answerImport(c, { links: deps.links, providers: deps.providers, allowSharedAccounts: deps.allowSharedAccounts ?? false, now }, tenant);
      const { counts } = v.parse(ImportCounts, await answer.clone().json());
      note.detail = counts;
      return answer;
    }),
  );

  /**
   * Every link of a tenant as JSON lines, credentials sealed with the
   * `Linkgate-Passphrase` the caller gives (12 characters at least), or in
   * plaintext only with `?plaintext=true`. Imports back as it is.
   */
  app.get(
    '/tenants/:tenant/links:export',
    audited('links.export', async (c, note) => {
      const { tenant } = parseInput(TenantParams, c.req.param());
      note.target = 'links';
      await deps.tenants.require(tenant);
      const passphrase = c.req.header('linkgate-passphrase');
      const plaintext = parseInput(ExportQuery, c.req.query()).plaintext === 'true';
      if (passphrase === undefined && !plaintext) {
        throw new LinkgateError('bad_request', 'give a Linkgate-Passphrase header to seal the credentials, or ?plaintext=true to export them in the clear');
      }
      if (passphrase !== undefined && passphrase.length < 12) throw new LinkgateError('bad_request', 'the passphrase must be at least 12 characters');
      const lines = exportLinks(deps.db, deps.links, tenant, plaintext && passphrase === undefined ? undefined : passphrase);
      note.detail = { sealed: passphrase !== undefined };
      c.get('log')().info({ tenant, sealed: passphrase !== undefined }, 'links exported');
      return c.body(streamOf(lines), 200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'content-disposition': `attachment; filename="linkgate-${tenant}-links.jsonl"` });
    }),
  );

  return app;
}

const ImportCounts = v.object({ counts: v.object({ created: v.number(), updated: v.number(), unchanged: v.number(), invalid: v.number() }) });

/** Text pieces as a response body, read as the client takes them (the console's CSV export too). */
export function streamOf(lines: AsyncGenerator<string>): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await lines.next();
      if (next.done) controller.close();
      else controller.enqueue(encoder.encode(next.value));
    },
    async cancel() {
      await lines.return(undefined);
    },
  });
}

