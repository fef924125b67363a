/**
 * The simulator against the recorded ComfyUI 0.3.64 transcripts: the happy path (HTTP bodies,
 * WebSocket sequence, history, /queue, /view), progress while running, caching, the node
 * catalogue and the SDXL-style chain.
 */
import { PNG } from 'pngjs';
import type { Simulator } from '../src/simulator/server';
import {
  bodyFrom,
  http,
  newId,
  postTranscript,
  postAndWait,
  promptMessages,
  shape,
  simulatorPerTest,
  transcript,
  typeSequence,
  type Msg,
} from './simulator-helpers';

const JSON_TYPE = 'application/json; charset=utf-8';

let sim: Simulator;
const { connect } = simulatorPerTest(
  { progressIntervalMs: 20, samplerStepMs: 5 },
  (s) => (sim = s),
);

describe('a successful prompt (success.json)', () => {
  const t = transcript('success');

  it('answers, streams and records exactly like ComfyUI', async () => {
    const clientId = newId();
    const promptId = newId();
    const ws = await connect(clientId);
    const post = await http(
      sim.url,
      'POST',
      '/prompt',
      bodyFrom(t, 0, { client_id: clientId, prompt_id: promptId }),
    );
    expect(post.status).toBe(200);
    expect(post.contentType).toBe(JSON_TYPE);
    expect(post.json).toEqual({ prompt_id: promptId, number: 0, node_errors: {} });
    await ws.done(promptId);

    // Same message types in the same order, each with the same shape.
    expect(ws.messages.map((m) => m.type)).toEqual(t.ws.map((m) => m.type));
    ws.messages.forEach((m, i) => expect(shape(m)).toEqual(shape(t.ws[i])));
    expect(
      ws.messages
        .filter((m) => m.type === 'status')
        .map((m) => m.data.status.exec_info.queue_remaining),
    ).toEqual([0, 1, 1, 0]);
    expect(ws.messages[0].data.sid).toBe(clientId);
    expect(ws.messages.at(-1)).toEqual({
      type: 'executing',
      data: { node: null, prompt_id: promptId },
    });

    const history = await http(sim.url, 'GET', `/history/${promptId}`);
    expect(history.contentType).toBe(JSON_TYPE);
    expect(shape(history.json[promptId])).toEqual(shape(t.steps[1].response.body[t.prompt_id]));
    const entry = history.json[promptId];
    expect(entry.prompt).toEqual([
      0,
      promptId,
      t.steps[0].request.body.prompt,
      { job_id: 'job-1', client_id: clientId },
      ['3'],
    ]);
    expect(entry.outputs).toEqual(t.steps[1].response.body[t.prompt_id].outputs);
    expect(entry.meta).toEqual(t.steps[1].response.body[t.prompt_id].meta);
    expect(entry.status.messages.map((m: [string]) => m[0])).toEqual([
      'execution_start',
      'execution_cached',
      'execution_success',
    ]);

    const last = await http(sim.url, 'GET', '/history?max_items=1');
    expect(Object.keys(last.json)).toEqual([promptId]);
    expect(await http(sim.url, 'GET', '/queue').then((r) => r.json)).toEqual({
      queue_running: [],
      queue_pending: [],
    });
    expect(await http(sim.url, 'GET', '/api/prompt').then((r) => r.json)).toEqual({
      exec_info: { queue_remaining: 0 },
    });
  });

  it('serves the saved image through /view with the real headers', async () => {
    const promptId = newId();
    const ws = await connect('viewer');
    await http(
      sim.url,
      'POST',
      '/prompt',
      bodyFrom(t, 0, { client_id: 'viewer', prompt_id: promptId }),
    );
    await ws.done(promptId);
    const view = t.steps[4];
    const res = await fetch(`${sim.url}${view.request.path}`);
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(res.status).toBe(200);
    for (const h of ['content-type', 'content-disposition', 'accept-ranges']) {
      expect(res.headers.get(h)).toBe(view.response.headers[h]);
    }
    expect(res.headers.get('etag')).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
    expect(res.headers.get('last-modified')).toMatch(/GMT$/);
    expect(res.headers.get('content-length')).toBe(String(bytes.length));
    expect(bytes.subarray(0, 16).toString('hex')).toBe(view.response.body.first16hex);
    const png = PNG.sync.read(bytes);
    expect([png.width, png.height]).toEqual([64, 64]);
    expect([...png.data.subarray(0, 4)]).toEqual([0, 255, 255, 255]); // red, inverted
  });
});

describe('routes', () => {
  it('unknown-history.json: 200 {} for an unknown id, bare and under /api', async () => {
    for (const step of transcript('unknown-history').steps) {
      const r = await http(sim.url, step.request.method, step.request.path);
      expect([r.status, r.contentType, r.json]).toEqual([200, JSON_TYPE, {}]);
    }
  });

  it('answers unknown paths and methods like aiohttp', async () => {
    expect(await http(sim.url, 'GET', '/api/jobs').then((r) => [r.status, r.text])).toEqual([
      404,
      '404: Not Found',
    ]);
    expect(await http(sim.url, 'DELETE', '/prompt').then((r) => [r.status, r.text])).toEqual([
      405,
      '405: Method Not Allowed',
    ]);
    expect((await http(sim.url, 'GET', '/ws')).status).toBe(400);
  });
});

