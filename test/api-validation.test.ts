import request from 'supertest';
import { LIMITS } from '../src/api/schemas';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';

/**
 * Malformed requests, table-driven: each must be a 4xx with the JSON error shape and the
 * right code, never a 5xx; the app still takes a valid job afterwards.
 */

const node = (class_type: string, inputs: Record<string, unknown> = {}) => ({ class_type, inputs });
const wf = () => ({
  '1': node('EmptyImage', { width: 64, height: 64, batch_size: 1, color: 0 }),
  '2': {
    ...node('SaveImage', { images: ['1', 0], filename_prefix: 'v' }),
    _meta: { title: 'Save' },
  },
});
const body = (extra: Record<string, unknown> = {}) => JSON.stringify({ workflow: wf(), ...extra });
const withNode = (id: string, n: unknown) => JSON.stringify({ workflow: { ...wf(), [id]: n } });
const keys = (n: number, v: unknown) =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, v]));
const nodes = (n: number) =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [String(i), node('A')])) as Record<
    string,
    unknown
  >;
/** `n` links spread over nodes of at most 400 inputs, all to node "0" */
const links = (n: number) => {
  const wf: Record<string, unknown> = { '0': node('A') };
  for (let i = 0; i * 400 < n; i++)
    wf[`n${i}`] = node('B', keys(Math.min(400, n - i * 400), ['0', 0]));
  return wf;
};
const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);

interface Case {
  name: string;
  method?: 'post' | 'get' | 'delete' | 'put';
  path?: string;
  contentType?: string | null;
  raw?: string | Buffer;
  headers?: Record<string, string>;
  status: number;
  code: string;
  /** a path that must be named in details */
  field?: string;
}

