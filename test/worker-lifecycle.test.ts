import { Job } from 'bullmq';
import { createLogger } from '../src/logger';
import { createMetrics } from '../src/metrics';
import IORedis from 'ioredis';
import { CANCEL_FIELD, IMAGE_JOB_NAME, jobKey, startRetentionCleaner } from '../src/queue';
import { startSystem, type TestSystem } from './helpers/system';
import { waitFor } from './helpers/wait';
import { sleepWorkflow, tinyOutput, tinyWorkflow } from './helpers/workflows';
import { historyEntry } from './helpers/sim-history';
import { type JobData, type JobResult, JOB_DATA_VERSION } from '../src/job/data';

/**
 * The worker's lifecycle with an in-process worker, a real redis-server and the simulator:
 * success, permanent failures, bad data, outages, a ComfyUI restart, retention.
 */
let sys: TestSystem;
const metrics = createMetrics();

beforeAll(async () => {
  sys = await startSystem({ RETENTION_MS: '1500', CLEAN_INTERVAL_MS: '200' });
  await sys.startWorker({}, { metrics });
});

/** the worker's view of the simulator's health (its comfyui_instance_up gauge) */
async function instanceUp(): Promise<number | undefined> {
  const m = await metrics.registry.getSingleMetric('comfyui_instance_up')?.get();
  return m?.values[0]?.value;
}
afterAll(async () => {
  await sys?.close();
});

