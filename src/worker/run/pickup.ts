import {
  classifyPickup,
  onPickup,
  onPromptChosen,
  onPromptFound,
  type PickupKind,
} from '../../job/state';
import { promptIdFor } from '../../queue';
import { fail } from './finish';
import type { JobRun } from './job-run';
import { resolveMove } from './move';
import { findPrompt, moveFromReplaced, takeSlot } from './placement';
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
  return resume(run, kind, stalls, pickedAt);
}

/** A job without a prompt: choose and store its prompt id, find it or submit it. */
async function pickUpFresh(run: JobRun, stalls: number, pickedAt: number): Promise<boolean> {
  const { job, jobId, data } = run;
  run.lease = await takeSlot(run);
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
      onPromptChosen(picked, promptId, url, run.now(), false, run.deps.clientId),
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
    run.lease = await run.deps.pool.lease(jobId, foundAt);
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
 * A job with a prompt: follow it where it is (after a crash, a hand-off or a retry), or,
 * when its instance was replaced, where it is found or submitted again. Resolves true when
 * this pickup submitted the prompt.
 */
async function resume(
  run: JobRun,
  kind: Extract<PickupKind, { kind: 'resume' }>,
  stalls: number,
  pickedAt: number,
): Promise<boolean> {
  const { state } = run;
  const configured = run.deps.pool.configured(state.comfyuiUrl!);
  if (configured) run.lease = await run.deps.pool.lease(run.jobId, state.comfyuiUrl!);
  const recovered = kind.reason !== 'retry';
  const lastAlive = state.handedOffAt ?? state.updatedAt ?? state.startedAt ?? pickedAt;
  const cancelled = await run.save(
    onPickup(state, stalls, pickedAt, recovered),
    `attempt ${state.attempts + 1}: resuming prompt ${state.promptId} on ${state.comfyuiUrl} (${kind.reason})`,
  );
  if (cancelled) {
    if (configured || state.movedFrom) await run.removePrompt();
    return fail(run, { code: 'cancelled', message: 'cancelled by request' });
  }
  if (recovered) reportRecovery(run, kind, pickedAt, lastAlive);
  // a move under way when the last holder stopped: the prompt may still be where it was
  const moved = await resolveMove(run);
  return configured || moved === 'found' ? false : moveFromReplaced(run);
}

function reportRecovery(
  run: JobRun,
  kind: Extract<PickupKind, { kind: 'resume' }>,
  pickedAt: number,
  lastAlive: number,
): void {
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
