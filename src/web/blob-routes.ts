/**
 * The blob transport's routes on the coordinator's HTTP server (a Fastify plugin): a worker host
 * downloads the clip of the job attempt it holds and uploads its result, each through a URL that
 * src/blob/signed-urls.ts signed for that one job attempt and file. A URL works only while its job
 * is unfinished; an upload is capped by its URL, checked against the sha256 and size the worker
 * declares, written to a temporary file and renamed into place only when both match.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform, type Readable } from 'node:stream';
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { BlobSigner } from '../blob/signed-urls.js';
import type { JobRecord } from '../jobs/types.js';

export interface BlobRoutesOptions {
  signer: BlobSigner;
  /** The job as the database has it now. */
  job(jobId: number): JobRecord | undefined;
  /** Where a job attempt's uploaded result goes. */
  resultPath(jobId: number, attempt: number, name: string): string;
  logger: Logger;
  now?: () => number;
}

/** The one input a job has: the clip an edit reads (its name on the URL is `input` plus the clip's extension). */
export function inputFileOf(job: JobRecord): string | undefined {
  return typeof job.params.inputFile === 'string' ? job.params.inputFile : undefined;
}

export function blobRoutes(options: BlobRoutesOptions): FastifyPluginAsync {
  const now = options.now ?? Date.now;
  const logger = options.logger.child({ module: 'blobs' });
  return async (app) => {
    // Uploads arrive as raw bytes, streamed to disk here (this parser is scoped to this plugin).
    app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    app.get<{ Params: { job: string; attempt: string; name: string }; Querystring: Record<string, unknown> }>('/blobs/:job/:attempt/:name', async (request, reply) => {
      const { job: jobId, attempt, name } = request.params;
      const grant = options.signer.verify('GET', jobId, attempt, name, request.query, now());
      if ('refused' in grant) return refuse(reply, 403, grant.refused);
      const job = options.job(grant.jobId);
      const file = job ? inputFileOf(job) : undefined;
      if (!job || job.state !== 'running' || !file || !name.startsWith('input')) return refuse(reply, 404, 'no such blob for a running job');
      const size = (await stat(file).catch(() => undefined))?.size;
      if (size === undefined) return refuse(reply, 404, 'the clip is gone');
      if (size > grant.maxBytes) return refuse(reply, 413, 'larger than the URL allows');
      reply.header('content-length', size).type('application/octet-stream');
      return reply.send(createReadStream(file));
    });
    app.put<{ Params: { job: string; attempt: string; name: string }; Querystring: Record<string, unknown> }>('/blobs/:job/:attempt/:name', async (request, reply) => {
      const { job: jobId, attempt, name } = request.params;
      const grant = options.signer.verify('PUT', jobId, attempt, name, request.query, now());
      if ('refused' in grant) return refuse(reply, 403, grant.refused);
      const job = options.job(grant.jobId);
      // Queued too: a run that a killed coordinator had handed out finishes while its job waits to be followed again.
      if (!job || !(job.state === 'running' || job.state === 'queued') || grant.attempt > job.attempts) return refuse(reply, 409, 'the job is not running');
      const declared = { sha256: String(request.headers['x-reelbot-sha256'] ?? ''), bytes: Number(request.headers['content-length']) };
      if (!/^[0-9a-f]{64}$/.test(declared.sha256) || !Number.isSafeInteger(declared.bytes)) return refuse(reply, 400, 'x-reelbot-sha256 and content-length are required');
      if (declared.bytes > grant.maxBytes) return refuse(reply, 413, 'larger than the URL allows');
      const target = options.resultPath(grant.jobId, grant.attempt, name);
      await mkdir(dirname(target), { recursive: true });
      const temp = join(dirname(target), `.${basename(target)}.${process.pid}.${Date.now()}.part`);
      const hash = createHash('sha256');
      let bytes = 0;
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          bytes += chunk.length;
          if (bytes > grant.maxBytes) return callback(new Error('upload past its cap'));
          hash.update(chunk);
          callback(null, chunk);
        },
      });
      try {
        await pipeline(request.body as Readable, counter, createWriteStream(temp));
      } catch (error) {
        await rm(temp, { force: true });
        logger.warn({ jobId: grant.jobId, attempt: grant.attempt, err: error }, 'a result upload broke off');
        return refuse(reply, 400, 'the upload broke off');
      }
      const sha256 = hash.digest('hex');
      if (sha256 !== declared.sha256 || bytes !== declared.bytes) {
        await rm(temp, { force: true });
        logger.warn({ jobId: grant.jobId, attempt: grant.attempt, bytes, declaredBytes: declared.bytes }, 'a result upload did not match its sha256 and size: dropped');
        return refuse(reply, 422, 'sha256 or size mismatch');
      }
      await rename(temp, target);
      return { sha256, bytes };
    });
  };
}

function refuse(reply: { code(status: number): { type(t: string): { send(body: string): unknown } } }, status: number, why: string): unknown {
  return reply.code(status).type('text/plain; charset=utf-8').send(`Refused: ${why}.`);
}
