/** What every pipeline's `run()` takes besides its input: cancellation and progress. */
import type { JobProgress } from '../../jobs/types.js';

export interface RunContext {
  /** Checked between steps: the pipeline stops within one UNet call. */
  signal?: AbortSignal;
  /** Called after every UNet call (stage 'denoising' / 'editing'), then once per later stage. */
  onProgress?(progress: JobProgress): void;
}
