/** What worker processes get from the config: the engine's settings and an environment without the bots' secrets. */
import { SECRET_ENV_VARS, type Config } from '../../config.js';
import type { Logger } from '../../log.js';
import type { EngineSettings } from '../engine.js';
import type { WorkerPoolOptions } from './local-pool.js';

/** The part of the config that engines get. */
export function engineSettings(config: Config): EngineSettings {
  return {
    modelDir: config.modelDir,
    editModelDir: config.editModelDir,
    onnx: { ...config.onnx },
    ffmpegPath: config.ffmpegPath,
    ffprobePath: config.ffprobePath,
    input: { ...config.input },
    editSteps: config.editSteps,
    previews: { ...config.previews },
    workerCount: config.devices.length,
  };
}

/** The environment for worker processes: this one's, without the bot platforms' secrets. */
export function workerEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const copy = { ...env };
  for (const name of SECRET_ENV_VARS) delete copy[name];
  return copy;
}

/** The local worker pool's options from the config (serve's pool and a worker host's are the same). */
export function workerPoolOptions(config: Config, logger: Logger, env: NodeJS.ProcessEnv = workerEnvironment(process.env)): WorkerPoolOptions {
  return {
    devices: config.devices,
    engineModule: config.engineModule,
    engineSettings: engineSettings(config),
    heartbeatIntervalMs: config.jobs.heartbeatIntervalMs,
    heartbeatTimeoutMs: config.jobs.heartbeatTimeoutMs,
    stallTimeoutMs: config.jobs.stallTimeoutSeconds * 1000,
    modelLoadTimeoutMs: config.jobs.modelLoadTimeoutSeconds * 1000,
    logLevel: config.logLevel,
    logger: logger.child({ module: 'pool' }),
    env,
  };
}
