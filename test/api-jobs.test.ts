import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { createApp } from '../src/api/app';
import { JobViewSchema } from '../src/job/view';
import { CANCEL_FIELD, IMAGE_JOB_NAME, cancelChannel, jobKey } from '../src/queue';
import { createRedis } from '../src/redis';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';
import { openSse } from './helpers/api-sse';
import { waitFor } from './helpers/wait';
import { newJobData } from '../src/job/data';

/** The job endpoints against a real Redis, with no worker running (jobs stay queued). */

const workflow = {
  '1': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 0 } },
  '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'j' } },
};

describe('API: jobs without a worker', () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness();
  });
  afterAll(async () => {
    await h?.close();
  });
  const post = (body: Record<string, unknown>) =>
    request(h.app)
      .post('/v1/jobs')
      .send({ workflow, ...body });

  it('POST answers 202 with id, status and links; GET answers the view', async () => {
    const res = await post({ jobType: 'portrait', userId: 'u-1', metadata: { order: 42 } });
    expect(res.status).toBe(202);
    const id = res.body.id as string;
    expect(res.body).toEqual({
      id,
      status: 'queued',
      links: { self: `/v1/jobs/${id}`, events: `/v1/jobs/${id}/events` },
    });
    expect(res.headers.location).toBe(`/v1/jobs/${id}`);

    const view = await request(h.app).get(`/v1/jobs/${id}`);
    expect(view.status).toBe(200);
    expect(JobViewSchema.parse(view.body)).toEqual(view.body);
    expect(view.body).toMatchObject({
      id,
      status: 'queued',
      jobType: 'portrait',
      userId: 'u-1',
      attempts: 0,
      recoveries: 0,
      metadata: { order: 42 },
    });
    expect(Date.parse(view.body.createdAt)).toBeGreaterThan(0);
    expect(view.body.startedAt).toBeUndefined();
  });

  it('defaults jobType to "image" and userId to null', async () => {
    const res = await post({});
    const view = await request(h.app).get(`/v1/jobs/${res.body.id}`);
    expect(view.body).toMatchObject({ jobType: 'image', userId: null });
    expect(view.body.metadata).toBeUndefined();
  });

  it('shows the queue position of waiting and prioritized jobs', async () => {
    await h.services.queue.drain();
    const a = (await post({})).body.id;
    const b = (await post({})).body.id;
    const p = (await post({ priority: 5 })).body.id;
    const pos = async (id: string) =>
      (await request(h.app).get(`/v1/jobs/${id}`)).body.progress.queuePosition;
    expect(await pos(a)).toBe(0);
    expect(await pos(b)).toBe(1);
    expect(await pos(p)).toBe(2); // plain jobs run before prioritized ones
  });

  it('the same idempotencyKey gives 200 and the same job, scoped by userId', async () => {
    const first = await post({ idempotencyKey: 'order-1', userId: 'alice' });
    expect(first.status).toBe(202);
    expect(first.body.id).toMatch(/^idem-/);
    const again = await post({ idempotencyKey: 'order-1', userId: 'alice' });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ id: first.body.id, status: 'queued' });
    // the same key with another body: refused, and the stored job is the first one
    const other = await post({ idempotencyKey: 'order-1', userId: 'alice', jobType: 'other' });
    expect(other.status).toBe(422);
    expect(other.body.error.code).toBe('idempotency_key_reuse');
    const view = await request(h.app).get(`/v1/jobs/${first.body.id}`);
    expect(view.body.jobType).toBe('image');
    const bob = await post({ idempotencyKey: 'order-1', userId: 'bob' });
    expect(bob.status).toBe(202);
    expect(bob.body.id).not.toBe(first.body.id);
  });

  it('concurrent requests with one idempotencyKey make one job', async () => {
    const before = await h.services.queue.count();
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => post({ idempotencyKey: 'race-1' })),
    );
    expect(new Set(answers.map((r) => r.body.id)).size).toBe(1);
    expect(answers.every((r) => r.status === 200 || r.status === 202)).toBe(true);
    expect(answers.some((r) => r.status === 202)).toBe(true);
    expect(await h.services.queue.count()).toBe(before + 1);
  });

  it('DELETE of a queued job: mark + publish, moved to the front, reads as cancelled, then 409', async () => {
    await h.services.queue.drain();
    await post({}); // an older job: without the cancel it would be taken before ours
    const id = (await post({})).body.id;
    const sub = createRedis(h.config, 'subscriber');
    const received: string[] = [];
    await sub.subscribe(cancelChannel(h.config));
    const got = new Promise<void>((resolve) =>
      sub.on('message', (_c, m: string) => {
        received.push(m);
        resolve();
      }),
    );
    try {
      const del = await request(h.app).delete(`/v1/jobs/${id}`);
      expect(del.status).toBe(202);
      expect(del.body).toEqual({ id, status: 'cancelled' });
      await got;
      expect(received).toEqual([id]);
    } finally {
      sub.disconnect();
    }
    expect(await h.services.redis.hget(jobKey(h.config, id), CANCEL_FIELD)).toMatch(
      /^\d{4}-\d\d-\d\dT/,
    );
    // the next job a worker takes (BullMQ pops from the right of `wait`) is the cancelled one
    expect(await h.services.redis.lindex(h.services.queue.keys.wait, -1)).toBe(id);

    const view = await request(h.app).get(`/v1/jobs/${id}`);
    expect(view.body).toMatchObject({ status: 'cancelled', error: { code: 'cancelled' } });
    expect(view.body.finishedAt).toBeDefined();
    const again = await request(h.app).delete(`/v1/jobs/${id}`);
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('already_finished');
  });

  it('DELETE promotes a delayed job and un-prioritizes a prioritized one', async () => {
    const q = h.services.queue;
    const delayed = await q.add(
      IMAGE_JOB_NAME,
      newJobData(workflow, { jobType: 'image' }, Date.now()),
      { delay: 600_000 },
    );
    const prioritized = (await post({ priority: 100 })).body.id as string;
    expect(await delayed.getState()).toBe('delayed');
    expect((await request(h.app).delete(`/v1/jobs/${delayed.id}`)).status).toBe(202);
    expect((await request(h.app).delete(`/v1/jobs/${prioritized}`)).status).toBe(202);
    expect(await q.getJobState(delayed.id!)).toBe('waiting');
    expect(await q.getJobState(prioritized)).toBe('waiting');
    expect((await request(h.app).get(`/v1/jobs/${delayed.id}`)).body.status).toBe('cancelled');
  });

  it('SSE: the current view first, heartbeats, a cancel ends it; a client that leaves is cleaned up', async () => {
    const app = createApp({ ...h.services, log: h.log, apiKeys: [], sseHeartbeatMs: 50 });
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const id = (await post({})).body.id as string;
      const sse = await openSse(`${base}/v1/jobs/${id}/events`);
      const first = await sse.next('progress');
      expect(first.data).toMatchObject({ id, status: 'queued' });
      await waitFor('a heartbeat', () => sse.comments.includes('heartbeat'));
      expect(sse.events).toHaveLength(1); // unchanged views are not sent again
      expect((await request(h.app).delete(`/v1/jobs/${id}`)).status).toBe(202);
      const events = await sse.done; // ended by the server at the terminal state
      expect(events.map((e) => e.event)).toEqual(['progress', 'cancelled']);
      expect(events[1].data).toMatchObject({
        id,
        status: 'cancelled',
        error: { code: 'cancelled' },
      });

      const other = (await post({})).body.id as string;
      const left = await openSse(`${base}/v1/jobs/${other}/events`);
      await left.next('progress');
      expect(h.services.hub.stats()).toEqual({ streams: 1, jobs: 1 });
      left.close();
      await waitFor('the stream to be cleaned up', () => h.services.hub.stats().streams === 0);
      expect(h.services.hub.stats()).toEqual({ streams: 0, jobs: 0 });
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('a corrupted job hash is a logged 500 in the JSON error shape, not a 503', async () => {
    await h.services.redis.hset(jobKey(h.config, 'broken1'), {
      name: 'image',
      data: '{not json',
      timestamp: '1',
    });
    const res = await request(h.app).get('/v1/jobs/broken1');
    expect(res.status).toBe(500);
    expect(res.body.error.code).toBe('internal_error');
    expect(h.logs.some((l) => l.msg === 'request failed: internal_error')).toBe(true);
    expect((await request(h.app).get('/healthz')).status).toBe(200);
  });

  it('outputs of a job that has none → 404', async () => {
    const id = (await post({})).body.id;
    const res = await request(h.app).get(`/v1/jobs/${id}/outputs/0`);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('not_found');
  });

  it('/healthz, /readyz and the OpenAPI document', async () => {
    expect((await request(h.app).get('/healthz')).status).toBe(200);
    const ready = await request(h.app).get('/readyz');
    expect(ready.status).toBe(200);
    const doc = (await request(h.app).get('/v1/openapi.json')).body;
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/v1/jobs',
        '/v1/jobs/{id}',
        '/v1/jobs/{id}/events',
        '/v1/jobs/{id}/outputs/{n}',
      ]),
    );
    const create = doc.components.schemas.CreateJob;
    expect(create.required).toEqual(['workflow']);
    expect(create.properties.priority).toMatchObject({ minimum: 0, maximum: 2097151 });
    expect(create.properties.jobType).toMatchObject({ maxLength: 256 });
    expect(doc.components.schemas.JobView.properties.status.enum).toEqual([
      'queued',
      'submitted',
      'running',
      'completed',
      'failed',
      'cancelled',
    ]);
  });

  describe('with API_KEYS', () => {
    const KEY = 'sk-test-7f3a9c';
    const app = () => createApp({ ...h.services, log: h.log, apiKeys: ['other-key', KEY] });

    it.each([
      ['no Authorization header', undefined, undefined],
      ['a wrong key', `Bearer wrong-${KEY}`, 'invalid_token'],
      ['Basic instead of Bearer', `Basic ${Buffer.from(`x:${KEY}`).toString('base64')}`, undefined],
      ['an empty bearer', 'Bearer ', undefined],
    ])('%s → 401 unauthorized with WWW-Authenticate', async (_n, header, error) => {
      for (const [method, path] of [
        ['post', '/v1/jobs'],
        ['get', '/v1/jobs/1'],
        ['delete', '/v1/jobs/1'],
        ['get', '/v1/jobs/1/events'],
        ['get', '/v1/nothing-here'],
      ] as const) {
        let req = request(app())[method](path);
        if (header) req = req.set('Authorization', header);
        const res = await req;
        expect(res.status).toBe(401);
        expect(res.body.error.code).toBe('unauthorized');
        expect(res.headers['www-authenticate']).toMatch(/^Bearer realm=/);
        if (error) expect(res.headers['www-authenticate']).toContain(`error="${error}"`);
        expect(JSON.stringify(res.body)).not.toContain(KEY);
      }
    });

    it('the right key → 202/200; health and the OpenAPI document need none; no key in logs', async () => {
      const a = app();
      const created = await request(a)
        .post('/v1/jobs')
        .set('Authorization', `Bearer ${KEY}`)
        .send({ workflow });
      expect(created.status).toBe(202);
      const read = await request(a)
        .get(`/v1/jobs/${created.body.id}`)
        .set('Authorization', `bearer ${KEY}`);
      expect(read.status).toBe(200);
      expect((await request(a).get('/healthz')).status).toBe(200);
      expect((await request(a).get('/v1/openapi.json')).status).toBe(200);
      expect(JSON.stringify(h.logs)).not.toContain(KEY);
    });
  });
});
