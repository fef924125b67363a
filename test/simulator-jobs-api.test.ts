/**
 * The simulator's version switch (comfyui-api.md §13) and the client's use of the jobs API:
 * `current` has `/api/jobs`, canonical-UUID prompt ids and `create_time`; 0.3.64 has none of
 * them, and the client falls back to /queue + /history + /interrupt there.
 */
import { randomUUID } from 'node:crypto';
import { ComfyClient } from '../src/comfy/client';
import { createSimulator, type Simulator, type SimulatorOptions } from '../src/simulator/server';
import { sleepWorkflow, tinyWorkflow } from './helpers/workflows';
import { waitFor } from './helpers/wait';

const sims: Simulator[] = [];
const clients: ComfyClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(sims.splice(0).map((s) => s.close()));
});

async function start(opts: SimulatorOptions) {
  const sim = await createSimulator({ progressIntervalMs: 20, ...opts });
  sims.push(sim);
  const routes: string[] = [];
  const client = new ComfyClient(sim.url, {
    timeoutMs: 2000,
    observe: (route) => routes.push(route),
  });
  clients.push(client);
  return { sim, client, routes };
}

/** the fields of the jobs API's answers these tests read */
interface Answer {
  id?: string;
  status?: string;
  create_time?: number;
  workflow?: { extra_data: { create_time?: number } };
  system?: { comfyui_version: string };
  jobs?: unknown[];
  pagination?: unknown;
}

const post = (url: string, path: string, body: unknown) =>
  fetch(url + path, { method: 'POST', body: JSON.stringify(body) });

describe("version 'current'", () => {
  test('prompt ids must be canonical UUIDs; create_time is in extra_data; duplicates run again', async () => {
    const { sim } = await start({ version: 'current' });
    const bad = await post(sim.url, '/prompt', { prompt: tinyWorkflow(), prompt_id: 'job-1' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { type: string } }).error.type).toBe(
      'invalid_prompt_id',
    );
    const id = randomUUID();
    const before = Date.now();
    for (let i = 0; i < 2; i++)
      expect(
        (await post(sim.url, '/prompt', { prompt: tinyWorkflow(), prompt_id: id })).status,
      ).toBe(200);
    await waitFor('both runs', async () => (sim.executions()[id] === 2 ? true : undefined));
    const job = (await (await fetch(`${sim.url}/api/jobs/${id}`)).json()) as Answer;
    expect(job).toMatchObject({ id, status: 'completed', outputs_count: 1 });
    expect(job.create_time).toBeGreaterThanOrEqual(before);
    expect(job.workflow?.extra_data.create_time).toBe(job.create_time);
    const stats = (await (await fetch(`${sim.url}/system_stats`)).json()) as Answer;
    expect(stats.system?.comfyui_version).toBe('0.38.1');
  });

  test('GET /api/jobs/{id}: pending, in_progress, 404 for an unknown id; the list pages', async () => {
    const { sim } = await start({ version: 'current' });
    const [a, b] = [randomUUID(), randomUUID()];
    await post(sim.url, '/prompt', { prompt: sleepWorkflow(0.5), prompt_id: a });
    await post(sim.url, '/prompt', { prompt: sleepWorkflow(0.5), prompt_id: b });
    const get = async (id: string) => {
      const res = await fetch(`${sim.url}/api/jobs/${id}`);
      return [res.status, (await res.json()) as Answer] as const;
    };
    await waitFor('a running', async () =>
      (await get(a))[1].status === 'in_progress' ? 1 : undefined,
    );
    expect((await get(b))[1]).toMatchObject({ id: b, status: 'pending', outputs_count: 0 });
    expect(await get(randomUUID())).toEqual([404, { error: 'Job not found' }]);
    const list = (await (await fetch(`${sim.url}/api/jobs?limit=1`)).json()) as Answer;
    expect(list.jobs).toHaveLength(1);
    expect(list.pagination).toMatchObject({ offset: 0, limit: 1, total: 2, has_more: true });
    expect((await fetch(`${sim.url}/api/jobs?status=done`)).status).toBe(400);
    expect((await fetch(`${sim.url}/jobs/${a}`)).status).toBe(404); // only under /api
  });

  test('POST /api/jobs/{id}/cancel: dequeues, interrupts (cancelled), a no-op when finished', async () => {
    const { sim } = await start({ version: 'current' });
    const [a, b] = [randomUUID(), randomUUID()];
    await post(sim.url, '/prompt', { prompt: sleepWorkflow(5), prompt_id: a });
    await post(sim.url, '/prompt', { prompt: sleepWorkflow(5), prompt_id: b });
    const cancel = async (id: string) =>
      (await (await post(sim.url, `/api/jobs/${id}/cancel`, {})).json()) as unknown;
    expect(await cancel(b)).toEqual({ cancelled: true });
    await waitFor('a running', async () => (sim.executions()[a] === 1 ? 1 : undefined));
    expect(await cancel(a)).toEqual({ cancelled: true });
    await waitFor('a cancelled', async () => {
      const j = (await (await fetch(`${sim.url}/api/jobs/${a}`)).json()) as { status: string };
      return j.status === 'cancelled' ? 1 : undefined;
    });
    expect(await cancel(a)).toEqual({ cancelled: false });
    expect((await fetch(`${sim.url}/api/jobs/${b}`)).status).toBe(404); // dequeued: no history
    expect(sim.executions()[b]).toBeUndefined();
  });
});

describe('the client', () => {
  test('uses the jobs API when the server has it (probed once), for look-ups and cancel', async () => {
    const { sim, client, routes } = await start({ version: 'current' });
    const id = randomUUID();
    await post(sim.url, '/prompt', { prompt: sleepWorkflow(5), prompt_id: id });
    await waitFor('running', async () =>
      (await client.lookup(id)).state === 'running' ? 1 : undefined,
    );
    expect(await client.lookup(randomUUID())).toEqual({ state: 'absent' });
    await client.cancel(id);
    const done = await waitFor('interrupted', async () => {
      const r = await client.lookup(id);
      return r.state === 'done' ? r : undefined;
    });
    expect(done.outcome.kind).toBe('interrupted');
    expect(routes.filter((r) => r === 'GET /api/jobs')).toHaveLength(1);
    expect(routes).toContain('POST /api/jobs/{id}/cancel');
    expect(routes.filter((r) => /queue|history|interrupt/.test(r))).toEqual([]);
  });

  test('falls back to /queue, /history and /interrupt on 0.3.64', async () => {
    const { sim, client, routes } = await start({ version: '0.3.64' });
    const id = randomUUID();
    await post(sim.url, '/prompt', { prompt: sleepWorkflow(5), prompt_id: id });
    await waitFor('running', async () =>
      (await client.lookup(id)).state === 'running' ? 1 : undefined,
    );
    await client.cancel(id);
    const done = await waitFor('interrupted', async () => {
      const r = await client.lookup(id);
      return r.state === 'done' ? r : undefined;
    });
    expect(done.outcome.kind).toBe('interrupted');
    expect(routes.filter((r) => r.includes('/api/jobs'))).toEqual(['GET /api/jobs']);
    expect(routes).toEqual(expect.arrayContaining(['GET /queue', 'POST /interrupt']));
  });
});
