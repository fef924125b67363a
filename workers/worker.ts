/**
 * The worker process's entry at the path the contract names (`workers/worker.ts`, built
 * to `dist/workers/worker.js`): the process itself lives with the other entry points, in
 * `src/bin/worker.ts`.
 */
import '../src/bin/worker';
