import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MessageEditor } from '../../../src/bots/shared/message-editor.js';

describe('MessageEditor', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function editor(send: (content: string) => Promise<void> = async () => undefined) {
    const sent: string[] = [];
    const errors: unknown[] = [];
    const instance = new MessageEditor({
      intervalMs: 2500,
      now: () => Date.now(),
      send: async (content) => {
        sent.push(content);
        await send(content);
      },
      onError: (error) => errors.push(error),
    });
    return { instance, sent, errors };
  }

  it('sends at most one progress edit per interval, coalescing to the newest text', async () => {
    const { instance, sent } = editor();
    await instance.now(async () => {
      sent.push('queued');
    });
    instance.progress('1/4');
    instance.progress('2/4');
    await vi.advanceTimersByTimeAsync(2499);
    expect(sent).toEqual(['queued']);
    await vi.advanceTimersByTimeAsync(1);
    expect(sent).toEqual(['queued', '2/4']);
    instance.progress('3/4');
    await vi.advanceTimersByTimeAsync(1000);
    expect(sent).toEqual(['queued', '2/4']);
    await vi.advanceTimersByTimeAsync(1500);
    expect(sent).toEqual(['queued', '2/4', '3/4']);
  });

  it('a final edit drops waiting progress and waits for the edit in flight', async () => {
    let release: () => void = () => undefined;
    const { instance, sent } = editor((content) => (content === '1/4' ? new Promise<void>((resolve) => (release = resolve)) : Promise.resolve()));
    instance.progress('1/4');
    await vi.advanceTimersByTimeAsync(0);
    instance.progress('2/4');
    const order: string[] = [];
    const final = instance.now(async () => {
      order.push('final');
    }, { final: true });
    await vi.advanceTimersByTimeAsync(5000);
    expect(order).toEqual([]);
    release();
    await final;
    expect(order).toEqual(['final']);
    instance.progress('3/4');
    await vi.advanceTimersByTimeAsync(5000);
    expect(sent).toEqual(['1/4']);
  });

  it('a failed progress edit goes to onError and later edits still run', async () => {
    const { instance, sent, errors } = editor(async (content) => {
      if (content === '1/4') throw new Error('429');
    });
    instance.progress('1/4');
    await vi.advanceTimersByTimeAsync(0);
    expect(errors).toHaveLength(1);
    instance.progress('2/4');
    await vi.advanceTimersByTimeAsync(2500);
    expect(sent).toEqual(['1/4', '2/4']);
  });
});