// prettier-ignore
const CASES: Case[] = [
  // --- not JSON at all
  { name: 'syntax error', raw: '{bad', status: 400, code: 'invalid_json' },
  { name: 'truncated JSON', raw: '{"workflow": {"1": ', status: 400, code: 'invalid_json' },
  { name: 'trailing garbage', raw: '{"workflow": {}} xyz', status: 400, code: 'invalid_json' },
  { name: 'single quotes', raw: "{'workflow': {}}", status: 400, code: 'invalid_json' },
  { name: 'empty body', raw: '', status: 400, code: 'invalid_request' },
  { name: 'JSON array body', raw: '[]', status: 400, code: 'invalid_request', field: '' },
  { name: 'JSON string body', raw: '"hello"', status: 400, code: 'invalid_request', field: '' },
  { name: 'JSON null body', raw: 'null', status: 400, code: 'invalid_request', field: '' },
  { name: 'JSON number body', raw: '42', status: 400, code: 'invalid_request', field: '' },
  // --- media type and size
  { name: 'text/plain', contentType: 'text/plain', raw: body(), status: 415, code: 'unsupported_media_type' },
  { name: 'form', contentType: 'application/x-www-form-urlencoded', raw: 'a=1', status: 415, code: 'unsupported_media_type' },
  { name: 'xml', contentType: 'application/xml', raw: '<a/>', status: 415, code: 'unsupported_media_type' },
  { name: 'multipart', contentType: 'multipart/form-data; boundary=x', raw: '--x--', status: 415, code: 'unsupported_media_type' },
  { name: 'no content type', contentType: null, raw: Buffer.from(body()), status: 415, code: 'unsupported_media_type' },
  { name: 'latin1 charset', contentType: 'application/json; charset=latin1', raw: body(), status: 415, code: 'unsupported_media_type' },
  { name: 'unknown content-encoding', headers: { 'Content-Encoding': 'compress' }, raw: body(), status: 415, code: 'unsupported_media_type' },
  { name: 'body over 5 MB', raw: body({ metadata: { big: 'x'.repeat(5.5 * 1024 * 1024) } }), status: 413, code: 'payload_too_large' },
  { name: 'nested 10000 deep', raw: JSON.stringify({ workflow: { '1': node('X', { a: 0 }) } }).replace('0', nested(10_000)), status: 400, code: 'invalid_request', field: '' },
  // --- workflow shape
  { name: 'no workflow', raw: '{}', status: 400, code: 'invalid_request', field: 'workflow' },
  { name: 'workflow null', raw: '{"workflow": null}', status: 400, code: 'invalid_request', field: 'workflow' },
  { name: 'workflow array', raw: '{"workflow": []}', status: 400, code: 'invalid_request', field: 'workflow' },
  { name: 'workflow string', raw: '{"workflow": "x"}', status: 400, code: 'invalid_request', field: 'workflow' },
  { name: 'workflow without nodes', raw: '{"workflow": {}}', status: 400, code: 'invalid_request', field: 'workflow' },
  { name: 'node is a number', raw: withNode('3', 5), status: 400, code: 'invalid_request', field: 'workflow.3' },
  { name: 'node without class_type', raw: withNode('3', { inputs: {} }), status: 400, code: 'invalid_request', field: 'workflow.3.class_type' },
  { name: 'class_type a number', raw: withNode('3', node(7 as unknown as string)), status: 400, code: 'invalid_request', field: 'workflow.3.class_type' },
  { name: 'class_type empty', raw: withNode('3', node('')), status: 400, code: 'invalid_request', field: 'workflow.3.class_type' },
  { name: 'class_type an array', raw: withNode('3', { class_type: ['A'], inputs: {} }), status: 400, code: 'invalid_request', field: 'workflow.3.class_type' },
  { name: 'node without inputs', raw: withNode('3', { class_type: 'A' }), status: 400, code: 'invalid_request', field: 'workflow.3.inputs' },
  { name: 'inputs an array', raw: withNode('3', { class_type: 'A', inputs: [] }), status: 400, code: 'invalid_request', field: 'workflow.3.inputs' },
  { name: 'inputs a string', raw: withNode('3', { class_type: 'A', inputs: 'x' }), status: 400, code: 'invalid_request', field: 'workflow.3.inputs' },
  { name: 'dangling link', raw: withNode('3', node('SaveImage', { images: ['99', 0] })), status: 400, code: 'invalid_request', field: 'workflow.3.inputs.images' },
  { name: 'link with negative index', raw: withNode('3', node('SaveImage', { images: ['1', -1] })), status: 400, code: 'invalid_request', field: 'workflow.3.inputs.images.1' },
  { name: 'link with fractional index', raw: withNode('3', node('SaveImage', { images: ['1', 0.5] })), status: 400, code: 'invalid_request', field: 'workflow.3.inputs.images.1' },
  { name: 'node id __proto__', raw: '{"workflow": {"__proto__": {"class_type": "A", "inputs": {}}}}', status: 400, code: 'invalid_request' },
  { name: 'node id too long', raw: withNode('n'.repeat(300), node('A')), status: 400, code: 'invalid_request' },
  // --- the other fields
  { name: 'jobType a number', raw: body({ jobType: 5 }), status: 400, code: 'invalid_request', field: 'jobType' },
  { name: 'jobType empty', raw: body({ jobType: '' }), status: 400, code: 'invalid_request', field: 'jobType' },
  { name: 'jobType 257 chars', raw: body({ jobType: 'j'.repeat(257) }), status: 400, code: 'invalid_request', field: 'jobType' },
  { name: 'userId 100k chars', raw: body({ userId: 'u'.repeat(100_000) }), status: 400, code: 'invalid_request', field: 'userId' },
  { name: 'userId an object', raw: body({ userId: { a: 1 } }), status: 400, code: 'invalid_request', field: 'userId' },
  { name: 'idempotencyKey 257 chars', raw: body({ idempotencyKey: 'k'.repeat(257) }), status: 400, code: 'invalid_request', field: 'idempotencyKey' },
  { name: 'idempotencyKey a number', raw: body({ idempotencyKey: 12 }), status: 400, code: 'invalid_request', field: 'idempotencyKey' },
  { name: 'priority negative', raw: body({ priority: -1 }), status: 400, code: 'invalid_request', field: 'priority' },
  { name: 'priority too high', raw: body({ priority: 2_097_152 }), status: 400, code: 'invalid_request', field: 'priority' },
  { name: 'priority fractional', raw: body({ priority: 1.5 }), status: 400, code: 'invalid_request', field: 'priority' },
  { name: 'priority a string', raw: body({ priority: '1' }), status: 400, code: 'invalid_request', field: 'priority' },
  { name: 'priority 1e308', raw: body({ priority: 1e308 }), status: 400, code: 'invalid_request', field: 'priority' },
  { name: 'webhookUrl not a URL', raw: body({ webhookUrl: 'not a url' }), status: 400, code: 'invalid_request', field: 'webhookUrl' },
  { name: 'webhookUrl ftp', raw: body({ webhookUrl: 'ftp://example.com/x' }), status: 400, code: 'invalid_request', field: 'webhookUrl' },
  { name: 'webhookUrl javascript:', raw: body({ webhookUrl: 'javascript:alert(1)' }), status: 400, code: 'invalid_request', field: 'webhookUrl' },
  { name: 'webhookUrl to loopback', raw: body({ webhookUrl: 'http://127.0.0.1:9/hook' }), status: 400, code: 'invalid_request', field: 'webhookUrl' },
  { name: 'webhookUrl to a private range', raw: body({ webhookUrl: 'https://[fd00::1]/hook' }), status: 400, code: 'invalid_request', field: 'webhookUrl' },
  { name: 'webhookUrl to 6to4', raw: body({ webhookUrl: 'http://[2002:7f00:1::1]/hook' }), status: 400, code: 'invalid_request', field: 'webhookUrl' },
  { name: 'webhookUrl to a TEST-NET', raw: body({ webhookUrl: 'http://203.0.113.5/hook' }), status: 400, code: 'invalid_request', field: 'webhookUrl' },
  { name: 'webhookUrl without host', raw: body({ webhookUrl: 'http:///x' }), status: 400, code: 'invalid_request', field: 'webhookUrl' },
  { name: 'webhookUrl single-label host', raw: body({ webhookUrl: 'http://intranet/hook' }), status: 400, code: 'invalid_request', field: 'webhookUrl' },
  { name: 'webhookUrl unresolvable host', raw: body({ webhookUrl: 'https://hooks.nowhere.invalid/x' }), status: 400, code: 'invalid_request', field: 'webhookUrl' },
  { name: 'webhookUrl localhost..', raw: body({ webhookUrl: 'http://localhost../x' }), status: 400, code: 'invalid_request', field: 'webhookUrl' },
  { name: 'metadata an array', raw: body({ metadata: [1, 2] }), status: 400, code: 'invalid_request', field: 'metadata' },
  { name: 'metadata a string', raw: body({ metadata: 'x' }), status: 400, code: 'invalid_request', field: 'metadata' },
  { name: 'metadata null', raw: body({ metadata: null }), status: 400, code: 'invalid_request', field: 'metadata' },
  { name: 'metadata over 4 KB', raw: body({ metadata: { note: 'm'.repeat(4100) } }), status: 400, code: 'invalid_request', field: 'metadata' },
  { name: 'unknown field', raw: body({ webhook_url: 'http://x' }), status: 400, code: 'invalid_request', field: 'webhook_url' },
  // --- ids and routes
  { name: 'id with a colon', method: 'get', path: '/v1/jobs/a:b', status: 404, code: 'not_found' },
  { name: 'id malformed encoding', method: 'get', path: '/v1/jobs/%E0%A4%A', status: 404, code: 'not_found' },
  { name: 'id 300 chars', method: 'get', path: `/v1/jobs/${'9'.repeat(300)}`, status: 404, code: 'not_found' },
  { name: 'unknown numeric id', method: 'get', path: '/v1/jobs/987654', status: 404, code: 'not_found' },
  { name: 'id with dot segments', method: 'get', path: '/v1/jobs/..%2F..%2Fetc', status: 404, code: 'not_found' },
  { name: 'unicode id', method: 'get', path: '/v1/jobs/%F0%9F%98%80', status: 404, code: 'not_found' },
  { name: 'delete unknown id', method: 'delete', path: '/v1/jobs/nope', status: 404, code: 'not_found' },
  { name: 'output index not a number', method: 'get', path: '/v1/jobs/1/outputs/abc', status: 404, code: 'not_found' },
  { name: 'output index negative', method: 'get', path: '/v1/jobs/1/outputs/-1', status: 404, code: 'not_found' },
  { name: 'events of unknown job', method: 'get', path: '/v1/jobs/424242/events', status: 404, code: 'not_found' },
  { name: 'PUT on jobs', method: 'put', path: '/v1/jobs', raw: body(), status: 404, code: 'not_found' },
  { name: 'unknown route', method: 'get', path: '/nope', status: 404, code: 'not_found' },
];

