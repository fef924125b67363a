import { FlowProducer, Worker } from 'bullmq';
import { snapshotOf, toJobView, type BullState, type JobSnapshot } from '../src/job/view';
import { CANCEL_FIELD, IMAGE_JOB_NAME, jobKey, type ImageJob } from '../src/queue';
import { redisOptions } from '../src/redis';
import { harnessWithManualWorker, type ApiHarness } from './helpers/api-harness';
import { QUEUE_POSITION_LIMIT } from '../src/job/progress';
import { newJobData, type JobData, type JobResult } from '../src/job/data';

/**
 * The store's job read (`snapshot`, one Lua script) against a real Redis: the same snapshot
 * as BullMQ's own `getJob` + `getState` plus the cancel mark and the position (the read as
 * it was before the script, kept here as the reference), in every state; positions counted
 * from the tail of `wait`, where workers take jobs; capped beyond QUEUE_POSITION_LIMIT.
 */

const workflow = {
  '1': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 0 } },
  '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 's' } },
};

describe('job store: the snapshot script', () => {
  let h: ApiHarness;
  let worker: Worker<JobData, JobResult>;
  const token = 'test-token';

  harnessWithManualWorker((harness, w) => {
    h = harness;
    worker = w;
  });
  beforeEach(async () => {
    await h.services.queue.obliterate({ force: true });
  });

  const read = (id: string) => h.services.store.read(id);
  const add = async (name: string, opts: Record<string, unknown> = {}) =>
    (await h.services.queue.add(
      IMAGE_JOB_NAME,
      newJobData(workflow, { jobType: 'image', metadata: { name } }, Date.now()),
      opts,
    )) as ImageJob;
  const take = async () => (await worker.getNextJob(token, { block: false })) as ImageJob;

  /** The read before the script: getJob, getState, HGET of the mark, LPOS from the head. */
  async function reference(id: string): Promise<JobSnapshot | null> {
    const { queue, redis } = h.services;
    const [job, mark] = await Promise.all([
      queue.getJob(id) as Promise<ImageJob | undefined>,
      redis.hget(jobKey(h.config, id), CANCEL_FIELD),
    ]);
    if (!job) return null;
    const state = await job.getState();
    if (state === 'unknown') return null;
    const s: JobSnapshot = {
      ...snapshotOf(job, state as BullState),
      cancelRequestedAt: mark ?? undefined,
    };
    if (mark === null && state === 'waiting') {
      const [len, idx] = await Promise.all([
        redis.llen(queue.keys.wait),
        redis.lpos(queue.keys.wait, id),
      ]);
      if (idx !== null) s.queuePosition = len - 1 - idx;
    }
    if (mark === null && state === 'prioritized') {
      const [len, rank] = await Promise.all([
        redis.llen(queue.keys.wait),
        redis.zrank(queue.keys.prioritized, id),
      ]);
      if (rank !== null) s.queuePosition = len + rank;
    }
    return s;
  }

  /** The snapshot, checked against the reference and BullMQ's state; its public view. */
  async function expectSame(id: string, bullState: BullState) {
    const [s, ref] = await Promise.all([read(id), reference(id)]);
    expect(s).not.toBeNull();
    expect(s).toEqual(ref);
    expect(s!.bullState).toBe(bullState);
    expect(toJobView(s!)).toEqual(toJobView(ref!));
    return s!;
  }

  it('waiting and prioritized jobs: 0 is the next job a worker takes, then one by one', async () => {
    const a = await add('a');
    const b = await add('b');
    const p5 = await add('p5', { priority: 5 });
    const c = await add('c');
    const p1 = await add('p1', { priority: 1 });
    const lifo = await add('lifo', { lifo: true });
    // plain jobs first (lifo at the tail, the others oldest first), then by priority
    const order = [lifo, a, b, c, p1, p5].map((j) => j.id!);
    while (order.length > 0) {
      for (const [n, id] of order.entries()) {
        const prioritized = id === p1.id || id === p5.id;
        const s = await expectSame(id, prioritized ? 'prioritized' : 'waiting');
        expect(s.queuePosition).toBe(n);
      }
      const taken = await take();
      expect(taken.id).toBe(order.shift());
      expect((await expectSame(taken.id!, 'active')).queuePosition).toBeUndefined();
      await taken.moveToCompleted({ outputs: [] }, token, false);
    }
  });

  it('delayed, active, completed, failed and waiting-children: as BullMQ reads them', async () => {
    const delayed = await add('delayed', { delay: 600_000 });
    expect((await expectSame(delayed.id!, 'delayed')).queuePosition).toBeUndefined();

    await add('done');
    const done = await take();
    await done.updateProgress({ percent: 40, node: '2' });
    const active = await expectSame(done.id!, 'active');
    expect(active.progress).toEqual({ percent: 40, node: '2' });
    expect(active.processedOn).toBeGreaterThan(0);
    expect(active.attemptsStarted).toBe(1);
    const outputs = [
      { nodeId: '2', filename: 's_00001_.png', subfolder: '', type: 'output' },
      { nodeId: '10', filename: 's_00002_.png', subfolder: '', type: 'output' },
    ];
    await done.moveToCompleted({ outputs }, token, false);
    const completed = await expectSame(done.id!, 'completed');
    expect(completed.returnvalue).toEqual({ outputs });
    expect(completed.finishedOn).toBeGreaterThan(0);
    expect(toJobView(completed)).toMatchObject({ status: 'completed', outputs: [{}, {}] });

    await add('broken', { attempts: 1 });
    const broken = await take();
    await broken.moveToFailed(new Error('comfyui_unreachable: no answer'), token, false);
    const failed = await expectSame(broken.id!, 'failed');
    expect(failed.failedReason).toBe('comfyui_unreachable: no answer');
    expect(toJobView(failed)).toMatchObject({
      status: 'failed',
      error: { code: 'comfyui_unreachable', message: 'no answer' },
    });

    const flows = new FlowProducer({
      connection: redisOptions(h.config, 'worker'),
      prefix: h.config.queuePrefix,
    });
    try {
      const child = { jobType: 'image' };
      const tree = await flows.add({
        name: IMAGE_JOB_NAME,
        queueName: h.config.queueName,
        data: newJobData(workflow, { jobType: 'parent' }, Date.now()),
        children: [
          {
            name: IMAGE_JOB_NAME,
            queueName: h.config.queueName,
            data: newJobData(workflow, child, Date.now()),
          },
        ],
      });
      expect((await expectSame(tree.job.id!, 'waiting-children')).queuePosition).toBeUndefined();
      expect((await expectSame(tree.children![0].job.id!, 'waiting')).queuePosition).toBe(0);
    } finally {
      await flows.close();
    }
  });

  it('the cancel mark comes with the same read; a marked job has no position', async () => {
    const first = await add('first');
    const marked = await add('marked');
    const prio = await add('prio', { priority: 3 });
    const at = '2026-01-02T03:04:05.000Z';
    for (const j of [marked, prio]) {
      await h.services.redis.hset(jobKey(h.config, j.id!), CANCEL_FIELD, at);
    }
    for (const [j, state] of [
      [marked, 'waiting'],
      [prio, 'prioritized'],
    ] as const) {
      const s = await expectSame(j.id!, state);
      expect(s.cancelRequestedAt).toBe(at);
      expect(s.queuePosition).toBeUndefined();
      expect(toJobView(s)).toMatchObject({ status: 'cancelled', finishedAt: at });
    }
    expect((await expectSame(first.id!, 'waiting')).cancelRequestedAt).toBeUndefined();
  });

  it('a missing job, a malformed id and a hash in no BullMQ set read as null', async () => {
    await add('x');
    expect(await read('no-such-job')).toBeNull();
    expect(await reference('no-such-job')).toBeNull();
    expect(await read('bad:id')).toBeNull();
    await h.services.redis.hset(jobKey(h.config, 'orphan'), {
      name: IMAGE_JOB_NAME,
      data: JSON.stringify(newJobData(workflow, { jobType: 'image' }, 1)),
      timestamp: '1',
    });
    expect(await reference('orphan')).toBeNull(); // BullMQ: 'unknown'
    expect(await read('orphan')).toBeNull();
  });

  it('a read is one command to Redis', async () => {
    const job = await add('one');
    await read(job.id!); // loads the script (EVALSHA, then EVAL once)
    const sent = jest.spyOn(h.services.redis, 'sendCommand');
    try {
      expect((await read(job.id!))!.queuePosition).toBe(0);
      expect(sent.mock.calls.map(([c]) => c.name)).toEqual(['evalsha']);
    } finally {
      sent.mockRestore();
    }
  });

  it(`beyond ${QUEUE_POSITION_LIMIT} jobs ahead: still waiting, the position capped`, async () => {
    const size = QUEUE_POSITION_LIMIT + 3;
    const jobs = await h.services.queue.addBulk(
      Array.from({ length: size }, (_, i) => ({
        name: IMAGE_JOB_NAME,
        data: newJobData(workflow, { jobType: 'image', metadata: { i } }, Date.now()),
      })),
    );
    const ids = jobs.map((j) => j.id!);
    const prio = await add('prio', { priority: 1 });
    // within the limit: exactly the reference (a full scan from the head)
    for (const n of [0, 1, QUEUE_POSITION_LIMIT - 1]) {
      expect((await expectSame(ids[n], 'waiting')).queuePosition).toBe(n);
    }
    // deeper: BullMQ's state, and the cap ("this many or more")
    for (const n of [QUEUE_POSITION_LIMIT, size - 1]) {
      const [s, ref] = await Promise.all([read(ids[n]), reference(ids[n])]);
      expect(ref!.queuePosition).toBe(n);
      expect(s).toEqual({ ...ref, queuePosition: QUEUE_POSITION_LIMIT });
    }
    const p = await read(prio.id!);
    expect(p).toMatchObject({ bullState: 'prioritized', queuePosition: QUEUE_POSITION_LIMIT });
    expect(toJobView(p!).progress).toEqual({ percent: 0, queuePosition: QUEUE_POSITION_LIMIT });
  });
});
