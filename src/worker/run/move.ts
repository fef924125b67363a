import type { Lease } from '../../comfy/pool';
import { onMoveAbandoned, onMoveStarted } from '../../job/state';
import type { JobRun } from './job-run';
import { submit } from './submit';

/**
 * Moving a pending prompt (DESIGN "Moving a pending prompt"): a prompt of ours waits in
 * one instance's queue while another healthy instance is idle. In this order, each step
 * leaving a state the job's next worker resolves without a second execution:
 *
 * 1. a slot on an idle instance, taken only if it is still idle (one script);
 * 2. the intent persisted: `submitting` on the new instance, `movedFrom` the old one;
 * 3. `POST /queue {delete}` on the old instance, fenced (written only under a fresh proof
 *    of the lock), then the prompt looked up there: found (it started, finished, or is
 *    still pending) → the intent is undone and the job follows it there;
 * 4. absent → it was removed and can never run there: the old slot is freed and the
 *    prompt submitted on the new instance under the same id (fenced, as every submission).
 *
 * A worker that resumes a job with `movedFrom` looks there first (`resolveMove`).
 */

export type MoveResult = 'none' | 'moved' | 'stayed';

/** Moves the job's pending prompt to an idle instance when there is one. */
export async function movePending(run: JobRun): Promise<MoveResult> {
  const { pool } = run.deps;
  const from = run.state.comfyuiUrl;
  if (run.settings.movePending === false) return 'none';
  if (run.state.status !== 'submitted' || !from || run.signal.aborted) return 'none';
  const to = await pool.acquireIdle(run.jobId, from);
  if (!to) return 'none';
  const promptId = run.promptId;
  const fromLease = run.lease;
  const fromSocket = run.socket();
  const accepted = run.accepted;
  // the new lease is the job's from here on: a failure below leaves the intent for the
  // next worker, which holds it again (or the lease expires)
  run.lease = to;
  try {
    run.accepted = false; // nothing accepted on the new instance yet (retry.ts)
    const cancelled = await run.save(
      onMoveStarted(run.state, to.url, run.now(), run.deps.clientId),
    );
    if (cancelled) {
      // the follower's next turn removes the prompt wherever it is and fails the job
      fromLease?.release();
      return 'stayed';
    }
    run.fault('move-intent-saved');
    const client = pool.client(from);
    await run.fence((beforeWrite) => client.deleteFromQueue([promptId], { beforeWrite }));
    run.fault('move-deleted');
    // the delete was answered: this look-up is read after it (queue, then history)
    const there = await client.lookup(promptId);
    if (there.state !== 'absent') {
      await undo(run, fromLease, to, accepted);
      run.log.info(
        { from, to: to.url, found: there.state },
        'the pending prompt started or ended before it could be moved: following it there',
      );
      return 'stayed';
    }
    fromLease?.release();
    fromSocket?.forget(promptId);
    run.releaseSocket();
    run.log.info({ from, to: to.url }, 'moving the pending prompt to an idle instance');
    run.deps.analytics.capture('comfyui_prompt_moved', run.distinctId, {
      jobId: run.jobId,
      promptId,
      from,
      to: to.url,
    });
    await submit(run);
    return 'moved';
  } catch (err) {
    fromLease?.drop();
    throw err;
  }
}

/** The prompt is still on the old instance: follow it there again. */
async function undo(run: JobRun, fromLease: Lease | undefined, to: Lease, accepted: boolean) {
  await run.save(onMoveAbandoned(run.state));
  run.accepted = accepted;
  run.lease = fromLease;
  to.release();
}

/**
 * Resuming a job whose move was under way (`movedFrom`): where is the prompt? A look-up on
 * the old instance over a connection of its own (read after any delete an earlier holder
 * wrote before this pickup): found → the move is undone and the job follows it there
 * (even if that instance left COMFYUI_URL meanwhile: it answers, the prompt is there);
 * absent → it is not there and will never be: the job goes on as `submitting` on the new
 * instance (found there and followed, or submitted after the take-over grace).
 */
export async function resolveMove(run: JobRun): Promise<'found' | 'absent' | 'none'> {
  const from = run.state.movedFrom;
  if (!from) return 'none';
  const there = await run.deps.pool
    .client(from.url)
    .lookup(run.promptId, { freshConnection: true });
  if (there.state === 'absent') return 'absent';
  run.lease?.release();
  run.lease = run.deps.pool.configured(from.url)
    ? await run.deps.pool.lease(run.jobId, from.url)
    : undefined;
  await run.save(
    onMoveAbandoned(run.state),
    `prompt ${run.promptId} was still on ${from.url} (a move was under way): following it there`,
  );
  return 'found';
}
