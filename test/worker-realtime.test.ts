import { Job } from 'bullmq';
import { startSystem, type TestSystem } from './helpers/system';
import { waitFor } from './helpers/wait';
import { sleepWorkflow } from './helpers/workflows';
import type { JobData, JobResult } from '../src/job/data';
import type { JobProgress } from '../src/job/progress';

/** Progress comes from ComfyUI's WebSocket while it is healthy; polling alone still finishes jobs. */
let sys: TestSystem;
beforeAll(async () => {
  // poll rarely, so progress can only come from the socket
  sys = await startSystem({ POLL_INTERVAL_MS: '2000', PROGRESS_INTERVAL_MS: '100' });
});
afterAll(async () => {
  await sys?.close();
});

test('progress percentages rise during a multi-step job, from WebSocket events', async () => {
  await sys.startWorker();
  const id = await sys.enqueue(sleepWorkflow(2, 'rt-progress'));
  const seen: JobProgress[] = [];
  const onProgress = ({ jobId, data }: { jobId: string; data: unknown }) => {
    if (jobId === id) seen.push(data as JobProgress);
  };
  sys.events.on('progress', onProgress);
  const job = (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
  await job.waitUntilFinished(sys.events);
  sys.events.off('progress', onProgress);
  const percents = seen.map((p) => p.percent);
  const during = percents.filter((p) => p > 0 && p < 100);
  expect(during.length).toBeGreaterThanOrEqual(3);
  for (let i = 1; i < during.length; i++) expect(during[i]).toBeGreaterThanOrEqual(during[i - 1]);
  expect(seen.some((p) => p.node === '2' && typeof p.value === 'number' && p.max === 2)).toBe(true);
  // the final 100 % is saved with the outcome (the `completed` event announces it), naming
  // the last node that ran (SaveImage), although coalesced writes skipped its start
  expect((await Job.fromId<JobData, JobResult>(sys.queue, id))!.progress).toMatchObject({
    percent: 100,
    node: '3',
  });
});

test('a prompt waiting in ComfyUI behind another is saved `submitted` with its queue position', async () => {
  // the worker of the first test runs both jobs at once; ComfyUI executes one at a time
  const first = await sys.enqueue(sleepWorkflow(5, 'rt-first'));
  await waitFor('the first prompt to run', async () =>
    (await Job.fromId<JobData>(sys.queue, first))!.data.state.status === 'running'
      ? true
      : undefined,
  );
  const second = await sys.enqueue(sleepWorkflow(0.2, 'rt-second'));
  const waiting = await waitFor('the second job to wait in ComfyUI', async () => {
    const j = (await Job.fromId<JobData, JobResult>(sys.queue, second))!;
    return j.data.state.status === 'submitted' ? j : undefined;
  });
  expect(waiting.progress).toMatchObject({ percent: 0, queuePosition: 1 });
  for (const id of [first, second])
    await (await Job.fromId<JobData, JobResult>(sys.queue, id))!.waitUntilFinished(sys.events);
});

test('with the WebSocket off, jobs still complete by polling', async () => {
  const w = await sys.startWorker({
    COMFYUI_WEBSOCKET: '0',
    POLL_INTERVAL_MS: '100',
  });
  const id = await sys.enqueue(sleepWorkflow(0.3, 'rt-polling'));
  const job = (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
  const result = await job.waitUntilFinished(sys.events);
  expect(result.outputs).toHaveLength(1);
  await w.close();
});
