/**
 * The job list (GET /v1/jobs) under 1,000 jobs and under 100,000 (10,000 with --quick), each
 * queue served by its own API process on one Redis. Jobs of 50 users are made through the
 * store's enqueue (the MULTI a POST runs, index entries included), 50 in flight, so the
 * listed data is what the API writes. Measured, one request at a time and alternating
 * between the two APIs in blocks: a page of 20 (the newest, deep pages by cursor, a user's),
 * and the worst filter (a status no job has: the page looks at its whole scan bound).
 */
import { loadConfig } from '../src/config';
import {
  BENCH_USERS,
  benchStore,
  enqueueMany,
  fmt,
  fmtMs,
  startApi,
  startRedis,
  summarize,
} from './lib';
import type { BenchContext, Figure, Row, Scope } from './lib';

/** `size` jobs in the queue of `env`, through the store's enqueue; returns seconds taken. */
async function fill(scope: Scope, env: Record<string, string>, size: number): Promise<number> {
  const config = loadConfig(env);
  const { store } = await benchStore(scope, config, 'list');
  const started = performance.now();
  await enqueueMany(
    store,
    Array.from({ length: size }, (_, i) => i),
  );
  return (performance.now() - started) / 1000;
}

/** Up to `n` cursors spread over the first `n` pages of 100 (deep pages to ask for). */
async function cursors(base: string, n: number): Promise<string[]> {
  const out: string[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${base}/v1/jobs?limit=100${cursor ? `&cursor=${cursor}` : ''}`);
    cursor = ((await res.json()) as { nextCursor: string | null }).nextCursor;
    if (!cursor) break;
    out.push(cursor);
  }
  return out;
}

async function measure(ctx: BenchContext, small: string, large: string, requests: number) {
  const [smallCursors, largeCursors] = [await cursors(small, 9), await cursors(large, 60)];
  // the same mix on both: the newest page, deep pages, a user's newest page
  const mix = (cs: string[]) => (i: number) =>
    i % 3 === 0
      ? 'limit=20'
      : i % 3 === 1
        ? `limit=20&cursor=${cs[i % cs.length]}`
        : `limit=20&userId=user-${i % BENCH_USERS}`;
  const get = async (base: string, query: string) => {
    const t = performance.now();
    const res = await fetch(`${base}/v1/jobs?${query}`, { signal: AbortSignal.timeout(10_000) });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`GET /v1/jobs?${query} answered ${res.status}`);
    return performance.now() - t;
  };
  type Query = (i: number) => string;
  const run = async (qs: Query, ql: Query) => {
    const s: number[] = [];
    const l: number[] = [];
    for (let i = 0; i < 20; i++) await Promise.all([get(small, qs(i)), get(large, ql(i))]); // warm-up
    for (let done = 0; done < requests; done += 50) {
      for (let i = done; i < done + 50; i++) s.push(await get(small, qs(i)));
      for (let i = done; i < done + 50; i++) l.push(await get(large, ql(i)));
    }
    return [summarize(s), summarize(l)] as const;
  };
  const pages = await run(mix(smallCursors), mix(largeCursors));
  ctx.log(`  list: pages measured (${largeCursors.length} deep cursors under the large queue)`);
  const worst = (i: number) => `limit=20&status=failed${i % 2 ? '&userId=user-1' : ''}`;
  const filtered = await run(worst, worst);
  return { pages, filtered };
}

export const list: Figure = async (ctx, scope) => {
  const sizes = [1_000, ctx.quick ? 10_000 : 100_000] as const;
  const requests = ctx.quick ? 300 : 1_000;
  const redis = await startRedis(scope);
  const envs = sizes.map((n) => redis.env(`list-${n}`));
  const fillS: number[] = [];
  for (const [i, n] of sizes.entries()) fillS.push(await fill(scope, envs[i], n));
  ctx.log(
    `  list: ${sizes.map((n, i) => `${n} jobs in ${fmt(fillS[i])} s`).join(', ')} (store enqueue, 50 in flight)`,
  );
  const [small, large] = await Promise.all(
    envs.map((env, i) => startApi(scope, `api-list-${i}`, env)),
  );
  const { pages, filtered } = await measure(ctx, small.url, large.url, requests);
  const k = (n: number) => `${n / 1000}k`;
  const rows = (
    [
      ['list-page', 'a page of 20 (newest, deep by cursor, a user)', pages],
      ['list-filter', 'a page filtered by a status no job has (scan bound)', filtered],
    ] as const
  ).map(([id, what, [s, l]]): Row => ({
    id,
    figure: `GET /v1/jobs ${what}: ${k(sizes[1])} vs ${k(sizes[0])} jobs`,
    value: `p50 ${fmtMs(l.p50)}, p99 ${fmtMs(l.p99)} under ${k(sizes[1])}`,
    baseline: `p50 ${fmtMs(s.p50)}, p99 ${fmtMs(s.p99)} under ${k(sizes[0])}`,
    ratio: l.p50 / s.p50,
    target: 'p50 within 1.5×',
    met: l.p50 / s.p50 <= 1.5,
    data: { sizes, requests, small: s, large: l },
  }));
  rows[0].data = { ...rows[0].data, fillS };
  return rows;
};
