import type { Lease } from '../../comfy/pool';
import { onPromptChosen, onPromptFound } from '../../job/state';
import { handleAbort } from './abort';
import type { JobRun } from './job-run';
import { submit } from './submit';

/**
 * Placement (DESIGN "Placement across ComfyUI instances"): a slot on the healthy instance
 * with the fewest prompts of the whole system. When every healthy instance is full (or
 * none is healthy) the job waits here, holding its BullMQ lock: no attempt is used, no
 * re-take happens, and the wait writes one log line. It wakes when any worker frees a
 * slot (Redis pub/sub) or every POLL_INTERVAL_MS (a dead worker's lease expired, an
 * instance became healthy). A shutdown hands the job back, a cancel fails it.
 */
export async function takeSlot(run: JobRun): Promise<Lease> {
  const { pool } = run.deps;
  let lease = await pool.acquire(run.jobId);
  if (lease) return lease;
  const since = run.now();
  await run.job.log(
    `no free ComfyUI slot (WORKER_CONCURRENCY per healthy instance): waiting for one`,
  );
  while (!lease) {
    if (run.signal.aborted) return handleAbort(run);
    await pool.waitForSlot(run.settings.pollIntervalMs, run.signal);
    if (run.signal.aborted) return handleAbort(run);
    lease = await pool.acquire(run.jobId);
  }
  run.log.info({ waitedMs: run.now() - since, comfyuiUrl: lease.url }, 'got a ComfyUI slot');
  return lease;
}

/**
 * The instance that already knows this prompt id (pending, running or in history), or
 * undefined: `chosen` first (its error is thrown: its POST would fail the same way), then
 * the other healthy instances (their errors are logged: they are only searched). The
 * look-ups run side by side (read-only; a fresh pickup waits for the slowest, not the sum).
 * Each decides a submission, so it goes over a connection of its own (ComfyClient.lookup
 * `freshConnection`).
 */
export async function findPrompt(
  run: JobRun,
  promptId: string,
  chosen?: string,
): Promise<string | undefined> {
  const { pool } = run.deps;
  const others = pool.healthyUrls().filter((url) => url !== chosen);
  const urls = chosen ? [chosen, ...others] : others;
  const found = await Promise.allSettled(
    urls.map((url) => pool.client(url).lookup(promptId, { freshConnection: true })),
  );
  for (const [i, r] of found.entries()) {
    if (r.status === 'fulfilled') {
      if (r.value.state !== 'absent') return urls[i];
    } else if (urls[i] === chosen) throw r.reason;
    else {
      const err: unknown = r.reason;
      run.log.warn({ err, comfyuiUrl: urls[i] }, 'could not look for the prompt on this instance');
    }
  }
  return undefined;
}

/**
 * The job's recorded instance is no longer in COMFYUI_URL (it was replaced): its prompt is
 * lost with it. A configured instance that knows the prompt (the same ComfyUI under a new
 * address) is followed; else the prompt is submitted again at once on a free slot, counted
 * in `resubmissions`. Resolves true when it was submitted.
 */
export async function moveFromReplaced(run: JobRun): Promise<boolean> {
  const old = run.state.comfyuiUrl;
  const foundAt = await findPrompt(run, run.promptId);
  if (foundAt) {
    run.lease = await run.deps.pool.lease(run.jobId, foundAt);
    await run.save(
      onPromptFound(run.state, foundAt),
      `instance ${old} is no longer in COMFYUI_URL; prompt ${run.promptId} found at ${foundAt}: following it`,
    );
    return false;
  }
  run.lease = await takeSlot(run);
  const url = run.lease.url;
  run.log.warn({ from: old, comfyuiUrl: url }, 'instance replaced: resubmitting the prompt');
  await run.save(
    onPromptChosen(run.state, run.promptId, url, run.now(), true, run.deps.clientId),
    `instance ${old} is no longer in COMFYUI_URL: prompt ${run.promptId} resubmitted on ${url}`,
  );
  run.deps.analytics.capture('comfyui_job_resubmitted', run.distinctId, {
    jobId: run.jobId,
    promptId: run.promptId,
  });
  await submit(run);
  return true;
}
