/**
 * The grammar of `/reelbot-admin` on Slack, as a pure parser: one line of text in, an
 * {@link AdminCommand} or a message for the admin out. Users are Slack mentions as the slash
 * command delivers them with "Escape channels, users, and links" on (`<@U0123|ann>`), or bare
 * user ids (`U0123`).
 *
 * @example
 * parseAdminCommandText('ban <@U0123|ann> spamming'); // { ok: true, command: { type: 'ban', userId: 'U0123', reason: 'spamming' } }
 */
import { isAdminPeriod as isPeriod, type AdminCommand, type AdminPeriod, type QuotaOverride } from '../shared/admin-commands.js';

/** A parsed `/reelbot-admin` line: a command for the shared runner, or `help`. */
export type SlackAdminCommand = AdminCommand | { type: 'help' };

export type AdminParse = { ok: true; command: SlackAdminCommand } | { ok: false; message: string };

/** The usage lines shown for `help` and after a mistake. */
export const ADMIN_USAGE = [
  '`/reelbot-admin usage [@user] [today|month|all]` usage totals, top users and workspaces',
  '`/reelbot-admin stats [today|month|all]` jobs by state, failure rate, durations',
  '`/reelbot-admin quota set @user [tier=NAME|default] [jobs_per_day=N|none] [gpu_seconds_per_day=N|none]`',
  '`/reelbot-admin ban @user [reason]` · `/reelbot-admin unban @user`',
  '`/reelbot-admin queue pause|resume|clear`',
  '`/reelbot-admin audit [page]` the audit log of admin actions, newest first',
  '`/reelbot-admin dashboard` a one-time sign-in link to the web dashboard (only you see it)',
].join('\n');

/** Quota keys an admin may set, as typed → as stored. */
const QUOTA_KEYS: Record<string, keyof QuotaOverride> = {
  jobs_per_day: 'jobsPerDay',
  gpu_seconds_per_day: 'gpuSecondsPerDay',
  gpu_seconds_per_month: 'gpuSecondsPerMonth',
  max_pending_jobs: 'maxPendingJobs',
};

const USER_MENTION = /^<@([UW][A-Z0-9]{2,})(?:\|[^>]*)?>$/;
const USER_ID = /^[UW][A-Z0-9]{2,}$/;

/** The Slack user id in a mention (`<@U0123|ann>`, `<@U0123>`) or a bare id, or undefined. */
export function parseUserRef(token: string | undefined): string | undefined {
  if (token === undefined) return undefined;
  const mention = USER_MENTION.exec(token);
  if (mention !== null) return mention[1];
  return USER_ID.test(token) ? token : undefined;
}

/** Parses the text after `/reelbot-admin`. Never throws. */
export function parseAdminCommandText(text: string): AdminParse {
  const words = text.trim().split(/\s+/).filter((word) => word !== '');
  const [verb = '', ...rest] = words;
  const fail = (message: string): AdminParse => ({ ok: false, message: `${message}\n${ADMIN_USAGE}` });
  switch (verb.toLowerCase()) {
    case '':
    case 'help':
      return { ok: true, command: { type: 'help' } };
    case 'dashboard':
      return rest.length === 0 ? { ok: true, command: { type: 'dashboard' } } : fail('`dashboard` takes nothing after it.');
    case 'usage': {
      let userId: string | undefined;
      let period: AdminPeriod = 'today';
      for (const word of rest) {
        const user = parseUserRef(word);
        if (user !== undefined && userId === undefined) userId = user;
        else if (isPeriod(word)) period = word;
        else return fail(`I don't understand ${quote(word)} in usage: give a user (@name) and/or a period (today, month, all).`);
      }
      return { ok: true, command: { type: 'usage', ...(userId === undefined ? {} : { userId }), period } };
    }
    case 'stats': {
      if (rest.length > 1 || (rest[0] !== undefined && !isPeriod(rest[0]))) return fail('stats takes one period: today, month or all.');
      return { ok: true, command: { type: 'stats', period: (rest[0] as AdminPeriod | undefined) ?? 'today' } };
    }
    case 'quota': {
      if (rest[0]?.toLowerCase() !== 'set') return fail('Use quota set @user with tier=… and/or limits.');
      const userId = parseUserRef(rest[1]);
      if (userId === undefined) return fail(rest[1] === undefined ? 'quota set needs a user (@name).' : `${quote(rest[1])} is not a Slack user mention.`);
      let tier: string | null | undefined;
      const override: QuotaOverride = {};
      for (const pair of rest.slice(2)) {
        const [key = '', value = ''] = pair.split('=', 2);
        if (value === '') return fail(`Write settings as key=value, got ${quote(pair)}.`);
        if (key === 'tier') {
          tier = value === 'default' ? null : value;
          continue;
        }
        const stored = QUOTA_KEYS[key];
        if (stored === undefined) return fail(`Unknown quota setting ${quote(key)}; known: tier, ${Object.keys(QUOTA_KEYS).join(', ')}.`);
        if (value === 'none' || value === 'default') {
          override[stored] = null;
          continue;
        }
        const n = Number(value);
        if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) return fail(`${key} must be a whole number from 0 up (or none), got ${quote(value)}.`);
        override[stored] = n;
      }
      if (tier === undefined && Object.keys(override).length === 0) return fail('Give a tier=… or a limit such as jobs_per_day=50.');
      return { ok: true, command: { type: 'quota', userId, ...(tier === undefined ? {} : { tier }), ...(Object.keys(override).length === 0 ? {} : { override }) } };
    }
    case 'ban':
    case 'unban': {
      const userId = parseUserRef(rest[0]);
      if (userId === undefined) return fail(rest[0] === undefined ? `${verb} needs a user (@name).` : `${quote(rest[0])} is not a Slack user mention.`);
      if (verb.toLowerCase() === 'unban') return rest.length > 1 ? fail('unban takes only the user.') : { ok: true, command: { type: 'unban', userId } };
      const reason = rest.slice(1).join(' ').trim();
      return { ok: true, command: { type: 'ban', userId, ...(reason === '' ? {} : { reason }) } };
    }
    case 'queue': {
      const action = rest[0]?.toLowerCase();
      if (rest.length !== 1 || (action !== 'pause' && action !== 'resume' && action !== 'clear')) return fail('queue takes pause, resume or clear.');
      return { ok: true, command: { type: 'queue', action } };
    }
    case 'audit': {
      const page = rest[0] === undefined ? 1 : Number(rest[0]);
      if (rest.length > 1 || !Number.isSafeInteger(page) || page < 1) return fail('audit takes a page number from 1 up.');
      return { ok: true, command: { type: 'audit', page } };
    }
    default:
      return fail(`Unknown admin command ${quote(verb)}.`);
  }
}

function quote(text: string): string {
  return `\`${text.replace(/`/g, 'ˋ').slice(0, 60)}\``;
}
