/**
 * `reelbot serve`: the bot itself. Opens the database, recovers what a crash left, starts the
 * worker pool and connects the platforms whose tokens are set; SIGTERM / SIGINT drain it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { DiscordAdapter } from './bots/discord/discord-adapter.js';
import type { Config } from './config.js';
import { resolveFfmpegPaths } from './engine/video/ffmpeg-paths.js';
import { createLogger } from './log.js';
import { drainOnSignals, startApp } from './main.js';

export interface ServeContext {
  config(): Config;
  out(line?: string): void;
  fail(message: string, exitCode: number): never;
}

/** sysexits.h EX_CONFIG: nothing to serve without a platform token. */
const EXIT_CONFIG = 78;

export function registerServe(program: Command, context: ServeContext): void {
  program
    .command('serve')
    .description('run the bot: the job queue and workers, and Discord when REELBOT_DISCORD_TOKEN is set')
    .action(async () => {
      const config = context.config();
      if (!config.discordToken) {
        const slack = config.slackBotToken || config.slackAppToken ? ' The Slack adapter is not part of this build yet, so Slack tokens alone are not enough.' : '';
        context.fail(
          `Nothing to serve: set REELBOT_DISCORD_TOKEN to the bot token of your Discord application (see the README).${slack}`,
          EXIT_CONFIG,
        );
      }
      const ffmpeg = resolveFfmpegPaths(config);
      const tempDir = await mkdtemp(join(tmpdir(), 'reelbot-uploads-'));
      const logger = createLogger(config.logLevel);
      let discord: DiscordAdapter | undefined;
      const app = startApp(config, {
        logger,
        // The adapter follows job events from the start, so recovery notices reach it too.
        beforeStart: ({ jobs }) => {
          discord = new DiscordAdapter({
            token: config.discordToken!,
            apiUrl: config.discordApiUrl,
            jobs,
            logger,
            ffmpegPath: ffmpeg.ffmpeg,
            ffprobePath: ffmpeg.ffprobe,
            tempDir,
            adminIds: config.admins.discord,
            // Clips to edit outlive the process: a queued edit reads its clip after a restart.
            clipDir: join(config.outputDir, 'clips'),
            maxClipBytes: config.input.maxBytes,
          });
        },
      });
      const stopped = new Promise<void>((resolve) =>
        drainOnSignals(app, () => {
          void (async () => {
            await discord?.stop().catch(() => undefined);
            await rm(tempDir, { recursive: true, force: true });
            resolve();
          })();
        }),
      );
      try {
        await discord!.start();
      } catch (error) {
        await app.stop();
        await rm(tempDir, { recursive: true, force: true });
        context.fail(`Could not connect to Discord: ${(error as Error).message}`, 1);
      }
      context.out(`reelbot is running on Discord (${config.devices.length} worker${config.devices.length === 1 ? '' : 's'}: ${config.devices.join(', ')}). Stop it with Ctrl-C or SIGTERM.`);
      await stopped;
    });
}
