/** What the Slack tests share: the MP4 test engine, an adapter on the fake, a real small MP4 clip. */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SlackAdapter, type SlackAdapterOptions } from '../../../src/bots/slack/slack-adapter.js';
import { resolveFfmpegPaths } from '../../../src/media/ffmpeg-paths.js';
import type { JobService } from '../../../src/jobs/job-service.js';
import { createLogger } from '../../../src/log.js';
import { APP_TOKEN, BOT_TOKEN, type FakeSlack, type RecordedRequest } from '../../fakes/fake-slack.js';

/** A worker engine module that makes a real small MP4 (see test/fakes/mp4-engine.ts). */
export { MP4_ENGINE } from '../../fakes/mp4-engine.js';

export const alice = { id: 'UALICE001', name: 'alice' };
export const bob = { id: 'UBOB00001', name: 'bob' };
export const CHANNEL = 'C0000CHAN';

/** A SlackAdapter on the fake in Socket Mode (call `start()`), with the bundled ffmpeg and silent logs. */
export function newAdapter(fake: FakeSlack, jobs: JobService, dir: string, extra: Partial<SlackAdapterOptions> = {}): SlackAdapter {
  const { ffmpeg, ffprobe } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  return new SlackAdapter({
    botToken: BOT_TOKEN,
    appToken: APP_TOKEN,
    apiUrl: fake.apiUrl,
    jobs,
    logger: createLogger('silent'),
    ffmpegPath: ffmpeg,
    ffprobePath: ffprobe,
    tempDir: join(dir, 'tmp'),
    inputDir: join(dir, 'inputs'),
    maxInputBytes: 20 * 1024 * 1024,
    progressIntervalMs: 200,
    retryConfig: { retries: 2, factor: 1, minTimeout: 50, maxTimeout: 100 },
    ...extra,
  });
}

let clip: Buffer | undefined;

/** A real 1 s 64×64 H.264 MP4 made with the bundled ffmpeg (made once per test file). */
export function smallMp4(dir: string): Buffer {
  if (clip !== undefined) return clip;
  const { ffmpeg } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
  const file = join(dir, 'clip.mp4');
  const run = spawnSync(ffmpeg, ['-nostdin', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=64x64:rate=8:duration=1', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-f', 'mp4', file]);
  if (run.status !== 0) throw new Error(`ffmpeg failed: ${String(run.stderr)}`);
  clip = readFileSync(file);
  return clip;
}

/** The text of a Web API message body, or of its first section block. */
export function textOf(request: RecordedRequest): string {
  return String(request.body.text ?? '');
}

/** Action ids of the buttons in a message body. */
export function buttonsOf(request: RecordedRequest | { blocks?: unknown }): string[] {
  const blocks = ('body' in request ? request.body.blocks : request.blocks) as { type: string; elements?: { action_id?: string }[] }[] | undefined;
  return (blocks ?? []).filter((b) => b.type === 'actions').flatMap((b) => (b.elements ?? []).map((e) => e.action_id ?? ''));
}

export const isMethod = (method: string) => (r: RecordedRequest) => r.method === method;
