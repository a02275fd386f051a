/**
 * Jellyfin has no OAuth: the user approves a Quick Connect code in a Jellyfin
 * app they are signed into, or types their username and password into our
 * page. Only the resulting access token is stored, with the server URL and
 * the device id it belongs to. API: https://api.jellyfin.org (QuickConnect,
 * User and Session controllers of jellyfin/jellyfin).
 */
import { randomUUID } from 'node:crypto';
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

const bool = v.pipe(v.picklist(['true', 'false', '1', '0'], 'must be true or false'), v.transform((s) => s === 'true' || s === '1'));
const serverUrl = v.pipe(
  v.string(),
  v.url('must be an absolute URL'),
  v.check((s) => /^https?:\/\//.test(s), 'must be an http(s) URL'),
  v.transform((s) => s.replace(/\/+$/, '')),
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

const QuickConnectResult = v.object({ Authenticated: v.boolean(), Secret: v.string(), Code: v.string() });
const AuthenticationResult = v.object({
  AccessToken: v.pipe(v.string(), v.minLength(1)),
  User: v.object({ Id: v.pipe(v.string(), v.minLength(1)), Name: v.string() }),
});
const FlowData = v.object({
  serverUrl: v.optional(v.string()),
  /** The typed server's SystemId, part of the account id (see `accountId`). */
  serverId: v.optional(v.string()),
  deviceId: v.optional(v.string()),
  secret: v.optional(v.string()),
  code: v.optional(v.string()),
});
/** `/System/Info/Public`: `Id` is the server's SystemId, a Guid ("N" format on current servers). */
const PublicInfo = v.object({
  Id: v.pipe(v.string(), v.regex(/^[0-9A-Fa-f-]{8,64}$/), v.transform((id) => id.toLowerCase().replaceAll('-', ''))),
  ProductName: v.optional(v.string()),
});

/**
 * The link's external account id. On the operator's server a Jellyfin user id
 * is unique, and is the id itself, as it always was. A server the user typed
 * is one of many, each with its own user ids: the id is
 * `<server SystemId>:<user id>`, so the same user id on two servers is two
 * accounts. Links stored before this (a bare user id from a typed server)
 * stay readable as they are and get the new form when the user links again;
 * until then, linking that same account for another bot user is not refused
 * as already linked.
 */
const accountId = (serverId: string | undefined, userId: string) => (serverId ? `${serverId}:${userId}` : userId);

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
    const fixedServer = env.JELLYFIN_SERVER_URL;
    const userServer = !fixedServer || env.JELLYFIN_ALLOW_USER_SERVER;

    /** The operator's own server is trusted like any provider; a typed one goes through the guarded fetch. */
    async function call(server: string, path: string, deviceId: string, init: { method?: string; body?: unknown; token?: string } = {}): Promise<Response> {
      const headers: Record<string, string> = { authorization: mediaBrowser(client, deviceId, init.token), accept: 'application/json' };
      const body = init.body === undefined ? undefined : JSON.stringify(init.body);
      if (body !== undefined) headers['content-type'] = 'application/json';
      const request = { method: init.method ?? 'GET', headers, ...(body !== undefined ? { body } : {}) };
      if (server === fixedServer) return tools.fetch(`${server}${path}`, request);
      return tools.untrustedFetch(`${server}${path}`, request, { allowPrivate: env.JELLYFIN_ALLOW_PRIVATE_SERVERS });
    }

    async function json<S extends v.GenericSchema>(response: Response, schema: S, what: string): Promise<v.InferOutput<S>> {
      if (response.status >= 500) throw new LinkgateError('provider_unavailable', `Jellyfin answered ${response.status} to ${what}`, { provider });
      const parsed = v.safeParse(schema, await response.json().catch(() => undefined));
      if (!response.ok || !parsed.success) throw new LinkgateError('provider_response_invalid', `Jellyfin sent an unexpected answer to ${what}`, { provider });
      return parsed.output;
    }

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

    /** Quick Connect if the server has it on, the password form otherwise. */
    /** The server a flow signs in to: its URL, and its SystemId when the user typed it. */
    const serverOf = (server: string, serverId: string | undefined) => ({ serverUrl: server, ...(serverId ? { serverId } : {}) });

    async function start(flow: Parameters<ProviderInstance['begin']>[0], server: string, serverId: string | undefined): Promise<Step> {
      const deviceId = (flow.data.deviceId as string | undefined) ?? randomUUID().replaceAll('-', '');
      flow.data = { ...serverOf(server, serverId), deviceId };
      const enabled = await call(server, '/QuickConnect/Enabled', deviceId);
      if (!enabled.ok || (await enabled.json().catch(() => false)) !== true) return { kind: 'form', form: passwordForm() };
      const initiated = await json(await call(server, '/QuickConnect/Initiate', deviceId, { method: 'POST' }), QuickConnectResult, 'Quick Connect');
      flow.data = { ...serverOf(server, serverId), deviceId, secret: initiated.Secret, code: initiated.Code };
      return { kind: 'wait', display: waitDisplay(initiated.Code, flow), pollMs: POLL_MS };
    }

    function done(server: string, serverId: string | undefined, deviceId: string, result: v.InferOutput<typeof AuthenticationResult>): Step {
      return {
        kind: 'done',
        account: { id: accountId(serverId, result.User.Id), name: result.User.Name },
        credentials: {
          accessToken: result.AccessToken,
          tokenType: 'MediaBrowser',
          extra: { serverUrl: server, deviceId, userId: result.User.Id, ...(serverId ? { serverId } : {}) },
        },
      };
    }

    const extra = (credentials: Credentials) => v.parse(v.object({ serverUrl: v.string(), deviceId: v.string(), userId: v.string() }), credentials.extra);

    return {
      // A Jellyfin access token acts as the user on that server: there are no scopes.
      access: [`use your Jellyfin account on ${fixedServer && !env.JELLYFIN_ALLOW_USER_SERVER ? new URL(fixedServer).host : 'the server you choose'} as you: see your libraries, what you watched, and play media`],
      async begin(flow) {
        // Each link gets its own device id: Jellyfin keys sessions on user + device, so a shared one would make links log each other out.
        flow.data = { deviceId: randomUUID().replaceAll('-', '') };
        if (userServer) return serverForm();
        return start(flow, fixedServer!, undefined);
      },

      async advance(flow, input) {
        const data = v.parse(FlowData, flow.data);
        if (input.kind === 'callback') throw new LinkgateError('bad_request', 'Jellyfin is linked through this page, not a redirect', { provider });

        if (!data.serverUrl) {
          if (input.kind !== 'form') return serverForm();
          const typed = (input.fields.server ?? '').trim();
          const parsed = v.safeParse(serverUrl, /^[a-z]+:\/\//i.test(typed) ? typed : `https://${typed}`);
          if (!parsed.success) return serverForm('That does not look like a server address. Try https://jellyfin.example.com');
          let serverId: string;
          try {
            const info = await call(parsed.output, '/System/Info/Public', data.deviceId!);
            const body = v.safeParse(PublicInfo, await info.json().catch(() => undefined));
            if (!info.ok || !body.success) return serverForm('No Jellyfin server answered at that address.');
            serverId = body.output.Id;
          } catch (error) {
            if (error instanceof LinkgateError && error.code === 'bad_request') return serverForm(`That address cannot be used: ${error.message}.`);
            return serverForm('No Jellyfin server answered at that address.');
          }
          // The operator's own server, typed: its accounts keep their plain ids.
          return start(flow, parsed.output, parsed.output === fixedServer ? undefined : serverId);
        }
        const server = data.serverUrl;
        const serverId = data.serverId;
        const deviceId = data.deviceId!;

        if (input.kind === 'form' && input.action === 'password') {
          flow.data = { ...serverOf(server, serverId), deviceId };
          return { kind: 'form', form: passwordForm() };
        }

        if (input.kind === 'form' && 'username' in input.fields) {
          const username = input.fields.username?.trim() ?? '';
          if (!username) return { kind: 'form', form: passwordForm('Please type your username.') };
          const response = await call(server, '/Users/AuthenticateByName', deviceId, { method: 'POST', body: { Username: username, Pw: input.fields.password ?? '' } });
          if (response.status === 401 || response.status === 400) return { kind: 'form', form: passwordForm('Wrong username or password.') };
          return done(server, serverId, deviceId, await json(response, AuthenticationResult, 'the sign-in'));
        }

        if (input.kind === 'form') return start(flow, server, serverId); // "Get a new code"

        // Polling a Quick Connect code.
        if (!data.secret) return { kind: 'form', form: passwordForm() };
        const state = await call(server, `/QuickConnect/Connect?secret=${encodeURIComponent(data.secret)}`, deviceId);
        if (state.status === 404 || state.status === 400 || state.status === 401) {
          flow.data = { ...serverOf(server, serverId), deviceId };
          return { kind: 'form', form: expiredForm('The code expired or was refused. Get a new code to try again.') };
        }
        const result = await json(state, QuickConnectResult, 'Quick Connect');
        if (!result.Authenticated) return { kind: 'wait', display: waitDisplay(data.code ?? result.Code, flow), pollMs: POLL_MS };
        const response = await call(server, '/Users/AuthenticateWithQuickConnect', deviceId, { method: 'POST', body: { Secret: data.secret } });
        return done(server, serverId, deviceId, await json(response, AuthenticationResult, 'Quick Connect sign-in'));
      },

      tokenFields(credentials) {
        const { serverUrl: url, userId } = extra(credentials);
        return { serverUrl: url, externalUserId: userId };
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
