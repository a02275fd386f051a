/**
 * One example request and answer per API route, for the `/docs` page (as
 * curl lines). test/http/docs.test.ts checks that every route has one, that
 * its status is one the route documents, and that its answer is valid for
 * that status's schema, so the examples cannot drift from the API.
 */
import type { Json } from '../provider.ts';

export interface Example {
  /** A concrete path (and query) of the route. */
  path: string;
  body?: Json;
  status: number;
  /** The JSON answer, when there is one. */
  answer?: Json;
  /** Response headers worth showing. */
  headers?: Record<string, string>;
}

const USER = '80351110224678912';
const LINK: Json = {
  userId: USER,
  provider: 'anilist',
  externalId: '5001',
  externalName: 'Kuromi',
  status: 'active',
  scopes: [],
  linkedAt: '2026-12-03T12:00:00.000Z',
  updatedAt: '2026-12-03T12:00:00.000Z',
  expiresAt: '2027-12-03T12:00:00.000Z',
};
const LINK_URL = 'https://link.example/oauth/anilist/start?context=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI4MDM1MTExMDIyNDY3ODkxMiJ9.c2lnbmF0dXJl';

/** By `<method> <route pattern>`, as in `operations`. */
export const EXAMPLES: Record<string, Example> = {
  'get /api/v1/providers': {
    path: '/api/v1/providers',
    status: 200,
    answer: { providers: [{ id: 'anilist', displayName: 'AniList', configured: true }, { id: 'discord', displayName: 'Discord', configured: false }] },
  },
  'post /api/v1/link-urls': {
    path: '/api/v1/link-urls',
    body: { userId: USER, provider: 'anilist', userName: 'Kuromi' },
    status: 201,
    answer: { url: LINK_URL, expiresAt: '2026-12-03T12:05:00.000Z' },
  },
  'get /api/v1/users/:userId/links': { path: `/api/v1/users/${USER}/links`, status: 200, answer: { links: [LINK] } },
  'get /api/v1/users/:userId/links/:provider': {
    path: `/api/v1/users/${USER}/links/anilist`,
    status: 404,
    answer: { error: { code: 'not_linked', message: 'this user has not linked AniList' }, linkUrl: LINK_URL },
  },
  'delete /api/v1/users/:userId/links/:provider': { path: `/api/v1/users/${USER}/links/anilist`, status: 204, headers: { 'Linkgate-Revocation': 'not_supported' } },
  'post /api/v1/users/:userId/links/:provider/token': {
    path: `/api/v1/users/${USER}/links/anilist/token`,
    status: 200,
    answer: { accessToken: 'eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9…', tokenType: 'Bearer', expiresAt: '2027-12-03T12:00:00.000Z' },
  },
  'get /api/v1/users/:userId/links/:provider/events': {
    path: `/api/v1/users/${USER}/links/anilist/events?limit=3`,
    status: 200,
    answer: {
      events: [
        { id: '1042', kind: 'token_served', at: '2026-12-03T13:00:00.000Z', count: 27, detail: null },
        { id: '1017', kind: 'refreshed', at: '2026-12-03T12:58:41.000Z', count: 1, detail: { expiresAt: '2026-12-10T12:58:41.000Z', scopes: [] } },
        { id: '998', kind: 'linked', at: '2026-12-03T12:00:00.000Z', count: 1, detail: { externalId: '5001', externalName: 'Kuromi', scopes: [], via: 'flow' } },
      ],
      nextCursor: null,
    },
  },
  'get /api/v1/users/:userId/links/:provider/wait': {
    path: `/api/v1/users/${USER}/links/anilist/wait?timeoutSeconds=30&since=2026-12-03T12:00:00Z`,
    status: 200,
    answer: LINK,
  },
  'get /api/v1/users/:userId/links/:provider/xrpc/:nsid': {
    path: `/api/v1/users/${USER}/links/atproto/xrpc/app.bsky.actor.getProfile?actor=did:plc:ewvi7nxzyoun6zhxrhs64oiz`,
    status: 200,
    answer: { did: 'did:plc:ewvi7nxzyoun6zhxrhs64oiz', handle: 'kuromi.bsky.social', displayName: 'Kuromi' },
  },
  'post /api/v1/users/:userId/links/:provider/xrpc/:nsid': {
    path: `/api/v1/users/${USER}/links/atproto/xrpc/com.atproto.repo.createRecord`,
    body: { repo: 'did:plc:ewvi7nxzyoun6zhxrhs64oiz', collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 'hi', createdAt: '2026-12-03T12:00:00Z' } },
    status: 200,
    answer: { uri: 'at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.post/3lbxyz', cid: 'bafyreib2rxk3rh6kzwq' },
  },
  'get /api/v1/users/:userId/links/:provider/proxy/*': {
    path: `/api/v1/users/${USER}/links/discord/proxy/users/@me/guilds`,
    status: 200,
    answer: [{ id: '613425648685547541', name: 'Annie Mei Support', icon: null, owner: false, permissions: '104320577', features: [] }],
  },
  'post /api/v1/users/:userId/links/:provider/proxy/*': {
    path: `/api/v1/users/${USER}/links/anilist/proxy/`,
    body: { query: 'query { Viewer { id name } }' },
    status: 200,
    answer: { data: { Viewer: { id: 5001, name: 'Kuromi' } } },
  },
  'put /api/v1/users/:userId/links/:provider/proxy/*': {
    path: `/api/v1/users/${USER}/links/discord/proxy/users/@me/applications/123456789012345678/role-connection`,
    body: { platform_name: 'AniList', metadata: { anime_watched: 120 } },
    status: 403,
    answer: { error: { code: 'proxy_not_allowed', message: 'this call is not in DISCORD_PROXY_ALLOW' } },
  },
  'patch /api/v1/users/:userId/links/:provider/proxy/*': {
    path: `/api/v1/users/${USER}/links/corp/proxy/me`,
    body: { nickname: 'Kuromi' },
    status: 404,
    answer: { error: { code: 'not_linked', message: 'this user has not linked Corp SSO' }, linkUrl: LINK_URL.replace('anilist', 'corp') },
  },
  'delete /api/v1/users/:userId/links/:provider/proxy/*': {
    path: `/api/v1/users/${USER}/links/discord/proxy/users/@me/guilds/613425648685547541`,
    status: 403,
    answer: { error: { code: 'proxy_not_allowed', message: 'this call is not in DISCORD_PROXY_ALLOW' } },
  },
  'post /api/v1/links:import': {
    path: '/api/v1/links:import',
    body: { userId: USER, provider: 'anilist', externalId: '5001', externalName: 'Kuromi', credentials: { accessToken: 'eyJ0eXAiOiJKV1Qi…', expiresAt: '2027-12-03T12:00:00.000Z' } },
    status: 200,
    answer: { results: [{ line: 1, status: 'created' }], counts: { created: 1, updated: 0, unchanged: 0, invalid: 0 } },
  },
  'get /api/v1/webhooks/deliveries': {
    path: '/api/v1/webhooks/deliveries?status=dead&limit=1',
    status: 200,
    answer: {
      deliveries: [
        {
          id: 'evt_0b6a3c4e-5d8f-4a7b-9c1d-2e3f4a5b6c7d',
          type: 'link.created',
          status: 'dead',
          attempts: 10,
          lastStatus: 503,
          lastError: null,
          createdAt: '2026-12-03T12:00:00.000Z',
          nextAttemptAt: null,
          deliveredAt: null,
          event: { id: 'evt_0b6a3c4e-5d8f-4a7b-9c1d-2e3f4a5b6c7d', type: 'link.created', createdAt: '2026-12-03T12:00:00.000Z', link: LINK },
        },
      ],
    },
  },
  'post /api/v1/webhooks/deliveries/:id/retry': {
    path: '/api/v1/webhooks/deliveries/evt_0b6a3c4e-5d8f-4a7b-9c1d-2e3f4a5b6c7d/retry',
    status: 202,
    answer: {
      id: 'evt_0b6a3c4e-5d8f-4a7b-9c1d-2e3f4a5b6c7d',
      type: 'link.created',
      status: 'pending',
      attempts: 0,
      lastStatus: 503,
      lastError: null,
      createdAt: '2026-12-03T12:00:00.000Z',
      nextAttemptAt: '2026-12-03T13:00:00.000Z',
      deliveredAt: null,
      event: { id: 'evt_0b6a3c4e-5d8f-4a7b-9c1d-2e3f4a5b6c7d', type: 'link.created', createdAt: '2026-12-03T12:00:00.000Z', link: LINK },
    },
  },
  'get /healthz': { path: '/healthz', status: 200, answer: { status: 'healthy' } },
  'get /readyz': { path: '/readyz', status: 200, answer: { status: 'ready', database: 'postgres' } },
};
