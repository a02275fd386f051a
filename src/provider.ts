/**
 * The provider contract. A provider is a small state machine the gateway's
 * generic routes drive: `begin` opens a flow, `advance` moves it on with what
 * the browser sent back, until a `done` step hands over the account and its
 * credentials. Providers import this module (as `linkgate/provider`) and
 * nothing else of the gateway: no database, no Hono, no other provider.
 */
import type * as v from 'valibot';
import { LinkgateError, type ErrorCode } from './core/errors.ts';

export { LinkgateError, type ErrorCode };

export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** What the gateway stores for a link, sealed. Never returned by the API as a whole. */
export interface Credentials {
  accessToken?: string;
  refreshToken?: string;
  tokenType?: string;
  /** When the access token stops working, in epoch milliseconds. */
  expiresAt?: number;
  scopes?: string[];
  /** Whatever else the provider needs later (an ID token for logout, a server URL, a device id). */
  extra?: { [key: string]: Json };
}

/**
 * Bounds on what a provider hands over (see `Account`, `Credentials`): ids,
 * names and handles come from servers the gateway does not control, and a
 * server a user typed can answer anything. The gateway refuses a `done` step
 * outside them as a bad provider answer (502 `provider_response_invalid`):
 * nothing is stored.
 */
export const LIMITS = {
  /** Characters of `Account.id` (it is indexed; a did:web on a 253-character host fits). */
  accountId: 512,
  /** Characters of `Account.name`. */
  accountName: 256,
  /** Entries of `Credentials.scopes`, and characters of each. */
  scopes: 100,
  scope: 256,
  /** The whole of `Credentials`, as JSON, in bytes. */
  credentialsBytes: 64 * 1024,
  /** A `wait` step's `pollMs`: anything outside is brought inside. */
  pollMs: { min: 500, max: 60_000 },
} as const;

export interface Account {
  /** The stable id of the account at the provider (OIDC `sub`, a numeric id, a DID): 1–512 characters, no control characters. */
  id: string;
  /** A name a person recognises (display name, username, handle): at most 256 characters, no control characters. */
  name?: string;
}

/** One input of a gateway-rendered form, described by data (like Nango's credential fields). */
export interface FieldSpec {
  name: string;
  label: string;
  type: 'text' | 'password' | 'url' | 'email';
  description?: string;
  placeholder?: string;
  autocomplete?: string;
  required?: boolean;
}

/** A secondary button ("Sign in with a password instead"); it comes back as `StepInput.action`. */
export interface StepAction {
  label: string;
  action: string;
}

export interface FormSpec {
  title: string;
  description?: string;
  fields: FieldSpec[];
  submitLabel?: string;
  /** Shown above the fields when the last submission was refused. */
  error?: string;
  actions?: StepAction[];
}

export interface WaitDisplay {
  title: string;
  /** A short code the user types or approves elsewhere, shown large. */
  code?: string;
  instructions: string[];
  actions?: StepAction[];
}

export type Step =
  | { kind: 'redirect'; url: URL }
  | { kind: 'form'; form: FormSpec }
  /** `pollMs`: how often the page asks, within `LIMITS.pollMs`. */
  | { kind: 'wait'; display: WaitDisplay; pollMs: number }
  | { kind: 'done'; account: Account; credentials: Credentials };

/** One linking attempt, as a provider sees it. */
export interface Flow {
  /** The OAuth `state`: unguessable, single-use, bound to the browser by the gateway. */
  readonly state: string;
  /** A PKCE code verifier (RFC 7636 §4.1) made for this flow. */
  readonly codeVerifier: string;
  /** The gateway's callback URL for this provider (a provider may use its own configured one). */
  readonly redirectUri: string;
  /** When the gateway gives up on this flow (epoch ms): a page that promises a time must not promise longer. */
  readonly expiresAt: number;
  /**
   * Scopes the bot asked for with this link, on top of the ones the provider
   * is configured with (`begin` only): a provider with scopes asks for the
   * union; one without scopes ignores them.
   */
  readonly scopes?: readonly string[];
  /**
   * Who is signing in, as the app already knows it (`begin` only): an
   * OpenID `login_hint`, or LoginService's `identifier`. A provider that
   * asks for an identifier first (ATProto's handle) may take it from here
   * and skip asking; others ignore it.
   */
  readonly loginHint?: string;
  /** The provider's scratch space for this flow; changes are saved (sealed) after each step. */
  data: { [key: string]: Json };
}

