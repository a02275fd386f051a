// Local typings for the parts of `oidc-provider` (v9, ships no types) that we use:
// each tenant's OpenID Provider (src/http/openid-provider.tsx) and the demo's and
// tests' IdP (src/demo/openid-provider.ts). Only what those files read and call.
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export type AdapterPayload = {
    [key: string]: unknown;
    jti?: string;
    grantId?: string;
    uid?: string;
    userCode?: string;
    consumed?: number;
  };

  export interface Adapter {
    upsert(id: string, payload: AdapterPayload, expiresIn: number | undefined): Promise<void>;
    find(id: string): Promise<AdapterPayload | undefined>;
    findByUid(uid: string): Promise<AdapterPayload | undefined>;
    findByUserCode(userCode: string): Promise<AdapterPayload | undefined>;
    consume(id: string): Promise<void>;
    destroy(id: string): Promise<void>;
    revokeByGrantId(grantId: string): Promise<void>;
  }

  export interface ClientLike {
    clientId: string;
    clientName?: string;
    clientAuthMethod?: string;
    redirectUris?: string[];
    grantTypeAllowed(grantType: string): boolean;
  }

  /** What codes, refresh tokens and sessions remember of the login. */
  export interface LoginRecord {
    accountId?: string;
    amr?: string[];
  }

  export interface SessionLike extends LoginRecord {
    uid?: string;
    grantIdFor(clientId: string): string | undefined;
  }

  /** The slice of the Koa context with `ctx.oidc` that our configuration functions read and write. */
  export interface KoaContextWithOIDC {
    type: string;
    body: unknown;
    status: number;
    /** The Node request under this context. */
    req: IncomingMessage;
    set(field: string, value: string): void;
    oidc: {
      route?: string;
      client?: ClientLike;
      /** `exp` is set once the session was stored; `touched` says it must be stored again. */
      session?: SessionLike & { state?: { secret?: string }; exp?: number; touched?: boolean };
      result?: { consent?: { grantId?: string }; login?: LoginRecord };
      entities: { AuthorizationCode?: LoginRecord; RefreshToken?: LoginRecord; DeviceCode?: LoginRecord };
      provider: Provider;
      urlFor(name: string, options?: Record<string, unknown>): string;
    };
  }

  /** One check of a prompt of the interaction policy: true asks for the prompt. */
  export interface InteractionCheck {
    reason: string;
  }

  export interface InteractionPrompt {
    name: string;
    checks: { add(check: InteractionCheck): void };
  }

  export interface InteractionPolicy extends Array<InteractionPrompt> {
    get(name: string): InteractionPrompt | undefined;
  }

  export const interactionPolicy: {
    base(): InteractionPolicy;
    Check: new (reason: string, description: string, check: (ctx: KoaContextWithOIDC) => boolean | Promise<boolean>) => InteractionCheck;
  };

  export interface Account {
    accountId: string;
    claims(use: string, scope: string, claims: unknown, rejected: string[]): (Record<string, unknown> & { sub: string }) | Promise<Record<string, unknown> & { sub: string }>;
  }

  /** The slice of the per-request `ctx.oidc` context we read. */
  export interface OIDCContextLike {
    route?: string;
    body?: Record<string, unknown>;
    params?: Record<string, unknown>;
  }

  /** The slice of the Koa context we read in `provider.use()` middleware. */
  export interface KoaContextLike {
    path: string;
    method: string;
    headers: Record<string, string | string[] | undefined>;
    status: number;
    type: string;
    body: unknown;
    set(field: string, value: string): void;
    readonly oidc?: OIDCContextLike;
  }

  export type KoaMiddleware = (ctx: KoaContextLike, next: () => Promise<void>) => Promise<void>;

  export interface ErrorOut {
    error: string;
    error_description?: string;
    [key: string]: unknown;
  }

  export interface ClientMetadata {
    client_id: string;
    client_secret?: string;
    redirect_uris?: string[];
    grant_types?: string[];
    response_types?: string[];
    token_endpoint_auth_method?: string;
    id_token_signed_response_alg?: string;
    [key: string]: unknown;
  }

  export interface Configuration {
    adapter?: (modelName: string) => Adapter;
    clients?: ClientMetadata[];
    jwks?: { keys: Array<Record<string, unknown>> };
    cookies?: { keys?: string[]; [key: string]: unknown };
    claims?: Record<string, null | string[]>;
    conformIdTokenClaims?: boolean;
    scopes?: string[];
    features?: Record<string, Record<string, unknown>>;
    pkce?: { required?: (ctx: unknown, client: ClientLike) => boolean };
    routes?: Record<string, string>;
    subjectTypes?: Array<'public' | 'pairwise'>;
    pairwiseIdentifier?: (ctx: KoaContextWithOIDC, accountId: string, client: ClientLike) => Promise<string>;
    loadExistingGrant?: (ctx: KoaContextWithOIDC) => Promise<GrantInstance | undefined>;
    responseTypes?: string[];
    extraParams?: string[];
    enabledJWA?: Record<string, string[]>;
    interactions?: { url?: (ctx: unknown, interaction: { uid: string }) => string | Promise<string>; policy?: InteractionPolicy };
    findAccount?: (ctx: KoaContextWithOIDC, sub: string, token?: LoginRecord) => Promise<Account | undefined>;
    issueRefreshToken?: (ctx: unknown, client: ClientLike, code: unknown) => boolean | Promise<boolean>;
    expiresWithSession?: (ctx: unknown, code: unknown) => boolean | Promise<boolean>;
    renderError?: (ctx: KoaContextLike, out: ErrorOut, error: Error) => void | Promise<void>;
    clientBasedCORS?: (ctx: unknown, origin: string, client: ClientLike) => boolean;
    logoutSource?: (ctx: KoaContextWithOIDC, form: string) => void | Promise<void>;
    postLogoutSuccessSource?: (ctx: KoaContextWithOIDC) => void | Promise<void>;
    ttl?: Record<string, number | ((...args: never[]) => number)>;
    [key: string]: unknown;
  }

  export interface InteractionDetails {
    uid: string;
    returnTo: string;
    prompt: {
      name: string;
      reasons: string[];
      details: {
        missingOIDCScope?: string[];
        missingOIDCClaims?: string[];
        missingResourceScopes?: Record<string, string[]>;
        [key: string]: unknown;
      };
    };
    params: Record<string, unknown> & { client_id?: string; scope?: string };
    session?: { accountId: string; uid?: string; cookie?: string };
    grantId?: string;
    lastSubmission?: Record<string, unknown>;
  }

  export interface GrantInstance {
    addOIDCScope(scope: string): void;
    addOIDCClaims(claims: string[]): void;
    addResourceScope(resource: string, scope: string): void;
    save(): Promise<string>;
  }

  export interface GrantStatic {
    new (properties: { accountId: string; clientId: string }): GrantInstance;
    find(id: string): Promise<GrantInstance | undefined>;
  }

  export interface InteractionInstance {
    uid: string;
    exp: number;
    returnTo: string;
    result?: Record<string, unknown>;
    save(ttlSeconds: number): Promise<string>;
  }

  export interface InteractionResultOptions {
    mergeWithLastSubmission?: boolean;
  }

  export default class Provider {
    constructor(issuer: string, configuration?: Configuration);
    readonly issuer: string;
    readonly Grant: GrantStatic;
    readonly Interaction: { find(uid: string): Promise<InteractionInstance | undefined> };
    /** Trust X-Forwarded-Proto and X-Forwarded-Host (Koa's `proxy`). */
    proxy: boolean;
    callback(): (req: IncomingMessage, res: ServerResponse) => Promise<void>;
    use(middleware: KoaMiddleware): this;
    on(event: 'server_error', listener: (ctx: KoaContextLike, error: Error) => void): this;
    on(event: string, listener: (...args: any[]) => void): this;
    pathFor(name: string, options?: Record<string, unknown>): string;
    urlFor(name: string, options?: Record<string, unknown>): string;
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
    interactionResult(
      req: IncomingMessage,
      res: ServerResponse,
      result: Record<string, unknown>,
      options?: InteractionResultOptions,
    ): Promise<string>;
    interactionFinished(
      req: IncomingMessage,
      res: ServerResponse,
      result: Record<string, unknown>,
      options?: InteractionResultOptions,
    ): Promise<void>;
  }
}
