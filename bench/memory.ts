/**
 * Redis memory retained per finished job, for 5 KB and 50 KB workflows: our completed job
 * (the workflow is dropped at the end, the outputs stay) against a raw BullMQ job that
 * completes holding the same data. Per job: MEMORY USAGE of the job's own keys (its hash
 * and its log list), averaged over a sample of jobs. The used_memory growth per job is kept
 * in results.json only: it also counts the completed set and the events stream (capped by
 * BullMQ at ~10k events), and for our jobs the freed workflows make it meaningless.
 */
import { IMAGE_JOB_NAME, jobKey, type ImageQueue } from '../src/queue';
import {
  benchJob,
  Fatal,
  fmtBytes,
  producer,
  sizedWorkflow,
  sleep,
  startBackend,
  startRawWorker,
  startWorker,
  uniqueName,
  waitUntil,
} from './lib';
import type { BenchRedis, Figure, Row } from './lib';

const SIZES = [5 * 1024, 50 * 1024];
const OWN_LIMIT = 1536; // bytes, besides the outputs

export const memory: Figure = async (ctx, scope) => {
  const n = ctx.quick ? 50 : 200;
  const { redis, env } = await startBackend(scope);
  const rows: Row[] = [];
  const ours: Retained[] = [];
  for (const size of SIZES) {
    const kb = `${size / 1024} KB`;
    const rawEnv = env(`mem-raw-${size}`);
    const oursEnv = env(`mem-ours-${size}`, { WORKER_CONCURRENCY: '20' });
    await Promise.all([
      startRawWorker(scope, `mem-raw-${size}`, rawEnv),
      startWorker(scope, `mem-worker-${size}`, oursEnv),
    ]);
    const raw = await measure(redis, producer(scope, rawEnv, 'memory'), n, size);
    const o = await measure(redis, producer(scope, oursEnv, 'memory'), n, size);
    ours.push(o);
    const own = o.keys - o.outputs;
    ctx.log(
      `  memory ${kb}: ours ${fmtBytes(o.keys)} per job (outputs ${o.outputs} B), raw ${fmtBytes(raw.keys)}`,
    );
    rows.push({
      id: `memory-${size / 1024}k`,
      figure: `Redis memory retained per finished job, ${kb} workflow`,
      value: `${fmtBytes(o.keys)} (outputs ${o.outputs} B)`,
      baseline: `BullMQ job holding it ${fmtBytes(raw.keys)}`,
      ratio: o.keys / raw.keys,
      target: '≤ 1.5 KB + outputs, same for both sizes',
      met: own <= OWN_LIMIT,
      data: { jobs: n, ours: o, raw },
      note: `besides the outputs: ${own} B (hash ${fmtBytes(o.hash)}, log list ${fmtBytes(o.keys - o.hash)})`,
    });
  }
  // "the same for both": the 50 KB job must not retain more than the 5 KB one
  const [small, large] = ours;
  const same = Math.abs(large.keys - small.keys) <= 0.1 * small.keys;
  rows[rows.length - 1].met = rows[rows.length - 1].met && same;
  return rows;
};

/** What one job keeps in Redis, measured by `measure`. */
interface Retained {
  /** MEMORY USAGE of the job's keys, mean per job */
  keys: number;
  /** of which the job hash */
  hash: number;
  /** bytes of the stored return value (the outputs) */
  outputs: number;
  /** bytes of the stored data field */
  data: number;
  /** used_memory growth / jobs */
  usedMemory: number;
}

async function measure(
  redis: BenchRedis,
  queue: ImageQueue,
  n: number,
  size: number,
): Promise<Retained> {
  const prefix = queue.opts.prefix!;
  const before = await redis.usedMemory();
  const done0 = await redis.client.zcard(queue.keys.completed);
  const ids: string[] = [];
  for (let i = 0; i < n; i += 50) {
    const jobs = await queue.addBulk(
      Array.from({ length: Math.min(50, n - i) }, () => ({
        name: IMAGE_JOB_NAME,
        data: benchJob(sizedWorkflow(size, uniqueName('mem'))),
      })),
    );
    ids.push(...jobs.map((j) => j.id!));
  }
  await waitUntil(`${n} jobs completed on ${queue.name}`, 120_000, async () => {
    const failed = await redis.client.zcard(queue.keys.failed);
    if (failed > 0) throw new Fatal(`${failed} job(s) failed on ${queue.name}`);
    return (await redis.client.zcard(queue.keys.completed)) - done0 >= n;
  });
  await sleep(300);
  const after = await redis.usedMemory();

  const sample = ids.filter((_, i) => i % Math.max(1, Math.floor(n / 20)) === 0);
  let keys = 0;
  let hash = 0;
  let outputs = 0;
  let data = 0;
  for (const id of sample) {
    const key = jobKey({ queuePrefix: prefix, queueName: queue.name }, id);
    for (const k of [key, ...(await scan(redis, `${key}:*`))]) {
      const bytes = Number((await redis.client.call('MEMORY', 'USAGE', k, 'SAMPLES', '0')) ?? 0);
      keys += bytes;
      if (k === key) hash += bytes;
    }
    outputs += Number(await redis.client.hstrlen(key, 'returnvalue'));
    data += Number(await redis.client.hstrlen(key, 'data'));
  }
  return {
    keys: Math.round(keys / sample.length),
    hash: Math.round(hash / sample.length),
    outputs: Math.round(outputs / sample.length),
    data: Math.round(data / sample.length),
    usedMemory: Math.round((after - before) / n),
  };
}

async function scan(redis: BenchRedis, match: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.client.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found;
}
