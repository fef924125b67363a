/**
 * Redis commands, counted with MONITOR (client commands vs commands run inside Lua):
 *
 * - per job: jobs run one at a time, each counted from just before its `queue.add` to just
 *   before the next one, for a raw BullMQ no-op job and for ours with 1 s and 30 s prompts
 *   that report progress (a tick every 50 ms). Idle polling is switched off for this figure
 *   (DRAIN_DELAY_S=300, STALLED_INTERVAL_MS=300000, and the webhook queue's commands are
 *   left out) so that every command counted belongs to a job; lock renewals do count.
 * - idle: one real worker process per profile, nothing to do, each on its own redis-server,
 *   counted over a window and scaled to a minute: the project defaults and the low-cost
 *   profile of docs/DEPLOY.md (DRAIN_DELAY_S=30, STALLED_INTERVAL_MS=30000,
 *   LOCK_DURATION_MS=30000).
 */
import { IMAGE_JOB_NAME, jobKey, type ImageQueue } from '../src/queue';
import { webhookQueueName } from '../src/webhooks/queue';
import {
  benchJob,
  fmt,
  producer,
  sleep,
  sleepingWorkflow,
  startBackend,
  startRawWorker,
  startRedis,
  startSimulator,
  startWorker,
  waitUntil,
} from './lib';
import type { BenchRedis, Figure, Row } from './lib';
import {
  commandstatsTotal,
  CommandCounter,
  describeCounts,
  perUnit,
  type CommandCounts,
} from './monitor';
import { type Workflow } from '../src/job/data';

const QUIET = {
  DRAIN_DELAY_S: '300',
  STALLED_INTERVAL_MS: '300000',
  CLEAN_INTERVAL_MS: '3600000',
};

export const commandsPerJob: Figure = async (ctx, scope) => {
  const nRaw = ctx.quick ? 5 : 10;
  const nShort = ctx.quick ? 3 : 5;
  const longS = ctx.quick ? 10 : 30;
  const nLong = ctx.quick ? 1 : 2;
  const { redis, env } = await startBackend(scope);
  // the worker process's webhook queue is idle polling here: left out (see the idle figure)
  const counter = await CommandCounter.start(redis, scope, onQueue(webhookQueueName('cmd-ours')));
  const rawEnv = env('cmd-raw', QUIET);
  const oursEnv = env('cmd-ours', QUIET);
  await Promise.all([
    startRawWorker(scope, 'cmd-raw-worker', rawEnv),
    startWorker(scope, 'cmd-worker', oursEnv),
  ]);
  const rawQueue = producer(scope, rawEnv, 'producer');
  const oursQueue = producer(scope, oursEnv, 'producer');
  await sleep(1_000); // let start-up commands (script loads, first clean) pass

  const quietFrom = Date.now();
  await sleep(2_000);
  const noise = counter.count(quietFrom);

  const raw = await perJob(redis, counter, rawQueue, nRaw, () => sleepingWorkflow(0, 'unused'));
  ctx.log(`  commands: raw no-op job ${fmt(raw.counts.client)} client commands`);
  const short = await perJob(redis, counter, oursQueue, nShort, () => sleepingWorkflow(1, 'cmd'));
  ctx.log(`  commands: 1 s prompt ${fmt(short.counts.client)} client commands`);
  const long = await perJob(redis, counter, oursQueue, nLong, () => sleepingWorkflow(longS, 'cmd'));
  ctx.log(`  commands: ${longS} s prompt ${fmt(long.counts.client)} client commands`);

  /**
   * Lock renewals are the worker's, not the job's: one extendLocks every LOCK_DURATION_MS/2
   * renews all its active jobs, so a job's share is 1/N with N jobs at once (here N = 1,
   * the worst case). The target is checked on the job's own commands; the total is shown.
   */
  const row = (id: string, label: string, c: PerJob, n: number): Row => {
    const renewals = c.counts.byName.extendLocks ?? 0;
    const own = c.counts.client - renewals;
    return {
      id,
      figure: `client Redis commands per job, ${label}`,
      value: `${fmt(own)} of the job + ${fmt(renewals)} lock renewals of its worker = ${fmt(c.counts.client)} (+${fmt(c.counts.lua, 0)} in Lua)`,
      baseline: `raw no-op job ${fmt(raw.counts.client)} (+${fmt(raw.counts.lua, 0)} in Lua)`,
      ratio: c.counts.client / raw.counts.client,
      target: '≤ 12, same for both durations',
      met: own <= 12,
      data: { jobs: n, ...c },
      note: `${describeCounts(c.counts.byName)}. One extendLocks renews every active job of a worker: with N jobs at once a job's share is 1/N; "met" counts the job's own commands`,
    };
  };
  return [
    row('commands-1s', '1 s prompt with progress', short, nShort),
    row('commands-long', `${longS} s prompt with progress`, long, nLong),
    {
      id: 'commands-raw',
      figure: '  (baseline detail) raw BullMQ no-op job',
      value: `${fmt(raw.counts.client)} (+${fmt(raw.counts.lua, 0)} in Lua)`,
      target: '—',
      data: { jobs: nRaw, noiseWhileIdle: noise, ...raw },
      note: describeCounts(raw.counts.byName),
    },
  ];
};

