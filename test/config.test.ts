import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { ConfigError, GENERATED_SECRETS, parseConfig, withDevelopmentSecrets, withDotEnv } from '../src/config.ts';
import { TEST_SECRETS } from './helpers/gateway.ts';

describe('configuration', () => {
  it('defaults to 127.0.0.1:8000 and ./.linkgate with the embedded database', () => {
    const config = parseConfig({ ...TEST_SECRETS });
    expect(config.host).toBe('127.0.0.1');
    expect(config.port).toBe(8000);
    expect(config.publicBaseUrl.href).toBe('http://127.0.0.1:8000/');
    expect(config.dataDir).toBe(join(process.cwd(), '.linkgate'));
    expect(config.databaseUrl).toBeUndefined();
    expect(config.contextTtlSeconds).toBe(300);
    expect(config.stateTtlSeconds).toBe(300);
  });

  it('limits 100 requests per API key in 2 s and 60 browser requests per address a minute unless told otherwise, trusting no proxy', () => {
    const config = parseConfig({ ...TEST_SECRETS });
    expect(config.rateLimits).toEqual({ api: { limit: 100, windowSeconds: 2 }, browser: { limit: 60, windowSeconds: 60 } });
    expect(config.trustProxyHops).toBe(0);
    const tuned = parseConfig({ ...TEST_SECRETS, LINKGATE_API_RATE_LIMIT: '0', LINKGATE_BROWSER_RATE_LIMIT: '300', LINKGATE_BROWSER_RATE_WINDOW_SECONDS: '600', LINKGATE_TRUST_PROXY: '2' });
    expect(tuned.rateLimits).toEqual({ api: { limit: 0, windowSeconds: 2 }, browser: { limit: 300, windowSeconds: 600 } });
    expect(tuned.trustProxyHops).toBe(2);
  });

  it('reads the variable names of existing AniList auth service deployments', () => {
    const config = parseConfig({
      ...TEST_SECRETS,
      OAUTH_CONTEXT_TTL_SECONDS: '600',
      OAUTH_STATE_TTL_SECONDS: '900',
      DATABASE_URL: 'postgres://u@db.internal:5432/auth',
      SENTRY_DSN: 'https://key@sentry.example/1',
      SENTRY_ENVIRONMENT: 'staging',
      SENTRY_TRACES_SAMPLE_RATE: '0.25',
    });
    expect(config.contextTtlSeconds).toBe(600);
    expect(config.stateTtlSeconds).toBe(900);
    expect(config.databaseUrl).toBe('postgres://u@db.internal:5432/auth');
    expect(config.sentry).toEqual({ dsn: 'https://key@sentry.example/1', environment: 'staging', tracesSampleRate: 0.25 });
  });

  it.each([
    [{ PORT: 'eighty' }, /^PORT: must be a whole number$/],
    [{ OAUTH_CONTEXT_TTL_SECONDS: '999999' }, /^OAUTH_CONTEXT_TTL_SECONDS: must be at most 86400$/],
    [{ OAUTH_CONTEXT_SIGNING_SECRET: ' ' }, /^OAUTH_CONTEXT_SIGNING_SECRET: is required/],
    [{ LINKGATE_API_KEYS: 'short' }, /^LINKGATE_API_KEYS: must be at least 32 characters$/],
    [{ LINKGATE_ANNIE_MEI_COMPAT: 'off' }, /^LINKGATE_ANNIE_MEI_COMPAT: must be true or false$/],
    [{ LINKGATE_ENCRYPTION_KEYS: 'k1:AAAA' }, /^LINKGATE_ENCRYPTION_KEYS: each key must be 32 bytes/],
    [{ DATABASE_URL: 'mysql://x' }, /^DATABASE_URL: must be a postgres/],
    [{ SENTRY_TRACES_SAMPLE_RATE: '2' }, /^SENTRY_TRACES_SAMPLE_RATE: must be between 0 and 1$/],
    [{ LINK_ALLOW_SHARED_ACCOUNTS: 'yes' }, /^LINK_ALLOW_SHARED_ACCOUNTS: must be true or false$/],
    [{ LINKGATE_WEBHOOK_URL: 'https://bot.example/hooks' }, /^LINKGATE_WEBHOOK_SECRET: required with LINKGATE_WEBHOOK_URL/],
    [{ LINKGATE_WEBHOOK_URL: 'https://u:p@bot.example/hooks', LINKGATE_WEBHOOK_SECRET: 'x'.repeat(32) }, /^LINKGATE_WEBHOOK_URL: must not contain a user name or password/],
    [{ LINKGATE_WEBHOOK_URL: 'https://bot.example/hooks', LINKGATE_WEBHOOK_SECRET: 'short' }, /^LINKGATE_WEBHOOK_SECRET: must be at least 32 characters$/],
    [{ LINKGATE_WEBHOOK_RETRY_BASE_SECONDS: 'soon' }, /^LINKGATE_WEBHOOK_RETRY_BASE_SECONDS: must be a number of seconds$/],
    [{ LINKGATE_API_RATE_LIMIT: '-1' }, /^LINKGATE_API_RATE_LIMIT: must be a whole number$/],
    [{ LINKGATE_BROWSER_RATE_WINDOW_SECONDS: '0' }, /^LINKGATE_BROWSER_RATE_WINDOW_SECONDS: must be at least 1$/],
    [{ LINKGATE_TRUST_PROXY: '11' }, /^LINKGATE_TRUST_PROXY: must be at most 10$/],
  ])('a bad value stops start-up with one line naming the variable: %o', (override, message) => {
    const attempt = () => parseConfig({ ...TEST_SECRETS, ...override });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(message);
  });

  it.each(['true', 'loopback', '10.0.0.0/8', '1,2', '-1', '1.5', '0x1'])('refuses to start on a LINKGATE_TRUST_PROXY that is not a count of proxies: %j', (value) => {
    const attempt = () => parseConfig({ ...TEST_SECRETS, LINKGATE_TRUST_PROXY: value });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/^LINKGATE_TRUST_PROXY: must be how many reverse proxies in front append to X-Forwarded-For \(0–10\), not true\/false or addresses$/);
  });

  it.each(['https://link.example/linkgate', 'https://link.example/linkgate/', 'https://link.example/?x=1', 'https://link.example/#top', 'https://user@link.example'])(
    'refuses a PUBLIC_BASE_URL with a path, query, fragment or user name at start-up: %s',
    (url) => {
      const attempt = () => parseConfig({ ...TEST_SECRETS, PUBLIC_BASE_URL: url });
      expect(attempt).toThrow(ConfigError);
      expect(attempt).toThrow(/^PUBLIC_BASE_URL: must be an origin like https:\/\/link\.example, with no path, query or user name \(serving under a path prefix is not supported\)$/);
    },
  );

  it.each(['http://bot.example/hooks', 'http://10.0.0.7/hooks', 'http://bot.internal:8080/hooks'])('refuses a plain-http LINKGATE_WEBHOOK_URL in production: %s', (url) => {
    const attempt = () =>
      parseConfig({ ...TEST_SECRETS, NODE_ENV: 'production', PUBLIC_BASE_URL: 'https://link.example', LINKGATE_WEBHOOK_URL: url, LINKGATE_WEBHOOK_SECRET: 'x'.repeat(32) });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/^LINKGATE_WEBHOOK_URL: must be https in production \(plain http only on a loopback address\)$/);
  });

  it.each(['https://bot.example/hooks', 'http://127.0.0.1:3000/hooks', 'http://localhost:3000/hooks', 'http://[::1]:3000/hooks'])(
    'accepts %s as LINKGATE_WEBHOOK_URL in production',
    (url) => {
      const config = parseConfig({ ...TEST_SECRETS, NODE_ENV: 'production', PUBLIC_BASE_URL: 'https://link.example', LINKGATE_WEBHOOK_URL: url, LINKGATE_WEBHOOK_SECRET: 'x'.repeat(32) });
      expect(config.webhook?.url.href).toBe(new URL(url).href);
    },
  );

  it('lists every problem at once, one per variable, the rules between variables included', () => {
    const error = (() => {
      try {
        parseConfig({
          ...TEST_SECRETS,
          NODE_ENV: 'production',
          PUBLIC_BASE_URL: 'http://link.example',
          PORT: 'eighty',
          LINKGATE_API_KEYS: 'short',
          LOG_FORMAT: 'xml',
          DISCORD_REDIRECT_URI: 'https://elsewhere.example/oauth/discord/callback',
          LINKGATE_WEBHOOK_URL: 'https://bot.example/hooks',
        });
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      'PORT: must be a whole number',
      'LINKGATE_API_KEYS: must be at least 32 characters',
      'LOG_FORMAT: must be json or pretty',
      'PUBLIC_BASE_URL: must be https in production (plain http only on a loopback address)',
      'DISCORD_REDIRECT_URI: must be on the same origin as PUBLIC_BASE_URL (the sign-in cookie is only sent there)',
      'LINKGATE_WEBHOOK_SECRET: required with LINKGATE_WEBHOOK_URL (receivers verify every event with it)',
    ]);
  });

  it.each([
    [{}, 'pretty'],
    [{ NODE_ENV: 'production', PUBLIC_BASE_URL: 'https://link.example' }, 'json'],
    [{ NODE_ENV: 'test' }, 'json'],
    [{ LOG_FORMAT: 'json' }, 'json'],
    [{ NODE_ENV: 'production', PUBLIC_BASE_URL: 'https://link.example', LOG_FORMAT: 'pretty' }, 'pretty'],
  ])('logs readable lines in development only, unless LOG_FORMAT says otherwise: %o', (env, format) => {
    expect(parseConfig({ ...TEST_SECRETS, ...env }).logFormat).toBe(format);
  });

  it('never echoes a secret value in its error', () => {
    const secretValue = 'too-short-but-secret';
    try {
      parseConfig({ ...TEST_SECRETS, LINKGATE_API_KEYS: secretValue });
      expect.unreachable();
    } catch (error) {
      expect(String(error)).toContain('LINKGATE_API_KEYS');
      expect(String(error)).not.toContain(secretValue);
    }
  });

  it('requires every secret in production, naming every one missing at once', () => {
    expect(() => parseConfig({ NODE_ENV: 'production', PUBLIC_BASE_URL: 'https://link.example' })).toThrow(
      /^OAUTH_CONTEXT_SIGNING_SECRET: is required in production; USERID_HASH_SALT: is required in production; LINKGATE_API_KEYS: is required in production; LINKGATE_ENCRYPTION_KEYS: is required in production$/,
    );
    const { env, generated } = withDevelopmentSecrets({ NODE_ENV: 'production' });
    expect(generated).toEqual([]);
    expect(env.OAUTH_CONTEXT_SIGNING_SECRET).toBeUndefined();
  });

  it('requires PUBLIC_BASE_URL in production', () => {
    expect(() => parseConfig({ ...TEST_SECRETS, NODE_ENV: 'production' })).toThrow(/^PUBLIC_BASE_URL: required in production/);
  });

  it.each(['http://link.example', 'http://10.0.0.5:8000', 'http://127.0.0.1.nip.io'])('refuses a plain-http PUBLIC_BASE_URL in production: %s', (url) => {
    expect(() => parseConfig({ ...TEST_SECRETS, NODE_ENV: 'production', PUBLIC_BASE_URL: url })).toThrow(
      /^PUBLIC_BASE_URL: must be https in production \(plain http only on a loopback address\)$/,
    );
  });

  it.each(['https://link.example', 'http://127.0.0.1:8000', 'http://localhost:8000', 'http://[::1]:8000'])('accepts %s as PUBLIC_BASE_URL in production', (url) => {
    expect(parseConfig({ ...TEST_SECRETS, NODE_ENV: 'production', PUBLIC_BASE_URL: url }).publicBaseUrl.href).toBe(new URL(url).href);
  });

  it('accepts plain http outside production (development on a LAN address)', () => {
    expect(parseConfig({ ...TEST_SECRETS, PUBLIC_BASE_URL: 'http://192.168.1.20:8000' }).publicBaseUrl.protocol).toBe('http:');
  });

  it.each<[Record<string, string>, string]>([
    [{ PUBLIC_BASE_URL: 'https://link.example', ANILIST_REDIRECT_URI: 'https://auth.other.example/oauth/anilist/callback' }, 'ANILIST_REDIRECT_URI'],
    [{ PUBLIC_BASE_URL: 'https://link.example', CORP_REDIRECT_URI: 'http://link.example/oauth/corp/callback' }, 'CORP_REDIRECT_URI'],
    [{ DISCORD_REDIRECT_URI: 'http://localhost:8000/oauth/discord/callback' }, 'DISCORD_REDIRECT_URI'],
  ])('refuses a redirect URI on another origin than PUBLIC_BASE_URL: %o', (env, name) => {
    expect(() => parseConfig({ ...TEST_SECRETS, ...env })).toThrow(new RegExp(`^${name}: must be on the same origin as PUBLIC_BASE_URL`));
  });

  it('accepts redirect URIs on PUBLIC_BASE_URL’s origin', () => {
    const config = parseConfig({
      ...TEST_SECRETS,
      NODE_ENV: 'production',
      PUBLIC_BASE_URL: 'https://auth.bot.example/',
      ANILIST_REDIRECT_URI: 'https://auth.bot.example/oauth/anilist/callback',
      CORP_REDIRECT_URI: 'https://auth.bot.example/oauth/corp/callback',
    });
    expect(config.publicBaseUrl.origin).toBe('https://auth.bot.example');
  });

  it('generates missing development secrets once into DATA_DIR, mode 0600, and reuses them', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'linkgate-config-'));
    onTestFinished(() => rmSync(dataDir, { recursive: true, force: true }));
    const first = withDevelopmentSecrets({ DATA_DIR: dataDir });
    expect(first.generated).toEqual([...GENERATED_SECRETS]);
    const file = join(dataDir, 'secrets.env');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const config = parseConfig(first.env);
    expect(config.apiKeys[0]).toMatch(/^lg_/);
    expect(config.encryptionKeys[0]!.key).toHaveLength(32);

    const second = withDevelopmentSecrets({ DATA_DIR: dataDir });
    expect(second.generated).toEqual([]);
    for (const name of GENERATED_SECRETS) expect(second.env[name]).toBe(first.env[name]);
    expect(readFileSync(file, 'utf8')).toContain(first.env.LINKGATE_API_KEYS);

    // A secret set in the environment wins over the saved one and is not written.
    const third = withDevelopmentSecrets({ DATA_DIR: dataDir, USERID_HASH_SALT: TEST_SECRETS.USERID_HASH_SALT });
    expect(third.env.USERID_HASH_SALT).toBe(TEST_SECRETS.USERID_HASH_SALT);
  });

  it('accepts the secrets a bot shares at any length, with one warning naming each short one and never its value', () => {
    // The Annie Mei bot's .env carries them as they are; refusing would mean changing the bot too.
    const config = parseConfig({ ...TEST_SECRETS, OAUTH_CONTEXT_SIGNING_SECRET: 'bot-secret', USERID_HASH_SALT: 'salty', NODE_ENV: 'production', PUBLIC_BASE_URL: 'https://auth.bot.example' });
    expect(config.contextSigningSecret).toBe('bot-secret');
    expect(config.userIdHashSalt).toBe('salty');
    expect(config.warnings).toHaveLength(2);
    expect(config.warnings[0]).toMatch(/^OAUTH_CONTEXT_SIGNING_SECRET is shorter than 32 characters/);
    expect(config.warnings[1]).toMatch(/^USERID_HASH_SALT is shorter than 32 characters/);
    expect(config.warnings.join('\n')).not.toContain('bot-secret');
    expect(config.warnings.join('\n')).not.toContain('salty');
    expect(parseConfig({ ...TEST_SECRETS }).warnings).toEqual([]);
  });

  it('keeps the Annie Mei views unless LINKGATE_ANNIE_MEI_COMPAT=false', () => {
    expect(parseConfig({ ...TEST_SECRETS }).annieMeiCompat).toBe(true);
    expect(parseConfig({ ...TEST_SECRETS, LINKGATE_ANNIE_MEI_COMPAT: 'false' }).annieMeiCompat).toBe(false);
  });
});