describe('/view errors', () => {
  it.each([
    ['/view?filename=../x.png', 400],
    ['/view?filename=/etc/passwd', 400],
    ['/view?filename=a.png&type=nope', 400],
    ['/view?filename=a.png&subfolder=../..', 403],
    ['/view?filename=missing.png', 404],
    ['/view', 404],
  ])('%s → %i', async (p, status) => {
    const r = await http(sim.url, 'GET', p);
    expect(r.status).toBe(status);
    expect(r.text).toBe('');
  });
});

describe('a slow prompt with a second one queued (progress.json)', () => {
  const t = transcript('progress');

  it('reports float progress, shows running and pending, and history only when done', async () => {
    const clientId = newId();
    const [a, b] = [newId(), newId()];
    const ws = await connect(clientId);
    await http(
      sim.url,
      'POST',
      '/prompt',
      bodyFrom(t, 0, { client_id: clientId, prompt_id: a }, (p) => (p['2'].inputs.seconds = 0.5)),
    );
    await ws.until((m) => m.type === 'progress', 'the first progress');
    const second = await http(
      sim.url,
      'POST',
      '/prompt',
      bodyFrom(t, 1, { client_id: clientId, prompt_id: b }),
    );
    expect(second.json.number).toBe(1);

    const queue = await http(sim.url, 'GET', '/queue');
    expect(shape(queue.json)).toEqual(shape(t.steps[2].response.body));
    expect(queue.json.queue_running[0].slice(0, 2)).toEqual([0, a]);
    expect(queue.json.queue_pending[0].slice(0, 2)).toEqual([1, b]);
    expect(await http(sim.url, 'GET', '/prompt').then((r) => r.json)).toEqual({
      exec_info: { queue_remaining: 2 },
    });
    expect(await http(sim.url, 'GET', `/history/${a}`).then((r) => r.json)).toEqual({});

    await ws.done(b);
    const seq = (msgs: Msg[], id: string) =>
      typeSequence(promptMessages(msgs, id).filter((m) => m.type !== 'status'));
    const recorded = (id: string) => seq(t.ws, id);
    expect(seq(ws.messages, a)).toEqual(recorded(t.prompt_ids.running));
    expect(seq(ws.messages, b)).toEqual(recorded(t.prompt_ids.pending));

    const progress = ws.messages.filter((m) => m.type === 'progress' && m.data.prompt_id === a);
    expect(shape(progress[0])).toEqual(shape(t.ws.find((m) => m.type === 'progress')));
    expect(progress.every((m) => m.data.max === 0.5 && m.data.node === '2')).toBe(true);
    expect(progress.at(-1)!.data.value).toBe(0.5);
    const values = progress.map((m) => m.data.value);
    expect([...values].sort((x, y) => x - y)).toEqual(values);
    // Every progress is preceded by its progress_state.
    ws.messages.forEach(
      (m, i) => m.type === 'progress' && expect(ws.messages[i - 1].type).toBe('progress_state'),
    );

    const histories = await Promise.all(
      [a, b].map((id) => http(sim.url, 'GET', `/history/${id}`).then((r) => r.json[id])),
    );
    expect(histories.map((h) => h.prompt[0])).toEqual([0, 1]);
    expect(shape(histories[1])).toEqual(shape(t.steps[7].response.body[t.prompt_ids.pending]));
  });
});

describe("caching (like ComfyUI's default cache)", () => {
  it('re-uses unchanged nodes of the previous prompt: no new file, same filenames', async () => {
    const t = transcript('success');
    const ws = await connect('c');
    const [a, b] = [newId(), newId()];
    await http(sim.url, 'POST', '/prompt', bodyFrom(t, 0, { client_id: 'c', prompt_id: a }));
    await ws.done(a);
    await http(sim.url, 'POST', '/prompt', bodyFrom(t, 0, { client_id: 'c', prompt_id: b }));
    await ws.done(b);
    const second = promptMessages(ws.messages, b);
    expect(second.find((m) => m.type === 'execution_cached')!.data.nodes).toEqual(['1', '2', '3']);
    expect(second.filter((m) => m.type === 'executing' && m.data.node !== null)).toEqual([]);
    expect(second.find((m) => m.type === 'executed')!.data.output.images[0].filename).toBe(
      't_success_00001_.png',
    );
    const h = await http(sim.url, 'GET', `/history/${b}`);
    expect(h.json[b].outputs['3'].images[0].filename).toBe('t_success_00001_.png');
    expect((await http(sim.url, 'GET', '/view?filename=t_success_00002_.png')).status).toBe(404);
    expect(sim.executions()).toEqual({ [a]: 1, [b]: 1 });
  });
});

