/**
 * A real OpenID Provider (panva's `oidc-provider` v9, a devDependency) set up
 * for local use: one confidential client, code + PKCE S256, nonce, RFC 9207
 * `iss`, userinfo, refresh and revocation, state kept in memory. The demo's
 * IdP (`idp.ts`, login pages for a person) and the tests' headless IdP
 * (`test/fakes/oidc-idp.ts`) are both built on it; each serves its own
 * interaction endpoints under `INTERACTION_PREFIX` and finishes them with
 * `finishLogin` / `finishConsent` / `abortInteraction`.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { exportJWK, generateKeyPair } from 'jose';
import Provider, { type Adapter, type AdapterPayload, type Configuration, type InteractionDetails } from 'oidc-provider';

export const INTERACTION_PREFIX = '/interaction/';

const STANDARD_CLAIMS: Record<string, string[]> = {
  openid: ['sub'],
  profile: [
    'name', 'given_name', 'family_name', 'middle_name', 'nickname', 'preferred_username',
    'profile', 'picture', 'website', 'gender', 'birthdate', 'zoneinfo', 'locale', 'updated_at',
  ],
  email: ['email', 'email_verified'],
  phone: ['phone_number', 'phone_number_verified'],
  address: ['address'],
};

export interface LocalOpenIdProviderOptions {
  /** `http://127.0.0.1:<port>`: where the provider is served. */
  issuer: string;
  clientId: string;
  clientSecret: string;
  redirectUris: string[];
  /** The claims of an account (`sub` is added). */
  claims: (sub: string) => Record<string, unknown>;
  accessTokenTtlSeconds?: number;
  /** Shown in the provider's own pages. */
  clientName?: string;
  /** How a protocol error reaches the user agent (JSON for a test driver, a page for a person). */
  renderError: NonNullable<Configuration['renderError']>;
  /** How the client authenticates at the token and revocation endpoints (default `client_secret_basic`). */
  tokenEndpointAuthMethod?: 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';
  /** The client's public keys, for `private_key_jwt`. */
  clientJwks?: { keys: Array<Record<string, unknown>> };
  /** The methods the provider accepts and lists in `token_endpoint_auth_methods_supported` (default: oidc-provider's five). */
  clientAuthMethods?: string[];
  /** Whether the provider has a revocation endpoint (default true). */
  revocation?: boolean;
}

export async function createLocalOpenIdProvider(options: LocalOpenIdProviderOptions): Promise<Provider> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const signingJwk = { ...(await exportJWK(privateKey)), kid: randomUUID(), alg: 'RS256', use: 'sig' };
  const store = new MemoryStore();
  return new Provider(options.issuer, {
    adapter: (model) => store.adapterFor(model),
    clients: [
      {
        client_id: options.clientId,
        client_secret: options.clientSecret,
        redirect_uris: options.redirectUris,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: options.tokenEndpointAuthMethod ?? 'client_secret_basic',
        ...(options.clientJwks ? { jwks: options.clientJwks } : {}),
        id_token_signed_response_alg: 'RS256',
        ...(options.clientName ? { client_name: options.clientName } : {}),
      },
    ],
    jwks: { keys: [signingJwk] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: STANDARD_CLAIMS,
    // Put scope-granted claims (name, email, ...) in the ID token too, like most real IdPs do.
    conformIdTokenClaims: false,
    ...(options.clientAuthMethods ? { clientAuthMethods: options.clientAuthMethods } : {}),
    features: {
      devInteractions: { enabled: false },
      revocation: {
        enabled: options.revocation ?? true,
        // A client may revoke only its own tokens (same as the default, minus the console notice).
        allowedPolicy: async (_ctx: unknown, client: { clientId: string }, token: { clientId?: string }) =>
          token.clientId === client.clientId,
      },
      resourceIndicators: { enabled: false },
      // Keep the surface small; neither the demo nor the tests need these.
      rpInitiatedLogout: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
    },
    pkce: { required: () => true },
    interactions: { url: (_ctx, interaction) => `${INTERACTION_PREFIX}${interaction.uid}` },
    findAccount: async (_ctx, sub) => ({
      accountId: sub,
      claims: async () => ({ ...options.claims(sub), sub }),
    }),
    // Always hand the client a refresh token (scope `openid` alone is enough).
    issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    // Tokens outlive the browser session at the provider.
    expiresWithSession: () => false,
    clientBasedCORS: () => false,
    renderError: options.renderError,
    // Explicit TTLs (seconds) also keep oidc-provider from printing "you SHOULD change it" notices.
    ttl: {
      AccessToken: options.accessTokenTtlSeconds ?? 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 14 * 24 * 3600,
      Interaction: 600,
      Session: 3600,
      Grant: 14 * 24 * 3600,
    },
  });
}