describe('API: malformed requests', () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness({ logLevel: 'error' });
  });
  afterAll(async () => {
    await h?.close();
  });

  it(`has at least 40 kinds of malformed request (${CASES.length})`, () => {
    expect(CASES.length).toBeGreaterThanOrEqual(40);
  });

  it.each(CASES.map((c) => [c.name, c] as const))('%s → 4xx with error.code', async (_name, c) => {
    const method = c.method ?? 'post';
    let req = request(h.app)[method](c.path ?? '/v1/jobs');
    for (const [k, v] of Object.entries(c.headers ?? {})) req = req.set(k, v);
    if (c.raw !== undefined) {
      if (c.contentType !== null)
        req = req.set('Content-Type', c.contentType ?? 'application/json');
      req = req.send(c.raw);
    }
    const res = await req;
    expect(res.status).toBe(c.status);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body.error.code).toBe(c.code);
    expect(typeof res.body.error.message).toBe('string');
    if (c.code === 'invalid_request') {
      const paths = (res.body.error.details as Array<{ path: string }>).map((d) => d.path);
      expect(new Set(paths).size).toBe(paths.length); // one entry per bad field
      if (c.field !== undefined) expect(paths).toContain(c.field);
    }
  });

  it('names every bad field at once', async () => {
    const res = await request(h.app)
      .post('/v1/jobs')
      .send({
        workflow: { '1': { class_type: 3, inputs: [] } },
        priority: -5,
        jobType: '',
        metadata: [],
        extra: 1,
      });
    expect(res.status).toBe(400);
    const paths = res.body.error.details.map((d: { path: string }) => d.path).sort();
    expect(paths).toEqual([
      'extra',
      'jobType',
      'metadata',
      'priority',
      'workflow.1.class_type',
      'workflow.1.inputs',
    ]);
  });

  it('accepts extra node keys, empty inputs and list values that are not links', async () => {
    const res = await request(h.app)
      .post('/v1/jobs')
      .send({
        workflow: {
          '1': { class_type: 'A', inputs: {}, _meta: { title: 'x' }, is_changed: ['x'] },
          '2': { class_type: 'B', inputs: { a: ['1', 0], list: ['x', 'y'], nums: [1, 2, 3] } },
        },
      });
    expect(res.status).toBe(202);
  });

  it('lists at most 20 problems and says how many there were', async () => {
    const workflow: Record<string, unknown> = {};
    for (let i = 0; i < 50; i++)
      workflow[String(i)] = { class_type: 'A', inputs: { x: ['gone', 0] } };
    const res = await request(h.app).post('/v1/jobs').send({ workflow });
    expect(res.status).toBe(400);
    expect(res.body.error.details).toHaveLength(LIMITS.details);
    expect(res.body.error.message).toBe(`50 problems; the first ${LIMITS.details} are listed`);
  });

  it.each([
    ['nodes', () => nodes(LIMITS.nodes + 1), 'workflow', `more than ${LIMITS.nodes} nodes`],
    [
      'inputs of one node',
      () => ({ '1': { class_type: 'A', inputs: keys(LIMITS.inputsPerNode + 1, 1) } }),
      'workflow.1.inputs',
      `more than ${LIMITS.inputsPerNode} inputs`,
    ],
    ['links', () => links(LIMITS.links + 1), 'workflow', `more than ${LIMITS.links} links`],
  ])('refuses a workflow over the cap on %s with one detail', async (_what, make, path, text) => {
    const res = await request(h.app).post('/v1/jobs').send({ workflow: make() });
    expect(res.status).toBe(400);
    expect(res.body.error.details).toEqual([{ path, message: expect.stringContaining(text) }]);
  });

  it('accepts a workflow at every cap', async () => {
    const wf = nodes(LIMITS.nodes);
    wf['0'] = { class_type: 'A', inputs: keys(LIMITS.inputsPerNode, 1) };
    const res = await request(h.app).post('/v1/jobs').send({ workflow: wf });
    expect(res.status).toBe(202);
    const res2 = await request(h.app)
      .post('/v1/jobs')
      .send({ workflow: links(LIMITS.links) });
    expect(res2.status).toBe(202);
  });

  it(`accepts priority ${LIMITS.maxPriority}, BullMQ's largest`, async () => {
    const res = await request(h.app)
      .post('/v1/jobs')
      .send({ workflow: wf(), priority: LIMITS.maxPriority });
    expect(res.status).toBe(202);
    const view = await request(h.app).get(`/v1/jobs/${res.body.id}`);
    expect(view.body.status).toBe('queued');
  });

  it('accepts a public webhookUrl', async () => {
    const res = await request(h.app)
      .post('/v1/jobs')
      .send({ workflow: wf(), webhookUrl: 'https://8.8.8.8/comfy?x=1' });
    expect(res.status).toBe(202);
  });

  it('still accepts a valid job after all of that', async () => {
    const res = await request(h.app)
      .post('/v1/jobs')
      .set('Content-Type', 'application/json')
      .send(body());
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({
      status: 'queued',
      links: { self: `/v1/jobs/${res.body.id}` },
    });
  });
});
