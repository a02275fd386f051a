/**
 * A typed client for Linkgate's bot API, for bots written in TypeScript or
 * JavaScript: `import { createLinkgateClient } from '@linkgate/client'`
 * (`linkgate/client` inside the Linkgate repository, which runs this file
 * as it is; the package is built from it by build.mjs).
 *
 * It depends on nothing but the platform (`fetch`, `AbortSignal`, Web
 * Crypto), so it runs in Node 22+, Bun, Deno and edge runtimes. Every call
 * has a timeout; every failure is a `LinkgateClientError` (or a subclass)
 * with the gateway's error `code`.
 */

export type LinkStatus = 'active' | 'needs_reauth';

export interface Link {
  userId: string;
  provider: string;
  externalId: string;
  externalName: string | null;
  status: LinkStatus;
  scopes: string[];
  linkedAt: string;
  updatedAt: string;
  expiresAt: string | null;
}

export interface Provider {
  id: string;
  displayName: string;
  configured: boolean;
}

export interface LinkUrl {
  url: string;
  expiresAt: string;
}

/** The token API's answer: an access token and the provider's own fields (ATProto: `{ did, handle, pdsUrl }` only). */
export interface TokenAnswer {
  accessToken?: string;
  tokenType?: string;
  expiresAt?: string | null;
  [field: string]: unknown;
}

