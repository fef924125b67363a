import type { Outcome } from '../../comfy/protocol';
import { onCompleted, onFailed, type JobError, type JobOutput } from '../../job/state';
import { MediaError } from '../../errors';
import { contentTypeOf } from '../../storage/content-type';
import { keys } from '../../storage/media';
import type { Storage } from '../../storage/types';
import type { JobRun } from './job-run';
import { JobFailure } from './types';
import type { JobResult } from '../../job/data';

/**
 * Step 5, finish: ComfyUI's outcome becomes the job's (outputs copied, then the outcome
 * saved), or the job fails with a public error code.
 */
export async function finish(run: JobRun, outcome: Outcome): Promise<JobResult> {
  // the instance is free once its prompt is done: the slot goes to the next prompt now,
  // not after the outputs are copied and the outcome saved (a retry holds it again)
  run.lease?.release();
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

/** How long one output's /view download may take (a large video over a slow link). */
const COPY_TIMEOUT_MS = 30 * 60_000;
/** Outputs copied at once (each a /view download streamed into storage). */
const COPY_CONCURRENCY = 8;

/**
 * Copies every output from ComfyUI's /view to storage (DESIGN "Media out"), streaming,
 * under `jobs/<id>/outputs/<n>`, before the outcome is saved: a copy made again after a
 * crash replaces the first. Any failure is an `output_unavailable` retried with the job's
 * backoff; the retry finds the prompt done in ComfyUI's history and copies again, without
 * running it again. Without storage (tests of other parts) the outputs stay as they are.
 */
export async function copyOutputs(run: JobRun, outputs: JobOutput[]): Promise<JobOutput[]> {
  const storage = run.deps.media?.storage;
  if (!storage) return outputs;
  const started = performance.now();
  const copied: JobOutput[] = new Array<JobOutput>(outputs.length);
  let next = 0;
  // a few copies at once: a batch of thousands of small images is bound by round trips
  const copier = async () => {
    for (let n = next++; n < outputs.length; n = next++) {
      copied[n] = await copyOutput(run, storage, outputs[n], n);
    }
  };
  await Promise.all(Array.from({ length: Math.min(COPY_CONCURRENCY, outputs.length) }, copier));
  const bytes = copied.reduce((sum, o) => sum + (o.size ?? 0), 0);
  const copyMs = Math.round((performance.now() - started) * 10) / 10;
  run.log.info({ outputs: copied.length, bytes, copyMs }, 'outputs copied to storage');
  run.fault('after-outputs-copied');
  return copied;
}

async function copyOutput(
  run: JobRun,
  storage: Storage,
  o: JobOutput,
  n: number,
): Promise<JobOutput> {
  const key = keys.output(run.jobId, n);
  try {
    const view = await run.client().view(o, COPY_TIMEOUT_MS);
    if (view.status !== 200) {
      view.body.destroy();
      throw new Error(`ComfyUI answered ${view.status} to /view`);
    }
    const contentType = view.contentType?.split(';')[0].trim() || contentTypeOf(o.filename);
    const { size } = await storage.put(key, view.body, { contentType, signal: run.signal });
    return { ...o, contentType, size, key };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new MediaError(
      'output_unavailable',
      `could not copy output ${n} (${o.filename}): ${why}`,
      true,
      {
        cause: err,
      },
    );
  }
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
