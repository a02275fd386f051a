/**
 * The provider the benchmark links with: a plain OAuth 2 code flow against
 * the orchestrator's fake server at BENCH_OAUTH_URL, with refresh.
 */
import * as v from 'valibot';
import { defineProvider, LinkgateError, type ProviderInstance } from 'linkgate/provider';

const Tokens = v.object({ access_token: v.string(), refresh_token: v.string(), expires_in: v.number(), user: v.string() });

export default defineProvider({
  id: 'bench',
  displayName: 'Bench',
  env: v.object({ BENCH_OAUTH_URL: v.pipe(v.string(), v.url()) }),
  create(env, tools): ProviderInstance {
    async function token(body: Record<string, string>) {
      const response = await tools.fetch(`${env.BENCH_OAUTH_URL}/token`, { method: 'POST', body: new URLSearchParams(body) });
      if (response.status === 400) throw new LinkgateError('needs_reauth', 'refused', { provider: 'bench' });
      const parsed = v.safeParse(Tokens, await response.json());
      if (!parsed.success) throw new LinkgateError('provider_response_invalid', 'bad token answer', { provider: 'bench' });
      return parsed.output;
    }
    const credentials = (t: v.InferOutput<typeof Tokens>) => ({
      accessToken: t.access_token,
      refreshToken: t.refresh_token,
      tokenType: 'Bearer',
      expiresAt: tools.clock.now() + t.expires_in * 1000,
    });
    return {
      async begin(flow) {
        const url = new URL(`${env.BENCH_OAUTH_URL}/authorize`);
        url.search = new URLSearchParams({ state: flow.state, redirect_uri: flow.redirectUri }).toString();
        return { kind: 'redirect', url };
      },
      async advance(_flow, input) {
        if (input.kind !== 'callback') throw new LinkgateError('bad_request', 'expected a redirect', { provider: 'bench' });
        const t = await token({ grant_type: 'authorization_code', code: input.params.get('code') ?? '' });
        return { kind: 'done', account: { id: t.user, name: t.user }, credentials: credentials(t) };
      },
      async refresh(stored) {
        return credentials(await token({ grant_type: 'refresh_token', refresh_token: stored.refreshToken ?? '' }));
      },
    };
  },
});
