/**
 * Crash and redeploy recovery with real worker processes and default settings
 * (LOCK_DURATION_MS 10000, STALLED_INTERVAL_MS 5000):
 *
 * - kill -9: two workers; the one holding a running job gets SIGKILL; the time until the
 *   other one takes the job (its `processedOn`), then the job must complete with exactly
 *   one execution of its prompt in the simulator. Full runs kill at three offsets (the
 *   stalled check's phase decides the time), each on its own Redis, side by side.
 * - SIGTERM: the holder gets SIGTERM and hands the job back; the time until the other
 *   worker takes it. A fresh worker is started after each hand-off, so one long prompt is
 *   handed from worker to worker several times; it must still have run once.
 */
import { IMAGE_JOB_NAME, jobKey, type ImageQueue } from '../src/queue';
import type { ManagedChild } from '../src/run/child';
import {
  benchJob,
  fmt,
  fmtMs,
  killHard,
  producer,
  sleep,
  sleepingWorkflow,
  startBackend,
  startWorker,
  summarize,
  waitUntil,
} from './lib';
import type { BenchRedis, Figure, Scope, SimProcess } from './lib';

interface Held {
  key: string;
  holder: string;
  processedOn: number;
}

interface JobHash {
  pb?: string;
  processedOn?: string;
  finishedOn?: string;
  failedReason?: string;
  data?: string;
}

interface StoredState {
  status?: string;
  promptId?: string;
  resubmissions?: number;
  recoveries?: number;
}

async function readJob(redis: BenchRedis, key: string) {
  const [pb, processedOn, finishedOn, failedReason, data] = await redis.client.hmget(
    key,
    'pb',
    'processedOn',
    'finishedOn',
    'failedReason',
    'data',
  );
  const h: JobHash = {
    pb: pb ?? undefined,
    processedOn: processedOn ?? undefined,
    finishedOn: finishedOn ?? undefined,
    failedReason: failedReason ?? undefined,
    data: data ?? undefined,
  };
  const state = (JSON.parse(h.data ?? '{}') as { state?: StoredState }).state ?? {};
  return { ...h, state };
}

/** Adds a sleeping job and waits until a worker runs it; returns who holds it. */
async function startHeldJob(redis: BenchRedis, queue: ImageQueue, seconds: number): Promise<Held> {
  const job = await queue.add(IMAGE_JOB_NAME, benchJob(sleepingWorkflow(seconds, 'rec')));
  const key = jobKey({ queuePrefix: queue.opts.prefix!, queueName: queue.name }, job.id!);
  return waitUntil(`job ${job.id} running`, 30_000, async () => {
    const j = await readJob(redis, key);
    return j.state.status === 'running' && j.pb
      ? { key, holder: j.pb, processedOn: Number(j.processedOn) }
      : undefined;
  });
}

/** Waits until a worker other than `previous` has taken the job; returns its processedOn. */
async function waitTakenOver(redis: BenchRedis, key: string, previous: string, since: number) {
  return waitUntil(
    'another worker to take the job',
    90_000,
    async () => {
      const j = await readJob(redis, key);
      const at = Number(j.processedOn);
      return j.pb && j.pb !== previous && at >= since ? { at, by: j.pb } : undefined;
    },
    5,
  );
}

async function executionsOf(sim: SimProcess, promptId: string | undefined): Promise<number> {
  if (!promptId) return NaN;
  return (await sim.executions())[promptId] ?? 0;
}

