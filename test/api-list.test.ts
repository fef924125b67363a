import { UnrecoverableError, Worker } from 'bullmq';
import request from 'supertest';
import { indexKey, LIST_SCAN_MAX } from '../src/api/job-index';
import { type JobView } from '../src/job/view';
import type { NewJob } from '../src/api/enqueue';
import type { ImageJob } from '../src/queue';
import { manualWorker, startApiHarness, type ApiHarness } from './helpers/api-harness';
import type { JobData, JobResult } from '../src/job/data';
import { PUBLIC_STATUSES, type PublicStatus } from '../src/job/status';

/**
 * GET /v1/jobs over 10,000 jobs of 50 users, made through the store's enqueue (the same
 * MULTI a POST runs, index included) in batches: every filter equals what each job's own
 * GET says, newest first; a walk stays exact while jobs are added and removed; the index
 * loses the entries of removed jobs (on read, and by the sweep after the retention clean);
 * a scoped key lists only its own jobs.
 */

const JOBS = 10_000;
const USERS = 50;
const user = (n: number) => `user-${String(n).padStart(2, '0')}`;
const ownerOfUser = (n: number) => (n < 10 ? 'key-a' : n < 20 ? 'key-b' : undefined);
const workflowJson = JSON.stringify({ '1': { class_type: 'EmptyImage', inputs: {} } });

