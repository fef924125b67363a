/**
 * Failures and control: runtime errors, interrupts, queue deletion, duplicate prompt ids
 * (0.3.64, and the 409 of unmerged pull requests), restart, pause/resume and injected failures.
 */
import { createSimulator, type Simulator, type SimulatorOptions } from '../src/simulator/server';
import {
  bodyFrom,
  http,
  newId,
  postTranscript,
  promptMessages,
  shape,
  transcript,
  typeSequence,
  WsClient,
} from './simulator-helpers';

const open: { sims: Simulator[]; sockets: WsClient[] } = { sims: [], sockets: [] };
async function start(opts: SimulatorOptions = {}) {
  const sim = await createSimulator({ progressIntervalMs: 20, ...opts });
  open.sims.push(sim);
  return sim;
}
async function connect(sim: Simulator, clientId?: string) {
  const ws = await WsClient.connect(sim.url, clientId);
  open.sockets.push(ws);
  return ws;
}
afterEach(async () => {
  await Promise.all(open.sockets.splice(0).map((s) => s.close()));
  await Promise.all(open.sims.splice(0).map((s) => s.close()));
});

const sleepBody = (t: ReturnType<typeof transcript>, step: number, ids: object, seconds: number) =>
  bodyFrom(t, step, ids, (p) => (p['2'].inputs.seconds = seconds));

it('runtime error (runtime-error.json): 200 on POST, then execution_error, status, executing null', async () => {
  const t = transcript('runtime-error');
  const sim = await start();
  const [clientId, promptId] = [newId(), newId()];
  const ws = await connect(sim, clientId);
  const post = await http(
    sim.url,
    'POST',
    '/prompt',
    bodyFrom(t, 0, { client_id: clientId, prompt_id: promptId }),
  );
  expect(post.json).toEqual({ prompt_id: promptId, number: 0, node_errors: {} });
  await ws.done(promptId);
  expect(ws.messages.map((m) => m.type)).toEqual(t.ws.map((m) => m.type));
  const error = ws.messages.find((m) => m.type === 'execution_error')!;
  const recorded = t.ws.find((m) => m.type === 'execution_error')!;
  expect(Object.keys(error.data)).toEqual(Object.keys(recorded.data));
  expect(error.data).toMatchObject({
    node_id: '3',
    node_type: 'SaveImage',
    exception_type: 'Exception',
  });
  expect(error.data.exception_message).toMatch(
    /^\*\*\*\* ERROR: Saving image outside the output folder is not allowed\.\n full_output_folder: .*\n$/s,
  );
  expect([...error.data.executed].sort()).toEqual(['1', '2']);
  expect(Object.keys(error.data.current_inputs)).toEqual(Object.keys(recorded.data.current_inputs));
  expect(error.data.current_inputs.images[0]).toBe(recorded.data.current_inputs.images[0]); // torch's repr
  expect([...error.data.current_outputs].sort()).toEqual(['1', '2', '3']);

  const h = (await http(sim.url, 'GET', `/history/${promptId}`)).json[promptId];
  expect(shape({ ...h, status: null })).toEqual(
    shape({ ...t.steps[1].response.body[t.prompt_id], status: null }),
  );
  expect(h.status).toMatchObject({ status_str: 'error', completed: false });
  expect(h.status.messages.map((m: [string]) => m[0])).toEqual([
    'execution_start',
    'execution_cached',
    'execution_error',
  ]);
  expect([h.outputs, h.meta]).toEqual([{}, {}]);
});

it('interrupt (interrupted.json): cooperative, reported with the running node', async () => {
  const t = transcript('interrupted');
  const sim = await start();
  const [clientId, promptId] = [newId(), newId()];
  const ws = await connect(sim, clientId);
  await http(
    sim.url,
    'POST',
    '/prompt',
    sleepBody(t, 0, { client_id: clientId, prompt_id: promptId }, 10),
  );
  await ws.until((m) => m.type === 'progress', 'a progress message');
  expect(
    await http(sim.url, 'POST', '/interrupt', { prompt_id: newId() }).then((r) => r.status),
  ).toBe(200); // not running: no-op
  const r = await http(sim.url, 'POST', '/interrupt', { prompt_id: promptId });
  expect([r.status, r.contentType, r.text]).toEqual([200, 'application/octet-stream', '']);
  await ws.done(promptId);

  expect(typeSequence(ws.messages)).toEqual(typeSequence(t.ws));
  const interrupted = ws.messages.find((m) => m.type === 'execution_interrupted')!;
  expect(interrupted.data).toEqual({
    ...t.ws[204].data,
    prompt_id: promptId,
    timestamp: interrupted.data.timestamp,
  });
  const h = (await http(sim.url, 'GET', `/history/${promptId}`)).json;
  expect(shape(h[promptId])).toEqual(shape(t.steps[3].response.body[t.prompt_id]));
  expect(h[promptId].status.messages.at(-1)[0]).toBe('execution_interrupted');
  expect((await http(sim.url, 'GET', '/queue')).json).toEqual({
    queue_running: [],
    queue_pending: [],
  });
});

