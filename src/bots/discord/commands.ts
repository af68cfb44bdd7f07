/** The slash commands the Discord adapter registers, built from the shared command grammar. */
import { SlashCommandBuilder, type RESTPostAPIChatInputApplicationCommandsJSONBody } from 'discord.js';
import { TEXT_TO_VIDEO_LIMITS } from '../../engine/params.js';

const T = TEXT_TO_VIDEO_LIMITS;

/** `/video prompt [frames] [seed] [motion] [negative] [steps] [fps]`, as `videoCommandFromOptions` reads it. */
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
    .toJSON();
}

/** `/queue`: what runs and what waits. */
export function queueCommandData(): RESTPostAPIChatInputApplicationCommandsJSONBody {
  return new SlashCommandBuilder().setName('queue').setDescription('What is running and what is waiting').toJSON();
}

/** `/usage`: the caller's quota, use today and this month, and recent jobs. */
export function usageCommandData(): RESTPostAPIChatInputApplicationCommandsJSONBody {
  return new SlashCommandBuilder().setName('usage').setDescription('Your limits, what you used, and your recent videos').toJSON();
}

/** Jobs per `/history` page. */
export const HISTORY_PAGE_SIZE = 10;

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

/** Every command the adapter registers, in one `set` call. */
export function allCommandData(): RESTPostAPIChatInputApplicationCommandsJSONBody[] {
  return [videoCommandData(), queueCommandData(), usageCommandData(), historyCommandData(), cancelCommandData()];
}
