import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { once } from 'node:events';
import request from 'supertest';
import { JobViewSchema } from '../src/job/view';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';

/** POST /v1/uploads and `inputs` on POST /v1/jobs against a real Redis and file storage. */

const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==',
  'base64',
);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const img2img = {
  '1': { class_type: 'LoadImage', inputs: { image: 'face.png' } },
  '2': { class_type: 'ImageInvert', inputs: { image: ['1', 0] } },
  '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'inv' } },
};
const MAX = 4096;

describe('API: uploads and job inputs', () => {
  let h: ApiHarness;
  let base: string;
  beforeAll(async () => {
    h = await startApiHarness({ env: { UPLOAD_MAX_BYTES: String(MAX) } });
    base = await h.listen();
  });
  afterAll(async () => {
    await h?.close();
  });

  const upload = async () => {
    const res = await request(h.app)
      .post('/v1/uploads?filename=face.png')
      .set('Content-Type', 'image/png')
      .send(PNG);
    expect(res.status).toBe(201);
    return res.body as { id: string };
  };
  const postJob = (inputs: unknown, workflow: unknown = img2img) =>
    request(h.app).post('/v1/jobs').send({ workflow, inputs });

  it('stores a raw body and answers its id, name, size, sha256 and type', async () => {
    const res = await request(h.app)
      .post('/v1/uploads?filename=dir/face.png')
      .set('Content-Type', 'image/png')
      .send(PNG);
    expect(res.status).toBe(201);
    expect(res.body).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      filename: 'face.png',
      size: PNG.length,
      sha256: sha256(PNG),
      contentType: 'image/png',
    });
  });

  it('stores the `file` field of a multipart body', async () => {
    const res = await request(h.app)
      .post('/v1/uploads')
      .field('note', 'ignored')
      .attach('file', PNG, { filename: 'photo.png', contentType: 'image/png' });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      filename: 'photo.png',
      size: PNG.length,
      sha256: sha256(PNG),
    });
  });

  it('answers 400 for a multipart body without a `file` field', async () => {
    const res = await request(h.app).post('/v1/uploads').field('other', 'x');
    expect(res.status).toBe(400);
    expect(res.body.error.details).toEqual([{ path: 'file', message: expect.any(String) }]);
  });

  it('refuses from Content-Length alone, before any byte of the body is sent', async () => {
    const url = new URL('/v1/uploads', base);
    const req = httpRequest(url, {
      method: 'POST',
      headers: { 'Content-Type': 'image/png', 'Content-Length': String(MAX + 1) },
    });
    req.flushHeaders(); // headers only: the body is never written
    const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage];
    let body = '';
    for await (const c of res) body += c;
    req.destroy();
    expect(res.statusCode).toBe(413);
    expect(JSON.parse(body).error.code).toBe('payload_too_large');
  });

  it('answers 413 for a chunked body that grows past UPLOAD_MAX_BYTES, and keeps nothing', async () => {
    const before = await h.services.storage.list('uploads/');
    let sent = 0;
    const res = await fetch(`${base}/v1/uploads`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/octet-stream' },
      body: new ReadableStream({
        pull(c) {
          c.enqueue(new Uint8Array(1024));
          if (++sent > 8) c.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
      'payload_too_large',
    );
    expect(await h.services.storage.list('uploads/')).toEqual(before);
  });

  it('takes inputs by upload id and base64, and shows name, size and sha256 in the view', async () => {
    const { id } = await upload();
    const workflow = {
      ...img2img,
      '4': { class_type: 'LoadImage', inputs: { image: 'mask.png' } },
    };
    const dataUri = `data:image/png;base64,${PNG.toString('base64')}`;
    const res = await postJob(
      { 'face.png': { upload: id }, 'mask.png': { base64: dataUri } },
      workflow,
    );
    expect(res.status).toBe(202);
    const view = (await request(h.app).get(`/v1/jobs/${res.body.id}`)).body;
    expect(JobViewSchema.parse(view).inputs).toEqual([
      { name: 'face.png', size: PNG.length, sha256: sha256(PNG) },
      { name: 'mask.png', size: PNG.length, sha256: sha256(PNG) },
    ]);
    // both uploads are marked as used by the job (retention keeps them while it exists)
    const refs = (await h.services.storage.list('uploads/')).filter((o) =>
      o.key.endsWith(`/refs/${res.body.id}`),
    );
    expect(refs).toHaveLength(2);
  });

  it.each([
    [{ 'other.png': { base64: PNG.toString('base64') } }, 'inputs.other.png', /no node input/],
    [
      { 'face.png': { upload: '00000000-0000-4000-8000-000000000000' } },
      'inputs.face.png.upload',
      /no upload/,
    ],
    [
      { 'face.png': { url: 'http://127.0.0.1:9/x.png' } },
      'inputs.face.png.url',
      /loopback.*INPUT_URL_ALLOW_PRIVATE/,
    ],
    [{ 'face.png': { url: 'http://[fd00::1]/x.png' } }, 'inputs.face.png.url', /unique-local/],
    [{ 'face.png': { url: 'ftp://example.com/x.png' } }, 'inputs.face.png.url', /http or https/],
    [{ 'face.png': { base64: 'not base64!' } }, 'inputs.face.png.base64', /base64/],
    [
      { 'face.png': { base64: Buffer.alloc(MAX + 1).toString('base64') } },
      'inputs.face.png.base64',
      /larger than/,
    ],
    [
      { 'face.png': { url: 'https://example.com/x.png', upload: 'x' } },
      'inputs.face.png',
      /exactly one/,
    ],
    [
      { '../face.png': { url: 'https://example.com/x.png' } },
      'inputs.../face.png',
      /must not contain/,
    ],
  ])('refuses an input with a detail at its path (%#)', async (inputs, path, message) => {
    const res = await postJob(inputs);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    expect(res.body.error.details).toEqual([{ path, message: expect.stringMatching(message) }]);
  });

  it('refuses more than 32 inputs', async () => {
    const inputs = Object.fromEntries(
      Array.from({ length: 33 }, (_, i) => [`f${i}.png`, { url: 'https://example.com/a.png' }]),
    );
    const res = await postJob(inputs);
    expect(res.status).toBe(400);
    expect(res.body.error.details).toEqual([{ path: 'inputs', message: 'at most 32 inputs' }]);
  });

  it('accepts a public URL input (fetched later by the worker)', async () => {
    const res = await postJob({ 'face.png': { url: 'https://example.com/face.png' } });
    expect(res.status).toBe(202);
    const view = (await request(h.app).get(`/v1/jobs/${res.body.id}`)).body;
    expect(view.inputs).toEqual([{ name: 'face.png' }]);
  });
});

describe('API: private input URLs with INPUT_URL_ALLOW_PRIVATE=1', () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness({ env: { INPUT_URL_ALLOW_PRIVATE: '1' } });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('accepts a loopback URL', async () => {
    const res = await request(h.app)
      .post('/v1/jobs')
      .send({ workflow: img2img, inputs: { 'face.png': { url: 'http://127.0.0.1:9/x.png' } } });
    expect(res.status).toBe(202);
  });
});
