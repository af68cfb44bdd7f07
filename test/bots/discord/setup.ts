/** What the Discord tests share: the MP4 test engine, an adapter on the fake, request matchers. */
import { DiscordAdapter, type DiscordAdapterOptions } from '../../../src/bots/discord/discord-adapter.js';
import { resolveFfmpegPaths } from '../../../src/engine/video/ffmpeg-paths.js';
import type { JobService } from '../../../src/jobs/job-service.js';
import type { Actor } from '../../../src/jobs/types.js';
import { createLogger } from '../../../src/log.js';
import type { FakeDiscord, FakeUser, RecordedRequest } from '../../fakes/fake-discord.js';

/** A worker engine module that makes a real small MP4 (see test/fakes/mp4-engine.ts). */
export { MP4_ENGINE } from '../../fakes/mp4-engine.js';

/** A DiscordAdapter logged in to the fake (after `start()`), with the bundled ffmpeg and silent logs. */
export function newAdapter(fake: FakeDiscord, jobs: JobService, tempDir: string, extra: Partial<DiscordAdapterOptions> = {}): DiscordAdapter {
  const { ffmpeg, ffprobe } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
  return new DiscordAdapter({
    token: 'fake-bot-token',
    apiUrl: fake.apiUrl,
    jobs,
    logger: createLogger('silent'),
    ffmpegPath: ffmpeg,
    ffprobePath: ffprobe,
    tempDir,
    ...extra,
  });
}

export const actorOf = (user: FakeUser): Actor => ({ platform: 'discord', externalId: user.id, displayName: user.username });

/** An edit of the interaction's original reply. */
export const isOriginalEdit = (token: string) => (r: RecordedRequest) => r.method === 'PATCH' && r.path.endsWith(`/${token}/messages/@original`);
