/**
 * `reelbot discord register [--guild <id>] [--clear]`: overwrites the Discord application's
 * commands with the ones the adapter handles (one bulk PUT, so renamed or dropped commands go
 * away too). With `--guild` they go to one server and show at once (development); without it
 * they are global (production), which Discord can take up to an hour to show everywhere.
 * `--clear` removes them. Needs only REST: the bot token from REELBOT_DISCORD_TOKEN, the API
 * base from REELBOT_DISCORD_API_URL; the application id comes from `GET /applications/@me`.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { DiscordAPIError, HTTPError, REST, Routes, type RESTGetCurrentApplicationResult } from 'discord.js';
import { allCommandData } from './bots/discord/commands.js';
import type { Config } from './config.js';

export interface DiscordCliContext {
  config(): Config;
  out(line?: string): void;
  fail(message: string, exitCode: number): never;
}

/** sysexits.h EX_CONFIG: the token is not set. */
const EXIT_CONFIG = 78;
const EXIT_FAILURE = 1;

/** Discord JSON error codes this command explains. */
const UNKNOWN_GUILD = 10004;
const MISSING_ACCESS = 50001;

/** Application command types (discord-api-types ApplicationCommandType). */
const COMMAND_KINDS: Record<number, (name: string) => string> = {
  1: (name) => `/${name}`,
  2: (name) => `${name} (user menu)`,
  3: (name) => `${name} (message menu)`,
};

/** What `register` needs to know about a command to report it. */
interface NamedCommand {
  name: string;
  type?: number;
}

function guildId(value: string): string {
  if (!/^\d{17,20}$/.test(value.trim())) {
    throw new InvalidArgumentError(`--guild must be a server id (17 to 20 digits; Discord: Developer Mode on, right-click the server, Copy Server ID), got "${value}".`);
  }
  return value.trim();
}

/** `/video`, `Edit clip… (message menu)`: how a registered command shows up in Discord. */
export function describeCommand(command: NamedCommand): string {
  return (COMMAND_KINDS[command.type ?? 1] ?? ((name: string) => name))(command.name);
}

export function registerDiscord(program: Command, context: DiscordCliContext): void {
  const discord = program.command('discord').description('set up the Discord application');
  discord
    .command('register')
    .description('overwrite the application\'s commands with reelbot\'s: in one server (shows at once) or globally (can take up to an hour)')
    .option('--guild <id>', 'register in this server only, for development', guildId)
    .option('--clear', 'remove the commands instead (in the server, or the global ones)')
    .action(async (flags: { guild?: string; clear?: boolean }) => {
      const config = context.config();
      const token = config.discordToken;
      if (token === undefined) {
        context.fail('No Discord bot token: set REELBOT_DISCORD_TOKEN to the bot token of your Discord application (Developer Portal → your application → Bot → Reset Token).', EXIT_CONFIG);
      }
      const rest = new REST({ api: config.discordApiUrl, version: '10', retries: 1, timeout: 30_000 }).setToken(token);
      const where = flags.guild === undefined ? 'globally' : `in server ${flags.guild}`;
      try {
        const application = (await rest.get(Routes.currentApplication())) as RESTGetCurrentApplicationResult;
        const route = flags.guild === undefined ? Routes.applicationCommands(application.id) : Routes.applicationGuildCommands(application.id, flags.guild);
        const body: NamedCommand[] = flags.clear === true ? [] : allCommandData();
        const registered = (await rest.put(route, { body })) as NamedCommand[];
        const app = `${application.name} (${application.id})`;
        if (flags.clear === true) {
          context.out(`Removed the commands of ${app} ${where}${flags.guild === undefined ? '; Discord can take up to an hour to hide them everywhere' : ''}.`);
          return;
        }
        context.out(`Registered ${registered.length} command${registered.length === 1 ? '' : 's'} of ${app} ${where}: ${registered.map(describeCommand).join(', ')}.`);
        context.out(
          flags.guild === undefined
            ? 'Global commands can take up to an hour to show in every server. For development, register in one server with --guild <id>; they show at once.'
            : 'They show in that server at once. Remove them with --clear before registering globally, or members see each command twice.',
        );
      } catch (error) {
        context.fail(explain(error, { apiUrl: config.discordApiUrl, guild: flags.guild, where }), EXIT_FAILURE);
      }
    });
}

/** A sentence for what went wrong talking to Discord, naming the setting to fix. */
function explain(error: unknown, at: { apiUrl: string; guild: string | undefined; where: string }): string {
  if (error instanceof DiscordAPIError) {
    if (error.status === 401) {
      return 'Discord refused the bot token (401 Unauthorized). Check REELBOT_DISCORD_TOKEN: copy the token again from the Developer Portal (your application → Bot → Reset Token).';
    }
    if (error.code === MISSING_ACCESS && at.guild !== undefined) {
      return `The application has no access to server ${at.guild} (Discord error 50001 Missing Access). Invite the bot to that server with the bot and applications.commands scopes (see the README), or check the server id.`;
    }
    if (error.code === UNKNOWN_GUILD && at.guild !== undefined) {
      return `Discord knows no server ${at.guild} (error 10004 Unknown Guild). Check the id: Developer Mode on, right-click the server, Copy Server ID.`;
    }
    return `Discord refused to register the commands ${at.where}: ${error.message} (HTTP ${error.status}, code ${error.code}).`;
  }
  if (error instanceof HTTPError) return `Discord answered HTTP ${error.status} at ${at.apiUrl}: ${error.message}. Check REELBOT_DISCORD_API_URL.`;
  const message = error instanceof Error ? ((error.cause as Error | undefined)?.message ?? error.message) : String(error);
  return `Could not reach Discord at ${at.apiUrl}: ${message}. Check REELBOT_DISCORD_API_URL and the network.`;
}
