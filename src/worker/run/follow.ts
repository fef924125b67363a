import type { Lookup } from '../../comfy/client';
import { classifyHistory } from '../../comfy/protocol';
import type { WakeReason } from '../../comfy/socket';
import { onPromptChosen, onRunning, onSubmitted } from '../../job/state';
import { fenceBounds } from '../fence';
import { handleAbort } from './abort';
import { movePending } from './move';
import { fail, finish } from './finish';
import type { JobRun } from './job-run';
import { submit } from './submit';
import type { JobResult } from '../../job/data';

/**
 * Step 4, follow: until ComfyUI reports an outcome. Right after this process submitted
 * the prompt, with a healthy socket, the first look-up waits up to POLL_INTERVAL_MS for
 * the socket: a prompt that starts or ends at once is seen without polling; one still
 * pending then is looked up (and saved `submitted` with its queue position).
 */
export async function follow(run: JobRun, afterSubmit: boolean): Promise<JobResult> {
  const { settings } = run;
  // a prompt another process submitted is heard from mid-run: its graph tells which nodes
  // ran before this socket opened (read once per hand-off, only then)
  const ws = run.socket();
  ws?.track(run.promptId, run.nodeCount, run.adoptedSocket ? await run.inputLinks() : undefined);
  const deadline = (run.state.startedAt ?? run.now()) + settings.jobTimeoutMs;
  const absent = { since: undefined as number | undefined };
  let woke: WakeReason | undefined =
    afterSubmit && run.socket()?.healthy
      ? await waitForNextCheck(run, settings.pollIntervalMs)
      : undefined;
  for (;;) {
    if (run.signal.aborted) return handleAbort(run);
    if (run.now() > deadline) {
      await run.removePrompt();
      return fail(run, {
        code: 'timeout',
        message: `the job ran longer than JOB_TIMEOUT_MS (${settings.jobTimeoutMs} ms); its prompt was interrupted`,
      });
    }
    // the socket said the prompt finished (its history is written): read it directly
    const entry = woke === 'finished' ? await run.client().history(run.promptId) : null;
    const r: Lookup = entry
      ? { state: 'done', outcome: classifyHistory(entry) }
      : await run.client().lookup(run.promptId);
    if (run.signal.aborted) return handleAbort(run);
    run.fault('following');
    if (r.state === 'done') return finish(run, r.outcome);
    if (r.state === 'absent') {
      if (await resubmitIfLost(run, absent)) continue;
    } else {
      absent.since = undefined;
      if (r.state === 'pending') {
        const p = { percent: 0, queuePosition: r.position };
        if (run.state.status === 'submitting') await run.save(onSubmitted(run.state), undefined, p);
        else await run.progress(p, true);
        // another instance idles while this prompt waits: it moves there (move.ts)
        const moved = await movePending(run);
        if (moved !== 'none') {
          woke =
            moved === 'moved' ? await waitForNextCheck(run, settings.pollIntervalMs) : undefined;
          continue;
        }
      } else await running(run);
    }
    woke = await waitForNextCheck(run, undefined, r.state === 'pending');
  }
}

/**
 * ComfyUI does not know the prompt: the POST may still be in its validation, or the prompt
 * was lost (a restart). After SUBMIT_GRACE_MS, and a last look-up on a new connection, it is
 * submitted (again) under the same id.
 * Unconfirmed (`submitting`, not posted by this run): a previous holder's fenced POST was
 * written before this pickup and may still land, so the wait is the take-over grace from
 * the pickup, on this process's clock (fence.ts). Resolves true when it was submitted.
 */
async function resubmitIfLost(run: JobRun, absent: { since?: number }): Promise<boolean> {
  const { state } = run;
  const unconfirmed = state.status === 'submitting' && !run.accepted;
  const since = unconfirmed ? run.pickedAt : (absent.since ??= run.now());
  const grace = unconfirmed
    ? fenceBounds(run.settings).takeoverGraceMs
    : run.settings.submitGraceMs;
  if (run.now() - since < grace) return false;
  // the deciding look-up, on a connection of its own: ComfyUI reads it only after any POST
  // of this prompt that reached it on a connection accepted before (ComfyClient.lookup);
  // found, the prompt is followed from the next look-up on
  if ((await run.client().lookup(run.promptId, { freshConnection: true })).state !== 'absent')
    return false;
  const lost = !unconfirmed;
  run.log.warn(
    { promptId: state.promptId },
    lost
      ? 'ComfyUI lost the prompt: submitting it again'
      : 'the prompt never reached ComfyUI: submitting it',
  );
  await run.save(
    onPromptChosen(state, run.promptId, state.comfyuiUrl!, run.now(), lost, run.deps.clientId),
    lost
      ? `prompt ${state.promptId} unknown to ComfyUI (restart?): resubmitting with the same id`
      : undefined,
  );
  if (lost)
    run.deps.analytics.capture('comfyui_job_resubmitted', run.distinctId, {
      jobId: run.jobId,
      promptId: run.promptId,
    });
  await submit(run);
  absent.since = undefined;
  return true;
}

/** ComfyUI runs the prompt: the transition and its progress in one write, or the progress. */
async function running(run: JobRun): Promise<void> {
  const p = { percent: 0, ...run.socket()?.progress(run.promptId) };
  if (run.state.status !== 'running') await run.save(onRunning(run.state), undefined, p);
  else await run.progress(p);
}

/**
 * Sleeps until the next poll; with a healthy socket, polls less and wakes on its events.
 * Progress events (and the prompt's start) are handled here without polling. A pending
 * prompt (`pending`) also wakes when a slot is freed anywhere: an instance may be idle now.
 */
async function waitForNextCheck(
  run: JobRun,
  maxMs?: number,
  pending = false,
): Promise<WakeReason | undefined> {
  const moves = pending && run.settings.movePending !== false;
  if (!moves || run.deps.pool.healthyUrls().length < 2) return waitFor(run, run.signal, maxMs);
  const woken = new AbortController();
  const signal = AbortSignal.any([run.signal, woken.signal]);
  try {
    return await Promise.race([
      waitFor(run, signal, maxMs),
      run.deps.pool
        .waitForSlot(maxMs ?? run.settings.pollIntervalMs * 5, signal)
        .then(() => undefined),
    ]);
  } finally {
    woken.abort();
  }
}

async function waitFor(
  run: JobRun,
  signal: AbortSignal,
  maxMs?: number,
): Promise<WakeReason | undefined> {
  const { pollIntervalMs } = run.settings;
  const ws = run.socket();
  if (!ws) return sleep(pollIntervalMs, signal).then(() => undefined);
  // a socket opened under another process's client id may hear nothing (on 0.3.64, if that
  // process's socket closes late, it unregisters ours): poll at the normal interval then
  const interval =
    maxMs ??
    (ws.healthy && !run.adoptedSocket
      ? Math.max(pollIntervalMs, Math.min(5 * pollIntervalMs, 5_000))
      : pollIntervalMs);
  const until = run.now() + interval;
  while (!signal.aborted && run.now() < until) {
    const why = await ws.wait(run.promptId, until - run.now(), signal);
    if (why !== 'progress') return why;
    await running(run);
  }
  return undefined;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
