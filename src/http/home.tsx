/** @jsxRuntime automatic @jsxImportSource hono/jsx */
import { join } from 'node:path';
import { Hono } from 'hono';
import type { Config } from '../config.ts';
import { describeNeeds, type Registry } from '../registry.ts';
import type { AppEnv } from './middleware.ts';
import { OperatorHomePage, PublicHomePage } from './pages.tsx';

/** A chain link, drawn for the browser tab; no file to ship, no external request. */
const FAVICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#2952cc"/><g fill="none" stroke="#fff" stroke-width="3.2" stroke-linecap="round"><path d="M13.5 18.5 18.5 13.5"/><path d="M14.5 10.5l2-2a5 5 0 0 1 7 7l-2 2"/><path d="M17.5 21.5l-2 2a5 5 0 0 1-7-7l2-2"/></g></svg>`;

/** `GET /` (a page for the operator in development, a neutral one in production) and the favicon. */
export function homeRoutes(deps: { config: Config; registry: Registry; databaseKind: 'postgres' | 'pglite' }) {
  const { config } = deps;
  const app = new Hono<AppEnv>();
  const frame = (nonce: string | undefined) => ({ nonce: nonce ?? '', brand: config.brand });
  app.get('/', (c) => {
    if (config.nodeEnv === 'production') return c.html(<PublicHomePage frame={frame(c.get('secureHeadersNonce'))} />);
    const providers = deps.registry.list().map((p) => ({ id: p.id, displayName: p.displayName, needs: p.instance ? undefined : describeNeeds(p.needs) }));
    return c.html(
      <OperatorHomePage
        frame={frame(c.get('secureHeadersNonce'))}
        publicBaseUrl={config.publicBaseUrl.href.replace(/\/$/, '')}
        database={deps.databaseKind === 'pglite' ? `the embedded database in ${join(config.dataDir, 'pgdata')}` : 'PostgreSQL'}
        secretsFile={join(config.dataDir, 'secrets.env')}
        providers={providers}
        webhooks={config.webhook !== undefined}
        metrics={config.metrics}
      />,
    );
  });
  const icon = () => new Response(FAVICON, { headers: { 'content-type': 'image/svg+xml', 'cache-control': 'public, max-age=86400' } });
  app.get('/favicon.svg', icon);
  app.get('/favicon.ico', icon);
  return app;
}
