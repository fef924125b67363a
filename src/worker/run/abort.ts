import { WaitingError } from 'bullmq';
import { onHandoff } from '../../job/state';
import { fail } from './finish';
import type { JobRun } from './job-run';
import { ABORT } from './types';

/**
 * The job's signal was aborted: a shutdown hands the job back to the queue, a cancel
 * removes its prompt and fails it `cancelled`, a lost lock stops this copy without a write.
 */
export async function handleAbort(run: JobRun): Promise<never> {
  const reason = run.signal.reason;
  if (reason === ABORT.shutdown) {
    await run.save(
      onHandoff(run.state, run.now()),
      'worker shutting down: job handed back to the queue',
    );
    await run.job.moveToWait(run.token);
    throw new WaitingError();
  }
  if (reason === ABORT.cancel) {
    await run.removePrompt();
    return fail(run, { code: 'cancelled', message: 'cancelled by request' });
  }
  throw new Error(
    `stopped following job ${run.jobId}: its lock was lost (${String(reason)}); another worker owns it now`,
  );
}
