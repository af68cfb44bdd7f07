import { describe, expect, it } from 'vitest';
import {
  quoted,
  cancelledText,
  doneText,
  resultNotes,
  failedText,
  formatDuration,
  formatEta,
  formatQuotaLeft,
  helpText,
  historyText,
  progressText,
  queueText,
  queuedText,
  refusalText,
  truncate,
  usageText,
} from '../../../src/bots/shared/texts.js';
import { ErrorCode, UserError } from '../../../src/errors.js';
import type { JobRecord } from '../../../src/jobs/types.js';
import { formatBytes } from '../../../src/media/format-bytes.js';

function job(overrides: Partial<JobRecord> = {}): JobRecord {
  return {
    id: 7, kind: 'text2video', params: { prompt: 'a corgi surfing' }, state: 'succeeded', userId: 1, userExternalId: 'U123',
    platform: 'discord', groupId: null, channelId: null, messageRefs: {}, seed: 42, priority: 0, device: 'cuda:0', attempts: 1,
    estimatedGpuSeconds: 30, gpuSeconds: 28, result: null, errorCode: null, error: null, queuedAt: 0, startedAt: 1_000,
    finishedAt: 91_000, cancelRequestedAt: null, deliveredAt: null, ownerInstance: null, ...overrides,
  };
}

describe('formatting', () => {
  it('formats durations, ETAs, sizes and quota humanly', () => {
    expect(formatDuration(45_000)).toBe('45 s');
    expect(formatDuration(125_000)).toBe('2 min 5 s');
    expect(formatDuration(80 * 60_000)).toBe('1 h 20 min');
    expect(formatEta(30_000)).toBe('under a minute');
    expect(formatEta(110_000)).toBe('about 2 min');
    expect(formatEta(90 * 60_000)).toBe('about 1 h 30 min');
    expect(formatBytes(10 * 1024 * 1024)).toBe('10 MB');
    expect(formatBytes(512 * 1024)).toBe('512 KB');
    expect(formatQuotaLeft({ jobsToday: 14 })).toBe('14 videos left today');
    expect(formatQuotaLeft({ jobsToday: 1 })).toBe('1 video left today');
    expect(formatQuotaLeft({ jobsToday: null })).toBe('no daily limit');
  });

  it('truncates long prompts at a word with an ellipsis', () => {
    const long = 'word '.repeat(100);
    const cut = truncate(long, 50);
    expect([...cut].length).toBeLessThanOrEqual(50);
    expect(cut.endsWith('word…')).toBe(true);
  });
});