describe('GET /v1/jobs: the job list', () => {
  let h: ApiHarness;
  let worker: Worker<JobData, JobResult>;
  /** every job made here: its user and owner */
  const jobs = new Map<string, { userId: string; owner?: string }>();
  const status = new Map<string, PublicStatus>();

  const enqueue = async (n: number, extra: Partial<NewJob> = {}) => {
    const owner = ownerOfUser(n);
    const fields = extra.fields ?? { userId: user(n), jobType: 'list' };
    const r = await h.services.store.enqueue({
      ...(owner ? { owner } : {}),
      workflowJson,
      fingerprint: `fp-${n}`,
      nodes: 1,
      ...extra,
      fields,
    });
    jobs.set(r.id, { userId: fields.userId!, owner });
    return r.id;
  };
  const get = (query: Record<string, string | number>) =>
    request(h.app).get('/v1/jobs').query(query).expect(200);

  /** Every page of a walk, through the HTTP API. */
  async function walk(query: Record<string, string | number>, between?: () => Promise<void>) {
    const views: JobView[] = [];
    let cursor: string | null = null;
    do {
      const res = await get(cursor ? { ...query, cursor } : query);
      views.push(...(res.body.jobs as JobView[]));
      expect(res.body.jobs.length).toBeLessThanOrEqual(Number(query.limit ?? 20));
      cursor = res.body.nextCursor;
      await between?.();
    } while (cursor);
    return views;
  }
  /** newest first: createdAt, then id, descending */
  const expectNewestFirst = (views: JobView[]) => {
    for (let i = 1; i < views.length; i++) {
      const [a, b] = [views[i - 1], views[i]];
      expect(a.createdAt > b.createdAt || (a.createdAt === b.createdAt && a.id > b.id)).toBe(true);
    }
  };
  const idsWhere = (f: (id: string) => boolean) => [...jobs.keys()].filter(f).sort();

  beforeAll(async () => {
    h = await startApiHarness();
    for (let start = 0; start < JOBS; start += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, i) => enqueue((start + i) % USERS)));
    }
    // a worker without a processor: the test moves jobs itself, as a worker would
    worker = manualWorker(h.config);
    const token = 'list-test';
    for (const id of jobs.keys()) status.set(id, 'queued');
    // the oldest jobs, as a worker takes them: completed, failed, cancelled, running, taken
    for (let i = 0; i < 420; i++) {
      const job = (await worker.getNextJob(token, { block: false })) as ImageJob;
      if (i < 300) {
        await job.moveToCompleted({ outputs: [] }, token, false);
        status.set(job.id!, 'completed');
      } else if (i < 400) {
        await job.moveToFailed(new UnrecoverableError('execution_error: boom'), token);
        status.set(job.id!, 'failed');
      } else if (i < 410) {
        await job.moveToFailed(new UnrecoverableError('cancelled: cancelled by request'), token);
        status.set(job.id!, 'cancelled');
      } else if (i < 415) {
        await job.updateData({ ...job.data, state: { ...job.data.state, status: 'running' } });
        status.set(job.id!, 'running');
      }
    }
    // cancel requested on waiting jobs
    for (const id of [...jobs.keys()].slice(-40, -20)) {
      expect(await h.services.store.cancel(id)).toEqual({ outcome: 'cancelled' });
      status.set(id, 'cancelled');
    }
  }, 60_000);
  afterAll(async () => {
    await worker?.close();
    await h?.close();
  });

  it('a user: every job once, newest first, in pages', async () => {
    for (const n of [0, 17, 49]) {
      const views = await walk({ userId: user(n), limit: 37 });
      expect(views.map((v) => v.id).sort()).toEqual(
        idsWhere((id) => jobs.get(id)!.userId === user(n)),
      );
      expectNewestFirst(views);
      expect(views.every((v) => v.userId === user(n) && v.jobType === 'list')).toBe(true);
      // no queue position in a list (GET /v1/jobs/:id has it): it would cost a backlog scan
      expect(views.some((v) => v.progress.queuePosition !== undefined)).toBe(false);
    }
  });

  it('each status filter lists exactly the jobs in that status', async () => {
    const counts: Record<string, number> = {};
    for (const s of PUBLIC_STATUSES) {
      const views = await walk({ status: s, limit: 100 });
      expectNewestFirst(views);
      expect(views.every((v) => v.status === s)).toBe(true);
      expect(views.map((v) => v.id).sort()).toEqual(idsWhere((id) => status.get(id) === s));
      counts[s] = views.length;
    }
    expect(counts).toEqual({
      queued: JOBS - 300 - 110 - 5 - 20,
      submitted: 0,
      running: 5,
      completed: 300,
      failed: 100,
      cancelled: 10 + 20,
    });
    // user and status together
    const views = await walk({ userId: user(3), status: 'completed', limit: 5 });
    expect(views.map((v) => v.id).sort()).toEqual(
      idsWhere((id) => jobs.get(id)!.userId === user(3) && status.get(id) === 'completed'),
    );
  });

  it('a page looks at a bounded number of entries: a rare status comes in short pages', async () => {
    const res = await get({ status: 'running', limit: 10 });
    // the running jobs are among the oldest: the first page stops at its scan bound
    expect(res.body.jobs).toEqual([]);
    expect(res.body.nextCursor).toEqual(expect.any(String));
    expect(LIST_SCAN_MAX).toBeLessThan(JOBS);
  });

  it('a walk never repeats or skips a job that existed throughout, while jobs come and go', async () => {
    const before = new Set(jobs.keys());
    const removed = new Set<string>();
    const added: string[] = [];
    const ids = [...before];
    let round = 0;
    const views = await walk({ limit: 100 }, async () => {
      round++;
      // remove jobs from anywhere (some already listed, some still ahead) and add new ones
      const gone = [ids[(round * 7919) % ids.length], ids[(round * 104729) % ids.length]];
      await Promise.all([
        ...Array.from({ length: 5 }, async (_, i) => added.push(await enqueue(i))),
        ...gone.map(async (id) => {
          if (removed.has(id)) return;
          removed.add(id);
          jobs.delete(id);
          await (await h.services.queue.getJob(id))?.remove();
        }),
      ]);
    });
    const listed = views.map((v) => v.id);
    expect(new Set(listed).size).toBe(listed.length);
    const throughout = [...before].filter((id) => !removed.has(id));
    expect(listed.filter((id) => before.has(id) && !removed.has(id)).sort()).toEqual(
      throughout.sort(),
    );
    expect(added.some((id) => listed.includes(id))).toBe(false);
    expectNewestFirst(views);
  });

  it('retention: the index drops removed jobs (clean, then the sweep) and reuses no stale entry', async () => {
    const { queue, redis, store } = h.services;
    const cleaned = await queue.clean(0, 10_000, 'completed');
    expect(cleaned.sort()).toEqual(idsWhere((id) => status.get(id) === 'completed'));
    for (const id of cleaned) jobs.delete(id);
    await store.sweepIndex(Date.now() + 1);
    // every index set holds exactly the live jobs of its scope
    const sets = await redis.keys(`${h.config.queuePrefix}:${h.config.queueName}:list:*`);
    let members = 0;
    for (const key of sets) members += await redis.zcard(key);
    const expected = [...jobs.values()].reduce(
      (n, j) => n + 2 + (j.owner ? 2 : 0), // all + user, and owner + owner's user
      0,
    );
    expect(members).toBe(expected);
    expect((await get({ status: 'completed', limit: 100 })).body.jobs).toEqual([]);

    // an idempotent id reused after its job was removed: listed once, as the new job
    const key = { idempotencyKey: 'reused', fields: { userId: 'user-idem', jobType: 'list' } };
    const first = await enqueue(0, key);
    await (await queue.getJob(first))?.remove();
    const second = await enqueue(0, key);
    expect(second).toBe(first);
    const views = await walk({ userId: 'user-idem' });
    expect(views.map((v) => v.id)).toEqual([first]);
    expect(await redis.zcard(indexKey(h.config, undefined, 'user-idem'))).toBe(1);
  });

  it('a scoped key lists only its own jobs', async () => {
    const { store } = h.services;
    const all = async (owner: string, userId?: string) => {
      const ids: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await store.list({ owner, userId, limit: 100, cursor });
        ids.push(...page.jobs.map((s) => s.id));
        cursor = page.next ?? undefined;
      } while (cursor);
      return ids.sort();
    };
    expect(await all('key-a')).toEqual(idsWhere((id) => jobs.get(id)!.owner === 'key-a'));
    expect(await all('key-b', user(12))).toEqual(
      idsWhere((id) => jobs.get(id)!.userId === user(12)),
    );
    expect(await all('key-b', user(3))).toEqual([]);
    expect(await all('key-c')).toEqual([]);
  });

  it('a bad query is a 400 naming the parameter', async () => {
    for (const [query, path] of [
      [{ status: 'done' }, 'status'],
      [{ limit: 0 }, 'limit'],
      [{ limit: 101 }, 'limit'],
      [{ cursor: 'not-a-cursor' }, 'cursor'],
      [{ user: 'x' }, 'user'],
    ] as const) {
      const res = await request(h.app).get('/v1/jobs').query(query).expect(400);
      expect(res.body.error.code).toBe('invalid_request');
      expect(res.body.error.details.map((d: { path: string }) => d.path)).toEqual([path]);
    }
  });
});

