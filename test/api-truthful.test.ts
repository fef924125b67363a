import { request as httpRequest } from 'node:http';
import type IORedis from 'ioredis';
import request from 'supertest';
import { createApp } from '../src/api/app';
import { FINGERPRINT_FIELD } from '../src/api/enqueue';
import { createJobStore } from '../src/api/store';
import { WORKFLOW_FIELD, jobKey } from '../src/queue';
import { createRedis } from '../src/redis';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';
import { waitFor } from './helpers/wait';
import { tinyWorkflow } from './helpers/workflows';

/**
 * Truthful answers (DESIGN "The API boundary"): an error answer means nothing changed; an
 * answer that cannot know says so (`outcome_unknown`, with the job id); the Idempotency-Key
 * header and the body key are one thing; a key reused with another body is a 422.
 * Redis is made slow with CLIENT PAUSE WRITE (reads pass, writes wait): deterministic.
 */

const WF = tinyWorkflow('truthful');

describe('API: truthful answers', () => {
  let h: ApiHarness;
  let admin: IORedis;
  beforeAll(async () => {
    h = await startApiHarness({ logLevel: 'error' });
    admin = createRedis(h.config, 'worker');
  });
  afterAll(async () => {
    await admin?.quit();
    await h?.close();
  });
  const post = (body: Record<string, unknown>, key?: string) => {
    const r = request(h.app).post('/v1/jobs');
    if (key !== undefined) r.set('Idempotency-Key', key);
    return r.send({ workflow: WF, ...body });
  };
  /** writes wait in Redis for `ms` (longer than the API's 1.5 s budget) */
  const pauseWrites = (ms: number) => admin.call('CLIENT', 'PAUSE', String(ms), 'WRITE');

  it('the Idempotency-Key header is the body key; quoted (IETF structured field) or bare', async () => {
    const first = await post({ userId: 'h1' }, '"order-7"');
    expect(first.status).toBe(202);
    const again = await post({ userId: 'h1', idempotencyKey: 'order-7' });
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(first.body.id);
    const bare = await post({ userId: 'h1' }, 'order-7');
    expect(bare.status).toBe(200);
    expect(bare.body.id).toBe(first.body.id);
  });

  it('a header and a body key that differ: 400, nothing added', async () => {
    const before = await h.services.queue.count();
    const res = await post({ idempotencyKey: 'a' }, 'b');
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    expect(res.body.error.details[0].path).toBe('idempotencyKey');
    expect(await h.services.queue.count()).toBe(before);
  });

  it('a key reused with another body: 422 idempotency_key_reuse (key order does not matter)', async () => {
    const first = await post({ metadata: { a: 1, b: 2 } }, 'reuse-1');
    expect(first.status).toBe(202);
    const reordered = await post({ metadata: { b: 2, a: 1 } }, 'reuse-1');
    expect(reordered.status).toBe(200);
    const other = await post({ metadata: { a: 1, b: 3 } }, 'reuse-1');
    expect(other.status).toBe(422);
    expect(other.body.error.code).toBe('idempotency_key_reuse');
    expect(other.body.error.message).toContain(first.body.id);
  });

  it('the workflow is its own hash field: the job data (read by GET, events, cancel) has none', async () => {
    const res = await post({});
    const key = jobKey(h.config, res.body.id);
    const [data, workflow, fp] = await admin.hmget(key, 'data', WORKFLOW_FIELD, FINGERPRINT_FIELD);
    expect(JSON.parse(data!).workflow).toBeNull();
    expect(JSON.parse(data!).nodes).toBe(Object.keys(WF).length);
    expect(JSON.parse(workflow!)).toEqual(WF);
    expect(fp).toMatch(/^[\w-]{43}$/);
  });

  it('job ids cannot be guessed: UUID v7', async () => {
    const a = await post({});
    const b = await post({});
    for (const r of [a, b]) {
      expect(r.body.id).toMatch(
        /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
      );
    }
  });

  it('an enqueue Redis confirms too late: 503 outcome_unknown naming the job, which then exists; the same key again is safe', async () => {
    await pauseWrites(2_500);
    const res = await post({ userId: 'slow' }, 'slow-1');
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('outcome_unknown');
    const id = res.body.error.jobId as string;
    expect(res.body.error.message).toContain(id);
    await waitFor('the paused enqueue to land', async () =>
      (await request(h.app).get(`/v1/jobs/${id}`)).status === 200 ? true : undefined,
    );
    const again = await post({ userId: 'slow' }, 'slow-1');
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(id);
  });

  it('a cancel Redis confirms too late: outcome_unknown; the same DELETE with its key then answers 202, another 409', async () => {
    const { id } = (await post({})).body as { id: string };
    // an app whose store pauses Redis writes between its read and the mark
    const store = createJobStore({
      queue: h.services.queue,
      redis: h.services.redis,
      settings: h.config,
      beforeCancelMark: () => pauseWrites(2_500),
    });
    const app = createApp({ ...h.deps, store });
    const res = await request(app).delete(`/v1/jobs/${id}`).set('Idempotency-Key', 'c-1');
    expect(res.status).toBe(503);
    expect(res.body.error).toMatchObject({ code: 'outcome_unknown', jobId: id });
    await waitFor('the paused cancel to land', async () =>
      (await request(h.app).get(`/v1/jobs/${id}`)).body.status === 'cancelled' ? true : undefined,
    );
    const again = await request(h.app).delete(`/v1/jobs/${id}`).set('Idempotency-Key', 'c-1');
    expect(again.status).toBe(202);
    expect(again.body).toEqual({ id, status: 'cancelled' });
    const other = await request(h.app).delete(`/v1/jobs/${id}`).set('Idempotency-Key', 'c-2');
    expect(other.status).toBe(409);
  });

  it('413 from Content-Length, before the body is read', async () => {
    const base = await h.listen();
    const answer = await new Promise<{ status?: number; body: string }>((resolve, reject) => {
      const req = httpRequest(`${base}/v1/jobs`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'Content-Length': String(100 * 2 ** 20) },
      });
      req.on('response', (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode, body }));
      });
      req.on('error', reject);
      req.write('{"workflow":'); // and nothing more: the answer must not wait for 100 MB
    });
    expect(answer.status).toBe(413);
    expect(JSON.parse(answer.body).error.code).toBe('payload_too_large');
  });

  it('Redis down: 503 queue_unavailable at once (no offline queue), and nothing is added later', async () => {
    const before = await h.services.queue.count();
    await h.redis.kill();
    const res = await post({}, 'down-1');
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('queue_unavailable');
    const cancel = await request(h.app).delete('/v1/jobs/some-id');
    expect(cancel.status).toBe(503);
    await h.redis.start();
    await waitFor('the API to reconnect', async () =>
      (await request(h.app).get('/readyz')).status === 200 ? true : undefined,
    );
    expect(await h.services.queue.count()).toBe(before);
  });
});
