/**
 * A backlog of queued jobs (100k; 10k with --quick) and no worker: how long it takes to
 * enqueue (queue.add, 50 in flight), the Redis memory per queued job, and GET /v1/jobs/:id
 * latency for jobs spread over the whole backlog, against the same request for the only
 * job of an empty queue, served by a second API process on the same Redis. Requests go
 * one at a time, alternating between the two APIs in blocks, so both see the same moment.
 */
import { IMAGE_JOB_NAME } from '../src/queue';
import {
  benchJob,
  fmt,
  fmtBytes,
  fmtMs,
  pool,
  producer,
  sizedWorkflow,
  startApi,
  startRedis,
  summarize,
} from './lib';
import type { Figure } from './lib';

export const backlog: Figure = async (ctx, scope) => {
  const size = ctx.quick ? 10_000 : 100_000;
  const requests = ctx.quick ? 400 : 1_000;
  const block = 50;
  const redis = await startRedis(scope);
  const fullEnv = redis.env('backlog');
  const emptyEnv = redis.env('backlog-empty');
  const [full, empty] = await Promise.all([
    startApi(scope, 'api-backlog', fullEnv),
    startApi(scope, 'api-empty', emptyEnv),
  ]);
  const fullQueue = producer(scope, fullEnv, 'backlog');
  const emptyQueue = producer(scope, emptyEnv, 'backlog');

  const lonely = await emptyQueue.add(IMAGE_JOB_NAME, benchJob(sizedWorkflow(0, 'alone')));
  const memBefore = await redis.usedMemory();
  const ids: string[] = new Array(size);
  const started = performance.now();
  await pool(
    Array.from({ length: size }, (_, i) => i),
    50,
    async (i) => {
      const at = Date.now();
      const job = await fullQueue.add(IMAGE_JOB_NAME, benchJob(sizedWorkflow(0, `bl-${i}`), at), {
        timestamp: at,
      });
      ids[i] = job.id!;
    },
  );
  const enqueueS = (performance.now() - started) / 1000;
  const perJob = ((await redis.usedMemory()) - memBefore) / size;
  ctx.log(
    `  backlog: ${size} jobs enqueued in ${fmt(enqueueS)} s (${fmt(size / enqueueS, 0)}/s), ${fmtBytes(perJob)} each`,
  );

  // ids spread evenly over the backlog: the oldest (next to run) to the newest
  const sample = Array.from({ length: 200 }, (_, i) => ids[Math.floor((i * (size - 1)) / 199)]);
  const get = async (base: string, id: string) => {
    const t = performance.now();
    const res = await fetch(`${base}/v1/jobs/${id}`, { signal: AbortSignal.timeout(10_000) });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`GET /v1/jobs/${id} answered ${res.status}`);
    return performance.now() - t;
  };
  for (let i = 0; i < 50; i++) {
    await get(full.url, sample[i % sample.length]); // warm-up
    await get(empty.url, lonely.id!);
  }
  const emptyMs: number[] = [];
  const fullMs: number[] = [];
  for (let done = 0; done < requests; done += block) {
    for (let i = 0; i < block; i++) emptyMs.push(await get(empty.url, lonely.id!));
    for (let i = 0; i < block; i++)
      fullMs.push(await get(full.url, sample[(done + i) % sample.length]));
  }
  // the worst case: the job deepest in the list (the next to run)
  const oldest: number[] = [];
  for (let i = 0; i < 20; i++) oldest.push(await get(full.url, ids[0]));

  const e = summarize(emptyMs);
  const f = summarize(fullMs);
  const o = summarize(oldest);
  const ratio = f.p99 / e.p99;
  return [
    {
      id: 'backlog-enqueue',
      figure: `backlog of ${size / 1000}k queued jobs: enqueue, Redis memory`,
      value: `${fmt(enqueueS)} s (${fmt(size / enqueueS, 0)} jobs/s), ${fmtBytes(perJob)} per job, ${fmt((perJob * size) / 1024 / 1024, 0)} MB`,
      target: '— (printed)',
      data: { size, enqueueS, bytesPerJob: perJob },
    },
    {
      id: 'backlog-get',
      figure: `GET /v1/jobs/:id p99 under a ${size / 1000}k backlog`,
      value: `p50 ${fmtMs(f.p50)}, p99 ${fmtMs(f.p99)}`,
      baseline: `empty queue p50 ${fmtMs(e.p50)}, p99 ${fmtMs(e.p99)}`,
      ratio,
      target: 'p99 within 2×',
      met: ratio <= 2,
      data: { requests, backlog: f, empty: e, oldestJob: o },
      note: `p50 ratio ${fmt(f.p50 / e.p50, 2)}×; the oldest job (next to run, deepest in the wait list): p50 ${fmtMs(o.p50)}, max ${fmtMs(o.max)}`,
    },
  ];
};
