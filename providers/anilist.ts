/**
 * AniList (https://docs.anilist.co/guide/auth/): OAuth 2 authorization code
 * grant against Laravel Passport, then the GraphQL `Viewer` for the account.
 * Access tokens live a year and cannot be refreshed, so an expired link
 * becomes `needs_reauth`. Env names and the callback path
 * (/oauth/anilist/callback) match the AniList auth service this replaces.
 */
import * as oidc from 'openid-client';
import * as v from 'valibot';
import { defineProvider, LinkgateError, type ProviderInstance } from 'linkgate/provider';
import { callbackUrl, oauthError, providerApi, tokenCredentials } from 'linkgate/oauth';

const ISSUER = 'https://anilist.co';
const AUTHORIZATION_ENDPOINT = 'https://anilist.co/api/v2/oauth/authorize';
const TOKEN_ENDPOINT = 'https://anilist.co/api/v2/oauth/token';
const GRAPHQL_ENDPOINT = 'https://graphql.anilist.co';

const VIEWER_QUERY = 'query { Viewer { id name } }';
const ViewerAnswer = v.object({
  data: v.object({ Viewer: v.object({ id: v.pipe(v.number(), v.integer()), name: v.string() }) }),
});

export default defineProvider({
  id: 'anilist',
  displayName: 'AniList',
  env: v.object({
    ANILIST_CLIENT_ID: v.pipe(v.string(), v.regex(/^\d+$/, 'must be the numeric client id AniList shows')),
    ANILIST_CLIENT_SECRET: v.pipe(v.string(), v.minLength(1)),
    ANILIST_REDIRECT_URI: v.optional(v.pipe(v.string(), v.url('must be an absolute URL'))),
  }),
  create(env, tools): ProviderInstance {
    const provider = 'anilist';
    const config = new oidc.Configuration(
      { issuer: ISSUER, authorization_endpoint: AUTHORIZATION_ENDPOINT, token_endpoint: TOKEN_ENDPOINT },
      env.ANILIST_CLIENT_ID,
      env.ANILIST_CLIENT_SECRET,
      oidc.ClientSecretPost(env.ANILIST_CLIENT_SECRET),
    );
    config[oidc.customFetch] = tools.fetch;

    /** The Viewer for a token: the account, or `undefined` when AniList refuses the token. */
    async function viewer(accessToken: string): Promise<{ id: number; name: string } | undefined> {
      const response = await tools.fetch(GRAPHQL_ENDPOINT, {
        method: 'POST',
        headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ query: VIEWER_QUERY }),
      });
      // AniList answers a bad or revoked token with 400/401 and `errors: [{ message: "Invalid token" }]`.
      if (response.status === 400 || response.status === 401) return undefined;
      if (!response.ok) throw new LinkgateError('provider_unavailable', `AniList answered ${response.status}`, { provider });
      const body = v.safeParse(ViewerAnswer, await response.json().catch(() => undefined));
      if (!body.success) throw new LinkgateError('provider_response_invalid', 'AniList sent an unexpected Viewer', { provider });
      return body.output.data.Viewer;
    }

    return {
      // The GraphQL API (https://docs.anilist.co/guide/graphql/), for the proxy: `ANILIST_PROXY_ALLOW="POST /"`.
      api: providerApi(new URL(`${GRAPHQL_ENDPOINT}/`), tools, provider),
      // AniList has no scopes: a token acts as the user (https://docs.anilist.co/guide/auth/).
      access: ['see your AniList profile', 'read and change your anime and manga lists, favourites and settings as you'],
      async begin(flow) {
        const redirectUri = env.ANILIST_REDIRECT_URI ?? flow.redirectUri;
        flow.data = { redirectUri };
        const url = oidc.buildAuthorizationUrl(config, { redirect_uri: redirectUri, response_type: 'code', state: flow.state });
        return { kind: 'redirect', url };
      },

      async advance(flow, input) {
        if (input.kind !== 'callback') throw new LinkgateError('bad_request', 'AniList signs in by redirect', { provider });
        const { redirectUri } = v.parse(v.object({ redirectUri: v.string() }), flow.data);
        try {
          const tokens = await oidc.authorizationCodeGrant(config, callbackUrl(redirectUri, input.params), { expectedState: flow.state });
          const account = await viewer(tokens.access_token);
          if (!account) throw new LinkgateError('provider_response_invalid', 'AniList refused the token it just issued', { provider });
          // AniList also sends a refresh token that its token endpoint does not honour; it is not kept.
          const { refreshToken: _unused, ...credentials } = tokenCredentials(tokens, tools.clock.now());
          return { kind: 'done', account: { id: String(account.id), name: account.name }, credentials };
        } catch (error) {
          throw oauthError(error, provider);
        }
      },

      async verify(credentials) {
        return credentials.accessToken !== undefined && (await viewer(credentials.accessToken)) !== undefined;
      },
    };
  },
});
