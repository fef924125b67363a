import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { createSimulator, type Simulator } from '../src/simulator/server';
import { decodePng, encodePng } from '../src/simulator/png';
import type { ImageWorker } from '../src/worker/worker';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';
import { FAST_WORKER_ENV, startTestWorker } from './helpers/api-worker';
import { startS3Server, type S3TestServer } from './helpers/s3-server';
import { simVersion } from './helpers/system';
import { waitFor } from './helpers/wait';
import { img2imgWorkflow } from './helpers/workflows';
import { killAll, spawnApi, spawnWorker, type WorkerProcess } from './helpers/worker-process';

/**
 * Media in and out end to end (DESIGN "Media in", "Media out"), once per storage driver:
 * a PNG goes in (upload, base64, URL), LoadImage → ImageInvert → SaveImage runs in the
 * simulator, and the output comes back from storage, decoded and compared with ComfyUI's
 * float32 arithmetic; outputs outlive the simulator, the API and the worker; kill -9 of the worker at each media
 * step leaves one execution and one stored copy per output.
 */

const img2img = img2imgWorkflow();

/** 16×16 pixels: every byte value 0–255 in R, reversed in G, a mix in B. */
const W = 16;
const RGB = new Uint8Array(W * W * 3).map((_, i) => {
  const v = Math.floor(i / 3);
  return [v, 255 - v, (v * 7) % 256][i % 3];
});
const PNG = encodePng(W, W, RGB);

/** ComfyUI: float32 `v / 255`, `1.0 - x`, then `255.0 * x` truncated to uint8. */
const comfyInvert = (v: number) =>
  Math.trunc(Math.fround(255 * Math.fround(1 - Math.fround(v / 255))));

function expectInverted(png: Buffer) {
  const { width, height, rgba } = decodePng(png);
  expect([width, height]).toEqual([W, W]);
  const got: number[] = [];
  const want: number[] = [];
  for (let p = 0; p < W * W; p++) {
    for (let c = 0; c < 3; c++) {
      got.push(rgba[p * 4 + c]);
      want.push(comfyInvert(RGB[p * 3 + c]));
    }
  }
  expect(got).toEqual(want);
  // the arithmetic matters: a plain 255 − v would differ for most values
  expect(want.filter((w, i) => w !== 255 - RGB[i]).length).toBeGreaterThan(100);
}

type Driver = 'file' | 's3';
type JobViewBody = { status: string; promptId: string; outputs: { url: string }[] };

