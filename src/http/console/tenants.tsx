/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/** The console's tenants: the list (the ones this admin sees) and, for owners, creating one. */
import type { Hono } from 'hono';
import { TenantId, TenantName } from '../../core/tenants.ts';
import { parseInput } from '../../core/validation.ts';
import type { AppEnv } from '../middleware.ts';
import { CsrfField, Table, when } from '../signed-in-layout.tsx';
import type { ConsoleKit } from './kit.tsx';

export function tenantScreens(app: Hono<AppEnv>, kit: ConsoleKit): void {
  const { tenants, sees, view, change, tenantPath, Page } = kit;

  app.get(
    '/tenants',
    view(async (c, who) => {
      const all = (await tenants.list()).filter((t) => sees(who.admin, t.id));
      return c.html(
        <Page c={c} who={who} title="Tenants" section="tenants">
          <h1>Tenants</h1>
          <Table label="Tenants" head={['Id', 'Name', 'Created']} rows={all.length} empty="No tenant is yours yet.">
            {all.map((t) => (
              <tr>
                <td>
                  <a href={tenantPath(t.id)}>{t.id}</a>
                </td>
                <td>{t.name}</td>
                <td>{when(t.createdAt)}</td>
              </tr>
            ))}
          </Table>
          {who.admin.role === 'owner' ? (
            <>
              <h2>Create a tenant</h2>
              <form method="post" action="/admin/tenants" class="inline">
                <CsrfField csrf={who.csrf} />
                <div>
                  <label for="tenant-id">Id</label>
                  <input id="tenant-id" name="id" required pattern="[a-z0-9][a-z0-9\-]{0,39}" aria-describedby="tenant-id-help" />
                </div>
                <div>
                  <label for="tenant-name">Name</label>
                  <input id="tenant-name" name="name" required maxlength={100} />
                </div>
                <button type="submit">Create tenant</button>
              </form>
              <p class="muted" id="tenant-id-help">
                The id: 1–40 lowercase letters, digits and hyphens; bots send it as <code>x-tenant-id</code>.
              </p>
            </>
          ) : null}
        </Page>,
      );
    }),
  );

  app.post(
    '/tenants',
    change('tenant.create', 'owner', async (c, form, _who, note) => {
      const id = parseInput(TenantId, form.get('id') ?? undefined);
      note.tenant = id;
      const tenant = await tenants.create(id, parseInput(TenantName, form.get('name') ?? undefined));
      note.detail = { name: tenant.name };
      return c.redirect(tenantPath(tenant.id), 303);
    }),
  );
}
