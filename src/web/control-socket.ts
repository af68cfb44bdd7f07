/**
 * The coordinator's control socket: how `reelbot render` and `reelbot edit` beside a running
 * `reelbot serve` submit through it instead of running jobs (and recovery) of their own. HTTP over
 * a Unix socket next to the database (mode 0600: only the operator's account reaches it), served
 * by Fastify; a submit answers with newline-delimited JSON: the admitted job, then its events
 * until it finishes.
 */
import { chmodSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { AppError, ErrorCode, UserError } from '../errors.js';
import type { JobService } from '../jobs/job-service.js';
import { JOB_KINDS, type Actor, type JobEvent, type JobKind, type SubmitResult } from '../jobs/types.js';

/** Where the coordinator of the database at `dbPath` listens. */
export function controlSocketPath(dbPath: string): string {
  return `${dbPath}.control.sock`;
}

export interface SubmitBody {
  kind: JobKind;
  params: Record<string, unknown>;
  seed?: number;
  /** The operator's login name (the CLI actor's id). */
  user: string;
}

type Line = { type: 'submitted'; result: SubmitResult } | { type: 'event'; event: JobEvent };

/** Serves the control socket for `jobs`; resolves once it listens. */
export async function startControlSocket(jobs: JobService, socketPath: string, logger: Logger): Promise<{ close(): Promise<void> }> {
  const app: FastifyInstance = Fastify({ logger: false, bodyLimit: 1024 * 1024 });
  app.setErrorHandler((error: Error & { statusCode?: number }, _request, reply) => {
    if (error instanceof UserError) return reply.code(422).send({ code: error.code, message: error.userMessage });
    if (error.statusCode !== undefined && error.statusCode < 500) return reply.code(error.statusCode).send({ code: ErrorCode.InvalidRequest, message: 'The request was not understood.' });
    logger.error({ err: error }, 'control socket request failed');
    return reply.code(500).send({ code: ErrorCode.Unknown, message: 'The coordinator could not take the request; its log says why.' });
  });
  app.post<{ Body: SubmitBody }>('/jobs', async (req, reply) => {
    const body = req.body;
    if (!body || !JOB_KINDS.includes(body.kind) || typeof body.params !== 'object' || typeof body.user !== 'string') {
      return reply.code(400).send({ code: ErrorCode.InvalidRequest, message: 'A submit needs kind, params and user.' });
    }
    const actor: Actor = { platform: 'cli', externalId: body.user };
    // Events before the submit returns (queued, started) are kept until the job's id is known.
    const early: JobEvent[] = [];
    let jobId: number | undefined;
    let write: ((line: Line) => void) | undefined;
    const unsubscribe = jobs.onEvent((event) => {
      if (jobId === undefined) early.push(event);
      else if (event.job.id === jobId) write?.({ type: 'event', event });
    });
    let result: SubmitResult;
    try {
      result = await jobs.submit({ actor, kind: body.kind, params: body.params, seed: body.seed });
    } catch (error) {
      unsubscribe();
      throw error;
    }
    jobId = result.job.id;
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'content-type': 'application/x-ndjson' });
    write = (line) => {
      raw.write(`${JSON.stringify(line)}\n`);
      if (line.type === 'event' && ['succeeded', 'failed', 'cancelled'].includes(line.event.type)) {
        unsubscribe();
        raw.end();
      }
    };
    raw.on('close', unsubscribe);
    write({ type: 'submitted', result });
    for (const event of early.filter((event) => event.job.id === jobId)) write({ type: 'event', event });
    // A duplicate submit, or a job that finished before this line: its end is in the database.
    const now = jobs.status(jobId)?.job;
    if (now && ['succeeded', 'failed', 'cancelled'].includes(now.state) && !raw.writableEnded) {
      write(finalEvent(now));
    }
  });
  app.post<{ Params: { id: string }; Body: { user: string } }>('/jobs/:id/cancel', async (req) => {
    const outcome = await jobs.cancel({ platform: 'cli', externalId: String(req.body?.user ?? '') }, Number(req.params.id));
    return { outcome: outcome.outcome };
  });
  rmSync(socketPath, { force: true }); // a socket file left by a killed coordinator (this process holds the lease now)
  await app.listen({ path: socketPath });
  chmodSync(socketPath, 0o600);
  return {
    close: async () => {
      await app.close();
      rmSync(socketPath, { force: true });
    },
  };
}

