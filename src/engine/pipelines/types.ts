/** What every pipeline's `run()` takes besides its input: cancellation, progress and latent tracing. */
import type { JobProgress } from '../../jobs/types.js';
import type { LivePreview } from '../preview.js';

/**
 * One latent a pipeline reached, for step-by-step comparisons with the reference
 * (`--dump-latents`, the golden tests). `latent` is a copy of one frame's [4, h, w].
 */
export interface LatentRecord {
  /**
   * 'frame0': Text2Video-Zero's first phase (frame 0 alone), after step `step`;
   * 'image': the clip edit's image latent of the frame (VAE mode, unscaled);
   * 'initial': where the all-frames loop starts (Text2Video-Zero: at T1, after the warp and the
   * forward jump; edit: x_T × init_noise_sigma);
   * 'step': after step `step` of the all-frames loop.
   */
  stage: 'frame0' | 'image' | 'initial' | 'step';
  /** Index into the scheduler's timesteps (−1 for 'image' and 'initial'). */
  step: number;
  frame: number;
  latent: Float32Array;
}

export interface RunContext {
  /** Checked between steps: the pipeline stops within one UNet call. */
  signal?: AbortSignal;
  /** Called after every UNet call (stage 'denoising' / 'editing'), then once per later stage. */
  onProgress?(progress: JobProgress): void;
  /**
   * Live previews: when given, the denoising loop asks it after each UNet call whether one is due
   * and then attaches it to that call's progress event. Off when absent.
   */
  preview?: LivePreview;
  /** Called with every latent along the way (see {@link LatentRecord}); off when absent (no copies made). */
  onLatent?(record: LatentRecord): void;
}
