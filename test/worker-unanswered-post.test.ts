import { Job } from 'bullmq';
import { startSystem, type TestSystem } from './helpers/system';
import { sleepWorkflow } from './helpers/workflows';
import type { JobData, JobResult } from '../src/job/data';

/**
 * A POST /prompt that was written but whose answer did not come within COMFYUI_TIMEOUT_MS:
 * the attempt fails `comfyui_unreachable` and is retried with the same prompt id. Whether
 * ComfyUI queued the prompt is unknown to the worker; the retry must find it, not post it a
 * second time (ComfyUI 0.3.64 runs a duplicate prompt id again).
 */

let sys: TestSystem;
const TIMEOUT_MS = 2_000; // FAST_ENV's COMFYUI_TIMEOUT_MS

beforeAll(async () => {
  sys = await startSystem({ COMFYUI_TIMEOUT_MS: String(TIMEOUT_MS) });
  await sys.startWorker();
}, 60_000);
afterAll(async () => {
  await sys?.close();
});
afterEach(() => sys.sim.slowPrompts(undefined));

async function runOne(prefix: string) {
  const id = await sys.enqueue(sleepWorkflow(0.2, prefix));
  const job = (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
  await job.waitUntilFinished(sys.events);
  const done = (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
  const promptId = done.data.state.promptId!;
  return {
    state: await done.getState(),
    attemptsMade: done.attemptsMade,
    executions: sys.sim.executions()[promptId],
    logs: (await sys.queue.getJobLogs(id)).logs.join('\n'),
  };
}

test('queued at once, answered after COMFYUI_TIMEOUT_MS: the retry follows the queued prompt', async () => {
  sys.sim.slowPrompts({ queueAfterMs: 0, answerAfterMs: TIMEOUT_MS + 1_000 });
  const r = await runOne('unanswered-queued');
  expect(r.logs).toMatch(/attempt 1 of \d+ failed: .*did not answer \/prompt within/);
  expect(r).toMatchObject({ state: 'completed', executions: 1 });
}, 30_000);

test('queued late (a stalled ComfyUI), within COMFYUI_TIMEOUT_MS of the write: one execution', async () => {
  sys.sim.slowPrompts({ queueAfterMs: TIMEOUT_MS + 500, answerAfterMs: TIMEOUT_MS + 500 });
  const r = await runOne('unanswered-late');
  expect(r.logs).toMatch(/attempt 1 of \d+ failed: .*did not answer \/prompt within/);
  expect(r).toMatchObject({ state: 'completed', executions: 1 });
}, 30_000);
