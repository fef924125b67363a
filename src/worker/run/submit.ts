import { describeValidationError } from '../../comfy/protocol';
import { onPromptKnown, onPromptRenamed } from '../../job/state';
import { fail } from './finish';
import { prepareInputs } from './inputs';
import type { JobRun } from './job-run';

/**
 * Step 3, submit: the job's inputs, then its prompt under the stored prompt id. ComfyUI's
 * validation errors fail the job; transport errors are thrown (retried with the same id).
 */
export async function submit(run: JobRun): Promise<void> {
  const { data, jobId, deps } = run;
  const promptId = run.promptId;
  const workflow = await run.workflow();
  if (!workflow)
    await fail(run, { code: 'invalid_job_data', message: 'the job has no workflow to submit' });
  const prompt = await prepareInputs(run, workflow!);
  run.socket()?.track(promptId, run.nodeCount); // before the POST: no event missed
  run.fault('before-post');
  const r = await run.fence((beforeWrite) =>
    run.client().submit(
      {
        prompt,
        promptId,
        clientId: deps.clientId,
        extraData: { bullmq_job_id: jobId, attempt_key: promptId, client_id: deps.clientId },
      },
      { beforeWrite },
    ),
  );
  run.fault('after-post');
  if (r.kind === 'invalid') {
    const v = describeValidationError(r.body);
    await fail(run, { code: 'workflow_invalid', message: v.message, nodeId: v.nodeId });
  }
  if (r.kind === 'accepted' && Object.keys(r.nodeErrors).length > 0) {
    const v = describeValidationError({
      error: { message: 'some outputs failed validation and would be dropped' },
      node_errors: r.nodeErrors,
    });
    await run.removePrompt();
    await fail(run, { code: 'workflow_invalid', message: v.message, nodeId: v.nodeId });
  }
  if (r.kind === 'accepted' && r.promptId !== promptId) {
    // a server older than 0.3.45 ignores client prompt ids: follow the one it made
    run.log.warn(
      { sent: promptId, got: r.promptId },
      'ComfyUI ignored the client prompt id (server older than 0.3.45)',
    );
    await run.save(onPromptRenamed(run.state, r.promptId));
  }
  run.accepted = true;
  if (r.kind === 'duplicate')
    await run.save(
      onPromptKnown(run.state),
      `prompt ${run.promptId} was already known to ComfyUI (409): following it`,
    );
  // No `submitted` write here: the follower's first lookup writes `submitted` (with the
  // queue position) or `running` in one call. A crash before it leaves `submitting`,
  // which a new worker looks up before it submits anything (rule 2).
  deps.analytics.capture('comfyui_job_state_saved', run.distinctId, {
    promptId: run.promptId,
    jobType: data.request.jobType,
    userId: data.request.userId,
    jobId,
  });
}
