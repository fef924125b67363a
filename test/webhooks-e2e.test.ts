import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { createLogger } from '../src/logger';
import { IMAGE_JOB_NAME } from '../src/queue';
import {
  createNotifyFinished,
  startWebhookWorker,
  type Closable,
  type WebhookEvent,
} from '../src/webhooks';
import { createWebhookQueue, deliveryJobId } from '../src/webhooks/queue';
import { startSystem, type TestSystem } from './helpers/system';
import { waitFor } from './helpers/wait';
import { tinyWorkflow } from './helpers/workflows';
import { newJobData, type Workflow } from '../src/job/data';

/**
 * End to end: the real image worker (startImageWorker with notifyFinished) against the
 * ComfyUI simulator, and the webhook worker.
 */

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const log = createLogger({ logLevel: 'silent' });

let sys: TestSystem;
let server: Server;
let receiverUrl: string;
const received: { headers: IncomingHttpHeaders; body: string }[] = [];
let notify: ReturnType<typeof createNotifyFinished>;
let webhooks: Closable;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.writeHead(200).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  receiverUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`;

  sys = await startSystem({ WEBHOOK_SECRET: SECRET, WEBHOOK_ALLOW_PRIVATE: '1' });
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
  server?.closeAllConnections();
  server?.close();
});

async function run(workflow: Workflow) {
  const job = await sys.queue.add(
    IMAGE_JOB_NAME,
    newJobData(workflow, { jobType: 'e2e', webhookUrl: receiverUrl }, Date.now()),
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
  const mine = received.filter((r) => (JSON.parse(r.body) as WebhookEvent).data.id === job.id);
  expect(mine).toHaveLength(1);
  const event = new Webhook(SECRET).verify(
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
