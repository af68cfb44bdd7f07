/**
 * A job's result video (with byte ranges, so the browser can seek) and its thumbnail, the first
 * frame as a JPEG made once with ffmpeg and kept beside the video. Only files inside the output
 * folder are ever served.
 */
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { JobRecord } from '../../jobs/types.js';
import { hasVideo } from './jobs-pages.js';

const THUMBNAIL_TIMEOUT_MS = 15_000;

export class JobMedia {
  readonly #outputDir: string;
  readonly #ffmpegPath: string;
  readonly #making = new Map<number, Promise<string | undefined>>();

  constructor(options: { outputDir: string; ffmpegPath: string }) {
    this.#outputDir = resolve(options.outputDir);
    this.#ffmpegPath = options.ffmpegPath;
  }

  /** The job's video file, when it has one inside the output folder. */
  videoFile(job: JobRecord): string | undefined {
    if (!hasVideo(job)) return undefined;
    const file = resolve((job.result as { file: string }).file);
    return file.startsWith(this.#outputDir + sep) ? file : undefined;
  }

  async sendVideo(job: JobRecord, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const file = this.videoFile(job);
    const size = file === undefined ? undefined : await stat(file).then((info) => (info.isFile() ? info.size : undefined), () => undefined);
    if (file === undefined || size === undefined) return reply.code(404).type('text/plain; charset=utf-8').send('This job has no video file (any more).');
    reply.header('accept-ranges', 'bytes').header('cache-control', 'private, max-age=3600').type('video/mp4');
    const range = request.headers.range;
    if (range === undefined) return reply.header('content-length', size).send(createReadStream(file));
    const match = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    let start = match?.[1] ? Number(match[1]) : undefined;
    let end = match?.[2] ? Number(match[2]) : undefined;
    if (match && start === undefined && end !== undefined) {
      start = Math.max(0, size - end); // "bytes=-N": the last N bytes
      end = size - 1;
    }
    start ??= 0;
    end = Math.min(end ?? size - 1, size - 1);
    if (!match || start > end || start >= size) return reply.code(416).header('content-range', `bytes */${size}`).send();
    return reply
      .code(206)
      .header('content-range', `bytes ${start}-${end}/${size}`)
      .header('content-length', end - start + 1)
      .send(createReadStream(file, { start, end }));
  }

  async sendThumbnail(job: JobRecord, reply: FastifyReply): Promise<FastifyReply> {
    const thumbnail = await this.#thumbnail(job);
    if (thumbnail === undefined) return reply.code(404).type('text/plain; charset=utf-8').send('No thumbnail for this job.');
    return reply.type('image/jpeg').header('cache-control', 'private, max-age=86400').send(createReadStream(thumbnail));
  }

  /** The thumbnail's path, made on first use (one ffmpeg per job at a time). */
  #thumbnail(job: JobRecord): Promise<string | undefined> {
    const video = this.videoFile(job);
    if (video === undefined) return Promise.resolve(undefined);
    const target = join(dirname(video), 'thumb.jpg');
    let making = this.#making.get(job.id);
    if (!making) {
      making = stat(target)
        .then(() => target)
        .catch(() => this.#make(video, target))
        .finally(() => this.#making.delete(job.id));
      this.#making.set(job.id, making);
    }
    return making;
  }

  async #make(video: string, target: string): Promise<string | undefined> {
    const partial = `${target}.${process.pid}.partial.jpg`;
    const args = ['-nostdin', '-loglevel', 'error', '-protocol_whitelist', 'file', '-i', video, '-frames:v', '1', '-vf', 'scale=320:-2', '-y', partial];
    const made = await new Promise<boolean>((done) => execFile(this.#ffmpegPath, args, { timeout: THUMBNAIL_TIMEOUT_MS }, (error) => done(error === null)));
    if (!made) {
      await rm(partial, { force: true });
      return undefined;
    }
    await rename(partial, target);
    return target;
  }
}
