import fc from 'fast-check';
import request from 'supertest';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';
import { tinyWorkflow } from './helpers/workflows';

/**
 * Property-based fuzzing of `POST /v1/jobs` (fast-check), bounded in time: whatever the body
 * (random JSON, near-valid jobs with one part mangled, random bytes, odd headers), the API
 * never answers 5xx, every 4xx carries an `error.code`, and it still takes and serves a
 * valid job afterwards. (`POST /v1/uploads` is not fuzzed here: it had not landed.)
 */

const RUNS = 150;
const TIME_LIMIT_MS = 40_000;

const node = fc.record(
  {
    class_type: fc.oneof(fc.string(), fc.constant('KSampler'), fc.integer(), fc.constant(null)),
    inputs: fc.oneof(
      fc.dictionary(
        fc.string({ maxLength: 8 }),
        fc.oneof(
          fc.jsonValue({ maxDepth: 2 }),
          fc.tuple(fc.string({ maxLength: 4 }), fc.oneof(fc.integer(), fc.double())),
        ),
        { maxKeys: 6 },
      ),
      fc.jsonValue({ maxDepth: 2 }),
    ),
    _meta: fc.jsonValue({ maxDepth: 2 }),
  },
  { requiredKeys: [] },
);

const workflow = fc.oneof(
  fc.dictionary(fc.string({ maxLength: 6 }), node, { maxKeys: 5 }),
  fc.jsonValue({ maxDepth: 3 }),
  fc.constant(tinyWorkflow('fuzz')),
);

/** A job body: every field optional, each either well-formed or anything at all. */
const jobBody = fc.record(
  {
    workflow,
    jobType: fc.oneof(fc.string({ maxLength: 300 }), fc.jsonValue({ maxDepth: 1 })),
    userId: fc.oneof(fc.string({ maxLength: 300 }), fc.integer()),
    priority: fc.oneof(
      fc.integer({ min: -10, max: 2_097_160 }),
      fc.double(),
      fc.constantFrom(2_097_151, 2_097_152, 1e308, -0),
    ),
    webhookUrl: fc.oneof(
      fc.webUrl(),
      fc.string(),
      fc.constantFrom('http:///x', 'http://[::ffff:0:127.0.0.1]/', 'http://localhost../'),
    ),
    idempotencyKey: fc.oneof(fc.string({ maxLength: 300 }), fc.integer()),
    metadata: fc.jsonValue({ maxDepth: 3 }),
    extra: fc.jsonValue({ maxDepth: 1 }),
  },
  { requiredKeys: [] },
);

const rawBody = fc.oneof(
  jobBody.map((b) => JSON.stringify(b)),
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 200 }),
  fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a).toString('latin1')),
);

const headers = fc.record(
  {
    'Content-Type': fc.constantFrom(
      'application/json',
      'application/json; charset=utf-8',
      'application/vnd.x+json',
      'text/plain',
      'application/json; charset=latin1',
    ),
    'Idempotency-Key': fc.oneof(fc.string({ maxLength: 300 }), fc.constant('"quoted"')),
  },
  { requiredKeys: ['Content-Type'] },
);

describe('API fuzz: POST /v1/jobs', () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness({ logLevel: 'silent' });
  });
  afterAll(async () => {
    await h?.close();
  });

  it(`never a 5xx, every 4xx has an error.code (${RUNS} runs, ≤ ${TIME_LIMIT_MS / 1000} s)`, async () => {
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(rawBody, headers, async (body, hdrs) => {
        let req = request(h.app).post('/v1/jobs');
        for (const [k, v] of Object.entries(hdrs)) {
          // a header value must be sendable: drop the characters HTTP forbids
          req = req.set(k, String(v).replace(/[^\t\x20-\x7e]/g, ''));
        }
        const res = await req.send(body);
        seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
        expect(res.status).toBeLessThan(500);
        if (res.status >= 400) expect(typeof res.body?.error?.code).toBe('string');
        else expect(typeof res.body.id).toBe('string');
      }),
      { numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS },
    );
    // the properties were exercised on both sides
    expect([...seen.keys()].some((s) => s >= 400)).toBe(true);
  });

  it('serves a valid job afterwards', async () => {
    const res = await request(h.app)
      .post('/v1/jobs')
      .send({ workflow: tinyWorkflow('after') });
    expect(res.status).toBe(202);
    const view = await request(h.app).get(`/v1/jobs/${res.body.id}`);
    expect(view.status).toBe(200);
    expect(view.body).toMatchObject({ id: res.body.id, status: 'queued' });
  });
});
