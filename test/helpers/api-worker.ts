import { logAnalyticsSink } from '../../src/analytics';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/logger';
import { startImageWorker, type ImageWorker } from '../../src/worker/worker';
import type { ApiHarness } from './api-harness';

/** Worker settings that keep end-to-end tests fast (polling, grace, locks). */
export const FAST_WORKER_ENV = {
  POLL_INTERVAL_MS: '100',
  SUBMIT_GRACE_MS: '500',
  LOCK_DURATION_MS: '5000',
  STALLED_INTERVAL_MS: '2000',
  RETRY_BACKOFF_MS: '200',
  COMFYUI_TIMEOUT_MS: '2000',
  DRAIN_DELAY_S: '1',
  METRICS_PORT: '0',
  LOG_LEVEL: 'warn',
};

/** An in-process worker on the harness's Redis and queue, following the given ComfyUI. */
export async function startTestWorker(h: ApiHarness, comfyuiUrl: string): Promise<ImageWorker> {
  const config = loadConfig({ ...h.env, ...FAST_WORKER_ENV, COMFYUI_URL: comfyuiUrl });
  const log = createLogger({ logLevel: config.logLevel, name: 'test-worker' });
  return startImageWorker(config, { log, analytics: logAnalyticsSink(log) });
}
