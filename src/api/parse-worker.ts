import { parseJobBody } from './parse-job';

/** The worker-thread entry of the body parser pool (parse-pool.ts): one parse per task. */
export default function parse(bytes: Uint8Array) {
  return parseJobBody(bytes);
}
