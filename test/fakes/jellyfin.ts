/**
 * A fake Jellyfin server on 127.0.0.1 that speaks Jellyfin's real HTTP API for what an account-linking provider
 * needs: public server info, Quick Connect (initiate / poll / approve / exchange), username + password sign-in,
 * the current user, and logout. Only the server URL has to be swapped to point a provider at it.
 *
 * Where the behaviour comes from (jellyfin/jellyfin at master c3ed1407ca698b0905de99da87b67415e6a62dbd unless noted):
 * - Jellyfin.Api/BaseJellyfinApiController.cs: [ApiController], [Route("[controller]")]: routes are case-insensitive,
 *   a missing [Required] query/body value answers 400 application/problem+json (ASP.NET Core model validation).
 * - Jellyfin.Api/Formatters/PascalCaseJsonProfileFormatter.cs + Jellyfin.Server/Extensions/ApiServiceCollectionExtensions.cs:
 *   the default (application/json) output is PascalCase; src/Jellyfin.Extensions/Json/JsonDefaults.cs: nulls are
 *   omitted (WhenWritingNull); JsonGuidConverter writes Guids as "N" (32 lowercase hex, no dashes);
 *   JsonDateTimeConverter writes UTC dates with 7 fractional digits ("…T12:00:00.1230000Z").
 * - Jellyfin.Api/Middleware/ExceptionMiddleware.cs: ArgumentException → 400, AuthenticationException → 401,
 *   SecurityException → 403, ResourceNotFoundException → 404, anything else → 500; body text/plain
 *   "Error processing request." (outside the Development environment).
 * - Jellyfin.Api/Controllers/SystemController.cs GET /System/Info/Public (anonymous) →
 *   Emby.Server.Implementations/SystemManager.cs GetPublicSystemInfo + MediaBrowser.Model/System/PublicSystemInfo.cs:
 *   {LocalAddress, ServerName, Version, ProductName, OperatingSystem: "" (obsolete, still serialised), Id,
 *   StartupWizardCompleted}. ProductName is the assembly product "Jellyfin Server" (Emby.Naming/Properties/AssemblyInfo.cs and siblings);
 *   Id is the server's SystemId, a Guid "N" (Emby.Server.Implementations/Devices/DeviceId.cs).
 * - Jellyfin.Api/Controllers/QuickConnectController.cs:
 *   GET /QuickConnect/Enabled → bare JSON boolean;
 *   POST /QuickConnect/Initiate → QuickConnectResult; disabled → 401 Unauthorized("Quick connect is disabled");
 *   GET /QuickConnect/Connect?secret= → QuickConnectResult; unknown secret → 404 NotFound("Unknown secret");
 *   disabled → 401; POST /QuickConnect/Authorize?code=&userId= ([Authorize]) is what approve() stands in for.
 * - Emby.Server.Implementations/QuickConnect/QuickConnectManager.cs: TryConnect first checks DeviceId, Device, Client
 *   and Version of the MediaBrowser header (ArgumentException → 400, so a missing header is a 400 even when Quick
 *   Connect is disabled) and only then whether Quick Connect is enabled (→ 401); Code is 6 digits (100000–999999);
 *   Secret is Convert.ToHexString of 32 random bytes (64 uppercase hex); requests expire 10 minutes after DateAdded.
 *   Authorizing sets DateAdded to now + 1 minute, creates the session/token right away (SessionManager.AuthenticateDirect
 *   with the *requesting* device's DeviceId/Device/Client/Version) and keeps the AuthenticationResult for 10 minutes;
 *   authorizing an already-authorized request throws InvalidOperationException. The secret is not consumed by the exchange.
 * - MediaBrowser.Model/QuickConnect/QuickConnectResult.cs: {Authenticated, Secret, Code, DeviceId, DeviceName, AppName,
 *   AppVersion, DateAdded}.
 * - Jellyfin.Api/Controllers/UserController.cs: POST /Users/AuthenticateByName body {Username, Pw}
 *   (Jellyfin.Api/Models/UserDtos/AuthenticateUserByName.cs); POST /Users/AuthenticateWithQuickConnect body {Secret}
 *   (Models/UserDtos/QuickConnectDto.cs, [Required]) → QuickConnectManager.GetAuthorizedRequest: a secret that is not
 *   (yet) authorized throws ResourceNotFoundException → 404 (not 400/401); disabled → AuthenticationException → 401.
 *   GET /Users/Me ([Authorize]) → UserDto. The exchange does not read the MediaBrowser header at all.
 * - Emby.Server.Implementations/Session/SessionManager.cs AuthenticateNewSessionInternal: App, DeviceId, DeviceName and
 *   AppVersion are required (ArgumentException → 400, checked before the password); a wrong password or unknown user →
 *   AuthenticationException("Invalid username or password entered.") → 401 (Jellyfin.Server.Implementations/Users/
 *   UserManager.cs AuthenticateUser returns null on a bad password; user names match case-insensitively).
 *   GetAuthorizationToken: "Logout any existing sessions for the user on this device", i.e. a new sign-in of the same
 *   user with the same DeviceId revokes that user's earlier token(s) for the DeviceId; other DeviceIds are untouched.
 *   Session Id = MD5 of Client + DeviceId ("N"); AuthenticationResult (MediaBrowser.Controller/Authentication/
 *   AuthenticationResult.cs) = {User: UserDto, SessionInfo: SessionInfoDto, AccessToken, ServerId}.
 * - src/Jellyfin.Database/…/Entities/Security/Device.cs: AccessToken = Guid.NewGuid().ToString("N").
 * - Jellyfin.Api/Controllers/SessionController.cs POST /Sessions/Logout ([Authorize]) → SessionManager.Logout(token):
 *   deletes the device row (the token) → 204.
 * - Jellyfin.Server.Implementations/Security/AuthorizationContext.cs: the `Authorization: MediaBrowser k="v", …` header is
 *   split by GetParts (quotes optional, values WebUtility.UrlDecode'd, keys case-sensitive); the `Emby` scheme, the
 *   X-Emby-Authorization header, X-Emby-Token, X-MediaBrowser-Token and ?api_key= are read only when
 *   EnableLegacyAuthorization is on; ?ApiKey= always. Token="" counts as no token.
 *   MediaBrowser.Model/Configuration/ServerConfiguration.cs: `public bool EnableLegacyAuthorization { get; set; }`
 *   (default false at master; jellyfin/jellyfin PR #13306 added it defaulting to true, PR #15559 / #16992 made false the
 *   default for 10.12/12.0, issue #15962; 10.11.x still defaults to true). QuickConnectAvailable defaults to true.
 * - Jellyfin.Api/Auth/CustomAuthenticationHandler.cs + Emby.Server.Implementations/HttpServer/Security/AuthService.cs:
 *   an unknown token fails authentication; [Authorize] endpoints then challenge → 401 with an empty body. Anonymous
 *   endpoints ignore a bad token.
 * - tests/Jellyfin.Server.Integration.Tests/AuthHelper.cs (URL-encoded values, unquoted Token=…), and
 *   jellyfin/jellyfin-sdk-typescript src/utils/authentication.ts (`MediaBrowser Client="…", Device="…", DeviceId="…",
 *   Version="…", Token="…"`, Token="" before sign-in): the header shapes real clients send.
 *
 * Not confirmed (fake's choice): the body of Unauthorized("…")/NotFound("…") (we send the string as a JSON string, which
 * is what the PascalCase System.Text.Json formatter placed first would write); the exact ProblemDetails fields; the
 * session Id hash input encoding; UserDto/SessionInfoDto fields beyond the ones above are a plausible subset; the
 * default Version string (pass `version`); LocalAddress (the real server derives it from the request/network config).
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { listenLocal, readBody } from './http.ts';

export type FakeFault = 'http500' | 'malformed' | 'hang';
export type FakeJellyfinEndpoint = 'initiate' | 'connect' | 'authenticate' | 'me' | 'logout';

export interface FakeJellyfinUser {
  /** 32 lowercase hex (a Guid in Jellyfin's "N" format). */
  id: string;
  name: string;
  /** Empty string: the user has no password (any empty Pw signs in). */
  password: string;
}

