import request from 'supertest';
import { idempotentJobId } from '../src/api/enqueue';
import { fairKeys, topUsers, userSummary } from '../src/fair';
import { createApiMetrics, registerUserJobs } from '../src/metrics';
import { createSimulator, type Simulator } from '../src/simulator/server';
import type { ImageWorker } from '../src/worker/worker';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';
import { startTestWorker } from './helpers/api-worker';
import { killAll, spawnWorker, type WorkerProcess } from './helpers/worker-process';
import { FAST_ENV } from './helpers/system';
import { waitFor } from './helpers/wait';
import { tinyWorkflow } from './helpers/workflows';
import { jobsByUser, post, startOrder, usersOf } from './helpers/fair';

/**
 * Fair sharing (DESIGN "Fair sharing between users"): A submits 300 jobs, then B and C 10
 * each; B's and C's finish long before A's and starts alternate between users, with
 * in-process workers and with a worker process SIGKILLed mid-run.
 */

async function scenario(h: ApiHarness, onDone?: (n: number) => void) {
  const ids: Record<string, string[]> = { A: [], B: [], C: [] };
  const submitted: Record<string, number> = { A: Date.now() };
  for (let i = 0; i < 300; i += 10) {
    ids.A.push(...(await Promise.all(Array.from({ length: 10 }, () => post(h, 'A')))));
  }
  submitted.B = submitted.C = Date.now();
  // B and C submit their 10 each at once, while A's jobs run
  const late = await Promise.all(Array.from({ length: 20 }, (_, i) => post(h, i % 2 ? 'C' : 'B')));
  late.forEach((id, i) => ids[i % 2 ? 'C' : 'B'].push(id));
  const client = h.services.redis;
  await waitFor(
    'all 320 jobs to complete',
    async () => {
      const done = await client.zcard(`${h.config.queuePrefix}:${h.config.queueName}:completed`);
      onDone?.(done);
      return done === 320;
    },
    { timeoutMs: 90_000, everyMs: 100 },
  );
  const finished = await jobsByUser(client, h.config, ids, 'finishedOn');
  // BullMQ's stall count: a job held by a killed worker waits out its lock before it is
  // resumed, a delay of crash recovery (bounded by the lock), not of the order measured here
  const stalled = await jobsByUser(client, h.config, ids, 'stc');
  const recovered = Object.values(stalled)
    .flat()
    .filter((n) => n > 0).length;
  const ends = (u: string) => finished[u].filter((_, i) => !(stalled[u][i] > 0));
  const last = (u: string) => Math.max(...ends(u));
  // completion time: from the user's first submission to their last job's end
  const took = (u: string) => last(u) - submitted[u];
  const share = { B: took('B') / took('A'), C: took('C') / took('A') };
  // the same in jobs rather than time: the share of all jobs that ended before the user's
  // last one (a pause of the whole system, such as a killed worker's slot leases running
  // out, stretches times but not this)
  const all = Object.keys(ids).flatMap(ends);
  const ranked = (u: string) => all.filter((t) => t <= last(u)).length / all.length;
  const rank = { B: ranked('B'), C: ranked('C') };
  const order = usersOf(await startOrder(client, h.config), ids);
  return { share, rank, order, recovered };
}

/** B's (or C's) starts: at most two other starts between two of them once they began. */
function maxGap(order: string, user: string): number {
  const at = [...order].flatMap((u, i) => (u === user ? [i] : []));
  return Math.max(...at.slice(1).map((p, i) => p - at[i]));
}

