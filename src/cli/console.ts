/**
 * `linkgate admin invite`: a one-time link to the admin console that makes
 * whoever signs in with it first an owner (src/core/console-invites.ts);
 * `admin invites list|revoke`: the open ones, and taking one back.
 * It adds owners to a console LINKGATE_ADMINS has opened and refuses
 * otherwise: an invite never opens a closed console. While a gateway runs on
 * the embedded database it asks that gateway (the operator API's
 * `POST /console/invites`), as the `tenants` commands do.
 */
import { argument, CliError, EXIT, type Command } from './cli.ts';
import { print } from './output.ts';
import { loadConfig } from './runtime.ts';

/** The console must be open for invites to mean anything: the same refusal as the operator API's 409. */
async function requireOpenConsole(admins: readonly unknown[]): Promise<void> {
  if (admins.length === 0) throw new CliError(EXIT.failure, 'console_closed', (await import('../core/console-invites.ts')).CONSOLE_CLOSED);
}

const COMMANDS_NAME = '`admin invite`, `admin invites` and the tenants commands';

const adminInvite: Command = {
  path: ['admin', 'invite'],
  args: [],
  json: true,
  summary: 'Print a one-time link to the admin console that makes its first user an owner.',
  details: [
    'The link works once, for an hour. Whoever opens it signs in with one of the default tenant\'s providers and becomes an owner of the console at /admin, as if LINKGATE_ADMINS listed them; the invite is then spent. Only its SHA-256 is stored, and the audit trail says an invite was made (admin.invite, with the invite\'s id) and by whom it was used (admin.invite_accept), never the link. Owners see the open invites, revoke them and remove invited owners on the console\'s Admins page.',
    'The console must be open: with LINKGATE_ADMINS unset every /admin URL is a 404, and an invite does not change that. While a gateway runs on the embedded database, the invite is made through its operator API (POST /api/admin/v1/console/invites, with the first of LINKGATE_ADMIN_KEYS, which both must have).',
  ],
  async run(args, io) {
    const { config } = loadConfig(io);
    await requireOpenConsole(config.admins);
    const { answerOf, operatorRequest, runningGateway } = await import('./gateway.ts');
    const { CreatedInviteAnswer, makeInvite } = await import('../http/admin.ts');
    const gateway = runningGateway(io, config);
    const invite = gateway
      ? await answerOf(gateway, await operatorRequest(gateway, config, 'POST', '/console/invites', { commands: COMMANDS_NAME }), CreatedInviteAnswer)
      : await (async () => {
          const { auditedCommand, requireMigrated, withDatabase } = await import('./database.ts');
          return withDatabase(io, config, async (database) => {
            await requireMigrated(database);
            return auditedCommand(io, database.db, { action: 'admin.invite', tenant: null }, async (note) => {
              const made = await makeInvite(database.db, config.publicBaseUrl, new Date(io.now()));
              note.target = `invite:${made.id}`;
              note.detail = { expiresAt: made.expiresAt };
              return made;
            });
          });
        })();
    print(io, args, invite, () => `${invite.url}\n`);
    io.err(`linkgate: this link works once, until ${invite.expiresAt}; whoever signs in with it first becomes an owner of the console (invite ${invite.id})\n`);
    return EXIT.ok;
  },
};

const adminInvitesList: Command = {
  path: ['admin', 'invites', 'list'],
  args: [],
  json: true,
  summary: 'List the open invites to the admin console: not used, not expired, not revoked.',
  details: ['Each by its id, with when it was made and when it expires; never the link, which only its maker saw. While a gateway runs on the embedded database, the list comes from its operator API (GET /api/admin/v1/console/invites).'],
  async run(args, io) {
    const { config } = loadConfig(io);
    await requireOpenConsole(config.admins);
    const { answerOf, operatorRequest, runningGateway } = await import('./gateway.ts');
    const { InvitesAnswer } = await import('../http/admin.ts');
    const gateway = runningGateway(io, config);
    const answer = gateway
      ? await answerOf(gateway, await operatorRequest(gateway, config, 'GET', '/console/invites', { commands: COMMANDS_NAME }), InvitesAnswer)
      : await (async () => {
          const { requireMigrated, withDatabase } = await import('./database.ts');
          const { openInvites } = await import('../core/console-invites.ts');
          const open = await withDatabase(io, config, async (database) => {
            await requireMigrated(database);
            return openInvites(database.db, new Date(io.now()));
          });
          return { invites: open.map((i) => ({ id: i.id, createdAt: i.createdAt.toISOString(), expiresAt: i.expiresAt.toISOString() })) };
        })();
    print(io, args, answer, () =>
      answer.invites.length === 0 ? 'no open invites\n' : `${answer.invites.map((i) => `${i.id}  made ${i.createdAt}  expires ${i.expiresAt}`).join('\n')}\n`,
    );
    return EXIT.ok;
  },
};

const adminInvitesRevoke: Command = {
  path: ['admin', 'invites', 'revoke'],
  args: [{ name: 'id', help: 'the invite\'s id (inv_…), as `linkgate admin invites list` prints it' }],
  json: true,
  summary: 'Revoke an open invite to the admin console: its link stops working.',
  details: ['Audited (admin.invite_revoke). Exits with 3 when no open invite has that id (it was used, it expired, or it was revoked). While a gateway runs on the embedded database, it revokes through its operator API (DELETE /api/admin/v1/console/invites/:id).'],
  async run(args, io) {
    const { config } = loadConfig(io);
    await requireOpenConsole(config.admins);
    const { InviteId, NO_OPEN_INVITE, revokeInvite } = await import('../core/console-invites.ts');
    const id = argument(InviteId, args.positionals[0]!);
    const notFound = () => new CliError(EXIT.notFound, 'not_found', NO_OPEN_INVITE);
    const { operatorRequest, runningGateway } = await import('./gateway.ts');
    const gateway = runningGateway(io, config);
    if (gateway) {
      await operatorRequest(gateway, config, 'DELETE', `/console/invites/${id}`, { commands: COMMANDS_NAME, failure: (status) => (status === 404 ? notFound() : undefined) });
    } else {
      const { auditedCommand, requireMigrated, withDatabase } = await import('./database.ts');
      await withDatabase(io, config, async (database) => {
        await requireMigrated(database);
        await auditedCommand(io, database.db, { action: 'admin.invite_revoke', tenant: null, target: `invite:${id}` }, async () => {
          if (!(await revokeInvite(database.db, id, new Date(io.now())))) throw notFound();
        });
      });
    }
    print(io, args, { revoked: id }, () => `revoked invite ${id}: its link no longer works\n`);
    return EXIT.ok;
  },
};

export const CONSOLE_COMMANDS: readonly Command[] = [adminInvite, adminInvitesList, adminInvitesRevoke];
