/**
 * Downloads a clip a user points the bot at (a Discord attachment, a Slack file) into a local file,
 * so an edit job can read it. Shared by both adapters; only the allowed hosts and the headers differ.
 *
 * What it refuses, each with a message for the user and nothing left on disk:
 * - a link that is not https on one of the platform's file hosts (or on the one extra origin an
 *   operator configured, such as a REST proxy, GovSlack, or the fakes in the tests), including
 *   any redirect that leaves those hosts;
 * - a declared size over the limit (checked before anything is fetched), and a body that grows
 *   over it while streaming (checked again, whatever Content-Length said);
 * - a 403 / 404 / other error status, and a response that is a web page (a login page) or any
 *   other file whose first bytes are not a video container we accept: it never reaches ffmpeg.
 */
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ErrorCode, UserError } from '../../errors.js';
import { sniffImage, type ImageType } from '../../media/image-input.js';
import { sniffContainer, type Container } from '../../media/input.js';

export interface DownloadClipOptions {
  url: string;
  /** Host names the clip may come from over https, such as `cdn.discordapp.com`. */
  allowedHosts: readonly string[];
  /** Origins (`http://127.0.0.1:8080`) also allowed, over their own protocol: a configured API base. */
  extraOrigins?: readonly string[];
  /** The size the platform declared, when it did; over `maxBytes` means no request is made. */
  declaredBytes?: number;
  maxBytes: number;
  /** Request headers (Slack's bot token). Sent only to the first URL's origin, never after a redirect elsewhere. */
  headers?: Record<string, string>;
  /** Existing or creatable folder for the file. */
  destDir: string;
  /** What the platform calls the file, used for the extension only. */
  fileName?: string;
  /** Whole download, default 60 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Says where the clip is from in messages: "Discord", "Slack". */
  platformName: string;
  /** What the file must be, by its first bytes: a video clip (default) or a picture to animate (PNG, JPEG, WebP). */
  expect?: 'video' | 'picture';
}

export interface DownloadedClip {
  file: string;
  bytes: number;
  /** The video container, or the picture type for `expect: 'picture'`. */
  container: Container | ImageType;
}

const MAX_REDIRECTS = 3;
const SNIFF_BYTES = 512;

