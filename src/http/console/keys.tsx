/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/** A tenant's bot API keys and link-context secrets: a new one shown once, listed by id after, revoked or retired. */
import type { Hono, Context } from 'hono';
import * as v from 'valibot';
import { LinkgateError } from '../../core/errors.ts';
import { DEFAULT_TENANT } from '../../core/ids.ts';
import { ApiKeyName, TenantId } from '../../core/tenants.ts';
import { parseInput } from '../../core/validation.ts';
import type { AppEnv } from '../middleware.ts';
import { PostButton, CsrfField, OnceField, ShownOnce, Table, when } from '../signed-in-layout.tsx';
import type { ConsoleKit, SignedIn } from './kit.tsx';

const KeyId = v.pipe(v.string(), v.regex(/^key_[A-Za-z0-9_-]{1,40}$/, 'not an API key id'));
const SecretId = v.pipe(v.string(), v.regex(/^cs_[A-Za-z0-9_-]{1,40}$/, 'not a context secret id'));

export function keyScreens(app: Hono<AppEnv>, kit: ConsoleKit): void {
  const { tenants, writes, view, change, tenantPath, Page } = kit;

  async function apiKeysPage(c: Context<AppEnv>, who: SignedIn, created?: { id: string; key: string }) {
    const tenant = parseInput(TenantId, c.req.param('tenant'));
    const found = await tenants.require(tenant);
    const keys = await tenants.listApiKeys(tenant);
    const editable = writes(who.admin, tenant);
    return c.html(
      <Page c={c} who={who} title={`${found.name}: API keys`} section="tenants" tenant={tenant} tab="/api-keys">
        <h1>API keys</h1>
        {created ? <ShownOnce label={`New API key ${created.id}`} value={created.key} id="new-api-key" /> : null}
        {tenant === DEFAULT_TENANT ? <p class="muted">The environment’s LINKGATE_API_KEYS are this tenant’s keys too; they are not listed.</p> : null}
        <Table label="API keys" head={editable ? ['Id', 'Name', 'Created', 'Last used', 'Action'] : ['Id', 'Name', 'Created', 'Last used']} rows={keys.length} empty="No API keys.">
          {keys.map((k) => (
            <tr>
              <td>
                <code>{k.id}</code>
              </td>
              <td>{k.name}</td>
              <td>{when(k.createdAt)}</td>
              <td>{when(k.lastUsedAt)}</td>
              {editable ? (
                <td>
                  <PostButton action={tenantPath(tenant, `/api-keys/${k.id}/revoke`)} csrf={who.csrf} label={`Revoke`} danger fields={{}} />
                </td>
              ) : null}
            </tr>
          ))}
        </Table>
        {editable ? (
          <>
            <h2>Create an API key</h2>
            <form method="post" action={tenantPath(tenant, '/api-keys')} class="inline">
              <CsrfField csrf={who.csrf} />
              <OnceField />
              <div>
                <label for="key-name">Name</label>
                <input id="key-name" name="name" required maxlength={100} />
              </div>
              <button type="submit">Create key</button>
            </form>
          </>
        ) : null}
      </Page>,
      created ? 201 : 200,
    );
  }

  app.get('/t/:tenant/api-keys', view((c, who) => apiKeysPage(c, who)));

  app.post(
    '/t/:tenant/api-keys',
    change('api_key.create', 'tenant', async (c, form, who, note) => {
      const tenant = c.req.param('tenant')!;
      const name = parseInput(ApiKeyName, form.get('name') ?? undefined);
      note.detail = { name };
      const created = await tenants.createApiKey(tenant, name);
      note.target = `api_key:${created.id}`;
      // Shown in this answer only: it is stored as a digest.
      return apiKeysPage(c, who, { id: created.id, key: created.key });
    }, { once: (c) => c.req.path }),
  );

  app.post(
    '/t/:tenant/api-keys/:id/revoke',
    change('api_key.revoke', 'tenant', async (c, _form, _who, note) => {
      const tenant = c.req.param('tenant')!;
      const id = parseInput(KeyId, c.req.param('id'));
      note.target = `api_key:${id}`;
      if (!(await tenants.deleteApiKey(tenant, id))) throw new LinkgateError('not_found', 'this tenant has no API key with this id');
      return c.redirect(tenantPath(tenant, '/api-keys'), 303);
    }),
  );

  // ── Context secrets ─────────────────────────────────────────────────────

  async function secretsPage(c: Context<AppEnv>, who: SignedIn, created?: { id: string; secret: string }) {
    const tenant = parseInput(TenantId, c.req.param('tenant'));
    const found = await tenants.require(tenant);
    const secrets = await tenants.listContextSecrets(tenant);
    const editable = writes(who.admin, tenant);
    return c.html(
      <Page c={c} who={who} title={`${found.name}: context secrets`} section="tenants" tenant={tenant} tab="/context-secrets">
        <h1>Link-context secrets</h1>
        <p class="muted">Bots sign their link contexts with one of these; the newest signs the links the gateway makes.</p>
        {created ? <ShownOnce label={`New context secret ${created.id}`} value={created.secret} id="new-context-secret" /> : null}
        <Table label="Context secrets" head={editable ? ['Id', 'Created', 'Action'] : ['Id', 'Created']} rows={secrets.length} empty="No context secrets.">
          {secrets.map((s) => (
            <tr>
              <td>
                <code>{s.id}</code>
              </td>
              <td>{when(s.createdAt)}</td>
              {editable ? (
                <td>
                  <PostButton action={tenantPath(tenant, `/context-secrets/${s.id}/retire`)} csrf={who.csrf} label="Retire" danger />
                </td>
              ) : null}
            </tr>
          ))}
        </Table>
        {editable ? <PostButton action={tenantPath(tenant, '/context-secrets')} csrf={who.csrf} label="Create a context secret" once /> : null}
      </Page>,
      created ? 201 : 200,
    );
  }

  app.get('/t/:tenant/context-secrets', view((c, who) => secretsPage(c, who)));

  app.post(
    '/t/:tenant/context-secrets',
    change('context_secret.create', 'tenant', async (c, _form, who, note) => {
      const created = await tenants.createContextSecret(c.req.param('tenant')!);
      note.target = `context_secret:${created.id}`;
      return secretsPage(c, who, created);
    }, { once: (c) => c.req.path }),
  );

  app.post(
    '/t/:tenant/context-secrets/:id/retire',
    change('context_secret.retire', 'tenant', async (c, _form, _who, note) => {
      const tenant = c.req.param('tenant')!;
      const id = parseInput(SecretId, c.req.param('id'));
      note.target = `context_secret:${id}`;
      if (!(await tenants.retireContextSecret(tenant, id))) throw new LinkgateError('not_found', 'this tenant has no active context secret with this id');
      return c.redirect(tenantPath(tenant, '/context-secrets'), 303);
    }),
  );
}
