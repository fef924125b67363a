import fc from 'fast-check';
import request from 'supertest';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';
import { tinyWorkflow } from './helpers/workflows';

/**
 * Property-based fuzzing of `POST /v1/jobs` and `POST /v1/uploads` (fast-check), bounded in
 * time: whatever the body (random JSON, near-valid jobs with one part mangled, `inputs` of
 * every shape, random bytes, raw and multipart uploads with odd names, types and
 * boundaries, odd headers), the API never answers 5xx, every 4xx carries an `error.code`,
 * and it still takes and serves a valid job (with an uploaded input) afterwards.
 */

const RUNS = 150;
const TIME_LIMIT_MS = 30_000;
const UPLOAD_RUNS = 120;
const UPLOAD_TIME_LIMIT_MS = 15_000;
const UPLOAD_MAX = 2048;
const UPLOAD_ID = '00000000-0000-4000-8000-000000000000';

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

const IMG2IMG = {
  '1': { class_type: 'LoadImage', inputs: { image: 'face.png' } },
  '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'fuzz' } },
};

const workflow = fc.oneof(
  fc.dictionary(fc.string({ maxLength: 6 }), node, { maxKeys: 5 }),
  fc.jsonValue({ maxDepth: 3 }),
  fc.constant(tinyWorkflow('fuzz')),
  fc.constant(IMG2IMG),
);

/** `inputs`: names the workflow may or may not use, each input well-formed or not. */
const input = fc.oneof(
  fc.record({ upload: fc.oneof(fc.uuid(), fc.constant(UPLOAD_ID), fc.string()) }),
  fc.record({
    url: fc.oneof(
      fc.webUrl(),
      fc.string(),
      fc.constantFrom('http:///x', 'http://[::ffff:0:127.0.0.1]/a.png', 'file:///etc/passwd'),
    ),
  }),
  fc.record({
    base64: fc.oneof(
      fc.uint8Array({ maxLength: UPLOAD_MAX + 8 }).map((a) => Buffer.from(a).toString('base64')),
      fc.string(),
      fc.base64String().map((b) => `data:image/png;base64,${b}`),
    ),
  }),
  fc.jsonValue({ maxDepth: 2 }),
);
const inputs = fc.oneof(
  fc.dictionary(fc.oneof(fc.constant('face.png'), fc.string({ maxLength: 12 })), input, {
    maxKeys: 4,
  }),
  fc.jsonValue({ maxDepth: 2 }),
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
    inputs,
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

/** A header value must be sendable: drop the characters HTTP forbids. */
const sendable = (v: unknown) => String(v).replace(/[^\t\x20-\x7e]/g, '');

const bytes = fc.uint8Array({ maxLength: UPLOAD_MAX + 64 }).map((a) => Buffer.from(a));
const contentType = fc.oneof(
  fc.constantFrom('image/png', 'application/octet-stream', 'text/plain; charset=utf-8', ''),
  fc.constantFrom('multipart/form-data', 'multipart/form-data; boundary='),
  fc.string({ maxLength: 40 }),
);
const filename = fc.oneof(
  fc.string({ maxLength: 260 }),
  fc.constantFrom('../../etc/passwd', '..', '.', 'a\\b.png', 'x"\r\n.png', ''),
);
const part = fc.record({
  name: fc.oneof(fc.constant('file'), fc.string({ maxLength: 8 })),
  filename: fc.option(filename),
  type: fc.option(contentType),
  data: bytes,
});
/** A multipart body, well-formed or cut short, with a boundary that may not match its header. */
const multipart = fc
  .record({
    boundary: fc.stringMatching(/^[\w'()+,./:=?-]{1,70}$/),
    header: fc.option(fc.string({ maxLength: 20 })),
    parts: fc.array(part, { maxLength: 3 }),
    cut: fc.option(fc.nat()),
  })
  .map(({ boundary, header, parts, cut }) => {
    const chunks = parts.flatMap((p) => [
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"` +
          (p.filename === null ? '' : `; filename="${p.filename}"`) +
          (p.type === null ? '' : `\r\nContent-Type: ${p.type}`) +
          '\r\n\r\n',
      ),
      p.data,
      Buffer.from('\r\n'),
    ]);
    const body = Buffer.concat([...chunks, Buffer.from(`--${boundary}--\r\n`)]);
    return {
      type: `multipart/form-data; boundary=${header ?? boundary}`,
      body: cut === null ? body : body.subarray(0, cut % (body.length + 1)),
      query: '',
    };
  });
const rawUpload = fc
  .record({ type: contentType, body: bytes, name: fc.option(filename) })
  .map(({ type, body, name }) => ({
    type,
    body,
    query: name === null ? '' : `?filename=${encodeURIComponent(name)}`,
  }));

describe('API fuzz: POST /v1/jobs and POST /v1/uploads', () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness({
      logLevel: 'silent',
      env: { UPLOAD_MAX_BYTES: String(UPLOAD_MAX) },
    });
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
          req = req.set(k, sendable(v));
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

  it(`uploads: never a 5xx, every 4xx has an error.code (${UPLOAD_RUNS} runs, ≤ ${UPLOAD_TIME_LIMIT_MS / 1000} s)`, async () => {
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(fc.oneof(rawUpload, multipart), async ({ type, body, query }) => {
        const res = await request(h.app)
          .post(`/v1/uploads${query}`)
          .set('Content-Type', sendable(type))
          .send(body);
        seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
        expect(res.status).toBeLessThan(500);
        if (res.status >= 400) expect(typeof res.body?.error?.code).toBe('string');
        else {
          expect(res.status).toBe(201);
          expect(res.body.size).toBeLessThanOrEqual(UPLOAD_MAX);
          expect(res.body.filename).not.toMatch(/[/\\]/);
        }
      }),
      { numRuns: UPLOAD_RUNS, interruptAfterTimeLimit: UPLOAD_TIME_LIMIT_MS },
    );
    expect(seen.get(201)).toBeGreaterThan(0);
    expect([...seen.keys()].some((s) => s >= 400)).toBe(true);
  });

  it('serves a valid job afterwards, with an uploaded input', async () => {
    const res = await request(h.app)
      .post('/v1/jobs')
      .send({ workflow: tinyWorkflow('after') });
    expect(res.status).toBe(202);
    const view = await request(h.app).get(`/v1/jobs/${res.body.id}`);
    expect(view.status).toBe(200);
    expect(view.body).toMatchObject({ id: res.body.id, status: 'queued' });
    const up = await request(h.app)
      .post('/v1/uploads?filename=face.png')
      .set('Content-Type', 'image/png')
      .send(Buffer.from('not really a png'));
    expect(up.status).toBe(201);
    const job = await request(h.app)
      .post('/v1/jobs')
      .send({ workflow: IMG2IMG, inputs: { 'face.png': { upload: up.body.id } } });
    expect(job.status).toBe(202);
    const withInput = await request(h.app).get(`/v1/jobs/${job.body.id}`);
    expect(withInput.body).toMatchObject({ status: 'queued', inputs: [{ name: 'face.png' }] });
  });
});
