import { Job } from 'bullmq';
import { durations, monitorInstances } from './helpers/instance-monitor';
import { startSystem, type TestSystem } from './helpers/system';
import { waitFor } from './helpers/wait';
import { killAll, spawnWorker, type WorkerProcess } from './helpers/worker-process';
import { sleepWorkflow, tinyWorkflow } from './helpers/workflows';
import type { JobData, JobResult } from '../src/job/data';

/**
 * Placement across ComfyUI instances with several workers (DESIGN "Placement across
 * ComfyUI instances"): slots counted for the whole system, spread, dead workers' slots
 * coming back, no-capacity waits that use no attempt.
 */
let sys: TestSystem;
/** issue #13's 0.5–3 s jobs run at half their length, to keep the test's cost bounded */
const SPEED = 0.5;
let urls: string[];
const procs: WorkerProcess[] = [];

beforeAll(async () => {
  // three instances; locks (and slot leases) that survive a loaded machine's event-loop stalls
  sys = await startSystem(
    { WORKER_CONCURRENCY: '1', LOCK_DURATION_MS: '5000', STALLED_INTERVAL_MS: '2000' },
    {},
    3,
  );
  urls = sys.sims.map((s) => s.url);
});
afterAll(async () => {
  await killAll(procs);
  await sys?.close();
});

/** two workers in this process and one child process (the one the second test kills) */
async function startWorkers(): Promise<WorkerProcess> {
  const child = spawnWorker({ ...sys.env, COMFYUI_URL: urls.join(','), WORKER_NAME: 'p-child' });
  procs.push(child);
  for (const name of ['p-a', 'p-b'])
    await sys.startWorker({ COMFYUI_URL: urls.join(','), WORKER_NAME: name });
  await child.ready;
  return child;
}

interface Queue {
  queue_running: unknown[];
}

async function settle(ids: string[]) {
  return Promise.all(
    ids.map(async (id) => {
      await (await Job.fromId(sys.queue, id))!.waitUntilFinished(sys.events).catch(() => 0);
      return (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
    }),
  );
}

/** Enqueues the jobs, watches every instance's /queue, waits for all; `during` runs meanwhile. */
async function placementRun(
  label: string,
  seconds: number[],
  during?: (ids: string[]) => Promise<void>,
) {
  const monitor = monitorInstances(urls, {
    backlog: async () => (await sys.queue.getJobCounts('wait')).wait,
  });
  const t0 = Date.now();
  const ids = await Promise.all(
    seconds.map((s, i) => sys.enqueue(sleepWorkflow(s * SPEED, `${label}${i}`))),
  );
  await during?.(ids);
  const jobs = await settle(ids);
  const makespan = Math.max(...jobs.map((j) => j.finishedOn ?? 0)) - t0;
  const m = await monitor.stop();
  const ideal = (seconds.reduce((a, b) => a + b, 0) * SPEED * 1000) / urls.length;
  console.log(
    `${label}: ${seconds.length} jobs of ${Math.min(...seconds)}–${Math.max(...seconds)} s × ${SPEED}: ` +
      `makespan ${makespan} ms, ideal ${Math.round(ideal)} ms, ratio ${(makespan / ideal).toFixed(2)}; ` +
      `idle while jobs waited ${m.idleWhileBacklogMs} ms; worst pending-while-idle ${m.worstPendingWhileIdleMs} ms (${m.samples} samples)`,
  );
  for (const j of jobs) expect(j.data.state.status).toBe('completed');
  // every prompt ran exactly once, across all instances
  const runs = sys.sims.map((s) => s.executions());
  for (const j of jobs) {
    const p = j.data.state.promptId!;
    expect(runs.reduce((n, r) => n + (r[p] ?? 0), 0)).toBe(1);
  }
  return { jobs, monitor: m };
}

let child: WorkerProcess;

test('3 workers × 3 instances: no instance holds a pending prompt while another idles; no waits use attempts', async () => {
  child = await startWorkers();
  const { jobs, monitor } = await placementRun('place', durations(60, 0.5, 3, 7));
  expect(monitor.maxPerInstance).toBe(1); // WORKER_CONCURRENCY=1: one prompt per instance, system-wide
  expect(monitor.worstPendingWhileIdleMs).toBeLessThanOrEqual(500);
  // the makespan's ratio to the ideal is printed above, not asserted: on a shared machine
  // it measures the load more than placement (1.34–1.99 at load 10–19 on 2 cores, with no
  // prompt ever pending); `npm run bench` holds it to 1.15. Wrong placement is caught by
  // the pending-while-idle bound above and the spread below
  for (const j of jobs) expect(j.data.state.attempts).toBe(1); // waits for a slot are not attempts
  const logs = await Promise.all(jobs.map((j) => sys.queue.getJobLogs(j.id!)));
  for (const l of logs)
    expect(l.logs.filter((x) => x.includes('no free')).length).toBeLessThanOrEqual(1);
  const used = new Set(jobs.map((j) => j.data.state.comfyuiUrl));
  expect(used.size).toBe(3);
}, 180_000);

test('one of the workers SIGKILLed mid-run: its slots come back; every job completes once', async () => {
  const { jobs, monitor } = await placementRun('kill', durations(60, 0.5, 3, 11), async (ids) => {
    await waitFor('a few jobs to finish', async () => {
      const states = await Promise.all(ids.map((id) => sys.queue.getJobState(id)));
      return states.filter((st) => st === 'completed').length >= 6 ? true : undefined;
    });
    child.proc.kill('SIGKILL');
    await child.exited;
  });
  expect(monitor.worstPendingWhileIdleMs).toBeLessThanOrEqual(500);
  expect(jobs.some((j) => j.stalledCounter > 0)).toBe(true); // the child held some of them
}, 180_000);

test('sequential jobs on idle instances land on every instance', async () => {
  const used: string[] = [];
  for (let i = 0; i < 3; i++) {
    const [job] = await settle([await sys.enqueue(tinyWorkflow(`seq${i}`))]);
    expect(job.data.state.status).toBe('completed');
    used.push(job.data.state.comfyuiUrl!);
  }
  expect(new Set(used).size).toBe(3);
});

test('every slot taken: the next job waits without using attempts, with one log line, then runs', async () => {
  const busy = await Promise.all(urls.map((_, i) => sys.enqueue(sleepWorkflow(2, `busy${i}`))));
  await waitFor('every instance to run a prompt', async () => {
    const qs = await Promise.all(
      urls.map(async (u) => ((await (await fetch(`${u}/queue`)).json()) as Queue).queue_running),
    );
    return qs.every((r) => r.length === 1) ? true : undefined;
  });
  const id = await sys.enqueue(tinyWorkflow('no-capacity'));
  const [job] = await settle([id]);
  await settle(busy);
  expect(job.data.state).toMatchObject({ status: 'completed', attempts: 1 });
  expect(job.attemptsStarted).toBe(1); // taken once: no re-takes while it waited
  const logs = (await sys.queue.getJobLogs(id)).logs;
  expect(logs.filter((l) => l.includes('no free'))).toHaveLength(1);
});
