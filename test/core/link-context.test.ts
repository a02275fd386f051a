import { describe, expect, it } from 'vitest';
import { checkReturnTo } from '../../src/core/link-context.ts';

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
    let code: string | undefined;
    try {
      const accepted = checkReturnTo(value, ALLOWED);
      // Percent-encoded newlines stay encoded inside the allowed origin's path: harmless, and still ours.
      expect(new URL(accepted).origin).toBe('https://bot.example');
      expect(accepted).not.toMatch(/[\r\n]/);
      code = 'accepted-safely';
    } catch (error) {
      code = (error as { code?: string }).code;
    }
    if (value.includes('%0d%0a')) expect(code).toBe('accepted-safely');
    else expect(code).toBe('return_to_not_allowed');
  });
});
