import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Event } from '@sentry/node';
import { createLogger, scrubEvent, scrubUrl } from '../src/observability.ts';

/** Every line a logger writes in `format`. */
function logLines(format: 'json' | 'pretty', write: (logger: ReturnType<typeof createLogger>) => void): string[] {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  write(createLogger('info', sink, format));
  return lines;
}

describe('logs', () => {
  it('are one JSON object a line by default (production, tests)', () => {
    const [line] = logLines('json', (logger) => logger.info({ provider: 'anilist' }, 'link stored'));
    expect(JSON.parse(line!)).toMatchObject({ level: 30, service: 'linkgate', provider: 'anilist', msg: 'link stored' });
  });

  it('are readable lines when pretty (development), with the same redaction', () => {
    const lines = logLines('pretty', (logger) => {
      logger.info({ provider: 'anilist' }, 'link stored');
      logger.warn({ accessToken: 'at-secret-value', nested: { refreshToken: 'rt-secret-value' } }, 'careless');
    });
    expect(lines[0]).toMatch(/^\[\d{2}:\d{2}:\d{2}\.\d{3}\] INFO: link stored \{"provider":"anilist"\}$/);
    expect(lines[1]).toMatch(/^\[[\d:.]+\] WARN: careless /);
    expect(lines.join('\n')).not.toMatch(/secret-value|"level"|"service"/);
    expect(lines.join('\n')).toContain('[redacted]');
  });
});

describe('Sentry scrubbing', () => {
  it('drops queries, cookies, bodies, the user and credential headers, and hides user ids in paths', () => {
    const event: Event = {
      request: {
        url: 'https://link.example/api/v1/users/80351110224678912/links/corp?verify=true',
        query_string: 'context=eyJhbGciOi.secret',
        cookies: { linkgate_browser: 'browser-secret' },
        data: { password: 'hunter2' },
        headers: { authorization: 'Bearer lg_secret', cookie: 'a=b', 'user-agent': 'bot/1.0' },
      },
      user: { id: '80351110224678912', ip_address: '203.0.113.9' },
      transaction: 'POST /api/v1/users/80351110224678912/links/corp/token?context=eyJhbGciOi.secret',
      exception: { values: [{ type: 'ValiError', stacktrace: { frames: [{ function: 'openCredentials', vars: { plaintext: '{"refreshToken":"rt-secret"}' } }] } }] },
      breadcrumbs: [
        { category: 'http', data: { url: 'https://idp.example/token?code=abc', method: 'POST' } },
        { message: 'GET http://127.0.0.1:8000/oauth/corp/callback?state=s3cret&code=c0de' },
      ],
    };
    const text = JSON.stringify(scrubEvent(event));
    for (const secret of ['80351110224678912', 'eyJhbGciOi', 'browser-secret', 'hunter2', 'lg_secret', '203.0.113.9', 'code=abc', 's3cret', 'c0de', 'rt-secret']) {
      expect(text).not.toContain(secret);
    }
    expect(event.request!.url).toBe('https://link.example/api/v1/users/:userId/links/corp');
    expect(event.request!.headers).toEqual({ 'user-agent': 'bot/1.0' });
    expect(event.transaction).toBe('POST /api/v1/users/:userId/links/corp/token');
    expect(event.breadcrumbs![0]!.data).toEqual({ url: 'https://idp.example/token', method: 'POST' });
  });

  it('scrubs a URL of its query and fragment', () => {
    expect(scrubUrl('/oauth/corp/callback?state=x#frag')).toBe('/oauth/corp/callback');
  });
});
