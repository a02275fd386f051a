/**
 * `linkgate admin invite`: a one-time link to the admin console that makes
 * whoever signs in with it first an owner (src/core/console-invites.ts).
 * It adds owners to a console LINKGATE_ADMINS has opened and refuses
 * otherwise: an invite never opens a closed console. While a gateway runs on
 * the embedded database it asks that gateway (the operator API's
 * `POST /console/invites`), as the `tenants` commands do.
 */
import { CliError, EXIT, type Command } from './cli.ts';
import { print } from './output.ts';
import { loadConfig } from './runtime.ts';

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
    if (config.admins.length === 0) {
      throw new CliError(EXIT.failure, 'console_closed', 'the admin console is closed (LINKGATE_ADMINS is unset), and an invite does not open it: add an owner to LINKGATE_ADMINS first');
    }
    const { answerOf, operatorRequest, runningGateway } = await import('./gateway.ts');
    const { CreatedInviteAnswer, makeInvite } = await import('../http/admin.ts');
    const gateway = runningGateway(io, config);
    const invite = gateway
      ? await answerOf(gateway, await operatorRequest(gateway, config, 'POST', '/console/invites', undefined, '`admin invite` and the tenants commands'), CreatedInviteAnswer)
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

export const CONSOLE_COMMANDS: readonly Command[] = [adminInvite];
