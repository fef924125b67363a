import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { buildOpenApiDocument } from '../src/api/openapi';
import pkg from '../package.json';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';

/**
 * The OpenAPI document: docs/openapi.json is the code's (Redocly lints that file in
 * `npm run lint`), every operation has an operationId and its security, every API error
 * code is documented; Swagger UI at /docs is served from node_modules.
 */

type Operation = { operationId?: string; security?: unknown[]; responses: object };
const ROOT = join(__dirname, '..');

let h: ApiHarness;
beforeAll(async () => {
  h = await startApiHarness({ logLevel: 'warn' });
});
afterAll(async () => {
  await h?.close();
});

test('docs/openapi.json is the document the code builds (run `npm run openapi` after a change)', () => {
  const file = JSON.parse(readFileSync(join(ROOT, 'docs', 'openapi.json'), 'utf8')) as unknown;
  expect(file).toEqual(buildOpenApiDocument({ version: pkg.version }));
});

test('every operation has an operationId and security; /v1 needs the bearer key', () => {
  const doc = buildOpenApiDocument({ version: pkg.version, publicUrl: 'https://q.example' });
  expect(doc.servers).toEqual([{ url: 'https://q.example', description: 'this API' }]);
  const ids: string[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const op of Object.values(item) as Operation[]) {
      ids.push(op.operationId!);
      const expected = /^\/v1\/(jobs|uploads)/.test(path) ? [{ bearer: [] }] : [];
      expect({ path, security: op.security }).toEqual({ path, security: expected });
    }
  }
  expect(ids.every((id) => typeof id === 'string')).toBe(true);
  expect(new Set(ids).size).toBe(ids.length);
  expect(ids).toEqual(expect.arrayContaining(['retryJob', 'streamJobEvents', 'getJobOutput']));
});

test('every API error code is documented', () => {
  const source = readFileSync(join(ROOT, 'src', 'api', 'errors.ts'), 'utf8');
  const union = /export type ApiErrorCode =([^;]+);/.exec(source)![1];
  const codes = [...union.matchAll(/'([a-z_]+)'/g)].map((m) => m[1]);
  expect(codes.length).toBeGreaterThan(10);
  const text = JSON.stringify(buildOpenApiDocument({ version: pkg.version }));
  expect(codes.filter((code) => !text.includes(code))).toEqual([]);
});

test('Swagger UI at /docs, over /v1/openapi.json, from local files', async () => {
  const page = await request(h.app).get('/docs');
  expect(page.status).toBe(200);
  expect(page.headers['content-type']).toMatch(/text\/html/);
  expect(page.text).toContain('<script src="/docs/swagger-ui-bundle.js"></script>');
  expect(page.text).toContain('url: "/v1/openapi.json"');
  const bundle = await request(h.app).get('/docs/swagger-ui-bundle.js');
  expect(bundle.status).toBe(200);
  expect(bundle.headers['content-type']).toMatch(/javascript/);
  expect((await request(h.app).get('/docs/swagger-ui.css')).status).toBe(200);
  const missing = await request(h.app).get('/docs/nothing-here.js');
  expect(missing.status).toBe(404);
  expect(missing.body.error.code).toBe('not_found');
});
