import { describe, expect, it } from 'vitest';
import type { Event } from '@sentry/node';
import { scrubEvent, scrubUrl } from '../src/observability.ts';

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