describe('job texts', () => {
  it('queued: number, position, ETA and quota; bold per platform', () => {
    const discord = queuedText('discord', { jobId: 12, position: 3, etaMs: 120_000, quotaLeft: { jobsToday: 14 }, prompt: 'a corgi' });
    expect(discord).toContain('**Job #12**');
    expect(discord).toContain('#3 in the queue');
    expect(discord).toContain('about 2 min');
    expect(discord).toContain('14 videos left today');
    const slack = queuedText('slack', { jobId: 12, position: 1, etaMs: 0, quotaLeft: { jobsToday: null } });
    expect(slack).toContain('*Job #12*');
    expect(slack).not.toContain('**');
    expect(slack).toContain('next in line');
    expect(slack).toContain('No daily limit');
  });

  it('progress: bar, step/total and stage', () => {
    const text = progressText('slack', { jobId: 3, progress: { step: 12, total: 48, stage: 'denoising' } });
    expect(text).toContain('▰▰▰▱▱▱▱▱▱▱▱▱');
    expect(text).toContain('12/48 · denoising');
  });

  it('done: quoted prompt, seed, time, frames and size', () => {
    const text = doneText('discord', { jobId: 7, kind: 'text2video', text: 'a corgi *surfing*', seed: 42, elapsedMs: 95_000, frames: 8, width: 512, height: 512, bytes: 2_500_000 });
    expect(text).toContain('“a corgi \\*surfing\\*”');
    expect(text).toContain('seed `42`');
    expect(text).toContain('took 1 min 35 s');
    expect(text).toContain('8 frames');
    expect(text).toContain('512×512');
    expect(text).toContain('2.4 MB');
    expect(doneText('slack', { jobId: 7, kind: 'edit', text: 'make it snowy', seed: 1, elapsedMs: 1000, note: 'Here is a preview.' })).toContain('_Here is a preview._');
    const plain = doneText('discord', { jobId: 7, kind: 'text2video', text: 'a corgi', seed: 1, elapsedMs: 1000, ...resultNotes({ untrainedWeights: false, crossFrameUnavailable: false }) });
    expect(plain).not.toMatch(/untrained|flicker/);
    for (const format of ['discord', 'slack'] as const) {
      const flagged = doneText(format, { jobId: 7, kind: 'edit', text: 'make it snowy', seed: 1, elapsedMs: 1000, ...resultNotes({ untrainedWeights: true, crossFrameUnavailable: true }) });
      expect(flagged).toContain('\n_Made with untrained demo weights: it shows abstract patterns, not your prompt, until the operator sets a model folder with real Stable Diffusion weights._');
      expect(flagged).toContain('\n_This model\'s attention could not be linked across frames, so each frame was made on its own and the video may flicker._');
    }
    // Only booleans count: a result from an old engine or a stray string changes nothing.
    expect(resultNotes({ untrainedWeights: 'yes', crossFrameUnavailable: 1 })).toEqual({});
  });

  it('failed: the user message only, never a stack trace; refund noted', () => {
    const text = failedText('discord', { jobId: 9, message: 'The worker crashed.\n    at run (/srv/reelbot/worker.js:10:5)', refunded: true });
    expect(text).toContain('The worker crashed.');
    expect(text).not.toContain('worker.js');
    expect(text).not.toMatch(/\bat run\b/);
    expect(text).toContain('did not count against your quota');
  });

  it('cancelled and refusals', () => {
    expect(cancelledText('slack', { jobId: 4, refunded: true })).toBe('*Job #4* was cancelled. It did not count against your quota.');
    const error = new UserError(ErrorCode.QuotaJobsPerDay, 'You have used all 15 videos for today.');
    expect(refusalText(error)).toBe('You have used all 15 videos for today.');
  });
});

