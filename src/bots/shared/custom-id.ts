/**
 * Ids of the buttons under a job's message: `v1:<action>:<jobId>`. The same string is the
 * Discord `custom_id` and the Slack `action_id` / `value`. Everything a click needs is in the id
 * and the job row it names, so buttons keep working after a restart.
 */

/** What a button does. */
export const BUTTON_ACTIONS = ['reroll', 'cancel', 'edit', 'delete'] as const;
export type ButtonAction = (typeof BUTTON_ACTIONS)[number];

/** A decoded button id. */
export interface ButtonId {
  action: ButtonAction;
  jobId: number;
}

/** Discord's `custom_id` is 1–100 characters (Slack's `action_id` allows 255, so Discord binds). */
export const CUSTOM_ID_MAX_LENGTH = 100;

/** Bumped when the format changes; ids of another version are refused, never guessed at. */
const VERSION = 'v1';
const PATTERN = /^v1:([a-z]+):([1-9][0-9]*)$/;

/**
 * Builds the id of a button. Throws a RangeError for an unknown action or a job id that is not a
 * positive safe integer (a programming error, not a user's).
 *
 * @example
 * encodeCustomId('reroll', 42); // 'v1:reroll:42'
 */
export function encodeCustomId(action: ButtonAction, jobId: number): string {
  if (!isButtonAction(action)) throw new RangeError(`Unknown button action ${JSON.stringify(action)}; expected one of ${BUTTON_ACTIONS.join(', ')}.`);
  if (!Number.isSafeInteger(jobId) || jobId < 1) throw new RangeError(`A job id must be a positive whole number, got ${String(jobId)}.`);
  return `${VERSION}:${action}:${jobId}`;
}

/**
 * Reads a button id back. Returns null for anything that is not exactly one this version wrote:
 * another version, an unknown action, a job id that is not a positive integer (no sign, no
 * leading zero, no spaces), or a string longer than Discord allows. Input comes from the
 * platform, so it is typed `unknown`.
 *
 * @example
 * decodeCustomId('v1:cancel:7'); // { action: 'cancel', jobId: 7 }
 * decodeCustomId('v2:cancel:7'); // null
 */
export function decodeCustomId(value: unknown): ButtonId | null {
  if (typeof value !== 'string' || value.length === 0 || value.length > CUSTOM_ID_MAX_LENGTH) return null;
  const match = PATTERN.exec(value);
  if (match === null) return null;
  const [, action, digits] = match;
  if (action === undefined || digits === undefined || !isButtonAction(action)) return null;
  const jobId = Number(digits);
  if (!Number.isSafeInteger(jobId)) return null;
  return { action, jobId };
}

function isButtonAction(value: string): value is ButtonAction {
  return (BUTTON_ACTIONS as readonly string[]).includes(value);
}

/**
 * Id of the instruction modal that Discord's "Edit clip…" opens on a message: `v1:clip:<messageId>`.
 * The message id (a Discord snowflake) is enough to find the clip again after a restart; the
 * channel comes with the modal's own interaction.
 *
 * @example
 * encodeClipModalId('1234567890123456789'); // 'v1:clip:1234567890123456789'
 */
export function encodeClipModalId(messageId: string): string {
  if (!SNOWFLAKE.test(messageId)) throw new RangeError(`A message id must be a Discord snowflake, got ${JSON.stringify(messageId)}.`);
  return `${VERSION}:clip:${messageId}`;
}

/** The message id in a clip modal's id, or null for anything else. */
export function decodeClipModalId(value: unknown): string | null {
  if (typeof value !== 'string' || value.length > CUSTOM_ID_MAX_LENGTH) return null;
  const match = CLIP_MODAL_PATTERN.exec(value);
  return match?.[1] ?? null;
}

const SNOWFLAKE = /^[1-9][0-9]{0,19}$/;
const CLIP_MODAL_PATTERN = /^v1:clip:([1-9][0-9]{0,19})$/;
