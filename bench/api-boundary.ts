/**
 * The API boundary (#14): (1) the worst `/healthz` wait while the API takes each
 * pathological 5 MB body (target ≤ 250 ms): a prober sends GET /healthz back to back during
 * the POST and keeps its slowest answer; (2) GET p50 of a job with a 5 MB workflow as a ratio
 * of a 1 KB job's (target ≤ 1.2×): reads do not load the workflow.
 */
import { Pool } from 'undici';
import { fmt, fmtMs, sizedWorkflow, startApi, startRedis, summarize } from './lib';
import type { Figure } from './lib';

const MB5 = 5 * 1024 * 1024 - 4096;

/** Bodies just under 5 MB whose shape is costly: each fills the limit with one kind of thing. */
function pathological(): Array<[string, string]> {
  const fill = (make: (i: number) => [string, unknown], wrap: (o: object) => object) => {
    const o: Record<string, unknown> = {};
    let size = JSON.stringify(wrap(o)).length;
    for (let i = 0; size < MB5; i++) {
      const [k, v] = make(i);
      o[k] = v;
      size += k.length + JSON.stringify(v).length + 4;
    }
    return JSON.stringify(wrap(o));
  };
  const oneNode = (inputs: object) => ({ workflow: { '1': { class_type: 'X', inputs } } });
  return [
    ['links to a missing node', fill((i) => [`l${i}`, ['missing', 0]], oneNode)],
    ['keys in one node', fill((i) => [`k${i}`, 1], oneNode)],
    [
      'nodes',
      fill(
        (i) => [String(i), { class_type: 'X', inputs: {} }],
        (o) => ({ workflow: o }),
      ),
    ],
    ['one long string', JSON.stringify({ workflow: sizedWorkflow(MB5, 'long') })],
    ['a 1.2M-element array', JSON.stringify(oneNode({ a: Array(1_200_000).fill(1) }))],
  ];
}

export const apiBoundary: Figure = async (ctx, scope) => {
  const redis = await startRedis(scope);
  const api = await startApi(scope, 'api', redis.env('boundary'));
  const rows = [];

  /** GET /healthz back to back until `stop`; resolves with the slowest answer */
  const probe = (stopped: () => boolean) =>
    (async () => {
      let max = 0;
      while (!stopped()) {
        const t = performance.now();
        await fetch(`${api.url}/healthz`);
        max = Math.max(max, performance.now() - t);
      }
      return max;
    })();
  // baseline: the worst wait of an idle API over 3 s on this (shared) machine
  const idleUntil = performance.now() + 3_000;
  const idle = await probe(() => performance.now() > idleUntil);
  ctx.log(`  idle: worst /healthz ${fmtMs(idle)}`);

  const worst: Array<[string, number, number]> = [];
  for (const [name, body] of pathological()) {
    let stop = false;
    const prober = probe(() => stop);
    const t = performance.now();
    const res = await fetch(`${api.url}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    await res.arrayBuffer();
    const answerMs = performance.now() - t;
    stop = true;
    const max = await prober;
    ctx.log(`  ${name}: ${res.status} in ${fmtMs(answerMs)}, worst /healthz ${fmtMs(max)}`);
    worst.push([name, max, res.status]);
  }
  for (const [name, max, status] of worst) {
    rows.push({
      id: 'healthz-during-body',
      figure: `worst /healthz wait during a 5 MB body: ${name}`,
      value: `${fmtMs(max)} (POST answered ${status})`,
      baseline: `idle ${fmtMs(idle)}`,
      ratio: max / idle,
      target: '≤ 250 ms',
      met: max <= 250,
      data: { maxMs: max, status },
    });
  }

  const post = async (bytes: number) => {
    const res = await fetch(`${api.url}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ workflow: sizedWorkflow(bytes, 'read') }),
    });
    return ((await res.json()) as { id: string }).id;
  };
  const [big, small] = [await post(MB5), await post(1024)];
  const seconds = ctx.quick ? 3 : 6;
  // latencies timed per request (autocannon's percentiles are whole milliseconds, too coarse
  // for 2 ms reads); the two jobs alternate in rounds, so drift of the machine hits both
  const pool = new Pool(api.url, { connections: 10 });
  const samples = { [small]: [] as number[], [big]: [] as number[] };
  const read = async (id: string, ms: number) => {
    const until = performance.now() + ms;
    const loop = async () => {
      while (performance.now() < until) {
        const t = performance.now();
        const res = await pool.request({ path: `/v1/jobs/${id}`, method: 'GET' });
        await res.body.dump();
        samples[id].push(performance.now() - t);
      }
    };
    await Promise.all(Array.from({ length: 10 }, loop));
  };
  try {
    await read(small, 300); // warm-up
    samples[small].length = 0;
    for (let round = 0; round < 3; round++) {
      await read(small, (seconds * 1000) / 3);
      await read(big, (seconds * 1000) / 3);
    }
  } finally {
    await pool.close();
  }
  const [smallP50, bigP50] = [summarize(samples[small]).p50, summarize(samples[big]).p50];
  const ratio = bigP50 / smallP50;
  rows.push({
    id: 'get-5mb-job',
    figure: 'GET /v1/jobs/:id p50, job with a 5 MB workflow vs a 1 KB one (10 connections)',
    value: fmtMs(bigP50),
    baseline: fmtMs(smallP50),
    ratio,
    target: '≤ 1.2×',
    met: ratio <= 1.2,
    data: { bigP50, smallP50, seconds, n: samples[big].length + samples[small].length },
    note: `${fmt(ratio, 2)}×`,
  });
  return rows;
};
