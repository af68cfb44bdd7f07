/**
 * Live updates of the "Now" page over Server-Sent Events. A `progress` event moves one running
 * job's bar (the page keeps its focus and scroll); a `refresh` event replaces the live section
 * with a fresh server rendering when jobs are queued, start or finish, and every few seconds (for
 * heartbeats and a pause from another browser). The last progress of each running job is kept
 * here so that a page opened mid-job shows it, and so is its newest live preview (a small PNG,
 * in memory only, served at `/jobs/:id/preview.png` and dropped when the job ends).
 */
import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';
import type { JobService } from '../../jobs/job-service.js';
import type { JobEvent, JobProgress } from '../../jobs/types.js';
import { previewAlt, previewUrl, progressText } from './now-page.js';

interface Client {
  response: ServerResponse;
  /** Renders the live section for this client's session (its forms carry its CSRF token). */
  render(): string;
}

export interface LiveFeedOptions {
  /** A refresh at least this often (ms). */
  refreshMs?: number;
  /** Job events within this long of each other make one refresh (ms). */
  debounceMs?: number;
}

/** The newest live preview of a running job, decoded once. */
export interface LivePreview {
  png: Buffer;
  width: number;
  height: number;
  /** The denoising step it shows (also in its URL, so that a browser never shows an older one from its cache). */
  step: number;
}

export class LiveFeed {
  /** The last progress of each running job, without its preview (that is in `previews`). */
  readonly progress = new Map<number, JobProgress>();
  readonly previews = new Map<number, LivePreview>();
  readonly #jobs: Pick<JobService, 'onEvent' | 'status'>;
  readonly #clients = new Set<Client>();
  readonly #unsubscribe: () => void;
  readonly #ticker: NodeJS.Timeout;
  readonly #debounceMs: number;
  #pending: NodeJS.Timeout | undefined;

  constructor(jobs: Pick<JobService, 'onEvent' | 'status'>, options: LiveFeedOptions = {}) {
    this.#jobs = jobs;
    this.#debounceMs = options.debounceMs ?? 150;
    this.#unsubscribe = jobs.onEvent((event) => this.#onEvent(event));
    this.#ticker = setInterval(() => this.#refresh(), options.refreshMs ?? 5000);
    this.#ticker.unref();
  }

  /** Takes over the reply as an event stream until the browser goes away. */
  attach(reply: FastifyReply, render: () => string): void {
    reply.hijack();
    const response = reply.raw;
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      // nginx would otherwise hold the stream back in its buffer.
      'x-accel-buffering': 'no',
    });
    const client: Client = { response, render };
    this.#clients.add(client);
    response.write('retry: 2000\n\n');
    response.on('close', () => this.#clients.delete(client));
  }

  /** Ends every stream (the server is closing) and stops following jobs. */
  close(): void {
    this.#unsubscribe();
    clearInterval(this.#ticker);
    clearTimeout(this.#pending);
    for (const client of this.#clients) client.response.end();
    this.#clients.clear();
  }

  #onEvent(event: JobEvent): void {
    const jobId = event.job.id;
    if (event.type === 'progress') {
      const { preview, ...progress } = event.progress;
      this.progress.set(jobId, progress);
      // Previews come with some progress events only: the last one stays until a newer one comes.
      let fresh: LivePreview | undefined;
      if (preview !== undefined) {
        fresh = { png: Buffer.from(preview.png, 'base64'), width: preview.width, height: preview.height, step: preview.step };
        this.previews.set(jobId, fresh);
      }
      const etaMs = this.#jobs.status(jobId)?.etaMs ?? 0;
      this.#send('progress', {
        jobId,
        step: progress.step,
        total: progress.total,
        text: progressText(progress, etaMs),
        ...(fresh ? { preview: { url: previewUrl(jobId, fresh.step), width: fresh.width, height: fresh.height, alt: previewAlt(jobId, fresh.step) } } : {}),
      });
      return;
    }
    // A finished job has no preview any more; a retry starts from the beginning.
    if (event.type === 'succeeded' || event.type === 'failed' || event.type === 'cancelled' || event.type === 'started') {
      this.progress.delete(jobId);
      this.previews.delete(jobId);
    }
    this.#pending ??= setTimeout(() => {
      this.#pending = undefined;
      this.#refresh();
    }, this.#debounceMs);
  }

  #refresh(): void {
    for (const client of this.#clients) {
      let section: string;
      try {
        section = client.render();
      } catch {
        continue; // the database is closing: the next refresh, or the browser's reconnect, catches up
      }
      this.#write(client, 'refresh', { html: section });
    }
  }

  #send(event: string, data: unknown): void {
    for (const client of this.#clients) this.#write(client, event, data);
  }

  #write(client: Client, event: string, data: unknown): void {
    if (client.response.writableEnded) return;
    client.response.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }
}