describe('node catalogue', () => {
  it('serves /object_info verbatim, with big integers intact', async () => {
    const core = transcript('object_info-core');
    const recorded = {
      ...core.steps[0].response.body,
      ...transcript('object_info-media').steps[0].response.body,
    };
    const all = await http(sim.url, 'GET', '/object_info');
    expect(all.contentType).toBe(JSON_TYPE);
    expect(all.text).toContain('"max": 18446744073709551615');
    expect(Object.keys(all.json).sort()).toEqual(Object.keys(recorded).sort());
    for (const [name, info] of Object.entries(recorded)) expect(all.json[name]).toEqual(info);

    const one = await http(sim.url, 'GET', '/api/object_info/TestSleep');
    expect(one.json).toEqual(core.steps[1].response.body);
    expect(one.text).toContain('"default": 1.0');
    expect((await http(sim.url, 'GET', '/object_info/DoesNotExist')).json).toEqual({});
  });

  it('answers /system_stats and /features like 0.3.64', async () => {
    const stats = await http(sim.url, 'GET', '/system_stats');
    const recorded = transcript('system_stats').steps[0].response.body;
    const withoutArgv = (b: { system: object }) =>
      shape({ ...b, system: { ...b.system, argv: [] } });
    expect(withoutArgv(stats.json)).toEqual(withoutArgv(recorded));
    expect(stats.json.system.argv.every((a: unknown) => typeof a === 'string')).toBe(true);
    expect(stats.json.system.comfyui_version).toBe('0.3.64');
    expect((await http(sim.url, 'GET', '/features')).json).toEqual({
      supports_preview_metadata: true,
      max_upload_size: 104857600,
    });
  });

  it('runs an SDXL-style text-to-image chain with one progress per sampler step', async () => {
    const promptId = newId();
    const ws = await connect('sdxl');
    const prompt = {
      '4': {
        class_type: 'CheckpointLoaderSimple',
        inputs: { ckpt_name: 'sd_xl_base_1.0.safetensors' },
      },
      '5': { class_type: 'EmptyLatentImage', inputs: { width: 1024, height: 768, batch_size: 1 } },
      '6': { class_type: 'CLIPTextEncode', inputs: { text: 'a red fox', clip: ['4', 1] } },
      '7': { class_type: 'CLIPTextEncode', inputs: { text: 'blurry', clip: ['4', 1] } },
      '3': {
        class_type: 'KSampler',
        inputs: {
          seed: 156680208700286,
          steps: 8,
          cfg: 7.5,
          sampler_name: 'euler',
          scheduler: 'normal',
          denoise: 1,
          model: ['4', 0],
          positive: ['6', 0],
          negative: ['7', 0],
          latent_image: ['5', 0],
        },
      },
      '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
      '9': { class_type: 'SaveImage', inputs: { filename_prefix: 'sdxl/fox', images: ['8', 0] } },
    };
    await postAndWait(sim.url, ws, 'sdxl', prompt, promptId);
    const msgs = promptMessages(ws.messages, promptId);
    const steps = msgs
      .filter((m) => m.type === 'progress')
      .map((m) => [m.data.value, m.data.max, m.data.node]);
    expect(steps).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((v) => [v, 8, '3']));
    const executed = msgs.find((m) => m.type === 'executed')!;
    expect(executed.data.output.images).toEqual([
      { filename: 'fox_00001_.png', subfolder: 'sdxl', type: 'output' },
    ]);
    const png = PNG.sync.read(
      Buffer.from(
        await (
          await fetch(`${sim.url}/view?filename=fox_00001_.png&subfolder=sdxl&type=output`)
        ).arrayBuffer(),
      ),
    );
    expect([png.width, png.height]).toEqual([1024, 768]);

    const bad = await http(sim.url, 'POST', '/prompt', {
      prompt: {
        ...prompt,
        '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'nope.ckpt' } },
      },
    });
    expect(bad.status).toBe(400);
    expect(bad.json.node_errors['4'].errors[0]).toMatchObject({
      type: 'value_not_in_list',
      details: "ckpt_name: 'nope.ckpt' not in []",
    });
  });

  it('writes PreviewImage files to temp', async () => {
    const promptId = newId();
    const ws = await connect('p');
    const prompt = {
      '1': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 2, color: 255 } },
      '2': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } },
    };
    await http(sim.url, 'POST', '/prompt', { prompt, client_id: 'p', prompt_id: promptId });
    await ws.done(promptId);
    const images = (await http(sim.url, 'GET', `/history/${promptId}`)).json[promptId].outputs['2']
      .images;
    expect(images).toHaveLength(2);
    expect(images[0]).toMatchObject({ subfolder: '', type: 'temp' });
    expect(images[0].filename).toMatch(/^ComfyUI_temp_[a-z]{5}_00001_\.png$/);
    expect(images[1].filename).toMatch(/_00002_\.png$/);
    expect(
      (await http(sim.url, 'GET', `/view?filename=${images[1].filename}&type=temp`)).status,
    ).toBe(200);
  });

  it('counts executions at /_sim/executions', async () => {
    const ws = await connect('x');
    const { id } = await postTranscript(sim.url, 'success', 'x');
    await ws.done(id);
    expect((await http(sim.url, 'GET', '/_sim/executions')).json).toEqual({ [id]: 1 });
  });
});
