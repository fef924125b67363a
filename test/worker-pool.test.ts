import { Job } from 'bullmq';
import { startSystem, type TestSystem } from './helpers/system';
import { waitFor } from './helpers/wait';
import { sleepWorkflow } from './helpers/workflows';
import type { JobData, JobResult } from '../src/job/data';

/** Several ComfyUI instances: jobs spread, a dead instance gets no new jobs, nothing runs twice. */
let sys: TestSystem;

beforeAll(async () => {
  sys = await startSystem(
    { WORKER_CONCURRENCY: '2', JOB_ATTEMPTS: '3', RETRY_BACKOFF_MS: '100' },
    {},
    3,
  );
});
afterAll(async () => {
  await sys?.close();
});

async function settle(ids: string[]) {
  return Promise.all(
    ids.map(async (id) => {
      const job = (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
      await job.waitUntilFinished(sys.events).catch(() => undefined);
      return (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
    }),
  );
}

test('30 jobs on three instances: spread; one instance killed mid-run; new jobs avoid it; nothing runs twice', async () => {
  const sims = sys.sims;
  await sys.startWorker({ COMFYUI_URL: sims.map((s) => s.url).join(',') });
  const first = await Promise.all(
    Array.from({ length: 20 }, (_, i) => sys.enqueue(sleepWorkflow(0.3, `pool-a${i}`))),
  );
  const victim = sys.sims[2];
  await waitFor(
    'the victim instance to run a prompt',
    () => Object.keys(victim.executions()).length > 0,
  );
  await victim.pause(); // connections refused from now on: "killed"
  const firstJobs = await settle(first);
  const second = await Promise.all(
    Array.from({ length: 10 }, (_, i) => sys.enqueue(sleepWorkflow(0.1, `pool-b${i}`))),
  );
  const secondJobs = await settle(second);

  const byInstance = new Map<string, number>();
  for (const j of [...firstJobs, ...secondJobs]) {
    const url = j.data.state.comfyuiUrl!;
    byInstance.set(url, (byInstance.get(url) ?? 0) + 1);
  }
  console.log('jobs per instance', Object.fromEntries(byInstance));
  for (const s of sims) expect(byInstance.get(s.url) ?? 0).toBeGreaterThan(0);

  for (const j of firstJobs) {
    const state = await j.getState();
    if (j.data.state.comfyuiUrl === victim.url) {
      // its jobs follow the unreachable rules: finished before the kill, or failed comfyui_unreachable
      if (state === 'failed') expect(j.data.state.error?.code).toBe('comfyui_unreachable');
    } else {
      expect(state).toBe('completed');
    }
  }
  for (const j of secondJobs) {
    expect(await j.getState()).toBe('completed');
    expect(j.data.state.comfyuiUrl).not.toBe(victim.url);
  }
  for (const s of sys.sims.slice(0, 2)) {
    for (const [promptId, n] of Object.entries(s.executions()))
      expect([promptId, n]).toEqual([promptId, 1]);
  }
});
