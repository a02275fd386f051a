/**
 * ATProto (Bluesky): the user types a handle, a DID or a PDS address, then
 * signs in at their own authorization server. Everything the protocol asks
 * for (handle → DID → PDS → authorization server resolution, PAR, PKCE,
 * DPoP with server nonces, `iss` and `sub` checks, refresh) is done by the
 * official client, `@atproto/oauth-client-node`. This module gives it its
 * stores (the gateway's sealed key-value store), its lock (shared by every
 * instance) and its client metadata, and adapts it to the provider contract.
 *
 * DPoP-bound tokens are useless without their private key, so they never
 * leave the gateway: the link holds `{ did, handle, pdsUrl }`, the session
 * (keys and tokens) lives sealed in the key-value store under the DID, and
 * bots reach the user's PDS through the XRPC proxy.
 *
 * Servers an identifier points at are the user's to choose, so requests to
 * them never reach loopback or private addresses, unless
 * ATPROTO_ALLOW_PRIVATE_SERVERS=true (a development network; refused in
 * production). That is a setting of its own: a loopback PUBLIC_BASE_URL says
 * nothing about who can reach the gateway (compose publishes one).
 *
 * Two client modes (https://atproto.com/specs/oauth#clients):
 * - loopback, when PUBLIC_BASE_URL is loopback (development): `client_id` is
 *   `http://localhost?redirect_uri=…&scope=…`, a public client that needs no
 *   published metadata and no keys;
 * - production: `client_id` is the URL of our client metadata document,
 *   a confidential client authenticating with `private_key_jwt` using
 *   ATPROTO_PRIVATE_KEYS, published at /oauth/atproto/jwks.json.
 */
import type { NodeOAuthClient, NodeSavedSession, NodeSavedState, OAuthClientMetadataInput, OAuthSession } from '@atproto/oauth-client-node';
import * as v from 'valibot';
import {
  defineProvider,
  LinkgateError,
  ProviderNotConfigured,
  type Credentials,
  type FormSpec,
  type Json,
  type ProviderTools,
  type Step,
} from 'linkgate/provider';
import { describeScopes } from 'linkgate/oauth';

/** The largest upstream answer the proxy passes on. */
const MAX_XRPC_RESPONSE_BYTES = 5 * 1024 * 1024;
/** How long a started sign-in may wait for its callback (the library's own advice is about an hour). */
const STATE_TTL_SECONDS = 60 * 60;
const HANDLE_INVALID = 'handle.invalid';

const PrivateJwk = v.looseObject({
  kty: v.literal('EC', 'each key must be an EC key (kty "EC")'),
  crv: v.literal('P-256', 'each key must be on curve P-256 (ES256)'),
  kid: v.pipe(v.string('each key needs a "kid"'), v.minLength(1, 'each key needs a "kid"')),
  d: v.string('each key must be a private key (with "d")'),
  x: v.string(),
  y: v.string(),
});

const PrivateKeys = v.pipe(
  v.string(),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    try {
      return JSON.parse(dataset.value) as unknown;
    } catch {
      addIssue({ message: 'must be a JSON array of private JWKs (see docs/providers.md, Bluesky)' });
      return NEVER;
    }
  }),
  v.array(PrivateJwk, 'must be a JSON array of private JWKs (see docs/providers.md, Bluesky)'),
  v.minLength(1, 'must hold at least one key'),
  v.check((keys) => new Set(keys.map((k) => k.kid)).size === keys.length, 'every key needs its own "kid"'),
);

/** `app.bsky.feed.post`-like ids and `app.bsky.feed.*` prefixes, comma-separated; `*` allows all. */
const XrpcAllow = v.pipe(
  v.string(),
  v.transform((value) => value.split(',').map((s) => s.trim()).filter(Boolean)),
  v.array(v.pipe(v.string(), v.regex(/^(\*|[a-zA-Z][a-zA-Z0-9-]*(\.[a-zA-Z0-9-]+)*(\.\*)?)$/, 'each entry must be an NSID, a prefix like app.bsky.feed.*, or *'))),
);

