import { once } from 'node:events';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import type { Express } from 'express';
import request from 'supertest';
import { createApp } from '../src/api/app';
import { rateLimit } from '../src/api/fair-use';
import { createApiServer } from '../src/api/server';
import { manualWorker, startApiHarness, type ApiHarness } from './helpers/api-harness';
import { openSse } from './helpers/api-sse';
import { tinyWorkflow } from './helpers/workflows';

/**
 * Fair use and access (DESIGN "The API boundary"): per-key rate limits counted in Redis
 * (shared by API processes, uploads included), MAX_QUEUED_JOBS, scoped keys (`name:key`;
 * uploads too), signed links that open one job's events and outputs without the key, and
 * the HTTP server's timeouts.
 */

const WF = tinyWorkflow('fair');
const ALICE = 'alice-key-0123456789';
const BOB = 'bob-key-0123456789';
const ADMIN = 'admin-key-0123456789';
const OPS = 'ops-key-0123456789';
const IMG2IMG = {
  '1': { class_type: 'LoadImage', inputs: { image: 'face.png' } },
  '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'fair' } },
};
const upload = (app: Express, key: string) =>
  request(app)
    .post('/v1/uploads?filename=face.png')
    .set('Authorization', `Bearer ${key}`)
    .set('Content-Type', 'image/png')
    .send(Buffer.from('png bytes'));

/** Completes the only queued job with one output stored at its key, as a worker would. */
async function completeWithOutput(h: ApiHarness, id: string, bytes: Buffer) {
  const worker = manualWorker(h.config);
  try {
    const job = await worker.getNextJob('t', { block: false });
    expect(job?.id).toBe(id);
    const key = `jobs/${id}/outputs/0`;
    await h.services.storage.put(key, Readable.from([bytes]), { contentType: 'image/png' });
    const output = { nodeId: '2', filename: 'a.png', subfolder: '', type: 'output', key };
    await job!.moveToCompleted(
      { outputs: [{ ...output, contentType: 'image/png', size: bytes.length }] },
      't',
      false,
    );
  } finally {
    await worker.close();
  }
}

