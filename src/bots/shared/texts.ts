/**
 * Every message a user reads, as pure functions of plain data. Both platforms render the same
 * simple markdown except bold (`**x**` on Discord, `*x*` on Slack), so each function takes the
 * {@link Format}. Italics (`_x_`), code (`` `x` ``), quotes (`> x`) and mentions (`<@id>`) are
 * written the same for both. No function ever shows a stack trace: failures show the job's user
 * message only.
 */
import type { AuditEntry, QueueSnapshot, UserUsage } from '../../jobs/job-service.js';
import type { JobProgress, JobRecord, JobState, Platform, QuotaLeft, Usage } from '../../jobs/types.js';
import { EDIT_FLAGS, VIDEO_FLAGS, type FlagSpec } from './video-command.js';
import { formatBytes } from '../../media/format-bytes.js';

export type Format = 'discord' | 'slack';

/** What a user sees when something fails on our side (the details go to the log only). */
export const GENERIC_FAILURE_TEXT = 'Something went wrong on our side. Please try again in a moment.';

/** Longest prompt shown in a message before it is cut with an ellipsis. */
export const PROMPT_PREVIEW_CHARS = 200;

// --- Building blocks ----------------------------------------------------------------------------

/** Bold in the platform's markdown. */
export function bold(format: Format, text: string): string {
  return format === 'discord' ? `**${text}**` : `*${text}*`;
}

/** Inline code; backticks inside are replaced so they cannot break out. */
export function code(text: string): string {
  return `\`${text.replace(/`/g, 'ˋ')}\``;
}

/** A user mention; both platforms use `<@id>`. */
export function mention(externalId: string): string {
  return `<@${externalId}>`;
}

/**
 * Cuts text to `max` characters at a word boundary when there is one near the end, and adds an
 * ellipsis; newlines become spaces so a prompt stays on one line.
 */
export function truncate(text: string, max = PROMPT_PREVIEW_CHARS): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  const chars = [...flat];
  if (chars.length <= max) return flat;
  const cut = chars.slice(0, max - 1).join('');
  const space = cut.lastIndexOf(' ');
  return `${(space >= max * 0.6 ? cut.slice(0, space) : cut).trimEnd()}…`;
}

/** A quoted prompt or instruction, safe to put in a message of that platform (no markup or mention of its own). */
export function quoted(format: Format, text: string, max = PROMPT_PREVIEW_CHARS): string {
  return `“${escapeMarkdown(format, truncate(text, max))}”`;
}

