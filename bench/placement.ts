/**
 * Placement across ComfyUI instances and hand-off (issue #13), with real worker and
 * simulator processes:
 *
 * - placement: 3 workers × 3 simulators, WORKER_CONCURRENCY=1, 60 jobs of 0.5–3 s (quick:
 *   at half length) from a fixed seed: the makespan as a ratio of the ideal (sum of the
 *   durations / instances), the seconds an instance sat idle while jobs waited (summed over
 *   instances) and the longest a prompt was pending on one instance while another idled,
 *   from every instance's `/queue` sampled each 50 ms. Then the same with
 *   WORKER_CONCURRENCY=4 (prompts wait in ComfyUI's queues) followed by a tail that strands
 *   prompts behind a long one: the longest pending-while-idle and the prompts moved to an
 *   idle instance (DESIGN "Moving a pending prompt"), and the same without moves.
 * - hand-off: a 10 s prompt (quick: 6 s) whose worker gets SIGTERM, then a 20 s one whose
 *   worker gets kill -9, 2 s in: how long after the simulator finished the prompt the job
 *   is completed by the worker that took over (defaults: POLL_INTERVAL_MS 1000).
 */
import { loadConfig } from '../src/config';
import { IMAGE_JOB_NAME, type ImageQueue } from '../src/queue';
import type { ManagedChild } from '../src/run/child';
import { durations, monitorInstances } from '../test/helpers/instance-monitor';
import {
  benchJob,
  fmt,
  killHard,
  producer,
  sleep,
  sleepingWorkflow,
  startBackend,
  startRedis,
  startSimulator,
  startWorker,
  waitUntil,
} from './lib';
import type { BenchRedis, Figure, Scope, SimProcess } from './lib';

/** One placement run: 3 worker processes on their own queue, `count` jobs, every /queue sampled. */
async function placementRun(
  scope: Scope,
  redis: BenchRedis,
  urls: string[],
  speed: number,
  concurrency: number,
  { moves = true, count = 60 } = {},
) {
  const name = `placement-c${concurrency}${moves ? '' : '-nomove'}`;
  const env = redis.env(name, {
    COMFYUI_URL: urls.join(','),
    WORKER_CONCURRENCY: String(concurrency),
    COMFYUI_MOVE_PENDING: moves ? '1' : '0',
  });
  const workers = await Promise.all([0, 1, 2].map((i) => startWorker(scope, `${name}-${i}`, env)));
  const queue = producer(scope, env, 'placement');
  const seconds = durations(count, 0.5, 3, 7).map((s) => s * speed);
  const monitor = monitorInstances(urls, {
    backlog: async () => (await queue.getJobCounts('wait')).wait,
  });
  const t0 = Date.now();
  const jobs = await Promise.all(
    seconds.map((s) => queue.add(IMAGE_JOB_NAME, benchJob(sleepingWorkflow(s, name)))),
  );
  const finished = await waitUntil('every placement job to finish', 600_000, async () => {
    const c = await queue.getJobCounts('completed', 'failed');
    return c.completed + c.failed >= jobs.length ? c : undefined;
  });
  const done = await Promise.all(jobs.map((j) => queue.getJob(j.id!)));
  const makespan = Math.max(...done.map((j) => j?.finishedOn ?? 0)) - t0;
  const ideal = (seconds.reduce((a, b) => a + b, 0) * 1000) / urls.length;
  const tail = concurrency > 1 ? await strandedTail(queue, urls.length * concurrency, speed) : [];
  const m = await monitor.stop();
  const moved = [...done, ...tail].reduce((n, j) => n + (j?.data.state.moves ?? 0), 0);
  // the next run's workers have the instances to themselves
  await Promise.all(workers.map((w) => w.stop('SIGTERM', 20_000).catch(() => undefined)));
  return { makespan, ideal, ratio: makespan / ideal, m, moves: moved, failed: finished.failed };
}

/**
 * A tail that strands prompts behind a long one: a 3 s prompt on one instance, then one
 * 0.5 s prompt per free slot; the long one's instance holds its share pending while the
 * others run theirs and idle (for about a second without moves).
 */
async function strandedTail(queue: ImageQueue, slots: number, speed: number) {
  const add = (s: number, name: string) =>
    queue.add(IMAGE_JOB_NAME, benchJob(sleepingWorkflow(s * speed, name)));
  const long = await add(3, 'tail-long');
  await waitUntil("the tail's long prompt to run", 60_000, async () => {
    const j = await queue.getJob(long.id!);
    return j?.data.state.status === 'running' ? true : undefined;
  });
  // distinct lengths: a node with the inputs of the previous prompt would be cached
  const short = await Promise.all(
    Array.from({ length: slots - 1 }, (_, i) => add(0.5 + i / 100, 'tail-short')),
  );
  const ids = [long, ...short].map((j) => j.id!);
  await waitUntil('the tail to finish', 120_000, async () => {
    const js = await Promise.all(ids.map((id) => queue.getJob(id)));
    return js.every((j) => j?.finishedOn) ? true : undefined;
  });
  return Promise.all(ids.map((id) => queue.getJob(id)));
}