describe('listings', () => {
  it('queue: running and waiting with positions, owners and ETAs', () => {
    const text = queueText('discord', {
      paused: false,
      running: [{ job: job({ id: 1, state: 'running', userExternalId: 'A1', groupId: 'G1' }), position: 0, etaMs: 0 }],
      waiting: [
        { job: job({ id: 2, state: 'queued', userExternalId: 'B2', groupId: 'G1', params: { prompt: 'rain' } }), position: 1, etaMs: 60_000 },
        { job: job({ id: 3, state: 'queued', userExternalId: 'C3', groupId: 'G1', kind: 'edit', params: { instruction: 'make it snowy' } }), position: 2, etaMs: 150_000 },
      ],
    }, { platform: 'discord', groupId: 'G1', externalId: 'A1' });
    expect(text).toContain('**Running (1)**');
    expect(text).toContain('#1 <@A1>');
    expect(text).toContain('1. #2 <@B2> “rain” · about 1 min');
    expect(text).toContain('2. #3 <@C3> “make it snowy” · about 3 min');
    expect(queueText('slack', { paused: true, running: [], waiting: [] }, { platform: 'slack', groupId: 'T1', externalId: 'U1' })).toContain('The queue is empty.');
    // With worker hosts behind Redis, /queue says when jobs cannot start and why.
    const away = 'The job queue server (Redis) is unreachable: jobs are kept and start when it is back.';
    expect(queueText('slack', { paused: false, notice: away, running: [], waiting: [] }, { platform: 'slack', groupId: 'T1', externalId: 'U1' })).toContain(away);
  });

  it('queue: jobs of other communities and platforms show only their place, never who asked or what', () => {
    const snapshot = {
      paused: false,
      running: [{ job: job({ id: 1, state: 'running', userExternalId: 'A1', groupId: 'OTHER', params: { prompt: 'secret plans' } }), position: 0, etaMs: 0 }],
      waiting: [
        { job: job({ id: 2, state: 'queued', userExternalId: 'B2', groupId: 'G1', params: { prompt: 'rain' } }), position: 1, etaMs: 60_000 },
        { job: job({ id: 3, state: 'queued', userExternalId: 'U9', platform: 'slack', groupId: 'G1', params: { prompt: 'a slack thing' } }), position: 2, etaMs: 120_000 },
        { job: job({ id: 4, state: 'queued', userExternalId: 'ME', groupId: null, params: { prompt: 'my dm video' } }), position: 3, etaMs: 180_000 },
      ],
    };
    const text = queueText('discord', snapshot, { platform: 'discord', groupId: 'G1', externalId: 'ME' });
    expect(text).toContain('• #1 from another community');
    expect(text).toContain('1. #2 <@B2> “rain”');
    expect(text).toContain('2. #3 from another community');
    expect(text).toContain('3. #4 <@ME> “my dm video”');
    for (const hidden of ['secret plans', 'A1', 'U9', 'a slack thing']) expect(text).not.toContain(hidden);
  });

  it('usage: limits, today and this month, recent jobs', () => {
    const text = usageText('slack', {
      limits: { tier: 'free', jobsPerDay: 20, gpuSecondsPerDay: 600, gpuSecondsPerMonth: null, maxPendingJobs: 3, maxFrames: 16, maxSteps: 50, cooldownSeconds: 0 },
      left: { tier: 'free', jobsToday: 14, gpuSecondsToday: 300, gpuSecondsThisMonth: null, pendingSlots: 3 },
      today: { jobs: 6, gpuSeconds: 300 },
      thisMonth: { jobs: 40, gpuSeconds: 2000 },
      recent: [job()],
    });
    expect(text).toContain('tier `free`');
    expect(text).toContain('Today: 6 videos of 20');
    expect(text).toContain('GPU 5 min of 10 min');
    expect(text).toContain('This month: 40 videos');
    expect(text).toContain('(no limit)');
    expect(text).toContain('14 videos left today');
    expect(text).toContain('#7 done');
  });

  it('history: a page of jobs, and an empty state', () => {
    const text = historyText('discord', { jobs: [job(), job({ id: 8, state: 'failed', seed: 5 })], page: 2, hasMore: true });
    expect(text).toContain('page 2');
    expect(text).toContain('#7 done · video “a corgi surfing” · seed 42 · 1 min 30 s');
    expect(text).toContain('#8 failed');
    expect(text).toContain('page 3');
    expect(historyText('slack', { jobs: [], page: 1 })).toContain('no videos yet');
  });

  it('help lists the commands and options of each platform', () => {
    const slack = helpText('slack');
    for (const part of ['/video', '--frames', '--motion', '--negative', '--anchors', '--image-guidance', 'thread']) expect(slack).toContain(part);
    const discord = helpText('discord');
    for (const part of ['/video', '/queue', '/usage', '/history', 'Edit clip']) expect(discord).toContain(part);
  });
});

describe('quoting a prompt for each platform', () => {
  it('Discord: backslash escapes, defused mentions', () => {
    expect(quoted('discord', 'a *bold* <@123> @everyone')).toBe('“a \\*bold\\* <\u200b@123\\> @\u200beveryone”');
  });
  it('Slack: no backslashes (mrkdwn shows them literally), entities for & < >, markup kept literal, mentions defused', () => {
    const text = quoted('slack', 'rock & roll *bold* <!here> @channel');
    expect(text).not.toContain('\\');
    expect(text).toBe('“rock &amp; roll \u200b*bold\u200b* &lt;!here&gt; @\u200bchannel”');
  });
});
