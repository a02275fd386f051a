/**
 * Helpers for providers built on openid-client (imported as `linkgate/oauth`):
 * the same error mapping and token bookkeeping for every OAuth 2 provider.
 */
import * as oidc from 'openid-client';
import { LinkgateError } from './core/errors.ts';
import type { ApiCall, Credentials, ProviderTools } from './provider.ts';

/**
 * What openid-client throws, as our errors: a refused grant is the user's to
 * redo (`exchange_failed`), a denial is `provider_denied`, a timeout 504, an
 * answer that fails validation 502, anything else the provider being down.
 */
export function oauthError(error: unknown, provider: string): LinkgateError {
  if (error instanceof LinkgateError) return error;
  if (error instanceof oidc.ResponseBodyError) {
    if (error.error === 'invalid_grant') {
      return new LinkgateError('exchange_failed', 'the provider refused the grant (invalid_grant)', { provider, cause: error });
    }
    const code = error.status >= 500 ? 'provider_unavailable' : 'provider_error';
    return new LinkgateError(code, `the provider answered ${error.error}`, { provider, cause: error });
  }
  if (error instanceof oidc.AuthorizationResponseError) {
    const code = error.error === 'access_denied' ? 'provider_denied' : 'provider_error';
    return new LinkgateError(code, `the provider answered ${error.error}`, { provider, cause: error });
  }
  if ((error instanceof oidc.ClientError && error.code === 'OAUTH_TIMEOUT') || (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError'))) {
    return new LinkgateError('provider_timeout', 'the provider did not answer in time', { provider, cause: error });
  }
  if (error instanceof oidc.ClientError && error.cause instanceof Response && error.cause.status >= 500) {
    return new LinkgateError('provider_unavailable', `the provider answered ${error.cause.status}`, { provider, cause: error });
  }
  if (error instanceof oidc.ClientError) {
    return new LinkgateError('provider_response_invalid', `the provider's answer was not usable (${error.code ?? error.name})`, { provider, cause: error });
  }
  return new LinkgateError('provider_unavailable', 'the provider could not be reached or answered unexpectedly', { provider, cause: error });
}

/** A refresh refused with `invalid_grant` means the user must link again. */
export function refreshError(error: unknown, provider: string): LinkgateError {
  const failure = oauthError(error, provider);
  if (failure.code === 'exchange_failed') {
    return new LinkgateError('needs_reauth', 'the provider no longer accepts the refresh token', { provider, cause: error });
  }
  return failure;
}

/**
 * Token endpoint answer → stored credentials. A refresh answer without a new
 * refresh token keeps the old one (RFC 6749 §6), and one without an ID token
 * keeps the ID token of the sign-in (OIDC Core §12.2: it is optional there);
 * a new ID token replaces it (`extra.idToken`; openid-client has validated it).
 */
export function tokenCredentials(tokens: oidc.TokenEndpointResponse, now: number, previous?: Credentials, requestedScopes?: string[]): Credentials {
  const refreshToken = tokens.refresh_token ?? previous?.refreshToken;
  const scopes = tokens.scope ? tokens.scope.split(' ').filter(Boolean) : (previous?.scopes ?? requestedScopes);
  const extra = { ...previous?.extra, ...(tokens.id_token ? { idToken: tokens.id_token } : {}) };
  return {
    accessToken: tokens.access_token,
    // openid-client lower-cases it; RFC 6750 spells the scheme "Bearer".
    tokenType: tokens.token_type.toLowerCase() === 'bearer' ? 'Bearer' : tokens.token_type,
    ...(refreshToken ? { refreshToken } : {}),
    ...(tokens.expires_in === undefined ? {} : { expiresAt: now + tokens.expires_in * 1000 }),
    ...(scopes ? { scopes } : {}),
    ...(Object.keys(extra).length > 0 ? { extra } : {}),
  };
}

/**
 * The URL openid-client validates the authorization response against: the
 * registered redirect URI with the callback's parameters, so the token
 * request's `redirect_uri` is the registered one whatever host served it.
 */
export function callbackUrl(redirectUri: string, params: URLSearchParams): URL {
  const url = new URL(redirectUri);
  url.search = params.toString();
  return url;
}

/**
 * The `access` sentences for the scopes a provider asks for: each known
 * scope in the provider's words, an unknown one named as it is, duplicates
 * once.
 */
export function describeScopes(scopes: readonly string[], known: Readonly<Record<string, string | null>>): string[] {
  const sentences = scopes.map((scope) => (scope in known ? known[scope] : `use the permission “${scope}”`)).filter((s): s is string => s !== null);
  return [...new Set(sentences)];
}

/**
 * A provider API that takes the access token as a bearer token (RFC 6750
 * §2.1), at `base` (ending in `/`): the request goes to `base` + the call's
 * path, never elsewhere (the path was normalised by the gateway; the URL is
 * checked again here), redirects are not followed.
 */
export function providerApi(base: URL, tools: Pick<ProviderTools, 'fetch'>, provider: string) {
  return {
    async request(credentials: Credentials, call: ApiCall): Promise<Response> {
      if (!credentials.accessToken) throw new LinkgateError('needs_reauth', 'this link holds no access token', { provider });
      const url = new URL(call.path, base);
      if (!url.href.startsWith(base.href)) throw new LinkgateError('bad_request', 'the path leaves the provider API', { provider });
      for (const [name, value] of call.query) url.searchParams.append(name, value);
      return tools.fetch(url, {
        method: call.method,
        redirect: 'manual',
        headers: { ...call.headers, authorization: `Bearer ${credentials.accessToken}` },
        ...(call.body === undefined ? {} : { body: call.body as Uint8Array<ArrayBuffer> }),
      });
    },
  };
}
