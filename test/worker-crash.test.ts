import { Job } from 'bullmq';
import { startSystem, type TestSystem } from './helpers/system';
import { waitFor } from './helpers/wait';
import { killAll, spawnWorker, type WorkerProcess } from './helpers/worker-process';
import { sleepWorkflow, tinyOutput, tinyWorkflow } from './helpers/workflows';
import type { JobData, JobResult } from '../src/job/data';

/**
 * Real worker processes killed with SIGKILL at the dangerous moments. After each, another
 * worker must finish the job with exactly one execution of its prompt in ComfyUI.
 */
let sys: TestSystem;
const procs: WorkerProcess[] = [];

beforeAll(async () => {
  sys = await startSystem();
});
afterEach(async () => {
  await killAll(procs);
});
afterAll(async () => {
  await sys?.close();
});

function worker(env: Record<string, string> = {}): WorkerProcess {
  const w = spawnWorker({ ...sys.env, ...env });
  procs.push(w);
  return w;
}

async function job(id: string) {
  return (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
}

async function finished(id: string) {
  await (await job(id)).waitUntilFinished(sys.events).catch(() => undefined);
  return job(id);
}

/** resolves with the prompt id once the simulator has started executing it */
function executing(id: string) {
  return waitFor('the prompt to start executing', async () => {
    const p = (await job(id)).data.state.promptId;
    return p && sys.sim.executions()[p] ? p : undefined;
  });
}

test('SIGKILL mid-job: a second worker resumes the same prompt; one execution', async () => {
  const a = worker();
  await a.ready;
  const id = await sys.enqueue(sleepWorkflow(2, 'crash-kill'));
  const promptId = await executing(id);
  a.proc.kill('SIGKILL');
  await a.exited;
  const b = worker();
  await b.ready;
  const t0 = Date.now();
  const done = await finished(id);
  console.log(
    `SIGKILL → completed by the second worker in ${Date.now() - t0} ms (LOCK_DURATION_MS=${sys.env.LOCK_DURATION_MS})`,
  );
  expect(await done.getState()).toBe('completed');
  expect(done.data.state).toMatchObject({
    promptId,
    recoveries: 1,
    resubmissions: 0,
    status: 'completed',
  });
  expect(sys.sim.executions()[promptId]).toBe(1);
  expect((await sys.queue.getJobLogs(id)).logs.join('\n')).toContain('(stall)');
});

test.each(['after-prompt-stored', 'after-post'])(
  'killed in the crash window %s: still exactly one execution',
  async (point) => {
    const a = worker({ COMFYQ_CRASH_AT: point });
    await a.ready;
    const id = await sys.enqueue(tinyWorkflow(`crash-${point}`));
    const exit = await a.exited;
    expect(exit.signal).toBe('SIGKILL');
    const before = (await job(id)).data.state;
    expect(before).toMatchObject({ status: 'submitting' });
    const b = worker();
    await b.ready;
    const done = await finished(id);
    expect(await done.getState()).toBe('completed');
    expect(done.data.state.promptId).toBe(before.promptId);
    expect(done.data.state.resubmissions).toBe(0);
    expect(sys.sim.executions()[before.promptId!]).toBe(1);
  },
);

test('killed after the outcome was saved, before BullMQ finished the job: completed with its outputs, no second run', async () => {
  const a = worker({ COMFYQ_CRASH_AT: 'after-outcome-saved' });
  await a.ready;
  const id = await sys.enqueue(tinyWorkflow('crash-outcome'));
  expect((await a.exited).signal).toBe('SIGKILL');
  const before = await job(id);
  expect(before.data.state.status).toBe('completed');
  expect(await before.getState()).toBe('active'); // BullMQ never heard of the outcome
  const b = worker();
  await b.ready;
  const done = await finished(id);
  expect(await done.getState()).toBe('completed');
  // the outputs come from the return value the outcome's write stored, not from ComfyUI
  expect(done.returnvalue.outputs).toEqual([tinyOutput('crash-outcome')]);
  expect(sys.sim.executions()[done.data.state.promptId!]).toBe(1);
});

test('killed after a failure was saved, before BullMQ failed the job: failed with its error, not retried', async () => {
  const a = worker({ COMFYQ_CRASH_AT: 'after-outcome-saved' });
  await a.ready;
  const id = await sys.enqueue(tinyWorkflow('../crash-failed'));
  expect((await a.exited).signal).toBe('SIGKILL');
  const before = await job(id);
  expect(before.data.state.status).toBe('failed');
  expect(before.failedReason).toMatch(/^execution_error: /); // written with the outcome
  const b = worker();
  await b.ready;
  const done = await finished(id);
  expect(await done.getState()).toBe('failed');
  expect(done.data.state.generation).toBeUndefined(); // the same run, not a new generation
  expect(done.data.state.error).toEqual(before.data.state.error);
  expect(sys.sim.executions()[before.data.state.promptId!]).toBe(1);
});

test('a retried job killed after its new prompt id was stored: the next worker follows that prompt; one execution', async () => {
  const a = worker();
  await a.ready;
  const id = await sys.enqueue(tinyWorkflow('../crash-retry'));
  const failed = await finished(id);
  expect(await failed.getState()).toBe('failed');
  a.proc.kill('SIGTERM');
  await a.exited;
  const first = failed.data.state.promptId!;

  await failed.retry('failed'); // what Bull Board's button and POST /v1/jobs/:id/retry do
  const b = worker({ COMFYQ_CRASH_AT: 'after-prompt-stored' });
  expect((await b.exited).signal).toBe('SIGKILL');
  const stored = (await job(id)).data.state;
  expect(stored).toMatchObject({ status: 'submitting', generation: 1 });
  expect(stored.promptId).not.toBe(first);

  const c = worker();
  await c.ready;
  const done = await finished(id);
  expect(done.data.state).toMatchObject({ status: 'failed', generation: 1 });
  expect(done.data.state.promptId).toBe(stored.promptId);
  expect(done.data.workflow).not.toBeNull(); // a failed job keeps its workflow
  expect(sys.sim.executions()[first]).toBe(1);
  expect(sys.sim.executions()[stored.promptId!]).toBe(1);
});

test('recovered after the cutoff: failed recovery_cutoff, and its pending prompt is gone from ComfyUI', async () => {
  // keep ComfyUI busy so the job's prompt stays pending
  const blocker = await fetch(`${sys.sim.url}/prompt`, {
    method: 'POST',
    body: JSON.stringify({ prompt: sleepWorkflow(30, 'blocker') }),
  }).then((r) => r.json() as Promise<{ prompt_id: string }>);
  const a = worker({ RECOVERY_CUTOFF_MS: '1000' });
  await a.ready;
  const id = await sys.enqueue(tinyWorkflow('crash-cutoff'));
  const promptId = await waitFor('the prompt to be pending in ComfyUI', async () => {
    const s = (await job(id)).data.state;
    return s.status === 'submitted' ? s.promptId : undefined;
  });
  a.proc.kill('SIGKILL');
  await a.exited;
  const b = worker({ RECOVERY_CUTOFF_MS: '1000' });
  await b.ready;
  const done = await finished(id);
  expect(await done.getState()).toBe('failed');
  expect(done.data.state.error).toMatchObject({ code: 'recovery_cutoff' });
  expect(done.failedReason).toMatch(/^recovery_cutoff: .*RECOVERY_CUTOFF_MS/);
  expect(done.attemptsMade).toBe(1);
  const queue = (await fetch(`${sys.sim.url}/queue`).then((r) => r.json())) as {
    queue_pending: unknown[][];
  };
  expect(queue.queue_pending.map((e) => e[1])).not.toContain(promptId);
  expect(sys.sim.executions()[promptId]).toBeUndefined();
  await fetch(`${sys.sim.url}/interrupt`, {
    method: 'POST',
    body: JSON.stringify({ prompt_id: blocker.prompt_id }),
  });
});

test('SIGTERM hands the job back at once: the running second worker resumes it; one execution', async () => {
  const a = worker({ WORKER_NAME: 'term-a' });
  const b = worker({ WORKER_NAME: 'term-b' });
  await Promise.all([a.ready, b.ready]);
  const id = await sys.enqueue(sleepWorkflow(3, 'crash-term'));
  const promptId = await executing(id);
  const holderName = (await job(id)).processedBy;
  const [holder, other] = holderName === 'term-a' ? [a, b] : [b, a];
  const t0 = Date.now();
  holder.proc.kill('SIGTERM');
  await waitFor(
    'the other worker to pick the job up',
    async () => ((await job(id)).data.state.attempts >= 2 ? true : undefined),
    { everyMs: 5 },
  );
  console.log(`SIGTERM → resumed by the other worker in ${Date.now() - t0} ms`);
  const exit = await holder.exited;
  expect(exit.code).toBe(0);
  const done = await finished(id);
  expect(await done.getState()).toBe('completed');
  expect(done.processedBy).toBe(other === a ? 'term-a' : 'term-b');
  expect(done.data.state).toMatchObject({ promptId, recoveries: 1 });
  expect(done.stalledCounter).toBe(0);
  expect(sys.sim.executions()[promptId]).toBe(1);
  expect((await sys.queue.getJobLogs(id)).logs.join('\n')).toContain('handed back');
});
