/**
 * An engine whose work is one real ONNX Runtime call that blocks its thread for seconds, loaded by
 * real worker processes through `engineModule`. `prepare` builds and loads the graph (a chain of
 * `matmuls` 1024×1024 MatMuls, default 200: about 430 GFLOP, seconds on one core); `run` calls it
 * once and reports how long the engine thread's own timers could not run meanwhile.
 */
import { GraphBuilder } from '../../src/engine/models/graph-builder.js';
import { createSession, Tensor, type InferenceSession } from '../../src/engine/onnx/index.js';
import type { CreateEngine } from '../../src/jobs/engine.js';

const N = 1024;

function matmulChain(count: number): Uint8Array {
  const g = new GraphBuilder(1);
  let h = g.input('x', 'float32', [N, N]);
  const weight = g.param('w', [N, N], new Float32Array(N * N).fill(1 / N));
  for (let i = 0; i < count; i++) h = g.op('MatMul', [h, weight], `/chain.${i}`);
  g.output(h, 'float32', [N, N]);
  return g.encode('matmul_chain', 'a long blocking ONNX Runtime call for the worker liveness tests');
}

export const createEngine: CreateEngine = ({ device }) => {
  let session: InferenceSession | undefined;
  return {
    async prepare(job) {
      if (session) return;
      const matmuls = Number(job.params.matmuls ?? 200);
      ({ session } = await createSession(matmulChain(matmuls), { device: 'cpu', intraOpThreads: 1, interOpThreads: 1, fallbackToCpu: true }));
    },
    async run(job, { onProgress }) {
      // A timer on the engine thread: while ONNX Runtime runs, it cannot fire.
      let last = performance.now();
      let longestPauseMs = 0;
      const tick = () => {
        const now = performance.now();
        longestPauseMs = Math.max(longestPauseMs, now - last);
        last = now;
      };
      const timer = setInterval(tick, 20);
      const started = performance.now();
      const output = await session!.run({ x: new Tensor('float32', new Float32Array(N * N).fill(1), [N, N]) });
      const callMs = performance.now() - started;
      tick();
      clearInterval(timer);
      onProgress({ step: 1, total: 1, stage: 'denoising' });
      const first = Object.values(output)[0]!.data as Float32Array;
      return { device, callMs, longestPauseMs, value: first[0], pid: process.pid };
    },
  };
};
