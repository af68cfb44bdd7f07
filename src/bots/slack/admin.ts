/**
 * `/reelbot-admin …` on Slack: the text parsed by {@link parseAdminCommandText}, carried out by
 * the shared admin command runner. A non-admin is refused before anything about the grammar is
 * said; the job service's admin allowlist decides and writes the audit log.
 */
import type { JobService } from '../../jobs/job-service.js';
import type { Logger } from '../../log.js';
import type { DashboardLinks } from '../shared/platform-observer.js';
import { adminCommandWrites, runAdminCommand } from '../shared/admin-commands.js';
import { answerSafely } from '../shared/user-commands.js';
import { ADMIN_USAGE, parseAdminCommandText } from './admin-command.js';
import { ephemeral, slackActor, type Ack, type SlashCommand } from './payload.js';
import { answerAfterAck } from './response-url.js';

export interface SlackAdminOptions {
  jobs: JobService;
  logger: Logger;
  now: () => number;
  adminIds?: readonly string[];
  dashboardLinks?: DashboardLinks;
}

export async function onAdminCommand(command: SlashCommand, ack: Ack, options: SlackAdminOptions): Promise<void> {
  const { jobs, logger } = options;
  const actor = slackActor(command.user_id, command.user_name, options.adminIds, { teamId: command.team_id, channelId: command.channel_id });
  const parsed = parseAdminCommandText(command.text);
  // Refuse a non-admin before saying anything about the grammar.
  if (!jobs.isAdmin(actor)) return ack(ephemeral('Only the bot admins can use /reelbot-admin.'));
  if (!parsed.ok) return ack(ephemeral(parsed.message));
  const admin = parsed.command;
  const answer = () => (admin.type === 'help' ? ADMIN_USAGE : runAdminCommand(jobs, actor, admin, {
          platform: 'slack',
          format: 'slack',
          now: options.now(),
          ...(options.dashboardLinks === undefined ? {} : { dashboardLinks: options.dashboardLinks }),
        }));
  // A change writes to the database: acked first, answered on the response_url (a locked database never delays the ack).
  if (admin.type !== 'help' && adminCommandWrites(admin)) {
    await ack();
    await answerAfterAck(command, await answerSafely(answer, logger, { command: command.command }), logger);
    return;
  }
  await ack(ephemeral(await answerSafely(answer, logger, { command: command.command })));
}
