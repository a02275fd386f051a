/**
 * Any OpenID Connect provider, by configuration: `OIDC_PROVIDERS=idp1,idp2`
 * and, for each, `<ID>_ISSUER`, `<ID>_CLIENT_ID`, `<ID>_CLIENT_SECRET`,
 * `<ID>_REDIRECT_URI`, `<ID>_SCOPES`, `<ID>_DISPLAY_NAME`, and where the
 * provider needs it `<ID>_TOKEN_AUTH_METHOD` and `<ID>_PRIVATE_KEY`.
 * Discovery, authorization code with PKCE S256, state and nonce, ID token
 * and `iss` checks, userinfo, refresh and revocation all come from
 * openid-client.
 */
import { importJWK } from 'jose';
import * as oidc from 'openid-client';
import * as v from 'valibot';
import {
  defineProvider,
  defineProviderFamily,
  LinkgateError,
  type ProviderDefinition,
  type ProviderInstance,
  type ProviderTools,
} from 'linkgate/provider';
import { callbackUrl, describeScopes, oauthError, providerApi, refreshError, tokenCredentials } from 'linkgate/oauth';

const Id = v.pipe(v.string(), v.regex(/^[a-z][a-z0-9_-]{0,31}$/, 'each id must be lower-case letters, digits, _ or -'));
const ProviderList = v.pipe(
  v.string(),
  v.transform((s) => s.split(',').map((id) => id.trim().toLowerCase()).filter(Boolean)),
  v.array(Id),
);

const isLoopback = (url: URL) => ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname);

const issuerUrl = v.pipe(
  v.string(),
  v.url('must be an absolute URL'),
  v.transform((s) => new URL(s)),
  v.check((u) => u.protocol === 'https:' || (u.protocol === 'http:' && isLoopback(u)), 'must be https (plain http only on loopback)'),
);

/** How the client authenticates at the token (and revocation) endpoint: RFC 6749 §2.3, OIDC Core §9. */
type TokenAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'none';

const AuthMethodSetting = v.picklist(['client_secret_basic', 'client_secret_post', 'private_key_jwt'], 'must be client_secret_basic, client_secret_post or private_key_jwt');

/** A private JWK (RSA, EC or OKP, with `d`) as JSON: the key `private_key_jwt` signs its assertions with. */
const PrivateJwk = v.pipe(
  v.string(),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    try {
      return JSON.parse(dataset.value) as unknown;
    } catch {
      addIssue({ message: 'must be a private JWK as JSON' });
      return NEVER;
    }
  }),
  v.looseObject(
    {
      kty: v.picklist(['RSA', 'EC', 'OKP'], 'must be an RSA, EC or OKP key'),
      d: v.string('must be a private key (with "d")'),
      kid: v.optional(v.string()),
      alg: v.optional(v.string()),
      crv: v.optional(v.string()),
    },
    'must be a private JWK as JSON',
  ),
);
type PrivateJwk = v.InferOutput<typeof PrivateJwk>;

/**
 * The method to use: the configured one, else the first of
 * client_secret_basic, client_secret_post the provider lists in
 * `token_endpoint_auth_methods_supported` (client_secret_basic when it lists
 * nothing, RFC 8414 §2), private_key_jwt with a key, none without a secret.
 * `undefined`: the provider takes none of what this client can do.
 */
function tokenAuthMethod(configured: TokenAuthMethod | undefined, supported: readonly string[] | undefined, has: { secret: boolean; key: boolean }): TokenAuthMethod | undefined {
  if (configured) return configured;
  if (has.key) return 'private_key_jwt';
  if (!has.secret) return 'none';
  if (supported === undefined || supported.includes('client_secret_basic')) return 'client_secret_basic';
  // Where Basic is not listed, the secret goes in the body: no Basic header for a provider to mis-decode (RFC 6749 §2.3.1).
  if (supported.includes('client_secret_post')) return 'client_secret_post';
  return undefined;
}

/** The variable prefix of an id: `my-idp` → `MY_IDP`. */
export const envPrefix = (id: string) => id.toUpperCase().replaceAll('-', '_');

