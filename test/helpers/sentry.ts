import * as Sentry from '@sentry/node';
import { parseConfig } from '../../src/config.ts';
import { initSentry, type Observer } from '../../src/observability.ts';
import { TEST_SECRETS } from './gateway.ts';

/** Everything the Sentry SDK would have sent to sentry.io, as the bytes it would send. */
export interface SentryCapture {
  observer: Observer;
  envelopes: string[];
  /** The type of every item in the envelopes (`event`, `span`, …). */
  itemTypes(): string[];
}

/**
 * Starts the real Sentry SDK (`initSentry`, with our scrubbing, tracing at
 * 100 %) with a transport that keeps each envelope instead of sending it.
 * Once per test file: the SDK is global to the process.
 */
export async function captureSentry(): Promise<SentryCapture> {
  const envelopes: string[] = [];
  const decoder = new TextDecoder();
  const config = parseConfig({ NODE_ENV: 'test', ...TEST_SECRETS, SENTRY_DSN: 'https://public@sentry.example/1', SENTRY_TRACES_SAMPLE_RATE: '1' });
  const observer = await initSentry(config, {
    transport: (options) =>
      Sentry.createTransport(options, async (request) => {
        envelopes.push(typeof request.body === 'string' ? request.body : decoder.decode(request.body));
        return { statusCode: 200 };
      }),
  });
  return {
    observer: observer!,
    envelopes,
    // An envelope is a header line, then a header line and a payload line per item.
    itemTypes: () =>
      envelopes.flatMap((envelope) =>
        envelope
          .split('\n')
          .slice(1)
          .filter((_, i) => i % 2 === 0)
          .map((line) => (JSON.parse(line) as { type: string }).type),
      ),
  };
}
