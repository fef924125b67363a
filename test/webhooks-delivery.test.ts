import { randomBytes } from 'node:crypto';
import { QueueEvents, Worker } from 'bullmq';
import { Webhook } from 'standardwebhooks';
import { loadConfig, type Config } from '../src/config';
import { onCompleted, onPickup } from '../src/job/state';
import { createLogger } from '../src/logger';
import { createMetrics, type Metrics } from '../src/metrics';
import { createImageQueue, IMAGE_JOB_NAME, type ImageQueue } from '../src/queue';
import { redisOptions } from '../src/redis';
import { createNotifyFinished, startWebhookWorker } from '../src/webhooks';
import type { Closable, WebhookEvent } from '../src/webhooks';
import { createWebhookQueue, deliveryJobId, type WebhookQueue } from '../src/webhooks/queue';
import { UNRESOLVABLE_ATTEMPTS } from '../src/webhooks/deliver';
import type { LookupAll } from '../src/webhooks/url-policy';
import { startRedis, type RedisServer } from './helpers/redis-server';
import { HOOK_SECRET, startReceiver, type Receiver } from './helpers/webhook-receiver';
import { waitFor } from './helpers/wait';
import { tinyWorkflow } from './helpers/workflows';
import { newJobData, type JobData, type JobResult } from '../src/job/data';

const FAST = { attempts: 6, backoffMs: 40, timeoutMs: 400, recheckMs: 50 };
const log = createLogger({ logLevel: 'silent' });
const OUTPUTS = [{ nodeId: '3', filename: 'x_00001_.png', subfolder: '', type: 'output' }];

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.stop();
});

/** One isolated system per test: image queue, a stand-in image worker, the webhook pieces. */
async function setup(env: Record<string, string> = {}, resolve?: LookupAll) {
  const config: Config = loadConfig({
    REDIS_URL: redis.url,
    QUEUE_NAME: `wq-${randomBytes(4).toString('hex')}`,
    WEBHOOK_SECRET: HOOK_SECRET,
    WEBHOOK_ALLOW_PRIVATE: '1',
    LOG_LEVEL: 'silent',
    ...env,
  });
  const closers: (() => Promise<unknown>)[] = [];
  const imageQueue: ImageQueue = createImageQueue(config);
  const events = new QueueEvents(config.queueName, {
    connection: redisOptions(config, 'worker'),
    prefix: config.queuePrefix,
  });
  const webhookQueue: WebhookQueue = createWebhookQueue(config);
  const notify = createNotifyFinished(config, { delivery: FAST });
  const metrics: Metrics = createMetrics();
  let release: () => void = () => {};
  let gate: Promise<void> | undefined;

  // stands in for the image processor: notify, then save the outcome, in that order
  const imageWorker = new Worker<JobData, JobResult>(
    config.queueName,
    async (job) => {
      await notify.notifyFinished(job.id!, job.data.request);
      await notify.notifyFinished(job.id!, job.data.request); // a resume after a crash
      if (gate) await gate;
      const state = onCompleted(onPickup(job.data.state, 0, Date.now(), false), Date.now());
      await job.updateData({ ...job.data, workflow: null, state });
      return { outputs: OUTPUTS };
    },
    { connection: redisOptions(config, 'worker'), prefix: config.queuePrefix },
  );
  await Promise.all([events.waitUntilReady(), imageWorker.waitUntilReady()]);
  closers.push(
    () => imageWorker.close(),
    () => events.close(),
    () => notify.close(),
    () => webhookQueue.obliterate({ force: true }).then(() => webhookQueue.close()),
    () => imageQueue.obliterate({ force: true }).then(() => imageQueue.close()),
  );

  let webhooks: Closable | undefined;
  return {
    config,
    imageQueue,
    webhookQueue,
    metrics,
    /** holds the stand-in worker between notifying and saving the outcome */
    holdOutcome() {
      gate = new Promise<void>((r) => (release = r));
    },
    releaseOutcome: () => release(),
    async startWebhooks() {
      webhooks = await startWebhookWorker(config, { log, metrics, delivery: FAST, resolve });
    },
    async enqueue(webhookUrl: string) {
      const job = await imageQueue.add(
        IMAGE_JOB_NAME,
        newJobData(tinyWorkflow(), { jobType: 'test', userId: 'u1', webhookUrl }, Date.now()),
      );
      return job;
    },
    events,
    async deliveryJob(imageJobId: string) {
      return webhookQueue.getJob(deliveryJobId(imageJobId));
    },
    async deliveryState(imageJobId: string) {
      return (await this.deliveryJob(imageJobId))?.getState();
    },
    async counts(): Promise<Record<string, number>> {
      const m = await metrics.webhookDeliveries.get();
      return Object.fromEntries(m.values.map((v) => [String(v.labels.outcome), v.value]));
    },
    async close() {
      await webhooks?.close();
      for (const c of closers) await c().catch(() => undefined);
    },
  };
}

