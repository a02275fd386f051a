/**
 * What a developer sees when `npm start` is up: where it answers, where the
 * API key is, and which providers work or what each still needs. Printed in
 * development only; production logs one JSON line instead. Names places and
 * variables, never a secret's value.
 */
import { describeNeeds, type RegisteredProvider } from './registry.ts';

export interface BannerInput {
  /** Where this process answers (a reachable address, not 0.0.0.0). */
  url: string;
  publicBaseUrl: URL;
  /** The file LINKGATE_API_KEYS was read from, when it came from the generated secrets. */
  apiKeyFile: string | undefined;
  database: { kind: 'postgres' | 'pglite'; dataDir: string };
  providers: readonly RegisteredProvider[];
  webhookUrl: URL | undefined;
  metrics: boolean;
}

export function startupBanner(input: BannerInput): string {
  const row = (label: string, value: string) => `  ${label.padEnd(15)}${value}`;
  const publicOrigin = input.publicBaseUrl.href.replace(/\/$/, '');
  const idWidth = Math.max(...input.providers.map((p) => p.id.length), 2) + 2;
  const nameWidth = Math.max(...input.providers.map((p) => p.displayName.length), 4) + 2;
  const lines = [
    '',
    '  Linkgate is running (development)',
    '',
    row('Gateway', input.url),
    ...(publicOrigin !== input.url ? [row('Public URL', `${publicOrigin}   (PUBLIC_BASE_URL: link URLs point there)`)] : []),
    row('API reference', `${input.url}/docs`),
    row('API key', input.apiKeyFile ? `LINKGATE_API_KEYS in ${input.apiKeyFile}` : 'LINKGATE_API_KEYS, as you set it'),
    row('Database', input.database.kind === 'pglite' ? `embedded (PGlite) in ${input.database.dataDir}` : 'PostgreSQL at DATABASE_URL'),
    row('Webhooks', input.webhookUrl ? `to ${input.webhookUrl.origin} (LINKGATE_WEBHOOK_URL)` : 'off (set LINKGATE_WEBHOOK_URL and LINKGATE_WEBHOOK_SECRET)'),
    row('Metrics', input.metrics ? `${input.url}/metrics (with an API key)` : 'off (LINKGATE_METRICS=true serves /metrics)'),
    '',
    '  Providers',
    ...input.providers.map(
      (p) => `    ${p.id.padEnd(idWidth)}${p.displayName.padEnd(nameWidth)}${p.instance ? 'ready' : `not configured: set ${describeNeeds(p.needs)}`}`,
    ),
    '',
    '  Set variables in ./.env or the environment (.env.example lists them all), then restart.',
    '',
  ];
  return `${lines.join('\n')}\n`;
}
