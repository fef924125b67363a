import { Job } from 'bullmq';
import { startSystem, type TestSystem } from './helpers/system';
import { waitFor } from './helpers/wait';
import { sleepWorkflow } from './helpers/workflows';
import { historyEntry } from './helpers/sim-history';
import type { JobData, JobResult } from '../src/job/data';

/** DESIGN rule 5: a job running longer than JOB_TIMEOUT_MS fails `timeout` and its prompt is interrupted. */
let sys: TestSystem;
beforeAll(async () => {
  sys = await startSystem({ JOB_TIMEOUT_MS: '800' });
  await sys.startWorker();
});
afterAll(async () => {
  await sys?.close();
});

test('a job over JOB_TIMEOUT_MS fails timeout, not retried, and ComfyUI stops running its prompt', async () => {
  const id = await sys.enqueue(sleepWorkflow(30, 'timeout'));
  const job = (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
  await job.waitUntilFinished(sys.events).catch(() => undefined);
  const done = (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
  expect(await done.getState()).toBe('failed');
  expect(done.attemptsMade).toBe(1);
  expect(done.data.state.error).toMatchObject({ code: 'timeout' });
  expect(done.failedReason).toMatch(/^timeout: .*JOB_TIMEOUT_MS/);
  const promptId = done.data.state.promptId!;
  // the interrupted prompt leaves ComfyUI's queue and is recorded as interrupted
  const history = await waitFor('the interrupted prompt in history', () =>
    historyEntry(sys.sim.url, promptId),
  );
  expect(history.status.messages.map((m) => m[0])).toContain('execution_interrupted');
});