describe('the .env file of the working directory', () => {
  const folder = (text?: string) => {
    const dir = mkdtempSync(join(tmpdir(), 'linkgate-dotenv-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    if (text !== undefined) writeFileSync(join(dir, '.env'), text);
    return dir;
  };

  it('is read as dotenv files are (comments, quotes, export, empty values), under the real environment', () => {
    const dir = folder(
      [
        '# the old service',
        'ANILIST_CLIENT_ID=12345',
        'OAUTH_CONTEXT_SIGNING_SECRET="quoted secret # not a comment"',
        "USERID_HASH_SALT='single'",
        'export PORT=9001',
        'SENTRY_DSN=',
        'ROCKET_SECRET_KEY=ignored-by-linkgate',
      ].join('\n'),
    );
    const env = withDotEnv({ PORT: '9002', PATH: '/usr/bin' }, dir);
    expect(env.ANILIST_CLIENT_ID).toBe('12345');
    expect(env.OAUTH_CONTEXT_SIGNING_SECRET).toBe('quoted secret # not a comment');
    expect(env.USERID_HASH_SALT).toBe('single');
    // A variable set in the environment wins over the file.
    expect(env.PORT).toBe('9002');
    expect(env.PATH).toBe('/usr/bin');
    const config = parseConfig({ ...TEST_SECRETS, ...env, OAUTH_CONTEXT_SIGNING_SECRET: env.OAUTH_CONTEXT_SIGNING_SECRET });
    expect(config.port).toBe(9002);
    expect(config.contextSigningSecret).toBe('quoted secret # not a comment');
    expect(config.sentry.dsn).toBeUndefined();
  });

  it('changes nothing when there is none', () => {
    const env = { PORT: '9003' };
    expect(withDotEnv(env, folder())).toEqual(env);
  });

  it('stops start-up with one line when it exists but cannot be read', () => {
    const dir = folder();
    mkdirSync(join(dir, '.env'));
    expect(() => withDotEnv({}, dir)).toThrow(/^\.env: could not be read \(EISDIR\)$/);
  });
});