const Env = v.pipe(
  v.object({
    NODE_ENV: v.optional(v.string()),
    ATPROTO_ALLOW_PRIVATE_SERVERS: v.optional(v.pipe(v.picklist(['true', 'false', '1', '0'], 'must be true or false'), v.transform((s) => s === 'true' || s === '1')), 'false'),
    ATPROTO_PRIVATE_KEYS: v.optional(PrivateKeys),
    ATPROTO_SCOPE: v.optional(v.pipe(v.string(), v.regex(/^[\x21-\x7e]+( [\x21-\x7e]+)*$/, 'must be space-separated scope values')), 'transition:generic'),
    ATPROTO_XRPC_ALLOW: v.optional(XrpcAllow, '*'),
    ATPROTO_PLC_DIRECTORY_URL: v.optional(v.pipe(v.string(), v.url('must be a URL'))),
    ATPROTO_HANDLE_RESOLVER_URL: v.optional(v.pipe(v.string(), v.url('must be a URL'))),
    ATPROTO_CLIENT_NAME: v.optional(v.pipe(v.string(), v.maxLength(100, 'must be at most 100 characters')), 'Linkgate'),
  }),
  v.forward(
    v.check((e) => !(e.NODE_ENV === 'production' && e.ATPROTO_ALLOW_PRIVATE_SERVERS), 'must not be true in production (it lets users make the gateway connect into its own network)'),
    ['ATPROTO_ALLOW_PRIVATE_SERVERS'],
  ),
);
type AtprotoEnv = v.InferOutput<typeof Env>;

const Identifier = v.pipe(
  v.string(),
  v.trim(),
  v.minLength(1, 'Enter your handle (like alice.bsky.social), your DID or your server’s address.'),
  v.maxLength(2048, 'That is too long to be a handle, a DID or an address.'),
);

/** What the link stores: identifiers only; the session itself is in the key-value store. */
const LinkExtra = v.object({ did: v.string(), handle: v.string(), pdsUrl: v.string() });

const isLoopback = (url: URL) => ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);

/**
 * The official client library, loaded when first needed: about 40 MB
 * resident (its resolvers, three undici versions, core-js), which a gateway
 * whose users never sign in with Bluesky does not carry. In production the
 * provider loads it at start, to check ATPROTO_PRIVATE_KEYS then.
 */
type Library = typeof import('@atproto/oauth-client-node');
type Keyset = Awaited<ReturnType<Library['JoseKey']['fromImportable']>>[];
let library: Promise<Library> | undefined;
const loadLibrary = () => (library ??= import('@atproto/oauth-client-node'));

/** Client metadata for this deployment (the document the authorization server reads). */
export function clientMetadata(lib: Library, publicBaseUrl: URL, env: Pick<AtprotoEnv, 'ATPROTO_SCOPE' | 'ATPROTO_CLIENT_NAME'>, production: boolean): OAuthClientMetadataInput {
  const scope = [...new Set(['atproto', ...env.ATPROTO_SCOPE.split(' ')])].join(' ');
  if (!production) {
    // Loopback clients must redirect to an IP literal, never `localhost` (atproto OAuth spec).
    const port = publicBaseUrl.port ? `:${publicBaseUrl.port}` : '';
    const host = publicBaseUrl.hostname === '[::1]' ? '[::1]' : '127.0.0.1';
    const redirectUri = `http://${host}${port}/oauth/atproto/callback`;
    return lib.atprotoLoopbackClientMetadata(lib.buildAtprotoLoopbackClientId({ scope, redirect_uris: [redirectUri] }));
  }
  const base = publicBaseUrl.href.replace(/\/$/, '');
  return {
    client_id: `${base}/oauth/atproto/client-metadata.json`,
    client_name: env.ATPROTO_CLIENT_NAME,
    client_uri: base,
    redirect_uris: [`${base}/oauth/atproto/callback`],
    scope,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    application_type: 'web',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    dpop_bound_access_tokens: true,
    jwks_uri: `${base}/oauth/atproto/jwks.json`,
  };
}

