/** The engine's door for text-to-video parameters: t0 / t1 alone or together. */
import { expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import { parseTextToVideoParams } from '../../src/jobs/job-params.js';

test('t0 or t1 may come alone; out-of-range phase steps get a message for the user', () => {
  expect(parseTextToVideoParams({ prompt: 'a corgi', numInferenceSteps: 10, t1: 3 })).toMatchObject({ t1: 3 });
  expect(parseTextToVideoParams({ prompt: 'a corgi', numInferenceSteps: 10, t0: 3 })).toMatchObject({ t0: 3 });
  expect(parseTextToVideoParams({ prompt: 'a corgi' })).not.toHaveProperty('t0');
  const refused = (params: Record<string, unknown>): string => {
    try {
      parseTextToVideoParams({ prompt: 'a corgi', ...params });
    } catch (error) {
      expect(error).toBeInstanceOf(AppError);
      return (error as AppError).userMessage;
    }
    throw new Error('not refused');
  };
  expect(refused({ numInferenceSteps: 10, t0: 9 })).toBe('t0 must be a step index from 0 to 8 for 10 steps (below t1), got 9.');
  expect(refused({ numInferenceSteps: 10, t0: 6, t1: 4 })).toBe('t0 and t1 must be step indices with 0 ≤ t0 < t1 < 10, got 6 and 4.');
  expect(refused({ numInferenceSteps: 10, t1: 12 })).toBe('t1 must be from 0 to 9, not 12.');
});