/** The user signed in as `accountId`: back to the authorization endpoint. */
export function finishLogin(provider: Provider, req: IncomingMessage, res: ServerResponse, accountId: string): Promise<void> {
  return provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
}

/**
 * The user allowed what the client asked for: grants the missing scopes and
 * claims and goes back to the authorization endpoint. `false` (nothing sent)
 * when the interaction has no signed-in account or no client.
 */
export async function finishConsent(provider: Provider, req: IncomingMessage, res: ServerResponse, details: InteractionDetails): Promise<boolean> {
  const accountId = details.session?.accountId;
  const clientId = details.params.client_id;
  if (!accountId || !clientId) return false;
  const existing = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  const grant = existing ?? new provider.Grant({ accountId, clientId });
  const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = details.prompt.details;
  if (missingOIDCScope?.length) grant.addOIDCScope(missingOIDCScope.join(' '));
  if (missingOIDCClaims?.length) grant.addOIDCClaims(missingOIDCClaims);
  for (const [resource, scopes] of Object.entries(missingResourceScopes ?? {})) {
    grant.addResourceScope(resource, scopes.join(' '));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  return true;
}

/** The user cancelled: the client gets `error=access_denied`. */
export function abortInteraction(provider: Provider, req: IncomingMessage, res: ServerResponse): Promise<void> {
  return provider.interactionFinished(
    req,
    res,
    { error: 'access_denied', error_description: 'End-User aborted interaction' },
    { mergeWithLastSubmission: false },
  );
}

/** An interaction form's fields (at most 64 KiB). */
export async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > 64 * 1024) throw new Error('interaction form too large');
    chunks.push(buf);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// ---------------------------------------------------------------------------------------------
// Storage: a small per-provider in-memory adapter (avoids oidc-provider's dev-adapter warning and
// keeps separate providers fully isolated). Payloads are cloned in and out like a real DB.
// ---------------------------------------------------------------------------------------------

interface Stored {
  payload: AdapterPayload;
  expiresAt: number | undefined; // epoch ms
}

class MemoryStore {
  readonly #rows = new Map<string, Stored>();
  readonly #byGrant = new Map<string, Set<string>>();
  readonly #sessionByUid = new Map<string, string>();
  readonly #byUserCode = new Map<string, string>();

  adapterFor(model: string): Adapter {
    const key = (id: string) => `${model}:${id}`;
    return {
      upsert: async (id, payload, expiresIn) => {
        const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
        this.#rows.set(key(id), { payload: structuredClone(payload), expiresAt });
        if (payload.grantId) {
          let set = this.#byGrant.get(payload.grantId);
          if (!set) this.#byGrant.set(payload.grantId, (set = new Set()));
          set.add(key(id));
        }
        if (model === 'Session' && payload.uid) this.#sessionByUid.set(payload.uid, id);
        if (payload.userCode) this.#byUserCode.set(payload.userCode, id);
      },
      find: async (id) => this.#get(key(id)),
      findByUid: async (uid) => {
        const id = this.#sessionByUid.get(uid);
        return id === undefined ? undefined : this.#get(key(id));
      },
      findByUserCode: async (userCode) => {
        const id = this.#byUserCode.get(userCode);
        return id === undefined ? undefined : this.#get(key(id));
      },
      consume: async (id) => {
        const row = this.#rows.get(key(id));
        if (row) row.payload.consumed = Math.floor(Date.now() / 1000);
      },
      destroy: async (id) => {
        this.#rows.delete(key(id));
      },
      revokeByGrantId: async (grantId) => {
        for (const k of this.#byGrant.get(grantId) ?? []) this.#rows.delete(k);
        this.#byGrant.delete(grantId);
      },
    };
  }

  #get(k: string): AdapterPayload | undefined {
    const row = this.#rows.get(k);
    if (!row) return undefined;
    if (row.expiresAt !== undefined && row.expiresAt <= Date.now()) {
      this.#rows.delete(k);
      return undefined;
    }
    return structuredClone(row.payload);
  }
}
