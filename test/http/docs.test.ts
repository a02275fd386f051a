/**
 * The pages an operator or a bot author opens first: `/docs` (by task, with
 * an example per route that matches the API), `/` and the favicon.
 */
import * as v from 'valibot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { DOCUMENTED_ROUTES } from '../../src/http/docs.tsx';
import { EXAMPLES } from '../../src/http/examples.ts';
import { operations } from '../../src/http/openapi.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway, TEST_SECRETS, type TestGateway } from '../helpers/gateway.ts';

let database: Database;
let gateway: TestGateway;

beforeAll(async () => {
  database = await createTestDatabase();
  gateway = await createTestGateway(database, { env: { ANILIST_CLIENT_ID: '1', ANILIST_CLIENT_SECRET: 'x' } });
});
afterAll(() => database?.close());

const keyOf = (op: (typeof operations)[number]) => `${op.method} ${op.path}`;

describe('the examples of /docs', () => {
  it.each(operations.map((op) => [keyOf(op), op] as const))('%s has an example whose status it documents and whose answer its schema accepts', (_key, op) => {
    const example = EXAMPLES[keyOf(op)];
    expect(example).toBeDefined();
    const pattern = new RegExp(`^${op.path.replace(/\/:[A-Za-z]+/g, '/[^/?]+').replace(/\*$/, '[^?]*')}(\\?.*)?$`);
    expect(example!.path).toMatch(pattern);
    const response = op.responses[example!.status];
    expect(response, `status ${example!.status} is documented`).toBeDefined();
    if (response!.schema) {
      const parsed = v.safeParse(response!.schema, example!.answer);
      expect(parsed.issues?.map((i) => `${v.getDotPath(i)}: ${i.message}`) ?? []).toEqual([]);
    } else if (example!.status !== 200) {
      expect(example!.answer).toBeUndefined();
    }
    if (op.query && example!.path.includes('?')) {
      const query = Object.fromEntries(new URL(example!.path, 'http://x').searchParams);
      expect(v.safeParse(op.query, query).success).toBe(true);
    }
    if (op.body) expect(v.safeParse(op.body, example!.body).success).toBe(true);
  });

  it('groups every route under one task, once', () => {
    expect([...DOCUMENTED_ROUTES].sort()).toEqual(operations.map(keyOf).sort());
  });
});

describe('GET /docs', () => {
  it('has a table of contents by task, an example curl line and answer per route, and no raw schema', async () => {
    const html = await (await gateway.app.request('/docs')).text();
    expect(html).toContain('<nav aria-label="Contents">');
    for (const title of ['Send a user a link', 'Check a link', 'Act with a link', 'Unlink', 'Webhooks', 'The gateway']) expect(html).toContain(`>${title}</a>`);
    expect(html.match(/<code>curl/g)).toHaveLength(operations.length);
    expect(html).toContain('-H &quot;Authorization: Bearer $LINKGATE_API_KEY&quot;');
    expect(html).toContain("curl -X POST -H &quot;Authorization: Bearer $LINKGATE_API_KEY&quot; \\\n  -H &#39;content-type: application/json&#39;");
    expect(html).toContain('http://127.0.0.1:8000/api/v1/users/80351110224678912/links/anilist');
    expect(html).toContain('how long to wait, 1 to 60 seconds; default 30');
    // The operator and web-session APIs, with their own credentials.
    for (const title of ['Operator: tenants', 'Operator: keys and secrets', 'Operator: links, and the audit trail', 'Sign people in to a same-site app']) expect(html).toContain(`>${title}</a>`);
    expect(html).toContain('curl -X POST -H &quot;Authorization: Bearer $LINKGATE_ADMIN_KEY&quot; \\\n  -H &#39;content-type: application/json&#39; -d &#39;{&quot;id&quot;:&quot;quiz-bot&quot;');
    expect(html).toContain('curl -b &quot;linkgate_session=$SESSION&quot; \\\n  &#39;http://127.0.0.1:8000/api/auth/session&#39;');
    expect(html).toContain('-H &#39;Linkgate-Passphrase: correct horse battery staple&#39;');
    expect(html).toContain('-H &#39;content-type: application/x-ndjson&#39;');
    expect(html).toContain('<code>linkgate-passphrase</code> <span class="muted">(a request header)</span>');
    // The schemas are in /openapi.json; the page shows examples, not JSON Schema.
    for (const keyword of ['properties', 'additionalProperties', '$schema', 'anyOf']) expect(html).not.toContain(`&quot;${keyword}&quot;`);
  });
});

describe('GET / and the favicon', () => {
  it('shows the operator, in development, what runs and what each provider still needs, with no secret', async () => {
    const response = await gateway.app.request('/');
    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).toContain('Linkgate is running');
    expect(html).toContain('<a class="button" href="/docs">');
    expect(html).toContain('<strong>AniList</strong> (<code>anilist</code>): ready');
    expect(html).toContain('<strong>Discord</strong> (<code>discord</code>): not configured; set DISCORD_CLIENT_ID, DISCORD_CLIENT_SECRET');
    expect(html).toContain('not configured; set either JELLYFIN_SERVER_URL, or JELLYFIN_ALLOW_USER_SERVER=true');
    for (const value of Object.values(TEST_SECRETS)) expect(html).not.toContain(value);
  });

  it('shows the public a neutral page in production', async () => {
    const production = await createTestGateway(database, {
      env: { NODE_ENV: 'production', PUBLIC_BASE_URL: 'https://link.example', LINKGATE_BRAND_NAME: 'Annie Mei', ANILIST_CLIENT_ID: '1', ANILIST_CLIENT_SECRET: 'x' },
    });
    const html = await (await production.app.request('/')).text();
    expect(html).toContain('Annie Mei uses this service to link your accounts');
    expect(html).not.toContain('anilist');
    expect(html).not.toContain('/docs');
  });

  it('serves a favicon', async () => {
    for (const path of ['/favicon.svg', '/favicon.ico']) {
      const response = await gateway.app.request(path);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('image/svg+xml');
      expect(await response.text()).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    }
  });
});
