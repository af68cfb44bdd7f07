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
