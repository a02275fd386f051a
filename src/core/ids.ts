import * as v from 'valibot';

/** The tenant of a single-tenant deployment, and of every link made before tenants. */
export const DEFAULT_TENANT = 'default';

/**
 * A bot's user id: opaque text, never parsed as a number (Discord snowflakes
 * do not fit one). Letters, digits and `._:@+=-`, at most 128 characters and
 * not only dots, so it is safe in a URL path and in a log line. `name` is
 * what the messages call it (`userId` in the API, `sub` in a link context);
 * they never repeat the value.
 */
export const userIdSchema = (name: string) =>
  v.pipe(
    v.string(`${name} must be a string`),
    v.regex(/^[A-Za-z0-9._:@+=-]{1,128}$/, `${name} must be 1–128 characters of letters, digits and ._:@+=-`),
    v.check((id) => !/^\.+$/.test(id), `${name} must not be only dots`),
  );

export const UserId = userIdSchema('userId');

/** A bot's display name for its user, shown on a page: short, and no control or formatting characters. */
export const userNameSchema = (name: string) =>
  v.pipe(
    v.string(`${name} must be a string`),
    v.minLength(1, `${name} must not be empty`),
    v.maxLength(64, `${name} must be at most 64 characters`),
    v.regex(/^[^\p{Cc}\p{Cf}]*$/u, `${name} must not contain control characters`),
  );

/** A provider id as it appears in URLs: the module's file name. */
export const ProviderId = v.pipe(
  v.string('provider must be a string'),
  v.regex(/^[a-z][a-z0-9_-]{0,31}$/, 'provider must be a provider id such as "anilist"'),
);
