/**
 * POST /prompt validation against the recorded 400/200/500 answers of ComfyUI 0.3.64, replayed
 * in the recorded order on one simulator (so the queue `number`s line up too).
 */
import { createSimulator, type Simulator } from '../src/simulator/server';
import { http, newId, shape, transcript, WsClient } from './simulator-helpers';

let sim: Simulator;
const sockets: WsClient[] = [];

beforeAll(async () => {
  sim = await createSimulator({ progressIntervalMs: 20 });
});
afterAll(async () => {
  await Promise.all(sockets.map((s) => s.close()));
  await sim.close();
});

/** Tracebacks name the machine's paths; compare their file, line and function only. */
/* eslint-disable @typescript-eslint/no-explicit-any */
function comparable(body: any): any {
  return JSON.parse(JSON.stringify(body), (key, value) =>
    key === 'traceback'
      ? (value as string[]).map((f) => f.split('\n')[0].replace(/"[^"]*\/([\w.]+)"/, '"$1"'))
      : value,
  );
}

describe('recorded validation answers, in the recorded order', () => {
  it.each(['validation-unknown-node', 'validation-missing-input', 'validation-bad-value'])(
    '%s',
    async (name) => {
      const t = transcript(name);
      const r = await http(sim.url, 'POST', '/prompt', t.steps[0].request.body);
      expect(r.status).toBe(t.steps[0].response.status);
      expect(r.contentType).toBe(t.steps[0].response.headers['content-type']);
      expect(r.json).toEqual(t.steps[0].response.body);
      expect((await http(sim.url, 'GET', '/queue')).json).toEqual({
        queue_running: [],
        queue_pending: [],
      });
    },
  );

  it('partial-valid: 200 with node_errors, number 3, only the valid branch runs', async () => {
    const t = transcript('partial-valid');
    const body = t.steps[0].request.body;
    const ws = await WsClient.connect(sim.url, body.client_id);
    sockets.push(ws);
    const r = await http(sim.url, 'POST', '/prompt', body);
    expect(r.status).toBe(200);
    expect(r.json).toEqual(t.steps[0].response.body); // includes number 3: rejected POSTs count
    await ws.done(body.prompt_id);
    expect(ws.messages.map((m) => m.type)).toEqual(t.ws.map((m) => m.type));
    ws.messages.forEach((m, i) => expect(shape(m)).toEqual(shape(t.ws[i])));
    const h = (await http(sim.url, 'GET', `/history/${body.prompt_id}`)).json[body.prompt_id];
    expect(h.prompt[4]).toEqual(['2']);
    expect(shape(h)).toEqual(shape(t.steps[1].response.body[body.prompt_id]));
    expect(Object.keys(h.outputs)).toEqual(['2']);
  });

  it('invalid-json-body: 500 text/plain, exactly', async () => {
    const t = transcript('invalid-json-body');
    const r = await http(sim.url, 'POST', '/prompt', undefined, t.steps[0].request.body);
    expect(r.status).toBe(500);
    expect(r.contentType).toBe('text/plain; charset=utf-8');
    expect(r.text).toBe(t.steps[0].response.body);
  });

  it.each(
    transcript('validation-more')
      .steps.filter((s) => s.request.method === 'POST')
      .map((s, i) => [i, s.response.body.error.type, s] as const),
  )('validation-more #%i: %s', async (_i, _type, step) => {
    const r = await http(sim.url, 'POST', '/prompt', step.request.body);
    expect(r.status).toBe(step.response.status);
    expect(r.contentType).toBe(step.response.headers['content-type']);
    expect(comparable(r.json)).toEqual(comparable(step.response.body));
  });
});

describe('more validation rules', () => {
  const image = (inputs: object) => ({
    '1': {
      class_type: 'EmptyImage',
      inputs: { width: 64, height: 64, batch_size: 1, color: 0, ...inputs },
    },
    '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'v' } },
  });
  const post = (prompt: unknown, extra: object = {}) =>
    http(sim.url, 'POST', '/prompt', { prompt, ...extra });
  const firstError = async (prompt: unknown) =>
    (await post(prompt)).json.node_errors['1'].errors[0];

  it('value_bigger_than_max carries input_config and received_value', async () => {
    expect(await firstError(image({ color: 16777216 }))).toEqual({
      type: 'value_bigger_than_max',
      message: 'Value 16777216 bigger than max of 16777215',
      details: 'color',
      extra_info: {
        input_name: 'color',
        input_config: ['INT', { default: 0, min: 0, max: 16777215, step: 1, display: 'color' }],
        received_value: 16777216,
      },
    });
  });

  it('bad_linked_input for a link that is not [id, slot]', async () => {
    const r = await post({
      ...image({}),
      '2': { class_type: 'SaveImage', inputs: { images: ['1', 0, 1], filename_prefix: 'v' } },
    });
    expect(r.json.node_errors['2'].errors[0].type).toBe('bad_linked_input');
  });

  it('coerces widget values like Python (queued graph holds int()/float() results)', async () => {
    const id = newId();
    const prompt = {
      '1': {
        class_type: 'EmptyImage',
        inputs: { width: '64', height: 64.9, batch_size: true, color: { __value__: 0 } },
      },
      '2': { class_type: 'TestSleep', inputs: { value: ['1', 0], seconds: 0 } },
      '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 7 } },
    };
    const ws = await WsClient.connect(sim.url, 'coerce');
    sockets.push(ws);
    const r = await post(prompt, { prompt_id: id, client_id: 'coerce' });
    expect(r.status).toBe(200);
    await ws.done(id);
    const raw = (await http(sim.url, 'GET', `/history/${id}`)).text;
    expect(raw).toContain('"inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}');
    expect(raw).toContain('"seconds": 0.0');
    expect(raw).toContain('"filename_prefix": "7"');
  });

  it('FLOAT conversion errors read like Python', async () => {
    const r = await post({
      '1': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 0 } },
      '2': { class_type: 'TestSleep', inputs: { value: ['1', 0], seconds: 'soon' } },
      '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'f' } },
    });
    expect(r.json.node_errors['2'].errors[0]).toMatchObject({
      type: 'invalid_input_type',
      message: 'Failed to convert an input value to a FLOAT value',
      details: "seconds, soon, could not convert string to float: 'soon'",
    });
  });

  it('numbers: front jumps ahead, a given number is a float and does not advance the counter', async () => {
    const a = await post(image({}), { number: 5 });
    expect(a.text).toContain('"number": 5.0');
    const b = await post(image({}), { front: true });
    const c = await post(image({}));
    expect(c.json.number).toBe(-b.json.number + 1);
    expect(b.json.number).toBeLessThan(0);
  });

  it('bodies of the wrong type fail like aiohttp/Python', async () => {
    expect((await http(sim.url, 'POST', '/prompt', [])).json.error.type).toBe('no_prompt');
    expect((await http(sim.url, 'POST', '/prompt', null)).status).toBe(500);
    expect((await http(sim.url, 'POST', '/prompt', { prompt: 'abc' })).status).toBe(500);
    expect(
      (
        await http(sim.url, 'POST', '/prompt', {
          prompt: image({}),
          client_id: 'x',
          extra_data: [],
        })
      ).status,
    ).toBe(500);
    expect((await http(sim.url, 'POST', '/prompt', undefined, '')).status).toBe(500);
  });

  it('partial_execution_targets limits the outputs', async () => {
    const r = await post(
      {
        ...image({}),
        '3': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'w' } },
      },
      { partial_execution_targets: ['3'] },
    );
    expect(r.status).toBe(200);
    const q = (await http(sim.url, 'GET', `/queue`)).json;
    const all = [
      ...q.queue_running,
      ...q.queue_pending,
      ...Object.values((await http(sim.url, 'GET', '/history')).json).map((h: any) => h.prompt),
    ];
    expect(all.find((e: any) => e[1] === r.json.prompt_id)[4]).toEqual(['3']);
  });
});
