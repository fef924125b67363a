import { DelayedError } from 'bullmq';
import {
  classifyPickup,
  onPickup,
  onPromptChosen,
  onPromptFound,
  type PickupKind,
} from '../../job-state';
import { promptIdFor } from '../../queue';
import { fail } from './finish';
import type { JobRun } from './job-run';
import { submit } from './submit';

/**
 * Step 1, pickup: fresh, resume, or too late to resume. The pickup's write also tells
 * whether a cancel was requested while the job waited. Resolves true when this pickup
 * submitted the prompt (rather than resuming or finding it).
 */
export async function pickUp(run: JobRun): Promise<boolean> {
  const { settings } = run;
  const { pickedAt } = run;
  const stalls = run.job.stalledCounter ?? 0;
  const kind = classifyPickup(run.state, stalls, pickedAt, settings.recoveryCutoffMs);
  if (stalls > settings.maxStalledCount) {
    run.state = onPickup(run.state, stalls, pickedAt, false);
    await run.removePrompt();
    return fail(run, {
      code: 'stalled',
      message: `the worker following this job died ${stalls} times, more than MAX_STALLED_COUNT (${settings.maxStalledCount})${run.state.promptId ? '; its prompt was removed from ComfyUI' : ''}`,
    });
  }
  if (kind.kind === 'cutoff') {
    run.state = onPickup(run.state, stalls, pickedAt, false);
    await run.removePrompt();
    return fail(run, {
      code: 'recovery_cutoff',
      message: `the worker following this job died and the job was recovered ${Math.round(kind.ageMs / 1000)} s after it started, later than the ${Math.round(settings.recoveryCutoffMs / 1000)} s recovery cutoff (RECOVERY_CUTOFF_MS); its prompt was removed from ComfyUI`,
    });
  }
  if (kind.kind === 'fresh') return pickUpFresh(run, stalls, pickedAt);
  await resume(run, kind, stalls, pickedAt);
  return false;
}

/** A job without a prompt: choose and store its prompt id, find it or submit it. */
async function pickUpFresh(run: JobRun, stalls: number, pickedAt: number): Promise<boolean> {
  const { job, jobId, data } = run;
  run.lease = run.deps.pool.acquire();
  if (!run.lease) {
    // every instance is down or full: try again later without using up an attempt
    await job.log('no healthy ComfyUI instance with a free slot: waiting');
    await job.moveToDelayed(run.now() + run.settings.healthIntervalMs, run.token);
    throw new DelayedError();
  }
  const url = run.lease.url;
  const promptId = promptIdFor(job.queueQualifiedName, jobId, job.timestamp, run.state.generation);
  if (run.state.attempts === 0) {
    run.deps.analytics.capture('comfyui_job_started', run.distinctId, {
      jobId,
      jobType: data.request.jobType,
      waitMs: Math.max(0, pickedAt - job.timestamp),
    });
  }
  // rule 1: the prompt id is decided and stored before any network call that could
  // create a prompt. Redis can lose its last acknowledged writes (an OS crash under
  // appendfsync everysec), an earlier `submitting` write of this job among them, after
  // its POST reached ComfyUI. The id is the job's own, so such a prompt is found by
  // the look-up (read-only, so it runs beside the write) and followed, not run twice.
  const picked = onPickup(run.state, stalls, pickedAt, false);
  const [stored, found] = await Promise.allSettled([
    run.save(
      onPromptChosen(picked, promptId, url, run.now(), false),
      run.state.attempts > 0 ? `attempt ${run.state.attempts + 1}: prompt ${promptId}` : undefined,
    ),
    findPrompt(run, promptId, url),
  ]);
  if (stored.status === 'rejected') throw stored.reason;
  if (stored.value) {
    run.state = picked; // the chosen prompt id was never sent: the job ends without one
    return fail(run, { code: 'cancelled', message: 'cancelled by request before it ran' });
  }
  run.fault('after-prompt-stored');
  if (found.status === 'rejected') throw found.reason;
  const foundAt = found.value;
  if (!foundAt) {
    run.log.info({ promptId, comfyuiUrl: url }, 'submitting prompt');
    await submit(run);
    return true;
  }
  if (foundAt !== url) {
    run.lease.release();
    run.lease = run.deps.pool.lease(foundAt);
  }
  run.accepted = true;
  run.log.warn({ promptId, comfyuiUrl: foundAt }, 'prompt found in ComfyUI: following it');
  await run.save(
    onPromptFound(run.state, foundAt),
    `prompt ${promptId} found in ComfyUI at ${foundAt} although the job had no prompt (a write lost by Redis): following it`,
  );
  return false;
}

/**
 * The instance that already knows this prompt id (pending, running or in history), or
 * undefined: the chosen instance first, then the other healthy ones. An error on the
 * chosen one is thrown (its POST would fail the same way; the job is retried); on the
 * others it is logged, as they are only searched for a lost write's prompt.
 */
async function findPrompt(run: JobRun, promptId: string, chosen: string) {
  const { pool } = run.deps;
  const others = pool.healthyUrls().filter((url) => url !== chosen);
  for (const url of [chosen, ...others]) {
    try {
      if ((await pool.client(url).lookup(promptId)).state !== 'absent') return url;
    } catch (err) {
      if (url === chosen) throw err;
      run.log.warn({ err, comfyuiUrl: url }, 'could not look for the prompt on this instance');
    }
  }
  return undefined;
}

/** A job with a prompt: follow it where it is (after a crash, a hand-off or a retry). */
async function resume(
  run: JobRun,
  kind: Extract<PickupKind, { kind: 'resume' }>,
  stalls: number,
  pickedAt: number,
): Promise<void> {
  const { state } = run;
  run.lease = run.deps.pool.lease(state.comfyuiUrl!);
  const recovered = kind.reason !== 'retry';
  const lastAlive = state.handedOffAt ?? state.updatedAt ?? state.startedAt ?? pickedAt;
  const cancelled = await run.save(
    onPickup(state, stalls, pickedAt, recovered),
    `attempt ${state.attempts + 1}: resuming prompt ${state.promptId} on ${state.comfyuiUrl} (${kind.reason})`,
  );
  if (cancelled) {
    await run.removePrompt();
    return fail(run, { code: 'cancelled', message: 'cancelled by request' });
  }
  if (!recovered) return;
  const props = {
    promptId: run.promptId,
    jobAge: Math.round((pickedAt - (run.state.startedAt ?? pickedAt)) / 1000),
    recoveryTime: Math.max(0, pickedAt - lastAlive),
    jobId: run.jobId,
    reason: kind.reason === 'handoff' ? ('handoff' as const) : ('stall' as const),
  };
  run.log.info(props, `recovered job after ${kind.reason}`);
  run.deps.analytics.capture('comfyui_job_recovered', run.distinctId, props);
}
