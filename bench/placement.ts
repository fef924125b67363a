/**
 * Placement across ComfyUI instances and hand-off (issue #13), with real worker and
 * simulator processes:
 *
 * - placement: 3 workers × 3 simulators, WORKER_CONCURRENCY=1, 60 jobs of 0.5–3 s (quick:
 *   at half length) from a fixed seed: the makespan as a ratio of the ideal (sum of the
 *   durations / instances), the seconds an instance sat idle while jobs waited (summed over
 *   instances) and the longest a prompt was pending on one instance while another idled,
 *   from every instance's `/queue` sampled each 50 ms.
 * - hand-off: a 10 s prompt (quick: 6 s) whose worker gets SIGTERM, then a 20 s one whose
 *   worker gets kill -9, 2 s in: how long after the simulator finished the prompt the job
 *   is completed by the worker that took over (defaults: POLL_INTERVAL_MS 1000).
 */
import { loadConfig } from '../src/config';
import { createImageQueue, IMAGE_JOB_NAME, newJobData, type ImageQueue } from '../src/queue';
import type { ManagedChild } from '../src/run/child';
import { durations, monitorInstances } from '../test/helpers/instance-monitor';
import {
  fmt,
  killHard,
  serviceEnv,
  sleep,
  sleepingWorkflow,
  startRedis,
  startSimulator,
  startWorker,
  uniqueName,
  waitUntil,
  type Figure,
  type Scope,
  type SimProcess,
} from './lib';

function producer(scope: Scope, env: Record<string, string>): ImageQueue {
  const q = createImageQueue(loadConfig(env));
  q.on('error', () => undefined);
  scope.defer('placement queue', () => q.close());
  return q;
}

export const placement: Figure = async (ctx, scope) => {
  const speed = ctx.quick ? 0.5 : 1;
  const redis = await startRedis(scope, 'redis-placement');
  const sims = await Promise.all(
    [0, 1, 2].map((i) => startSimulator(scope, { name: `simulator-place-${i}` })),
  );
  const urls = sims.map((s) => s.url);
  const env = serviceEnv(redis.url, 'placement', {
    COMFYUI_URL: urls.join(','),
    WORKER_CONCURRENCY: '1',
  });
  await Promise.all([0, 1, 2].map((i) => startWorker(scope, `place-${i}`, env)));
  const queue = producer(scope, env);
  const seconds = durations(60, 0.5, 3, 7).map((s) => s * speed);
  const monitor = monitorInstances(urls, {
    backlog: async () => (await queue.getJobCounts('wait')).wait,
  });
  const t0 = Date.now();
  const jobs = await Promise.all(
    seconds.map((s) =>
      queue.add(
        IMAGE_JOB_NAME,
        newJobData(sleepingWorkflow(s, uniqueName('place')), { jobType: 'bench' }, Date.now()),
      ),
    ),
  );
  const finished = await waitUntil('every placement job to finish', 600_000, async () => {
    const c = await queue.getJobCounts('completed', 'failed');
    return c.completed + c.failed >= jobs.length ? c : undefined;
  });
  const ends = await Promise.all(
    jobs.map(async (j) => (await queue.getJob(j.id!))?.finishedOn ?? 0),
  );
  const m = await monitor.stop();
  const makespan = Math.max(...ends) - t0;
  const ideal = (seconds.reduce((a, b) => a + b, 0) * 1000) / urls.length;
  const ratio = makespan / ideal;
  ctx.log(`  placement: makespan ${fmt(makespan / 1000)} s, ideal ${fmt(ideal / 1000)} s`);
  return [
    {
      id: 'placement',
      figure: `placement, 3 workers × 3 instances, 60 jobs of ${0.5 * speed}–${3 * speed} s`,
      value: `makespan ${fmt(makespan / 1000)} s / ideal ${fmt(ideal / 1000)} s; idle while jobs waited ${fmt(m.idleWhileBacklogMs / 1000)} s; worst pending while another idled ${m.worstPendingWhileIdleMs} ms`,
      ratio,
      target: 'makespan ≤ 1.15 × ideal, pending while another idles ≤ 500 ms',
      met: ratio <= 1.15 && m.worstPendingWhileIdleMs <= 500 && finished.failed === 0,
      data: { makespan, ideal, ...m, failed: finished.failed },
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
  const queue = producer(scope, env);
  const wf = sleepingWorkflow(seconds, uniqueName(`handoff-${signal}`));
  wf['1'].inputs.color = signal === 'SIGTERM' ? 1 : 2; // not served from the cache
  const job = await queue.add(IMAGE_JOB_NAME, newJobData(wf, { jobType: 'bench' }, Date.now()));
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
  const redis = await startRedis(scope, 'redis-handoff');
  const sim = await startSimulator(scope, { name: 'simulator-handoff' });
  const base = serviceEnv(redis.url, 'handoff', { COMFYUI_URL: sim.url });
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