export const placement: Figure = async (ctx, scope) => {
  const speed = ctx.quick ? 0.5 : 1;
  const redis = await startRedis(scope, 'redis-placement');
  const sims = await Promise.all(
    [0, 1, 2].map((i) => startSimulator(scope, { name: `simulator-place-${i}` })),
  );
  const urls = sims.map((s) => s.url);
  const one = await placementRun(scope, redis, urls, speed, 1);
  ctx.log(`  placement: makespan ${fmt(one.makespan / 1000)} s, ideal ${fmt(one.ideal / 1000)} s`);
  // WORKER_CONCURRENCY=4: prompts wait in ComfyUI's queues; moved when another instance
  // idles, and (baseline, same run) with COMFYUI_MOVE_PENDING=0
  // (quick: 15 jobs before the tail, which is what strands prompts)
  const count = ctx.quick ? 15 : 60;
  const four = await placementRun(scope, redis, urls, speed, 4, { count });
  const still = await placementRun(scope, redis, urls, speed, 4, { count, moves: false });
  ctx.log(
    `  placement ×4: pending while another idled ${four.m.worstPendingWhileIdleMs} ms (${four.moves} moves), without moves ${still.m.worstPendingWhileIdleMs} ms`,
  );
  const jobs = `60 jobs of ${0.5 * speed}–${3 * speed} s`;
  return [
    {
      id: 'placement',
      figure: `placement, 3 workers × 3 instances, ${jobs}`,
      value: `makespan ${fmt(one.makespan / 1000)} s / ideal ${fmt(one.ideal / 1000)} s; idle while jobs waited ${fmt(one.m.idleWhileBacklogMs / 1000)} s; worst pending while another idled ${one.m.worstPendingWhileIdleMs} ms`,
      ratio: one.ratio,
      target: 'makespan ≤ 1.15 × ideal, pending while another idles ≤ 500 ms',
      met: one.ratio <= 1.15 && one.m.worstPendingWhileIdleMs <= 500 && one.failed === 0,
      data: { makespan: one.makespan, ideal: one.ideal, ...one.m, failed: one.failed },
    },
    {
      id: 'placement-concurrency-4',
      figure: `placement, WORKER_CONCURRENCY=4 (12 slots), 3 workers × 3 instances, ${count} jobs of ${0.5 * speed}–${3 * speed} s, then a ${3 * speed} s prompt and 11 of ${0.5 * speed} s (some stranded behind it)`,
      value: `worst pending while another idled ${four.m.worstPendingWhileIdleMs} ms; ${four.moves} prompts moved; makespan ${fmt(four.makespan / 1000)} s / ideal ${fmt(four.ideal / 1000)} s`,
      baseline: `COMFYUI_MOVE_PENDING=0: ${still.m.worstPendingWhileIdleMs} ms; makespan ${fmt(still.makespan / 1000)} s`,
      ratio: four.ratio,
      target: 'pending while another idles ≤ 500 ms',
      met: four.m.worstPendingWhileIdleMs <= 500 && four.failed === 0,
      data: {
        makespan: four.makespan,
        ideal: four.ideal,
        moves: four.moves,
        ...four.m,
        failed: four.failed,
      },
    },
  ];
};

/**
 * How long after the simulator ended the prompt its job finished, its holder signalled 2 s
 * into the prompt (a kill -9's prompt outlasts the recovery: lock 10 s + stalled check 5 s).
 */
async function handOffOnce(
  scope: Scope,
  sim: SimProcess,
  env: Record<string, string>,
  signal: 'SIGTERM' | 'SIGKILL',
  seconds: number,
): Promise<number> {
  const workers = new Map<string, ManagedChild>();
  for (const n of ['a', 'b']) {
    const name = `handoff-${signal}-${n}`;
    workers.set(name, await startWorker(scope, name, env));
  }
  const queue = producer(scope, env, 'placement');
  const wf = sleepingWorkflow(seconds, `handoff-${signal}`);
  wf['1'].inputs.color = signal === 'SIGTERM' ? 1 : 2; // not served from the cache
  const job = await queue.add(IMAGE_JOB_NAME, benchJob(wf));
  const holder = await waitUntil('the job to run', 30_000, async () => {
    const j = await queue.getJob(job.id!);
    return j?.data.state.status === 'running' ? j.processedBy : undefined;
  });
  await sleep(2_000);
  const w = workers.get(holder!)!;
  if (signal === 'SIGKILL') killHard(w);
  else await w.stop('SIGTERM', 20_000).catch(() => undefined);
  const done = await waitUntil(
    'the job to finish',
    120_000,
    async () => {
      const j = await queue.getJob(job.id!);
      return j?.finishedOn ? j : undefined;
    },
    20,
  );
  const timing = await sim.timing(done.data.state.promptId!);
  return timing ? done.finishedOn! - timing.end : NaN;
}

export const handoffCompletion: Figure = async (ctx, scope) => {
  const seconds = ctx.quick ? 6 : 10;
  const backend = await startBackend(scope, {
    redis: 'redis-handoff',
    simulator: 'simulator-handoff',
  });
  const { sim } = backend;
  const base = backend.env('handoff');
  const term = await handOffOnce(
    scope,
    sim,
    { ...base, QUEUE_NAME: 'ho-term' },
    'SIGTERM',
    seconds,
  );
  const kill = await handOffOnce(scope, sim, { ...base, QUEUE_NAME: 'ho-kill' }, 'SIGKILL', 20);
  const pollMs = loadConfig(base).pollIntervalMs;
  ctx.log(`  hand-off completion: SIGTERM ${term} ms, kill -9 ${kill} ms`);
  return [
    {
      id: 'handoff-completion',
      figure: `completion seen after a hand-off (SIGTERM: ${seconds} s prompt; kill -9: 20 s)`,
      value: `SIGTERM ${term} ms, kill -9 ${kill} ms after the simulator finished`,
      target: `≤ POLL_INTERVAL_MS (${pollMs} ms)`,
      met: term <= pollMs && kill <= pollMs,
      data: { sigtermMs: term, killMs: kill, pollIntervalMs: pollMs },
    },
  ];
};
