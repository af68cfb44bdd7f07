/**
 * `reelbot dashboard link`: prints a one-time sign-in link to the dashboard of `reelbot serve`
 * (it expires in `REELBOT_DASHBOARD_LINK_MINUTES`). The operator at the command line is an admin.
 */
import type { Command } from 'commander';
import { operatorName, writeFile, writeRoute } from './cli-operator.js';
import type { Config } from './config.js';
import { AppError } from './errors.js';
import type { Db } from './store/db.js';
import { createDashboardLink } from './web/dashboard/sign-in.js';

export interface DashboardContext {
  config(): Config;
  out(line?: string): void;
  fail(message: string, exitCode: number): never;
  /** Opens the bot's (existing, migrated) database for `use`. */
  withDatabase<T>(config: Config, use: (db: Db) => T): T;
  now(): number;
}

/** sysexits.h EX_CONFIG. */
const EXIT_CONFIG = 78;

export function registerDashboard(program: Command, context: DashboardContext): void {
  const dashboard = program.command('dashboard').description('the web dashboard of "reelbot serve" (needs REELBOT_HTTP_PORT)');
  dashboard
    .command('link')
    .description('print a one-time sign-in link to the dashboard; it expires in minutes (REELBOT_DASHBOARD_LINK_MINUTES)')
    .action(async () => {
      const config = context.config();
      const fail = (message: string): never => context.fail(message, 1);
      const actor = { platform: 'cli' as const, externalId: operatorName() };
      // The running bot makes the link itself: it knows the address it serves the dashboard at.
      const coordinator = writeRoute(config, fail);
      let link: { url: string; expiresAt: number };
      if (coordinator) {
        try {
          link = await coordinator.client.dashboardLink(actor.externalId);
        } catch (error) {
          if (error instanceof AppError) return fail(error.userMessage);
          throw error;
        }
      } else {
        if (config.http.port === undefined && config.http.publicUrl === undefined) {
          context.fail(
            'The dashboard is served by "reelbot serve" only when REELBOT_HTTP_PORT is set. Set it (and REELBOT_HTTP_PUBLIC_URL when a reverse proxy serves it), restart serve, then ask for a link again.',
            EXIT_CONFIG,
          );
        }
        link = context.withDatabase(config, (db) => writeFile(db, config, () => createDashboardLink(db, config, actor, { now: context.now() }), fail));
      }
      const minutes = Math.max(1, Math.round((link.expiresAt - context.now()) / 60_000));
      context.out(`Sign-in link for the reelbot dashboard, for ${actor.platform}:${actor.externalId}. It works once, for ${minutes} minute${minutes === 1 ? '' : 's'} (until ${new Date(link.expiresAt).toISOString()}):`);
      context.out(link.url);
    });
}
