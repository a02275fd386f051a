import { describe, expect, it } from 'vitest';
import { createTestDatabase } from '../helpers/database.ts';
import { createTestGateway } from '../helpers/gateway.ts';

describe('health', () => {
  it('answers /healthz always, and /readyz 200 while the database answers and 503 when it does not', async () => {
    const database = await createTestDatabase();
    const gateway = await createTestGateway(database);
    const ready = await gateway.app.request('/readyz');
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', database: database.kind });

    await database.close();
    const down = await gateway.app.request('/readyz');
    expect(down.status).toBe(503);
    expect(await down.json()).toEqual({ status: 'unavailable', database: database.kind });
    const alive = await gateway.app.request('/healthz');
    expect(alive.status).toBe(200);
    // The Annie Mei auth service's answer, which its monitors look for.
    expect(await alive.json()).toEqual({ status: 'healthy' });
    expect(gateway.logs.some((line) => line.includes('database not ready'))).toBe(true);
  });

  it('carries a request id on every log line of a request, and accepts a caller’s', async () => {
    const database = await createTestDatabase();
    const gateway = await createTestGateway(database);
    const response = await gateway.app.request('/healthz', { headers: { 'x-request-id': 'bot-req-42' } });
    expect(response.headers.get('x-request-id')).toBe('bot-req-42');
    expect(gateway.logs.some((line) => JSON.parse(line).reqId === 'bot-req-42')).toBe(true);
    // A forged id with a newline cannot start a log line of its own.
    await gateway.app.request('/healthz', { headers: { 'x-request-id': 'x\\n{"level":60,"msg":"forged"}' } });
    expect(gateway.logs.every((line) => !line.startsWith('{"level":60'))).toBe(true);
    await database.close();
  });
});

describe('when the database goes away', () => {
  it('answers 503 (JSON and page), logs no query parameters, and the process keeps serving', async () => {
    const database = await createTestDatabase();
    const gateway = await createTestGateway(database);
    await database.close();
    const api = await gateway.api('/users/80351110224678912/links');
    expect(api.status).toBe(503);
    expect(await api.json()).toEqual({ error: { code: 'database_unavailable', message: 'the database is not answering; try again shortly' } });
    const page = await gateway.app.request('/oauth/corp/callback?state=x&code=y');
    expect(page.status).toBe(503);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(await page.text()).toContain('Linkgate is briefly unavailable');
    // Drizzle's messages carry query parameters; none of them reaches the logs.
    expect(gateway.logs.join('\n')).not.toContain('80351110224678912');
    expect(gateway.logs.join('\n')).not.toContain('params:');
    expect((await gateway.app.request('/healthz')).status).toBe(200);
  });
});
