import fc from 'fast-check';
import { count } from '../../src/db/orm.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { flows, links, usedContexts } from '../../src/db/schema.ts';
import { verifyLinkContext } from '../../src/core/link-context.ts';
import { isLinkgateError } from '../../src/core/errors.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, TEST_SECRETS, type TestGateway } from '../helpers/gateway.ts';

let database: Database;
let gateway: TestGateway;

beforeAll(async () => {
  database = await createTestDatabase();
  gateway = await createTestGateway(database, {
    env: { OIDC_PROVIDERS: 'corp', CORP_ISSUER: 'https://idp.example', CORP_CLIENT_ID: 'c', LINKGATE_RETURN_TO_ORIGINS: 'https://bot.example' },
  });
});
afterAll(() => database.close());

async function stored() {
  const [f] = await database.db.select({ n: count() }).from(flows);
  const [l] = await database.db.select({ n: count() }).from(links);
  const [u] = await database.db.select({ n: count() }).from(usedContexts);
  return { flows: f!.n, links: l!.n, used: u!.n };
}

const RUNS = { numRuns: 150 };
const text = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom('..', '%2F', '%00', '\r\n', 'x'.repeat(5000), '{}', 'null'));

describe('fuzzing the inputs from outside', () => {
  it('the context verifier only ever refuses with one of our 4xx errors', async () => {
    const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
    const token = fc.oneof(
      text,
      fc.tuple(fc.jsonValue(), fc.jsonValue(), fc.string()).map(([h, p, s]) => `${b64(h)}.${b64(p)}.${b64(s)}`),
      fc.record({ alg: fc.constantFrom('HS256', 'none', 'RS256', 'HS512'), typ: fc.constant('JWT') }).chain((header) =>
        fc.dictionary(fc.constantFrom('sub', 'provider', 'jti', 'iat', 'exp', 'tenant', 'return_to'), fc.jsonValue()).map((payload) => `${b64(header)}.${b64(payload)}.`),
      ),
    );
    await fc.assert(
      fc.asyncProperty(token, async (candidate) => {
        try {
          await verifyLinkContext(candidate, 'corp', { secret: TEST_SECRETS.OAUTH_CONTEXT_SIGNING_SECRET, ttlSeconds: 300, returnToOrigins: [], now: Date.now });
          return false; // nothing unsigned can pass
        } catch (error) {
          return isLinkgateError(error) && error.status >= 400 && error.status < 500;
        }
      }),
      RUNS,
    );
  });

  it('start and callback never answer 5xx and never store a row for made-up input', async () => {
    const before = await stored();
    const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('corp', 'nope', 'CORP', 'a'.repeat(40)), fc.dictionary(fc.constantFrom('context', 'state', 'code', 'iss', 'error', 'x'), text), async (provider, query) => {
        const search = new URLSearchParams(query).toString();
        const path = `/oauth/${encodeURIComponent(provider)}/${query.context !== undefined ? 'start' : 'callback'}?${search}`;
        const response = await browser.get(path);
        return response.status >= 400 && response.status < 500 && !/\n\s+at \S+ \(/.test(await response.text());
      }),
      RUNS,
    );
    await fc.assert(
      fc.asyncProperty(fc.dictionary(fc.constantFrom('state', 'username', 'password', 'linkgate_action', 'server'), text), async (form) => {
        const response = await browser.post('/oauth/corp/callback', form);
        return response.status >= 400 && response.status < 500;
      }),
      RUNS,
    );
    // The confirmation form, posted with made-up fields.
    await fc.assert(
      fc.asyncProperty(fc.dictionary(fc.constantFrom('context', 'csrf', 'state', 'x'), text), async (form) => {
        const response = await browser.post('/oauth/corp/start', form);
        return response.status >= 400 && response.status < 500 && !/\n\s+at \S+ \(/.test(await response.text());
      }),
      RUNS,
    );
    expect(await stored()).toEqual(before);
  });

  it('every API body and path answers 4xx with an error code for made-up input, never 5xx, never a row', async () => {
    const before = await stored();
    const body = fc.oneof(fc.jsonValue().map((j) => JSON.stringify(j)), text, fc.record({ userId: fc.oneof(text, fc.integer()), provider: text, returnTo: text }).map((r) => JSON.stringify(r)));
    await fc.assert(
      fc.asyncProperty(body, async (raw) => {
        const response = await gateway.api('/link-urls', { method: 'POST', headers: { 'content-type': 'application/json' }, body: raw });
        if (response.status === 201) return false;
        const answer = (await response.json()) as { error?: { code?: unknown } };
        return response.status >= 400 && response.status < 500 && typeof answer.error?.code === 'string';
      }),
      RUNS,
    );
    // The other API body: the XRPC proxy's JSON (and its query), for a user with no link.
    await fc.assert(
      fc.asyncProperty(body, fc.dictionary(text, text, { maxKeys: 5 }), async (raw, query) => {
        const path = `/users/80351110224678912/links/corp/xrpc/app.bsky.actor.getProfile?${new URLSearchParams(query)}`;
        const [posted, got] = [
          await gateway.api(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: raw }),
          await gateway.api(path),
        ];
        for (const response of [posted, got]) {
          const answer = (await response.json()) as { error?: { code?: unknown } };
          if (response.status < 400 || response.status >= 500 || typeof answer.error?.code !== 'string') return false;
        }
        return true;
      }),
      { numRuns: 80 },
    );
    await fc.assert(
      fc.asyncProperty(text, fc.constantFrom('', '/corp', '/corp/token', '/corp/wait?timeoutSeconds=1'), async (userId, rest) => {
        const method = rest.endsWith('token') ? 'POST' : 'GET';
        const response = await gateway.api(`/users/${encodeURIComponent(userId)}/links${rest}`, { method });
        return response.status < 500;
      }),
      { numRuns: 60 },
    );
    expect(await stored()).toEqual(before);
  });
});
