import {
  ComfyHttpError,
  ComfyProtocolError,
  ComfyUnreachableError,
  MediaError,
} from '../../errors';
import { onSubmitted } from '../../job/state';
import { fail } from './finish';
import type { JobRun } from './job-run';

/**
 * Transport and server errors: retried by BullMQ with backoff, keeping the same prompt id;
 * the last attempt, or an error a retry cannot fix, fails the job `comfyui_unreachable`.
 * Anything else (a bug, a Redis error) is thrown as it is, for BullMQ to record.
 */
export async function retryOrFail(run: JobRun, err: unknown): Promise<never> {
  if (!(
    err instanceof ComfyUnreachableError ||
    err instanceof ComfyHttpError ||
    err instanceof ComfyProtocolError ||
    err instanceof MediaError
  ))
    throw err;
  const transient = !(err instanceof ComfyHttpError || err instanceof MediaError) || err.retryable;
  const code = err instanceof MediaError ? err.code : 'comfyui_unreachable';
  const attempt = run.job.attemptsMade + 1;
  const max = run.job.opts.attempts ?? 1;
  const message = err.message;
  if (!transient || attempt >= max) {
    return fail(run, {
      code,
      message: transient ? `${message} (gave up after ${attempt} attempts)` : message,
    });
  }
  run.log.warn(
    { err: message, attempt, max },
    `${err instanceof MediaError ? code : 'ComfyUI error'}, retrying with backoff (attempt ${attempt} of ${max})`,
  );
  // the line goes with the state; a prompt ComfyUI accepted is saved as `submitted`, so
  // the retry counts it as lost (a resubmission) if ComfyUI no longer knows it. A failed
  // write is logged: the retry reads the state as it was last saved.
  try {
    await run.save(
      run.accepted ? onSubmitted(run.state) : run.state,
      `attempt ${attempt} of ${max} failed: ${message}; retrying with the same prompt id`,
    );
  } catch (saveErr) {
    run.log.warn({ err: saveErr }, 'could not save the failed attempt before its retry');
  }
  throw err;
}
