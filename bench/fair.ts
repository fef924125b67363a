/**
 * Fair sharing (issue #18): the cost of enqueueing and of picking jobs up with
 * USER_FAIRNESS on, as a ratio of off, in the same run on one Redis (two queues). Enqueue:
 * the store's enqueue (the MULTI a POST runs; with fairness its script also tags the job),
 * 50 users, 50 in flight. Pickup: a BullMQ Worker with a no-op processor (concurrency 10)
 * drains the queue (fairness: ZPOPMIN of `prioritized`; off: RPOPLPUSH of `wait`), taking
 * and finishing each job. The cost compared is Redis' own CPU time per job (INFO cpu);
 * wall time is printed beside it. The two sides alternate, enqueues in slices of a tenth
 * of a block, drains in blocks, so a change of the shared machine's load (which does move
 * Redis' CPU time: caches, frequency) hits both alike.
 */
import { Worker } from 'bullmq';
import { loadConfig } from '../src/config';
import { redisOptions } from '../src/redis';
import { benchStore, enqueueMany, fmt, redisCpuMs, serviceEnv, startRedis } from './lib';
import type { BenchContext, Figure, Row, Scope } from './lib';

/** enqueue slices per block, alternating between the sides */
const SLICES = 10;

async function side(scope: Scope, url: string, fair: boolean) {
  const config = loadConfig(
    serviceEnv(url, `fair-${fair ? 'on' : 'off'}`, { USER_FAIRNESS: fair ? '1' : '0' }),
  );
  const { store } = await benchStore(scope, config, `fair ${fair ? 'on' : 'off'}`);
  let n = 0;
  return {
    /** ms to enqueue `count` jobs */
    async enqueue(count: number): Promise<number> {
      const t = performance.now();
      await enqueueMany(
        store,
        Array.from({ length: count }, () => n++),
      );
      return performance.now() - t;
    },
    /** ms for a worker to take and finish every waiting job */
    async drain(count: number): Promise<number> {
      let done = 0;
      let finish!: () => void;
      const all = new Promise<void>((r) => (finish = r));
      const t = performance.now();
      const worker = new Worker(
        config.queueName,
        async () => {
          if (++done === count) finish();
        },
        {
          connection: redisOptions(config, 'worker'),
          prefix: config.queuePrefix,
          concurrency: 10,
          removeOnComplete: { count: 0 },
        },
      );
      worker.on('error', () => undefined);
      await all;
      const ms = performance.now() - t;
      await worker.close();
      return ms;
    },
  };
}

export const fairShare: Figure = async (ctx: BenchContext, scope: Scope): Promise<Row[]> => {
  const redis = await startRedis(scope, 'fair redis');
  const on = await side(scope, redis.url, true);
  const off = await side(scope, redis.url, false);
  const block = ctx.quick ? 500 : 2000;
  const rounds = ctx.quick ? 2 : 3;
  const t = { on: { enq: 0, pick: 0 }, off: { enq: 0, pick: 0 } };
  const cpu = { on: { enq: 0, pick: 0 }, off: { enq: 0, pick: 0 } };
  /** wall ms of `work`; Redis CPU ms added to `into[key]` */
  const measured = async (
    work: () => Promise<number>,
    into: { enq: number; pick: number },
    key: 'enq' | 'pick',
  ) => {
    const c0 = await redisCpuMs(redis);
    const ms = await work();
    into[key] += (await redisCpuMs(redis)) - c0;
    return ms;
  };
  await on.enqueue(100); // warm-up: scripts loaded, connections up
  await on.drain(100);
  /** both sides, the one to go first alternating with `k` */
  const sides = (k: number) =>
    k % 2
      ? ([
          ['off', off],
          ['on', on],
        ] as const)
      : ([
          ['on', on],
          ['off', off],
        ] as const);
  await off.enqueue(100);
  await off.drain(100);
  for (let r = 0; r < rounds; r++) {
    // enqueues in slices that alternate between the sides, so a change of the machine's
    // load (it is shared) hits both alike; then each side's worker drains its block
    for (let i = 0; i < SLICES; i++) {
      for (const [name, s] of sides(r + i)) {
        t[name].enq += await measured(() => s.enqueue(block / SLICES), cpu[name], 'enq');
      }
    }
    for (const [name, s] of sides(r)) {
      t[name].pick += await measured(() => s.drain(block), cpu[name], 'pick');
    }
  }
  const jobs = block * rounds;
  const perJob = (ms: number) => `${fmt((ms * 1000) / jobs, 0)} µs/job`;
  ctx.log(
    `fair (Redis CPU / wall per job): enqueue on ${perJob(cpu.on.enq)} / ${perJob(t.on.enq)}, off ${perJob(cpu.off.enq)} / ${perJob(t.off.enq)}; pickup on ${perJob(cpu.on.pick)} / ${perJob(t.on.pick)}, off ${perJob(cpu.off.pick)} / ${perJob(t.off.pick)}`,
  );
  const row = (id: string, what: string, key: 'enq' | 'pick'): Row => {
    const ratio = cpu.off[key] / cpu.on[key];
    return {
      id,
      figure: `${what}: Redis CPU per job, USER_FAIRNESS=1 vs 0 (ratio off/on)`,
      value: perJob(cpu.on[key]),
      baseline: perJob(cpu.off[key]),
      ratio,
      target: '≥ 0.8×',
      met: ratio >= 0.8,
      data: {
        jobs,
        redisCpuMs: { on: cpu.on[key], off: cpu.off[key] },
        wallMs: { on: t.on[key], off: t.off[key] },
      },
      note: `wall ${perJob(t.on[key])} vs ${perJob(t.off[key])} (${fmt(t.off[key] / t.on[key], 2)}×, machine-bound)`,
    };
  };
  return [
    row('fair-enqueue', 'enqueue (store MULTI, 50 users, 50 in flight)', 'enq'),
    row('fair-pickup', 'pickup + finish (BullMQ Worker, no-op, concurrency 10)', 'pick'),
  ];
};
