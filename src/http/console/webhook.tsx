/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/** A tenant's webhook endpoint (set, removed; support sees its origin only) and deliveries (retry one). */
import type { Hono } from 'hono';
import * as v from 'valibot';
import { LinkgateError } from '../../core/errors.ts';
import { DEFAULT_TENANT } from '../../core/ids.ts';
import { parseInput } from '../../core/validation.ts';
import { listDeliveries, retryDelivery } from '../../core/webhooks.ts';
import { environmentOnly, webhookEndpoint, WebhookBody } from '../admin.ts';
import type { AppEnv } from '../middleware.ts';
import { PostButton, CsrfField, Table, when } from '../signed-in-layout.tsx';
import type { ConsoleKit } from './kit.tsx';

const DeliveryId = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{1,64}$/, 'not a delivery id'));

export function webhookScreens(app: Hono<AppEnv>, kit: ConsoleKit): void {
  const { deps, db, tenants, now, writes, view, change, tenantPath, Page } = kit;

  app.get(
    '/t/:tenant/webhook',
    view(async (c, who) => {
      const tenant = c.req.param('tenant')!;
      const found = await tenants.require(tenant);
      // The default tenant's is the environment's (tenants.webhook answers it without the database); another's is stored.
      const url = tenant === DEFAULT_TENANT ? (await tenants.webhook(tenant))?.url.href : await tenants.webhookUrl(tenant);
      const deliveries = await listDeliveries(db, { tenant, limit: 50 });
      const editable = writes(who.admin, tenant) && tenant !== DEFAULT_TENANT;
      // A receiver's path or query may carry a token of its own (Slack's and Discord's hooks do): support sees the origin only.
      const shownUrl = url === undefined ? undefined : who.admin.role === 'support' ? `${new URL(url).origin}/…` : url;
      return c.html(
        <Page c={c} who={who} title={`${found.name}: webhook`} section="tenants" tenant={tenant} tab="/webhook">
          <h1>Webhook</h1>
          <p>{shownUrl ? <>Events are sent to <code id="webhook-url">{shownUrl}</code>, signed with its secret (never shown).</> : 'No webhook endpoint.'}</p>
          {tenant === DEFAULT_TENANT ? <p class="muted">The default tenant’s webhook is the environment’s (LINKGATE_WEBHOOK_URL).</p> : null}
          {editable ? (
            <>
              <h2>{url ? 'Change the endpoint' : 'Set an endpoint'}</h2>
              <form method="post" action={tenantPath(tenant, '/webhook')}>
                <CsrfField csrf={who.csrf} />
                <label for="webhook-url-input">URL</label>
                <input id="webhook-url-input" name="url" type="url" required />
                <label for="webhook-secret">Signing secret (32 characters at least)</label>
                <input id="webhook-secret" name="secret" type="password" autocomplete="off" required minlength={32} />
                <button type="submit">Save endpoint</button>
              </form>
              {url ? <PostButton action={tenantPath(tenant, '/webhook/remove')} csrf={who.csrf} label="Remove the endpoint" danger /> : null}
            </>
          ) : null}
          <h2>Deliveries</h2>
          <Table
            label="Webhook deliveries"
            head={writes(who.admin, tenant) ? ['Event', 'Status', 'Attempts', 'Last answer', 'Created', 'Action'] : ['Event', 'Status', 'Attempts', 'Last answer', 'Created']}
            rows={deliveries.length}
            empty="No deliveries yet."
          >
            {deliveries.map((d) => (
              <tr>
                <td>{d.type}</td>
                <td>{d.status}</td>
                <td>{d.attempts}</td>
                <td>{d.lastStatus ?? d.lastError ?? '—'}</td>
                <td>{when(d.createdAt)}</td>
                {writes(who.admin, tenant) ? <td>{d.status !== 'delivered' ? <PostButton action={tenantPath(tenant, `/webhook/deliveries/${d.id}/retry`)} csrf={who.csrf} label="Retry" secondary /> : null}</td> : null}
              </tr>
            ))}
          </Table>
        </Page>,
      );
    }),
  );

  app.post(
    '/t/:tenant/webhook',
    change('webhook.set', 'tenant', async (c, form, _who, note) => {
      const tenant = c.req.param('tenant')!;
      note.target = 'webhook';
      if (tenant === DEFAULT_TENANT) throw environmentOnly('webhook');
      const endpoint = webhookEndpoint(parseInput(WebhookBody, { url: form.get('url') ?? undefined, secret: form.get('secret') ?? undefined }), deps.production);
      note.detail = { origin: endpoint.url.origin };
      await tenants.putWebhook(tenant, endpoint);
      return c.redirect(tenantPath(tenant, '/webhook'), 303);
    }),
  );

  app.post(
    '/t/:tenant/webhook/remove',
    change('webhook.remove', 'tenant', async (c, _form, _who, note) => {
      const tenant = c.req.param('tenant')!;
      note.target = 'webhook';
      if (tenant === DEFAULT_TENANT) throw environmentOnly('webhook');
      if (!(await tenants.deleteWebhook(tenant))) throw new LinkgateError('not_found', 'this tenant has no webhook');
      return c.redirect(tenantPath(tenant, '/webhook'), 303);
    }),
  );

  app.post(
    '/t/:tenant/webhook/deliveries/:id/retry',
    change('webhook.retry', 'tenant', async (c, _form, _who, note) => {
      const tenant = c.req.param('tenant')!;
      const id = parseInput(DeliveryId, c.req.param('id'));
      note.target = `delivery:${id}`;
      if (!(await retryDelivery(db, tenant, id, new Date(now())))) throw new LinkgateError('not_found', 'this tenant has no undelivered delivery with this id, or it is being sent right now');
      return c.redirect(tenantPath(tenant, '/webhook'), 303);
    }),
  );
}