describe('webhook delivery (real Redis, real HTTP receiver)', () => {
  let sys: Awaited<ReturnType<typeof setup>>;
  let receiver: Receiver;
  afterEach(async () => {
    await sys?.close();
    await receiver?.close();
  });

  it('retries a failing receiver with backoff and delivers a signed event once it recovers, leaving the image job completed', async () => {
    sys = await setup();
    receiver = await startReceiver((n) => (n <= 3 ? 500 : 200));
    const job = await sys.enqueue(receiver.url);
    await job.waitUntilFinished(sys.events);
    await sys.startWebhooks();

    for (let n = 1; n <= 3; n++) {
      await receiver.request(n);
      const image = await sys.imageQueue.getJob(job.id!);
      expect(await image!.getState()).toBe('completed');
      expect(image!.attemptsMade).toBe(1); // the image job never re-ran
    }
    const ok = await receiver.request(4);
    await waitFor('the delivery job to complete', async () =>
      (await sys.deliveryState(job.id!)) === 'completed' ? true : undefined,
    );

    // every attempt is signed with the same message id; the library's verifier accepts them
    const wh = new Webhook(HOOK_SECRET);
    const ids = new Set(receiver.received.map((r) => r.headers['webhook-id']));
    expect(ids.size).toBe(1);
    for (const r of receiver.received) {
      expect(() => wh.verify(r.body, r.headers as Record<string, string>)).not.toThrow();
    }
    const event = wh.verify(ok.body, ok.headers as Record<string, string>) as WebhookEvent;
    expect(event.type).toBe('job.completed');
    expect(event.data).toMatchObject({
      id: job.id,
      status: 'completed',
      jobType: 'test',
      userId: 'u1',
      progress: { percent: 100 },
      outputs: [{ ...OUTPUTS[0], url: `/v1/jobs/${job.id}/outputs/0` }],
    });
    expect(event.timestamp).toBe(event.data.finishedAt);
    expect(() => wh.verify(ok.body.replace('completed', 'failed'), ok.headers as never)).toThrow();

    const delivery = await sys.deliveryJob(job.id!);
    expect(delivery!.returnvalue).toMatchObject({ status: 200, attempt: 4 });
    expect(receiver.received).toHaveLength(4);
    expect(await sys.webhookQueue.getJobCounts()).toMatchObject({ completed: 1, failed: 0 });
    expect(await sys.counts()).toEqual({ failed: 3, delivered: 1 });
    expect(await (await sys.imageQueue.getJob(job.id!))!.getState()).toBe('completed');
  });

  it('waits for the image job to save its outcome, and enqueues one delivery per job', async () => {
    sys = await setup();
    receiver = await startReceiver(() => 204);
    await sys.startWebhooks();
    sys.holdOutcome();
    const job = await sys.enqueue(receiver.url);
    // notified (twice) but not saved: the delivery re-checks later, nothing is sent
    await waitFor('the delivery to re-check later', async () =>
      (await sys.deliveryState(job.id!)) === 'delayed' ? true : undefined,
    );
    expect(receiver.received).toHaveLength(0);
    expect(await sys.webhookQueue.count()).toBe(1);

    sys.releaseOutcome();
    const r = await receiver.request(1);
    expect((JSON.parse(r.body) as WebhookEvent).data.status).toBe('completed');
    await waitFor('the delivery job to complete', async () =>
      (await sys.deliveryState(job.id!)) === 'completed' ? true : undefined,
    );
    expect(receiver.received).toHaveLength(1);
    const counts = await sys.webhookQueue.getJobCounts();
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(1);
  });

  it('retries from its snapshot after retention removed the image job, and times out a silent receiver', async () => {
    sys = await setup();
    receiver = await startReceiver((n) => (n === 1 ? 'hang' : 200));
    const job = await sys.enqueue(receiver.url);
    await job.waitUntilFinished(sys.events);
    await sys.startWebhooks();
    const first = await receiver.request(1);
    await (await sys.imageQueue.getJob(job.id!))!.remove();

    const second = await receiver.request(2); // after the 400 ms timeout and the backoff
    expect(second.body).toBe(first.body);
    await waitFor('the delivery job to complete', async () =>
      (await sys.deliveryState(job.id!)) === 'completed' ? true : undefined,
    );
    expect(await sys.counts()).toEqual({ failed: 1, delivered: 1 });
  });

  it('stops at 410 Gone', async () => {
    sys = await setup();
    receiver = await startReceiver(() => 410);
    const job = await sys.enqueue(receiver.url);
    await job.waitUntilFinished(sys.events);
    await sys.startWebhooks();
    await waitFor('the delivery job to fail', async () =>
      (await sys.deliveryState(job.id!)) === 'failed' ? true : undefined,
    );
    const delivery = await sys.deliveryJob(job.id!);
    expect(delivery!.failedReason).toMatch(/^gone: /);
    expect(delivery!.attemptsMade).toBe(1);
    expect(receiver.received).toHaveLength(1);
    expect(await sys.counts()).toEqual({ gone: 1 });
  });

  it('refuses a name that resolves to a private address, without contacting it', async () => {
    receiver = await startReceiver(() => 200);
    const resolve: LookupAll = (_host, _opts, cb) =>
      cb(null, [{ address: '127.0.0.1', family: 4 }]);
    sys = await setup({ WEBHOOK_ALLOW_PRIVATE: '0' }, resolve);
    const job = await sys.enqueue(`http://hooks.example.test:${receiver.port}/x`);
    await job.waitUntilFinished(sys.events);
    await sys.startWebhooks();
    await waitFor('the delivery job to fail', async () =>
      (await sys.deliveryState(job.id!)) === 'failed' ? true : undefined,
    );
    const delivery = await sys.deliveryJob(job.id!);
    expect(delivery!.failedReason).toMatch(/^refused: .*hooks\.example\.test.*loopback/);
    expect(delivery!.attemptsMade).toBe(1);
    expect(receiver.received).toHaveLength(0);
    expect(await sys.counts()).toEqual({ refused: 1 });
  });

  it(`fails a delivery whose host does not resolve after ${UNRESOLVABLE_ATTEMPTS} attempts, not after all of them`, async () => {
    sys = await setup({ WEBHOOK_ALLOW_PRIVATE: '0' });
    const job = await sys.enqueue('http://hooks.nowhere.invalid/x');
    await job.waitUntilFinished(sys.events);
    await sys.startWebhooks();
    await waitFor('the delivery job to fail', async () =>
      (await sys.deliveryState(job.id!)) === 'failed' ? true : undefined,
    );
    const delivery = await sys.deliveryJob(job.id!);
    expect(delivery!.failedReason).toMatch(/^unresolvable: .*hooks\.nowhere\.invalid/);
    expect(delivery!.attemptsMade).toBe(UNRESOLVABLE_ATTEMPTS);
    expect(UNRESOLVABLE_ATTEMPTS).toBeLessThan(FAST.attempts);
  });

  it('names outputs by absolute URLs under PUBLIC_URL, as the job view does', async () => {
    sys = await setup({ PUBLIC_URL: 'https://queue.example.com/' });
    receiver = await startReceiver(() => 200);
    const job = await sys.enqueue(receiver.url);
    await job.waitUntilFinished(sys.events);
    await sys.startWebhooks();
    const event = JSON.parse((await receiver.request(1)).body) as WebhookEvent;
    expect(event.data.outputs).toEqual([
      { ...OUTPUTS[0], url: `https://queue.example.com/v1/jobs/${job.id}/outputs/0` },
    ]);
  });

  it('sends unsigned deliveries (id and timestamp only) without WEBHOOK_SECRET', async () => {
    sys = await setup({ WEBHOOK_SECRET: '' });
    receiver = await startReceiver(() => 200);
    const job = await sys.enqueue(receiver.url);
    await sys.startWebhooks();
    const r = await receiver.request(1);
    expect(r.headers['webhook-id']).toBe(`msg_${job.id}_completed`);
    expect(Number(r.headers['webhook-timestamp'])).toBeGreaterThan(0);
    expect(r.headers['webhook-signature']).toBeUndefined();
    expect(r.headers['content-type']).toBe('application/json');
  });
});
