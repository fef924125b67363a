import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { logAnalyticsSink } from '../src/analytics';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/logger';
import { createSimulator, type Simulator } from '../src/simulator/server';
import { encodePng } from '../src/simulator/png';
import type { LookupAll } from '../src/webhooks/url-policy';
import { startImageWorker, type ImageWorker } from '../src/worker/worker';
import { startApiHarness, type ApiHarness } from './helpers/api-harness';
import { FAST_WORKER_ENV } from './helpers/api-worker';
import { simVersion } from './helpers/system';
import { waitFor } from './helpers/wait';
import { img2imgWorkflow } from './helpers/workflows';

/**
 * DESIGN "Media in": a URL input's host is checked again on the address it resolves to when
 * the worker fetches it. The API accepts `files.example.test` (a public-looking name); the
 * worker's DNS answers 127.0.0.1, where a real file server listens. Without the allowance the
 * fetch is refused before connecting (`input_unavailable`, no prompt); with it, the same URL
 * is fetched and the job completes, so the refusal is the policy's and nothing else's.
 */

const PNG = encodePng(2, 2, new Uint8Array(12).fill(200));
/** the worker's DNS: one name, on loopback */
const resolve: LookupAll = (host, _opts, cb) =>
  host === 'files.example.test'
    ? cb(null, [{ address: '127.0.0.1', family: 4 }])
    : cb(Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' }), []);

let h: ApiHarness;
let sim: Simulator;
let files: Server;
let port: number;
let served = 0;
let worker: ImageWorker | undefined;

beforeAll(async () => {
  h = await startApiHarness({ logLevel: 'warn' });
  sim = await createSimulator({ progressIntervalMs: 50, version: simVersion() });
  files = createServer((_req, res) => {
    served++;
    res.writeHead(200, { 'Content-Type': 'image/png' }).end(PNG);
  });
  files.listen(0, '127.0.0.1');
  await once(files, 'listening');
  port = (files.address() as AddressInfo).port;
});
afterEach(async () => {
  await worker?.close();
  worker = undefined;
});
afterAll(async () => {
  files?.close();
  await sim?.close();
  await h?.close();
});

async function run(allowPrivate: '0' | '1') {
  const config = loadConfig({
    ...h.env,
    ...FAST_WORKER_ENV,
    COMFYUI_URL: sim.url,
    INPUT_URL_ALLOW_PRIVATE: allowPrivate,
  });
  const log = createLogger({ logLevel: 'silent' });
  worker = await startImageWorker(config, { log, analytics: logAnalyticsSink(log), resolve });
  const res = await request(h.app)
    .post('/v1/jobs')
    .send({
      workflow: img2imgWorkflow(),
      inputs: { 'face.png': { url: `http://files.example.test:${port}/x.png` } },
    });
  expect(res.status).toBe(202);
  return waitFor(
    `job ${res.body.id} finished`,
    async () => {
      const v = (await request(h.app).get(`/v1/jobs/${res.body.id}`)).body;
      return ['completed', 'failed'].includes(v.status) ? v : undefined;
    },
    { timeoutMs: 30_000 },
  );
}

it('refuses a URL input whose name resolves to a loopback address, without connecting', async () => {
  const view = await run('0');
  expect(view.status).toBe('failed');
  expect(view.error).toMatchObject({ code: 'input_unavailable' });
  expect(view.error.message).toMatch(
    /files\.example\.test resolves to a loopback address \(127\.0\.0\.1\).*INPUT_URL_ALLOW_PRIVATE=1/,
  );
  expect(view.attempts).toBe(1);
  expect(served).toBe(0);
  expect(sim.executions()[view.promptId]).toBeUndefined();
});

it('fetches the same URL with INPUT_URL_ALLOW_PRIVATE=1', async () => {
  const view = await run('1');
  expect(view.status).toBe('completed');
  expect(served).toBe(1);
  expect(view.inputs).toEqual([{ name: 'face.png', size: PNG.length, sha256: expect.any(String) }]);
});
