import { createSimulator } from '../src/simulator/server';
import type { ImageWorker } from '../src/worker/worker';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';
import { startTestWorker } from './helpers/api-worker';
import { waitFor } from './helpers/wait';
import { tinyWorkflow } from './helpers/workflows';

/**
 * POST /v1/jobs/:id/retry: a failed job runs again as a new generation (new prompt id,
 * counters kept) and completes; completed and cancelled jobs answer 409 already_finished,
 * queued ones 409 not_finished. The first run fails on a ComfyUI whose every prompt fails;
 * the retry runs on a healthy one.
 */

type Sim = Awaited<ReturnType<typeof createSimulator>>;
interface View {
  id: string;
  status: string;
  promptId?: string;
  attempts: number;
  error?: { code: string };
}

let h: ApiHarness;
let broken: Sim;
let healthy: Sim;
const workers: ImageWorker[] = [];
let base: string;

beforeAll(async () => {
  h = await startApiHarness({ logLevel: 'warn' });
  broken = await createSimulator({ port: 0, failureRate: 1 });
  healthy = await createSimulator({ port: 0 });
  base = await h.listen();
});
afterAll(async () => {
  for (const w of workers) await w.close();
  await broken?.close();
  await healthy?.close();
  await h?.close();
});

async function call(method: string, path: string, body?: unknown) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: (await res.json()) as View & { error: { code: string } } };
}
const enqueue = async (prefix: string) =>
  (await call('POST', '/v1/jobs', { jobType: 'retry-test', workflow: tinyWorkflow(prefix) })).body
    .id;
const view = async (id: string) => (await call('GET', `/v1/jobs/${id}`)).body;
const settled = (id: string, status: string) =>
  waitFor(`job ${id} to be ${status}`, async () => {
    const v = await view(id);
    return v.status === status ? v : undefined;
  });

test('a failed job runs again as a new generation and completes; others answer 409', async () => {
  const first = await startTestWorker(h, broken.url);
  workers.push(first);
  const failedId = await enqueue('retry-me');
  const failed = await settled(failedId, 'failed');
  expect(failed.error?.code).toBe('execution_error');
  await first.close();

  // no worker runs now: a queued job is not finished, a cancelled one is
  const queuedId = await enqueue('retry-queued');
  const cancelledId = await enqueue('retry-cancelled');
  expect((await call('DELETE', `/v1/jobs/${cancelledId}`)).status).toBe(202);
  for (const [id, status, code] of [
    [queuedId, 409, 'not_finished'],
    [cancelledId, 409, 'already_finished'],
    ['no-such-job', 404, 'not_found'],
  ] as const) {
    const r = await call('POST', `/v1/jobs/${id}/retry`);
    expect({ id, status: r.status, code: r.body.error.code }).toEqual({ id, status, code });
  }

  const retried = await call('POST', `/v1/jobs/${failedId}/retry`);
  expect(retried.status).toBe(202);
  expect(retried.body).toMatchObject({ id: failedId, status: 'queued' });
  expect(retried.body.error).toBeUndefined();
  // a second retry while the first waits: not finished
  expect((await call('POST', `/v1/jobs/${failedId}/retry`)).body.error.code).toBe('not_finished');

  workers.push(await startTestWorker(h, healthy.url));
  const done = await settled(failedId, 'completed');
  expect(done.promptId).toBeDefined();
  expect(done.promptId).not.toBe(failed.promptId);
  expect(done.attempts).toBe(failed.attempts + 1);
  expect(broken.executions()[failed.promptId!]).toBe(1);
  expect(healthy.executions()[done.promptId!]).toBe(1);

  await settled(queuedId, 'completed');
  for (const id of [failedId, queuedId]) {
    const r = await call('POST', `/v1/jobs/${id}/retry`);
    expect({ id, status: r.status, code: r.body.error.code }).toEqual({
      id,
      status: 409,
      code: 'already_finished',
    });
  }
});
