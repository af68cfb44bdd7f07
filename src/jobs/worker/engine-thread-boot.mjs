// Entry of the engine thread. On Node 20 a worker thread does not inherit the loader hooks that
// `--import tsx` registered in its process, so the thread registers tsx itself before it loads
// the TypeScript sources (and engine modules written in TypeScript, such as the test fakes).
import { register } from 'tsx/esm/api';

register();
await import('./engine-thread.ts');
