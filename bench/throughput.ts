/**
 * End-to-end throughput at concurrency 50: enqueue → worker → simulator (instant prompts) →
 * completed, against a raw BullMQ worker with a no-op processor fed the same jobs. Rounds
 * alternate baseline and ours (ABAB…) so both see the same machine load; the ratio is the
 * median of the per-round ratios. A third series measures the simulator alone (a direct
 * HTTP + WebSocket client, 50 prompts in flight, no Redis): the ceiling any ComfyUI
 * integration has on this machine.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import WebSocket from 'ws';
import { IMAGE_JOB_NAME, jobKey, type ImageQueue } from '../src/queue';
import type { ManagedChild } from '../src/run/child';
import {
  benchJob,
  cpuMs,
  errorText,
  fmt,
  fmtMs,
  median,
  pool,
  producer,
  redisCpuMs,
  sizedWorkflow,
  startBackend,
  startRawWorker,
  startWorker,
  summarize,
  uniqueName,
  waitUntil,
  withTimeout,
} from './lib';
import type { BenchRedis, Figure, SimProcess } from './lib';

const CONCURRENCY = 50;

export const throughput: Figure = async (ctx, scope) => {
  const rounds = ctx.quick ? 2 : 3;
  const nRaw = ctx.quick ? 2_000 : 5_000;
  const nOurs = ctx.quick ? 200 : 800;
  const nSim = ctx.quick ? 200 : 800;

  const { redis, sim, env } = await startBackend(scope);
  const rawEnv = env('tp-raw', { WORKER_CONCURRENCY: String(CONCURRENCY) });
  const oursEnv = env('tp-ours', { WORKER_CONCURRENCY: String(CONCURRENCY) });
  const [rawWorker, oursWorker] = await Promise.all([
    startRawWorker(scope, 'raw-worker', rawEnv),
    startWorker(scope, 'tp-worker', oursEnv),
  ]);
  const rawQueue = producer(scope, rawEnv, 'throughput');
  const oursQueue = producer(scope, oursEnv, 'throughput');

  const raw: Batch[] = [];
  const ours: Batch[] = [];
  const alone: number[] = [];
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const a = await runBatch(redis, rawQueue, rawWorker, nRaw);
    const b = await runBatch(redis, oursQueue, oursWorker, nOurs);
    const c = await simulatorAlone(sim.url, nSim);
    raw.push(a);
    ours.push(b);
    alone.push(c);
    ratios.push(b.rate / a.rate);
    ctx.log(
      `  round ${r + 1}: raw ${fmt(a.rate, 0)} jobs/s, ours ${fmt(b.rate, 0)} jobs/s, simulator alone ${fmt(c, 0)} prompts/s`,
    );
  }
  const ratio = median(ratios);
  const ofSim = median(ours.map((o, i) => o.rate / alone[i]));
  const detect = await detectionTimes(redis, oursQueue, sim, ours[ours.length - 1].ids);
  const slow = detect.filter((ms) => ms > 1_000).length;
  const d = summarize(detect);
  const cpu = (b: Batch[], f: (x: Batch) => number) => median(b.map(f));
  return [
    {
      id: 'throughput',
      figure: 'end-to-end throughput, concurrency 50, instant prompts',
      value: `${fmt(median(ours.map((o) => o.rate)), 0)} jobs/s`,
      baseline: `raw BullMQ no-op ${fmt(median(raw.map((o) => o.rate)), 0)} jobs/s`,
      ratio,
      target: '≥ 0.3×',
      met: ratio >= 0.3,
      data: { rounds, nRaw, nOurs, raw: raw.map(strip), ours: ours.map(strip), ratios },
      note: `CPU per job: worker ${fmt(
        cpu(ours, (x) => x.workerCpuMs),
        2,
      )} ms vs raw ${fmt(
        cpu(raw, (x) => x.workerCpuMs),
        2,
      )} ms; Redis ${fmt(
        cpu(ours, (x) => x.redisCpuMs),
        2,
      )} ms vs raw ${fmt(
        cpu(raw, (x) => x.redisCpuMs),
        2,
      )} ms`,
    },
    {
      id: 'throughput-vs-simulator',
      figure: '  (diagnostic) same, against the simulator alone',
      value: `${fmt(median(ours.map((o) => o.rate)), 0)} jobs/s`,
      baseline: `direct client ${fmt(median(alone), 0)} prompts/s`,
      ratio: ofSim,
      target: '—',
      data: { nSim, alone },
      note: 'the simulator runs one prompt at a time, like ComfyUI: it caps every integration',
    },
    {
      id: 'throughput-detection',
      figure: '  (diagnostic) completion detection under that load',
      value: `p50 ${fmtMs(d.p50)}, p99 ${fmtMs(d.p99)}; ${slow} of ${d.n} jobs > 1 s`,
      target: '—',
      data: { detection: d, slowerThan1s: slow },
      note: 'prompt end (simulator) → job completed, last round',
    },
  ];
};

interface Batch {
  rate: number;
  /** the worker process's CPU time per job */
  workerCpuMs: number;
  /** redis-server's CPU time per job */
  redisCpuMs: number;
  ids: string[];
}