describe('API: scoped keys, signed links, queue cap', () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness({
      logLevel: 'error',
      env: {
        API_KEYS: `alice:${ALICE},bob:${BOB},${ADMIN},ops:${OPS}`,
        API_ADMIN_NAMES: 'ops',
        MAX_QUEUED_JOBS: '6',
        LINK_TTL_S: '60',
      },
    });
  });
  afterAll(async () => {
    await h?.close();
  });
  const as = (key: string) => ({ Authorization: `Bearer ${key}` });
  const post = (key: string, body: Record<string, unknown> = {}) =>
    request(h.app)
      .post('/v1/jobs')
      .set(as(key))
      .send({ workflow: WF, ...body });

  it('a scoped key sees and cancels only its own jobs; admin keys (bare, or named in API_ADMIN_NAMES) see all', async () => {
    const { id } = (await post(ALICE)).body as { id: string };
    expect((await request(h.app).get(`/v1/jobs/${id}`).set(as(ALICE))).status).toBe(200);
    expect((await request(h.app).get(`/v1/jobs/${id}`).set(as(BOB))).status).toBe(404);
    expect((await request(h.app).get(`/v1/jobs/${id}/events`).set(as(BOB))).status).toBe(404);
    expect((await request(h.app).delete(`/v1/jobs/${id}`).set(as(BOB))).status).toBe(404);
    expect((await request(h.app).get(`/v1/jobs/${id}`).set(as(ADMIN))).status).toBe(200);
    expect((await request(h.app).get(`/v1/jobs/${id}`).set(as(OPS))).status).toBe(200);
    expect((await request(h.app).delete(`/v1/jobs/${id}`).set(as(OPS))).status).toBe(202);
  });

  it('one idempotency key in two scopes: two jobs', async () => {
    const a = await post(ALICE, { idempotencyKey: 'same' });
    const b = await post(BOB, { idempotencyKey: 'same' });
    expect([a.status, b.status]).toEqual([202, 202]);
    expect(a.body.id).not.toBe(b.body.id);
  });

  it('the view has a signed events link that works without the key, for that job only, until it expires', async () => {
    const { id } = (await post(ALICE)).body as { id: string };
    const other = (await post(ALICE)).body.id as string;
    const view = await request(h.app).get(`/v1/jobs/${id}`).set(as(ALICE));
    const events = view.body.links.events as string;
    expect(events).toMatch(new RegExp(`^/v1/jobs/${id}/events\\?expires=\\d+&signature=[\\w-]+$`));
    const base = await h.listen();
    const sse = await openSse(`${base}${events}`);
    expect((await sse.next('progress')).data).toMatchObject({ id, status: 'queued' });
    sse.close();
    const query = events.split('?')[1];
    const unsigned = await request(h.app).get(`/v1/jobs/${id}/events`);
    expect(unsigned.status).toBe(401);
    const forOther = await request(h.app).get(`/v1/jobs/${other}/events?${query}`);
    expect(forOther.status).toBe(401);
    const tampered = await request(h.app).get(
      `/v1/jobs/${id}/events?${query.replace(/expires=(\d+)/, (_m, e) => `expires=${Number(e) + 1}`)}`,
    );
    expect(tampered.status).toBe(401);
    const view2 = await request(h.app).get(`/v1/jobs/${id}`).set(as(ALICE));
    const expired = view2.body.links.events.replace(/expires=\d+/, 'expires=1000');
    expect((await request(h.app).get(expired)).status).toBe(401);
    // a signed link opens only reads of that job, not the job view or a cancel
    expect((await request(h.app).get(`/v1/jobs/${id}?${query}`)).status).toBe(401);
    expect((await request(h.app).delete(`/v1/jobs/${id}?${query}`)).status).toBe(401);
  });

  it('uploads are scoped like jobs: a scoped key uses only its own; an admin key any', async () => {
    await h.services.queue.obliterate({ force: true });
    expect((await request(h.app).post('/v1/uploads').send(Buffer.from('x'))).status).toBe(401);
    const up = await upload(h.app, ALICE);
    expect(up.status).toBe(201);
    const withInput = (key: string) =>
      post(key, { workflow: IMG2IMG, inputs: { 'face.png': { upload: up.body.id } } });
    const bob = await withInput(BOB);
    expect(bob.status).toBe(400);
    expect(bob.body.error.details).toEqual([
      { path: 'inputs.face.png.upload', message: expect.stringMatching(/^no upload/) },
    ]);
    expect((await withInput(ALICE)).status).toBe(202);
    expect((await withInput(OPS)).status).toBe(202);
    // a base64 input becomes an upload of its key's own
    const b64 = await post(BOB, {
      workflow: IMG2IMG,
      inputs: { 'face.png': { base64: Buffer.from('png').toString('base64') } },
    });
    expect(b64.status).toBe(202);
  });

  it('outputs: the signed url serves the stored file without the key, for that job only', async () => {
    await h.services.queue.obliterate({ force: true });
    const { id } = (await post(ALICE)).body as { id: string };
    const other = (await post(ALICE)).body.id as string;
    await h.services.queue.remove(other);
    await completeWithOutput(h, id, Buffer.from('stored output'));
    const view = await request(h.app).get(`/v1/jobs/${id}`).set(as(ALICE));
    expect(view.body.status).toBe('completed');
    const url = view.body.outputs[0].url as string;
    expect(url).toMatch(new RegExp(`^/v1/jobs/${id}/outputs/0\\?expires=\\d+&signature=[\\w-]+$`));
    const got = await request(h.app)
      .get(url)
      .buffer(true)
      .parse((resp, cb) => {
        const chunks: Buffer[] = [];
        resp.on('data', (c: Buffer) => chunks.push(c));
        resp.on('end', () => cb(null, Buffer.concat(chunks)));
      });
    expect(got.status).toBe(200);
    expect((got.body as Buffer).toString()).toBe('stored output');
    const plain = `/v1/jobs/${id}/outputs/0`;
    expect((await request(h.app).get(plain)).status).toBe(401);
    expect((await request(h.app).get(plain).set(as(BOB))).status).toBe(404);
    expect((await request(h.app).get(plain).set(as(ALICE))).status).toBe(200);
    const query = url.split('?')[1];
    expect((await request(h.app).get(`/v1/jobs/${other}/outputs/0?${query}`)).status).toBe(401);
  });

  it(`MAX_QUEUED_JOBS: 429 queue_full with Retry-After, nothing added; a key's existing job still answers`, async () => {
    await h.services.queue.obliterate({ force: true });
    const keyed = await post(ADMIN, { idempotencyKey: 'before-full' });
    expect(keyed.status).toBe(202);
    for (let i = 0; i < 5; i++) expect((await post(ADMIN)).status).toBe(202);
    const full = await post(ADMIN);
    expect(full.status).toBe(429);
    expect(full.body.error.code).toBe('queue_full');
    expect(Number(full.headers['retry-after'])).toBeGreaterThan(0);
    expect(await h.services.queue.count()).toBe(6);
    const again = await post(ADMIN, { idempotencyKey: 'before-full' });
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(keyed.body.id);
  });

  it('a refused or replayed request with input files leaves storage as it was', async () => {
    const storage = h.services.storage;
    const { id: uploaded } = (await upload(h.app, ADMIN)).body as { id: string };
    const stored = async () => (await storage.list('uploads/')).map((o) => o.key).sort();
    const before = await stored();
    expect(before.length).toBeGreaterThan(0);
    const png = Buffer.from('png bytes').toString('base64');
    const img2img = (inputs: Record<string, unknown>, key?: string) =>
      request(h.app)
        .post('/v1/jobs')
        .set(as(ADMIN))
        .send({ workflow: IMG2IMG, inputs, ...(key ? { idempotencyKey: key } : {}) });
    await h.services.queue.obliterate({ force: true });
    for (let i = 0; i < 6; i++) expect((await post(ADMIN)).status).toBe(202);
    // the queue is full (MAX_QUEUED_JOBS): 429, and neither the base64 input nor a pending
    // mark on the upload it named stays
    const full = await img2img({ 'face.png': { base64: png } });
    expect(full.status).toBe(429);
    const fullByUpload = await img2img({ 'face.png': { upload: uploaded } });
    expect(fullByUpload.status).toBe(429);
    expect(await stored()).toEqual(before);
    // a replay of a key's job (200, the existing job) stores nothing either
    await h.services.queue.obliterate({ force: true });
    const first = await img2img({ 'face.png': { base64: png } }, 'inputs-replay');
    expect(first.status).toBe(202);
    const afterFirst = await stored();
    expect(afterFirst.length).toBeGreaterThan(before.length);
    const replay = await img2img({ 'face.png': { base64: png } }, 'inputs-replay');
    expect(replay.status).toBe(200);
    expect(replay.body.id).toBe(first.body.id);
    expect(await stored()).toEqual(afterFirst);
  });
});