it('a global interrupt (no body) stops the running prompt too', async () => {
  const sim = await start();
  const id = newId();
  const ws = await connect(sim, 'g');
  await http(
    sim.url,
    'POST',
    '/prompt',
    sleepBody(transcript('interrupted'), 0, { client_id: 'g', prompt_id: id }, 10),
  );
  await ws.until((m) => m.type === 'progress', 'a progress message');
  expect((await fetch(`${sim.url}/api/interrupt`, { method: 'POST' })).status).toBe(200);
  await ws.done(id);
  expect(ws.messages.some((m) => m.type === 'execution_interrupted')).toBe(true);
});

it('queue delete (queue-delete.json): only pending, no history, two status messages for the last item', async () => {
  const t = transcript('queue-delete');
  const sim = await start();
  const [clientId, running, deleted] = [newId(), newId(), newId()];
  const ws = await connect(sim, clientId);
  await http(
    sim.url,
    'POST',
    '/prompt',
    sleepBody(t, 0, { client_id: clientId, prompt_id: running }, 0.5),
  );
  await ws.until((m) => m.type === 'progress', 'a progress message');
  await http(
    sim.url,
    'POST',
    '/prompt',
    bodyFrom(t, 1, { client_id: clientId, prompt_id: deleted }),
  );
  const before = (await http(sim.url, 'GET', '/queue')).json;
  expect(shape(before)).toEqual(shape(t.steps[2].response.body));
  const statuses = ws.messages.length;
  const del = await http(sim.url, 'POST', '/queue', { delete: [deleted, running] });
  expect([del.status, del.contentType, del.text]).toEqual([200, 'application/octet-stream', '']);
  const after = (await http(sim.url, 'GET', '/queue')).json;
  expect(after.queue_pending).toEqual([]);
  expect(after.queue_running.map((e: unknown[]) => e[1])).toEqual([running]);
  await ws.done(running);
  const afterDelete = ws.messages
    .slice(statuses)
    .filter((m) => m.type === 'status')
    .slice(0, 2);
  expect(afterDelete.map((m) => m.data.status.exec_info.queue_remaining)).toEqual([1, 1]);
  expect((await http(sim.url, 'GET', `/history/${deleted}`)).json).toEqual({});
  expect(Object.keys((await http(sim.url, 'GET', `/history/${running}`)).json)).toEqual([running]);
  expect(sim.executions()).toEqual({ [running]: 1 });
});

it("queue delete on 'current' as on 0.3.64: the pending prompt goes (the jobs API no longer knows it), the running one stays", async () => {
  const t = transcript('queue-delete');
  const sim = await start({ version: 'current' });
  const [clientId, running, deleted] = [newId(), newId(), newId()];
  const ws = await connect(sim, clientId);
  const ids = (prompt_id: string) => ({ client_id: clientId, prompt_id });
  await http(sim.url, 'POST', '/prompt', sleepBody(t, 0, ids(running), 0.5));
  await ws.until((m) => m.type === 'progress', 'a progress message');
  await http(sim.url, 'POST', '/prompt', bodyFrom(t, 1, ids(deleted)));
  const del = await http(sim.url, 'POST', '/queue', { delete: [deleted, running] });
  expect([del.status, del.text]).toEqual([200, '']);
  const after = (await http(sim.url, 'GET', '/queue')).json;
  expect(after.queue_pending).toEqual([]);
  expect(after.queue_running.map((e: unknown[]) => e[1])).toEqual([running]);
  expect((await http(sim.url, 'GET', `/api/jobs/${deleted}`)).status).toBe(404);
  expect((await http(sim.url, 'GET', `/api/jobs/${running}`)).json.status).toBe('in_progress');
  await ws.done(running);
  expect((await http(sim.url, 'GET', `/history/${deleted}`)).json).toEqual({});
  expect(sim.executions()).toEqual({ [running]: 1 });
});