function definitionFor(id: string): ProviderDefinition<OidcEnv> {
  const p = envPrefix(id);
  const schema = v.pipe(
    v.object({
      [`${p}_ISSUER`]: issuerUrl,
      [`${p}_CLIENT_ID`]: v.pipe(v.string(), v.minLength(1)),
      [`${p}_CLIENT_SECRET`]: v.optional(v.pipe(v.string(), v.minLength(1))),
      [`${p}_REDIRECT_URI`]: v.optional(v.pipe(v.string(), v.url('must be an absolute URL'))),
      [`${p}_SCOPES`]: v.optional(v.pipe(v.string(), v.regex(/(^|\s)openid(\s|$)/, 'must include openid')), 'openid profile'),
      [`${p}_DISPLAY_NAME`]: v.optional(v.string()),
      [`${p}_TOKEN_AUTH_METHOD`]: v.optional(AuthMethodSetting),
      [`${p}_PRIVATE_KEY`]: v.optional(PrivateJwk),
      // The provider's own API, for the gateway's proxy (GET …/links/<id>/proxy/…): where its paths are relative to.
      [`${p}_API_BASE`]: v.optional(v.pipe(v.string(), v.url('must be an absolute URL'), v.check((u) => /^https?:/.test(u), 'must be an http(s) URL'))),
    }),
    v.forward(
      v.check((e) => !String(e[`${p}_TOKEN_AUTH_METHOD`] ?? '').startsWith('client_secret') || e[`${p}_CLIENT_SECRET`] !== undefined, `needs ${p}_CLIENT_SECRET`),
      [`${p}_TOKEN_AUTH_METHOD`],
    ),
    v.forward(
      v.check((e) => e[`${p}_TOKEN_AUTH_METHOD`] !== 'private_key_jwt' || e[`${p}_PRIVATE_KEY`] !== undefined, `needs ${p}_PRIVATE_KEY (a private JWK)`),
      [`${p}_TOKEN_AUTH_METHOD`],
    ),
    v.transform(
      (e): OidcEnv => ({
        id,
        issuer: e[`${p}_ISSUER`] as URL,
        clientId: e[`${p}_CLIENT_ID`] as string,
        clientSecret: e[`${p}_CLIENT_SECRET`] as string | undefined,
        redirectUri: e[`${p}_REDIRECT_URI`] as string | undefined,
        scopes: (e[`${p}_SCOPES`] as string).split(/\s+/).filter(Boolean),
        tokenAuthMethod: e[`${p}_TOKEN_AUTH_METHOD`] as TokenAuthMethod | undefined,
        privateKey: e[`${p}_PRIVATE_KEY`] as PrivateJwk | undefined,
        apiBase: e[`${p}_API_BASE`] === undefined ? undefined : new URL(String(e[`${p}_API_BASE`]).replace(/\/*$/, '/')),
        variablePrefix: p,
      }),
    ),
  );
  return defineProvider({
    id,
    // The display name is read when the family expands (it is not a secret and has no default to fail).
    displayName: id,
    env: schema,
    create: (env, tools) => createOidcClient(env, tools),
  });
}

export interface OidcEnv {
  id: string;
  issuer: URL;
  clientId: string;
  clientSecret: string | undefined;
  redirectUri: string | undefined;
  scopes: string[];
  /** `<ID>_TOKEN_AUTH_METHOD`; chosen from the provider's metadata when unset. */
  tokenAuthMethod: TokenAuthMethod | undefined;
  /** `<ID>_PRIVATE_KEY`, for private_key_jwt. */
  privateKey: PrivateJwk | undefined;
  /** `<ID>_API_BASE`: the provider's API, for the proxy (none: no proxy). */
  apiBase: URL | undefined;
  variablePrefix: string;
}

/** The JWS algorithm of a private JWK: its own `alg`, else the usual one for its key type. */
function signingAlg(jwk: PrivateJwk): string {
  if (jwk.alg) return jwk.alg;
  if (jwk.kty === 'RSA') return 'RS256';
  if (jwk.kty === 'OKP') return 'EdDSA';
  return { 'P-384': 'ES384', 'P-521': 'ES512' }[jwk.crv ?? ''] ?? 'ES256';
}

const FlowData = v.object({ nonce: v.string(), redirectUri: v.string(), scopes: v.optional(v.array(v.string())) });

async function createOidcClient(env: OidcEnv, tools: ProviderTools): Promise<ProviderInstance> {
  const provider = env.id;
  const privateKey = env.privateKey
    ? { key: (await importJWK(env.privateKey, signingAlg(env.privateKey))) as CryptoKey, ...(env.privateKey.kid ? { kid: env.privateKey.kid } : {}) }
    : undefined;
  const authentications: Record<TokenAuthMethod, () => oidc.ClientAuth> = {
    client_secret_basic: () => oidc.ClientSecretBasic(env.clientSecret),
    client_secret_post: () => oidc.ClientSecretPost(env.clientSecret),
    private_key_jwt: () => oidc.PrivateKeyJwt(privateKey!),
    none: () => oidc.None(),
  };
  // Chosen once discovery has said what the provider takes; every token, refresh and revocation request uses it.
  let authenticate: oidc.ClientAuth | undefined;
  const clientAuth: oidc.ClientAuth = (as, client, body, headers) => authenticate!(as, client, body, headers);

  // Discovery happens on first use and is retried after a failure, so an IdP
  // that is down at start-up does not keep the gateway from starting.
  let discovered: Promise<oidc.Configuration> | undefined;
  const configuration = () => {
    discovered ??= oidc
      .discovery(env.issuer, env.clientId, env.clientSecret, clientAuth, {
        [oidc.customFetch]: tools.fetch,
        ...(env.issuer.protocol === 'http:' ? { execute: [oidc.allowInsecureRequests] } : {}),
      })
      .then((config) => {
        const supported = config.serverMetadata().token_endpoint_auth_methods_supported;
        const method = tokenAuthMethod(env.tokenAuthMethod, supported, { secret: env.clientSecret !== undefined, key: privateKey !== undefined });
        if (!method) {
          throw new LinkgateError(
            'provider_unconfigured',
            `the provider takes none of client_secret_basic and client_secret_post at its token endpoint (it lists ${supported!.join(', ') || 'nothing'}); set ${env.variablePrefix}_TOKEN_AUTH_METHOD`,
            { provider },
          );
        }
        authenticate = authentications[method]();
        tools.logger.info({ method, supported: supported ?? null }, 'token endpoint authentication chosen');
        // Verify ID token signatures against the IdP's JWKS too, not only TLS (OIDC Core §3.1.3.7).
        oidc.enableNonRepudiationChecks(config);
        return config;
      })
      .catch((error: unknown) => {
        discovered = undefined;
        throw oauthError(error, provider);
      });
    return discovered;
  };

  return {
    ...(env.apiBase ? { api: providerApi(env.apiBase, tools, provider) } : {}),
    // Standard scopes: OpenID Connect Core §5.4 and §11.
    access: describeScopes(env.scopes, {
      openid: 'confirm who you are',
      profile: 'see your name and profile',
      email: 'see your email address',
      address: 'see your postal address',
      phone: 'see your phone number',
      offline_access: 'stay connected while you are away',
    }),
    async begin(flow) {
      const config = await configuration();
      const nonce = oidc.randomNonce();
      const redirectUri = env.redirectUri ?? flow.redirectUri;
      // The configured scopes and any the bot asked for with this link.
      const asked = [...new Set([...env.scopes, ...(flow.scopes ?? [])])];
      flow.data = { nonce, redirectUri, scopes: asked };
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: redirectUri,
        response_type: 'code',
        scope: asked.join(' '),
        state: flow.state,
        nonce,
        code_challenge: await oidc.calculatePKCECodeChallenge(flow.codeVerifier),
        code_challenge_method: 'S256',
      });
      return { kind: 'redirect', url };
    },

    async advance(flow, input) {
      if (input.kind !== 'callback') throw new LinkgateError('bad_request', 'this provider expects a redirect back from the sign-in', { provider });
      const { nonce, redirectUri, scopes: asked = env.scopes } = v.parse(FlowData, flow.data);
      try {
        const config = await configuration();
        const tokens = await oidc.authorizationCodeGrant(config, callbackUrl(redirectUri, input.params), {
          pkceCodeVerifier: flow.codeVerifier,
          expectedState: flow.state,
          expectedNonce: nonce,
          idTokenExpected: true,
        });
        const claims = tokens.claims();
        if (!claims) throw new LinkgateError('provider_response_invalid', 'the provider sent no ID token', { provider });
        let name = pickName(claims);
        if (config.serverMetadata().userinfo_endpoint) {
          const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
          name = pickName(userinfo) ?? name;
        }
        const credentials = tokenCredentials(tokens, tools.clock.now(), undefined, asked);
        return { kind: 'done', account: { id: claims.sub, ...(name ? { name } : {}) }, credentials };
      } catch (error) {
        throw oauthError(error, provider);
      }
    },

    async refresh(credentials) {
      if (!credentials.refreshToken) throw new LinkgateError('needs_reauth', 'the provider gave no refresh token', { provider });
      try {
        const tokens = await oidc.refreshTokenGrant(await configuration(), credentials.refreshToken);
        // OIDC Core §12.2: a refreshed ID token is about the same user as the one from the sign-in.
        const signedIn = subjectOf(credentials.extra?.idToken);
        const refreshed = tokens.claims()?.sub;
        if (refreshed !== undefined && signedIn !== undefined && refreshed !== signedIn) {
          throw new LinkgateError('provider_response_invalid', 'the refreshed ID token is about another user', { provider });
        }
        // Without a new ID token, the one from the sign-in is kept.
        return tokenCredentials(tokens, tools.clock.now(), credentials);
      } catch (error) {
        throw refreshError(error, provider);
      }
    },

    async revoke(credentials) {
      const config = await configuration();
      // Nothing to ask: say so, rather than let the unlink report a revocation that never happened.
      if (!config.serverMetadata().revocation_endpoint) return 'not_supported';
      try {
        // Revoking the refresh token ends the grant at most IdPs (RFC 7009 §2.1); the access token too where it is separate.
        if (credentials.refreshToken) await oidc.tokenRevocation(config, credentials.refreshToken, { token_type_hint: 'refresh_token' });
        if (credentials.accessToken) await oidc.tokenRevocation(config, credentials.accessToken, { token_type_hint: 'access_token' });
      } catch (error) {
        throw oauthError(error, provider);
      }
    },
  };
}

/** The `sub` of an ID token we stored (validated when it was received), if it is one. */
function subjectOf(idToken: unknown): string | undefined {
  if (typeof idToken !== 'string') return undefined;
  const payload = idToken.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    const parsed = v.safeParse(v.object({ sub: v.string() }), JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')));
    return parsed.success ? parsed.output.sub : undefined;
  } catch {
    return undefined;
  }
}

const NameClaims = v.object({
  name: v.optional(v.string()),
  preferred_username: v.optional(v.string()),
  nickname: v.optional(v.string()),
  email: v.optional(v.string()),
});

function pickName(claims: unknown): string | undefined {
  const parsed = v.safeParse(NameClaims, claims);
  if (!parsed.success) return undefined;
  const { name, preferred_username, nickname, email } = parsed.output;
  return [name, preferred_username, nickname, email].find((n) => n !== undefined && n.trim() !== '')?.slice(0, 200);
}

/** Provider `id` with its display name from `<ID>_DISPLAY_NAME`, when set. */
function member(id: string, env: Readonly<Record<string, string | undefined>>) {
  const definition = definitionFor(id);
  const displayName = env[`${envPrefix(id)}_DISPLAY_NAME`]?.trim();
  return displayName ? { ...definition, displayName } : definition;
}

export default defineProviderFamily({
  family: 'oidc',
  expand(env) {
    const list = v.safeParse(ProviderList, env.OIDC_PROVIDERS ?? '');
    if (!list.success) throw new Error(`OIDC_PROVIDERS: ${list.issues[0].message}`);
    return list.output.map((id) => member(id, env));
  },
  member(id, env) {
    return v.is(Id, id) ? member(id, env) : undefined;
  },
});
