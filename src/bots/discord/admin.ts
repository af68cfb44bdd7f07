/**
 * `/admin …` on Discord: its subcommands and options read into the shared {@link AdminCommand},
 * which the shared runner carries out. Discord hides the command from members without Manage
 * Server; the job service's admin allowlist decides.
 */
import type { ChatInputCommandInteraction } from 'discord.js';
import type { Actor } from '../../jobs/types.js';
import type { DashboardLinks } from '../shared/platform-observer.js';
import { isAdminPeriod, runAdminCommand, type AdminCommand, type AdminJobs, type AdminPeriod, type QuotaOverride } from '../shared/admin-commands.js';

type AdminOptions = ChatInputCommandInteraction['options'];

/** Runs `/admin …`; returns the answer, or throws the job service's UserError. */
export async function answerAdmin(jobs: AdminJobs, actor: Actor, options: AdminOptions, dashboardLinks?: DashboardLinks): Promise<string> {
  const command = adminCommandOf(options);
  if (typeof command === 'string') return command;
  return runAdminCommand(jobs, actor, command, { platform: 'discord', format: 'discord', now: Date.now(), ...(dashboardLinks === undefined ? {} : { dashboardLinks }) });
}

/** The admin command the options describe, or what to tell the admin when they describe none. */
export function adminCommandOf(options: AdminOptions): AdminCommand | string {
  const group = options.getSubcommandGroup(false);
  const sub = options.getSubcommand(true);
  const userId = (): string => options.getUser('user', true).id;
  if (group === 'queue') {
    if (sub === 'pause' || sub === 'resume' || sub === 'clear') return { type: 'queue', action: sub };
    return `Unknown command /admin queue ${sub}.`;
  }
  if (group === 'quota' && sub === 'set') {
    const tier = options.getString('tier');
    const jobsPerDay = options.getInteger('jobs_per_day');
    const gpuSecondsPerDay = options.getInteger('gpu_seconds_per_day');
    const override: QuotaOverride = {
      ...(jobsPerDay === null ? {} : { jobsPerDay }),
      ...(gpuSecondsPerDay === null ? {} : { gpuSecondsPerDay }),
    };
    if (tier === null && Object.keys(override).length === 0) return 'Give a tier, jobs_per_day or gpu_seconds_per_day.';
    return { type: 'quota', userId: userId(), ...(tier === null ? {} : { tier }), ...(Object.keys(override).length === 0 ? {} : { override }) };
  }
  if (group !== null) return `Unknown command /admin ${group} ${sub}.`;
  switch (sub) {
    case 'usage': {
      const user = options.getUser('user');
      return { type: 'usage', period: periodOf(options), ...(user === null ? {} : { userId: user.id }) };
    }
    case 'stats':
      return { type: 'stats', period: periodOf(options) };
    case 'ban': {
      const reason = options.getString('reason');
      return { type: 'ban', userId: userId(), ...(reason === null ? {} : { reason }) };
    }
    case 'unban':
      return { type: 'unban', userId: userId() };
    case 'audit':
      return { type: 'audit', page: Math.max(1, options.getInteger('page') ?? 1) };
    case 'dashboard':
      return { type: 'dashboard' };
    default:
      return `Unknown command /admin ${sub}.`;
  }
}

function periodOf(options: AdminOptions): AdminPeriod {
  const value = options.getString('period');
  return isAdminPeriod(value) ? value : 'today';
}
