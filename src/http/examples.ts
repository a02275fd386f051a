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
  /** Request headers the example sends (besides its credentials and content-type). */
  requestHeaders?: Record<string, string>;
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

const TENANT = '/api/admin/v1/tenants/quiz-bot';
const TENANT_DETAIL: Json = {
  id: 'quiz-bot',
  name: 'Quiz Bot',
  createdAt: '2026-12-03T12:00:00.000Z',
  apiRateLimit: null,
  brand: null,
  webhookUrl: 'https://quiz.example/hooks/linkgate',
  userProvider: null,
  apiKeys: 1,
  contextSecrets: 1,
};
const SIGNING_KEY = { kid: 'Pj7Hs3Ku9Gd1Fa5E', alg: 'ES256', state: 'signing', createdAt: '2026-11-01T09:00:00.000Z', signsFrom: '2026-11-01T09:00:00.000Z', retiredAt: null, expiresAt: null };

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
  // The operator API (Authorization: Bearer $LINKGATE_ADMIN_KEY).
  'get /api/admin/v1/audit': {
    path: '/api/admin/v1/audit?tenant=quiz-bot&limit=2',
    status: 200,
    answer: {
      events: [
        {
          id: '311',
          at: '2026-12-03T12:01:00.000Z',
          tenant: 'quiz-bot',
          actor: 'operator-key:3f9a0c1b2d4e5f60',
          action: 'api_key.create',
          target: 'api_key:key_Xv2pQm8rT4sLk9aB',
          outcome: 'ok',
          code: null,
          clientAddress: '203.0.113.7',
          userAgent: 'curl/8.5.0',
          detail: { name: 'quiz bot' },
        },
        {
          id: '310',
          at: '2026-12-03T12:00:00.000Z',
          tenant: 'quiz-bot',
          actor: 'operator-key:3f9a0c1b2d4e5f60',
          action: 'tenant.create',
          target: 'tenant:quiz-bot',
          outcome: 'ok',
          code: null,
          clientAddress: '203.0.113.7',
          userAgent: 'curl/8.5.0',
          detail: { name: 'Quiz Bot' },
        },
      ],
      nextCursor: '310',
    },
  },
  'get /api/admin/v1/audit.csv': {
    path: '/api/admin/v1/audit.csv?tenant=quiz-bot&since=2026-12-01T00:00:00Z',
    status: 200,
    headers: { 'content-type': 'text/csv; charset=utf-8' },
    answer:
      'id,at,tenant,actor,action,target,outcome,code,clientAddress,userAgent,detail\r\n' +
      '310,2026-12-03T12:00:00.000Z,quiz-bot,operator-key:3f9a0c1b2d4e5f60,tenant.create,tenant:quiz-bot,ok,,203.0.113.7,curl/8.5.0,"{""name"":""Quiz Bot""}"\r\n',
  },
  'post /api/admin/v1/console/invites': {
    path: '/api/admin/v1/console/invites',
    status: 201,
    answer: { id: 'inv_3f9a0c1b2d4e5f60', url: 'https://link.example/admin/invite/Jx3dW9qL0vYp7sKc2uR8aT5mN1bE4hZ6', expiresAt: '2026-12-03T13:00:00.000Z' },
  },
  'get /api/admin/v1/console/invites': {
    path: '/api/admin/v1/console/invites',
    status: 200,
    answer: { invites: [{ id: 'inv_3f9a0c1b2d4e5f60', createdAt: '2026-12-03T12:00:00.000Z', expiresAt: '2026-12-03T13:00:00.000Z' }] },
  },
  'delete /api/admin/v1/console/invites/:id': { path: '/api/admin/v1/console/invites/inv_3f9a0c1b2d4e5f60', status: 204 },
  'post /api/admin/v1/tenants': { path: '/api/admin/v1/tenants', body: { id: 'quiz-bot', name: 'Quiz Bot' }, status: 201, answer: { id: 'quiz-bot', name: 'Quiz Bot', createdAt: '2026-12-03T12:00:00.000Z' } },
  'get /api/admin/v1/tenants': {
    path: '/api/admin/v1/tenants',
    status: 200,
    answer: {
      tenants: [
        { id: 'default', name: 'Default', createdAt: '2026-11-01T09:00:00.000Z' },
        { id: 'quiz-bot', name: 'Quiz Bot', createdAt: '2026-12-03T12:00:00.000Z' },
      ],
    },
  },
  'get /api/admin/v1/tenants/:tenant': { path: TENANT, status: 200, answer: TENANT_DETAIL },
  'patch /api/admin/v1/tenants/:tenant': {
    path: TENANT,
    body: { apiRateLimit: { limit: 600, windowSeconds: 60 }, brand: { name: 'Quiz Bot', color: '#5865f2' } },
    status: 200,
    answer: { ...TENANT_DETAIL, apiRateLimit: { limit: 600, windowSeconds: 60 }, brand: { name: 'Quiz Bot', color: '#5865f2' } },
  },
  'delete /api/admin/v1/tenants/:tenant': { path: TENANT, status: 204, headers: { 'Linkgate-Unlinked': '42' } },
  'post /api/admin/v1/tenants/:tenant/api-keys': {
    path: `${TENANT}/api-keys`,
    body: { name: 'quiz bot' },
    status: 201,
    answer: { id: 'key_Xv2pQm8rT4sLk9aB', name: 'quiz bot', key: 'lg_q8Zt3vR5xW1yB7nM2kP9sD4fG6hJ0lA3cE5uI8oY1tR', createdAt: '2026-12-03T12:01:00.000Z' },
  },
  'get /api/admin/v1/tenants/:tenant/api-keys': {
    path: `${TENANT}/api-keys`,
    status: 200,
    answer: { apiKeys: [{ id: 'key_Xv2pQm8rT4sLk9aB', name: 'quiz bot', createdAt: '2026-12-03T12:01:00.000Z', lastUsedAt: '2026-12-03T12:30:00.000Z' }] },
  },
  'delete /api/admin/v1/tenants/:tenant/api-keys/:id': { path: `${TENANT}/api-keys/key_Xv2pQm8rT4sLk9aB`, status: 204 },
  'post /api/admin/v1/tenants/:tenant/context-secrets': {
    path: `${TENANT}/context-secrets`,
    status: 201,
    answer: { id: 'cs_N3bV7cX1zL5kJ9hG', secret: 'p0O9i8U7y6T5r4E3w2Q1a2S3d4F5g6H7j8K9l0Z1x2C', createdAt: '2026-12-03T12:02:00.000Z' },
  },
  'get /api/admin/v1/tenants/:tenant/context-secrets': { path: `${TENANT}/context-secrets`, status: 200, answer: { contextSecrets: [{ id: 'cs_N3bV7cX1zL5kJ9hG', createdAt: '2026-12-03T12:02:00.000Z' }] } },
  'delete /api/admin/v1/tenants/:tenant/context-secrets/:id': { path: `${TENANT}/context-secrets/cs_N3bV7cX1zL5kJ9hG`, status: 204 },
  'get /api/admin/v1/tenants/:tenant/providers': {
    path: `${TENANT}/providers`,
    status: 200,
    answer: {
      providers: [
        { id: 'anilist', displayName: 'AniList', configured: false, missing: 'ANILIST_CLIENT_ID, ANILIST_CLIENT_SECRET' },
        { id: 'discord', displayName: 'Discord', configured: true },
      ],
    },
  },
  'put /api/admin/v1/tenants/:tenant/providers/:provider': {
    path: `${TENANT}/providers/discord`,
    body: { env: { DISCORD_CLIENT_ID: '1100000000000000001', DISCORD_CLIENT_SECRET: 'the app’s client secret' } },
    status: 200,
    answer: { id: 'discord', displayName: 'Discord', configured: true, version: 1, env: { DISCORD_CLIENT_ID: '1100000000000000001', DISCORD_CLIENT_SECRET: '********' } },
  },
  'delete /api/admin/v1/tenants/:tenant/providers/:provider': { path: `${TENANT}/providers/discord`, status: 204 },
  'post /api/admin/v1/tenants/:tenant/apps': {
    path: `${TENANT}/apps`,
    body: { name: 'Quiz dashboard', redirectUris: ['https://quiz.example/callback'], type: 'confidential' },
    status: 201,
    answer: { clientId: 'app_R2d2C3poB8bK1wX9yZ4q7m', clientSecret: 'Hk3Jd9Lm2Nq8Rt5Vw1Xz7Ba4Ce6Gf0Ij3Ko9Pu2Sy5W' },
  },
  'get /api/admin/v1/tenants/:tenant/apps': {
    path: `${TENANT}/apps`,
    status: 200,
    answer: {
      apps: [
        {
          clientId: 'app_R2d2C3poB8bK1wX9yZ4q7m',
          name: 'Quiz dashboard',
          type: 'confidential',
          redirectUris: ['https://quiz.example/callback'],
          postLogoutRedirectUris: [],
          providers: null,
          subject: 'user',
          firstParty: true,
          legacyJwt: false,
          deviceFlow: false,
          createdAt: '2026-12-03T12:03:00.000Z',
        },
      ],
    },
  },
  'delete /api/admin/v1/tenants/:tenant/apps/:clientId': { path: `${TENANT}/apps/app_R2d2C3poB8bK1wX9yZ4q7m`, status: 204 },
  'get /api/admin/v1/tenants/:tenant/signing-keys': {
    path: `${TENANT}/signing-keys`,
    status: 200,
    answer: { signingKeys: [SIGNING_KEY, { ...SIGNING_KEY, kid: 'Wq4Zr8Tx2Vb6Nm1L', state: 'next', createdAt: '2026-12-03T12:10:00.000Z', signsFrom: '2026-12-04T12:10:00.000Z' }] },
  },
  'post /api/admin/v1/tenants/:tenant/signing-keys': {
    path: `${TENANT}/signing-keys`,
    body: { publishSeconds: 86400 },
    status: 201,
    answer: { ...SIGNING_KEY, kid: 'Wq4Zr8Tx2Vb6Nm1L', state: 'next', createdAt: '2026-12-03T12:10:00.000Z', signsFrom: '2026-12-04T12:10:00.000Z' },
  },
  'put /api/admin/v1/tenants/:tenant/webhook': {
    path: `${TENANT}/webhook`,
    body: { url: 'https://quiz.example/hooks/linkgate', secret: 'whsec_a-long-random-value-0123456789abcdef' },
    status: 200,
    answer: { url: 'https://quiz.example/hooks/linkgate' },
  },
  'delete /api/admin/v1/tenants/:tenant/webhook': { path: `${TENANT}/webhook`, status: 204 },
  'delete /api/admin/v1/tenants/:tenant/users/:userId/links/:provider': { path: `${TENANT}/users/${USER}/links/anilist`, status: 200, answer: { deleted: LINK, revocation: 'not_supported' } },
  'post /api/admin/v1/tenants/:tenant/links:import': {
    path: `${TENANT}/links:import`,
    body: { userId: USER, provider: 'discord', externalId: USER, externalName: 'kuromi', credentials: { accessToken: 'MTEwMDAwMDAw…', refreshToken: 'dGhlIHJlZnJlc2g…', scopes: ['identify'] } },
    status: 200,
    answer: { results: [{ line: 1, status: 'created' }], counts: { created: 1, updated: 0, unchanged: 0, invalid: 0 } },
  },
  'get /api/admin/v1/tenants/:tenant/links:export': {
    path: `${TENANT}/links:export`,
    requestHeaders: { 'Linkgate-Passphrase': 'correct horse battery staple' },
    status: 200,
    headers: { 'content-type': 'application/x-ndjson; charset=utf-8' },
    answer:
      '{"format":"linkgate-links-v1","kdf":"scrypt","salt":"q1W2e3R4t5Y6u7I8o9P0aQ"}\n' +
      `{"userId":"${USER}","provider":"discord","externalId":"${USER}","externalName":"kuromi","status":"active","credentials":"v1.c2FsdHlpdg.Q2lwaGVydGV4dCBhbmQgdGFn"}\n`,
  },
  // The web-session API, from the app's pages in the person's browser.
  'get /api/auth/:provider/start': {
    path: '/api/auth/discord/start?postLoginRedirect=https%3A%2F%2Fquiz.example%2Fdashboard&tenantId=quiz-bot',
    status: 200,
    answer: {
      authorizationUrl: 'https://discord.com/oauth2/authorize?response_type=code&client_id=1100000000000000001&redirect_uri=https%3A%2F%2Flink.example%2Foauth%2Fdiscord%2Fcallback&scope=identify&state=Zk3…',
      state: 'Zk3mN8qR2tV5xB1cD4fG7hJ0kL3pS6wY9aE2iO5uT8r',
    },
  },
  'get /api/auth/session': {
    path: '/api/auth/session',
    status: 200,
    answer: {
      tenant: 'quiz-bot',
      user: { id: USER },
      identity: { provider: 'discord', externalId: USER, name: 'kuromi' },
      createdAt: '2026-12-03T12:05:00.000Z',
      expiresAt: '2026-12-03T20:05:00.000Z',
    },
  },
  'post /api/auth/logout': { path: '/api/auth/logout', status: 204 },
  'get /healthz': { path: '/healthz', status: 200, answer: { status: 'healthy' } },
  'get /readyz': { path: '/readyz', status: 200, answer: { status: 'ready', database: 'postgres' } },
};
