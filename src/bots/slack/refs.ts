/**
 * What the Slack adapter stores with each job (`messageRefs.slack`), enough to follow it after a
 * restart, and the video files on Slack that edits start from.
 */
import { arrayOf, record, str } from './payload.js';
import type { ResponseUrlState } from './response-url.js';

export interface SlackRefs {
  channelId: string;
  teamId: string | null;
  userId: string;
  /** Edits: the thread the status and the result go into. */
  threadTs?: string;
  /** The job's public message, once posted. */
  statusTs?: string;
  responseUrl?: ResponseUrlState;
  /** Edits: the clip, so that Re-roll can fetch it again. */
  source?: ClipFile;
  /** The uploaded result (files.completeUploadExternal gives no message ts). */
  fileId?: string;
}

/** A video file on Slack. */
export interface ClipFile {
  id: string;
  name: string;
  url: string;
  size?: number;
}

const VIDEO_TYPES = new Set(['mp4', 'mov', 'webm', 'mkv', 'm4v', 'gif']);

const PICTURE_TYPES = new Set(['png', 'jpg', 'jpeg', 'webp']);

/** The first picture (PNG, JPEG, WebP by Slack's label; the content is sniffed on download) among a message's files. */
export function pictureFileOf(files: unknown): ClipFile | undefined {
  for (const entry of arrayOf(files)) {
    const file = record(entry);
    if (file === undefined) continue;
    const mimetype = str(file.mimetype) ?? '';
    const filetype = (str(file.filetype) ?? '').toLowerCase();
    if (!mimetype.startsWith('image/') && !PICTURE_TYPES.has(filetype)) continue;
    if (mimetype === 'image/gif' || filetype === 'gif') continue; // a GIF is a clip
    const url = str(file.url_private_download) ?? str(file.url_private);
    const id = str(file.id);
    if (url === undefined || id === undefined) continue;
    const size = typeof file.size === 'number' ? file.size : undefined;
    return { id, name: str(file.name) ?? `${id}.${filetype || 'png'}`, url, ...(size === undefined ? {} : { size }) };
  }
  return undefined;
}

/** The first video among a message's files, with its private download link. */
export function videoFileOf(files: unknown): ClipFile | undefined {
  for (const entry of arrayOf(files)) {
    const file = record(entry);
    if (file === undefined) continue;
    const mimetype = str(file.mimetype) ?? '';
    const filetype = (str(file.filetype) ?? '').toLowerCase();
    if (!mimetype.startsWith('video/') && !VIDEO_TYPES.has(filetype)) continue;
    const url = str(file.url_private_download) ?? str(file.url_private);
    const id = str(file.id);
    if (url === undefined || id === undefined) continue;
    const size = typeof file.size === 'number' ? file.size : undefined;
    return { id, name: str(file.name) ?? `${id}.${filetype || 'mp4'}`, url, ...(size === undefined ? {} : { size }) };
  }
  return undefined;
}

/** The Slack refs stored with a job, or undefined when they are missing or malformed. */
export function parseRefs(value: unknown): SlackRefs | undefined {
  const refs = record(value);
  if (refs === undefined) return undefined;
  const channelId = str(refs.channelId);
  const userId = str(refs.userId);
  if (channelId === undefined || userId === undefined) return undefined;
  const responseUrl = record(refs.responseUrl);
  const source = record(refs.source);
  const url = str(responseUrl?.url);
  return {
    channelId,
    userId,
    teamId: str(refs.teamId) ?? null,
    ...(str(refs.threadTs) === undefined ? {} : { threadTs: str(refs.threadTs)! }),
    ...(str(refs.statusTs) === undefined ? {} : { statusTs: str(refs.statusTs)! }),
    ...(str(refs.fileId) === undefined ? {} : { fileId: str(refs.fileId)! }),
    ...(url === undefined || typeof responseUrl?.issuedAt !== 'number' || typeof responseUrl.uses !== 'number'
      ? {}
      : { responseUrl: { url, issuedAt: responseUrl.issuedAt, uses: responseUrl.uses } }),
    ...(source === undefined ? {} : { source: videoFileOf([{ ...source, mimetype: 'video/mp4', url_private_download: source.url }]) }),
  } as SlackRefs;
}
