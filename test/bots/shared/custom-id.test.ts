import { describe, expect, it } from 'vitest';
import { BUTTON_ACTIONS, decodeClipModalId, decodeCustomId, encodeClipModalId, encodeCustomId } from '../../../src/bots/shared/custom-id.js';

describe('custom ids', () => {
  it('GIVEN every action THEN encode and decode round-trip', () => {
    for (const action of BUTTON_ACTIONS) {
      const id = encodeCustomId(action, 42);
      expect(id).toBe(`v1:${action}:42`);
      expect(decodeCustomId(id)).toEqual({ action, jobId: 42 });
    }
    expect(decodeCustomId(encodeCustomId('cancel', Number.MAX_SAFE_INTEGER))).toEqual({ action: 'cancel', jobId: Number.MAX_SAFE_INTEGER });
  });

  it.each([
    ['another version', 'v2:cancel:1'],
    ['an unknown action', 'v1:remove:1'],
    ['a non-numeric id', 'v1:cancel:abc'],
    ['a zero id', 'v1:cancel:0'],
    ['a negative id', 'v1:cancel:-3'],
    ['a leading zero', 'v1:cancel:07'],
    ['a fractional id', 'v1:cancel:1.5'],
    ['trailing text', 'v1:cancel:1:x'],
    ['spaces', 'v1:cancel: 1'],
    ['an unsafe integer', 'v1:cancel:9007199254740993'],
    ['too long for Discord', `v1:cancel:${'1'.repeat(100)}`],
    ['an empty string', ''],
  ])('GIVEN %s THEN decode returns null', (_label, value) => {
    expect(decodeCustomId(value)).toBeNull();
  });

  it('GIVEN a value that is not a string THEN decode returns null', () => {
    expect(decodeCustomId(undefined)).toBeNull();
    expect(decodeCustomId(7)).toBeNull();
  });

  it('GIVEN a bad job id or action THEN encode throws', () => {
    expect(() => encodeCustomId('cancel', 0)).toThrow(RangeError);
    expect(() => encodeCustomId('cancel', 1.5)).toThrow(RangeError);
    expect(() => encodeCustomId('remove' as 'cancel', 1)).toThrow(/Unknown button action/);
  });

  it('GIVEN a message snowflake THEN the clip modal id round-trips, and other ids are not clip modal ids', () => {
    const id = encodeClipModalId('1234567890123456789');
    expect(id).toBe('v1:clip:1234567890123456789');
    expect(decodeClipModalId(id)).toBe('1234567890123456789');
    expect(decodeCustomId(id)).toBeNull();
    expect(decodeClipModalId('v1:edit:42')).toBeNull();
    expect(decodeClipModalId('v1:clip:0123')).toBeNull();
    expect(decodeClipModalId('v1:clip:12 ')).toBeNull();
    expect(() => encodeClipModalId('../etc')).toThrow(RangeError);
  });
});

describe('the delete button', () => {
  it('GIVEN delete THEN round-trips like the other actions', () => {
    expect(decodeCustomId(encodeCustomId('delete', 12))).toEqual({ action: 'delete', jobId: 12 });
  });
});
