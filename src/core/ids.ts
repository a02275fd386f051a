import * as v from 'valibot';

/**
 * A bot's user id: opaque text, never parsed as a number (Discord snowflakes
 * do not fit one). Letters, digits and `._:@+=-`, at most 128 characters and
 * not only dots, so it is safe in a URL path and in a log line.
 */
export const UserId = v.pipe(
  v.string('userId must be a string'),
  v.regex(/^[A-Za-z0-9._:@+=-]{1,128}$/, 'userId must be 1–128 characters of letters, digits and ._:@+=-'),
  v.check((id) => !/^\.+$/.test(id), 'userId must not be only dots'),
);

/** A provider id as it appears in URLs: the module's file name. */
export const ProviderId = v.pipe(
  v.string('provider must be a string'),
  v.regex(/^[a-z][a-z0-9_-]{0,31}$/, 'provider must be a provider id such as "anilist"'),
);
