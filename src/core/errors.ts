/**
 * The one error type of the gateway. `code` is a stable string that API
 * answers and pages are chosen by; `message` is safe to show (it never holds
 * a token, code, state or user id); `cause` is for logs and may not be shown.
 */
export class LinkgateError extends Error {
  override name = 'LinkgateError';
  readonly code: ErrorCode;
  readonly status: number;
  readonly provider: string | undefined;
  /** `rate_limited`: when to try again, as the `Retry-After` header says; pages say it in words. */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, options: { status?: number; provider?: string; cause?: unknown; retryAfterSeconds?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status ?? defaultStatus[code];
    this.provider = options.provider;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

const defaultStatus = {
  // requests
  bad_request: 400,
  unauthorized: 401,
  not_found: 404,
  forbidden: 403,
  payload_too_large: 413,
  rate_limited: 429,
  // providers
  unknown_provider: 404,
  provider_unconfigured: 503,
  provider_denied: 400,
  provider_error: 400,
  provider_unavailable: 502,
  provider_timeout: 504,
  provider_response_invalid: 502,
  /** The provider refused a refresh for a reason that is not the user's grant (our client, its endpoint). */
  refresh_failed: 502,
  exchange_failed: 400,
  account_mismatch: 400,
  nsid_not_allowed: 403,
  /** The provider API proxy: a call the operator's `<ID>_PROXY_ALLOW` does not list. */
  proxy_not_allowed: 403,
  /** The provider API answered more than the proxy passes on. */
  provider_response_too_large: 502,
  needs_reauth: 409,
  /** The link lacks scopes the bot requires (`requireScopes`): the answer carries a link URL asking for them. */
  insufficient_scope: 409,
  // link contexts
  context_invalid: 400,
  context_expired: 400,
  context_replayed: 400,
  context_wrong_provider: 400,
  context_wrong_tenant: 400,
  // flows
  flow_not_found: 400,
  flow_browser_mismatch: 400,
  flow_busy: 409,
  csrf_failed: 403,
  /** A console form that makes something shown once, sent a second time (its answer page reloaded). */
  form_already_sent: 409,
  /** The success page of a sign-in whose flow is gone (reloaded long after). */
  result_gone: 404,
  /** The user cancelled linking (the wait API). */
  link_cancelled: 409,
  /** An app's sign-in request this browser does not hold (expired, finished, or started elsewhere). */
  sign_in_expired: 400,
  /** A sign-in named a provider the app or tenant does not offer. */
  sign_in_provider: 400,
  /** LoginService: no app with this id in the caller's tenant. */
  app_not_found: 404,
  /** LoginService: no sign-in by this session id (never made, or swept 30 minutes after it began). */
  login_not_found: 404,
  /** The web-session API: a `postLoginRedirect` that is not a redirect URI of the tenant's apps. */
  redirect_not_allowed: 400,
  /** The web-session API: no session cookie, or its session ended (expired, logged out, another tenant's). */
  not_signed_in: 401,
  /** A sign-in ended after too many wrong passwords. */
  too_many_attempts: 429,
  // links
  not_linked: 404,
  account_already_linked: 409,
  return_to_not_allowed: 400,
  // tenants
  tenant_not_found: 404,
  tenant_exists: 409,
  /** An `x-tenant-id` header naming another tenant than the API key's. */
  tenant_mismatch: 403,
  /** A tenant without a link-context secret cannot hand out link URLs yet. */
  tenant_unconfigured: 503,
  /** A provider that cannot be configured per tenant (its settings are the gateway's). */
  provider_not_per_tenant: 400,
  /** A signing-key rotation while the last one's next key has not started signing. */
  key_rotation_pending: 409,
  // the admin console
  /** An invite asked for while LINKGATE_ADMINS is empty: an invite never opens a closed console. */
  console_closed: 409,
  // storage and everything unexpected
  decrypt_failed: 500,
  internal_error: 500,
  database_unavailable: 503,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof defaultStatus;

export function isLinkgateError(error: unknown, code?: ErrorCode): error is LinkgateError {
  return error instanceof LinkgateError && (code === undefined || error.code === code);
}
