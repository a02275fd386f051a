/**
 * Any OpenID Connect provider, by configuration: `OIDC_PROVIDERS=idp1,idp2`
 * and, for each, `<ID>_ISSUER`, `<ID>_CLIENT_ID`, `<ID>_CLIENT_SECRET`,
 * `<ID>_REDIRECT_URI`, `<ID>_SCOPES`, `<ID>_DISPLAY_NAME`. Discovery,
 * authorization code with PKCE S256, state and nonce, ID token and `iss`
 * checks, userinfo, refresh and revocation all come from openid-client.
 */
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
import { callbackUrl, describeScopes, oauthError, refreshError, tokenCredentials } from 'linkgate/oauth';

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
    }),
    v.transform(
      (e): OidcEnv => ({
        id,
        issuer: e[`${p}_ISSUER`] as URL,
        clientId: e[`${p}_CLIENT_ID`] as string,
        clientSecret: e[`${p}_CLIENT_SECRET`] as string | undefined,
        redirectUri: e[`${p}_REDIRECT_URI`] as string | undefined,
        scopes: (e[`${p}_SCOPES`] as string).split(/\s+/).filter(Boolean),
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
}

const FlowData = v.object({ nonce: v.string(), redirectUri: v.string() });

function createOidcClient(env: OidcEnv, tools: ProviderTools): ProviderInstance {
  const provider = env.id;
  // Discovery happens on first use and is retried after a failure, so an IdP
  // that is down at start-up does not keep the gateway from starting.
  let discovered: Promise<oidc.Configuration> | undefined;
  const configuration = () => {
    discovered ??= oidc
      .discovery(
        env.issuer,
        env.clientId,
        env.clientSecret,
        env.clientSecret ? oidc.ClientSecretBasic(env.clientSecret) : oidc.None(),
        {
          [oidc.customFetch]: tools.fetch,
          ...(env.issuer.protocol === 'http:' ? { execute: [oidc.allowInsecureRequests] } : {}),
        },
      )
      .then((config) => {
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
      flow.data = { nonce, redirectUri };
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: redirectUri,
        response_type: 'code',
        scope: env.scopes.join(' '),
        state: flow.state,
        nonce,
        code_challenge: await oidc.calculatePKCECodeChallenge(flow.codeVerifier),
        code_challenge_method: 'S256',
      });
      return { kind: 'redirect', url };
    },

    async advance(flow, input) {
      if (input.kind !== 'callback') throw new LinkgateError('bad_request', 'this provider expects a redirect back from the sign-in', { provider });
      const { nonce, redirectUri } = v.parse(FlowData, flow.data);
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
        const credentials = tokenCredentials(tokens, tools.clock.now(), undefined, env.scopes);
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
      if (!config.serverMetadata().revocation_endpoint) return;
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

export default defineProviderFamily({
  family: 'oidc',
  expand(env) {
    const list = v.safeParse(ProviderList, env.OIDC_PROVIDERS ?? '');
    if (!list.success) throw new Error(`OIDC_PROVIDERS: ${list.issues[0].message}`);
    return list.output.map((id) => {
      const definition = definitionFor(id);
      const displayName = env[`${envPrefix(id)}_DISPLAY_NAME`]?.trim();
      return displayName ? { ...definition, displayName } : definition;
    });
  },
});
