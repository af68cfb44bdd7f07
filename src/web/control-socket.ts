/**
 * The coordinator's control socket: how the command line beside a running `reelbot serve` goes
 * through it instead of opening the database beside it: `reelbot render` and `reelbot edit` submit
 * through it (never running jobs, or recovery, of their own), and the operator's commands read the
 * live queue, a job, usage, and change what the coordinator keeps in memory (a cancel, pausing the
 * queue) or runs (the retention sweep, a dashboard sign-in link). HTTP over a Unix socket next to
 * the database (mode 0600: only the operator's account reaches it), served by Fastify; it answers
 * only the operations below, and says so to anything else. A submit answers with newline-delimited
 * JSON: the admitted job, then its events until it finishes; everything else with one JSON object.
 */
import { chmodSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { AppError, ErrorCode, UserError } from '../errors.js';
import type { JobService, QueueSnapshot } from '../jobs/job-service.js';
import type { JobDetail, UsageOverview, UsageQuery } from '../jobs/operator-reports.js';
import type { SweepReport } from '../jobs/retention.js';
import { JOB_KINDS, type Actor, type JobEvent, type JobKind, type JobRecord, type Platform, type SubmitResult } from '../jobs/types.js';

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

/** What the coordinator runs besides its job service, for the operator's commands. */
export interface ControlOperations {
  /** The retention sweep now (`reelbot db prune`). */
  prune(): Promise<SweepReport>;
  /** A one-time dashboard sign-in link (`reelbot dashboard link`); absent when serve has no HTTP port. */
  dashboardLink?(actor: Actor): Promise<{ url: string; expiresAt: number }>;
}

/** The operations the socket answers, for the message to anything else. */
const OPERATIONS =
  'POST /jobs (submit), GET /queue, GET /jobs/:id, POST /usage, POST /jobs/:id/cancel, POST /queue/pause, POST /queue/resume, POST /retention/prune, POST /dashboard/link';

const PLATFORMS: readonly Platform[] = ['discord', 'slack', 'cli'];

/** Serves the control socket for `jobs`; resolves once it listens. */
export async function startControlSocket(
  jobs: JobService,
  socketPath: string,
  logger: Logger,
  operations?: ControlOperations,
): Promise<{ close(): Promise<void> }> {
  const app: FastifyInstance = Fastify({ logger: false, bodyLimit: 1024 * 1024 });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ code: ErrorCode.InvalidRequest, message: `The coordinator's control socket does not answer ${req.method} ${req.url.split('?')[0]}. It answers: ${OPERATIONS}.` }),
  );
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
  app.get<{ Querystring: { user?: string } }>('/queue', async (req): Promise<QueueSnapshot> => {
    operator(req.query?.user);
    return jobs.queue();
  });
  app.get<{ Params: { id: string }; Querystring: { user?: string } }>('/jobs/:id', async (req, reply): Promise<JobDetail | FastifyReply> => {
    const id = jobIdOf(req.params.id);
    const detail = jobs.jobDetail(operator(req.query?.user), id);
    if (!detail) return reply.code(404).send({ code: ErrorCode.JobNotFound, message: `No job #${id}.` });
    return detail;
  });
  app.post<{ Body: { user?: unknown; query?: unknown } }>('/usage', async (req): Promise<UsageOverview> => jobs.usageOverview(operator(req.body?.user), usageQueryOf(req.body?.query)));
  app.post<{ Params: { id: string }; Body: { user?: unknown } }>('/jobs/:id/cancel', async (req): Promise<{ outcome: 'cancelled' | 'cancelling'; job: JobRecord }> => {
    const id = jobIdOf(req.params.id);
    try {
      const { outcome, job } = await jobs.cancel(operator(req.body?.user), id);
      return { outcome, job };
    } catch (error) {
      if (error instanceof UserError && error.code === ErrorCode.JobNotFound) throw new UserError(ErrorCode.JobNotFound, `No job #${id}.`);
      throw error;
    }
  });
  app.post<{ Body: { user?: unknown } }>('/queue/pause', async (req) => {
    await jobs.pauseQueue(operator(req.body?.user));
    return { paused: true };
  });
  app.post<{ Body: { user?: unknown } }>('/queue/resume', async (req) => {
    await jobs.resumeQueue(operator(req.body?.user));
    return { paused: false };
  });
  app.post('/retention/prune', async (_req, reply): Promise<SweepReport | FastifyReply> => {
    if (!operations) return reply.code(404).send({ code: ErrorCode.InvalidRequest, message: 'This coordinator runs no retention sweep.' });
    return operations.prune();
  });
  app.post<{ Body: { user?: unknown } }>('/dashboard/link', async (req, reply) => {
    const actor = operator(req.body?.user);
    if (!operations?.dashboardLink) {
      return reply.code(409).send({ code: ErrorCode.InvalidRequest, message: 'The running reelbot serve has no HTTP port (REELBOT_HTTP_PORT), so it serves no dashboard.' });
    }
    return operations.dashboardLink(actor);
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

/** The operator at the command line, named by their login name; a request without one is refused. */
function operator(user: unknown): Actor {
  if (typeof user !== 'string' || user.trim() === '' || user.length > 200) {
    throw new UserError(ErrorCode.InvalidRequest, 'A request to the control socket names the operator: "user", their login name.');
  }
  return { platform: 'cli', externalId: user };
}

function jobIdOf(text: string): number {
  const id = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(id) || id < 1) throw new UserError(ErrorCode.InvalidRequest, 'A job id is a whole number, such as 42.');
  return id;
}

/** A usage query as the command line sends it, checked field by field. */
function usageQueryOf(value: unknown): UsageQuery {
  const bad = (what: string) => new UserError(ErrorCode.InvalidRequest, `A usage query needs ${what}.`);
  if (value === null || typeof value !== 'object') throw bad('since, limit and optionally user, groupId and until');
  const query = value as Record<string, unknown>;
  const time = (field: unknown) => typeof field === 'number' && Number.isFinite(field);
  if (!time(query.since)) throw bad('since (ms since the epoch)');
  if (query.until !== undefined && !time(query.until)) throw bad('until as ms since the epoch');
  if (!(typeof query.limit === 'number' && Number.isInteger(query.limit) && query.limit >= 1 && query.limit <= 10_000)) throw bad('limit, a whole number from 1');
  if (query.groupId !== undefined && typeof query.groupId !== 'string') throw bad('groupId as a string');
  const result: UsageQuery = { since: query.since as number, limit: query.limit, ...(query.until === undefined ? {} : { until: query.until as number }), ...(query.groupId === undefined ? {} : { groupId: query.groupId }) };
  if (query.user !== undefined) {
    const user = query.user as Record<string, unknown> | null;
    if (user !== null && typeof user === 'object' && Number.isSafeInteger(user.id)) result.user = { id: user.id as number };
    else if (user !== null && typeof user === 'object' && PLATFORMS.includes(user.platform as Platform) && typeof user.externalId === 'string' && user.externalId !== '') {
      result.user = { platform: user.platform as Platform, externalId: user.externalId };
    } else throw bad('user as {"id"} or {"platform", "externalId"}');
  }
  return result;
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

  cancel(user: string, jobId: number): Promise<{ outcome: 'cancelled' | 'cancelling'; job: JobRecord }> {
    return this.#call('POST', `/jobs/${jobId}/cancel`, { user });
  }

  /** The coordinator's live queue: running jobs, then waiting ones in the order they start, with positions and ETAs. */
  queue(user: string): Promise<QueueSnapshot> {
    return this.#call('GET', `/queue?user=${encodeURIComponent(user)}`);
  }

  /** One job and its ledger rows; a job that does not exist is a UserError "No job #N.". */
  job(user: string, jobId: number): Promise<JobDetail> {
    return this.#call('GET', `/jobs/${jobId}?user=${encodeURIComponent(user)}`);
  }

  usage(user: string, query: UsageQuery): Promise<UsageOverview> {
    return this.#call('POST', '/usage', { user, query });
  }

  pauseQueue(user: string): Promise<{ paused: boolean }> {
    return this.#call('POST', '/queue/pause', { user });
  }

  resumeQueue(user: string): Promise<{ paused: boolean }> {
    return this.#call('POST', '/queue/resume', { user });
  }

  prune(user: string): Promise<SweepReport> {
    return this.#call('POST', '/retention/prune', { user });
  }

  dashboardLink(user: string): Promise<{ url: string; expiresAt: number }> {
    return this.#call('POST', '/dashboard/link', { user });
  }

  /** One request with one JSON answer; a refusal rejects with the coordinator's UserError, a lost socket with an AppError. */
  #call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    return new Promise((resolve, reject) => {
      const headers = body === undefined ? {} : { 'content-type': 'application/json' };
      const req = request({ socketPath: this.#socketPath, path, method, headers }, (res) => {
        res.setEncoding('utf8');
        let text = '';
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(refusal(text));
          try {
            resolve(JSON.parse(text) as T);
          } catch {
            reject(new AppError(ErrorCode.Unknown, 'The coordinator answered something that is not JSON.'));
          }
        });
      });
      req.on('error', (error) => reject(new AppError(ErrorCode.Interrupted, `Could not reach the coordinator at ${this.#socketPath}: ${error.message}`)));
      req.end(body === undefined ? undefined : JSON.stringify(body));
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
