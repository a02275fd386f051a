/**
 * Jellyfin has no OAuth: the user approves a Quick Connect code in a Jellyfin
 * app they are signed into, or types their username and password into our
 * page. Only the resulting access token is stored, with the server URL and
 * the device id it belongs to. API: https://api.jellyfin.org (QuickConnect,
 * User and Session controllers of jellyfin/jellyfin).
 */
import { createHash, randomUUID } from 'node:crypto';
import * as v from 'valibot';
import {
  defineProvider,
  LinkgateError,
  type Credentials,
  type Flow,
  type FormSpec,
  type ProviderInstance,
  type Step,
  type WaitDisplay,
} from 'linkgate/provider';

const CLIENT_VERSION = '0.1.0';
const POLL_MS = 2000;
/** How long a Jellyfin server keeps a Quick Connect code (about ten minutes; README, Jellyfin). */
const QUICK_CONNECT_CODE_MS = 10 * 60 * 1000;

/** Wrong passwords one sign-in may take before it ends. */
const PASSWORD_TRIES_PER_FLOW = 5;
/**
 * Wrong passwords for one username on one server, across sign-ins and
 * instances, before each further try waits: 30 s after the 5th, then 1, 2, 4,
 * … minutes, at most 15; forgotten a day after the last try, or at once when
 * a password is right.
 */
const PASSWORD_TRIES_BEFORE_BACKOFF = 5;
const BACKOFF_BASE_MS = 30_000;
const BACKOFF_MAX_MS = 15 * 60_000;
const TRIES_KEPT_SECONDS = 24 * 3600;

const NO_SERVER = 'No Jellyfin server answered at that address.';

const bool = v.pipe(v.picklist(['true', 'false', '1', '0'], 'must be true or false'), v.transform((s) => s === 'true' || s === '1'));

/** A server address as the gateway uses and compares it (see `serverAddress`). */
interface ServerAddress {
  /** Origin and base path, no trailing slash: where requests go. */
  base: string;
  /** Which server it is: account ids and password tries are per origin. */
  origin: string;
}

/**
 * Normalises a server address, so that every spelling of one server is one
 * server: http(s) only, no user name or password; query and fragment
 * dropped; the host as URL parsing writes it (lower case, no default port);
 * the path is the server's base path (Jellyfin's "Base URL" setting), with
 * dot and empty segments removed, cut before a `web` segment (what the
 * address bar of Jellyfin's web app shows) and without a trailing slash.
 * `HTTPS://JF.example.com:443/jellyfin/web/#/home` is `https://jf.example.com/jellyfin`.
 */
export function serverAddress(input: string): ServerAddress | undefined {
  if (!URL.canParse(input)) return undefined;
  const url = new URL(input);
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password || !url.hostname) return undefined;
  const segments = url.pathname.split('/').filter((segment) => segment !== '');
  const web = segments.findIndex((segment) => segment.toLowerCase() === 'web');
  const path = (web === -1 ? segments : segments.slice(0, web)).map((segment) => `/${segment}`).join('');
  return { base: `${url.origin}${path}`, origin: url.origin };
}

const serverUrl = v.pipe(
  v.string(),
  v.url('must be an absolute URL'),
  v.rawTransform(({ dataset, addIssue, NEVER }) => serverAddress(dataset.value) ?? (addIssue({ message: 'must be an http(s) URL without a user name' }), NEVER)),
);
const common = {
  JELLYFIN_ALLOW_PRIVATE_SERVERS: v.optional(bool, 'false'),
  JELLYFIN_CLIENT_NAME: v.optional(v.pipe(v.string(), v.regex(/^[\w .-]{1,40}$/, 'letters, digits, spaces, . _ - only')), 'Linkgate'),
};

/** The `Authorization: MediaBrowser …` header every request carries (Jellyfin refuses Quick Connect without it). */
function mediaBrowser(client: string, deviceId: string, token?: string): string {
  const parts = [`Client="${client}"`, `Device="${client}"`, `DeviceId="${deviceId}"`, `Version="${CLIENT_VERSION}"`];
  if (token) parts.push(`Token="${token}"`);
  return `MediaBrowser ${parts.join(', ')}`;
}