describe('API: rate limits', () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness({
      logLevel: 'error',
      env: { API_KEYS: `alice:${ALICE},bob:${BOB}`, RATE_LIMIT_REQUESTS: '4' },
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('per key, counted in Redis: a second API process shares the count; 429 with Retry-After', async () => {
    // another API process: its own limiter and app over the same Redis
    const other = createApp({
      ...h.deps,
      rateLimit: rateLimit(h.services.redis, {
        ...h.config,
        keyPrefix: `${h.config.queuePrefix}:${h.config.queueName}:ratelimit`,
      }),
    });
    const get = (app: typeof other, key: string) =>
      request(app).get('/v1/jobs/nope').set('Authorization', `Bearer ${key}`);
    for (const app of [h.app, other, h.app, other])
      expect((await get(app, ALICE)).status).toBe(404);
    const limited = await get(other, ALICE);
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('rate_limited');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect((await get(h.app, ALICE)).status).toBe(429);
    expect((await get(h.app, BOB)).status).toBe(404); // another key has its own count
    // uploads are requests like any other
    const up = await upload(h.app, ALICE);
    expect([up.status, up.body.error.code]).toEqual([429, 'rate_limited']);
    expect((await upload(h.app, BOB)).status).toBe(201);
  });
});

describe('API: HTTP server timeouts', () => {
  it('a client that never finishes its headers is disconnected (headersTimeout)', async () => {
    const h = await startApiHarness({ logLevel: 'error' });
    const server = createApiServer(h.app, {
      headersTimeoutMs: 300,
      requestTimeoutMs: 600,
      keepAliveTimeoutMs: 500,
      checkIntervalMs: 100,
    });
    try {
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
      await once(socket, 'connect');
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'); // no blank line: headers unfinished
      let answer = '';
      socket.on('data', (b: Buffer) => (answer += b.toString()));
      await once(socket, 'close');
      expect(answer).toMatch(/^HTTP\/1\.1 408/);
    } finally {
      server.closeAllConnections();
      server.close();
      await h.close();
    }
  });
});
