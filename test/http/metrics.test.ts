/**
 * /metrics: off unless enabled, behind the API key, Prometheus text with
 * flows, refreshes, webhook deliveries and request latency by route pattern.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/core/metrics.ts';
import { createWebhookWorker } from '../../src/core/webhooks.ts';
import type { Database } from '../../src/db/client.ts';
import { createLogger } from '../../src/observability.ts';
import { TestBrowser } from '../helpers/browser.ts';
import { mintContext } from '../helpers/context.ts';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway } from '../helpers/gateway.ts';

const API_FIXTURES = fileURLToPath(new URL('../fixtures/api-providers', import.meta.url));
const SECRET = 'whsec_metrics_0123456789abcdefghijklmnop';

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});

describe('/metrics', () => {
  it('does not exist unless LINKGATE_METRICS is on', async () => {
    const gateway = await createTestGateway(database, { providersDir: API_FIXTURES });
    expect((await gateway.app.request('/metrics', { headers: { authorization: `Bearer ${gateway.config.apiKeys[0]}` } })).status).toBe(404);
  });

  it('counts flows, refreshes, webhook deliveries and requests, by route pattern and never by user', async () => {
    const receiver = createServer((_req, res) => res.writeHead(204).end());
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    const metrics = createMetrics();
    const gateway = await createTestGateway(database, {
      providersDir: API_FIXTURES,
      env: { LINKGATE_METRICS: 'true', LINKGATE_WEBHOOK_URL: hookUrl, LINKGATE_WEBHOOK_SECRET: SECRET },
      metrics,
    });
    try {
      const link = async (userId: string, mode: string) => {
        const browser = new TestBrowser((path, init) => gateway.app.request(path, init));
        const form = await browser.openLink(`/oauth/token/start?context=${await mintContext('token', userId)}`);
        const state = /name="state" value="([^"]+)"/.exec(await form.text())![1]!;
        return { browser, state, done: () => browser.post('/oauth/token/callback', { state, mode }) };
      };
      await (await link('80351110224678912', 'ok')).done();
      await (await link('u-revoked-metrics', 'revoked')).done();
      // A provider redirect this provider does not expect ends the flow: a failure with its code.
      const failing = await link('u-failing', 'x');
      expect((await failing.browser.get(`/oauth/token/callback?state=${encodeURIComponent(failing.state)}&code=abc`)).status).toBe(400);
      expect((await gateway.api('/users/80351110224678912/links/token/token', { method: 'POST' })).status).toBe(200);
      expect((await gateway.api('/users/u-revoked-metrics/links/token/token', { method: 'POST' })).status).toBe(409);
      await createWebhookWorker({ database, url: new URL(hookUrl), secret: SECRET, maxAttempts: 3, retryBaseMs: 1000, logger: createLogger('silent'), metrics }).runOnce();

      expect((await gateway.app.request('/metrics')).status).toBe(401);
      const response = await gateway.app.request('/metrics', { headers: { authorization: `Bearer ${gateway.config.apiKeys[0]}` } });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const text = await response.text();
      expect(text).toContain('linkgate_flows_started_total{provider="token",tenant="default"} 3');
      expect(text).toContain('linkgate_flows_completed_total{provider="token",tenant="default"} 2');
      expect(text).toContain('linkgate_flows_failed_total{provider="token",tenant="default",reason="bad_request"} 1');
      expect(text).toContain('linkgate_token_refreshes_total{provider="token",tenant="default",outcome="refreshed"} 1');
      expect(text).toContain('linkgate_token_refreshes_total{provider="token",tenant="default",outcome="needs_reauth"} 1');
      // Two links created, one needs_reauth: three events.
      expect(text).toContain('linkgate_webhook_deliveries_total{tenant="default",outcome="delivered"} 3');
      expect(text).toContain('linkgate_http_request_duration_seconds_count{method="POST",route="/api/v1/users/:userId/links/:provider/token",status="200"} 1');
      expect(text).toMatch(/linkgate_http_request_duration_seconds_bucket\{method="POST",route="\/api\/v1\/users\/:userId\/links\/:provider\/token",status="409",le="\+Inf"\} 1/);
      expect(text).not.toContain('80351110224678912');
      expect(text).not.toContain('u-revoked-metrics');
      // Every sample line is `name{labels} number`.
      for (const line of text.trim().split('\n').filter((l) => !l.startsWith('#'))) expect(line).toMatch(/^[a-z_]+(\{[^}]*\})? [0-9.e+-]+$/);
    } finally {
      await new Promise((resolve) => receiver.close(resolve));
    }
  });
});
