/**
 * Edits of one message, in order: progress edits are throttled (at most one per `intervalMs`) and
 * coalesced (only the newest waiting text is sent), and the final edit replaces any progress text
 * still waiting. Edits never reject to the caller: a rate-limited or failed progress edit is
 * logged by `onError` and the job goes on.
 */
export interface MessageEditorOptions {
  /** Sends one edit; may take long when the platform rate-limits it. */
  send: (content: string) => Promise<void>;
  /** Called with a failed progress edit's error. */
  onError: (error: unknown) => void;
  /** Shortest time between the starts of two edits. Discord: 2.5 s per message. */
  intervalMs: number;
  now?: () => number;
}

export class MessageEditor {
  #options: MessageEditorOptions;
  #now: () => number;
  #lastStart = Number.NEGATIVE_INFINITY;
  #pending: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #chain: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(options: MessageEditorOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Queues a progress text; only the newest waiting text is sent. */
  progress(content: string): void {
    if (this.#closed) return;
    this.#pending = content;
    if (this.#timer !== undefined) return;
    const wait = Math.max(0, this.#lastStart + this.#options.intervalMs - this.#now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const text = this.#pending;
      this.#pending = undefined;
      if (text === undefined || this.#closed) return;
      this.#run(() => this.#options.send(text)).catch(this.#options.onError);
    }, wait);
  }

  /**
   * Runs an edit now, after the edits already started, dropping waiting progress. With
   * `final: true`, later progress texts are ignored. Rejects with the edit's error.
   */
  now(edit: () => Promise<void>, options: { final?: boolean } = {}): Promise<void> {
    this.#pending = undefined;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (options.final === true) this.#closed = true;
    return this.#run(edit);
  }

  /** Stops any waiting progress edit. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #run(edit: () => Promise<void>): Promise<void> {
    const result = this.#chain.then(() => {
      this.#lastStart = this.#now();
      return edit();
    });
    this.#chain = result.catch(() => undefined);
    return result;
  }
}