export interface FakeJellyfinRequest {
  method: string;
  path: string;
  search: string;
  /** Parsed JSON body with any `Pw` key removed; undefined when there was none (or it was not JSON). */
  body?: unknown;
}

export interface FakeJellyfin {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Server id (SystemId), 32 lowercase hex; it is the ServerId in every DTO. */
  serverId: string;
  /** Accounts by id (32-hex Jellyfin user id). Edit freely. */
  users: Map<string, FakeJellyfinUser>;
  /** As the dashboard's "Enable Quick Connect on this server" switch; may be flipped at any time. */
  quickConnectEnabled: boolean;
  /** HTTP requests per endpoint (faulted ones included). `authenticateQuickConnect`/`authenticateByName` share the 'authenticate' fault queue. */
  counts: { initiate: number; connect: number; authenticateQuickConnect: number; authenticateByName: number; me: number; logout: number };
  /** The user approves a pending Quick Connect code in their app (as POST /QuickConnect/Authorize?code= would): creates the session and its token for the requesting device right away. Throws for an unknown/expired/already-approved code, an unknown user, or when Quick Connect is disabled. */
  approve(code: string, userId: string): void;
  /** Expire one Quick Connect request by code (pending or approved), as the server's 10-minute timeout would. Throws for an unknown code. Tokens already issued stay valid. */
  expireQuickConnect(code: string): void;
  /** Whether an access token is currently valid (issued, not logged out, not replaced by a newer sign-in on the same DeviceId). */
  isActive(token: string): boolean;
  /** Every MediaBrowser Authorization header received (any endpoint), parsed, for assertions (Client, Device, DeviceId, Version, Token?). */
  authHeaders: Array<Record<string, string>>;
  /** Every request received, in order, with its JSON body minus `Pw` (passwords are never recorded). */
  requests: FakeJellyfinRequest[];
  /** Fault injection for the next N requests (default 1) to an endpoint: 500, 200 with a cut-off JSON body, or no answer until close(). */
  failNext(kind: FakeJellyfinEndpoint, fault: FakeFault, times?: number): void;
  /** Sign a user in directly (as another client would) and return the token; same DeviceId rules as the HTTP sign-in. */
  issueToken(userId: string, deviceId?: string): string;
  close(): Promise<void>;
}

