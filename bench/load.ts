/**
 * The load generator, run as its own process so it does not share the
 * gateway's event loop: autocannon against random user ids.
 * Usage: node load.ts <url> <connections> <seconds> <users> <apiKey> <path template with {id}>
 */
import autocannon from 'autocannon';

const [url, connections, seconds, users, apiKey, template] = process.argv.slice(2) as [string, string, string, string, string, string];
const result = await autocannon({
  url,
  connections: Number(connections),
  duration: Number(seconds),
  headers: { authorization: `Bearer ${apiKey}` },
  requests: [
    {
      setupRequest: (request: Record<string, unknown>) => ({
        ...request,
        path: template.replace('{id}', `u${Math.floor(Math.random() * Number(users))}`),
      }),
    },
  ],
});
process.stdout.write(
  JSON.stringify({
    requestsPerSecond: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    total: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
  }),
);
