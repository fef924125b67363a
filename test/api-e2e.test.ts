import { JobViewSchema, type JobView } from '../src/job/view';
import { createSimulator } from '../src/simulator/server';
import type { ImageWorker } from '../src/worker/worker';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';
import { openSse } from './helpers/api-sse';
import { startTestWorker } from './helpers/api-worker';
import { waitFor } from './helpers/wait';
import { sleepWorkflow, tinyWorkflow } from './helpers/workflows';

/**
 * End to end over real HTTP: API → Redis → in-process worker → ComfyUI simulator, with
 * SSE read by a real client and the output PNG fetched through the API; cancels.
 */

type Sim = Awaited<ReturnType<typeof createSimulator>>;
const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

describe('API end to end', () => {
  let h: ApiHarness;
  let sim: Sim;
  let base: string;
  let worker: ImageWorker | undefined;

  beforeAll(async () => {
    h = await startApiHarness({ logLevel: 'warn' });
    sim = await createSimulator({ port: 0 });
    base = await h.listen();
  });
  afterAll(async () => {
    await worker?.close();
    await sim?.close();
    await h?.close();
  });

  const post = async (body: Record<string, unknown>) => {
    const res = await fetch(`${base}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(202);
    return ((await res.json()) as { id: string }).id;
  };
  const view = async (id: string) =>
    (await (await fetch(`${base}/v1/jobs/${id}`)).json()) as JobView;
  /** tests after the first need a worker; the first starts it itself, after its cancel */
  const ensureWorker = async () => (worker ??= await startTestWorker(h, sim.url));
  const del = (id: string) => fetch(`${base}/v1/jobs/${id}`, { method: 'DELETE' });
  const simQueue = async () =>
    (await (await fetch(`${sim.url}/queue`)).json()) as {
      queue_running: unknown[][];
      queue_pending: unknown[][];
    };

  it('a queued job cancelled before any worker runs ends cancelled and never reaches ComfyUI', async () => {
    const id = await post({ workflow: tinyWorkflow('never') });
    const res = await del(id);
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ id, status: 'cancelled' });
    expect((await view(id)).status).toBe('cancelled');

    await ensureWorker();
    await waitFor('the worker to fail the cancelled job', async () =>
      (await h.services.queue.getJobState(id)) === 'failed' ? true : undefined,
    );
    const v = await view(id);
    expect(v).toMatchObject({ status: 'cancelled', error: { code: 'cancelled' } });
    expect(v.promptId).toBeUndefined();
    expect(Object.keys(await sim.executions())).toHaveLength(0);
    expect((await del(id)).status).toBe(409);
  });

  it('HTTP → worker → simulator → completed, seen over SSE; the PNG comes through the API', async () => {
    await ensureWorker();
    const id = await post({ workflow: sleepWorkflow(1, 'e2e'), metadata: { test: 'e2e' } });
    const sse = await openSse(`${base}/v1/jobs/${id}/events`);
    const events = await sse.done; // the server ends the stream at the terminal state

    expect(events.length).toBeGreaterThanOrEqual(2);
    expect(events[0].event).toBe('progress'); // the current view first
    expect(events.at(-1)!.event).toBe('completed');
    expect(events.slice(0, -1).every((e) => e.event === 'progress')).toBe(true);
    for (const e of events) JobViewSchema.parse(e.data);
    const statuses = events.map((e) => (e.data as JobView).status);
    expect(statuses).toContain('running');
    const done = events.at(-1)!.data as JobView;
    expect(done).toMatchObject({
      id,
      status: 'completed',
      progress: { percent: 100 },
      metadata: { test: 'e2e' },
    });
    expect(done.attempts).toBe(1);
    expect(done.outputs).toHaveLength(1);
    expect(done.outputs![0]).toMatchObject({
      nodeId: '3',
      type: 'output',
      url: `/v1/jobs/${id}/outputs/0`,
    });
    expect(await view(id)).toEqual(done);
    expect((await sim.executions())[done.promptId!]).toBe(1);

    const file = await fetch(`${base}${done.outputs![0].url}`);
    expect(file.status).toBe(200);
    expect(file.headers.get('content-type')).toBe('image/png');
    const bytes = new Uint8Array(await file.arrayBuffer());
    expect([...bytes.subarray(0, 8)]).toEqual(PNG_MAGIC);

    await sim.pause(); // ComfyUI gone: the stored copy is served all the same
    try {
      const stored = await fetch(`${base}${done.outputs![0].url}`);
      expect(stored.status).toBe(200);
      expect(new Uint8Array(await stored.arrayBuffer())).toEqual(bytes);
    } finally {
      await sim.resume();
    }

    const missing = await fetch(`${base}/v1/jobs/${id}/outputs/1`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('not_found');
    const again = await del(id);
    expect(again.status).toBe(409);
    expect(((await again.json()) as { error: { code: string } }).error.code).toBe(
      'already_finished',
    );
  });

  it('SSE of a finished job answers its terminal event at once', async () => {
    await ensureWorker();
    const id = await post({ workflow: tinyWorkflow('fast') });
    await waitFor('completion', async () =>
      (await view(id)).status === 'completed' ? true : undefined,
    );
    const sse = await openSse(`${base}/v1/jobs/${id}/events`);
    const events = await sse.done;
    expect(events.map((e) => e.event)).toEqual(['completed']);
    // an EventSource reconnecting after the end is told to stop (204)
    const reconnect = await fetch(`${base}/v1/jobs/${id}/events`, {
      headers: { 'last-event-id': 'completed' },
    });
    expect(reconnect.status).toBe(204);
  });

  it('cancel of a running job: its prompt leaves ComfyUI and it ends cancelled', async () => {
    await ensureWorker();
    const id = await post({ workflow: sleepWorkflow(5, 'cancel-me') });
    const running = await waitFor('the job to run in ComfyUI', async () => {
      const v = await view(id);
      return v.status === 'running' ? v : undefined;
    });
    const promptId = running.promptId!;
    const inQueue = async () => {
      const q = await simQueue();
      return [...q.queue_running, ...q.queue_pending].some((e) => e[1] === promptId);
    };
    expect(await inQueue()).toBe(true);
    const sse = await openSse(`${base}/v1/jobs/${id}/events`);

    const res = await del(id);
    expect(res.status).toBe(202);
    expect((await view(id)).status).toBe('cancelled'); // at once, before the worker acts
    const events = await sse.done;
    expect(events.at(-1)!.event).toBe('cancelled');

    await waitFor('the prompt to leave the simulator queue', async () =>
      (await inQueue()) ? undefined : true,
    );
    await waitFor('the job to end failed in BullMQ', async () =>
      (await h.services.queue.getJobState(id)) === 'failed' ? true : undefined,
    );
    const v = await view(id);
    expect(v).toMatchObject({ status: 'cancelled', error: { code: 'cancelled' }, promptId });
    expect(v.outputs).toBeUndefined();
    expect((await del(id)).status).toBe(409);
  });
});
