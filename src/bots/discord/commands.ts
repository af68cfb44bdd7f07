/** The slash commands the Discord adapter registers, built from the shared command grammar. */
import {
  ApplicationCommandType,
  ContextMenuCommandBuilder,
  InteractionContextType,
  PermissionFlagsBits,
  SlashCommandBuilder,
  type RESTPostAPIApplicationCommandsJSONBody,
  type RESTPostAPIChatInputApplicationCommandsJSONBody,
  type RESTPostAPIContextMenuApplicationCommandsJSONBody,
} from 'discord.js';
import { TEXT_TO_VIDEO_LIMITS } from '../../jobs/job-params.js';
import { ADMIN_PERIODS } from '../shared/admin-commands.js';
import { HISTORY_PAGE_SIZE } from '../shared/user-commands.js';

const T = TEXT_TO_VIDEO_LIMITS;

/** `/video prompt [frames] [seed] [motion] [negative] [steps] [fps] [image] [duration] [aspect] [smooth]`, as `videoCommandFromOptions` reads it. */
export function videoCommandData(): RESTPostAPIChatInputApplicationCommandsJSONBody {
  return new SlashCommandBuilder()
    .setName('video')
    .setDescription('Make a short video from a prompt')
    .addStringOption((o) => o.setName('prompt').setDescription('What the video shows').setRequired(true).setMaxLength(1000))
    .addIntegerOption((o) => o.setName('frames').setDescription(`Number of frames, ${T.frames.min} to ${T.frames.max}`).setMinValue(T.frames.min).setMaxValue(T.frames.max))
    .addIntegerOption((o) => o.setName('seed').setDescription('Seed for a repeatable result').setMinValue(0).setMaxValue(2 ** 32 - 1))
    .addStringOption((o) => o.setName('motion').setDescription('Camera motion per frame: dx,dy (like 12,12)'))
    .addStringOption((o) => o.setName('negative').setDescription('What the video should not show'))
    .addIntegerOption((o) => o.setName('steps').setDescription(`Denoising steps, ${T.steps.min} to ${T.steps.max}`).setMinValue(T.steps.min).setMaxValue(T.steps.max))
    .addIntegerOption((o) => o.setName('fps').setDescription(`Frames per second, ${T.fps.min} to ${T.fps.max}`).setMinValue(T.fps.min).setMaxValue(T.fps.max))
    .addAttachmentOption((o) => o.setName('image').setDescription('A picture to animate (PNG, JPEG or WebP): it starts the video and keeps its shape'))
    .addNumberOption((o) => o.setName('duration').setDescription(`Seconds the video lasts, ${T.durationSeconds.min} to ${T.durationSeconds.max}`).setMinValue(T.durationSeconds.min).setMaxValue(T.durationSeconds.max))
    .addStringOption((o) => o.setName('aspect').setDescription('Shape of the video: 16:9, 9:16, 1:1…').setMaxLength(8))
    .addBooleanOption((o) => o.setName('smooth').setDescription(`Interpolate the motion to ${T.fps.smooth} fps (default on)`))
    .toJSON();
}

/** Longest edit instruction (with its `--flags`) a user can type. */
export const INSTRUCTION_MAX_LENGTH = 1000;

/** `/edit clip instruction`: the clip is an attachment; the instruction may carry `--anchors N` and the other edit flags. */
export function editCommandData(): RESTPostAPIChatInputApplicationCommandsJSONBody {
  return new SlashCommandBuilder()
    .setName('edit')
    .setDescription('Change a video clip by an instruction, like "make it snowy"')
    .addAttachmentOption((o) => o.setName('clip').setDescription('The video to edit (MP4, MOV, WebM, MKV, GIF or AVI)').setRequired(true))
    .addStringOption((o) =>
      o.setName('instruction').setDescription('How the clip should change; options: --anchors N --steps N --image-guidance X --seed N').setRequired(true).setMaxLength(INSTRUCTION_MAX_LENGTH),
    )
    .toJSON();
}

/** Name of the message context-menu command (Apps → Edit clip…) that edits the video in a message. */
export const EDIT_CLIP_MENU_NAME = 'Edit clip…';

/** The "Edit clip…" message command: opens a modal that asks for the instruction. */
export function editClipMenuData(): RESTPostAPIContextMenuApplicationCommandsJSONBody {
  return new ContextMenuCommandBuilder().setName(EDIT_CLIP_MENU_NAME).setType(ApplicationCommandType.Message).toJSON();
}

/** `/queue`: what runs and what waits. */
export function queueCommandData(): RESTPostAPIChatInputApplicationCommandsJSONBody {
  return new SlashCommandBuilder().setName('queue').setDescription('What is running and what is waiting').toJSON();
}