/** Escapes the characters both platforms treat as markup, and defuses mentions. */
export function escapeMarkdown(format: Format, text: string): string {
  if (format === 'slack') {
    // Slack's mrkdwn has no backslash escapes: &, < and > become entities (which also defuses
    // <!here> and <@U…>), and a zero-width space before each markup character keeps it literal.
    return text
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/([*_~`])/g, '\u200b$1')
      .replace(/@(everyone|here|channel)\b/gi, '@\u200b$1');
  }
  return text
    .replace(/([\\*_~`|>])/g, '\\$1')
    .replace(/<([@#!])/g, '<\u200b$1')
    .replace(/@(everyone|here)\b/gi, '@\u200b$1');
}

/** A duration for people: `45 s`, `2 min 5 s`, `1 h 20 min`, `3 days`. */
export function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return seconds % 60 === 0 ? `${minutes} min` : `${minutes} min ${seconds % 60} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return minutes % 60 === 0 ? `${hours} h` : `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} days`;
}

/** An estimate for people: `under a minute`, `about 2 min`, `about 1 h 30 min`. */
export function formatEta(ms: number): string {
  if (ms < 60_000) return 'under a minute';
  const minutes = Math.round(ms / 60_000);
  if (minutes < 60) return `about ${minutes} min`;
  const hours = Math.floor(minutes / 60);
  const rest = Math.round((minutes % 60) / 10) * 10;
  return rest === 0 || rest === 60 ? `about ${rest === 60 ? hours + 1 : hours} h` : `about ${hours} h ${rest} min`;
}

/** What is left today: `14 videos left today`, `1 video left today`, or `no daily limit`. */
export function formatQuotaLeft(left: Pick<QuotaLeft, 'jobsToday'>): string {
  if (left.jobsToday === null) return 'no daily limit';
  const n = Math.max(0, left.jobsToday);
  return `${n} ${n === 1 ? 'video' : 'videos'} left today`;
}

/** A text progress bar: `▰▰▰▱▱▱▱▱▱▱▱▱` for 12 of 48 with 12 cells. */
export function progressBar(step: number, total: number, cells = 12): string {
  const fraction = total > 0 ? Math.min(1, Math.max(0, step / total)) : 0;
  const filled = Math.round(fraction * cells);
  return '▰'.repeat(filled) + '▱'.repeat(cells - filled);
}

/** The prompt (text2video) or instruction (edit) of a job, or an empty string. */
export function describeJob(job: Pick<JobRecord, 'kind' | 'params'>): string {
  const text = job.kind === 'edit' ? job.params.instruction : job.params.prompt;
  return typeof text === 'string' ? text : '';
}

function jobLabel(format: Format, jobId: number): string {
  return bold(format, `Job #${jobId}`);
}

function positionText(position: number): string {
  if (position <= 0) return 'running now';
  if (position === 1) return 'next in line';
  return `#${position} in the queue`;
}

// --- Job lifecycle ------------------------------------------------------------------------------

/** Reply to a submitted job: number, place in line, ETA and what is left of the quota. */
export function queuedText(format: Format, data: { jobId: number; position: number; etaMs: number; quotaLeft: Pick<QuotaLeft, 'jobsToday'>; prompt?: string }): string {
  const lines = [`${jobLabel(format, data.jobId)} is queued: ${positionText(data.position)}, ready in ${formatEta(data.etaMs)}.`];
  if (data.prompt !== undefined && data.prompt !== '') lines.push(`> ${quoted(format, data.prompt)}`);
  lines.push(`_${capitalize(formatQuotaLeft(data.quotaLeft))}._`);
  return lines.join('\n');
}

/** The progress line: `▰▰▰▱▱▱▱▱▱▱▱▱ 12/48 · denoising`. */
export function progressText(format: Format, data: { jobId: number; progress: JobProgress }): string {
  const { step, total, stage } = data.progress;
  const counts = total > 0 ? ` ${step}/${total}` : '';
  return `${jobLabel(format, data.jobId)} ${code(progressBar(step, total))}${counts}${stage ? ` · ${stage}` : ''}`;
}

/** A finished job, shown with the upload. */
export function doneText(
  format: Format,
  data: {
    jobId: number;
    kind: JobRecord['kind'];
    /** Prompt or instruction. */
    text: string;
    seed: number;
    elapsedMs: number;
    frames?: number;
    width?: number;
    height?: number;
    bytes?: number;
    /** From fitting the upload (the GIF preview). */
    note?: string;
    /** The engine ran a built-in set: say that the video shows untrained demo weights, not the prompt. */
    untrainedWeights?: boolean;
    /** The UNet ran per frame (the cross-frame rewrite found no attention): say that it flickers. */
    crossFrameUnavailable?: boolean;
  },
): string {
  const facts = [`seed ${code(String(data.seed))}`, `took ${formatDuration(data.elapsedMs)}`];
  if (data.frames !== undefined) facts.push(`${data.frames} frames`);
  if (data.width !== undefined && data.height !== undefined) facts.push(`${data.width}×${data.height}`);
  if (data.bytes !== undefined) facts.push(formatBytes(data.bytes));
  const lines = [`${jobLabel(format, data.jobId)} ${data.kind === 'edit' ? 'edited' : 'done'}: ${quoted(format, data.text)}`, facts.join(' · ')];
  if (data.note !== undefined && data.note !== '') lines.push(`_${data.note}_`);
  if (data.untrainedWeights === true) lines.push(`_${UNTRAINED_WEIGHTS_TEXT}_`);
  if (data.crossFrameUnavailable === true) lines.push(`_${PER_FRAME_TEXT}_`);
  return lines.join('\n');
}

/**
 * {@link doneText} for a finished job from its record and engine result (frames, size and the
 * notes it carries), with the size of the file sent and the note from fitting it to the limit.
 */
export function deliveredText(format: Format, job: JobRecord, result: unknown, upload: { bytes: number; note?: string }): string {
  const fields = typeof result === 'object' && result !== null ? (result as Record<string, unknown>) : {};
  return doneText(format, {
    jobId: job.id,
    kind: job.kind,
    text: describeJob(job),
    seed: job.seed,
    elapsedMs: (job.finishedAt ?? Date.now()) - (job.startedAt ?? job.queuedAt),
    bytes: upload.bytes,
    ...numberField(fields, 'frames'),
    ...numberField(fields, 'width'),
    ...numberField(fields, 'height'),
    ...(upload.note === undefined ? {} : { note: upload.note }),
    ...resultNotes(fields),
  });
}

/** The `file` of a job's result, when it has one. */
export function resultFile(result: unknown): string | undefined {
  const file = typeof result === 'object' && result !== null ? (result as { file?: unknown }).file : undefined;
  return typeof file === 'string' && file !== '' ? file : undefined;
}

/** Shown when a succeeded job's result names no file. */
export const MISSING_VIDEO_TEXT = 'The video file is missing.';

function numberField<K extends string>(result: Record<string, unknown>, key: K): Partial<Record<K, number>> {
  const value = result[key];
  return typeof value === 'number' && Number.isFinite(value) ? ({ [key]: value } as Partial<Record<K, number>>) : {};
}

/** Cuts text to a platform's length limit, at a line break when there is one. */
export function fitText(text: string, limit: number): string {
  if (text.length <= limit) return text;
  const cut = text.slice(0, limit - 2);
  const lineEnd = cut.lastIndexOf('\n');
  return `${lineEnd > limit / 2 ? cut.slice(0, lineEnd) : cut}\n…`;
}

/** Shown with every result made from a built-in set. */
export const UNTRAINED_WEIGHTS_TEXT =
  'Made with untrained demo weights: it shows abstract patterns, not your prompt, until the operator sets a model folder with real Stable Diffusion weights.';

/** Shown with every result whose UNet ran per frame. */
export const PER_FRAME_TEXT = "This model's attention could not be linked across frames, so each frame was made on its own and the video may flicker.";

/** The result flags {@link doneText} renders, read from an engine result (absent or non-boolean: false). */
export function resultNotes(result: Record<string, unknown>): { untrainedWeights?: true; crossFrameUnavailable?: true } {
  return {
    ...(result.untrainedWeights === true ? { untrainedWeights: true } : {}),
    ...(result.crossFrameUnavailable === true ? { crossFrameUnavailable: true } : {}),
  };
}

/** A failed job: the job's user message (never a stack trace) and whether the quota came back. */
export function failedText(format: Format, data: { jobId: number; message: string; refunded: boolean }): string {
  const message = firstLine(data.message) || 'Something went wrong on our side.';
  return `${jobLabel(format, data.jobId)} failed: ${message}${data.refunded ? ' It did not count against your quota.' : ''}`;
}

/** A cancelled job. */
export function cancelledText(format: Format, data: { jobId: number; refunded: boolean }): string {
  return `${jobLabel(format, data.jobId)} was cancelled.${data.refunded ? ' It did not count against your quota.' : ''}`;
}

/** A refused request: the UserError's message exactly as written for the user. */
export function refusalText(error: { userMessage: string }): string {
  return error.userMessage;
}

// --- Listings -----------------------------------------------------------------------------------

/** Who looks at the queue: their own jobs and their community's are shown in full. */
export interface QueueViewer {
  platform: Platform;
  /** Their guild or workspace; null in a DM. */
  groupId: string | null;
  externalId: string;
}

/**
 * `/queue`: running jobs, then waiting ones in order. Jobs of the viewer's own community (and
 * their own, anywhere) show who asked for what; other communities' jobs show only their place.
 */
export function queueText(format: Format, snapshot: QueueSnapshot, viewer: QueueViewer): string {
  const lines: string[] = [];
  if (snapshot.paused) lines.push(`${bold(format, 'The queue is paused')}: new jobs wait until an admin resumes it.`);
  if (snapshot.notice) lines.push(snapshot.notice);
  if (snapshot.running.length === 0 && snapshot.waiting.length === 0) {
    lines.push('The queue is empty.');
    return lines.join('\n');
  }
  const visible = (job: JobRecord) =>
    job.platform === viewer.platform && (job.userExternalId === viewer.externalId || (viewer.groupId !== null && job.groupId === viewer.groupId));
  const what = (job: JobRecord) => (visible(job) ? `${mention(job.userExternalId)} ${quoted(format, describeJob(job), 60)}` : 'from another community');
  lines.push(bold(format, `Running (${snapshot.running.length})`));
  if (snapshot.running.length === 0) lines.push('nothing');
  for (const entry of snapshot.running) {
    const started = entry.job.startedAt === null ? '' : ` · ${entry.job.device ?? 'worker'}`;
    lines.push(`• #${entry.job.id} ${what(entry.job)}${started}`);
  }
  lines.push(bold(format, `Waiting (${snapshot.waiting.length})`));
  if (snapshot.waiting.length === 0) lines.push('nobody');
  for (const entry of snapshot.waiting) {
    lines.push(`${entry.position}. #${entry.job.id} ${what(entry.job)} · ${formatEta(entry.etaMs)}`);
  }
  return lines.join('\n');
}

/** `/usage`: the user's tier and limits, what they used today and this month, and recent jobs. */
export function usageText(format: Format, usage: Pick<UserUsage, 'limits' | 'left' | 'today' | 'thisMonth' | 'recent'>): string {
  const { limits, today, thisMonth } = usage;
  const of = (used: string, limit: number | null, unit: (n: number) => string): string => (limit === null ? `${used} (no limit)` : `${used} of ${unit(limit)}`);
  const lines = [
    `${bold(format, 'Your usage')} · tier ${code(limits.tier)}`,
    `Today: ${of(plural(today.jobs, 'video'), limits.jobsPerDay, (n) => String(n))} · GPU ${of(formatDuration(today.gpuSeconds * 1000), limits.gpuSecondsPerDay, (n) => formatDuration(n * 1000))}`,
    `This month: ${plural(thisMonth.jobs, 'video')} · GPU ${of(formatDuration(thisMonth.gpuSeconds * 1000), limits.gpuSecondsPerMonth, (n) => formatDuration(n * 1000))}`,
    `${capitalize(formatQuotaLeft(usage.left))} · up to ${plural(limits.maxPendingJobs, 'job')} waiting at once`,
  ];
  if (usage.recent.length > 0) {
    lines.push(bold(format, 'Recent'));
    for (const job of usage.recent.slice(0, 5)) lines.push(historyLine(format, job));
  }
  return lines.join('\n');
}

/** `/history`: one page of the user's jobs, newest first. */
export function historyText(format: Format, data: { jobs: readonly JobRecord[]; page: number; hasMore?: boolean }): string {
  if (data.jobs.length === 0) return data.page <= 1 ? 'You have no videos yet. Try /video a corgi surfing at sunset' : `Page ${data.page} is empty.`;
  const lines = [bold(format, `Your videos, page ${data.page}`), ...data.jobs.map((job) => historyLine(format, job))];
  if (data.hasMore === true) lines.push(`_More on page ${data.page + 1}._`);
  return lines.join('\n');
}

const STATE_WORDS: Record<JobRecord['state'], string> = {
  queued: 'queued',
  running: 'running',
  succeeded: 'done',
  failed: 'failed',
  cancelled: 'cancelled',
};

function historyLine(format: Format, job: JobRecord): string {
  const took = job.startedAt !== null && job.finishedAt !== null ? ` · ${formatDuration(job.finishedAt - job.startedAt)}` : '';
  return `• #${job.id} ${STATE_WORDS[job.state]} · ${job.kind === 'edit' ? 'edit' : 'video'} ${quoted(format, describeJob(job), 60)} · seed ${job.seed}${took}`;
}

// --- Admin --------------------------------------------------------------------------------------

/** Entries on one page of `/admin audit`. */
export const AUDIT_PAGE_SIZE = 10;

/** `/admin audit`: one page of the audit log, newest first (who, what, on whom, where, when). */
export function auditText(format: Format, data: { entries: readonly AuditEntry[]; page: number; hasMore: boolean }): string {
  if (data.entries.length === 0) return data.page <= 1 ? 'The audit log is empty: no admin has changed anything yet.' : `Page ${data.page} of the audit log is empty.`;
  const lines = [bold(format, `Audit log, page ${data.page}`), ...data.entries.map((entry) => auditLine(format, entry))];
  if (data.hasMore) lines.push(`_More on page ${data.page + 1}._`);
  return lines.join('\n');
}

function auditLine(format: Format, entry: AuditEntry): string {
  const who = person(format, entry.platform, entry.actorId);
  const [targetPlatform, ...rest] = (entry.target ?? '').split(':');
  const target = entry.target === null ? '' : ` ${person(format, targetPlatform as Platform, rest.join(':'))}`;
  const where = entry.channelId !== null && entry.platform === format ? ` in <#${entry.channelId}>` : entry.groupId !== null ? ` in ${code(entry.groupId)}` : '';
  const details = Object.entries(entry.details)
    .filter(([, value]) => value !== null)
    .map(([key, value]) => `${key} ${typeof value === 'string' ? quoted(format, value, 80) : code(JSON.stringify(value))}`)
    .join(', ');
  const when = new Date(entry.createdAt).toISOString().slice(0, 16).replace('T', ' ');
  return `• ${when} UTC · ${who} ${code(entry.action)}${target}${details === '' ? '' : ` (${details})`}${where}`;
}

/** A user of the log's platform as a mention; of another platform (or the CLI) by name. */
function person(format: Format, platform: Platform, externalId: string): string {
  if (platform === format) return mention(externalId);
  return platform === 'cli' ? 'the operator' : code(`${platform}:${externalId}`);
}

/** Admin usage report: totals, top users and groups (guilds / workspaces) over a period. */
export function adminUsageText(
  format: Format,
  data: {
    periodLabel: string;
    /** Set when the report is about one user. */
    userExternalId?: string;
    total: Usage;
    topUsers: readonly (Usage & { externalId: string | null })[];
    byGroup: readonly (Usage & { groupId: string | null })[];
  },
): string {
  const usage = (u: Usage): string => `${plural(u.jobs, 'job')} · GPU ${formatDuration(u.gpuSeconds * 1000)}`;
  const who = data.userExternalId === undefined ? '' : ` of ${mention(data.userExternalId)}`;
  const lines = [`${bold(format, `Usage${who}, ${data.periodLabel}`)}`, `Total: ${usage(data.total)}`];
  if (data.topUsers.length > 0 && data.userExternalId === undefined) {
    lines.push(bold(format, 'Top users'));
    for (const row of data.topUsers) lines.push(`• ${row.externalId === null ? 'unknown user' : mention(row.externalId)}: ${usage(row)}`);
  }
  if (data.byGroup.length > 0) {
    lines.push(bold(format, 'By server'));
    for (const row of data.byGroup) lines.push(`• ${row.groupId === null ? 'no server' : code(row.groupId)}: ${usage(row)}`);
  }
  return lines.join('\n');
}

/** Admin stats: jobs by state, failure rate, p50/p95 duration and GPU-seconds by group. */
export function adminStatsText(
  format: Format,
  data: {
    periodLabel: string;
    total: number;
    byState: Record<JobState, number>;
    failureRate: number;
    p50Seconds: number | null;
    p95Seconds: number | null;
    gpuSecondsByGroup: readonly { groupId: string | null; gpuSeconds: number; jobs: number }[];
  },
): string {
  const seconds = (value: number | null): string => (value === null ? 'n/a' : formatDuration(value * 1000));
  const states = (['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const).map((state) => `${state} ${data.byState[state]}`).join(' · ');
  const lines = [
    bold(format, `Stats, ${data.periodLabel}`),
    `Jobs: ${data.total} (${states})`,
    `Failure rate: ${(data.failureRate * 100).toFixed(1)}%`,
    `Duration: p50 ${seconds(data.p50Seconds)} · p95 ${seconds(data.p95Seconds)}`,
  ];
  if (data.gpuSecondsByGroup.length > 0) {
    lines.push(bold(format, 'GPU time by server'));
    for (const row of data.gpuSecondsByGroup) lines.push(`• ${row.groupId === null ? 'no server' : code(row.groupId)}: ${formatDuration(row.gpuSeconds * 1000)} · ${plural(row.jobs, 'job')}`);
  }
  return lines.join('\n');
}

// --- Help ---------------------------------------------------------------------------------------

/** The help text: the commands of the platform and the options of `/video` and of edits. */
export function helpText(format: Format): string {
  const flagLines = (flags: readonly FlagSpec[]): string[] => flags.map((flag) => `  ${code(flag.value === '' ? `--${flag.name}` : `--${flag.name} ${flag.value}`)} ${flag.description}`);
  const lines =
    format === 'discord'
      ? [
          bold(format, 'reelbot makes short videos'),
          `${code('/video prompt')} a video from a description; options: frames, seed, motion (dx,dy), negative, steps, fps, duration, aspect, smooth, image (a picture to animate)`,
          `${code('/edit clip instruction')} change an attached video by an instruction, like "make it snowy". Options in the instruction:`,
          ...flagLines(EDIT_FLAGS),
          `${code('Apps → Edit clip…')} on a message with a video does the same and asks for the instruction.`,
          `${code('/queue')} what is running and waiting · ${code('/usage')} your limits and use · ${code('/history')} your videos · ${code('/cancel job')} stop a job`,
          'Buttons under a video: Re-roll (new seed), Edit (asks for an instruction), Cancel.',
          `Server admins: ${code('/admin')} usage, quota set, ban, unban, queue pause|resume|clear, stats.`,
        ]
      : [
          bold(format, 'reelbot makes short videos'),
          `${code('/video a corgi surfing --frames 8 --seed 3')} a video from a description. Options:`,
          ...flagLines(VIDEO_FLAGS),
          'Put values with spaces in double quotes: --negative "blurry, text".',
          'Reply in the thread of a video with an instruction, like "make it snowy", to edit it. Options:',
          ...flagLines(EDIT_FLAGS),
          `${code('/video queue')} what is running and waiting · ${code('/video usage')} your limits and use · ${code('/video history')} your videos`,
        ];
  return lines.join('\n');
}

// --- Helpers ------------------------------------------------------------------------------------

function plural(n: number, word: string): string {
  return `${n} ${n === 1 ? word : `${word}s`}`;
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function firstLine(text: string): string {
  return (text.split('\n')[0] ?? '').trim();
}
