/**
 * How many frames an edit job's clip has, for its cost estimate: read from the clip's header with
 * ffprobe at submit (after the frame-rate cap, as the engine will decode it). Anything unreadable
 * gives `undefined`: the estimate then assumes a typical clip, and the engine refuses a bad clip
 * with its own message when the job runs.
 */
import path from 'node:path';
import { resolveFfmpegPaths } from '../media/ffmpeg-paths.js';
import { probeClip, type InputLimits } from '../media/input.js';

/** ffprobe on a header takes well under a second; a submit never waits longer than this for it. */
const PROBE_TIMEOUT_MS = 5_000;

/** The frames the engine will edit from `file`, or undefined when the header does not say. */
export async function clipFramesOf(file: string, config: { ffmpegPath: string; ffprobePath: string; input: InputLimits }): Promise<number | undefined> {
  try {
    const { ffprobe } = resolveFfmpegPaths(config);
    const probe = await probeClip(file, { ffprobePath: ffprobe, limits: config.input, tempDir: path.dirname(file), probeTimeoutMs: PROBE_TIMEOUT_MS });
    return probe.estimatedFrames !== undefined && probe.estimatedFrames > 0 ? probe.estimatedFrames : undefined;
  } catch {
    return undefined;
  }
}
