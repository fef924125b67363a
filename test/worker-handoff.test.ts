import { Job } from 'bullmq';
import type { JobData, JobResult } from '../src/queue';
import { createSimulator, type Simulator } from '../src/simulator/server';
import { simVersion, startSystem, type TestSystem } from './helpers/system';
import { waitFor } from './helpers/wait';
import { killAll, type WorkerProcess } from './helpers/worker-process';
import { sleepWorkflow } from './helpers/workflows';

/**
 * A job that changes hands: its instance replaced (resubmitted elsewhere at once), or its
 * prompt followed by another worker after a SIGTERM hand-off or a SIGKILL (progress stays
 * live and never goes backwards; the end is seen from the submitter's events).
 */
let sys: TestSystem;
let extra: Simulator[] = [];
const procs: WorkerProcess[] = [];

beforeAll(async () => {
  extra = await Promise.all(
    [0, 1].map(() => createSimulator({ progressIntervalMs: 50, version: simVersion() })),
  );
  sys = await startSystem();
});
afterEach(async () => {
  await killAll(procs);
});
afterAll(async () => {
  await sys?.close();
  await Promise.all(extra.map((s) => s.close()));
});

async function job(id: string) {
  return (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
}

async function finished(id: string) {
  await (await job(id)).waitUntilFinished(sys.events).catch(() => undefined);
  return job(id);
}

test('an instance removed from COMFYUI_URL: the job is resubmitted on another at once', async () => {
  const [a, b, c] = [sys.sim, ...extra];
  const first = await sys.startWorker({ COMFYUI_URL: a.url });
  const id = await sys.enqueue(sleepWorkflow(2, 'replaced'));
  await waitFor('the prompt to run on the old instance', async () => {
    const p = (await job(id)).data.state.promptId;
    return p && a.executions()[p] ? true : undefined;
  });
  await first.close();
  const second = await sys.startWorker({ COMFYUI_URL: `${b.url},${c.url}` });
  const done = await finished(id);
  await second.close();
  expect(done.data.state).toMatchObject({ status: 'completed', resubmissions: 1 });
  expect([b.url, c.url]).toContain(done.data.state.comfyuiUrl);
  const logs = (await sys.queue.getJobLogs(id)).logs.join('\n');
  expect(logs).toContain(`instance ${a.url} is no longer in COMFYUI_URL`);
});
