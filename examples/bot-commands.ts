/**
 * A Discord-style bot's `/register` and `/whoami` commands, written against
 * `linkgate/client`. The handlers take the user id and return the reply
 * text, so they drop into discord.js (`interaction.user.id`,
 * `interaction.reply(...)`) or any other chat library unchanged.
 *
 * Run without Discord, against a gateway (`npm start`, or `npm run demo`):
 *
 *   LINKGATE_URL=http://127.0.0.1:8000 LINKGATE_API_KEY=… \
 *     node examples/bot-commands.ts register 80351110224678912 anilist
 *   node examples/bot-commands.ts whoami 80351110224678912 anilist
 *
 * `register` prints the link to open, then waits (up to a minute) for the
 * user to finish and says who they are.
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import {
  createLinkgateClient,
  LinkgateClientError,
  NeedsReauthError,
  NotLinkedError,
  ProviderUnconfiguredError,
  type LinkgateClient,
} from 'linkgate/client';

export function botCommands(linkgate: LinkgateClient, provider: string) {
  return {
    /** `/register`: a link to open, or who they already are. */
    async register(userId: string): Promise<string> {
      try {
        const link = await linkgate.getLink(userId, provider);
        if (link?.status === 'active') return `You are already linked as ${link.externalName ?? link.externalId}.`;
        const { url } = await linkgate.createLinkUrl(userId, provider);
        return `Open this link to connect your account (it works once, for a few minutes): ${url}`;
      } catch (error) {
        if (error instanceof ProviderUnconfiguredError) return notAvailable(error);
        throw error;
      }
    },

    /** Waits for the user to finish `/register`; the follow-up message. */
    async registered(userId: string, timeoutSeconds = 60): Promise<string> {
      const link = await linkgate.waitForLink(userId, provider, { timeoutSeconds });
      return link ? `Linked! You are ${link.externalName ?? link.externalId}.` : 'I did not see you finish; run /register again when you are ready.';
    },

    /** `/whoami`: needs a working link, else the reply is the link to make one. */
    async whoami(userId: string): Promise<string> {
      try {
        const link = await linkgate.requireLink(userId, provider);
        return `You are ${link.externalName ?? link.externalId} (linked ${link.linkedAt.slice(0, 10)}).`;
      } catch (error) {
        if (error instanceof NotLinkedError) return `Please link your account first: ${error.linkUrl}`;
        if (error instanceof NeedsReauthError) return `Your link stopped working; please link again: ${error.linkUrl}`;
        if (error instanceof ProviderUnconfiguredError) return notAvailable(error);
        throw error;
      }
    },
  };
}

/**
 * The gateway's message names what the operator still has to set (never a
 * secret); a bot in production might log it and tell the user less.
 */
const notAvailable = (error: ProviderUnconfiguredError) => `Linking is not available yet: ${error.message}.`;

// Run as a script: `node examples/bot-commands.ts <register|whoami> <userId> [provider]`.
// (Compared as real paths: the script may be reached through a symlinked folder.)
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  const [command, userId, provider = 'demo'] = process.argv.slice(2);
  const apiKey = process.env.LINKGATE_API_KEY;
  if (!userId || (command !== 'register' && command !== 'whoami') || !apiKey) {
    console.error('usage: LINKGATE_API_KEY=… [LINKGATE_URL=…] node examples/bot-commands.ts <register|whoami> <userId> [provider]');
    process.exit(2);
  }
  const commands = botCommands(createLinkgateClient({ baseUrl: process.env.LINKGATE_URL ?? 'http://127.0.0.1:8000', apiKey }), provider);
  try {
    if (command === 'whoami') {
      console.log(await commands.whoami(userId));
    } else {
      const reply = await commands.register(userId);
      console.log(reply);
      if (reply.startsWith('Open this link')) console.log(await commands.registered(userId));
    }
  } catch (error) {
    // A bot would log this and answer "something went wrong"; here, say what Linkgate said.
    console.error(error instanceof LinkgateClientError ? `linkgate: ${error.code}: ${error.message}` : error);
    process.exit(1);
  }
}
