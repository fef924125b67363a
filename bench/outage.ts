/**
 * API answers while Redis cannot serve: at maxmemory (writes refused with OOM), hung
 * (SIGSTOP: the socket stays open, nothing answers) and killed. Each endpoint must answer
 * 503 within the contract's 2 s; the tests (test/api-redis-outage.test.ts,
 * test/faults-memory.test.ts) check what is answered, this figure how fast.
 */
import { fmtMs, startApi, startRedis } from './lib';
import type { Figure, Row } from './lib';

const CONTRACT_MS = 2_000;
const workflow = {
  '1': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 0 } },
};

export const outage: Figure = async (ctx, scope) => {
  const redis = await startRedis(scope);
  const api = await startApi(scope, 'outage-api', redis.env('outage'));
  const call = async (method: 'GET' | 'POST', path: string) => {
    const t0 = performance.now();
    const res = await fetch(`${api.url}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: method === 'POST' ? JSON.stringify({ workflow }) : undefined,
      signal: AbortSignal.timeout(30_000),
    });
    const body = (await res.json()) as { id?: string };
    return { status: res.status, ms: performance.now() - t0, id: body.id };
  };
  const { id } = await call('POST', '/v1/jobs');
  const all = async (condition: string): Promise<Row> => {
    const answers = [
      ['POST /v1/jobs', await call('POST', '/v1/jobs')],
      ['GET /v1/jobs/:id', await call('GET', `/v1/jobs/${id}`)],
      ['GET /readyz', await call('GET', '/readyz')],
    ] as const;
    const worst = Math.max(...answers.map(([, a]) => a.ms));
    const all503 = answers.every(([, a]) => a.status === 503) || condition === 'maxmemory';
    ctx.log(
      `  redis ${condition}: ${answers.map(([n, a]) => `${n} ${a.status} in ${fmtMs(a.ms)}`).join(', ')}`,
    );
    return {
      id: 'outage',
      figure: `API answer, Redis ${condition} (slowest of 3 endpoints)`,
      value: fmtMs(worst),
      target: `< ${CONTRACT_MS} ms, 503`,
      met: worst < CONTRACT_MS && all503 && answers[0][1].status === 503,
      data: Object.fromEntries(answers.map(([n, a]) => [n, { status: a.status, ms: a.ms }])),
    };
  };

  const rows: Row[] = [];
  // every write refused (reads still answer 200 at maxmemory)
  await redis.client.config('SET', 'maxmemory', '1');
  rows.push(await all('maxmemory'));
  await redis.client.config('SET', 'maxmemory', '0');
  const pid = redis.server.pid()!;
  process.kill(pid, 'SIGSTOP');
  try {
    rows.push(await all('hung'));
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  await redis.server.kill();
  rows.push(await all('killed'));
  return rows;
};