export const killRecovery: Figure = async (ctx, scope) => {
  const offsetsS = ctx.quick ? [2] : [1, 4, 7];
  const runs = await Promise.all(offsetsS.map((s) => killOnce(scope, s)));
  const times = summarize(runs.map((r) => r.recoveryMs));
  const duplicates = runs.reduce((n, r) => n + Math.max(0, r.executions - 1), 0);
  const allCompleted = runs.every((r) => r.completed);
  ctx.log(`  kill -9: ${runs.map((r) => `${fmt(r.recoveryMs / 1000)} s`).join(', ')}`);
  return [
    {
      id: 'kill-9',
      figure: 'kill -9 → job resumed by another worker (defaults)',
      value: `${runs.map((r) => `${fmt(r.recoveryMs / 1000)} s`).join(', ')}; ${duplicates} duplicate executions`,
      target: '≤ 20 s, 0 duplicate executions',
      met: times.max <= 20_000 && duplicates === 0 && allCompleted,
      data: { runs },
      note: `killed ${offsetsS.join(', ')} s after the prompt started running; every job ${allCompleted ? 'completed' : 'did NOT complete'}, resubmissions ${runs.map((r) => r.resubmissions).join(', ')}`,
    },
  ];
};

async function killOnce(scope: Scope, offsetS: number) {
  const backend = await startBackend(scope, {
    redis: `redis-kill-${offsetS}`,
    simulator: `simulator-kill-${offsetS}`,
  });
  const { redis, sim } = backend;
  const env = backend.env('rec-kill');
  const workers = new Map<string, ManagedChild>();
  await Promise.all(
    ['a', 'b'].map(async (n) => {
      const name = `kill${offsetS}-${n}`;
      workers.set(name, await startWorker(scope, name, env));
    }),
  );
  const queue = producer(scope, env, 'recovery');
  const held = await startHeldJob(redis, queue, 15);
  await sleep(offsetS * 1000);
  const killedAt = Date.now();
  killHard(workers.get(held.holder)!);
  const taken = await waitTakenOver(redis, held.key, held.holder, killedAt);
  const done = await waitUntil(
    'the recovered job to finish',
    60_000,
    async () => {
      const j = await readJob(redis, held.key);
      return j.finishedOn ? j : undefined;
    },
    50,
  );
  return {
    offsetS,
    recoveryMs: taken.at - killedAt,
    completed: !done.failedReason,
    failedReason: done.failedReason,
    resubmissions: done.state.resubmissions ?? NaN,
    recoveries: done.state.recoveries ?? NaN,
    executions: await executionsOf(sim, done.state.promptId),
  };
}

export const sigtermHandoff: Figure = async (ctx, scope) => {
  const handoffs = ctx.quick ? 2 : 5;
  const backend = await startBackend(scope);
  const { redis, sim } = backend;
  const env = backend.env('rec-term');
  const workers = new Map<string, ManagedChild>();
  let next = 0;
  const spawn = async () => {
    const name = `term-${next++}`;
    workers.set(name, await startWorker(scope, name, env));
  };
  await Promise.all([spawn(), spawn()]);
  const queue = producer(scope, env, 'recovery');
  const held = await startHeldJob(redis, queue, 120);
  let holder = held.holder;
  const times: number[] = [];
  for (let i = 0; i < handoffs; i++) {
    await sleep(500);
    const signalledAt = Date.now();
    workers
      .get(holder)!
      .stop('SIGTERM', 20_000)
      .catch(() => undefined);
    const taken = await waitTakenOver(redis, held.key, holder, signalledAt);
    times.push(taken.at - signalledAt);
    holder = taken.by;
    if (i < handoffs - 1) await spawn();
  }
  const j = await readJob(redis, held.key);
  const executions = await executionsOf(sim, j.state.promptId);
  const s = summarize(times);
  ctx.log(`  SIGTERM: ${times.map(fmtMs).join(', ')}`);
  return [
    {
      id: 'sigterm',
      figure: 'SIGTERM → job resumed by another worker',
      value: `${times.map((t) => fmtMs(t)).join(', ')} (max ${fmtMs(s.max)}); prompt ran ${executions}×`,
      target: '≤ 200 ms',
      met: s.max <= 200 && executions === 1,
      data: { times, executions, resubmissions: j.state.resubmissions },
    },
  ];
};