/** Whether `nsid` is allowed by ATPROTO_XRPC_ALLOW entries. */
export function xrpcAllowed(allow: readonly string[], nsid: string): boolean {
  return allow.some((entry) => entry === '*' || entry === nsid || (entry.endsWith('.*') && nsid.startsWith(entry.slice(0, -1))));
}

/**
 * The gateway's fetch for requests the library makes to servers a user's
 * identifier points at: private addresses refused unless
 * ATPROTO_ALLOW_PRIVATE_SERVERS, redirects not followed, a size cap.
 */
function guardedFetch(tools: ProviderTools, allowPrivate: boolean): typeof fetch {
  return async (input, init) => {
    const request = new Request(input, init);
    const body = request.method === 'GET' || request.method === 'HEAD' ? undefined : await request.text();
    return tools.untrustedFetch(
      request.url,
      { method: request.method, headers: Object.fromEntries(request.headers), ...(body === undefined ? {} : { body }) },
      { allowPrivate, timeoutMs: 10_000, maxBytes: MAX_XRPC_RESPONSE_BYTES },
    );
  };
}

const isSessionGone = (lib: Library, error: unknown) =>
  error instanceof lib.TokenRefreshError || error instanceof lib.TokenRevokedError || error instanceof lib.TokenInvalidError;