it('POST /queue {clear} and POST /history {delete, clear}', async () => {
  const sim = await start();
  const ws = await connect(sim, 'h');
  const t = transcript('success');
  const [a, b] = [newId(), newId()];
  await http(sim.url, 'POST', '/prompt', bodyFrom(t, 0, { client_id: 'h', prompt_id: a }));
  await ws.done(a);
  await http(
    sim.url,
    'POST',
    '/prompt',
    bodyFrom(t, 0, { client_id: 'h', prompt_id: b }, (p) => (p['1'].inputs.color = 1)),
  );
  await ws.done(b);
  expect(Object.keys((await http(sim.url, 'GET', '/history')).json)).toEqual([a, b]);
  expect((await http(sim.url, 'POST', '/history', { delete: [a] })).status).toBe(200);
  expect(Object.keys((await http(sim.url, 'GET', '/history')).json)).toEqual([b]);
  expect((await http(sim.url, 'POST', '/history', { clear: true })).text).toBe('');
  expect((await http(sim.url, 'GET', '/history')).json).toEqual({});
  expect((await http(sim.url, 'POST', '/queue', { clear: true })).status).toBe(200);
  expect((await http(sim.url, 'POST', '/queue', undefined, '{nope')).status).toBe(500);
  expect((await http(sim.url, 'GET', '/history?max_items=x')).status).toBe(500);
});

describe('duplicate prompt ids', () => {
  it("'accept' (duplicate-prompt-id.json): both queued and run, history keeps the last run", async () => {
    const t = transcript('duplicate-prompt-id');
    const sim = await start();
    const [clientId, id] = [newId(), newId()];
    const ws = await connect(sim, clientId);
    const first = await http(
      sim.url,
      'POST',
      '/prompt',
      sleepBody(t, 0, { client_id: clientId, prompt_id: id }, 0.3),
    );
    const second = await http(
      sim.url,
      'POST',
      '/prompt',
      bodyFrom(t, 1, { client_id: clientId, prompt_id: id }),
    );
    expect([first.json.number, second.json.number]).toEqual([0, 1]);
    const queue = (await http(sim.url, 'GET', '/queue')).json;
    expect([queue.queue_running[0][1], queue.queue_pending[0][1]]).toEqual([id, id]);
    await ws.done(id, 2);
    const history = (await http(sim.url, 'GET', '/history')).json;
    expect(Object.keys(history)).toEqual([id]);
    expect(history[id].outputs['3'].images[0].filename).toBe('t_dup_b_00001_.png');
    expect(sim.executions()[id]).toBe(2);
    expect(
      (await http(sim.url, 'POST', '/prompt', { ...bodyFrom(t, 1, {}), prompt_id: 'my-job-42' }))
        .json.prompt_id,
    ).toBe('my-job-42');
    expect(
      (await http(sim.url, 'POST', '/prompt', { ...bodyFrom(t, 1, {}), prompt_id: null })).json
        .prompt_id,
    ).toBe('None');
  });

  it("'reject' (unmerged PRs #16241/#16242): canonical UUIDs only, 409 while pending, running or in history", async () => {
    const t = transcript('duplicate-prompt-id');
    const sim = await start({ duplicatePromptIds: 'reject' });
    const id = newId();
    const ws = await connect(sim, 'r');
    const bad = await http(sim.url, 'POST', '/prompt', {
      ...bodyFrom(t, 1, {}),
      prompt_id: 'my-job-42',
    });
    expect(bad.status).toBe(400);
    expect(bad.json).toEqual({
      error: {
        type: 'invalid_prompt_id',
        message: 'prompt_id must be a valid UUID',
        details:
          'prompt_id must be a UUID string in canonical lowercase hyphenated form; omit it to let the server generate one',
        extra_info: {},
      },
      node_errors: {},
    });
    expect(
      (
        await http(sim.url, 'POST', '/prompt', {
          ...bodyFrom(t, 1, {}),
          prompt_id: id.toUpperCase(),
        })
      ).status,
    ).toBe(400);
    expect(
      (
        await http(
          sim.url,
          'POST',
          '/prompt',
          sleepBody(t, 0, { client_id: 'r', prompt_id: id }, 0.3),
        )
      ).status,
    ).toBe(200);
    const running = await http(
      sim.url,
      'POST',
      '/prompt',
      bodyFrom(t, 1, { client_id: 'r', prompt_id: id }),
    );
    expect([running.status, running.json]).toEqual([409, { error: 'prompt_id already exists' }]);
    await ws.done(id);
    expect((await http(sim.url, 'POST', '/prompt', bodyFrom(t, 1, { prompt_id: id }))).status).toBe(
      409,
    );
    const invalid = await http(sim.url, 'POST', '/prompt', { prompt: {}, prompt_id: id });
    expect(invalid.status).toBe(400); // validation comes before the duplicate check
    await http(sim.url, 'POST', '/history', { delete: [id] });
    expect(
      (await http(sim.url, 'POST', '/prompt', bodyFrom(t, 1, { client_id: 'r', prompt_id: id })))
        .status,
    ).toBe(200);
    expect((await http(sim.url, 'POST', '/prompt', bodyFrom(t, 1, {}))).status).toBe(200); // no id: minted
  });
});

