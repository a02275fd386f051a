import { Hono } from 'hono';
import { ping, type Database } from '../db/client.ts';
import { logCause } from '../db/errors.ts';
import type { AppEnv } from './middleware.ts';

export function healthRoutes(deps: { database: Database }) {
  const app = new Hono<AppEnv>();
  // Liveness: the process answers. `healthy` is what the Annie Mei auth service answered; its monitors look for it.
  app.get('/healthz', (c) => c.json({ status: 'healthy' }));
  // Readiness: the database answers too.
  app.get('/readyz', async (c) => {
    try {
      await ping(deps.database.db);
      return c.json({ status: 'ready', database: deps.database.kind });
    } catch (error) {
      c.get('log')().warn({ cause: logCause(error) }, 'database not ready');
      return c.json({ status: 'unavailable', database: deps.database.kind }, 503);
    }
  });
  return app;
}