export default defineProvider({
  id: 'atproto',
  displayName: 'Bluesky',
  env: Env,
  // The client id is the gateway's own metadata document (/oauth/atproto/client-metadata.json): one per gateway.
  perTenant: false,
  async create(env, tools) {
    const production = !isLoopback(tools.publicBaseUrl);
    if (production && tools.publicBaseUrl.protocol !== 'https:') {
      throw new ProviderNotConfigured('ATProto needs an https PUBLIC_BASE_URL outside development', ['PUBLIC_BASE_URL']);
    }
    if (production && !env.ATPROTO_PRIVATE_KEYS) {
      throw new ProviderNotConfigured('ATProto needs ATPROTO_PRIVATE_KEYS when PUBLIC_BASE_URL is not loopback', ['ATPROTO_PRIVATE_KEYS']);
    }
    const { kv, logger } = tools;

    const newClient = (lib: Library, metadata: OAuthClientMetadataInput, keyset: Keyset) => new lib.NodeOAuthClient({
      clientMetadata: metadata,
      ...(production ? { keyset } : {}),
      // Plain http only for a development network (the PDS under test, a local PLC).
      allowHttp: env.ATPROTO_ALLOW_PRIVATE_SERVERS,
      fetch: guardedFetch(tools, env.ATPROTO_ALLOW_PRIVATE_SERVERS),
      ...(env.ATPROTO_PLC_DIRECTORY_URL ? { plcDirectoryUrl: env.ATPROTO_PLC_DIRECTORY_URL } : {}),
      ...(env.ATPROTO_HANDLE_RESOLVER_URL ? { handleResolver: env.ATPROTO_HANDLE_RESOLVER_URL } : {}),
      stateStore: {
        get: async (key) => (await kv.get(`state:${key}`)) as NodeSavedState | undefined,
        set: (key, value) => kv.set(`state:${key}`, value as unknown as Json, { ttlSeconds: STATE_TTL_SECONDS }),
        del: (key) => kv.delete(`state:${key}`),
      },
      // One session per DID, sealed like every credential: it holds the DPoP private key and the tokens.
      sessionStore: {
        get: async (did) => (await kv.get(`session:${did}`)) as NodeSavedSession | undefined,
        set: (did, value) => kv.set(`session:${did}`, value as unknown as Json),
        del: (did) => kv.delete(`session:${did}`),
      },
      // Refresh tokens are single-use: only one instance may refresh a session at a time.
      requestLock: (name, fn) => tools.lock(name, async () => fn()),
      onSessionDeleted: (_did, cause) => {
        logger.info({ reason: cause instanceof Error ? cause.name : 'deleted' }, 'atproto session ended');
      },
    });

    /** The library's client, made on first use (at start in production: see `loadLibrary`). */
    const made = async (lib: Library): Promise<{ client: NodeOAuthClient; metadata: OAuthClientMetadataInput }> => {
      const keyset = production ? await Promise.all(env.ATPROTO_PRIVATE_KEYS!.map((jwk) => lib.JoseKey.fromImportable(jwk as never, jwk.kid))) : [];
      const metadata = clientMetadata(lib, tools.publicBaseUrl, env, production);
      return { client: newClient(lib, metadata, keyset), metadata };
    };
    let making: ReturnType<typeof made> | undefined;
    const clientOf = () => (making ??= loadLibrary().then(made));
    // In production the keys are checked, and the JWKS made, before the gateway says it is ready.
    if (production) await clientOf();
    // The calls this module makes, each waiting for the client first.
    const client = {
      authorize: async (...args: Parameters<NodeOAuthClient['authorize']>) => (await clientOf()).client.authorize(...args),
      callback: async (params: URLSearchParams) => (await clientOf()).client.callback(params),
      restore: async (did: string) => (await clientOf()).client.restore(did),
      revoke: async (did: string) => (await clientOf()).client.revoke(did),
      resolveIdentity: async (identifier: string) => (await clientOf()).client.identityResolver.resolve(identifier),
    };

    const identifierForm = (error?: string): Step => {
      const form: FormSpec = {
        title: 'Sign in with Bluesky',
        description: 'Enter the handle of your Bluesky (or other ATProto) account. You will sign in on your own server next.',
        fields: [
          {
            name: 'identifier',
            label: 'Handle',
            type: 'text',
            placeholder: 'alice.bsky.social',
            description: 'Your handle, your DID, or the address of your server (PDS).',
            autocomplete: 'username',
            required: true,
          },
        ],
        submitLabel: 'Continue',
        ...(error ? { error } : {}),
      };
      return { kind: 'form', form };
    };

    /**
     * Resolves a handle or DID (identity, PDS, authorization server) and
     * pushes the authorization request (PAR): the redirect to the user's
     * server, or the form again saying what was wrong.
     */
    async function authorize(flow: { state: string; data: { [key: string]: Json } }, typed: string): Promise<Step> {
      const parsed = v.safeParse(Identifier, typed);
      if (!parsed.success) return identifierForm(parsed.issues[0].message);
      const identifier = parsed.output;
      const isServer = /^https?:\/\//i.test(identifier);
      let url: URL;
      try {
        if (isServer) {
          // A PDS address: the account is chosen at the server, so there is no DID to hold it to yet.
          url = await client.authorize(identifier, { state: flow.state });
        } else {
          const identity = await client.resolveIdentity(identifier.replace(/^@/, ''));
          flow.data = { did: identity.did, handle: identity.handle };
          url = await client.authorize(identity.did, { state: flow.state });
        }
      } catch (error) {
        logger.info({ reason: error instanceof Error ? error.name : 'unknown' }, 'atproto identifier did not resolve');
        return identifierForm(
          isServer
            ? 'We could not reach a Bluesky-compatible server at that address.'
            : 'We could not find that account. Check the handle (like alice.bsky.social) and try again.',
        );
      }
      return { kind: 'redirect', url };
    }

    async function restore(did: string): Promise<OAuthSession> {
      try {
        return await client.restore(did);
      } catch (error) {
        if (isSessionGone(await loadLibrary(), error)) throw new LinkgateError('needs_reauth', 'the ATProto session has ended', { provider: 'atproto', cause: error });
        throw error;
      }
    }

    const extraOf = (credentials: Credentials) => v.parse(LinkExtra, credentials.extra);

    return {
      // Scopes: https://atproto.com/specs/oauth#scopes (transition:generic is everything an app password may do).
      access: describeScopes([...new Set(['atproto', ...env.ATPROTO_SCOPE.split(' ')])], {
        atproto: 'see your handle and public profile',
        'transition:generic': 'post, like, follow and change everything in your account as you (but not your direct messages)',
        'transition:chat.bsky': 'read and send your direct messages',
        'transition:email': 'see your email address',
      }),
      // The app may know the handle already (`login_hint`, LoginService's identifier): no form then.
      async begin(flow) {
        return flow.loginHint === undefined ? identifierForm() : authorize(flow, flow.loginHint);
      },

      async advance(flow, input) {
        if (input.kind === 'form') return authorize(flow, input.fields.identifier ?? '');
        if (input.kind !== 'callback') return identifierForm();

        let session: OAuthSession;
        try {
          ({ session } = await client.callback(input.params));
        } catch (error) {
          if (error instanceof (await loadLibrary()).OAuthCallbackError && error.params.get('error') === 'access_denied') {
            throw new LinkgateError('provider_denied', 'the user did not grant access', { provider: 'atproto', cause: error });
          }
          throw new LinkgateError('exchange_failed', 'the sign-in could not be completed', { provider: 'atproto', cause: error });
        }
        const expected = typeof flow.data.did === 'string' ? flow.data.did : undefined;
        if (expected && session.did !== expected) {
          // Signed in as someone else than the identifier typed: end that session, link nothing.
          await session.signOut().catch(() => {});
          throw new LinkgateError('account_mismatch', 'the account signed in is not the one that was asked for', { provider: 'atproto' });
        }
        const info = await session.getTokenInfo(false);
        let handle = expected && typeof flow.data.handle === 'string' ? flow.data.handle : undefined;
        if (!handle) handle = (await client.resolveIdentity(session.did).catch(() => undefined))?.handle ?? HANDLE_INVALID;
        const extra = { did: session.did, handle, pdsUrl: info.aud.replace(/\/$/, '') };
        return {
          kind: 'done',
          account: { id: session.did, name: handle === HANDLE_INVALID ? session.did : handle },
          credentials: { scopes: info.scope.split(' '), extra },
        };
      },

      async callbackState(params) {
        const state = params.get('state');
        if (!state || state.length > 256) return undefined;
        const saved = (await kv.get(`state:${state}`)) as { appState?: unknown } | undefined;
        return typeof saved?.appState === 'string' ? saved.appState : undefined;
      },

      tokenFields(credentials) {
        const { did, handle, pdsUrl } = extraOf(credentials);
        return { did, handle, pdsUrl };
      },

      async verify(credentials) {
        try {
          const session = await restore(extraOf(credentials).did);
          const response = await session.fetchHandler('/xrpc/com.atproto.server.getSession');
          await response.body?.cancel();
          if (response.status === 401) return false;
          if (!response.ok) throw new LinkgateError('provider_unavailable', `the PDS answered ${response.status}`, { provider: 'atproto' });
          return true;
        } catch (error) {
          if (error instanceof LinkgateError && error.code === 'needs_reauth') return false;
          throw error;
        }
      },

      async xrpc(credentials, call) {
        if (!xrpcAllowed(env.ATPROTO_XRPC_ALLOW, call.nsid)) {
          throw new LinkgateError('nsid_not_allowed', `${call.nsid} is not in ATPROTO_XRPC_ALLOW`, { provider: 'atproto' });
        }
        const session = await restore(extraOf(credentials).did);
        const query = call.query.size > 0 ? `?${call.query}` : '';
        const response = await session.fetchHandler(
          `/xrpc/${call.nsid}${query}`,
          call.method === 'POST'
            ? { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(call.body ?? {}) }
            : { method: 'GET' },
        );
        if (response.status === 401) {
          // Still refused after the library's refresh: the session no longer works.
          await response.body?.cancel();
          throw new LinkgateError('needs_reauth', 'the PDS refused the session', { provider: 'atproto' });
        }
        const body = new Uint8Array(await response.arrayBuffer());
        if (body.byteLength > MAX_XRPC_RESPONSE_BYTES) {
          throw new LinkgateError('provider_response_invalid', 'the PDS answer is too large to pass on', { provider: 'atproto' });
        }
        return { status: response.status, contentType: response.headers.get('content-type') ?? undefined, body };
      },

      async revoke(credentials) {
        // Revokes the tokens at the authorization server and forgets the session.
        await client.revoke(extraOf(credentials).did);
      },

      documents: {
        'client-metadata.json': async () => (await clientOf()).metadata as unknown as Json,
        'jwks.json': async () => (await clientOf()).client.jwks as unknown as Json,
      },
    };
  },
});