describe('GET /v1/jobs with API keys', () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness({ env: { API_KEYS: 'a:key-a,b:key-b,ops:key-ops,key-root' } });
  });
  afterAll(async () => {
    await h?.close();
  });
  const as = (key: string) => ({ Authorization: `Bearer ${key}` });
  const post = async (key: string, userId: string) =>
    (
      await request(h.app)
        .post('/v1/jobs')
        .set(as(key))
        .send({ workflow: JSON.parse(workflowJson), userId })
        .expect(202)
    ).body.id as string;
  const list = async (key: string, query: Record<string, string> = {}) =>
    (
      (await request(h.app).get('/v1/jobs').set(as(key)).query(query).expect(200)).body
        .jobs as JobView[]
    )
      .map((v) => v.id)
      .sort();

  it('a scoped key lists only the jobs it submitted; an admin key lists all', async () => {
    const aShared = await post('key-a', 'shared');
    const a = [aShared, await post('key-a', 'alice')].sort();
    const b = [await post('key-b', 'shared')];
    expect(await list('key-a')).toEqual(a);
    expect(await list('key-b')).toEqual(b);
    expect(await list('key-a', { userId: 'shared' })).toEqual([aShared]);
    expect(await list('key-b', { userId: 'alice' })).toEqual([]);
    expect(await list('key-ops')).toEqual([]);
    expect(await list('key-root')).toEqual([...a, ...b].sort());
    expect(await list('key-root', { userId: 'shared' })).toHaveLength(2);
    await request(h.app).get('/v1/jobs').expect(401);
  });
});