export interface StartFakeJellyfinOptions {
  /** Default true (ServerConfiguration.QuickConnectAvailable). */
  quickConnectEnabled?: boolean;
  /** Default "Fake Jellyfin". */
  serverName?: string;
  /** Default "10.11.0". */
  version?: string;
  /** Accept the legacy `Emby` scheme, X-Emby-Authorization, X-Emby-Token, X-MediaBrowser-Token, ?api_key=. Default false (12.0's default). */
  legacyAuthorization?: boolean;
  /** Quick Connect timeout; default 10 minutes (QuickConnectManager.Timeout). */
  quickConnectTimeoutMs?: number;
  /** Default true. */
  startupWizardCompleted?: boolean;
  /** The SystemId `/System/Info/Public` answers (default: a new Guid); a server can claim any, another's included. */
  serverId?: string;
}

const QC_TIMEOUT_MS = 10 * 60_000;
const QC_AUTHORIZED_GRACE_MS = 60_000; // AuthorizeRequest: DateAdded = UtcNow + 1 minute
const GENERIC_ERROR = 'Error processing request.';
const JSON_TYPE = 'application/json; charset=utf-8';
const MIN_DATE = '0001-01-01T00:00:00.0000000Z';

// ---------------------------------------------------------------------------------------------
// MediaBrowser authorization header
// ---------------------------------------------------------------------------------------------

