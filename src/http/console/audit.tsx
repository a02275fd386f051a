/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/** The audit trail: filtered (a non-owner one of its tenants at a time), paged, and exported as CSV (the export itself audited). */
import type { Hono, Context } from 'hono';
import { AUDIT_ACTIONS, AuditQuery, csvExport, list as listAudit, type AuditFact, type AuditFilter } from '../../core/audit.ts';
import { LinkgateError } from '../../core/errors.ts';
import { parseInput } from '../../core/validation.ts';
import { streamOf } from '../admin.ts';
import type { AppEnv } from '../middleware.ts';
import { Table } from '../signed-in-layout.tsx';
import type { ConsoleKit, SignedIn } from './kit.tsx';

export function auditScreens(app: Hono<AppEnv>, kit: ConsoleKit): void {
  const { db, tenants, sees, audit, signedIn, notSignedIn, view, Page } = kit;

  /** The filter of the audit page and its CSV: a non-owner reads one of its tenants at a time. */
  function auditFilter(c: Context<AppEnv>, who: SignedIn): AuditFilter {
    const query = Object.fromEntries(Object.entries(c.req.query()).filter(([name, value]) => value !== '' && name !== 'format'));
    const filter = parseInput(AuditQuery, query);
    if (who.admin.role !== 'owner' && (filter.tenant === undefined || !sees(who.admin, filter.tenant))) {
      throw new LinkgateError('forbidden', 'choose one of your tenants: only owners read the whole audit trail', { status: 403 });
    }
    return filter;
  }

  app.get(
    '/audit',
    view(async (c, who) => {
      const visible = (await tenants.list()).filter((t) => sees(who.admin, t.id));
      const owner = who.admin.role === 'owner';
      if (!owner && c.req.query('tenant') === undefined && visible[0]) return c.redirect(`/admin/audit?tenant=${visible[0].id}`, 303);
      const filter = auditFilter(c, who);
      const page = await listAudit(db, filter);
      const query = new URLSearchParams(Object.entries(c.req.query()).filter(([name, value]) => value !== '' && name !== 'cursor'));
      const next = page.nextCursor ? `/admin/audit?${new URLSearchParams([...query, ['cursor', page.nextCursor]])}` : undefined;
      return c.html(
        <Page c={c} who={who} title="Audit trail" section="audit">
          <h1>Audit trail</h1>
          <form method="get" action="/admin/audit" class="inline">
            <div>
              <label for="a-tenant">Tenant</label>
              <select id="a-tenant" name="tenant">
                {owner ? <option value="">any</option> : null}
                {visible.map((t) => (
                  <option value={t.id} selected={filter.tenant === t.id}>
                    {t.id}
                  </option>
                ))}
              </select>
            </div>
            <div>
              <label for="a-action">Action</label>
              <select id="a-action" name="action">
                <option value="">any</option>
                {AUDIT_ACTIONS.map((name) => (
                  <option value={name} selected={filter.action === name}>
                    {name}
                  </option>
                ))}
              </select>
            </div>
            <div>
              <label for="a-actor">Actor</label>
              <input id="a-actor" name="actor" value={filter.actor ?? ''} placeholder="admin:discord:… or cli" />
            </div>
            <button type="submit">Filter</button>
          </form>
          <p>
            <a href={`/admin/audit.csv?${query}`} id="audit-csv">
              Export these rows as CSV
            </a>{' '}
            <span class="muted">(the export is itself recorded)</span>
          </p>
          <Table label="Audit trail" head={['When', 'Actor', 'Action', 'Tenant', 'Target', 'Outcome', 'Address']} rows={page.events.length} empty="No rows match.">
            {page.events.map((e) => (
              <tr>
                <td>{e.at.replace('T', ' ').slice(0, 19)}</td>
                <td>
                  <code>{e.actor}</code>
                </td>
                <td>{e.action}</td>
                <td>{e.tenant ?? '—'}</td>
                <td>{e.target ?? '—'}</td>
                <td>
                  {e.outcome}
                  {e.code ? ` (${e.code})` : ''}
                </td>
                <td>{e.clientAddress ?? '—'}</td>
              </tr>
            ))}
          </Table>
          {next ? <a href={next}>Older rows</a> : null}
        </Page>,
      );
    }),
  );

  /** The same rows as CSV, every page of them; the export is itself audited. */
  app.get('/audit.csv', async (c) => {
    // A download writes an audit row: only from the console's own pages, never a link on another site.
    const site = c.req.header('sec-fetch-site');
    if (site !== undefined && site !== 'same-origin' && site !== 'none') throw new LinkgateError('csrf_failed', 'this request came from another site', { status: 403 });
    const who = await signedIn(c);
    if (!who) throw notSignedIn();
    const { cursor: _, limit: __, ...filter } = auditFilter(c, who);
    const facts: Record<string, AuditFact> = {};
    for (const [name, value] of Object.entries(filter)) if (value !== undefined) facts[name] = value instanceof Date ? value.toISOString() : String(value);
    await audit(c, who.id, { action: 'audit.export', tenant: filter.tenant ?? null, target: 'audit', outcome: 'ok', detail: facts });
    return c.body(streamOf(csvExport(db, filter)), 200, { 'content-type': 'text/csv; charset=utf-8', 'content-disposition': 'attachment; filename="linkgate-audit.csv"' });
  });
}
