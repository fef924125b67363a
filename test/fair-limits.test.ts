import request from 'supertest';
import { fairKeys, topUsers } from '../src/fair';
import { createSimulator, type Simulator } from '../src/simulator/server';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';
import { post } from './helpers/fair';
import { FAST_ENV } from './helpers/system';
import { waitFor } from './helpers/wait';
import { killAll, spawnWorker, type WorkerProcess } from './helpers/worker-process';
import { sleepWorkflow } from './helpers/workflows';

/**
 * USER_MAX_ACTIVE=2 with 3 instances × 4 slots (two worker processes sharing them): A never
 * has more than 2 prompts submitted or running while B's jobs (B's override: no limit) fill
 * the other slots, through
 * a SIGKILLed worker, cancels (a running, a parked and a waiting job of A) and retention;
 * at the end every per-user set agrees with BullMQ's own lists.
 */

const LIVE = new Set(['submitting', 'submitted', 'running']);

describe('USER_MAX_ACTIVE', () => {
  let h: ApiHarness;
  let sims: Simulator[] = [];
  const workers: WorkerProcess[] = [];
  afterAll(async () => {
    await killAll(workers);
    await h?.close();
    await Promise.all(sims.map((s) => s.close()));
  });

  it('A never has more than 2 running while B fills the rest; sets right after kills, cancels, retention', async () => {
    h = await startApiHarness({
      env: { ...FAST_ENV, LOG_LEVEL: 'warn', RETENTION_MS: '1500', CLEAN_INTERVAL_MS: '500' },
      logLevel: 'warn',
    });
    sims = await Promise.all([1, 2, 3].map(() => createSimulator({ progressIntervalMs: 20 })));
    const env = {
      ...h.env,
      ...FAST_ENV,
      COMFYUI_URL: sims.map((s) => s.url).join(','),
      WORKER_CONCURRENCY: '2', // 2 processes × 2 × 3 instances = 3 instances × 4 slots
      USER_MAX_ACTIVE: '2',
      RETENTION_MS: '1500',
    };
    const client = h.services.redis;
    const k = fairKeys(h.config);
    const ids = {
      A: await Promise.all(Array.from({ length: 14 }, () => post(h, 'A', sleepWorkflow(1)))),
      B: await Promise.all(Array.from({ length: 14 }, () => post(h, 'B', sleepWorkflow(1)))),
    };
    // the default limit applies to every user; B's override lifts it
    await client.hset(k.maxActive, 'B', '0');
    workers.push(spawnWorker(env), spawnWorker(env));
    await Promise.all(workers.map((w) => w.ready));

    // sample every job's state: how many of each user's prompts are live at once
    const max = { A: 0, B: 0 };
    // (a cancelled job is not counted: at pickup it may write `submitting` for a prompt it
    // never sends, and it needs no slot)
    const sample = async () => {
      for (const u of ['A', 'B'] as const) {
        const pipe = client.pipeline();
        for (const id of ids[u]) pipe.hmget(`${k.P}${id}`, 'data', 'finishedOn', 'cancelRequested');
        const live = ((await pipe.exec()) ?? []).filter(([, v]) => {
          const [data, finishedOn, cancel] = v as (string | null)[];
          return data && !finishedOn && !cancel && LIVE.has(JSON.parse(data).state?.status);
        }).length;
        max[u] = Math.max(max[u], live);
      }
    };
    /** jobs finished (or already removed by retention) */
    const done = async () => {
      await sample();
      const pipe = client.pipeline();
      for (const id of [...ids.A, ...ids.B])
        pipe.hexists(`${k.P}${id}`, 'data').hexists(`${k.P}${id}`, 'finishedOn');
      const r = ((await pipe.exec()) ?? []).map(([, v]) => v);
      return [...ids.A, ...ids.B].filter((_, i) => r[2 * i] === 0 || r[2 * i + 1] === 1).length;
    };
    // a worker dies while A holds both its slots
    await waitFor('A to run 2 and B to fill the rest', async () => (await sample(), max.B >= 4));
    workers[0].proc.kill('SIGKILL');
    // cancels: A's newest job (waiting or parked), and one of A's running ones
    const parkedBefore = await client.zrange(k.parked('A'), '0', '-1');
    // a parked job reads queued, with the jobs ahead of it
    const parkedView = await request(h.app).get(`/v1/jobs/${parkedBefore.at(-1)}`);
    expect(parkedView.body).toMatchObject({ status: 'queued', attempts: 0 });
    expect(parkedView.body.progress.queuePosition).toBeGreaterThanOrEqual(parkedBefore.length - 1);
    const cancelled = [ids.A[13], parkedBefore[0], (await client.smembers(k.active('A')))[0]];
    for (const id of new Set(cancelled.filter(Boolean))) {
      expect((await request(h.app).delete(`/v1/jobs/${id}`)).status).toBe(202);
    }
    await waitFor('all 28 jobs to end', async () => (await done()) >= 28, {
      timeoutMs: 60_000,
      everyMs: 25,
    });
    console.log(
      `max live prompts: A ${max.A}, B ${max.B}; parked at the kill: ${parkedBefore.length}`,
    );
    expect(max.A).toBeLessThanOrEqual(2);
    expect(max.B).toBeGreaterThanOrEqual(4);
    expect(parkedBefore.length).toBeGreaterThan(0);
    // retention removes the finished jobs; the sets agree with BullMQ's lists: all empty
    await waitFor(
      'retention to remove every job',
      async () =>
        (await client.zcard(`${k.P}completed`)) + (await client.zcard(`${k.P}failed`)) === 0,
      { timeoutMs: 20_000 },
    );
    for (const list of ['active', 'wait']) expect(await client.llen(`${k.P}${list}`)).toBe(0);
    expect(await client.zcard(k.prioritized)).toBe(0);
    expect(await topUsers(client, h.config)).toEqual([]);
    for (const u of ['A', 'B']) {
      expect(await client.scard(k.active(u))).toBe(0);
      expect(await client.zcard(k.parked(u))).toBe(0);
      expect(await client.zcard(k.waiting(u))).toBe(0);
    }
  });
});
