/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/**
 * A tenant's providers: the list, a provider's form (secrets write-only, the
 * callback URL to register), saving, testing and removing its configuration
 * through the operator API's functions. The default tenant's are the environment's.
 */
import type { Hono } from 'hono';
import { LinkgateError } from '../../core/errors.ts';
import { DEFAULT_TENANT, ProviderId } from '../../core/ids.ts';
import { isSecretVariable, MASKED } from '../../core/tenant-providers.ts';
import { TenantId } from '../../core/tenants.ts';
import { parseInput } from '../../core/validation.ts';
import { configureProvider, environmentOnly, tenantProviders } from '../admin.ts';
import { checkCsrfToken, checkSameOrigin, readForm } from '../cookie-session.ts';
import type { AppEnv } from '../middleware.ts';
import { PostButton, CsrfField, Table, when } from '../signed-in-layout.tsx';
import type { ConsoleKit } from './kit.tsx';

/** `NAME=value` lines of the provider form's extra box. */
const VARIABLE_LINE = /^([A-Z][A-Z0-9_]{0,63})=(.*)$/;

export function providerScreens(app: Hono<AppEnv>, kit: ConsoleKit): void {
  const { deps, tenants, origin, sees, writes, signedIn, notSignedIn, forbidden, noTenant, view, change, tenantPath, Page } = kit;

  app.get(
    '/t/:tenant',
    view(async (c, who) => {
      const tenant = c.req.param('tenant')!;
      const found = await tenants.require(tenant);
      const { providers } = await tenantProviders(tenants, deps.providers, tenant);
      const editable = writes(who.admin, tenant) && tenant !== DEFAULT_TENANT;
      return c.html(
        <Page c={c} who={who} title={`${found.name}: providers`} section="tenants" tenant={tenant} tab="">
          <h1>
            {found.name} <span class="muted">({tenant})</span>
          </h1>
          <h2>Providers</h2>
          {tenant === DEFAULT_TENANT ? <p class="muted">The default tenant’s providers are configured by the environment (a single-tenant deployment’s variables).</p> : null}
          <Table label="Providers" head={['Provider', 'Status', 'Action']} rows={providers.length}>
            {providers.map((p) => (
              <tr>
                <td>
                  {p.displayName} <code>{p.id}</code>
                </td>
                <td>{p.configured ? <span class="badge">configured</span> : <span class="muted">needs {p.missing}</span>}</td>
                <td>{tenant !== DEFAULT_TENANT ? <a href={tenantPath(tenant, `/providers/${p.id}`)}>{editable ? 'Configure' : 'View'}</a> : null}</td>
              </tr>
            ))}
          </Table>
          {editable ? (
            <form method="get" action={tenantPath(tenant, '/providers')} class="inline">
              <div>
                <label for="new-provider">Another provider, by id</label>
                <input id="new-provider" name="provider" required pattern="[a-z][a-z0-9_\-]{0,31}" aria-describedby="new-provider-help" />
              </div>
              <button type="submit">Configure</button>
            </form>
          ) : null}
          {editable ? (
            <p class="muted" id="new-provider-help">
              A name of your own for an OpenID Connect provider (corp), configured with CORP_ISSUER, CORP_CLIENT_ID and CORP_CLIENT_SECRET.
            </p>
          ) : null}
        </Page>,
      );
    }),
  );

  /**
   * The variables a provider's form shows: every name of every way a module
   * can be configured, then those stored. A member of a family (an OIDC
   * provider named `corp`) has no fixed names until its first configuration:
   * its variables go in the "other variables" box.
   */
  function formVariables(provider: string, stored: Record<string, string>): string[] {
    const known = deps.providers.configurable().find((p) => p.id === provider);
    return [...new Set([...(known?.needs.flat() ?? []), ...Object.keys(stored)])];
  }

  app.get(
    '/t/:tenant/providers',
    view(async (c) => c.redirect(tenantPath(c.req.param('tenant')!, `/providers/${parseInput(ProviderId, c.req.query('provider'))}`), 303)),
  );

  async function storedConfig(tenant: string, provider: string) {
    return (await tenants.currentProviderConfigs(tenant)).find((config) => config.provider === provider);
  }

  app.get(
    '/t/:tenant/providers/:provider',
    view(async (c, who) => {
      const tenant = c.req.param('tenant')!;
      const provider = parseInput(ProviderId, c.req.param('provider'));
      const found = await tenants.require(tenant);
      if (tenant === DEFAULT_TENANT) throw environmentOnly('providers');
      const stored = await storedConfig(tenant, provider);
      const env = stored?.env ?? {};
      const names = formVariables(provider, env);
      const displayName = (await deps.providers.of(tenant)).get(provider)?.displayName ?? deps.providers.configurable().find((p) => p.id === provider)?.displayName ?? provider;
      const editable = writes(who.admin, tenant);
      const callback = `${deps.publicBaseUrl.href.replace(/\/$/, '')}/oauth/${provider}/callback`;
      const test = c.req.query('test');
      return c.html(
        <Page c={c} who={who} title={`${found.name}: ${displayName}`} section="tenants" tenant={tenant} tab="">
          <h1>{displayName}</h1>
          <p>
            Callback URL to register at {displayName}: <code id="callback-url">{callback}</code>
          </p>
          {test === 'ok' ? (
            <p role="status" id="test-result">
              The stored configuration works: {displayName} starts with it.
            </p>
          ) : null}
          <p class="muted">
            {stored ? `Configured (version ${stored.version}, ${when(stored.createdAt)}).` : 'Not configured for this tenant yet.'} Secret values are never shown: leave a secret field empty to keep
            the stored value.
          </p>
          {editable ? (
            <form method="post" action={tenantPath(tenant, `/providers/${provider}`)}>
              <CsrfField csrf={who.csrf} />
              {names.map((name) => (
                <>
                  <label for={`v-${name}`}>{name}</label>
                  {isSecretVariable(name) ? (
                    <input id={`v-${name}`} name={`v:${name}`} type="password" autocomplete="off" placeholder={env[name] !== undefined ? 'stored (unchanged if left empty)' : ''} />
                  ) : (
                    <input id={`v-${name}`} name={`v:${name}`} value={env[name] ?? ''} />
                  )}
                </>
              ))}
              <label for="extra">Other variables</label>
              <textarea id="extra" name="extra" aria-describedby="extra-help"></textarea>
              <p class="muted" id="extra-help">
                One NAME=value a line, for variables not listed above.
              </p>
              <button type="submit">Save configuration</button>
            </form>
          ) : (
            <dl class="facts">
              {names.map((name) => (
                <>
                  <dt>{name}</dt>
                  <dd>{env[name] === undefined ? '—' : isSecretVariable(name) ? MASKED : env[name]}</dd>
                </>
              ))}
            </dl>
          )}
          {editable && stored ? (
            <div class="actions">
              <PostButton action={tenantPath(tenant, `/providers/${provider}/test`)} csrf={who.csrf} label="Test the configuration" secondary />
              <PostButton action={tenantPath(tenant, `/providers/${provider}/remove`)} csrf={who.csrf} label="Remove the configuration" danger />
            </div>
          ) : null}
        </Page>,
      );
    }),
  );

  app.post(
    '/t/:tenant/providers/:provider',
    change('provider.configure', 'tenant', async (c, form, _who, note) => {
      const tenant = c.req.param('tenant')!;
      const provider = parseInput(ProviderId, c.req.param('provider'));
      note.target = `provider:${provider}`;
      if (tenant === DEFAULT_TENANT) throw environmentOnly('providers');
      const stored = (await storedConfig(tenant, provider))?.env ?? {};
      const env: Record<string, string> = {};
      for (const [field, value] of form) {
        if (!field.startsWith('v:')) continue;
        const name = field.slice(2);
        // A secret left empty keeps its stored value: secrets are write-only.
        if (value === '' && isSecretVariable(name) && stored[name] !== undefined) env[name] = stored[name];
        else if (value !== '') env[name] = value;
      }
      for (const line of (form.get('extra') ?? '').split(/\r?\n/)) {
        if (line.trim() === '') continue;
        const match = VARIABLE_LINE.exec(line.trim());
        if (!match) throw new LinkgateError('bad_request', 'each line of "Other variables" must be NAME=value');
        env[match[1]!] = match[2]!;
      }
      // The variables' names only: their values hold the provider app's secret.
      note.detail = { variables: Object.keys(env).sort() };
      const configured = await configureProvider(deps, tenant, provider, env);
      note.detail = { ...note.detail, version: configured.version };
      return c.redirect(tenantPath(tenant, `/providers/${provider}`), 303);
    }),
  );

  // Not a change: checks the stored configuration as saving it would (the directory's check: the module starts with it).
  app.post('/t/:tenant/providers/:provider/test', async (c) => {
    checkSameOrigin(c, origin);
    const who = await signedIn(c);
    if (!who) throw notSignedIn();
    checkCsrfToken(who.token, (await readForm(c)).get('csrf') ?? undefined);
    const tenant = parseInput(TenantId, c.req.param('tenant'));
    const provider = parseInput(ProviderId, c.req.param('provider'));
    if (!sees(who.admin, tenant)) throw noTenant();
    if (!writes(who.admin, tenant)) throw forbidden('test a configuration');
    const stored = await storedConfig(tenant, provider);
    if (!stored) throw new LinkgateError('not_found', 'this tenant has no configuration for this provider');
    await deps.providers.check(provider, stored.env, { publicBaseUrl: deps.publicBaseUrl });
    return c.redirect(tenantPath(tenant, `/providers/${provider}?test=ok`), 303);
  });

  app.post(
    '/t/:tenant/providers/:provider/remove',
    change('provider.remove', 'tenant', async (c, _form, _who, note) => {
      const tenant = c.req.param('tenant')!;
      const provider = parseInput(ProviderId, c.req.param('provider'));
      note.target = `provider:${provider}`;
      if (tenant === DEFAULT_TENANT) throw environmentOnly('providers');
      if (!(await tenants.removeProviderConfig(tenant, provider))) throw new LinkgateError('not_found', 'this tenant has no configuration for this provider');
      return c.redirect(tenantPath(tenant), 303);
    }),
  );
}
