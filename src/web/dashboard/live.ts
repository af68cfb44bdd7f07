/**
 * Live updates of the "Now" page over Server-Sent Events. A `progress` event moves one running
 * job's bar (the page keeps its focus and scroll); a `refresh` event replaces the live section
 * with a fresh server rendering when jobs are queued, start or finish, and every few seconds (for
 * heartbeats and a pause from another browser). The last progress of each running job is kept
 * here so that a page opened mid-job shows it.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';
import type { JobService } from '../../jobs/job-service.js';
import type { JobEvent, JobProgress } from '../../jobs/types.js';
import { progressText } from './now-page.js';

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

export class LiveFeed {
  readonly progress = new Map<number, JobProgress>();
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
      this.progress.set(jobId, event.progress);
      const etaMs = this.#jobs.status(jobId)?.etaMs ?? 0;
      this.#send('progress', { jobId, step: event.progress.step, total: event.progress.total, text: progressText(event.progress, etaMs) });
      return;
    }
    if (event.type === 'succeeded' || event.type === 'failed' || event.type === 'cancelled') this.progress.delete(jobId);
    if (event.type === 'started') this.progress.delete(jobId); // a retry starts from the beginning
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
