/**
 * Block Kit for the Slack adapter, as pure functions: a job's message (its text plus the Re-roll
 * and Cancel buttons) and the "Edit clip" modal. Button `action_id`s are the shared
 * `v1:<action>:<jobId>` ids, so a click is resolved from the job row, also after a restart.
 */
import { encodeCustomId } from '../shared/custom-id.js';
import { fitText } from '../shared/texts.js';

/** `callback_id` of the message shortcut (also in slack-manifest.yaml). */
export const EDIT_SHORTCUT_CALLBACK_ID = 'edit_clip';
/** `callback_id` of the modal it opens. */
export const EDIT_MODAL_CALLBACK_ID = 'edit_clip_modal';
/** Block and action ids of the modal's instruction field. */
export const INSTRUCTION_BLOCK_ID = 'instruction';
export const INSTRUCTION_ACTION_ID = 'instruction_input';
/** Slack's limit on a section's text. */
export const SECTION_TEXT_LIMIT = 3000;
/** Slack's limit on a message's top-level `text`. */
export const MESSAGE_TEXT_LIMIT = 40_000;

/** A message body for chat.postMessage / chat.update / a response_url. */
export interface SlackMessage {
  text: string;
  blocks: unknown[];
}

/**
 * A job's message: its mrkdwn text, and the Re-roll and Cancel buttons (`buttons: 'cancel'`: only
 * Cancel, as on the queued notice; `false`: none).
 */
export function jobMessage(text: string, jobId: number, options: { buttons?: boolean | 'cancel' | 'finished'; image?: { fileId: string; alt: string } } = {}): SlackMessage {
  const blocks: unknown[] = [{ type: 'section', text: { type: 'mrkdwn', text: fitText(text, SECTION_TEXT_LIMIT) } }];
  // A live preview: an image block of a file the bot uploaded.
  if (options.image !== undefined) blocks.push({ type: 'image', slack_file: { id: options.image.fileId }, alt_text: options.image.alt });
  if (options.buttons === 'finished') blocks.push(finishedButtons(jobId));
  else if (options.buttons !== false) blocks.push(jobButtons(jobId, options.buttons === 'cancel'));
  return { text: fitText(text, MESSAGE_TEXT_LIMIT), blocks };
}

/** `/reelbot history`'s answer: its text, then an image block of each result still kept (its thumbnail). */
export function historyMessage(text: string, thumbnails: readonly { jobId: number; fileId: string }[]): SlackMessage {
  const blocks: unknown[] = [{ type: 'section', text: { type: 'mrkdwn', text: fitText(text, SECTION_TEXT_LIMIT) } }];
  for (const { jobId, fileId } of thumbnails) {
    blocks.push({ type: 'image', slack_file: { id: fileId }, alt_text: `Job #${jobId}'s first frame`, title: { type: 'plain_text', text: `#${jobId}` } });
  }
  return { text: fitText(text, MESSAGE_TEXT_LIMIT), blocks };
}

/** The Re-roll and Cancel buttons of a job (only Cancel with `cancelOnly`). */
export function jobButtons(jobId: number, cancelOnly = false): unknown {
  const reroll = { type: 'button', action_id: encodeCustomId('reroll', jobId), text: { type: 'plain_text', text: '🔁 Re-roll' }, value: String(jobId) };
  const cancel = { type: 'button', action_id: encodeCustomId('cancel', jobId), text: { type: 'plain_text', text: '⛔ Cancel' }, style: 'danger', value: String(jobId) };
  return { type: 'actions', block_id: `job-${jobId}`, elements: cancelOnly ? [cancel] : [reroll, cancel] };
}

/** Under a delivered video: Re-roll and 🗑 Delete (owner or admin: the video and the job's message go). */
export function finishedButtons(jobId: number): unknown {
  const reroll = { type: 'button', action_id: encodeCustomId('reroll', jobId), text: { type: 'plain_text', text: '🔁 Re-roll' }, value: String(jobId) };
  const remove = { type: 'button', action_id: encodeCustomId('delete', jobId), text: { type: 'plain_text', text: '🗑 Delete' }, style: 'danger', value: String(jobId) };
  return { type: 'actions', block_id: `job-${jobId}`, elements: [reroll, remove] };
}

/** What the modal carries from the shortcut to its submission (`private_metadata`, at most 3000 chars). */
export interface ClipMetadata {
  channelId: string;
  /** The thread to answer in: the clip message's thread, or the clip message itself. */
  threadTs: string;
  file: { id: string; name: string; url: string; size?: number };
}

/** The "Edit clip" modal: one instruction field; the clip travels in `private_metadata`. */
export function editModal(metadata: ClipMetadata, clipName: string): Record<string, unknown> {
  return {
    type: 'modal',
    callback_id: EDIT_MODAL_CALLBACK_ID,
    private_metadata: JSON.stringify(metadata),
    title: { type: 'plain_text', text: 'Edit clip' },
    submit: { type: 'plain_text', text: 'Edit' },
    close: { type: 'plain_text', text: 'Cancel' },
    blocks: [
      { type: 'context', elements: [{ type: 'mrkdwn', text: `Clip: ${fitText(clipName, 200)}` }] },
      {
        type: 'input',
        block_id: INSTRUCTION_BLOCK_ID,
        label: { type: 'plain_text', text: 'What should change?' },
        hint: { type: 'plain_text', text: 'For example: make it snowy --anchors 4' },
        element: { type: 'plain_text_input', action_id: INSTRUCTION_ACTION_ID, multiline: false, max_length: 1000, placeholder: { type: 'plain_text', text: 'make it snowy' } },
      },
    ],
  };
}

/** Reads the modal's metadata back; undefined when it is not what {@link editModal} wrote. */
export function parseClipMetadata(value: unknown): ClipMetadata | undefined {
  if (typeof value !== 'string') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { channelId, threadTs, file } = parsed as Record<string, unknown>;
  if (typeof channelId !== 'string' || typeof threadTs !== 'string' || typeof file !== 'object' || file === null) return undefined;
  const { id, name, url, size } = file as Record<string, unknown>;
  if (typeof id !== 'string' || typeof name !== 'string' || typeof url !== 'string') return undefined;
  return { channelId, threadTs, file: { id, name, url, ...(typeof size === 'number' ? { size } : {}) } };
}
