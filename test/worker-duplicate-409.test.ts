import { Job } from 'bullmq';
import { startSystem, type TestSystem } from './helpers/system';
import { waitFor } from './helpers/wait';
import { sleepWorkflow, tinyWorkflow } from './helpers/workflows';
import type { JobData, JobResult } from '../src/job/data';

/**
 * A server that refuses a prompt id it already knows (409) and accepts only canonical UUIDs.
 * No merged ComfyUI release does this: it models the open pull requests #16241/#16242
 * (comfyui-api.md §13, row 2), in case they land. 0.3.64 and today's releases accept a
 * duplicate id and run it again. The worker must work against all of them.
 */
let sys: TestSystem;
beforeAll(async () => {
  sys = await startSystem({}, { duplicatePromptIds: 'reject' });
  await sys.startWorker();
});
afterAll(async () => {
  await sys?.close();
});

async function finished(id: string) {
  const job = (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
  await job.waitUntilFinished(sys.events).catch(() => undefined);
  return (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
}

test('a job completes; its prompt id is a canonical lowercase UUID the server accepts', async () => {
  const job = await finished(await sys.enqueue(tinyWorkflow('new-ok')));
  expect(await job.getState()).toBe('completed');
  // a v5 UUID derived from the job (promptIdFor), in the canonical form the server checks
  expect(job.data.state.promptId).toMatch(
    /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
  );
});

test('the server refuses the same prompt id again while it knows it', async () => {
  const job = await finished(await sys.enqueue(tinyWorkflow('new-dup')));
  const res = await fetch(`${sys.sim.url}/prompt`, {
    method: 'POST',
    body: JSON.stringify({ prompt: tinyWorkflow('new-dup-2'), prompt_id: job.data.state.promptId }),
  });
  expect(res.status).toBe(409);
});

test('after a restart the server forgets the id: the lost prompt is resubmitted with the same id', async () => {
  const id = await sys.enqueue(sleepWorkflow(1, 'new-restart'));
  const promptId = await waitFor('the prompt to start executing', async () => {
    const p = (await Job.fromId<JobData>(sys.queue, id))?.data.state.promptId;
    return p && sys.sim.executions()[p] === 1 ? p : undefined;
  });
  await sys.sim.restart();
  const job = await finished(id);
  expect(await job.getState()).toBe('completed');
  expect(job.data.state).toMatchObject({ promptId, resubmissions: 1 });
  expect(sys.sim.executions()[promptId]).toBe(2);
});