/** Downloads the clip, or throws a UserError saying why not (the partial file is removed). */
export async function downloadClip(options: DownloadClipOptions): Promise<DownloadedClip> {
  const { platformName, maxBytes } = options;
  if (options.declaredBytes !== undefined && options.declaredBytes > maxBytes) {
    throw new UserError(ErrorCode.InputFileTooLarge, `That clip is ${formatMiB(options.declaredBytes)}; clips up to ${formatMiB(maxBytes)} can be edited.`, {
      context: { declaredBytes: options.declaredBytes, maxBytes },
    });
  }
  let url = checkedUrl(options.url, options);
  const firstOrigin = url.origin;
  const signal = AbortSignal.any([AbortSignal.timeout(options.timeoutMs ?? 60_000), ...(options.signal === undefined ? [] : [options.signal])]);
  let response: Response;
  for (let redirects = 0; ; redirects++) {
    try {
      response = await fetch(url, { redirect: 'manual', signal, headers: url.origin === firstOrigin ? (options.headers ?? {}) : {} });
    } catch (error) {
      throw downloadFailed(`${platformName} did not hand over the clip (${signal.aborted ? 'it took too long' : 'the connection failed'}). Please try again.`, error);
    }
    if (response.status < 300 || response.status >= 400) break;
    await response.body?.cancel();
    const location = response.headers.get('location');
    if (location === null || redirects >= MAX_REDIRECTS) throw downloadFailed(`${platformName} sent the clip's link elsewhere too many times.`);
    url = checkedUrl(new URL(location, url).href, options);
  }
  if (!response.ok) {
    await response.body?.cancel();
    const why =
      response.status === 401 || response.status === 403
        ? `${platformName} refused to share the clip with the bot (${response.status}); it may be private or the link expired. Upload it again or check the bot can see the file.`
        : response.status === 404
          ? `${platformName} no longer has that clip (404). Please upload it again.`
          : `${platformName} did not hand over the clip (HTTP ${response.status}). Please try again.`;
    throw downloadFailed(why);
  }
  const type = (response.headers.get('content-type') ?? '').toLowerCase();
  if (type.startsWith('text/html')) {
    await response.body?.cancel();
    throw downloadFailed(`${platformName} answered with a web page (a sign-in page?) instead of the clip; the bot may lack access to the file.`);
  }
  const length = Number(response.headers.get('content-length') ?? NaN);
  if (Number.isFinite(length) && length > maxBytes) {
    await response.body?.cancel();
    throw new UserError(ErrorCode.InputFileTooLarge, `That clip is ${formatMiB(length)}; clips up to ${formatMiB(maxBytes)} can be edited.`, { context: { bytes: length, maxBytes } });
  }
  if (response.body === null) throw new UserError(ErrorCode.InputEmpty, 'The clip is empty (0 bytes). Please upload it again.');

  await mkdir(options.destDir, { recursive: true });
  const file = path.join(options.destDir, `clip-${randomUUID()}${safeExtension(options.fileName)}`);
  const refuseUnexpected = (start: Uint8Array): Container | ImageType => (options.expect === 'picture' ? refuseNonPicture(start) : refuseNonVideo(start));
  let bytes = 0;
  const head: Buffer[] = [];
  let headBytes = 0;
  try {
    const body = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>);
    await pipeline(
      body,
      async function* limit(source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          bytes += chunk.length;
          if (bytes > maxBytes) throw new UserError(ErrorCode.InputFileTooLarge, `That clip is over ${formatMiB(maxBytes)}, the most that can be edited.`, { context: { maxBytes } });
          if (headBytes < SNIFF_BYTES) {
            head.push(chunk);
            headBytes += chunk.length;
            // Refuse a web page or other non-video as soon as its first bytes are in.
            if (headBytes >= SNIFF_BYTES) refuseUnexpected(Buffer.concat(head).subarray(0, SNIFF_BYTES));
          }
          yield chunk;
        }
      },
      createWriteStream(file, { flags: 'wx' }),
      { signal },
    );
    const start = Buffer.concat(head).subarray(0, SNIFF_BYTES);
    const sniffed = refuseUnexpected(start);
    return { file, bytes, container: sniffed };
  } catch (error) {
    await rm(file, { force: true });
    if (error instanceof UserError) throw error;
    throw downloadFailed(`${platformName} stopped sending the clip part way (${signal.aborted ? 'it took too long' : 'the connection dropped'}). Please try again.`, error);
  }
}

/** Whether a URL would be accepted as a clip source (https on an allowed host, or an extra origin). */
export function isAllowedClipUrl(value: string, options: Pick<DownloadClipOptions, 'allowedHosts' | 'extraOrigins'>): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  if (url.username !== '' || url.password !== '') return false;
  if (url.protocol === 'https:' && options.allowedHosts.includes(url.hostname.toLowerCase()) && (url.port === '' || url.port === '443')) return true;
  return (options.extraOrigins ?? []).some((origin) => originOf(origin) === url.origin);
}

function checkedUrl(value: string, options: DownloadClipOptions): URL {
  if (!isAllowedClipUrl(value, options)) {
    throw new UserError(ErrorCode.InputHostNotAllowed, `That clip is not a ${options.platformName} file, so the bot will not fetch it. Upload the video to ${options.platformName} itself.`);
  }
  return new URL(value);
}

function originOf(value: string): string | undefined {
  try {
    return new URL(value).origin;
  } catch {
    return undefined;
  }
}

function refuseNonPicture(head: Uint8Array): ImageType {
  const sniffed = sniffImage(head);
  if (!sniffed.ok) throw new UserError(ErrorCode.InputNotImage, sniffed.message);
  return sniffed.type;
}

function refuseNonVideo(head: Uint8Array): Container {
  const sniffed = sniffContainer(head);
  if (!sniffed.ok) throw new UserError(sniffed.code, sniffed.message);
  return sniffed.container;
}

function downloadFailed(message: string, cause?: unknown): UserError {
  return new UserError(ErrorCode.InputDownloadFailed, message, cause === undefined ? {} : { cause });
}

/** `.mp4` from `my clip.MP4`; nothing odd reaches the file name. */
function safeExtension(fileName: string | undefined): string {
  const ext = path.extname(fileName ?? '').toLowerCase();
  return /^\.[a-z0-9]{1,5}$/.test(ext) ? ext : '.bin';
}

function formatMiB(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
