/**
 * `linkgate admin invite`: a one-time link to the admin console that makes
 * whoever signs in with it first an owner (src/core/console-invites.ts).
 * It adds owners to a console LINKGATE_ADMINS has opened and refuses
 * otherwise: an invite never opens a closed console.
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
    'The link works once, for an hour. Whoever opens it signs in with one of the default tenant\'s providers and becomes an owner of the console at /admin, as if LINKGATE_ADMINS listed them; the invite is then spent. Only its SHA-256 is stored, and the audit trail says an invite was made (admin.invite) and by whom it was used (admin.invite_accept), never the link.',
    'The console must be open: with LINKGATE_ADMINS unset every /admin URL is a 404, and an invite does not change that. With the embedded database, stop the server first (it holds the database; the API has no route for invites).',
  ],
  async run(args, io) {
    const { config } = loadConfig(io);
    if (config.admins.length === 0) {
      throw new CliError(EXIT.failure, 'console_closed', 'the admin console is closed (LINKGATE_ADMINS is unset), and an invite does not open it: add an owner to LINKGATE_ADMINS first');
    }
    const { refuse, runningGateway } = await import('./gateway.ts');
    const gateway = runningGateway(io, config);
    if (gateway) throw refuse(gateway, 'an invite is written to the database itself (the gateway has no API for it)', 'admin invite');
    const { auditedCommand, requireMigrated, withDatabase } = await import('./database.ts');
    const { createInvite } = await import('../core/console-invites.ts');
    const invite = await withDatabase(io, config, async (database) => {
      await requireMigrated(database);
      return auditedCommand(io, database.db, { action: 'admin.invite', tenant: null, target: 'console' }, async (note) => {
        const made = await createInvite(database.db, new Date(io.now()));
        note.detail = { expiresAt: made.expiresAt.toISOString() };
        return made;
      });
    });
    const url = new URL(`/admin/invite/${invite.token}`, config.publicBaseUrl).href;
    print(io, args, { url, expiresAt: invite.expiresAt.toISOString() }, () => `${url}\n`);
    io.err(`linkgate: this link works once, until ${invite.expiresAt.toISOString()}; whoever signs in with it first becomes an owner of the console\n`);
    return EXIT.ok;
  },
};

export const CONSOLE_COMMANDS: readonly Command[] = [adminInvite];