it('restart loses queue, history, temp files and sockets, resets number, keeps executions and outputs', async () => {
  const sim = await start();
  const ws = await connect(sim, 'rs');
  const t = transcript('queue-delete');
  const [done, running, pending] = [newId(), newId(), newId()];
  const preview = {
    '1': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 1 } },
    '2': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } },
    '3': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'kept' } },
  };
  await http(sim.url, 'POST', '/prompt', { prompt: preview, client_id: 'rs', prompt_id: done });
  await ws.done(done);
  const tempFile = (await http(sim.url, 'GET', `/history/${done}`)).json[done].outputs['2']
    .images[0].filename;
  await http(
    sim.url,
    'POST',
    '/prompt',
    sleepBody(t, 0, { client_id: 'rs', prompt_id: running }, 10),
  );
  await http(sim.url, 'POST', '/prompt', bodyFrom(t, 1, { client_id: 'rs', prompt_id: pending }));
  await ws.until((m) => m.type === 'progress', 'a progress message');

  await sim.restart();
  await ws.waitClosed();
  expect((await http(sim.url, 'GET', '/queue')).json).toEqual({
    queue_running: [],
    queue_pending: [],
  });
  expect((await http(sim.url, 'GET', '/history')).json).toEqual({});
  expect((await http(sim.url, 'GET', `/history/${running}`)).json).toEqual({});
  expect((await http(sim.url, 'GET', `/view?filename=${tempFile}&type=temp`)).status).toBe(404);
  expect((await http(sim.url, 'GET', '/view?filename=kept_00001_.png')).status).toBe(200);
  expect(sim.executions()).toEqual({ [done]: 1, [running]: 1 });

  const ws2 = await connect(sim, 'rs');
  expect(ws2.messages[0].data).toEqual({
    status: { exec_info: { queue_remaining: 0 } },
    sid: 'rs',
  });
  const again = newId();
  const post = await http(
    sim.url,
    'POST',
    '/prompt',
    bodyFrom(t, 1, { client_id: 'rs', prompt_id: again }),
  );
  expect(post.json.number).toBe(0);
  await ws2.done(again);
  expect(sim.executions()[again]).toBe(1);
});

it('pause refuses connections and drops sockets; resume serves the same state', async () => {
  const sim = await start();
  const ws = await connect(sim, 'p');
  const { id } = await postTranscript(sim.url, 'success', 'p');
  await ws.done(id);
  await sim.pause();
  await ws.waitClosed();
  await expect(fetch(`${sim.url}/queue`)).rejects.toThrow();
  await expect(WsClient.connect(sim.url, 'p')).rejects.toThrow();
  await sim.resume();
  expect(Object.keys((await http(sim.url, 'GET', '/history')).json)).toEqual([id]);
  const again = await connect(sim, 'p');
  expect(again.messages[0].type).toBe('status');
});

it('failureRate 1 makes every prompt fail with a runtime execution_error', async () => {
  const sim = await start({ failureRate: 1 });
  const ws = await connect(sim, 'f');
  const { id, post } = await postTranscript(sim.url, 'success', 'f');
  expect(post.status).toBe(200);
  await ws.done(id);
  const msgs = promptMessages(ws.messages, id);
  const error = msgs.find((m) => m.type === 'execution_error')!;
  expect(error.data).toMatchObject({
    node_id: '3',
    node_type: 'SaveImage',
    exception_type: 'RuntimeError',
  });
  expect(msgs.slice(-2).map((m) => m.type)).toEqual(['status', 'executing']);
  expect((await http(sim.url, 'GET', `/history/${id}`)).json[id].status.status_str).toBe('error');
});
