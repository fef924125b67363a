import { Job } from 'bullmq';
import IORedis from 'ioredis';
import { jobKey } from '../src/queue';
import { createSimulator } from '../src/simulator/server';
import { startSystem, type TestSystem } from './helpers/system';
import { waitFor } from './helpers/wait';
import { killAll, spawnWorker, type WorkerProcess } from './helpers/worker-process';
import { sleepWorkflow } from './helpers/workflows';
import type { JobData, JobResult } from '../src/job/data';

/**
 * What Redis's `appendfsync everysec` may lose, made deterministic. An OS crash (not a
 * process kill: see test/chaos/scenario.ts) can lose the last ~1 s of acknowledged writes.
 * The one loss the lifecycle cannot absorb is the `status: submitting` write of rule 1
 * ("store the prompt id before any network call"): if it is lost after POST /prompt
 * reached ComfyUI, the next worker sees a job without a prompt id. It would submit the
 * workflow again, were the prompt id not derived from the job (`promptIdFor`): the next
 * worker computes the same id, finds it in ComfyUI and follows it. This test replays
 * exactly that: a worker dies right after its POST, and the job's data is put back as it
 * was before the pickup.
 */

let sys: TestSystem;
let redis: IORedis;
const procs: WorkerProcess[] = [];

beforeAll(async () => {
  sys = await startSystem();
  redis = new IORedis(sys.redis.url);
});
afterAll(async () => {
  await killAll(procs);
  redis?.disconnect();
  await sys?.close();
});

/**
 * Runs a job on a worker (env `envA`) that dies right after its POST, puts the job's data
 * back as it was before that pickup (what Redis lost), and lets a worker with `envB` take it.
 */
async function loseSubmittingWrite(envA: Record<string, string>, envB: Record<string, string>) {
  const id = await sys.enqueue(sleepWorkflow(1, 'lost-write'));
  const before = (await redis.hget(jobKey(sys.config, id), 'data'))!; // as queued
  const a = spawnWorker({ ...sys.env, ...envA, COMFYQ_CRASH_AT: 'after-post' });
  procs.push(a);
  a.ready.catch(() => undefined);
  expect((await a.exited).signal).toBe('SIGKILL');
  const first = ((await Job.fromId<JobData, JobResult>(sys.queue, id))!.data as JobData).state;
  expect(first).toMatchObject({ status: 'submitting' });

  // Redis "loses" the last second: the pickup's writes never happened
  await redis.hset(jobKey(sys.config, id), 'data', before);

  const b = spawnWorker({ ...sys.env, ...envB });
  procs.push(b);
  await waitFor(
    'the job to complete',
    async () => ((await sys.queue.getJobState(id)) === 'completed' ? true : undefined),
    { timeoutMs: 20_000 },
  );
  const done = (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
  expect(done.data.state.promptId).toBe(first.promptId);
  expect((await sys.queue.getJobLogs(id)).logs.join('\n')).toMatch(/found in ComfyUI/);
  b.proc.kill('SIGTERM');
  await b.exited;
  return { first, done };
}

const total = (executions: Record<string, number>) =>
  Object.values(executions).reduce((x, y) => x + y, 0);

test('a lost "submitting" write does not run the workflow twice', async () => {
  const before = total(sys.sim.executions());
  const { first } = await loseSubmittingWrite({ WORKER_NAME: 'lost-a' }, { WORKER_NAME: 'lost-b' });
  const executions = sys.sim.executions();
  console.log(`lost "submitting" write: executions ${JSON.stringify(executions)}`);
  expect(total(executions) - before).toBe(1);
  expect(executions[first.promptId!]).toBe(1);
});

test('the prompt is found on another ComfyUI instance than the one the next worker picks', async () => {
  const other = await createSimulator({ progressIntervalMs: 50 });
  try {
    const before = total(sys.sim.executions());
    // worker A knows only the system's simulator; B prefers `other` (first, equally free)
    const { first, done } = await loseSubmittingWrite(
      { WORKER_NAME: 'lost-c', COMFYUI_URL: sys.sim.url },
      { WORKER_NAME: 'lost-d', COMFYUI_URL: `${other.url},${sys.sim.url}` },
    );
    expect(done.data.state.comfyuiUrl).toBe(sys.sim.url);
    expect(sys.sim.executions()[first.promptId!]).toBe(1);
    expect(total(sys.sim.executions()) - before).toBe(1);
    expect(other.executions()).toEqual({});
  } finally {
    await other.close();
  }
});
