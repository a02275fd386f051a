/**
 * Scenario 1's load over gRPC: LinkService/GetLink for random user ids,
 * `connections` calls in flight at once on one HTTP/2 connection (as a bot's
 * one channel would), for `seconds`. Its own process, like bench/load.ts.
 * NOT_FOUND (the 30 % not linked, answered with a fresh link URL, as REST's
 * 404) is an answer; any other status counts as an error.
 * Usage: node load-grpc.ts <url> <connections> <seconds> <users> <apiKey>
 */
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { LinkService } from '../src/rpc/gen/linkgate/v1/links_pb.ts';

const [url, connections, seconds, users, apiKey] = process.argv.slice(2) as [string, string, string, string, string];
const client = createClient(LinkService, createGrpcTransport({ baseUrl: url }));
const headers = { authorization: `Bearer ${apiKey}` };
const latencies: number[] = [];
let errors = 0;
let notFound = 0;
const deadline = performance.now() + Number(seconds) * 1000;

async function caller() {
  while (performance.now() < deadline) {
    const started = performance.now();
    try {
      await client.getLink({ userId: `u${Math.floor(Math.random() * Number(users))}`, provider: 'bench' }, { headers });
    } catch (error) {
      if (ConnectError.from(error).code === Code.NotFound) notFound += 1;
      else errors += 1;
    }
    latencies.push(performance.now() - started);
  }
}

const began = performance.now();
await Promise.all(Array.from({ length: Number(connections) }, caller));
const elapsed = (performance.now() - began) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN);
process.stdout.write(
  JSON.stringify({ requestsPerSecond: Math.round(latencies.length / elapsed), p50: pct(0.5), p99: pct(0.99), total: latencies.length, non2xx: notFound, errors }),
);