export interface LinkgateClientOptions {
  /** Where the gateway answers, e.g. `http://127.0.0.1:8000`. */
  baseUrl: string | URL;
  /** One of the gateway's `LINKGATE_API_KEYS`. */
  apiKey: string;
  /** Per request (default 10 s); `waitForLink` adds its own wait to it. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/** Every error this client throws. `code` is the gateway's error code, or `network_error` / `timeout` / `bad_response`. */
export class LinkgateClientError extends Error {
  override name = 'LinkgateClientError';
  readonly code: string;
  readonly status: number | undefined;
  constructor(message: string, code: string, status: number | undefined, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.status = status;
  }
}

/** The user has not linked the provider: send them `linkUrl`. */
export class NotLinkedError extends LinkgateClientError {
  override name = 'NotLinkedError';
  readonly linkUrl: string;
  constructor(message: string, linkUrl: string) {
    super(message, 'not_linked', 404);
    this.linkUrl = linkUrl;
  }
}

/** The link exists but no longer works (revoked, expired): send them `linkUrl` to link again. */
export class NeedsReauthError extends LinkgateClientError {
  override name = 'NeedsReauthError';
  readonly linkUrl: string;
  constructor(message: string, linkUrl: string) {
    super(message, 'needs_reauth', 409);
    this.linkUrl = linkUrl;
  }
}

/**
 * The gateway has no configuration for this provider, so nobody can link it
 * (and there is no link URL to send): a matter for the gateway's operator,
 * whom `message` tells what is missing.
 */
export class ProviderUnconfiguredError extends LinkgateClientError {
  override name = 'ProviderUnconfiguredError';
  constructor(message: string) {
    super(message, 'provider_unconfigured', 503);
  }
}

/** The user gave up linking (Cancel on the gateway's page, or refused access at the provider): stop waiting. */
export class LinkCancelledError extends LinkgateClientError {
  override name = 'LinkCancelledError';
  constructor(message: string) {
    super(message, 'link_cancelled', 409);
  }
}

interface ErrorBody {
  error?: { code?: unknown; message?: unknown };
  linkUrl?: unknown;
}

const segment = (value: string) => encodeURIComponent(value);

export function createLinkgateClient(options: LinkgateClientOptions) {
  const base = String(options.baseUrl).replace(/\/$/, '');
  const timeoutMs = options.timeoutMs ?? 10_000;
  const fetchImpl = options.fetch ?? globalThis.fetch;
  if (!options.apiKey) throw new TypeError('createLinkgateClient: apiKey is required');

  async function call(method: string, path: string, init: { body?: unknown; extraMs?: number } = {}): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${options.apiKey}`, accept: 'application/json' };
    if (init.body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetchImpl(`${base}/api/v1${path}`, {
        method,
        headers,
        ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
        signal: AbortSignal.timeout(timeoutMs + (init.extraMs ?? 0)),
      });
    } catch (cause) {
      if (cause instanceof Error && (cause.name === 'TimeoutError' || cause.name === 'AbortError')) {
        throw new LinkgateClientError(`Linkgate did not answer within ${timeoutMs + (init.extraMs ?? 0)} ms`, 'timeout', undefined, { cause });
      }
      throw new LinkgateClientError('Linkgate could not be reached', 'network_error', undefined, { cause });
    }
    if (response.ok) return response;
    let body: ErrorBody = {};
    try {
      body = (await response.json()) as ErrorBody;
    } catch {
      // Not our JSON (a proxy's error page): the status says enough.
    }
    const code = typeof body.error?.code === 'string' ? body.error.code : 'bad_response';
    const message = typeof body.error?.message === 'string' ? body.error.message : `Linkgate answered ${response.status}`;
    // Unlinking someone who is not linked answers not_linked without a URL: that stays a plain LinkgateClientError.
    if (typeof body.linkUrl === 'string') {
      if (code === 'not_linked') throw new NotLinkedError(message, body.linkUrl);
      if (code === 'needs_reauth') throw new NeedsReauthError(message, body.linkUrl);
    }
    if (code === 'provider_unconfigured') throw new ProviderUnconfiguredError(message);
    if (code === 'link_cancelled') throw new LinkCancelledError(message);
    throw new LinkgateClientError(message, code, response.status);
  }

  async function json<T>(response: Response): Promise<T> {
    try {
      return (await response.json()) as T;
    } catch (cause) {
      throw new LinkgateClientError('Linkgate answered with something that is not JSON', 'bad_response', response.status, { cause });
    }
  }

  const linkPath = (userId: string, provider: string) => `/users/${segment(userId)}/links/${segment(provider)}`;

  return {
    /** `GET /providers`. */
    async listProviders(): Promise<Provider[]> {
      return (await json<{ providers: Provider[] }>(await call('GET', '/providers'))).providers;
    },

    /** A link URL signed by the gateway, for a user to open. */
    async createLinkUrl(userId: string, provider: string, extra: { returnTo?: string; userName?: string; scopes?: string[] } = {}): Promise<LinkUrl> {
      return json<LinkUrl>(await call('POST', '/link-urls', { body: { userId, provider, ...extra } }));
    },

    /**
     * The link, or `null` when the user has not linked (a link needing reauth
     * is returned with its status). `ProviderUnconfiguredError` when they have
     * not and cannot, as the provider is not configured.
     */
    async getLink(userId: string, provider: string, extra: { verify?: boolean } = {}): Promise<Link | null> {
      try {
        return await json<Link>(await call('GET', `${linkPath(userId, provider)}${extra.verify ? '?verify=true' : ''}`));
      } catch (error) {
        if (error instanceof LinkgateClientError && error.code === 'not_linked') return null;
        throw error;
      }
    },

    /**
     * The active link, or a `NotLinkedError` / `NeedsReauthError` carrying
     * the URL to send the user: "Please link your account first: <url>".
     * `ProviderUnconfiguredError` when there is no URL to send, as the
     * provider is not configured.
     */
    async requireLink(userId: string, provider: string): Promise<Link> {
      const response = await call('GET', linkPath(userId, provider));
      const link = await json<Link>(response);
      if (link.status === 'needs_reauth') {
        const { url } = await json<LinkUrl>(await call('POST', '/link-urls', { body: { userId, provider } }));
        throw new NeedsReauthError('the user must link this account again', url);
      }
      return link;
    },

    /** Fresh credentials (refreshed by the gateway when due). */
    async getToken(userId: string, provider: string): Promise<TokenAnswer> {
      return json<TokenAnswer>(await call('POST', `${linkPath(userId, provider)}/token`));
    },

    /** Waits up to `timeoutSeconds` (1–60, default 30) for the user to finish linking; `null` on timeout. */
    /**
     * Resolves with the link the moment the user has one, `null` on timeout;
     * throws `LinkCancelledError` the moment they cancel. `since` (when you
     * made the link URL) also reports a cancel from before the wait began.
     */
    async waitForLink(userId: string, provider: string, extra: { timeoutSeconds?: number; since?: Date | string } = {}): Promise<Link | null> {
      const timeoutSeconds = extra.timeoutSeconds ?? 30;
      const since = extra.since === undefined ? '' : `&since=${encodeURIComponent(new Date(extra.since).toISOString())}`;
      const response = await call('GET', `${linkPath(userId, provider)}/wait?timeoutSeconds=${timeoutSeconds}${since}`, { extraMs: timeoutSeconds * 1000 });
      if (response.status === 204) return null;
      return json<Link>(response);
    },

    /** Revokes upstream where possible and deletes; `false` when there was nothing to unlink. */
    async unlink(userId: string, provider: string): Promise<boolean> {
      try {
        await call('DELETE', linkPath(userId, provider));
        return true;
      } catch (error) {
        if (error instanceof LinkgateClientError && error.code === 'not_linked') return false;
        throw error;
      }
    },

    /** Every link of a user. */
    async listLinks(userId: string): Promise<Link[]> {
      return (await json<{ links: Link[] }>(await call('GET', `/users/${segment(userId)}/links`))).links;
    },
  };
}

export type LinkgateClient = ReturnType<typeof createLinkgateClient>;

export interface SignLinkContextInput {
  /** The gateway's `OAUTH_CONTEXT_SIGNING_SECRET`. */
  secret: string;
  userId: string;
  provider: string;
  /** At most the gateway's `OAUTH_CONTEXT_TTL_SECONDS` (default 300). */
  ttlSeconds?: number;
  returnTo?: string;
  tenant?: string;
  /** Epoch ms; default now. */
  now?: number;
}

const base64url = (bytes: Uint8Array) => {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
};
const encodeJson = (value: unknown) => base64url(new TextEncoder().encode(JSON.stringify(value)));

/**
 * Signs a link context locally (an HS256 JWT, the format in the README), for
 * bots that would rather not ask the gateway for each link URL.
 */
export async function signLinkContext(input: SignLinkContextInput): Promise<string> {
  const iat = Math.floor((input.now ?? Date.now()) / 1000);
  const payload = {
    sub: input.userId,
    provider: input.provider,
    jti: crypto.randomUUID(),
    iat,
    exp: iat + (input.ttlSeconds ?? 300),
    ...(input.tenant ? { tenant: input.tenant } : {}),
    ...(input.returnTo ? { return_to: input.returnTo } : {}),
  };
  const signingInput = `${encodeJson({ alg: 'HS256', typ: 'JWT' })}.${encodeJson(payload)}`;
  const key = await crypto.subtle.importKey('raw', new TextEncoder().encode(input.secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const signature = new Uint8Array(await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(signingInput)));
  return `${signingInput}.${base64url(signature)}`;
}

/** The link URL for a locally signed context. */
export function linkUrlFor(baseUrl: string | URL, provider: string, context: string): string {
  const url = new URL(`${String(baseUrl).replace(/\/$/, '')}/oauth/${segment(provider)}/start`);
  url.searchParams.set('context', context);
  return url.href;
}
