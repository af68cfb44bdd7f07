/**
 * Where the ffmpeg and ffprobe binaries are, checked once at start-up so a bad setting fails
 * loudly with the name of the setting instead of as a spawn error in the middle of a job.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { FfmpegCommand } from 'fluent-ffmpeg';

/** The two binaries, as absolute paths that exist and are executable. */
export interface FfmpegPaths {
  ffmpeg: string;
  ffprobe: string;
}

interface Binary {
  name: 'ffmpeg' | 'ffprobe';
  setting: 'FFMPEG_PATH' | 'FFPROBE_PATH';
  installer: '@ffmpeg-installer/ffmpeg' | '@ffprobe-installer/ffprobe';
}

const FFMPEG: Binary = { name: 'ffmpeg', setting: 'FFMPEG_PATH', installer: '@ffmpeg-installer/ffmpeg' };
const FFPROBE: Binary = { name: 'ffprobe', setting: 'FFPROBE_PATH', installer: '@ffprobe-installer/ffprobe' };

/**
 * Resolves the configured binaries: an empty setting means the one bundled by the installer
 * package. Throws an Error that names the setting (FFMPEG_PATH / FFPROBE_PATH) when a binary is
 * missing, is not a file, or is not executable.
 *
 * @example
 * const { ffmpeg, ffprobe } = resolveFfmpegPaths({ ffmpegPath: config.ffmpegPath, ffprobePath: config.ffprobePath });
 */
export function resolveFfmpegPaths(config: { ffmpegPath: string; ffprobePath: string }): FfmpegPaths {
  return {
    ffmpeg: resolveBinary(FFMPEG, config.ffmpegPath),
    ffprobe: resolveBinary(FFPROBE, config.ffprobePath),
  };
}

/**
 * Makes one fluent-ffmpeg command use these binaries.
 *
 * fluent-ffmpeg 2.1.3's `setFfmpegPath`/`setFfprobePath` look per command but write one cache
 * shared by every command in the process (lib/capabilities.js), and the path is read from it
 * only when the process is spawned, after some asynchronous checks. Two commands started at
 * the same time with different binaries could therefore run each other's binary. So we call the
 * setter (for the library's own lookups) and also pin the lookup on this command object.
 */
export function useBinaries(command: FfmpegCommand, binaries: { ffmpeg?: string; ffprobe?: string }): FfmpegCommand {
  // The private lookups that fluent-ffmpeg calls right before spawning (processor.js, ffprobe.js).
  const internals = command as unknown as Record<'_getFfmpegPath' | '_getFfprobePath', PathLookup>;
  const { ffmpeg, ffprobe } = binaries;
  if (ffmpeg !== undefined) {
    command.setFfmpegPath(ffmpeg);
    internals._getFfmpegPath = (callback) => callback(null, ffmpeg);
  }
  if (ffprobe !== undefined) {
    command.setFfprobePath(ffprobe);
    internals._getFfprobePath = (callback) => callback(null, ffprobe);
  }
  return command;
}

type PathLookup = (callback: (error: Error | null, path: string) => void) => void;

function resolveBinary(binary: Binary, setting: string): string {
  const configured = setting.trim();
  const bundled = configured === '';
  const file = bundled ? bundledPath(binary) : path.resolve(configured);
  const subject = bundled
    ? `The bundled ${binary.name} at ${file} (from ${binary.installer}, used because ${binary.setting} is empty)`
    : `${binary.setting} points to ${file}, which`;
  const fix = bundled
    ? `Reinstall ${binary.installer}, or set ${binary.setting} to the full path of an ${binary.name} binary.`
    : `Set ${binary.setting} to the full path of an ${binary.name} binary (for example the output of \`command -v ${binary.name}\`), or leave it empty to use the bundled one.`;

  let stats: fs.Stats;
  try {
    stats = fs.statSync(file);
  } catch (error) {
    throw new Error(`${subject} ${bundled ? 'is missing' : 'does not exist'} (${errorCode(error)}). ${fix}`, { cause: error });
  }
  if (!stats.isFile()) {
    throw new Error(`${subject} is not a file. ${fix}`);
  }
  try {
    fs.accessSync(file, fs.constants.X_OK);
  } catch (error) {
    // Seen with the bundled ffprobe: some installs leave it without the executable bit for
    // everyone (this one ships as 0744, so only its owner, root, can run it).
    throw new Error(
      `${subject} is not executable by this user (mode ${(stats.mode & 0o777).toString(8)}, ${errorCode(error)}). ` +
        `Run \`chmod +x ${file}\`, or set ${binary.setting} to an executable ${binary.name}.`,
      { cause: error },
    );
  }
  return file;
}

function bundledPath(binary: Binary): string {
  // The installer packages are CommonJS and find their binary when required.
  const require = createRequire(import.meta.url);
  let loaded: unknown;
  try {
    loaded = require(binary.installer);
  } catch (error) {
    // @ffmpeg-installer/ffmpeg throws a plain string, not an Error.
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `${binary.setting} is empty, so the bundled ${binary.name} from ${binary.installer} was wanted, but it could not be loaded: ${reason}. ` +
        `Set ${binary.setting} to the full path of an ${binary.name} binary.`,
      { cause: error },
    );
  }
  const found = (loaded as { path?: unknown } | null)?.path;
  if (typeof found !== 'string' || found === '') {
    throw new Error(`${binary.installer} gave no binary path. Set ${binary.setting} to the full path of an ${binary.name} binary.`);
  }
  return found;
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : String(error);
}
