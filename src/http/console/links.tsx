/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/** A tenant's links: search and filters; a link's page with its events, and refresh now, a relink URL, unlink. */
import type { Hono, Context } from 'hono';
import * as v from 'valibot';
import { LinkgateError } from '../../core/errors.ts';
import { ProviderId, UserId } from '../../core/ids.ts';
import { createLinkUrl } from '../../core/link-context.ts';
import { listLinkEvents } from '../../core/link-events.ts';
import { searchLinks } from '../../core/links.ts';
import { TenantId } from '../../core/tenants.ts';
import { unlink } from '../../core/unlink.ts';
import { parseInput } from '../../core/validation.ts';
import type { LinkRow } from '../../db/schema.ts';
import type { AppEnv } from '../middleware.ts';
import { PostButton, ShownOnce, Table, when } from '../signed-in-layout.tsx';
import type { ConsoleKit, SignedIn } from './kit.tsx';

const LinkParams = v.object({ tenant: TenantId, provider: ProviderId, userId: UserId });
const LinkFilter = v.object({
  q: v.optional(v.pipe(v.string(), v.trim(), v.maxLength(200, 'the search is too long'))),
  provider: v.optional(v.union([v.literal(''), ProviderId])),
  status: v.optional(v.picklist(['', 'active', 'needs_reauth'], 'status must be active or needs_reauth')),
});