function finalEvent(job: JobEvent['job']): Line {
  if (job.state === 'succeeded') return { type: 'event', event: { type: 'succeeded', job, result: job.result as Record<string, unknown>, gpuSeconds: job.gpuSeconds ?? 0 } };
  if (job.state === 'cancelled') return { type: 'event', event: { type: 'cancelled', job, refunded: true } };
  return { type: 'event', event: { type: 'failed', job, code: (job.errorCode ?? ErrorCode.Unknown) as ErrorCode, message: job.error ?? 'The job failed.', refunded: true } };
}

/** The CLI's side of the control socket. */
export class ControlClient {
  readonly #socketPath: string;

  constructor(socketPath: string) {
    this.#socketPath = socketPath;
  }

  /**
   * Submits through the coordinator. Resolves with the admitted job once it is admitted; `onEvent`
   * gets the job's events, and `finished` resolves with its last one. A refusal rejects with the
   * coordinator's UserError (message for the user).
   */
  submit(body: SubmitBody, onEvent: (event: JobEvent) => void): Promise<{ result: SubmitResult; finished: Promise<JobEvent> }> {
    return new Promise((resolve, reject) => {
      let settleFinished!: { resolve(event: JobEvent): void; reject(error: Error): void };
      const finished = new Promise<JobEvent>((res, rej) => (settleFinished = { resolve: res, reject: rej }));
      finished.catch(() => undefined);
      let admitted = false;
      let last: JobEvent | undefined;
      const req = request({ socketPath: this.#socketPath, path: '/jobs', method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        res.setEncoding('utf8');
        let buffer = '';
        if (res.statusCode !== 200) {
          res.on('data', (chunk: string) => (buffer += chunk));
          res.on('end', () => reject(refusal(buffer)));
          return;
        }
        res.on('data', (chunk: string) => {
          buffer += chunk;
          for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
            const line = JSON.parse(buffer.slice(0, nl)) as Line;
            buffer = buffer.slice(nl + 1);
            if (line.type === 'submitted') {
              admitted = true;
              resolve({ result: line.result, finished });
            } else {
              last = line.event;
              onEvent(line.event);
            }
          }
        });
        res.on('end', () => {
          if (last && ['succeeded', 'failed', 'cancelled'].includes(last.type)) settleFinished.resolve(last);
          else settleFinished.reject(new AppError(ErrorCode.Interrupted, 'The coordinator stopped before the job finished; it stays in its queue (see reelbot jobs show).'));
        });
      });
      req.on('error', (error) => {
        const lost = new AppError(ErrorCode.Interrupted, `Could not reach the coordinator at ${this.#socketPath}: ${error.message}`);
        if (admitted) settleFinished.reject(lost);
        else reject(lost);
      });
      req.end(JSON.stringify(body));
    });
  }

  cancel(user: string, jobId: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.#socketPath, path: `/jobs/${jobId}/cancel`, method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', () => resolve());
      });
      req.on('error', reject);
      req.end(JSON.stringify({ user }));
    });
  }
}

function refusal(body: string): Error {
  try {
    const parsed = JSON.parse(body) as { code?: string; message?: string };
    if (typeof parsed.message === 'string') return new UserError((parsed.code ?? ErrorCode.InvalidRequest) as ErrorCode, parsed.message);
  } catch {
    // not JSON: fall through
  }
  return new AppError(ErrorCode.Unknown, 'The coordinator refused the request.');
}
