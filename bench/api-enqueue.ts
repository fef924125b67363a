/**
 * API enqueue rate: POST /v1/jobs with a 5 KB workflow under load (autocannon, 50
 * connections) against the real API process, versus direct `queue.add` of the same job data
 * with 50 in flight from this process. Rounds alternate baseline and API; no worker runs,
 * and each queue is drained after its round so memory stays flat.
 */
import autocannon from 'autocannon';
import { IMAGE_JOB_NAME } from '../src/queue';
import {
  benchJob,
  cpuMs,
  fmt,
  fmtMs,
  median,
  producer,
  redisCpuMs,
  sizedWorkflow,
  startApi,
  startRedis,
} from './lib';
import type { Figure } from './lib';

const CONNECTIONS = 50;
const WORKFLOW_BYTES = 5 * 1024;

export const apiEnqueue: Figure = async (ctx, scope) => {
  const rounds = ctx.quick ? 2 : 3;
  const seconds = ctx.quick ? 3 : 6;
  const redis = await startRedis(scope);
  const apiEnv = redis.env('enq-api');
  const api = await startApi(scope, 'api', apiEnv);
  const apiQueue = producer(scope, apiEnv, 'enqueue');
  const rawQueue = producer(scope, redis.env('enq-raw'), 'enqueue');
  const workflow = sizedWorkflow(WORKFLOW_BYTES, 'enq');
  const body = JSON.stringify({ workflow, jobType: 'bench' });

  interface Run {
    rate: number;
    /** CPU ms per job of the process doing the enqueue (this one, or the API) */
    cpuMs: number;
    redisCpuMs: number;
    p50?: number;
    p99?: number;
  }
  const direct = async (durationS: number): Promise<Run> => {
    const end = performance.now() + durationS * 1000;
    let done = 0;
    const cpu0 = process.cpuUsage();
    const redis0 = await redisCpuMs(redis);
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        while (performance.now() < end) {
          const at = Date.now();
          await rawQueue.add(IMAGE_JOB_NAME, benchJob(workflow, at), {
            timestamp: at,
          });
          done++;
        }
      }),
    );
    const rate = done / ((performance.now() - started) / 1000);
    const cpu = process.cpuUsage(cpu0);
    const redisMs = (await redisCpuMs(redis)) - redis0;
    await rawQueue.drain(true);
    return { rate, cpuMs: (cpu.user + cpu.system) / 1000 / done, redisCpuMs: redisMs / done };
  };
  const viaApi = async (durationS: number): Promise<Run> => {
    const cpu0 = cpuMs(api.child.pid);
    const redis0 = await redisCpuMs(redis);
    const r = await autocannon({
      url: `${api.url}/v1/jobs`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      connections: CONNECTIONS,
      duration: durationS,
      timeout: 10,
    });
    const ok = Number(r.statusCodeStats?.['202']?.count ?? 0);
    const cpu = cpuMs(api.child.pid) - cpu0;
    const redisMs = (await redisCpuMs(redis)) - redis0;
    await apiQueue.drain(true);
    if (r.errors > 0 || r.non2xx > 0)
      ctx.log(`  api-enqueue: ${r.errors} errors, ${r.non2xx} non-2xx answers`);
    return {
      rate: ok / r.duration,
      cpuMs: cpu / ok,
      redisCpuMs: redisMs / ok,
      p50: r.latency.p50,
      p99: r.latency.p99,
    };
  };

  // warm-up (JIT, connection pools), not counted
  await direct(1);
  await viaApi(1);

  const raws: Run[] = [];
  const apis: Run[] = [];
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const a = await direct(seconds);
    const b = await viaApi(seconds);
    raws.push(a);
    apis.push(b);
    ratios.push(b.rate / a.rate);
    ctx.log(
      `  round ${r + 1}: queue.add ${fmt(a.rate, 0)}/s, POST /v1/jobs ${fmt(b.rate, 0)}/s (p50 ${fmtMs(b.p50!)}, p99 ${fmtMs(b.p99!)})`,
    );
  }
  const ratio = median(ratios);
  const m = (runs: Run[], f: (r: Run) => number) => median(runs.map(f));
  return [
    {
      id: 'api-enqueue',
      figure: 'API enqueue, 5 KB workflow, 50 connections',
      value: `${fmt(
        m(apis, (r) => r.rate),
        0,
      )} req/s (p50 ${fmtMs(m(apis, (r) => r.p50!))}, p99 ${fmtMs(m(apis, (r) => r.p99!))})`,
      baseline: `queue.add ${fmt(
        m(raws, (r) => r.rate),
        0,
      )}/s`,
      ratio,
      target: '≥ 0.5×',
      met: ratio >= 0.5,
      data: { rounds, seconds, raw: raws, api: apis, ratios },
      note: `CPU per job: API process ${fmt(
        m(apis, (r) => r.cpuMs),
        2,
      )} ms vs queue.add ${fmt(
        m(raws, (r) => r.cpuMs),
        2,
      )} ms; Redis ${fmt(
        m(apis, (r) => r.redisCpuMs),
        2,
      )} ms vs ${fmt(
        m(raws, (r) => r.redisCpuMs),
        2,
      )} ms. autocannon shares the 2 cores`,
    },
  ];
};