export function linkScreens(app: Hono<AppEnv>, kit: ConsoleKit): void {
  const { deps, db, tenants, now, writes, view, change, tenantPath, Page } = kit;

  const linkPath = (row: Pick<LinkRow, 'tenant' | 'provider' | 'userId'>) => tenantPath(row.tenant, `/links/${row.provider}/${encodeURIComponent(row.userId)}`);

  app.get(
    '/t/:tenant/links',
    view(async (c, who) => {
      const tenant = c.req.param('tenant')!;
      const found = await tenants.require(tenant);
      const filter = parseInput(LinkFilter, { q: c.req.query('q'), provider: c.req.query('provider'), status: c.req.query('status') });
      const providers = (await deps.providers.of(tenant)).list();
      const rows = await searchLinks(db, tenant, { query: filter.q, provider: filter.provider || undefined, status: filter.status || undefined, limit: 100 });
      return c.html(
        <Page c={c} who={who} title={`${found.name}: links`} section="tenants" tenant={tenant} tab="/links">
          <h1>Links</h1>
          <form method="get" action={tenantPath(tenant, '/links')} class="inline" role="search">
            <div>
              <label for="q">User id, external id or name</label>
              <input id="q" name="q" type="search" value={filter.q ?? ''} />
            </div>
            <div>
              <label for="provider">Provider</label>
              <select id="provider" name="provider">
                <option value="">any</option>
                {providers.map((p) => (
                  <option value={p.id} selected={filter.provider === p.id}>
                    {p.displayName}
                  </option>
                ))}
              </select>
            </div>
            <div>
              <label for="status">Status</label>
              <select id="status" name="status">
                <option value="">any</option>
                <option value="active" selected={filter.status === 'active'}>
                  active
                </option>
                <option value="needs_reauth" selected={filter.status === 'needs_reauth'}>
                  needs re-auth
                </option>
              </select>
            </div>
            <button type="submit">Search</button>
          </form>
          <Table label="Links" head={['User', 'Provider', 'Account', 'Status', 'Changed']} rows={rows.length} empty="No link matches.">
            {rows.map((row) => (
              <tr>
                <td>
                  <a href={linkPath(row)}>{row.userId}</a>
                </td>
                <td>{row.provider}</td>
                <td>
                  {row.externalName ?? '—'} <code>{row.externalId}</code>
                </td>
                <td>{row.status}</td>
                <td>{when(row.updatedAt)}</td>
              </tr>
            ))}
          </Table>
        </Page>,
      );
    }),
  );

  async function requireLink(c: Context<AppEnv>) {
    const key = parseInput(LinkParams, { tenant: c.req.param('tenant'), provider: c.req.param('provider'), userId: c.req.param('userId') });
    const row = await deps.links.get(key);
    if (!row) throw new LinkgateError('not_linked', 'this user has not linked this provider (any more)', { status: 404 });
    return { key, row };
  }

  async function linkPage(c: Context<AppEnv>, who: SignedIn, relink?: { url: string; expiresAt: Date }) {
    const { key, row } = await requireLink(c);
    const found = await tenants.require(key.tenant);
    const { events } = await listLinkEvents(db, key, { limit: 50 });
    const lastRefresh = events.find((e) => e.kind === 'refreshed');
    const editable = writes(who.admin, key.tenant);
    return c.html(
      <Page c={c} who={who} title={`${found.name}: ${row.provider} link of ${row.userId}`} section="tenants" tenant={key.tenant} tab="/links">
        <h1>
          {row.provider} link of <code>{row.userId}</code>
        </h1>
        {relink ? <ShownOnce label="Relink URL (send it to this user; it works once, until it expires)" value={relink.url} id="relink-url" /> : null}
        <dl class="facts">
          <dt>Account</dt>
          <dd id="link-account">
            {row.externalName ?? '—'} (<code>{row.externalId}</code>)
          </dd>
          <dt>Status</dt>
          <dd id="link-status">{row.status}</dd>
          <dt>Scopes</dt>
          <dd>{row.scopes.length > 0 ? row.scopes.join(' ') : '—'}</dd>
          <dt>Token expires</dt>
          <dd>{when(row.expiresAt)}</dd>
          <dt>Last refresh</dt>
          <dd>{lastRefresh ? lastRefresh.at.replace('T', ' ').slice(0, 16) + ' UTC' : '—'}</dd>
          <dt>Linked</dt>
          <dd>{when(row.linkedAt)}</dd>
        </dl>
        {editable ? (
          <div class="actions">
            <PostButton action={`${linkPath(row)}/refresh`} csrf={who.csrf} label="Refresh now" secondary />
            <PostButton action={`${linkPath(row)}/relink`} csrf={who.csrf} label="Make a relink URL" secondary once />
            <PostButton action={`${linkPath(row)}/unlink`} csrf={who.csrf} label="Unlink" danger />
          </div>
        ) : null}
        <h2>Events</h2>
        <Table label="Link events" head={['When', 'Event', 'Detail']} rows={events.length} empty="No events kept for this link.">
          {events.map((e) => (
            <tr>
              <td>{e.at.replace('T', ' ').slice(0, 19)}</td>
              <td>{e.kind}</td>
              <td>{e.detail ? Object.entries(e.detail).map(([k, value]) => `${k}: ${Array.isArray(value) ? value.join(' ') : String(value)}`).join(', ') : ''}</td>
            </tr>
          ))}
        </Table>
      </Page>,
      relink ? 201 : 200,
    );
  }

  app.get('/t/:tenant/links/:provider/:userId', view((c, who) => linkPage(c, who)));

  app.post(
    '/t/:tenant/links/:provider/:userId/refresh',
    change('link.refresh', 'tenant', async (c, _form, _who, note) => {
      const { key, row } = await requireLink(c);
      note.target = `link:${row.userId}/${row.provider}`;
      await deps.tokens.refreshNow(key);
      return c.redirect(linkPath(row), 303);
    }),
  );

  app.post(
    '/t/:tenant/links/:provider/:userId/relink',
    change('link.relink_url', 'tenant', async (c, _form, who, note) => {
      const { key, row } = await requireLink(c);
      note.target = `link:${row.userId}/${row.provider}`;
      const made = await createLinkUrl(
        { userId: key.userId, provider: key.provider, tenant: key.tenant },
        { secret: await tenants.signingSecret(key.tenant), ttlSeconds: deps.contextTtlSeconds, publicBaseUrl: deps.publicBaseUrl, now: now() },
      );
      // The URL links whoever opens it to this user: shown to this admin only, never audited.
      note.detail = { expiresAt: made.expiresAt.toISOString() };
      return linkPage(c, who, made);
    }, { once: (c) => c.req.path.replace(/\/relink$/, '') }),
  );

  app.post(
    '/t/:tenant/links/:provider/:userId/unlink',
    change('link.delete', 'tenant', async (c, _form, _who, note) => {
      const { key, row } = await requireLink(c);
      note.target = `link:${row.userId}/${row.provider}`;
      const done = await unlink({ links: deps.links, providers: deps.providers, hashUserId: deps.hashUserId, now, metrics: deps.metrics }, key, c.get('log')(), 'console');
      note.detail = { revocation: done?.revocation ?? 'none' };
      return c.redirect(tenantPath(key.tenant, '/links'), 303);
    }),
  );
}
