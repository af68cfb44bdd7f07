import { describe, expect, it } from 'vitest';
import { UserError } from '../../../src/errors.js';
import {
  parseEditCommandText,
  parseVideoCommandText,
  videoCommandFromOptions,
  type CommandResult,
} from '../../../src/bots/shared/video-command.js';

function command<C>(result: CommandResult<C>): C {
  if (result.type !== 'command') throw new Error(`expected a command, got ${JSON.stringify(result.type === 'error' ? result.error.userMessage : result)}`);
  return result.command;
}

function refusal<C>(result: CommandResult<C>): string {
  if (result.type !== 'error') throw new Error(`expected a refusal, got ${JSON.stringify(result)}`);
  expect(result.error).toBeInstanceOf(UserError);
  return result.error.userMessage;
}

describe('/video text grammar', () => {
  it('GIVEN the full example THEN builds text2video params', () => {
    expect(command(parseVideoCommandText('a corgi surfing --frames 8 --seed 3 --motion 12,12 --negative "blurry, text"'))).toEqual({
      kind: 'text2video',
      params: { prompt: 'a corgi surfing', negativePrompt: 'blurry, text', numFrames: 8, motion: { dx: 12, dy: 12 } },
      seed: 3,
    });
  });

  it('GIVEN only a prompt THEN fills the engine defaults and no seed', () => {
    expect(command(parseVideoCommandText('  a corgi   surfing '))).toEqual({
      kind: 'text2video',
      params: { prompt: 'a corgi surfing', numFrames: 8, motion: { dx: 12, dy: 12 } },
    });
  });

  it('GIVEN --flag=value, steps, fps and negative motion THEN reads them', () => {
    const parsed = command(parseVideoCommandText('waves --frames=16 --steps=20 --fps 8 --motion=-4,0.5 --negative="low quality"'));
    expect(parsed.params).toEqual({ prompt: 'waves', negativePrompt: 'low quality', numFrames: 16, numInferenceSteps: 20, fps: 8, motion: { dx: -4, dy: 0.5 } });
  });

  it('GIVEN quoted prompt words, typographic quotes and an em dash THEN reads them as typed', () => {
    expect(command(parseVideoCommandText('"a cat --frames 3" on a roof')).params.prompt).toBe('a cat --frames 3 on a roof');
    const parsed = command(parseVideoCommandText('rain —frames 4 --negative “dark, grainy”'));
    expect(parsed.params).toMatchObject({ prompt: 'rain', numFrames: 4, negativePrompt: 'dark, grainy' });
  });

  it('GIVEN flags between prompt words THEN the words still form the prompt', () => {
    expect(command(parseVideoCommandText('a corgi --seed 5 surfing')).params.prompt).toBe('a corgi surfing');
  });

  it('GIVEN an unknown flag THEN names it and lists the known ones', () => {
    const message = refusal(parseVideoCommandText('a corgi --size 512'));
    expect(message).toContain('Unknown option --size');
    for (const flag of ['--frames', '--seed', '--motion', '--negative', '--steps', '--fps', '--help']) expect(message).toContain(flag);
  });

  it('GIVEN a repeated flag THEN refuses it', () => {
    expect(refusal(parseVideoCommandText('a corgi --frames 8 --frames=9'))).toBe('--frames is given twice; give it once.');
  });

  it('GIVEN no prompt THEN says so with an example', () => {
    expect(refusal(parseVideoCommandText('--frames 8'))).toMatch(/prompt is empty.*--frames 8/);
    expect(refusal(parseVideoCommandText(''))).toMatch(/prompt is empty/);
  });

  it('GIVEN frames out of range THEN gives the allowed range from the engine limits', () => {
    expect(refusal(parseVideoCommandText('a corgi --frames 300'))).toBe('The number of frames must be from 1 to 240, not 300.');
    expect(refusal(parseVideoCommandText('a corgi --frames eight'))).toBe('--frames must be a whole number from 1 to 240, not "eight".');
  });

  it('GIVEN bad motion, a missing value, an open quote or a bad seed THEN explains', () => {
    expect(refusal(parseVideoCommandText('a corgi --motion 12'))).toMatch(/--motion must be two numbers dx,dy, each from -64 to 64/);
    expect(refusal(parseVideoCommandText('a corgi --motion 100,0'))).toBe('The horizontal motion must be from -64 to 64, not 100.');
    expect(refusal(parseVideoCommandText('a corgi --frames'))).toBe('--frames needs a value, like --frames 8.');
    expect(refusal(parseVideoCommandText('a corgi --frames --seed 2'))).toBe('--frames needs a value, like --frames 8.');
    expect(refusal(parseVideoCommandText('a corgi --negative "blurry'))).toMatch(/quote is not closed/);
    expect(refusal(parseVideoCommandText('a corgi --seed 4294967296'))).toBe('The seed must be a whole number from 0 to 4294967295, not 4294967296.');
  });

  it('GIVEN --help anywhere THEN asks for help', () => {
    expect(parseVideoCommandText('--help')).toEqual({ type: 'help' });
    expect(parseVideoCommandText('a corgi --help')).toEqual({ type: 'help' });
  });
});

