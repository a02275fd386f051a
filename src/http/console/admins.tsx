/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/**
 * Admins, for owners only: LINKGATE_ADMINS' entries read-only, the owners
 * invites made (Remove ends their sessions at once), the open invites
 * (Revoke), and Create an invite (the link shown once, never audited).
 */
import type { Hono, Context } from 'hono';
import * as v from 'valibot';
import { InviteId, invitedOwners, NO_OPEN_INVITE, openInvites, removeInvitedOwner, revokeInvite } from '../../core/console-invites.ts';
import { LinkgateError } from '../../core/errors.ts';
import { ProviderId } from '../../core/ids.ts';
import { parseInput } from '../../core/validation.ts';
import { makeInvite } from '../admin.ts';
import type { AppEnv } from '../middleware.ts';
import { PostButton, ShownOnce, Table, when } from '../signed-in-layout.tsx';
import type { ConsoleKit, SignedIn } from './kit.tsx';

/** An admin's identity, `<provider>:<externalId>` (the external id is everything after the first colon). */
const AdminIdentity = v.pipe(
  v.string('identity is required'),
  v.maxLength(300, 'identity is too long'),
  v.check((text) => text.includes(':') && v.is(ProviderId, text.slice(0, text.indexOf(':'))) && text.length > text.indexOf(':') + 1, 'identity must look like provider:externalId'),
);

export function adminScreens(app: Hono<AppEnv>, kit: ConsoleKit): void {
  const { deps, db, now, sessions, view, change, Page } = kit;

  const ownersOnly = () => new LinkgateError('forbidden', 'only owners manage admins', { status: 403 });

  /** LINKGATE_ADMINS' entries (read-only), the owners invites made (removable), and the open invites (revocable). */
  async function adminsPage(c: Context<AppEnv>, who: SignedIn, created?: { url: string; expiresAt: Date }) {
    if (who.admin.role !== 'owner') throw ownersOnly();
    const at = new Date(now());
    const [invited, open] = await Promise.all([invitedOwners(db), openInvites(db, at)]);
    return c.html(
      <Page c={c} who={who} title="Admins" section="admins">
        <h1>Admins</h1>
        {created ? <ShownOnce label={`Invite link (works once, until ${when(created.expiresAt)}; whoever signs in with it first becomes an owner)`} value={created.url} id="invite-url" /> : null}
        <h2>From LINKGATE_ADMINS</h2>
        <p class="muted">Read from the environment: change LINKGATE_ADMINS and restart the gateway to add or remove one of these.</p>
        <Table label="Admins from LINKGATE_ADMINS" head={['Identity', 'Role', 'Tenants', 'Source']} rows={deps.admins.length}>
          {deps.admins.map((a) => (
            <tr>
              <td>
                <code>
                  {a.provider}:{a.externalId}
                </code>
              </td>
              <td>{a.role}</td>
              <td>{a.tenants === null ? 'all' : a.tenants.join(', ')}</td>
              <td>
                <span class="badge">from LINKGATE_ADMINS</span>
              </td>
            </tr>
          ))}
        </Table>
        <h2>Invited owners</h2>
        <Table label="Invited owners" head={['Identity', 'Invited', 'Accepted', 'Action']} rows={invited.length} empty="No owner was invited.">
          {invited.map((o) => (
            <tr>
              <td>
                <code>{o.identity}</code>
              </td>
              <td>{when(o.invitedAt)}</td>
              <td>{when(o.acceptedAt)}</td>
              <td>
                {o.identity === who.id ? (
                  <span class="muted">you</span>
                ) : deps.admins.some((a) => `${a.provider}:${a.externalId}` === o.identity) ? (
                  <span class="muted">also in LINKGATE_ADMINS</span>
                ) : (
                  <PostButton action="/admin/admins/remove" csrf={who.csrf} label="Remove" danger fields={{ identity: o.identity }} />
                )}
              </td>
            </tr>
          ))}
        </Table>
        <h2>Open invites</h2>
        <Table label="Open invites" head={['Id', 'Created', 'Expires', 'Action']} rows={open.length} empty="No invite is open.">
          {open.map((i) => (
            <tr>
              <td>
                <code>{i.id}</code>
              </td>
              <td>{when(i.createdAt)}</td>
              <td>{when(i.expiresAt)}</td>
              <td>
                <PostButton action={`/admin/admins/invites/${i.id}/revoke`} csrf={who.csrf} label="Revoke" danger />
              </td>
            </tr>
          ))}
        </Table>
        <PostButton action="/admin/admins/invites" csrf={who.csrf} label="Create an invite" describedBy="invite-help" once />
        <p class="muted" id="invite-help">
          A link that works once, for an hour: whoever signs in with it first becomes an owner. It is shown once, here.
        </p>
      </Page>,
      created ? 201 : 200,
    );
  }

  app.get('/admins', view((c, who) => adminsPage(c, who)));

  app.post(
    '/admins/invites',
    change('admin.invite', 'owner', async (c, _form, who, note) => {
      const made = await makeInvite(db, deps.publicBaseUrl, new Date(now()));
      note.target = `invite:${made.id}`;
      // The link makes an owner: shown to this owner once, never audited.
      note.detail = { expiresAt: made.expiresAt };
      return adminsPage(c, who, { url: made.url, expiresAt: new Date(made.expiresAt) });
    }, { once: () => '/admin/admins' }),
  );

  app.post(
    '/admins/invites/:id/revoke',
    change('admin.invite_revoke', 'owner', async (c, _form, _who, note) => {
      const id = parseInput(InviteId, c.req.param('id'));
      note.target = `invite:${id}`;
      if (!(await revokeInvite(db, id, new Date(now())))) throw new LinkgateError('not_found', NO_OPEN_INVITE);
      return c.redirect('/admin/admins', 303);
    }),
  );

  app.post(
    '/admins/remove',
    change('admin.remove', 'owner', async (c, form, who, note) => {
      const identity = parseInput(AdminIdentity, form.get('identity') ?? undefined);
      note.target = `admin:${identity}`;
      const colon = identity.indexOf(':');
      const [provider, externalId] = [identity.slice(0, colon), identity.slice(colon + 1)];
      if (deps.admins.some((a) => a.provider === provider && a.externalId === externalId)) {
        throw new LinkgateError('bad_request', 'this admin is listed in LINKGATE_ADMINS: remove the entry there and restart the gateway');
      }
      if (identity === who.id) throw new LinkgateError('bad_request', 'you cannot remove yourself: ask another owner');
      if (!(await removeInvitedOwner(db, identity))) throw new LinkgateError('not_found', 'no invite made this identity an owner');
      // Out at once: no session of theirs outlives the removal (signedIn would refuse it anyway).
      note.detail = { sessionsEnded: await sessions.revokeIdentity({ provider, externalId }) };
      return c.redirect('/admin/admins', 303);
    }),
  );
}
