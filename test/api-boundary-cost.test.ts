import { monitorEventLoopDelay } from 'node:perf_hooks';
import request from 'supertest';
import { LIMITS } from '../src/api/schemas';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';

/**
 * Two findings of issue #14, as the client saw them:
 * - "one request blocks everyone": a 5 MB body of 297,437 links to a missing node got its
 *   400 after 18 s with a 29 MB error body while `/healthz` waited 17.8 s; 446,155 keys in
 *   one node's inputs were accepted after 6–25 s. Here such a body is answered 400 with one
 *   short detail, and the event loop is never held for long (the body is parsed and checked
 *   in the worker-thread pool; the bound is 8× the bench's 250 ms target, for a loaded
 *   machine, and far below the seconds the old code blocked for). The input-count cap
 *   that refuses the 446,155 keys is in api-validation.test.ts; the bench measures both.
 * - "reads pull the whole workflow": GET, events and cancel of a job with a ~4.5 MB
 *   workflow read a few KB from Redis (counted by Redis itself), not the workflow.
 */

const BLOCK_BOUND_MS = 2_000;
const MB5 = 5 * 1024 * 1024 - 4096;

/** A body just under 5 MB: one node whose inputs are `make(i)` for as many i as fit. */
function oneNodeBody(make: (i: number) => [string, unknown]): string {
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < MB5 - 200; i++) {
    const [k, v] = make(i);
    const part = `${JSON.stringify(k)}:${JSON.stringify(v)}`;
    parts.push(part);
    size += part.length + 1;
  }
  return `{"workflow":{"1":{"class_type":"X","inputs":{${parts.join(',')}}}}}`;
}

describe('API boundary: bounded cost per request', () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness({ logLevel: 'error' });
  });
  afterAll(async () => {
    await h?.close();
  });

  it(`a 5 MB body of links to a missing node: a short 400, the event loop never held ${BLOCK_BOUND_MS} ms`, async () => {
    // built before the measure: it is the test's own work
    const body = oneNodeBody((i) => [`l${i}`, ['missing', 0]]);
    expect(body.length).toBeGreaterThan(MB5 - 300);
    expect(body.length).toBeLessThanOrEqual(LIMITS.bodyBytes);
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const res = await request(h.app)
      .post('/v1/jobs')
      .set('Content-Type', 'application/json')
      .send(body);
    delay.disable();
    expect(res.status).toBe(400);
    expect(res.body.error.details).toHaveLength(1);
    expect(JSON.stringify(res.body).length).toBeLessThan(2_000);
    expect(delay.max / 1e6).toBeLessThan(BLOCK_BOUND_MS);
  });

  it('GET, events and cancel of a job with a 4.5 MB workflow do not read the workflow', async () => {
    const big = 'x'.repeat(4_500);
    const workflow: Record<string, unknown> = {};
    for (let i = 0; i < 1_000; i++) {
      workflow[String(i)] = { class_type: 'CLIPTextEncode', inputs: { text: big } };
    }
    const posted = await request(h.app).post('/v1/jobs').send({ workflow });
    expect(posted.status).toBe(202);
    const id = posted.body.id as string;
    const sentByRedis = async () =>
      Number(/total_net_output_bytes:(\d+)/.exec(await h.services.redis.info('stats'))![1]);

    const before = await sentByRedis();
    for (let i = 0; i < 5; i++) {
      expect((await request(h.app).get(`/v1/jobs/${id}`)).status).toBe(200);
    }
    const base = await h.listen();
    const events = await fetch(`${base}/v1/jobs/${id}/events`);
    const reader = events.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain('progress');
    await reader.cancel();
    expect((await request(h.app).delete(`/v1/jobs/${id}`)).status).toBe(202);
    const read = (await sentByRedis()) - before;
    // five views, a stream and a cancel: a few KB each; one HGETALL would be 4.5 MB
    expect(read).toBeLessThan(256 * 1024);
  });
});
