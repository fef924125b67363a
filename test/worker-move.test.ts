import { Job } from 'bullmq';
import type { Simulator } from '../src/simulator/server';
import { durations, monitorInstances } from './helpers/instance-monitor';
import { startSystem, type TestSystem } from './helpers/system';
import { waitFor } from './helpers/wait';
import { killAll, spawnWorker, type WorkerProcess } from './helpers/worker-process';
import { sleepWorkflow } from './helpers/workflows';
import type { JobData, JobResult } from '../src/job/data';

/**
 * Moving a pending prompt (DESIGN "Moving a pending prompt"): with WORKER_CONCURRENCY=2,
 * prompts wait in an instance's queue; when another instance goes idle, a prompt still
 * pending is moved there (deleted where it waits, submitted under the same id on the idle
 * one). No instance holds a pending prompt for more than 0.5 s while another idles, and a
 * prompt that starts just as it is being moved is followed where it runs, not run twice.
 */
let sys: TestSystem;
let sims: Simulator[];
const procs: WorkerProcess[] = [];

beforeAll(async () => {
  // three instances; locks (and slot leases) that survive a loaded machine's event-loop stalls
  sys = await startSystem(
    { WORKER_CONCURRENCY: '2', LOCK_DURATION_MS: '5000', STALLED_INTERVAL_MS: '2000' },
    {},
    3,
  );
  sims = sys.sims;
});
afterAll(async () => {
  await killAll(procs);
  await sys?.close();
});

interface ComfyQueue {
  queue_running: [number, string][];
  queue_pending: [number, string][];
}

const comfyQueue = async (url: string) =>
  (await (await fetch(`${url}/queue`)).json()) as ComfyQueue;

async function settle(ids: string[]) {
  return Promise.all(
    ids.map(async (id) => {
      await (await Job.fromId(sys.queue, id))!.waitUntilFinished(sys.events).catch(() => 0);
      return (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
    }),
  );
}

/** how many times each prompt started, summed over every instance */
function executionsOf(promptId: string): number {
  return sims.reduce((n, s) => n + (s.executions()[promptId] ?? 0), 0);
}

test('a prompt that starts on its instance just as it is being moved is followed there, run once', async () => {
  // two instances, one worker process that stops itself (SIGSTOP) once it has saved a
  // move's intent, before its delete: the prompt is let start where it waits meanwhile
  const urls = sims.slice(0, 2).map((s) => s.url);
  const child = spawnWorker({
    ...sys.env,
    COMFYUI_URL: urls.join(','),
    WORKER_NAME: 'mover',
    COMFYQ_PAUSE_AT: 'move-intent-saved',
  });
  procs.push(child);
  await child.ready;
  // a long prompt on one instance (X), then three short ones: X has one slot left and the
  // other instance (Y) two, so one short prompt waits on X behind the long one while Y runs
  // the other two and then idles: that one is moved
  const long = await sys.enqueue(sleepWorkflow(3, 'race-long'));
  await waitFor('the long prompt to run', async () => {
    const j = await Job.fromId<JobData>(sys.queue, long);
    return j?.data.state.status === 'running' ? true : undefined;
  });
  const shorts = await Promise.all(
    [1, 1.01, 1.02].map((s, i) => sys.enqueue(sleepWorkflow(s, `race-short${i}`))),
  );
  await child.waitForLog('fault injection: SIGSTOP');
  const moving = await waitFor('the job whose move is under way', async () => {
    for (const id of shorts) {
      const j = await Job.fromId<JobData>(sys.queue, id);
      if (j?.data.state.movedFrom) return j;
    }
    return undefined;
  });
  const { promptId, movedFrom } = moving.data.state;
  const from = movedFrom!.url;
  // the worker is stopped before its delete: the prompt starts where it waited (X's long
  // prompt ends); only then does the delete arrive, and a running prompt is not removed
  await waitFor(
    'the prompt to start where it waited',
    async () => (await comfyQueue(from)).queue_running.some((e) => e[1] === promptId),
    { timeoutMs: 60_000 },
  );
  child.proc.kill('SIGCONT');

  const jobs = await settle([long, ...shorts]);
  for (const j of jobs) expect(j.data.state.status).toBe('completed');
  const moved = jobs.find((j) => j.id === moving.id)!;
  expect(moved.data.state).toMatchObject({ comfyuiUrl: from, resubmissions: 0 });
  expect(moved.data.state.movedFrom).toBeUndefined();
  expect(moved.data.state.moves ?? 0).toBe(0);
  for (const j of jobs) expect(executionsOf(j.data.state.promptId!)).toBe(1);
  const where = sims.find((s) => s.url === from)!;
  expect(where.executions()[promptId!]).toBe(1);
  expect(child.output()).toContain('the pending prompt started or ended before it could be moved');
  child.proc.kill('SIGKILL');
  await child.exited;
}, 120_000);

test('WORKER_CONCURRENCY=2 × 3 instances, jobs of unequal lengths: no prompt pending over 0.5 s while an instance idles; each runs once', async () => {
  const urls = sims.map((s) => s.url);
  for (const name of ['m-a', 'm-b'])
    await sys.startWorker({ COMFYUI_URL: urls.join(','), WORKER_NAME: name });
  const monitor = monitorInstances(urls, {
    backlog: async () => (await sys.queue.getJobCounts('wait')).wait,
  });
  // a mixed backlog, then a tail that leaves a prompt waiting: a long prompt on one
  // instance, then five short ones for the five free slots, so one short one waits behind
  // the long one while the other two instances run two each and then idle (for ~2 s
  // without moves)
  const mixed = await Promise.all(
    durations(24, 0.3, 2.5, 13).map((s, i) => sys.enqueue(sleepWorkflow(s, `mv${i}`))),
  );
  const first = await settle(mixed);
  const long = await sys.enqueue(sleepWorkflow(3, 'mv-long'));
  await waitFor('the long prompt to run', async () => {
    const j = await Job.fromId<JobData>(sys.queue, long);
    return j?.data.state.status === 'running' ? true : undefined;
  });
  const tail = await Promise.all(
    [0.5, 0.51, 0.52, 0.53, 0.54].map((s, i) => sys.enqueue(sleepWorkflow(s, `mv-tail${i}`))),
  );
  const jobs = [...first, ...(await settle([long, ...tail]))];
  const m = await monitor.stop();
  const moves = jobs.reduce((n, j) => n + (j.data.state.moves ?? 0), 0);
  console.log(
    `move: ${jobs.length} jobs of 0.3–3 s, 3 instances × 2 slots: ${moves} prompts moved; ` +
      `worst pending-while-idle ${m.worstPendingWhileIdleMs} ms; most prompts on one instance ${m.maxPerInstance} (${m.samples} samples)`,
  );
  for (const j of jobs) expect(j.data.state.status).toBe('completed');
  for (const j of jobs) expect(j.data.state.movedFrom).toBeUndefined();
  // every prompt ran exactly once, across all instances (a moved one only where it went)
  for (const j of jobs) expect(executionsOf(j.data.state.promptId!)).toBe(1);
  expect(moves).toBeGreaterThanOrEqual(1); // the tail's waiting prompt
  expect(m.maxPerInstance).toBeLessThanOrEqual(2);
  expect(m.worstPendingWhileIdleMs).toBeLessThanOrEqual(500);
}, 180_000);
