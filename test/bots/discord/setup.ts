/** What the Discord tests share: the MP4 test engine, an adapter on the fake, request matchers. */
import { DiscordAdapter, type DiscordAdapterOptions } from '../../../src/bots/discord/discord-adapter.js';
import { resolveFfmpegPaths } from '../../../src/media/ffmpeg-paths.js';
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

/** An ephemeral follow-up on the interaction's webhook: how a refusal is answered after a public defer. */
export const isPrivateFollowUp = (token: string) => (r: RecordedRequest) =>
  r.method === 'POST' && r.path.startsWith('/webhooks/') && r.path.endsWith(`/${token}`) && ((((r.body as { flags?: number } | undefined)?.flags ?? 0) & 64) !== 0);

/** The first answer its user sees to a command: the queued reply (an edit of the deferred reply) or a private refusal. */
export const isFirstAnswer = (token: string) => (r: RecordedRequest) => isOriginalEdit(token)(r) || isPrivateFollowUp(token)(r);

/** The deferred reply deleted (after a refusal went out privately). */
export const isOriginalDelete = (token: string) => (r: RecordedRequest) => r.method === 'DELETE' && r.path.endsWith(`/${token}/messages/@original`);