describe.each<Driver>(['file', 's3'])('media end to end (%s storage)', (driver) => {
  let s3: S3TestServer | undefined;
  let h: ApiHarness;
  let sim: Simulator;
  let worker: ImageWorker | undefined;
  let files: Server;
  let filesUrl: string;
  const spawned: WorkerProcess[] = [];

  beforeAll(async () => {
    if (driver === 's3') s3 = await startS3Server();
    h = await startApiHarness({
      logLevel: 'warn',
      env: { INPUT_URL_ALLOW_PRIVATE: '1', ...(s3?.env(`run-${Date.now()}`) ?? {}) },
    });
    sim = await createSimulator({ progressIntervalMs: 50, version: simVersion() });
    files = createServer((req, res) => {
      if (req.url === '/face.png') res.writeHead(200, { 'Content-Type': 'image/png' }).end(PNG);
      else res.writeHead(404).end();
    });
    files.listen(0, '127.0.0.1');
    await once(files, 'listening');
    filesUrl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await killAll(spawned);
    await worker?.close();
    files?.close();
    await sim?.close();
    await h?.close();
    await s3?.stop();
  });

  const startWorker = async () => (worker ??= await startTestWorker(h, sim.url));
  const stopWorker = async () => {
    await worker?.close();
    worker = undefined;
  };
  const submit = async (inputs: unknown) => {
    const res = await request(h.app).post('/v1/jobs').send({ workflow: img2img, inputs });
    expect(res.status).toBe(202);
    return res.body.id as string;
  };
  const finished = (id: string) =>
    waitFor(
      `job ${id} finished`,
      async () => {
        const v = (await request(h.app).get(`/v1/jobs/${id}`)).body;
        return ['completed', 'failed', 'cancelled'].includes(v.status) ? v : undefined;
      },
      { timeoutMs: 60_000 },
    );
  const output = async (id: string, range?: string) => {
    const r = request(h.app).get(`/v1/jobs/${id}/outputs/0`).buffer(true);
    if (range) r.set('Range', range);
    const res = await r.parse((resp, cb) => {
      const chunks: Buffer[] = [];
      resp.on('data', (c: Buffer) => chunks.push(c));
      resp.on('end', () => cb(null, Buffer.concat(chunks)));
    });
    return res;
  };
  const stored = async (id: string) =>
    (await h.services.storage.list(`jobs/${id}/outputs/`)).map((o) => o.key);

  it.each([
    ['an upload', async () => ({ upload: (await uploadPng()).id })],
    ['base64', async () => ({ base64: `data:image/png;base64,${PNG.toString('base64')}` })],
    ['a URL', async () => ({ url: `${filesUrl}/face.png` })],
  ])('inverts %s as ComfyUI does, and serves the output from storage', async (_what, input) => {
    await startWorker();
    const id = await submit({ 'face.png': await input() });
    const view = await finished(id);
    expect(view.status).toBe('completed');
    expect(view.inputs).toEqual([
      { name: 'face.png', size: PNG.length, sha256: expect.any(String) },
    ]);
    expect(view.outputs).toEqual([
      expect.objectContaining({ nodeId: '3', type: 'output', contentType: 'image/png' }),
    ]);
    const res = await output(id);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('image/png');
    expect(Number(res.headers['content-length'])).toBe(view.outputs[0].size);
    expectInverted(res.body as Buffer);
    expect(sim.executions()[view.promptId]).toBe(1);
    expect(await stored(id)).toEqual([`jobs/${id}/outputs/0`]);
  });

  it('fails input_unavailable when the URL answers 404, without running a prompt', async () => {
    await startWorker();
    const id = await submit({ 'face.png': { url: `${filesUrl}/missing.png` } });
    const view = await finished(id);
    expect(view.status).toBe('failed');
    expect(view.error).toMatchObject({ code: 'input_unavailable' });
    expect(view.error.message).toMatch(/answered 404/);
    expect(sim.executions()[view.promptId]).toBeUndefined();
  });

  // the crash windows do not depend on the driver: once, with file storage (each takes ~30 s)
  const crashPoints = ['after-inputs-uploaded', 'after-post', 'after-outputs-copied'];
  if (driver === 'file')
    it.each(crashPoints)(
      'kill -9 of the worker %s: one execution, one stored copy per output',
      async (point) => {
        await stopWorker();
        const env = {
          ...h.env,
          ...FAST_WORKER_ENV,
          COMFYUI_URL: sim.url,
          LOCK_DURATION_MS: '2000',
          STALLED_INTERVAL_MS: '1000',
          LOG_LEVEL: 'info',
        };
        const doomed = spawnWorker({ ...env, COMFYQ_CRASH_AT: point });
        spawned.push(doomed);
        await doomed.ready;
        const id = await submit({ 'face.png': { upload: (await uploadPng()).id } });
        const exit = await doomed.exited;
        expect(exit.signal).toBe('SIGKILL');
        const survivor = spawnWorker(env);
        spawned.push(survivor);
        const view = await finished(id);
        expect(view.status).toBe('completed');
        expect(view.recoveries).toBeGreaterThanOrEqual(1);
        expect(sim.executions()[view.promptId]).toBe(1);
        expect(await stored(id)).toEqual([`jobs/${id}/outputs/0`]);
        expectInverted((await output(id)).body as Buffer);
        await killAll([survivor]);
      },
    );

  // last: it stops the in-process API that the tests above use
  it('serves outputs, byte for byte, after the simulator is killed and the API and worker restarted against another', async () => {
    await startWorker();
    const id = await submit({ 'face.png': { upload: (await uploadPng()).id } });
    const view = await finished(id);
    expect(view.status).toBe('completed');
    const whole = (await output(id)).body as Buffer;
    // the simulator that made the output, the worker and the API that knew the job: gone
    await stopWorker();
    const oldSim = sim.url;
    await sim.close();
    await h.services.close();
    sim = await createSimulator({ progressIntervalMs: 50, version: simVersion() });
    expect(sim.url).not.toBe(oldSim);
    const env = { ...h.env, ...FAST_WORKER_ENV, COMFYUI_URL: sim.url, LOG_LEVEL: 'info' };
    const restarted = spawnWorker(env);
    const api = await spawnApi(env);
    spawned.push(restarted, api);
    await Promise.all([restarted.ready, api.ready]);

    const get = async (range?: string) => {
      const res = await fetch(`${api.url}/v1/jobs/${id}/outputs/0`, {
        headers: range ? { Range: range } : {},
      });
      return {
        status: res.status,
        headers: res.headers,
        body: Buffer.from(await res.arrayBuffer()),
      };
    };
    const again = await get();
    expect(again.status).toBe(200);
    expect(again.body.equals(whole)).toBe(true);
    const part = await get('bytes=8-23');
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 8-23/${view.outputs[0].size}`);
    expect(part.body.equals(whole.subarray(8, 24))).toBe(true);
    expect((await get(`bytes=${whole.length + 10}-`)).status).toBe(416);

    // the restarted pair runs new jobs on the new simulator
    const res = await fetch(`${api.url}/v1/jobs`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        workflow: img2img,
        inputs: { 'face.png': { base64: PNG.toString('base64') } },
      }),
    });
    expect(res.status).toBe(202);
    const next = (await res.json()) as { id: string };
    const done = await waitFor(
      `job ${next.id} completed on the new simulator`,
      async () => {
        const v = (await (await fetch(`${api.url}/v1/jobs/${next.id}`)).json()) as JobViewBody;
        return v.status === 'completed' ? v : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect(sim.executions()[done.promptId]).toBe(1);
    expectInverted(
      Buffer.from(await (await fetch(`${api.url}${done.outputs[0].url}`)).arrayBuffer()),
    );
  });

  async function uploadPng(): Promise<{ id: string }> {
    const res = await request(h.app)
      .post('/v1/uploads?filename=face.png')
      .set('Content-Type', 'image/png')
      .send(PNG);
    expect(res.status).toBe(201);
    return res.body;
  }
});