// Every answer is bounded before it is used: a server a user typed can send anything.
const QuickConnectResult = v.object({
  Authenticated: v.boolean(),
  Secret: v.pipe(v.string(), v.regex(/^[\w-]{1,256}$/)),
  Code: v.pipe(v.string(), v.regex(/^[\w-]{1,16}$/)),
});
const AuthenticationResult = v.object({
  AccessToken: v.pipe(v.string(), v.minLength(1), v.maxLength(512)),
  // Guids, "N" format on current servers; they become part of the account id.
  User: v.object({ Id: v.pipe(v.string(), v.regex(/^[\w-]{1,64}$/)), Name: v.pipe(v.string(), v.maxLength(256)) }),
});
const FlowData = v.object({
  /** The server's base address (`ServerAddress.base`), once known. */
  serverUrl: v.optional(v.string()),
  deviceId: v.optional(v.string()),
  secret: v.optional(v.string()),
  code: v.optional(v.string()),
  /** Wrong passwords in this sign-in so far. */
  wrongPasswords: v.optional(v.number()),
});
/** `/System/Info/Public`: `Id` is the server's SystemId, a Guid ("N" format on current servers). */
const PublicInfo = v.object({
  Id: v.pipe(v.string(), v.regex(/^[0-9A-Fa-f-]{8,64}$/), v.transform((id) => id.toLowerCase().replaceAll('-', ''))),
  ProductName: v.optional(v.string()),
});
/** Password tries for one (server, username), in the key-value store. */
const Tries = v.object({ failures: v.number(), last: v.number() });
/** What the credentials of a link hold; `serverId` only in links made while typed servers were keyed by it. */
const StoredExtra = v.object({ serverUrl: v.string(), deviceId: v.string(), userId: v.string(), serverId: v.optional(v.string()) });

/**
 * The link's external account id. On the operator's server (JELLYFIN_SERVER_URL)
 * it is the Jellyfin user id, as it always was. A server a user typed is one
 * of many, each with its own user ids, and can claim to be anything: the id
 * is `<user id>@<origin>`, the origin being the one the gateway itself
 * connected to, so a server can only ever speak for accounts at its own
 * address. (It used to be `<SystemId>:<user id>`, the SystemId being what the
 * server said about itself; `currentAccountId` rewrites those at start-up.)
 */
const typedAccountId = (userId: string, origin: string) => `${userId}@${origin}`;

