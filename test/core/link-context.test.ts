import { CompactSign } from 'jose';
import { describe, expect, it } from 'vitest';
import { checkReturnTo, verifyLinkContext } from '../../src/core/link-context.ts';
import { TEST_SECRETS } from '../helpers/gateway.ts';

const ALLOWED = ['https://bot.example'];

describe('return_to', () => {
  it('accepts a URL on an allowed origin', () => {
    expect(checkReturnTo('https://bot.example/linked?x=1', ALLOWED)).toBe('https://bot.example/linked?x=1');
  });

  it.each([
    '//evil.example/',
    'https:evil.example',
    'https:\\\\evil.example',
    'https://bot.example\\@evil.example/',
    'https://bot.example@evil.example/',
    'https://user:pass@bot.example/',
    'https://bot.example.evil.example/',
    'http://bot.example/',
    'https://bot.example/%0d%0aSet-Cookie:x',
    'https://bot.example/\nx',
    'javascript:alert(1)',
    '/relative/path',
    'https://evil.example/https://bot.example',
  ])('refuses %s', (value) => {
    expect(() => checkReturnTo(value, ALLOWED)).toThrow(expect.objectContaining({ code: 'return_to_not_allowed' }));
  });
});

describe('claims', () => {
  const now = Date.now();
  const iat = Math.floor(now / 1000);
  const good = { sub: '80351110224678912', provider: 'corp', jti: 'a-jti-long-enough', iat, exp: iat + 300 };
  /** Signs any payload, well-typed or not, as a careless bot might. */
  const sign = (payload: Record<string, unknown>) =>
    new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(TEST_SECRETS.OAUTH_CONTEXT_SIGNING_SECRET));
  const verify = (token: string) => verifyLinkContext(token, 'corp', { secret: TEST_SECRETS.OAUTH_CONTEXT_SIGNING_SECRET, ttlSeconds: 300, returnToOrigins: [], now: () => now });

  it('refuses a context that expires before it was issued', async () => {
    await expect(verify(await sign({ ...good, exp: iat + 10, iat: iat + 20 }))).rejects.toMatchObject({ code: 'context_invalid', message: expect.stringContaining('exp is before iat') });
  });

  it('accepts a good context and reads its optional display name', async () => {
    await expect(verify(await sign({ ...good, name: 'Ada' }))).resolves.toMatchObject({ userId: good.sub, jti: good.jti, userName: 'Ada' });
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['a numeric sub', { sub: 80351110224678912 }, 'sub must be a string'],
    ['a sub with a slash', { sub: '8035/1110' }, 'sub must be 1–128 characters of letters, digits and ._:@+=-'],
    ['no sub', { sub: undefined }, 'sub is missing'],
    ['no jti', { jti: undefined }, 'jti is missing'],
    ['a short jti', { jti: 'abc1234' }, 'jti must be at least 8 characters'],
    ['exp as text', { exp: `${iat + 300}` }, 'exp must be a number of seconds since 1970'],
    ['iat with a fraction', { iat: iat + 0.5 }, 'iat must be a whole number of seconds'],
    ['an empty provider', { provider: '' }, 'provider must not be empty'],
    ['a numeric tenant', { tenant: 4242 }, 'tenant must be a string'],
    ['a return_to too long', { return_to: `https://bot.example/${'x'.repeat(2100)}` }, 'return_to must be at most 2048 characters'],
    ['a name with a control character', { name: 'Ada\u202eevil' }, 'name must not contain control characters'],
  ])('refuses %s, naming the claim and not its value', async (_name, change, problem) => {
    const token = await sign({ ...good, ...change });
    const error = await verify(token).then(
      () => undefined,
      (e: unknown) => e as { code: string; message: string },
    );
    expect(error).toMatchObject({ code: 'context_invalid', message: `the link context has a bad claim: ${problem}` });
    expect(error!.message).not.toContain(token);
    for (const value of Object.values(change)) if (value !== undefined && value !== '') expect(error!.message).not.toContain(String(value));
  });
});