describe('fair sharing between users', () => {
  let h: ApiHarness;
  let sims: Simulator[] = [];
  afterEach(async () => {
    await h?.close();
    await Promise.all(sims.map((s) => s.close()));
  });
  /** three simulators: jobs finish at once, so the run takes seconds */
  const startSims = async () => {
    sims = await Promise.all([1, 2, 3].map(() => createSimulator({ progressIntervalMs: 20 })));
    return sims.map((s) => s.url).join(',');
  };

  it('A 300 jobs, then B and C 10 each: B and C finish long before A, starts alternate', async () => {
    h = await startApiHarness({ env: { LOG_LEVEL: 'warn' }, logLevel: 'warn' });
    const worker: ImageWorker = await startTestWorker(h, await startSims());
    try {
      const { share, order } = await scenario(h);
      console.log(
        `in-process: completion time of B ${Math.round(share.B * 100)}%, of C ${Math.round(share.C * 100)}% of A's; starts ${order.slice(0, 60)}…`,
      );
      expect(share.B).toBeLessThan(0.5);
      expect(share.C).toBeLessThan(0.5);
      expect(maxGap(order, 'B')).toBeLessThanOrEqual(3);
      expect(maxGap(order, 'C')).toBeLessThanOrEqual(3);
    } finally {
      await worker.close();
    }
  });

  it('the same with a worker process SIGKILLed mid-run', async () => {
    h = await startApiHarness({ env: { ...FAST_ENV, LOG_LEVEL: 'warn' }, logLevel: 'warn' });
    const env = { ...h.env, ...FAST_ENV, COMFYUI_URL: await startSims(), WORKER_CONCURRENCY: '1' };
    const workers: WorkerProcess[] = [spawnWorker(env), spawnWorker(env)];
    try {
      await Promise.all(workers.map((w) => w.ready));
      let killed = false;
      const { share, rank, order, recovered } = await scenario(h, (done) => {
        if (!killed && done >= 40) {
          killed = true;
          workers[0].proc.kill('SIGKILL');
        }
      });
      console.log(
        `SIGKILL mid-run: completion time of B ${Math.round(share.B * 100)}%, of C ${Math.round(share.C * 100)}% of A's; B's last job ended after ${Math.round(rank.B * 100)}%, C's after ${Math.round(rank.C * 100)}% of all jobs (the ${recovered} jobs the killed worker held left out); starts ${order.slice(0, 60)}…`,
      );
      expect(killed).toBe(true);
      // the kill pauses every user's jobs for up to a lock's life (its slot leases), a
      // pause that may fall in B's and C's few seconds: the order is asserted in jobs
      expect(rank.B).toBeLessThan(0.5);
      expect(rank.C).toBeLessThan(0.5);
      expect(maxGap(order, 'B')).toBeLessThanOrEqual(3);
      expect(maxGap(order, 'C')).toBeLessThanOrEqual(3);
      // every prompt ran once: the killed worker's jobs were resumed, not run again
      const runs = sims.flatMap((s) => Object.values(s.executions()));
      expect(runs.length).toBe(320);
      expect(runs.every((n) => n === 1)).toBe(true);
    } finally {
      await killAll(workers);
    }
  });
});

describe('USER_MAX_QUEUED', () => {
  let h: ApiHarness;
  afterAll(() => h?.close());

  it('answers 429 user_queue_full with Retry-After and creates nothing; a per-user override', async () => {
    h = await startApiHarness({ env: { USER_MAX_QUEUED: '3' } });
    const client = h.services.redis;
    const k = fairKeys(h.config);
    for (let i = 0; i < 3; i++) await post(h, 'U');
    const refused = await request(h.app)
      .post('/v1/jobs')
      .set('Idempotency-Key', 'fourth')
      .send({ workflow: tinyWorkflow(), userId: 'U' });
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('user_queue_full');
    expect(refused.headers['retry-after']).toBe('10');
    // nothing created: BullMQ holds 3 jobs, the refused key's job does not exist
    expect(await client.zcard(k.prioritized)).toBe(3);
    expect(await client.exists(`${k.P}${idempotentJobId('fourth', 'U')}`)).toBe(0);
    // other users (and anonymous jobs) have their own limit
    await post(h, 'V');
    await post(h, undefined);
    // an override for U (the max-queued hash) raises U's limit
    await client.hset(k.maxQueued, 'U', '4');
    await post(h, 'U');
    expect(
      (await request(h.app).post('/v1/jobs').send({ workflow: tinyWorkflow(), userId: 'U' }))
        .status,
    ).toBe(429);
    expect(await client.zcard(k.prioritized)).toBe(6);

    // /metrics and Bull Board's description: waiting and active jobs of the top users
    const metrics = createApiMetrics();
    registerUserJobs(metrics, () => topUsers(client, h.config, 10));
    const text = await metrics.registry.metrics();
    expect(text).toContain('comfyui_user_jobs{user="U",state="waiting"} 4');
    expect(text).toContain('comfyui_user_jobs{user="",state="waiting"} 1');
    expect(text).toContain('comfyui_user_jobs{user="V",state="active"} 0');
    const describe = userSummary(client, h.config, 'jobs', 0);
    describe();
    await waitFor('the summary', async () => describe() !== 'jobs');
    expect(describe()).toBe('jobs · top users (waiting/active): U 4/0, (anonymous) 1/0, V 1/0');
  });
});