describe('/video typed options (Discord)', () => {
  it('GIVEN the same values as the text path THEN builds the same command', () => {
    const typed = videoCommandFromOptions({ prompt: 'a corgi surfing', frames: 8, seed: 3, motion: '12,12', negative: 'blurry, text', steps: null, fps: undefined });
    expect(typed).toEqual(parseVideoCommandText('a corgi surfing --frames 8 --seed 3 --motion 12,12 --negative "blurry, text"'));
  });

  it('GIVEN bad typed values THEN refuses with the range', () => {
    expect(refusal(videoCommandFromOptions({ prompt: 'x', frames: 0 }))).toBe('The number of frames must be from 1 to 240, not 0.');
    expect(refusal(videoCommandFromOptions({ prompt: 'x', frames: 2.5 }))).toBe('The number of frames must be a whole number from 1 to 240.');
    expect(refusal(videoCommandFromOptions({ prompt: 'x', motion: 'left' }))).toMatch(/^The motion must be two numbers dx,dy/);
    expect(refusal(videoCommandFromOptions({ prompt: '   ' }))).toMatch(/prompt is empty/);
  });
});

describe('edit instruction grammar', () => {
  it('GIVEN an instruction with options THEN builds edit params without the clip', () => {
    expect(command(parseEditCommandText('make it snowy --anchors 4 --steps 20 --image-guidance 1.5 --seed 9'))).toEqual({
      kind: 'edit',
      params: { instruction: 'make it snowy', anchors: 4, numInferenceSteps: 20, imageGuidanceScale: 1.5 },
      seed: 9,
    });
    expect(command(parseEditCommandText('make it snowy'))).toEqual({ kind: 'edit', params: { instruction: 'make it snowy' } });
  });

  it('GIVEN bad edit options THEN refuses with what is allowed', () => {
    expect(refusal(parseEditCommandText('make it snowy --anchors 9'))).toBe('The number of anchor frames must be from 1 to 8, not 9.');
    expect(refusal(parseEditCommandText('make it snowy --image-guidance lots'))).toBe('--image-guidance must be a number from 0 to 5, not "lots".');
    expect(refusal(parseEditCommandText('make it snowy --frames 8'))).toMatch(/Unknown option --frames .*--anchors, --steps, --image-guidance, --seed, --smooth, --help/);
    expect(refusal(parseEditCommandText('--anchors 2'))).toMatch(/instruction is empty/);
  });
});

describe('smoothing, duration and aspect', () => {
  it('GIVEN --duration, --aspect and --no-smooth THEN reads them; the switch takes no value', () => {
    const parsed = parseVideoCommandText('waves --duration 2.5 --aspect 16:9 --no-smooth');
    expect(parsed).toMatchObject({ type: 'command', command: { params: { prompt: 'waves', durationSeconds: 2.5, aspect: '16:9', smooth: false } } });
    expect(parseVideoCommandText('waves --smooth')).toMatchObject({ type: 'command', command: { params: { prompt: 'waves' } } });
    expect(parseVideoCommandText('waves --smooth=off')).toMatchObject({ type: 'error', error: { userMessage: '--smooth is a switch and takes no value; write just --smooth.' } });
    expect(parseVideoCommandText('waves --smooth --no-smooth')).toMatchObject({ type: 'error', error: { userMessage: 'Give --smooth or --no-smooth, not both.' } });
  });

  it('GIVEN a bad aspect, a duration out of range or fps with duration unsmoothed THEN says what is allowed', () => {
    expect(parseVideoCommandText('waves --aspect wide')).toMatchObject({ type: 'error', error: { userMessage: expect.stringContaining('like 16:9, 9:16 or 1:1') } });
    expect(parseVideoCommandText('waves --duration 600')).toMatchObject({ type: 'error', error: { userMessage: 'The duration in seconds must be from 0.5 to 60, not 600.' } });
    expect(parseVideoCommandText('waves --no-smooth --fps 8 --duration 2')).toMatchObject({ type: 'error', error: { userMessage: expect.stringContaining('not both') } });
    expect(videoCommandFromOptions({ prompt: 'waves', aspect: '9:16', duration: 3, smooth: false })).toMatchObject({ type: 'command', command: { params: { aspect: '9:16', durationSeconds: 3, smooth: false } } });
  });

  it('GIVEN --smooth on an edit THEN asks for smoothing', () => {
    expect(parseEditCommandText('make it snowy --smooth')).toMatchObject({ type: 'command', command: { params: { instruction: 'make it snowy', smooth: true } } });
  });
});