/** MONITOR filter: the commands on a given queue's keys. */
function onQueue(queueName: string): (args: string[]) => boolean {
  return (args) => args.some((a) => a.includes(`:${queueName}:`));
}

interface PerJob {
  counts: CommandCounts;
  /** INFO commandstats calls per job (client + Lua + the benchmark's own reads) */
  commandstats: number;
}

/** Runs `n` jobs one after the other and averages the commands of their cycles. */
async function perJob(
  redis: BenchRedis,
  counter: CommandCounter,
  queue: ImageQueue,
  n: number,
  workflow: () => Workflow,
): Promise<PerJob> {
  const from = Date.now();
  const statsBefore = await commandstatsTotal(redis);
  for (let i = 0; i < n; i++) {
    const job = await queue.add(IMAGE_JOB_NAME, benchJob(workflow()));
    const key = jobKey({ queuePrefix: queue.opts.prefix!, queueName: queue.name }, job.id!);
    await waitUntil(
      `job ${job.id} finished`,
      120_000,
      () => redis.client.hget(key, 'finishedOn'),
      20,
    );
    const failed = await redis.client.hget(key, 'failedReason');
    if (failed) throw new Error(`job ${job.id} failed: ${failed}`);
  }
  await sleep(500); // the worker's last commands of the cycle (its next blocking wait)
  const to = Date.now();
  const statsAfter = await commandstatsTotal(redis);
  return {
    counts: perUnit(counter.count(from, to), n),
    commandstats: (statsAfter - statsBefore) / n,
  };
}

export const idleCommands: Figure = async (ctx, scope) => {
  const windowS = ctx.quick ? 30 : 60;
  const sim = await startSimulator(scope, { name: 'idle-simulator' });
  const profiles: { id: string; label: string; env: Record<string, string>; target: number }[] = [
    { id: 'idle-default', label: 'defaults', env: {}, target: 30 },
    {
      id: 'idle-low-cost',
      label: 'low-cost profile',
      env: { DRAIN_DELAY_S: '30', STALLED_INTERVAL_MS: '30000', LOCK_DURATION_MS: '30000' },
      target: 6,
    },
  ];
  const measured = await Promise.all(
    profiles.map(async (p) => {
      const redis = await startRedis(scope, `redis-${p.id}`);
      const all = await CommandCounter.start(redis, scope);
      const onWebhooks = onQueue(webhookQueueName('comfyui-jobs'));
      const webhooks = await CommandCounter.start(redis, scope, (args) => !onWebhooks(args));
      await startWorker(
        scope,
        `${p.id}-worker`,
        redis.env('comfyui-jobs', { COMFYUI_URL: sim.url, ...p.env }),
      );
      await sleep(3_000); // start-up: script loads, the first clean and stalled check
      const from = Date.now();
      await sleep(windowS * 1000);
      const to = Date.now();
      const minutes = (to - from) / 60_000;
      return {
        p,
        perMinute: perUnit(all.count(from, to), minutes),
        webhooksPerMinute: perUnit(webhooks.count(from, to), minutes),
      };
    }),
  );
  ctx.log(`  idle: measured over ${windowS} s`);
  return measured.map(({ p, perMinute, webhooksPerMinute }) => ({
    id: p.id,
    figure: `idle Redis commands per minute per worker process, ${p.label}`,
    value: `${fmt(perMinute.client)} /min (+${fmt(perMinute.lua, 0)} in Lua)`,
    target: `≤ ${p.target}`,
    // compared as printed: a window a millisecond short of a minute is not a 7th command
    met: Number(fmt(perMinute.client)) <= p.target,
    data: { windowS, env: p.env, ...perMinute, webhookQueue: webhooksPerMinute },
    note: `${fmt(webhooksPerMinute.client)}/min of them on the webhook queue; ${describeCounts(perMinute.byName)}`,
  }));
};