/** `/usage`: the caller's quota, use today and this month, and recent jobs. */
export function usageCommandData(): RESTPostAPIChatInputApplicationCommandsJSONBody {
  return new SlashCommandBuilder().setName('usage').setDescription('Your limits, what you used, and your recent videos').toJSON();
}

/** `/history [page]`: the caller's jobs, newest first. */
export function historyCommandData(): RESTPostAPIChatInputApplicationCommandsJSONBody {
  return new SlashCommandBuilder()
    .setName('history')
    .setDescription('Your videos, newest first')
    .addIntegerOption((o) => o.setName('page').setDescription(`Page number (${HISTORY_PAGE_SIZE} videos a page)`).setMinValue(1))
    .toJSON();
}

/** `/cancel [job]`: a job by number, or the caller's most recent queued or running job. */
export function cancelCommandData(): RESTPostAPIChatInputApplicationCommandsJSONBody {
  return new SlashCommandBuilder()
    .setName('cancel')
    .setDescription('Stop a job (by default your most recent queued or running one)')
    .addIntegerOption((o) => o.setName('job').setDescription('Job number, like 42').setMinValue(1))
    .toJSON();
}

/**
 * `/admin …`: usage, quota set, ban, unban, queue pause|resume|clear, stats, dashboard. Discord shows it only
 * to members with Manage Server (`default_member_permissions` "32"); the JobService admin
 * allowlist still decides every call.
 */
export function adminCommandData(): RESTPostAPIChatInputApplicationCommandsJSONBody {
  const periodChoices = ADMIN_PERIODS.map((period) => ({ name: period, value: period }));
  return new SlashCommandBuilder()
    .setName('admin')
    .setDescription('Bot admin tools')
    .setDefaultMemberPermissions(PermissionFlagsBits.ManageGuild)
    .setContexts(InteractionContextType.Guild)
    .addSubcommand((s) =>
      s
        .setName('usage')
        .setDescription('Jobs and GPU time, in total, by user and by server')
        .addUserOption((o) => o.setName('user').setDescription('Only this user'))
        .addStringOption((o) => o.setName('period').setDescription('Since the start of today (default), this month, or ever').addChoices(...periodChoices)),
    )
    .addSubcommandGroup((g) =>
      g
        .setName('quota')
        .setDescription('User limits')
        .addSubcommand((s) =>
          s
            .setName('set')
            .setDescription('Set a user’s tier and/or daily limits')
            .addUserOption((o) => o.setName('user').setDescription('The user').setRequired(true))
            .addStringOption((o) => o.setName('tier').setDescription('Quota tier name'))
            .addIntegerOption((o) => o.setName('jobs_per_day').setDescription('Videos a day').setMinValue(0))
            .addIntegerOption((o) => o.setName('gpu_seconds_per_day').setDescription('GPU-seconds a day').setMinValue(0)),
        ),
    )
    .addSubcommand((s) =>
      s
        .setName('ban')
        .setDescription('Stop a user from making videos (their queued jobs are cancelled)')
        .addUserOption((o) => o.setName('user').setDescription('The user').setRequired(true))
        .addStringOption((o) => o.setName('reason').setDescription('Shown to the user').setMaxLength(200)),
    )
    .addSubcommand((s) =>
      s
        .setName('unban')
        .setDescription('Let a banned user make videos again')
        .addUserOption((o) => o.setName('user').setDescription('The user').setRequired(true)),
    )
    .addSubcommandGroup((g) =>
      g
        .setName('queue')
        .setDescription('The job queue')
        .addSubcommand((s) => s.setName('pause').setDescription('Stop starting jobs (running ones finish)'))
        .addSubcommand((s) => s.setName('resume').setDescription('Start jobs again'))
        .addSubcommand((s) => s.setName('clear').setDescription('Cancel and refund every queued job')),
    )
    .addSubcommand((s) =>
      s
        .setName('stats')
        .setDescription('Jobs by state, failure rate, durations, GPU time by server')
        .addStringOption((o) => o.setName('period').setDescription('Since the start of today (default), this month, or ever').addChoices(...periodChoices)),
    )
    .addSubcommand((s) =>
      s
        .setName('audit')
        .setDescription('The audit log of admin actions, newest first')
        .addIntegerOption((o) => o.setName('page').setDescription('Page (10 entries each; 1 = the newest)').setMinValue(1)),
    )
    .addSubcommand((s) => s.setName('dashboard').setDescription('A one-time sign-in link to the web dashboard (only you see it)'))
    .toJSON();
}

/** Every command the adapter registers, in one `set` call. */
export function allCommandData(): RESTPostAPIApplicationCommandsJSONBody[] {
  return [videoCommandData(), editCommandData(), editClipMenuData(), queueCommandData(), usageCommandData(), historyCommandData(), cancelCommandData(), adminCommandData()];
}
