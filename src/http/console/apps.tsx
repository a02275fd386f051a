/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/** A tenant's apps (sign-in clients): listed, created (a client secret shown once), deleted. */
import type { Hono, Context } from 'hono';
import * as v from 'valibot';
import { TenantId } from '../../core/tenants.ts';
import { parseInput } from '../../core/validation.ts';
import { CreateAppBody, createTenantApp, deleteTenantApp } from '../admin.ts';
import type { AppEnv } from '../middleware.ts';
import { PostButton, CsrfField, OnceField, ShownOnce, Table } from '../signed-in-layout.tsx';
import type { ConsoleKit, SignedIn } from './kit.tsx';

const ClientId = v.pipe(v.string(), v.regex(/^app_[A-Za-z0-9_-]{1,40}$/, 'not an app id'));

export function appScreens(app: Hono<AppEnv>, kit: ConsoleKit): void {
  const { deps, tenants, writes, view, change, tenantPath, Page } = kit;

  async function appsPage(c: Context<AppEnv>, who: SignedIn, created?: { clientId: string; clientSecret?: string }) {
    const tenant = parseInput(TenantId, c.req.param('tenant'));
    const found = await tenants.require(tenant);
    const apps = await deps.apps.list(tenant);
    const editable = writes(who.admin, tenant);
    return c.html(
      <Page c={c} who={who} title={`${found.name}: apps`} section="tenants" tenant={tenant} tab="/apps">
        <h1>Apps</h1>
        <p class="muted">The sign-in clients of this tenant’s OpenID Provider, and the web-session API’s allowlist.</p>
        {created?.clientSecret ? <ShownOnce label={`Client secret of ${created.clientId}`} value={created.clientSecret} id="new-client-secret" /> : null}
        <Table label="Apps" head={editable ? ['Client id', 'Name', 'Type', 'Redirect URIs', 'Action'] : ['Client id', 'Name', 'Type', 'Redirect URIs']} rows={apps.length} empty="No apps.">
          {apps.map((a) => (
            <tr>
              <td>
                <code>{a.clientId}</code>
              </td>
              <td>{a.name}</td>
              <td>{a.type}</td>
              <td>{a.redirectUris.join(' ')}</td>
              {editable ? (
                <td>
                  <PostButton action={tenantPath(tenant, `/apps/${a.clientId}/delete`)} csrf={who.csrf} label="Delete" danger />
                </td>
              ) : null}
            </tr>
          ))}
        </Table>
        {editable ? (
          <>
            <h2>Create an app</h2>
            <form method="post" action={tenantPath(tenant, '/apps')}>
              <CsrfField csrf={who.csrf} />
              <OnceField />
              <label for="app-name">Name</label>
              <input id="app-name" name="name" required maxlength={100} />
              <label for="app-uris">Redirect URIs (one a line)</label>
              <textarea id="app-uris" name="redirectUris" required></textarea>
              <label for="app-type">Type</label>
              <select id="app-type" name="type">
                <option value="confidential">confidential (a server that keeps a secret)</option>
                <option value="public">public (a browser or native app)</option>
              </select>
              <button type="submit">Create app</button>
            </form>
          </>
        ) : null}
      </Page>,
      created ? 201 : 200,
    );
  }

  app.get('/t/:tenant/apps', view((c, who) => appsPage(c, who)));

  app.post(
    '/t/:tenant/apps',
    change('app.create', 'tenant', async (c, form, who, note) => {
      const tenant = c.req.param('tenant')!;
      const body = parseInput(CreateAppBody, {
        name: form.get('name') ?? undefined,
        redirectUris: (form.get('redirectUris') ?? '').split(/\s+/).filter(Boolean),
        type: form.get('type') ?? undefined,
      });
      note.detail = { name: body.name, type: body.type };
      const created = await createTenantApp(deps, tenant, body);
      note.target = `app:${created.clientId}`;
      return appsPage(c, who, created);
    }, { once: (c) => c.req.path }),
  );

  app.post(
    '/t/:tenant/apps/:clientId/delete',
    change('app.delete', 'tenant', async (c, _form, _who, note) => {
      const tenant = c.req.param('tenant')!;
      const clientId = parseInput(ClientId, c.req.param('clientId'));
      note.target = `app:${clientId}`;
      await deleteTenantApp(deps, tenant, clientId);
      return c.redirect(tenantPath(tenant, '/apps'), 303);
    }),
  );
}
