import { Webhook } from 'standardwebhooks';
import { createLogger } from '../src/logger';
import { IMAGE_JOB_NAME } from '../src/queue';
import { createNotifyFinished, startWebhookWorker } from '../src/webhooks';
import type { Closable, WebhookEvent } from '../src/webhooks';
import { createWebhookQueue, deliveryJobId } from '../src/webhooks/queue';
import { startSystem, type TestSystem } from './helpers/system';
import { waitFor } from './helpers/wait';
import { HOOK_SECRET, startReceiver, type Receiver } from './helpers/webhook-receiver';
import { tinyWorkflow } from './helpers/workflows';
import { newJobData, type Workflow } from '../src/job/data';

/**
 * End to end: the real image worker (startImageWorker with notifyFinished) against the
 * ComfyUI simulator, and the webhook worker.
 */

const log = createLogger({ logLevel: 'silent' });

let sys: TestSystem;
let receiver: Receiver;
let notify: ReturnType<typeof createNotifyFinished>;
let webhooks: Closable;

beforeAll(async () => {
  receiver = await startReceiver(() => 200);

  sys = await startSystem({ WEBHOOK_SECRET: HOOK_SECRET, WEBHOOK_ALLOW_PRIVATE: '1' });
  const { config } = sys;
  notify = createNotifyFinished(config, { delivery: { backoffMs: 50 } });
  webhooks = await startWebhookWorker(config, { log, delivery: { backoffMs: 50, recheckMs: 50 } });
  await sys.startWorker({}, { notifyFinished: notify.notifyFinished });
});

afterAll(async () => {
  await webhooks?.close();
  await notify?.close();
  if (sys) {
    const wq = createWebhookQueue(sys.config);
    await wq.obliterate({ force: true }).catch(() => undefined);
    await wq.close();
    await sys.close();
  }
  await receiver?.close();
});

async function run(workflow: Workflow) {
  const job = await sys.queue.add(
    IMAGE_JOB_NAME,
    newJobData(workflow, { jobType: 'e2e', webhookUrl: receiver.url }, Date.now()),
  );
  const wq = createWebhookQueue(sys.config);
  try {
    await waitFor('the webhook to be delivered', async () => {
      const d = await wq.getJob(deliveryJobId(job.id!));
      return (await d?.getState()) === 'completed' ? true : undefined;
    });
  } finally {
    await wq.close();
  }
  const mine = receiver.received.filter(
    (r) => (JSON.parse(r.body) as WebhookEvent).data.id === job.id,
  );
  expect(mine).toHaveLength(1);
  const event = new Webhook(HOOK_SECRET).verify(
    mine[0].body,
    mine[0].headers as Record<string, string>,
  ) as WebhookEvent;
  return { id: job.id!, event };
}

it('delivers exactly one signed job.completed with the outputs', async () => {
  const { id, event } = await run(tinyWorkflow('wh-e2e'));
  expect(event.type).toBe('job.completed');
  expect(event.data.status).toBe('completed');
  expect(event.data.outputs).toEqual([
    expect.objectContaining({ nodeId: '3', type: 'output', url: `/v1/jobs/${id}/outputs/0` }),
  ]);
  expect(event.data.outputs![0].filename).toMatch(/^wh-e2e_\d+_\.png$/);
  expect(await (await sys.queue.getJob(id))!.getState()).toBe('completed');
});

it('delivers job.failed with the error code for a failing workflow', async () => {
  const { id, event } = await run(tinyWorkflow('../escape'));
  expect(event.type).toBe('job.failed');
  expect(event.data.status).toBe('failed');
  expect(event.data.error).toMatchObject({ code: 'execution_error', nodeId: '3' });
  expect(event.data.outputs).toBeUndefined();
  expect(await (await sys.queue.getJob(id))!.getState()).toBe('failed');
});
