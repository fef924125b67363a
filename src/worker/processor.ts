import { DelayedError, WaitingError } from 'bullmq';
import { isRetryRequested, onRetry } from '../job/state';
import type { ImageJob } from '../queue';
import { LockLostError } from './persist';
import { follow } from './run/follow';
import { readJobData } from './run/job-data';
import { JobRun } from './run/job-run';
import { pickUp } from './run/pickup';
import { retryOrFail } from './run/retry';
import { JobFailure, type ProcessorDeps } from './run/types';
import type { JobResult } from '../job/data';

export {
  ABORT,
  JobFailure,
  type FaultPoint,
  type ProcessorDeps,
  type ProcessorSettings,
} from './run/types';

/**
 * The processor: one JobRun per pickup, through its named steps (DESIGN "The lifecycle
 * rules"): pick up and find the prompt (run/pickup), prepare inputs (run/inputs), submit
 * (run/submit), follow (run/follow), finish: copy outputs, save the outcome (run/finish).
 * Crash-safety rule applied at every step: the prompt id is stored before any network
 * call, so whichever line the process dies on, the next worker finds the same prompt.
 */
export function createProcessor(deps: ProcessorDeps) {
  // three parameters: BullMQ passes a signal only to a processor that declares it
  return async function process(
    job: ImageJob,
    token: string | undefined,
    signal?: AbortSignal,
  ): Promise<JobResult> {
    const data = await readJobData(job);
    // a failed job retried on request runs again as a new generation (like a first take)
    if (isRetryRequested(data.state, job.failedReason)) data.state = onRetry(data.state);
    // a job that already finished (crash between saving the outcome and BullMQ's move):
    // the outcome's write also stored the return value
    const { state } = data;
    if (state.status === 'completed') return { outputs: job.returnvalue?.outputs ?? [] };
    if ((state.status === 'failed' || state.status === 'cancelled') && state.error)
      throw new JobFailure(state.error);

    const run = new JobRun(deps, job, token, data, signal);
    // the slot is freed when the job ends; a hand-off, a retry or a lost lock keeps it for
    // the job's next worker (the prompt may still run), until the lease expires
    let ended = false;
    try {
      const justSubmitted = await pickUp(run);
      const result = await follow(run, justSubmitted);
      ended = true;
      return result;
    } catch (err) {
      ended = err instanceof JobFailure;
      if (
        err instanceof JobFailure ||
        err instanceof WaitingError ||
        err instanceof DelayedError ||
        err instanceof LockLostError
      )
        throw err;
      return await retryOrFail(run, err).catch((e: unknown) => {
        ended = e instanceof JobFailure;
        throw e;
      });
    } finally {
      if (ended) run.lease?.release();
      else run.lease?.drop();
      run.releaseSocket();
    }
  };
}
