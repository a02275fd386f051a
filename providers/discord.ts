/**
 * Discord (https://discord.com/developers/docs/topics/oauth2): authorization
 * code with PKCE S256, `GET /users/@me` for the account, refresh with
 * rotating refresh tokens, revocation when the link is deleted.
 */
import * as oidc from 'openid-client';
import * as v from 'valibot';
import { defineProvider, LinkgateError, type ProviderInstance } from 'linkgate/provider';
import { callbackUrl, describeScopes, oauthError, providerApi, refreshError, tokenCredentials } from 'linkgate/oauth';

const ISSUER = 'https://discord.com';
const AUTHORIZATION_ENDPOINT = 'https://discord.com/oauth2/authorize';
const TOKEN_ENDPOINT = 'https://discord.com/api/oauth2/token';
const REVOCATION_ENDPOINT = 'https://discord.com/api/oauth2/token/revoke';
const CURRENT_USER_ENDPOINT = 'https://discord.com/api/users/@me';
/** Discord's REST API (https://discord.com/developers/docs/reference#api-reference-base-url), for the proxy. */
const API_BASE = new URL('https://discord.com/api/');

/** The part of Discord's user object we read (https://discord.com/developers/docs/resources/user#user-object). */
const DiscordUser = v.object({
  id: v.pipe(v.string(), v.regex(/^\d{1,20}$/)),
  username: v.string(),
  global_name: v.optional(v.nullable(v.string())),
});

export default defineProvider({
  id: 'discord',
  displayName: 'Discord',
  env: v.object({
    DISCORD_CLIENT_ID: v.pipe(v.string(), v.regex(/^\d{1,20}$/, 'must be the application id (a snowflake)')),
    DISCORD_CLIENT_SECRET: v.pipe(v.string(), v.minLength(1)),
    DISCORD_REDIRECT_URI: v.optional(v.pipe(v.string(), v.url('must be an absolute URL'))),
    DISCORD_SCOPES: v.optional(v.pipe(v.string(), v.regex(/(^|\s)identify(\s|$)/, 'must include identify')), 'identify'),
  }),
  create(env, tools): ProviderInstance {
    const provider = 'discord';
    const scopes = env.DISCORD_SCOPES.split(/\s+/).filter(Boolean);
    const config = new oidc.Configuration(
      {
        issuer: ISSUER,
        authorization_endpoint: AUTHORIZATION_ENDPOINT,
        token_endpoint: TOKEN_ENDPOINT,
        revocation_endpoint: REVOCATION_ENDPOINT,
      },
      env.DISCORD_CLIENT_ID,
      env.DISCORD_CLIENT_SECRET,
      oidc.ClientSecretPost(env.DISCORD_CLIENT_SECRET),
    );
    config[oidc.customFetch] = tools.fetch;

    /** The current user for a token, or `undefined` when Discord refuses the token (401). */
    async function currentUser(accessToken: string): Promise<v.InferOutput<typeof DiscordUser> | undefined> {
      const response = await tools.fetch(CURRENT_USER_ENDPOINT, { headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json' } });
      if (response.status === 401) return undefined;
      if (!response.ok) throw new LinkgateError('provider_unavailable', `Discord answered ${response.status}`, { provider });
      const user = v.safeParse(DiscordUser, await response.json().catch(() => undefined));
      if (!user.success) throw new LinkgateError('provider_response_invalid', 'Discord sent an unexpected user', { provider });
      return user.output;
    }

    return {
      api: providerApi(API_BASE, tools, provider),
      // Scope names: https://discord.com/developers/docs/topics/oauth2#shared-resources-oauth2-scopes
      access: describeScopes(scopes, {
        identify: 'see your Discord username and avatar',
        email: 'see your email address',
        guilds: 'see which servers you are in',
        'guilds.members.read': 'see your nickname and roles in your servers',
        connections: 'see the accounts you connected to Discord',
        'role_connections.write': 'update the linked-role details of your account',
        'applications.commands': null,
      }),
      async begin(flow) {
        const redirectUri = env.DISCORD_REDIRECT_URI ?? flow.redirectUri;
        // The configured scopes and any the bot asked for with this link.
        const asked = [...new Set([...scopes, ...(flow.scopes ?? [])])];
        flow.data = { redirectUri, scopes: asked };
        const url = oidc.buildAuthorizationUrl(config, {
          redirect_uri: redirectUri,
          response_type: 'code',
          scope: asked.join(' '),
          state: flow.state,
          code_challenge: await oidc.calculatePKCECodeChallenge(flow.codeVerifier),
          code_challenge_method: 'S256',
        });
        return { kind: 'redirect', url };
      },

      async advance(flow, input) {
        if (input.kind !== 'callback') throw new LinkgateError('bad_request', 'Discord signs in by redirect', { provider });
        const { redirectUri, scopes: asked = scopes } = v.parse(v.object({ redirectUri: v.string(), scopes: v.optional(v.array(v.string())) }), flow.data);
        try {
          // openid-client compares `iss` with the issuer when Discord sends one (RFC 9207).
          const tokens = await oidc.authorizationCodeGrant(config, callbackUrl(redirectUri, input.params), {
            expectedState: flow.state,
            pkceCodeVerifier: flow.codeVerifier,
          });
          const user = await currentUser(tokens.access_token);
          if (!user) throw new LinkgateError('provider_response_invalid', 'Discord refused the token it just issued', { provider });
          const credentials = tokenCredentials(tokens, tools.clock.now(), undefined, asked);
          return { kind: 'done', account: { id: user.id, name: user.global_name || user.username }, credentials };
        } catch (error) {
          throw oauthError(error, provider);
        }
      },

      async refresh(credentials) {
        if (!credentials.refreshToken) throw new LinkgateError('needs_reauth', 'no refresh token is stored', { provider });
        try {
          // Discord rotates refresh tokens: the answer's replaces the one spent here.
          return tokenCredentials(await oidc.refreshTokenGrant(config, credentials.refreshToken), tools.clock.now(), credentials);
        } catch (error) {
          throw refreshError(error, provider);
        }
      },

      async revoke(credentials) {
        try {
          if (credentials.refreshToken) await oidc.tokenRevocation(config, credentials.refreshToken, { token_type_hint: 'refresh_token' });
          if (credentials.accessToken) await oidc.tokenRevocation(config, credentials.accessToken, { token_type_hint: 'access_token' });
        } catch (error) {
          throw oauthError(error, provider);
        }
      },

      async verify(credentials) {
        return credentials.accessToken !== undefined && (await currentUser(credentials.accessToken)) !== undefined;
      },
    };
  },
});
