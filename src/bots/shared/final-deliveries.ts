/**
 * The final messages of finished jobs (the upload, the failure text) that an adapter is still
 * sending. A drain waits for them before the adapters disconnect and the database closes, so a
 * job that completed during the shutdown grace period still reaches its user.
 */
export class FinalDeliveries {
  readonly #pending = new Set<Promise<unknown>>();

  get size(): number {
    return this.#pending.size;
  }

  /** Tracks a delivery until it settles; returns it. */
  track<T>(delivery: Promise<T>): Promise<T> {
    this.#pending.add(delivery);
    const forget = () => this.#pending.delete(delivery);
    delivery.then(forget, forget);
    return delivery;
  }

  /**
   * Resolves once every tracked delivery, including those that start while waiting, has settled,
   * or after `timeoutMs`; says which.
   */
  async settled(timeoutMs: number): Promise<'settled' | 'timed_out'> {
    const deadline = Date.now() + timeoutMs;
    while (this.#pending.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return 'timed_out';
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...this.#pending]), new Promise((resolve) => (timer = setTimeout(resolve, left)))]);
      clearTimeout(timer);
    }
    return 'settled';
  }
}