export type StepInput =
  /** The provider redirected the browser back: the query (or a form_post body). */
  | { kind: 'callback'; params: URLSearchParams }
  /** The user submitted a form this provider asked for, or pressed one of its `actions`. */
  | { kind: 'form'; fields: Record<string, string>; action?: string }
  /** The page of a `wait` step asks whether it is finished. */
  | { kind: 'poll' };

export interface KeyValueStore {
  get(key: string): Promise<Json | undefined>;
  set(key: string, value: Json, options?: { ttlSeconds?: number }): Promise<void>;
  delete(key: string): Promise<void>;
}

export interface ProviderLogger {
  debug(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

/** What the gateway injects; fake any of them in tests. */
export interface ProviderTools {
  /** `fetch` with the gateway's timeout; use it for every request to the provider. */
  fetch: typeof globalThis.fetch;
  logger: ProviderLogger;
  /** A store of this provider's own, sealed with the gateway's keyring. */
  kv: KeyValueStore;
  clock: { now(): number };
  /**
   * For URLs a user typed: http(s) only, private addresses refused unless
   * allowed, redirects not followed, an idle timeout and a total deadline
   * (both the gateway's provider timeout unless given), a size cap.
   */
  untrustedFetch(url: string | URL, init?: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array }, options?: { allowPrivate?: boolean; timeoutMs?: number; deadlineMs?: number; maxBytes?: number }): Promise<Response>;
  /** Where browsers reach the gateway. */
  publicBaseUrl: URL;
  /**
   * Runs `fn` while holding `name`, exclusively across every instance on the
   * database (a PostgreSQL advisory lock; in-process on PGlite). For work
   * that must never run twice at once, like spending a single-use refresh
   * token. Keep `fn` short: nothing cuts it off, and other callers of the
   * same name wait for it (on PostgreSQL, another instance gives up waiting
   * after 30 s with `provider_timeout`).
   */
  lock<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

/** A call a bot asks the gateway to make on a user's behalf (`/api/v1/users/:userId/links/:provider/xrpc/:nsid`). */
export interface XrpcCall {
  method: 'GET' | 'POST';
  /** The XRPC method id, already checked to be a well-formed NSID. */
  nsid: string;
  query: URLSearchParams;
  /** The JSON body of a POST, parsed. */
  body?: Json;
}

/** The upstream answer, passed to the bot as it is. */
export interface XrpcResult {
  status: number;
  contentType: string | undefined;
  body: Uint8Array;
}

/**
 * Thrown by `create` when a provider cannot run with this configuration
 * but should not stop start-up: it is listed as unconfigured, naming what
 * it still needs (the way a missing variable does).
 */
/** A bot's call to the provider's own API, through the proxy route (src/core/proxy.ts checked it). */
export interface ApiCall {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Relative to the API base, normalised: no `.` or `..` segments, no empty segment, no backslash. */
  path: string;
  query: URLSearchParams;
  /** The request headers the bot may send on (`content-type`, `accept`). */
  headers: Record<string, string>;
  body?: Uint8Array;
}

export class ProviderNotConfigured extends Error {
  override name = 'ProviderNotConfigured';
  constructor(
    message: string,
    readonly missing: string[],
  ) {
    super(message);
  }
}

export interface ProviderInstance {
  /**
   * What a bot can do with a link, in words for the person linking: each
   * finishes the sentence "The bot will be able to …" ("see your Discord
   * username and avatar"). Made from the configured scopes; the confirmation
   * page lists them.
   */
  access?: readonly string[];
  begin(flow: Flow): Promise<Step>;
  advance(flow: Flow, input: StepInput): Promise<Step>;
  /** Trades stored credentials for fresh ones. Throw `needs_reauth` when the user must link again. */
  refresh?(credentials: Credentials): Promise<Credentials>;
  /**
   * Revokes credentials upstream when a link is deleted. Resolves to
   * `'not_supported'` when the provider offers no way to (no revocation
   * endpoint), so the unlink does not report a revocation that did not happen.
   */
  revoke?(credentials: Credentials): Promise<void | 'not_supported'>;
  /**
   * Asks the provider whether the credentials still work (`?verify=true`):
   * `false` when it refuses them; throw for an outage, which is not an answer.
   */
  verify?(credentials: Credentials): Promise<boolean>;
  /**
   * What the token API adds to `{ accessToken, tokenType, expiresAt }` for
   * this provider (a server URL, an external user id). Never a refresh token.
   */
  tokenFields?(credentials: Credentials): { [key: string]: Json };
  /**
   * When the provider's client library picks the OAuth `state` itself
   * (ATProto), maps a callback back to the flow's `state`; `undefined` when
   * it does not know the callback.
   */
  callbackState?(params: URLSearchParams): Promise<string | undefined>;
  /**
   * When a provider changes how it derives account ids: the id a link stored
   * earlier should have now, from its credentials (`undefined` keeps the
   * stored one). The gateway applies it to every link of the provider at
   * start-up, so links made before the change are keyed like new ones.
   */
  currentAccountId?(credentials: Credentials): string | undefined;
  /**
   * For links brought over from another system (`linkgate import …`): the
   * account id and credentials a link made here for the same account would
   * have, from credentials in this provider's shape as that system held them;
   * `undefined` when this gateway would not link that account.
   */
  adopt?(credentials: Credentials): { accountId: string; credentials: Credentials } | undefined;
  /** Public JSON documents served at `GET /oauth/<id>/<name>` (client metadata, a JWKS). */
  documents?: { [name: string]: () => Json | Promise<Json> };
  /**
   * Forwards a bot's XRPC call with the link's session (ATProto: DPoP-bound
   * tokens cannot be handed out). Throw `needs_reauth` when the session is
   * gone, `nsid_not_allowed` for a method outside the allowlist.
   */
  xrpc?(credentials: Credentials, call: XrpcCall): Promise<XrpcResult>;
  /**
   * The provider's own API, for `ANY /api/v1/users/:userId/links/:provider/proxy/*`:
   * sends `call` to its API base with these credentials' authorization and
   * answers the upstream response as it is (`providerApi` in linkgate/oauth
   * does this for a bearer-token API). The gateway checks the operator's
   * allowlist first, refreshes the credentials, caps the sizes, and turns a
   * 401 into one refresh and retry, then `needs_reauth`.
   */
  api?: { request(credentials: Credentials, call: ApiCall): Promise<Response> };
}

export interface ProviderDefinition<E = unknown> {
  /** The file name, the URL segment and the stored value: `[a-z][a-z0-9_-]*`. */
  id: string;
  displayName: string;
  /**
   * A valibot object schema over the environment. When required variables
   * are missing the provider is listed as unconfigured; when one is present
   * but invalid, start-up stops naming it.
   */
  env: v.GenericSchema<unknown, E>;
  create(env: E, tools: ProviderTools): ProviderInstance | Promise<ProviderInstance>;
  /**
   * `false` when the provider's configuration can only be the gateway's
   * (ATProto: its client is the gateway's own metadata document), so tenants
   * other than `default` cannot be given an app of their own. Default: true.
   */
  perTenant?: boolean;
}

/** A module that yields several providers from configuration (the generic OIDC one). */
export interface ProviderFamily {
  family: string;
  expand(env: Readonly<Record<string, string | undefined>>): ProviderDefinition<any>[];
  /**
   * The definition of one member as a tenant configures it (`corp` with the
   * tenant's `CORP_*` variables), or undefined when `id` cannot be one.
   */
  member?(id: string, env: Readonly<Record<string, string | undefined>>): ProviderDefinition<any> | undefined;
}

export function defineProvider<E>(definition: ProviderDefinition<E>): ProviderDefinition<E> {
  return definition;
}

export function defineProviderFamily(family: ProviderFamily): ProviderFamily {
  return family;
}