async function finished(id: string): Promise<Job<JobData, JobResult>> {
  const job = (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
  await job.waitUntilFinished(sys.events).catch(() => undefined);
  return (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
}

test('a workflow runs once and completes with its outputs; the workflow is dropped', async () => {
  const id = await sys.enqueue(tinyWorkflow('life-ok'));
  const job = await finished(id);
  expect(await job.getState()).toBe('completed');
  // copied to storage before the outcome was saved (DESIGN "Media out")
  expect(job.returnvalue.outputs).toEqual([tinyOutput('life-ok', `jobs/${id}/outputs/0`)]);
  const state = job.data.state;
  expect(state).toMatchObject({
    status: 'completed',
    attempts: 1,
    recoveries: 0,
    resubmissions: 0,
  });
  expect(job.data.workflow).toBeNull();
  expect(job.progress).toMatchObject({ percent: 100 });
  expect(sys.sim.executions()[state.promptId!]).toBe(1);
  // Bull Board log lines are for what an operator must see (recoveries, retries, failures)
  expect((await sys.queue.getJobLogs(id)).logs).toEqual([]);
});

test('an unknown node fails workflow_invalid once, without retries, and never reaches execution', async () => {
  const wf = tinyWorkflow();
  wf['2'].class_type = 'DoesNotExist';
  const job = await finished(await sys.enqueue(wf));
  expect(await job.getState()).toBe('failed');
  expect(job.attemptsMade).toBe(1);
  expect(job.failedReason).toMatch(
    /^workflow_invalid: Cannot execute because node DoesNotExist does not exist/,
  );
  expect(job.data.state.error).toMatchObject({ code: 'workflow_invalid', nodeId: '2' });
  expect(sys.sim.executions()[job.data.state.promptId!]).toBeUndefined();
});

test('a SaveImage runtime error fails execution_error with node id, type and message', async () => {
  const job = await finished(await sys.enqueue(tinyWorkflow('../escape')));
  expect(await job.getState()).toBe('failed');
  expect(job.attemptsMade).toBe(1);
  expect(job.data.state.error).toMatchObject({
    code: 'execution_error',
    nodeId: '3',
    nodeType: 'SaveImage',
  });
  expect(job.data.state.error!.message).toContain(
    'Saving image outside the output folder is not allowed',
  );
  expect(sys.sim.executions()[job.data.state.promptId!]).toBe(1);
});

test.each([
  [
    'an old data version',
    { v: 0, workflow: tinyWorkflow(), request: { jobType: 'x' }, state: { status: 'queued' } },
    /version 0 is not supported/,
  ],
  [
    'a missing workflow',
    {
      v: JOB_DATA_VERSION,
      request: { jobType: 'x' },
      state: {
        status: 'queued',
        createdAt: 1,
        attempts: 0,
        recoveries: 0,
        resubmissions: 0,
        stallsSeen: 0,
      },
    },
    /workflow/,
  ],
  ['no data at all', null, /malformed/],
])(
  'bad job data (%s) fails once with a clear error and the worker keeps working',
  async (_name, data, reason) => {
    const bad = await sys.queue.add(IMAGE_JOB_NAME, data as unknown as JobData);
    const job = await finished(bad.id!);
    expect(await job.getState()).toBe('failed');
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toMatch(/^invalid_job_data: /);
    expect(job.failedReason).toMatch(reason);
    const ok = await finished(await sys.enqueue(tinyWorkflow()));
    expect(await ok.getState()).toBe('completed');
  },
);

test('ComfyUI unreachable while it holds the prompt: retried with backoff, then completes with one execution', async () => {
  const id = await sys.enqueue(sleepWorkflow(1, 'life-outage'));
  await waitFor('the prompt to run', async () =>
    (await Job.fromId<JobData>(sys.queue, id))!.data.state.status === 'running' ? true : undefined,
  );
  await sys.sim.pause(); // the prompt runs on; its follower's look-ups fail
  await waitFor('a failed attempt while ComfyUI is down', async () =>
    (await Job.fromId(sys.queue, id))!.attemptsMade >= 2 ? true : undefined,
  );
  await sys.sim.resume();
  const job = await finished(id);
  expect(await job.getState()).toBe('completed');
  expect(job.attemptsMade).toBeGreaterThanOrEqual(2);
  const promptId = job.data.state.promptId!;
  expect(sys.sim.executions()[promptId]).toBe(1);
  const logs = (await sys.queue.getJobLogs(id)).logs.join('\n');
  expect(logs).toContain('retrying with the same prompt id');
  expect(logs).toContain(`prompt ${promptId}`);
});

test('no ComfyUI instance healthy: a queued job waits in its worker (no attempt, no re-take, one log line), then runs', async () => {
  await sys.sim.pause();
  await waitFor('the worker to see ComfyUI down', async () =>
    (await instanceUp()) === 0 ? true : undefined,
  );
  const id = await sys.enqueue(tinyWorkflow('life-no-instance'));
  await waitFor('a worker to take the job', async () =>
    ((await Job.fromId(sys.queue, id))?.attemptsStarted ?? 0) > 0 ? true : undefined,
  );
  // what is asserted is that nothing happens: over a lock duration and ten health probes,
  // it is not re-taken (before: every COMFYUI_HEALTH_INTERVAL_MS, each take an attempt and
  // a log line)
  await new Promise((r) => setTimeout(r, Number(sys.env.LOCK_DURATION_MS)));
  const waiting = (await Job.fromId<JobData>(sys.queue, id))!;
  expect(await waiting.getState()).toBe('active');
  expect(waiting.attemptsStarted).toBe(1);
  expect(waiting.attemptsMade).toBe(0);
  expect(waiting.data.state.attempts).toBe(0);
  const logged = (await sys.queue.getJobLogs(id)).logs;
  expect(logged).toEqual([expect.stringContaining('no free ComfyUI slot')]);
  await sys.sim.resume();
  const job = await finished(id);
  expect(job.data.state).toMatchObject({ status: 'completed', attempts: 1 });
  expect(job.attemptsStarted).toBe(1);
  const logs = (await sys.queue.getJobLogs(id)).logs;
  expect(logs.filter((l) => l.includes('no free ComfyUI slot'))).toHaveLength(1);
});

test('ComfyUI restarts mid-job and loses the prompt: resubmitted once with the same id, counted', async () => {
  const id = await sys.enqueue(sleepWorkflow(1.5, 'life-restart'));
  const promptId = await waitFor('the prompt to start executing', async () => {
    const job = await Job.fromId<JobData>(sys.queue, id);
    const p = job?.data.state.promptId;
    return p && sys.sim.executions()[p] === 1 ? p : undefined;
  });
  await sys.sim.restart();
  const job = await finished(id);
  expect(await job.getState()).toBe('completed');
  expect(job.data.state.promptId).toBe(promptId);
  expect(job.data.state.resubmissions).toBe(1);
  expect(sys.sim.executions()[promptId]).toBe(2);
});

test('a cancel mark whose message was missed still stops a running job (its next write sees it)', async () => {
  const id = await sys.enqueue(sleepWorkflow(4, 'life-missed-cancel'));
  const promptId = await waitFor('the prompt to run', async () => {
    const s = (await Job.fromId<JobData>(sys.queue, id))!.data.state;
    return s.status === 'running' ? s.promptId : undefined;
  });
  // the durable mark only, as if the API died before publishing (or the worker's
  // subscriber was reconnecting): no message reaches the worker
  const redis = new IORedis(sys.redis.url);
  try {
    await redis.hset(jobKey(sys.config, id), CANCEL_FIELD, new Date().toISOString());
  } finally {
    redis.disconnect();
  }
  const job = await finished(id);
  expect(await job.getState()).toBe('failed');
  expect(job.data.state).toMatchObject({ status: 'cancelled', error: { code: 'cancelled' } });
  // interrupted in ComfyUI (the interrupt lands asynchronously), not run to its end
  const status = await waitFor(
    'the interrupted prompt in the history',
    async () => (await historyEntry(sys.sim.url, promptId!))?.status.status_str,
  );
  expect(status).toBe('error');
});

test('finished jobs are removed once RETENTION_MS has passed (the periodic clean, not only lazy removal)', async () => {
  // the API runs this cleaner (src/api/services.ts); workers only have BullMQ's lazy removal
  const stop = startRetentionCleaner(
    sys.queue,
    sys.config.retentionMs,
    sys.config.cleanIntervalMs,
    createLogger({ logLevel: 'silent' }),
  );
  try {
    const id = await sys.enqueue(tinyWorkflow());
    const job = await finished(id);
    expect(await job.getState()).toBe('completed');
    await waitFor(
      'the job to be removed',
      async () => ((await sys.queue.getJob(id)) === undefined ? true : undefined),
      { timeoutMs: 10_000 },
    );
  } finally {
    stop();
  }
});
