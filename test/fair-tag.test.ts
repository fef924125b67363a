import { Worker } from 'bullmq';
import request from 'supertest';
import { fairKeys } from '../src/fair';
import { harnessWithManualWorker, type ApiHarness } from './helpers/api-harness';
import { tinyWorkflow } from './helpers/workflows';
import type { JobData, JobResult } from '../src/job/data';

/**
 * The enqueue's tag (src/scripts/includes/enqueueFair.lua) as BullMQ's `prioritized` zset
 * holds it: round-robin between users, counted per priority band, jobs taken by a worker
 * no longer counted, each user's waiting zset bounded while the user keeps a backlog.
 */

const BAND = 2 ** 32;

describe('fair tag at enqueue', () => {
  let h: ApiHarness;
  let worker: Worker<JobData, JobResult>;
  harnessWithManualWorker((harness, w) => {
    h = harness;
    worker = w;
  });

  const post = async (userId: string, priority?: number) => {
    const res = await request(h.app)
      .post('/v1/jobs')
      .send({ workflow: tinyWorkflow(), userId, ...(priority ? { priority } : {}) });
    expect(res.status).toBe(202);
    return res.body.id as string;
  };
  /** [band, tag] of a job in `prioritized` */
  const place = async (id: string) => {
    const score = Number(await h.services.redis.zscore(fairKeys(h.config).prioritized, id));
    return [Math.floor(score / BAND), score % BAND];
  };

  it('tags: round-robin per band; taken jobs leave the count; the waiting zset stays bounded', async () => {
    const k = fairKeys(h.config);
    const a = [await post('A'), await post('A'), await post('A')];
    const b = await post('B');
    expect(await Promise.all(a.map(place))).toEqual([
      [1, 0],
      [1, 1],
      [1, 2],
    ]);
    expect(await place(b)).toEqual([1, 0]);
    // another band: its own round; A's jobs there do not push A back in band 1
    expect(await place(await post('A', 4))).toEqual([5, 0]);
    expect(await place(await post('A'))).toEqual([1, 3]);
    // BullMQ takes band 1's head round: A's and B's tag-0 jobs
    const token = 't';
    for (let i = 0; i < 2; i++) await worker.getNextJob(token);
    // V is now 1: B has nothing waiting (tag 1), A has 3 waiting in band 1 (tag 1 + 3)
    expect(await place(await post('B'))).toEqual([1, 1]);
    expect(await place(await post('A'))).toEqual([1, 4]);
    // A keeps a backlog of about 5 while a worker takes jobs: the zset keeps a bounded rest
    for (let i = 0; i < 60; i++) {
      await post('A');
      await worker.getNextJob(token);
    }
    const entries = await h.services.redis.zrange(k.waiting('A'), '0', '-1');
    const live = (await Promise.all(entries.map((id) => place(id)))).filter(([band]) => band > 0);
    // the waiting jobs are all in it, and at most 16 taken ones besides
    expect(live.length).toBeGreaterThanOrEqual(5);
    expect(entries.length - live.length).toBeLessThanOrEqual(16);
  });
});