export default defineProvider({
  id: 'jellyfin',
  displayName: 'Jellyfin',
  // Configured with a fixed server, or with JELLYFIN_ALLOW_USER_SERVER=true for a server the user types.
  env: v.union([
    v.object({ JELLYFIN_SERVER_URL: serverUrl, JELLYFIN_ALLOW_USER_SERVER: v.optional(bool, 'false'), ...common }),
    v.object({ JELLYFIN_SERVER_URL: v.optional(v.undefined()), JELLYFIN_ALLOW_USER_SERVER: v.pipe(v.literal('true'), v.transform(() => true)), ...common }),
  ]),
  create(env, tools): ProviderInstance {
    const provider = 'jellyfin';
    const client = env.JELLYFIN_CLIENT_NAME;
    const fixed = env.JELLYFIN_SERVER_URL;
    const userServer = !fixed || env.JELLYFIN_ALLOW_USER_SERVER;
    const { kv, clock } = tools;

    /** The operator's own server is trusted like any provider; any other goes through the guarded fetch. */
    const isFixed = (server: string) => fixed !== undefined && serverAddress(server)?.origin === fixed.origin;

    async function call(server: string, path: string, deviceId: string, init: { method?: string; body?: unknown; token?: string } = {}): Promise<Response> {
      const headers: Record<string, string> = { authorization: mediaBrowser(client, deviceId, init.token), accept: 'application/json' };
      const body = init.body === undefined ? undefined : JSON.stringify(init.body);
      if (body !== undefined) headers['content-type'] = 'application/json';
      return send(server, `${server}${path}`, { method: init.method ?? 'GET', headers, ...(body !== undefined ? { body } : {}) });
    }

    /** The operator's server through the provider fetch; a server a user typed only through the guarded one (no private addresses unless allowed, no redirects, capped). */
    function send(server: string, url: string, request: { method: string; headers: Record<string, string>; body?: string | Uint8Array }, redirect: 'follow' | 'manual' = 'follow'): Promise<Response> {
      if (isFixed(server)) return tools.fetch(url, { ...request, redirect, ...(request.body === undefined ? {} : { body: request.body as string | Uint8Array<ArrayBuffer> }) });
      return tools.untrustedFetch(url, request, { allowPrivate: env.JELLYFIN_ALLOW_PRIVATE_SERVERS });
    }

    async function json<S extends v.GenericSchema>(response: Response, schema: S, what: string): Promise<v.InferOutput<S>> {
      if (response.status >= 500) throw new LinkgateError('provider_unavailable', `Jellyfin answered ${response.status} to ${what}`, { provider });
      const parsed = v.safeParse(schema, await response.json().catch(() => undefined));
      if (!response.ok || !parsed.success) throw new LinkgateError('provider_response_invalid', `Jellyfin sent an unexpected answer to ${what}`, { provider });
      return parsed.output;
    }

    /** A server's SystemId, or undefined when it does not answer like Jellyfin. */
    async function systemId(server: string, deviceId: string): Promise<string | undefined> {
      const info = await call(server, '/System/Info/Public', deviceId);
      const body = v.safeParse(PublicInfo, await info.json().catch(() => undefined));
      return info.ok && body.success ? body.output.Id : undefined;
    }

    // The operator's server's SystemId, asked once (again after a failure): a typed address that
    // answers with it is that server under another name, and the sign-in continues there.
    let fixedId: Promise<string | undefined> | undefined;
    const fixedSystemId = () => {
      fixedId ??= systemId(fixed!.base, randomUUID().replaceAll('-', '')).then(
        (id) => id ?? ((fixedId = undefined), undefined),
        () => ((fixedId = undefined), undefined),
      );
      return fixedId;
    };

    const serverForm = (error?: string): Step => ({
      kind: 'form',
      form: {
        title: 'Link your Jellyfin account',
        description: 'Which Jellyfin server do you use? Type the address you open it at.',
        fields: [{ name: 'server', label: 'Server address', type: 'url', placeholder: 'https://jellyfin.example.com', autocomplete: 'url' }],
        submitLabel: 'Continue',
        ...(error ? { error } : {}),
      },
    });

    const passwordForm = (error?: string): FormSpec => ({
      title: 'Sign in to Jellyfin',
      description: 'Your password goes to your Jellyfin server only; it is never stored.',
      fields: [
        { name: 'username', label: 'Username', type: 'text', autocomplete: 'username' },
        { name: 'password', label: 'Password', type: 'password', autocomplete: 'current-password', required: false },
      ],
      submitLabel: 'Sign in',
      ...(error ? { error } : {}),
    });

    /** How long the code can still be approved: Jellyfin keeps it about 10 minutes, our flow maybe less. */
    const codeLifetime = (flow: Flow): string => {
      const minutes = Math.floor(Math.min(flow.expiresAt - tools.clock.now(), QUICK_CONNECT_CODE_MS) / 60_000);
      const left = minutes >= 2 ? `about ${minutes} minutes` : minutes === 1 ? 'about a minute' : 'less than a minute';
      return `This page continues by itself once you have approved it. The code works for ${left}.`;
    };

    const waitDisplay = (code: string, flow: Flow): WaitDisplay => ({
      title: 'Approve this code in Jellyfin',
      code,
      instructions: ['In your Jellyfin app: Settings → Quick Connect → enter this code.', codeLifetime(flow)],
      actions: [{ label: 'Sign in with a password instead', action: 'password' }],
    });

    const expiredForm = (message: string): FormSpec => ({
      title: 'Quick Connect code not approved',
      description: message,
      fields: [],
      submitLabel: 'Get a new code',
      actions: [{ label: 'Sign in with a password instead', action: 'password' }],
    });

    /** What a flow keeps from step to step: its server, its device id, and the wrong passwords it has taken. */
    const kept = (server: string, deviceId: string, data: { wrongPasswords?: number | undefined }) => ({
      serverUrl: server,
      deviceId,
      ...(data.wrongPasswords ? { wrongPasswords: data.wrongPasswords } : {}),
    });

    /** Quick Connect if the server has it on, the password form otherwise. */
    async function start(flow: Flow, server: string): Promise<Step> {
      const deviceId = (flow.data.deviceId as string | undefined) ?? randomUUID().replaceAll('-', '');
      const { wrongPasswords } = v.parse(FlowData, flow.data);
      flow.data = kept(server, deviceId, { wrongPasswords });
      const enabled = await call(server, '/QuickConnect/Enabled', deviceId);
      if (!enabled.ok || (await enabled.json().catch(() => false)) !== true) return { kind: 'form', form: passwordForm() };
      const initiated = await json(await call(server, '/QuickConnect/Initiate', deviceId, { method: 'POST' }), QuickConnectResult, 'Quick Connect');
      flow.data = { ...kept(server, deviceId, { wrongPasswords }), secret: initiated.Secret, code: initiated.Code };
      return { kind: 'wait', display: waitDisplay(initiated.Code, flow), pollMs: POLL_MS };
    }

    function done(server: string, deviceId: string, result: v.InferOutput<typeof AuthenticationResult>): Step {
      const id = isFixed(server) ? result.User.Id : typedAccountId(result.User.Id, serverAddress(server)!.origin);
      return {
        kind: 'done',
        account: { id, name: result.User.Name },
        credentials: { accessToken: result.AccessToken, tokenType: 'MediaBrowser', extra: { serverUrl: server, deviceId, userId: result.User.Id } },
      };
    }

    /** The server a typed address reaches: the operator's when it is the same origin or the same SystemId, else its own. */
    async function typedServer(flow: Flow, typed: string): Promise<Step> {
      const address = serverAddress(/^[a-z][a-z0-9+.-]*:\/\//i.test(typed) ? typed : `https://${typed}`);
      if (!address) return serverForm('That does not look like a server address. Try https://jellyfin.example.com');
      if (fixed && address.origin === fixed.origin) return start(flow, fixed.base);
      let id: string | undefined;
      try {
        id = await systemId(address.base, flow.data.deviceId as string);
      } catch {
        // Refused as private, not resolving, not answering: one message, so the form tells nobody which internal names exist.
        id = undefined;
      }
      if (!id) return serverForm(NO_SERVER);
      if (fixed && id === (await fixedSystemId())) return start(flow, fixed.base);
      return start(flow, address.base);
    }

    /**
     * Password tries for `username` on `server`, shared by every sign-in and
     * instance (the key-value store, under a lock): counted before the server
     * is asked, so tries sent in parallel cannot slip past the limit together.
     * `waitSeconds` when this try must wait.
     */
    function triesKey(server: string, username: string): string {
      const digest = createHash('sha256').update(`${serverAddress(server)!.origin}\0${username.toLowerCase()}`).digest('base64url');
      return `password-tries:${digest}`;
    }

    async function takeTry(key: string): Promise<{ waitSeconds: number } | undefined> {
      return tools.lock(key, async () => {
        const stored = v.safeParse(Tries, await kv.get(key));
        const tries = stored.success ? stored.output : { failures: 0, last: 0 };
        const now = clock.now();
        if (tries.failures >= PASSWORD_TRIES_BEFORE_BACKOFF) {
          const backoff = Math.min(BACKOFF_BASE_MS * 2 ** (tries.failures - PASSWORD_TRIES_BEFORE_BACKOFF), BACKOFF_MAX_MS);
          const waitMs = tries.last + backoff - now;
          if (waitMs > 0) return { waitSeconds: Math.ceil(waitMs / 1000) };
        }
        await kv.set(key, { failures: tries.failures + 1, last: now }, { ttlSeconds: TRIES_KEPT_SECONDS });
        return undefined;
      });
    }

    /** A try the server did not judge (it failed to answer) is given back. */
    async function giveBackTry(key: string): Promise<void> {
      await tools.lock(key, async () => {
        const stored = v.safeParse(Tries, await kv.get(key));
        if (!stored.success) return;
        if (stored.output.failures <= 1) await kv.delete(key);
        else await kv.set(key, { ...stored.output, failures: stored.output.failures - 1 }, { ttlSeconds: TRIES_KEPT_SECONDS });
      });
    }

    async function signInWithPassword(flow: Flow, server: string, deviceId: string, wrongPasswords: number, fields: Record<string, string>): Promise<Step> {
      const username = fields.username?.trim() ?? '';
      if (!username) return { kind: 'form', form: passwordForm('Please type your username.') };
      const key = triesKey(server, username);
      const wait = await takeTry(key);
      if (wait) {
        const when = wait.waitSeconds < 90 ? `${wait.waitSeconds} seconds` : `${Math.ceil(wait.waitSeconds / 60)} minutes`;
        return { kind: 'form', form: passwordForm(`Too many wrong passwords for this username. Try again in ${when}.`) };
      }
      let response: Response;
      try {
        response = await call(server, '/Users/AuthenticateByName', deviceId, { method: 'POST', body: { Username: username, Pw: fields.password ?? '' } });
      } catch (error) {
        await giveBackTry(key);
        throw error;
      }
      if (response.status === 401 || response.status === 400) {
        const wrong = wrongPasswords + 1;
        if (wrong >= PASSWORD_TRIES_PER_FLOW) {
          throw new LinkgateError('too_many_attempts', `${wrong} wrong passwords in one sign-in`, { provider });
        }
        flow.data = { ...flow.data, wrongPasswords: wrong };
        const left = PASSWORD_TRIES_PER_FLOW - wrong;
        return { kind: 'form', form: passwordForm(`Wrong username or password. ${left} ${left === 1 ? 'try' : 'tries'} left.`) };
      }
      if (response.status >= 500) await giveBackTry(key);
      const result = await json(response, AuthenticationResult, 'the sign-in');
      await kv.delete(key);
      return done(server, deviceId, result);
    }

    const extra = (credentials: Credentials) => v.parse(StoredExtra, credentials.extra);

    return {
      // A Jellyfin access token acts as the user on that server: there are no scopes.
      access: [`use your Jellyfin account on ${fixed && !env.JELLYFIN_ALLOW_USER_SERVER ? new URL(fixed.origin).host : 'the server you choose'} as you: see your libraries, what you watched, and play media`],
      async begin(flow) {
        // Each link gets its own device id: Jellyfin keys sessions on user + device, so a shared one would make links log each other out.
        flow.data = { deviceId: randomUUID().replaceAll('-', '') };
        if (userServer) return serverForm();
        return start(flow, fixed!.base);
      },

      async advance(flow, input) {
        const data = v.parse(FlowData, flow.data);
        if (input.kind === 'callback') throw new LinkgateError('bad_request', 'Jellyfin is linked through this page, not a redirect', { provider });

        if (!data.serverUrl) {
          if (input.kind !== 'form') return serverForm();
          return typedServer(flow, (input.fields.server ?? '').trim());
        }
        const server = data.serverUrl;
        const deviceId = data.deviceId!;

        if (input.kind === 'form' && input.action === 'password') {
          flow.data = kept(server, deviceId, data);
          return { kind: 'form', form: passwordForm() };
        }

        if (input.kind === 'form' && 'username' in input.fields) return signInWithPassword(flow, server, deviceId, data.wrongPasswords ?? 0, input.fields);

        if (input.kind === 'form') return start(flow, server); // "Get a new code"

        // Polling a Quick Connect code.
        if (!data.secret) return { kind: 'form', form: passwordForm() };
        const state = await call(server, `/QuickConnect/Connect?secret=${encodeURIComponent(data.secret)}`, deviceId);
        if (state.status === 404 || state.status === 400 || state.status === 401) {
          flow.data = kept(server, deviceId, data);
          return { kind: 'form', form: expiredForm('The code expired or was refused. Get a new code to try again.') };
        }
        const result = await json(state, QuickConnectResult, 'Quick Connect');
        if (!result.Authenticated) return { kind: 'wait', display: waitDisplay(data.code ?? result.Code, flow), pollMs: POLL_MS };
        const response = await call(server, '/Users/AuthenticateWithQuickConnect', deviceId, { method: 'POST', body: { Secret: data.secret } });
        return done(server, deviceId, await json(response, AuthenticationResult, 'Quick Connect sign-in'));
      },

      tokenFields(credentials) {
        const { serverUrl: url, userId } = extra(credentials);
        return { serverUrl: url, externalUserId: userId };
      },

      /**
       * The id a stored link gets now: links keyed by what a typed server said
       * about itself (`<SystemId>:<user id>`, recognisable by the `serverId`
       * they carry) become `<user id>@<origin>` of the address they were made
       * with, or the bare user id when that is the operator's server. With no
       * JELLYFIN_SERVER_URL every server was typed, so every link is keyed by
       * its origin. Links whose address is not the operator's but carry no
       * `serverId` keep their id: they may be the operator's server under an
       * earlier JELLYFIN_SERVER_URL.
       */
      currentAccountId(credentials) {
        const parsed = v.safeParse(StoredExtra, credentials.extra);
        const address = parsed.success ? serverAddress(parsed.output.serverUrl) : undefined;
        if (!parsed.success || !address) return undefined;
        if (fixed && address.origin === fixed.origin) return parsed.output.userId;
        if (!fixed || parsed.output.serverId !== undefined) return typedAccountId(parsed.output.userId, address.origin);
        return undefined;
      },

      /**
       * The user's own server's API, for the proxy (`JELLYFIN_PROXY_ALLOW`,
       * e.g. "GET Users/Me, GET Items"): the server the link was made with,
       * with the link's token in Jellyfin's MediaBrowser header. A server the
       * user typed is reached only through the guarded fetch, as at sign-in:
       * its address is checked at connect time, never followed elsewhere.
       */
      api: {
        async request(credentials, call) {
          if (!credentials.accessToken) throw new LinkgateError('needs_reauth', 'this link holds no access token', { provider });
          const { serverUrl: server, deviceId } = extra(credentials);
          const base = `${server}/`;
          const url = new URL(call.path, base);
          if (!url.href.startsWith(base)) throw new LinkgateError('bad_request', 'the path leaves the Jellyfin server', { provider });
          for (const [name, value] of call.query) url.searchParams.append(name, value);
          const headers = { ...call.headers, authorization: mediaBrowser(client, deviceId, credentials.accessToken) };
          try {
            // A bot's call goes where the allowlist let it, never on to where a redirect points.
            return await send(server, url.href, { method: call.method, headers, ...(call.body === undefined ? {} : { body: call.body }) }, 'manual');
          } catch (error) {
            // The guard refusing the user's server (now on a private address) is the server's fault, not the bot's request's.
            if (error instanceof LinkgateError && error.code === 'bad_request') throw new LinkgateError('provider_unavailable', `the Jellyfin server refused: ${error.message}`, { provider, cause: error });
            throw error;
          }
        },
      },

      /**
       * A token another system got for this server (the seed registry's
       * `user_auth`): keyed as a link made here would be, the operator's
       * server by its configured address; another server only when users may
       * type theirs.
       */
      adopt(credentials) {
        const parsed = v.safeParse(StoredExtra, credentials.extra);
        const address = parsed.success ? serverAddress(parsed.output.serverUrl) : undefined;
        if (!parsed.success || !address || !credentials.accessToken) return undefined;
        const { userId, deviceId } = parsed.output;
        const onFixed = fixed !== undefined && address.origin === fixed.origin;
        if (!onFixed && !userServer) return undefined;
        return {
          accountId: onFixed ? userId : typedAccountId(userId, address.origin),
          credentials: { accessToken: credentials.accessToken, tokenType: 'MediaBrowser', extra: { serverUrl: onFixed ? fixed.base : address.base, deviceId, userId } },
        };
      },

      async verify(credentials) {
        const { serverUrl: url, deviceId } = extra(credentials);
        const response = await call(url, '/Users/Me', deviceId, { token: credentials.accessToken! });
        if (response.status === 401 || response.status === 403) return false;
        await json(response, v.object({ Id: v.string() }), 'the current user');
        return true;
      },

      async revoke(credentials) {
        const { serverUrl: url, deviceId } = extra(credentials);
        const response = await call(url, '/Sessions/Logout', deviceId, { method: 'POST', token: credentials.accessToken! });
        if (!response.ok && response.status !== 401) throw new LinkgateError('provider_unavailable', `Jellyfin answered ${response.status} to the logout`, { provider });
      },
    };
  },
});