/** WebUtility.UrlDecode: `+` → space, `%XX` → byte (UTF-8), invalid escapes left as they are. */
function urlDecode(value: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const ch = value[i]!;
    if (ch === '+') {
      bytes.push(0x20);
    } else if (ch === '%' && /^[0-9a-fA-F]{2}$/.test(value.slice(i + 1, i + 3))) {
      bytes.push(Number.parseInt(value.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      for (const b of Buffer.from(ch, 'utf8')) bytes.push(b);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

const trimQuotes = (s: string) => s.replace(/^"+|"+$/g, '');

/** AuthorizationContext.GetParts, character for character: `"` toggles quoting, unquoted `,` ends a value, unquoted `=` ends a key. */
function getParts(input: string): Record<string, string> {
  const result: Record<string, string> = {};
  let escaped = false;
  let start = 0;
  let key = '';
  let i: number;
  for (i = 0; i < input.length; i++) {
    const ch = input[i];
    if (ch === '"' || ch === ',') {
      escaped = !escaped === (ch === '"');
      if (ch === ',' && !escaped) {
        if (start < i) {
          result[key] = urlDecode(trimQuotes(input.slice(start, i)));
          key = '';
        }
        start = i + 1;
      }
    } else if (!escaped && ch === '=') {
      key = input.slice(start, i).trim();
      start = i + 1;
    }
  }
  if (start < i) result[key] = urlDecode(trimQuotes(input.slice(start, i)));
  return result;
}

/**
 * Parse `MediaBrowser Client="…", Device="…", DeviceId="…", Version="…", Token="…"` the way Jellyfin does
 * (AuthorizationContext.GetAuthorization): undefined unless the scheme is MediaBrowser (or Emby with `allowEmbyScheme`).
 * Keys are returned as sent (Jellyfin looks them up case-sensitively).
 */
export function parseMediaBrowserAuthorization(header: string, opts: { allowEmbyScheme?: boolean } = {}): Record<string, string> | undefined {
  const firstSpace = header.indexOf(' ');
  if (firstSpace === -1) return undefined;
  const scheme = header.slice(0, firstSpace).toLowerCase();
  if (scheme !== 'mediabrowser' && !(opts.allowEmbyScheme && scheme === 'emby')) return undefined;
  return getParts(header.slice(firstSpace + 1));
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------------

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly kind: 'text' | 'json' | 'empty' | 'problem',
    readonly payload?: unknown,
  ) {
    super(`HTTP ${status}`);
  }
}

/** ExceptionMiddleware's answer for ArgumentException (400), AuthenticationException (401), ResourceNotFoundException (404). */
const middlewareError = (status: number) => new HttpError(status, 'text', GENERIC_ERROR);
/** Unauthorized("…") / NotFound("…") from a controller. */
const objectResult = (status: number, message: string) => new HttpError(status, 'json', message);
/** [Authorize] challenge: 401, no body. */
const challenge = () => new HttpError(401, 'empty');
/** [ApiController] model validation. */
function validationProblem(field: string, message: string): HttpError {
  return new HttpError(400, 'problem', {
    type: 'https://tools.ietf.org/html/rfc9110#section-15.5.1',
    title: 'One or more validation errors occurred.',
    status: 400,
    errors: { [field]: [message] },
    traceId: `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-00`,
  });
}


function send(res: ServerResponse, status: number, contentType: string | undefined, text: string): void {
  res.statusCode = status;
  if (contentType) res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.setHeader('Server', 'Kestrel');
  res.end(text);
}

const sendJson = (res: ServerResponse, status: number, body: unknown) => send(res, status, JSON_TYPE, JSON.stringify(body));

function sendError(res: ServerResponse, err: HttpError): void {
  switch (err.kind) {
    case 'text':
      return send(res, err.status, 'text/plain', String(err.payload));
    case 'json':
      return sendJson(res, err.status, err.payload);
    case 'problem':
      return send(res, err.status, 'application/problem+json; charset=utf-8', JSON.stringify(err.payload));
    case 'empty':
      return send(res, err.status, undefined, '');
  }
}

/** A UTC instant as Jellyfin's JsonDateTimeConverter writes it (7 fractional digits, Z). */
function jellyfinDate(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$10000Z');
}

const guidN = () => randomUUID().replaceAll('-', '');

/** [FromBody] JSON: System.Text.Json web defaults read property names case-insensitively. */
function jsonField(body: Record<string, unknown>, name: string): unknown {
  const key = Object.keys(body).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : body[key];
}

function isJsonContentType(req: IncomingMessage): boolean {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  return type === 'application/json' || type === 'text/json' || /^application\/[^/]+\+json$/.test(type);
}

/** [FromBody, Required] object: 415 for a non-JSON content type, 400 problem for an empty or unparsable body. */
function requireJsonObject(req: IncomingMessage, raw: Buffer): Record<string, unknown> {
  if (!isJsonContentType(req)) throw new HttpError(415, 'problem', { type: 'https://tools.ietf.org/html/rfc9110#section-15.5.16', title: 'Unsupported Media Type', status: 415 });
  if (raw.length === 0) throw validationProblem('', 'A non-empty request body is required.');
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw validationProblem('$', 'The JSON value could not be converted.');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw validationProblem('$', 'The JSON value could not be converted.');
  return parsed as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------

interface TokenRecord {
  userId: string;
  deviceId: string;
  deviceName: string;
  client: string;
  version: string;
  createdAt: number;
}

interface QuickConnectRequest {
  authenticated: boolean;
  secret: string;
  code: string;
  deviceId: string;
  deviceName: string;
  appName: string;
  appVersion: string;
  dateAdded: number;
}

interface AuthInfo {
  client?: string;
  device?: string;
  deviceId?: string;
  version?: string;
  token?: string;
  /** The token's record when the token is valid. */
  record?: TokenRecord;
}

export async function startFakeJellyfin(opts: StartFakeJellyfinOptions = {}): Promise<FakeJellyfin> {
  const serverName = opts.serverName ?? 'Fake Jellyfin';
  const version = opts.version ?? '10.11.0';
  const legacy = opts.legacyAuthorization ?? false;
  const qcTimeoutMs = opts.quickConnectTimeoutMs ?? QC_TIMEOUT_MS;
  const startupWizardCompleted = opts.startupWizardCompleted ?? true;
  const serverId = opts.serverId ?? guidN();

  const users = new Map<string, FakeJellyfinUser>();
  const counts: FakeJellyfin['counts'] = { initiate: 0, connect: 0, authenticateQuickConnect: 0, authenticateByName: 0, me: 0, logout: 0 };
  const authHeaders: Array<Record<string, string>> = [];
  const requests: FakeJellyfinRequest[] = [];
  const tokens = new Map<string, TokenRecord>();
  /** QuickConnectManager._currentRequests, keyed by code. */
  const pending = new Map<string, QuickConnectRequest>();
  /** QuickConnectManager._authorizedSecrets: secret → (timestamp, AuthenticationResult). */
  const authorized = new Map<string, { timestamp: number; result: unknown }>();
  const faults: Record<FakeJellyfinEndpoint, FakeFault[]> = { initiate: [], connect: [], authenticate: [], me: [], logout: [] };
  let closing = false;

  const local = await listenLocal();
  const { server, origin: url } = local;

  // --- state -------------------------------------------------------------------------------

  const findUser = (id: string) => users.get(id) ?? [...users.values()].find((u) => u.id === id);
  /** UserManager.GetUserByName: case-insensitive. */
  const findUserByName = (name: string) => [...users.values()].find((u) => u.name.toUpperCase() === name.toUpperCase());

  /** QuickConnectManager.ExpireRequests. */
  function expireRequests(): void {
    const minTime = Date.now() - qcTimeoutMs;
    for (const [code, request] of pending) if (request.dateAdded < minTime) pending.delete(code);
    for (const [secret, { timestamp }] of authorized) if (timestamp < minTime) authorized.delete(secret);
  }

  function assertQuickConnectActive(): void {
    if (!fake.quickConnectEnabled) throw new Error('Quick connect is not active on this server');
  }

  function userDto(user: FakeJellyfinUser, lastLogin: number | undefined) {
    return {
      Name: user.name,
      ServerId: serverId,
      Id: user.id,
      HasPassword: user.password !== '',
      HasConfiguredPassword: user.password !== '',
      HasConfiguredEasyPassword: false,
      EnableAutoLogin: false,
      ...(lastLogin === undefined ? {} : { LastLoginDate: jellyfinDate(lastLogin), LastActivityDate: jellyfinDate(lastLogin) }),
      Configuration: {
        PlayDefaultAudioTrack: true,
        SubtitleLanguagePreference: '',
        DisplayMissingEpisodes: false,
        GroupedFolders: [],
        SubtitleMode: 'Default',
        DisplayCollectionsView: false,
        EnableLocalPassword: false,
        OrderedViews: [],
        LatestItemsExcludes: [],
        MyMediaExcludes: [],
        HidePlayedInLatest: true,
        RememberAudioSelections: true,
        RememberSubtitleSelections: true,
        EnableNextEpisodeAutoPlay: true,
      },
      Policy: {
        IsAdministrator: false,
        IsHidden: true,
        IsDisabled: false,
        EnableRemoteAccess: true,
        EnableUserPreferenceAccess: true,
        RemoteClientBitrateLimit: 0,
        AuthenticationProviderId: 'Jellyfin.Server.Implementations.Users.DefaultAuthenticationProvider',
        PasswordResetProviderId: 'Jellyfin.Server.Implementations.Users.DefaultPasswordResetProvider',
      },
    };
  }

  /** SessionManager.GetAuthorizationToken + AuthenticateNewSessionInternal's result. */
  function signIn(user: FakeJellyfinUser, device: { deviceId: string; deviceName: string; client: string; version: string }, remoteEndPoint?: string) {
    for (const [token, record] of tokens) {
      if (record.userId === user.id && record.deviceId === device.deviceId) tokens.delete(token); // Logout(existing device)
    }
    const now = Date.now();
    const accessToken = guidN();
    tokens.set(accessToken, { userId: user.id, ...device, createdAt: now });
    return {
      User: userDto(user, now),
      SessionInfo: {
        PlayState: { CanSeek: false, IsPaused: false, IsMuted: false, RepeatMode: 'RepeatNone', PlaybackOrder: 'Default' },
        AdditionalUsers: [],
        Capabilities: { PlayableMediaTypes: [], SupportedCommands: [], SupportsMediaControl: false, SupportsPersistentIdentifier: true },
        ...(remoteEndPoint === undefined ? {} : { RemoteEndPoint: remoteEndPoint }),
        PlayableMediaTypes: [],
        Id: createHash('md5').update(device.client + device.deviceId, 'utf8').digest('hex'),
        UserId: user.id,
        UserName: user.name,
        Client: device.client,
        LastActivityDate: jellyfinDate(now),
        LastPlaybackCheckIn: MIN_DATE,
        DeviceName: device.deviceName,
        DeviceId: device.deviceId,
        ApplicationVersion: device.version,
        IsActive: true,
        SupportsMediaControl: false,
        SupportsRemoteControl: false,
        NowPlayingQueue: [],
        NowPlayingQueueFullItems: [],
        HasCustomDeviceName: false,
        ServerId: serverId,
        SupportedCommands: [],
      },
      AccessToken: accessToken,
      ServerId: serverId,
    };
  }

  /** AuthorizationContext.GetAuthorizationInfoFromDictionary (+ the recording of every parsed header). */
  function authInfo(req: IncomingMessage, query: URLSearchParams): AuthInfo {
    let raw = req.headers.authorization;
    if (legacy && !raw) raw = headerValue(req, 'x-emby-authorization');
    const parts = raw ? parseMediaBrowserAuthorization(raw, { allowEmbyScheme: legacy }) : undefined;
    if (parts) authHeaders.push({ ...parts });
    const info: AuthInfo = {
      client: parts?.['Client'],
      device: parts?.['Device'],
      deviceId: parts?.['DeviceId'],
      version: parts?.['Version'],
      token: parts?.['Token'],
    };
    if (legacy && !info.token) info.token = headerValue(req, 'x-emby-token');
    if (legacy && !info.token) info.token = headerValue(req, 'x-mediabrowser-token');
    if (!info.token) info.token = queryValue(query, 'ApiKey');
    if (legacy && !info.token) info.token = queryValue(query, 'api_key');
    if (!info.token) return { ...info, token: undefined };
    const record = tokens.get(info.token);
    if (record && findUser(record.userId)) {
      info.record = record;
      // "TODO: Remove these checks for IsNullOrWhiteSpace": missing fields come from the token's device row.
      if (!info.client?.trim()) info.client = record.client;
      if (!info.deviceId?.trim()) info.deviceId = record.deviceId;
      if (!info.device?.trim()) info.device = record.deviceName;
      if (!info.version?.trim()) info.version = record.version;
    }
    return info;
  }

  function headerValue(req: IncomingMessage, name: string): string | undefined {
    const value = req.headers[name];
    return Array.isArray(value) ? value[0] : value;
  }

  /** ASP.NET's IQueryCollection (model binding and the auth context alike) is case-insensitive. */
  function queryValue(query: URLSearchParams, name: string): string | undefined {
    for (const [k, v] of query) if (k.toLowerCase() === name.toLowerCase()) return v;
    return undefined;
  }

  const requireToken = (info: AuthInfo): TokenRecord => {
    if (!info.record) throw challenge();
    return info.record;
  };

  const qcResult = (r: QuickConnectRequest) => ({
    Authenticated: r.authenticated,
    Secret: r.secret,
    Code: r.code,
    DeviceId: r.deviceId,
    DeviceName: r.deviceName,
    AppName: r.appName,
    AppVersion: r.appVersion,
    DateAdded: jellyfinDate(r.dateAdded),
  });

  function newCode(): string {
    for (;;) {
      const code = String(100_000 + (randomBytes(4).readUInt32LE(0) % 900_000));
      if (!pending.has(code)) return code;
    }
  }

  // --- endpoints ---------------------------------------------------------------------------

  function initiate(info: AuthInfo) {
    // ArgumentException.ThrowIfNullOrEmpty(DeviceId, Device, Client, Version) comes before AssertActive.
    if (!info.deviceId || !info.device || !info.client || !info.version) throw middlewareError(400);
    if (!fake.quickConnectEnabled) throw objectResult(401, 'Quick connect is disabled');
    expireRequests();
    const request: QuickConnectRequest = {
      authenticated: false,
      secret: randomBytes(32).toString('hex').toUpperCase(),
      code: newCode(),
      deviceId: info.deviceId,
      deviceName: info.device,
      appName: info.client,
      appVersion: info.version,
      dateAdded: Date.now(),
    };
    pending.set(request.code, request);
    return qcResult(request);
  }

  function connect(query: URLSearchParams) {
    const secret = queryValue(query, 'secret');
    if (!secret) throw validationProblem('secret', 'The secret field is required.');
    if (!fake.quickConnectEnabled) throw objectResult(401, 'Quick connect is disabled');
    expireRequests();
    const request = [...pending.values()].find((r) => r.secret === secret);
    if (!request) throw objectResult(404, 'Unknown secret');
    return qcResult(request);
  }

  function authenticateWithQuickConnect(body: Record<string, unknown>) {
    const secret = jsonField(body, 'Secret');
    if (typeof secret !== 'string' || secret === '') throw validationProblem('Secret', 'The Secret field is required.');
    if (!fake.quickConnectEnabled) throw middlewareError(401);
    expireRequests();
    const entry = authorized.get(secret);
    if (!entry) throw middlewareError(404);
    return entry.result;
  }

  function authenticateByName(info: AuthInfo, body: Record<string, unknown>, remoteEndPoint: string) {
    if (!info.client || !info.deviceId || !info.device || !info.version) throw middlewareError(400);
    const username = jsonField(body, 'Username');
    const pw = jsonField(body, 'Pw');
    if (typeof username !== 'string' || username.trim() === '') throw middlewareError(400); // ArgumentNullException(username)
    const user = findUserByName(username);
    const password = typeof pw === 'string' ? pw : '';
    if (!user || user.password !== password) throw middlewareError(401); // "Invalid username or password entered."
    return signIn(user, { deviceId: info.deviceId, deviceName: info.device, client: info.client, version: info.version }, remoteEndPoint);
  }

  function me(info: AuthInfo) {
    const record = requireToken(info);
    const user = findUser(record.userId);
    if (!user) throw challenge(); // authInfo() already treats a deleted user's token as unknown
    return userDto(user, record.createdAt);
  }

  function logout(info: AuthInfo): void {
    const record = requireToken(info);
    for (const [token, r] of tokens) if (r === record) tokens.delete(token);
  }

  // --- dispatch ----------------------------------------------------------------------------

  function applyFault(kind: FakeJellyfinEndpoint, res: ServerResponse): boolean {
    const fault = faults[kind].shift();
    if (!fault) return false;
    switch (fault) {
      case 'http500':
        send(res, 500, 'text/plain', GENERIC_ERROR);
        break;
      case 'malformed':
        send(res, 200, JSON_TYPE, kind === 'me' ? '{"Name":"Ada","ServerId":"' : '{"Authenticated":false,"Secret":"4F2A');
        break;
      case 'hang':
        break; // never answer; close() destroys the socket
    }
    return true;
  }

  type Route = { method: string; count?: keyof FakeJellyfin['counts']; fault?: FakeJellyfinEndpoint; handle: (ctx: Ctx) => unknown };
  type Ctx = { req: IncomingMessage; res: ServerResponse; query: URLSearchParams; info: AuthInfo; raw: Buffer };

  const routes: Record<string, Route> = {
    '/system/info/public': { method: 'GET', handle: ({ req }) => publicInfo(req) },
    '/quickconnect/enabled': { method: 'GET', handle: () => fake.quickConnectEnabled },
    '/quickconnect/initiate': { method: 'POST', count: 'initiate', fault: 'initiate', handle: ({ info }) => initiate(info) },
    '/quickconnect/connect': { method: 'GET', count: 'connect', fault: 'connect', handle: ({ query }) => connect(query) },
    '/users/authenticatewithquickconnect': {
      method: 'POST',
      count: 'authenticateQuickConnect',
      fault: 'authenticate',
      handle: ({ req, raw }) => authenticateWithQuickConnect(requireJsonObject(req, raw)),
    },
    '/users/authenticatebyname': {
      method: 'POST',
      count: 'authenticateByName',
      fault: 'authenticate',
      handle: ({ req, raw, info }) => authenticateByName(info, requireJsonObject(req, raw), req.socket.remoteAddress ?? '127.0.0.1'),
    },
    '/users/me': { method: 'GET', count: 'me', fault: 'me', handle: ({ info }) => me(info) },
    '/sessions/logout': {
      method: 'POST',
      count: 'logout',
      fault: 'logout',
      handle: ({ info, res }) => {
        logout(info);
        send(res, 204, undefined, '');
        return undefined;
      },
    },
  };

  function publicInfo(req: IncomingMessage) {
    return {
      LocalAddress: req.headers.host ? `http://${req.headers.host}` : url,
      ServerName: serverName,
      Version: version,
      ProductName: 'Jellyfin Server',
      OperatingSystem: '',
      Id: serverId,
      StartupWizardCompleted: startupWizardCompleted,
    };
  }

  function recordRequest(req: IncomingMessage, parsedUrl: URL, raw: Buffer): void {
    let body: unknown;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        body = undefined;
      }
      if (body !== null && typeof body === 'object' && !Array.isArray(body)) {
        body = Object.fromEntries(Object.entries(body as Record<string, unknown>).filter(([k]) => k.toLowerCase() !== 'pw'));
      }
    }
    requests.push({ method: req.method ?? 'GET', path: parsedUrl.pathname, search: parsedUrl.search, ...(body === undefined ? {} : { body }) });
  }

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const handled = (async () => {
      const parsedUrl = new URL(req.url ?? '/', url);
      const raw = await readBody(req);
      recordRequest(req, parsedUrl, raw);
      const path = parsedUrl.pathname.toLowerCase().replace(/\/+$/, '') || '/';
      const route = routes[path];
      const info = authInfo(req, parsedUrl.searchParams); // the authentication middleware runs for every request
      if (!route) return send(res, 404, undefined, '');
      if (req.method !== route.method) return send(res, 405, undefined, '');
      if (route.count) counts[route.count] += 1;
      if (route.fault && applyFault(route.fault, res)) return;
      try {
        const body = route.handle({ req, res, query: parsedUrl.searchParams, info, raw });
        if (!res.headersSent && !res.writableEnded) sendJson(res, 200, body);
      } catch (err) {
        if (!(err instanceof HttpError)) throw err;
        sendError(res, err);
      }
    })();
    handled.catch((err: unknown) => {
      if (closing) return;
      console.error('[fake-jellyfin] request handler failed:', err);
      if (!res.headersSent) send(res, 500, 'text/plain', GENERIC_ERROR);
      else res.destroy();
    });
  });


  const fake: FakeJellyfin = {
    url,
    serverId,
    users,
    quickConnectEnabled: opts.quickConnectEnabled ?? true,
    counts,
    authHeaders,
    requests,

    approve(code, userId) {
      assertQuickConnectActive();
      expireRequests();
      const request = pending.get(code);
      if (!request) throw new Error(`fake Jellyfin: no pending Quick Connect request with code ${code}`);
      if (request.authenticated) throw new Error('fake Jellyfin: Request is already authorized');
      const user = findUser(userId);
      if (!user) throw new Error(`fake Jellyfin: unknown user ${userId}`);
      request.dateAdded = Date.now() + QC_AUTHORIZED_GRACE_MS;
      const result = signIn(user, { deviceId: request.deviceId, deviceName: request.deviceName, client: request.appName, version: request.appVersion });
      authorized.set(request.secret, { timestamp: Date.now(), result });
      request.authenticated = true;
    },

    expireQuickConnect(code) {
      const request = pending.get(code);
      if (!request) throw new Error(`fake Jellyfin: no Quick Connect request with code ${code}`);
      pending.delete(code);
      authorized.delete(request.secret);
    },

    isActive(token) {
      const record = tokens.get(token);
      return record !== undefined && findUser(record.userId) !== undefined;
    },

    issueToken(userId, deviceId = guidN()) {
      const user = findUser(userId);
      if (!user) throw new Error(`fake Jellyfin: unknown user ${userId}`);
      return signIn(user, { deviceId, deviceName: 'Other device', client: 'Jellyfin Web', version: version }).AccessToken;
    },

    failNext(kind, fault, times = 1) {
      for (let i = 0; i < times; i++) faults[kind].push(fault);
    },

    close() {
      closing = true;
      return local.close();
    },
  };
  return fake;
}
