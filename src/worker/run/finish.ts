import type { Outcome } from '../../comfy/protocol';
import { onCompleted, onFailed, type JobError, type JobOutput } from '../../job-state';
import type { JobResult } from '../../queue';
import type { JobRun } from './job-run';
import { JobFailure } from './types';

/**
 * Step 5, finish: ComfyUI's outcome becomes the job's (outputs copied, then the outcome
 * saved), or the job fails with a public error code.
 */
export async function finish(run: JobRun, outcome: Outcome): Promise<JobResult> {
  switch (outcome.kind) {
    case 'success':
      return complete(run, await copyOutputs(run, outcome.outputs));
    case 'error':
      return fail(run, {
        code: 'execution_error',
        message: outcome.message,
        nodeId: outcome.nodeId,
        nodeType: outcome.nodeType,
      });
    case 'interrupted':
      if (await run.deps.isCancelRequested(run.jobId))
        return fail(run, { code: 'cancelled', message: 'cancelled by request' });
      return fail(run, {
        code: 'interrupted',
        message: `the prompt was interrupted in ComfyUI${outcome.nodeType ? ` while running ${outcome.nodeType} (node ${outcome.nodeId})` : ''}`,
        nodeId: outcome.nodeId,
        nodeType: outcome.nodeType,
      });
    default:
      return fail(run, { code: 'execution_error', message: outcome.message });
  }
}

/**
 * Copies the prompt's outputs where the job's outcome points, before the outcome is saved.
 * Outputs stay in ComfyUI for now: they are returned as they are.
 */
export async function copyOutputs(_run: JobRun, outputs: JobOutput[]): Promise<JobOutput[]> {
  return outputs;
}

/** Saves the completed outcome with its return value (the webhook's delivery first). */
export async function complete(run: JobRun, outputs: JobOutput[]): Promise<JobResult> {
  const { data, deps, jobId } = run;
  if (data.request.webhookUrl) await deps.notifyFinished?.(jobId, data.request);
  await run.save(onCompleted(run.state, run.now()), undefined, run.finalProgress(), { outputs });
  run.fault('after-outcome-saved');
  run.socket()?.forget(run.state.promptId ?? '');
  deps.analytics.capture('comfyui_job_completed', run.distinctId, {
    promptId: run.promptId,
    jobId,
    durationMs: run.now() - (run.state.startedAt ?? run.now()),
    jobType: data.request.jobType,
  });
  return { outputs };
}

/** Saves the failed (or cancelled) outcome and throws it as a JobFailure BullMQ keeps. */
export async function fail(run: JobRun, error: JobError): Promise<never> {
  const { data, deps, jobId } = run;
  if (data.request.webhookUrl) await deps.notifyFinished?.(jobId, data.request);
  await run.save(
    onFailed(run.state, error, run.now()),
    `${error.code === 'cancelled' ? 'cancelled' : 'failed'}: ${error.code}: ${error.message}`,
  );
  deps.fault?.('after-outcome-saved');
  run.socket()?.forget(run.state.promptId ?? '');
  deps.analytics.capture('comfyui_job_failed', run.distinctId, {
    promptId: run.state.promptId,
    jobId,
    code: error.code,
    durationMs: run.now() - (run.state.startedAt ?? run.now()),
    jobType: data.request.jobType,
  });
  throw new JobFailure(error);
}