const strip = ({ ids: _ids, ...rest }: Batch) => rest;

/** Enqueues `n` jobs in bulk while the worker runs; jobs/s from first add to last completion. */
async function runBatch(
  redis: BenchRedis,
  queue: ImageQueue,
  worker: ManagedChild,
  n: number,
): Promise<Batch> {
  const completed = queue.keys.completed;
  const failedKey = queue.keys.failed;
  const before = await redis.client.zcard(completed);
  const failedBefore = await redis.client.zcard(failedKey);
  const prefix = uniqueName('tp');
  const ids: string[] = [];
  const cpu0 = cpuMs(worker.pid);
  const redis0 = await redisCpuMs(redis);
  const started = performance.now();
  const producing = (async () => {
    for (let i = 0; i < n; i += 100) {
      const at = Date.now();
      const jobs = await queue.addBulk(
        Array.from({ length: Math.min(100, n - i) }, (_, k) => ({
          name: IMAGE_JOB_NAME,
          data: benchJob(sizedWorkflow(0, `${prefix}-${i + k}`), at),
        })),
      );
      ids.push(...jobs.map((j) => j.id!));
    }
  })();
  const outcome = await waitUntil(
    `${n} completed jobs on ${queue.name}`,
    60_000 + n * 20,
    async () => {
      if ((await redis.client.zcard(failedKey)) > failedBefore) return 'failed';
      return (await redis.client.zcard(completed)) - before >= n ? 'done' : undefined;
    },
    10,
  ).catch(async (err: unknown) => {
    const counts = await queue.getJobCounts('wait', 'active', 'completed', 'failed', 'delayed');
    throw new Error(`${errorText(err)} (${JSON.stringify(counts)})`);
  });
  if (outcome === 'failed') {
    const [job] = await queue.getFailed(0, 0);
    throw new Error(`a job failed on ${queue.name}: ${job?.failedReason}`);
  }
  const seconds = (performance.now() - started) / 1000;
  await producing;
  return {
    rate: n / seconds,
    workerCpuMs: (cpuMs(worker.pid) - cpu0) / n,
    redisCpuMs: ((await redisCpuMs(redis)) - redis0) / n,
    ids,
  };
}

/** Prompt end in the simulator → job completed, for each job of a batch. */
async function detectionTimes(
  redis: BenchRedis,
  queue: ImageQueue,
  sim: SimProcess,
  ids: string[],
): Promise<number[]> {
  const out: number[] = [];
  await pool(ids, 20, async (id) => {
    const key = jobKey({ queuePrefix: queue.opts.prefix!, queueName: queue.name }, id);
    const [finishedOn, data] = await redis.client.hmget(key, 'finishedOn', 'data');
    const promptId = (JSON.parse(data ?? '{}') as { state?: { promptId?: string } }).state
      ?.promptId;
    const t = promptId ? await sim.timing(promptId) : undefined;
    if (t && finishedOn) out.push(Number(finishedOn) - t.end);
  });
  return out;
}

/**
 * What the simulator does on its own: `n` instant prompts, 50 in flight, each submitted
 * with POST /prompt and finished when the WebSocket says `executing {node: null}`.
 */
async function simulatorAlone(url: string, n: number): Promise<number> {
  const clientId = randomUUID();
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/ws?clientId=${clientId}`);
  await withTimeout('ws open', 10_000, once(ws, 'open'));
  const waiting = new Map<string, () => void>();
  ws.on('message', (raw) => {
    const msg = JSON.parse(raw.toString()) as {
      type: string;
      data?: { node?: unknown; prompt_id?: string };
    };
    if (msg.type === 'executing' && msg.data?.node === null && msg.data.prompt_id)
      waiting.get(msg.data.prompt_id)?.();
  });
  const prefix = uniqueName('alone');
  const started = performance.now();
  try {
    await pool(
      Array.from({ length: n }, (_, i) => i),
      CONCURRENCY,
      async (i) => {
        const promptId = randomUUID();
        const done = new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`prompt ${promptId} timed out`)), 60_000);
          waiting.set(promptId, () => {
            clearTimeout(timer);
            waiting.delete(promptId);
            resolve();
          });
        });
        const res = await fetch(`${url}/prompt`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            prompt: sizedWorkflow(0, `${prefix}-${i}`),
            prompt_id: promptId,
            client_id: clientId,
          }),
          signal: AbortSignal.timeout(10_000),
        });
        await res.text();
        if (!res.ok) throw new Error(`POST /prompt answered ${res.status}`);
        await done;
      },
    );
    return n / ((performance.now() - started) / 1000);
  } finally {
    ws.terminate();
  }
}
