import { createHash, randomBytes } from 'node:crypto';
import {
  createReadStream,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createSimulator, type Simulator } from '../src/simulator/server';
import { FAST_WORKER_ENV } from './helpers/api-worker';
import { startRedis, type RedisServer } from './helpers/redis-server';
import { simVersion } from './helpers/system';
import { waitFor } from './helpers/wait';
import { uncompressedPngWorkflow } from './helpers/workflows';
import { killAll, spawnApi, spawnWorker, type WorkerProcess } from './helpers/worker-process';

/**
 * DESIGN "Media out": outputs stream end to end. A 201 MB output (an 8192² EmptyImage saved by
 * SaveAnimatedPNG with `compress_level` 0: stored deflate blocks, as PIL writes them) goes
 * from the simulator's /view through a real worker process into file storage, then out of a
 * real API process to this test, which hashes it as it arrives. Neither process may grow its resident memory by 64 MB or more:
 * peak RSS during the job and the download (VmHWM after resetting it, cross-checked by
 * sampling VmRSS) minus RSS before, after a small warm-up job through the same path.
 */

const LIMIT_MB = 64;
const BIG = 8192;
/** PNG rows: a filter byte and the RGB pixels; stored deflate adds a few bytes per 64 KiB */
const BIG_RAW = BIG * (1 + BIG * 3);

/** `VmRSS` and `VmHWM` of a process, in bytes. */
function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)![1]);
  return { rss: kb('VmRSS') * 1024, hwm: kb('VmHWM') * 1024 };
}

/** Watches one process's resident memory from now: growth = peak − RSS now. */
function watchRss(pid: number) {
  const before = memoryOf(pid).rss;
  let resetPeak = true;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5'); // resets VmHWM to the current RSS
  } catch {
    resetPeak = false; // not allowed here: the samples alone
  }
  let sampled = before;
  const timer = setInterval(() => {
    sampled = Math.max(sampled, memoryOf(pid).rss);
  }, 20);
  return () => {
    clearInterval(timer);
    const now = memoryOf(pid);
    const peak = Math.max(sampled, now.rss, resetPeak ? now.hwm : 0);
    return { before, peak, growth: peak - before, method: resetPeak ? 'VmHWM' : 'sampled VmRSS' };
  };
}

const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

let redis: RedisServer;
let sim: Simulator;
let outputDir: string;
let storageDir: string;
let api: WorkerProcess & { url: string };
let worker: WorkerProcess;
const spawned: WorkerProcess[] = [];

beforeAll(async () => {
  redis = await startRedis();
  outputDir = mkdtempSync(join(tmpdir(), 'cq-sim-out-'));
  storageDir = mkdtempSync(join(tmpdir(), 'cq-files-'));
  sim = await createSimulator({ version: simVersion(), outputDir });
  const env = {
    ...FAST_WORKER_ENV,
    REDIS_URL: redis.url,
    QUEUE_NAME: `big-${randomBytes(4).toString('hex')}`,
    STORAGE_URL: `file://${storageDir}`,
    COMFYUI_URL: sim.url,
    LOG_LEVEL: 'info',
  };
  worker = spawnWorker(env);
  api = await spawnApi(env);
  spawned.push(worker, api);
  await Promise.all([worker.ready, api.ready]);
});
afterAll(async () => {
  await killAll(spawned);
  await sim?.close();
  await redis?.stop();
  for (const dir of [outputDir, storageDir]) if (dir) rmSync(dir, { recursive: true, force: true });
});

type View = {
  status: string;
  outputs?: { url: string; size: number; contentType: string; filename: string }[];
};

/** Submits the workflow through the API process and downloads its one output, hashing it. */
async function runAndDownload(side: number, prefix: string) {
  const res = await fetch(`${api.url}/v1/jobs`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ workflow: uncompressedPngWorkflow(side, prefix) }),
  });
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as { id: string };
  const view = await waitFor(
    `job ${id} finished`,
    async () => {
      const v = (await (await fetch(`${api.url}/v1/jobs/${id}`)).json()) as View;
      return ['completed', 'failed'].includes(v.status) ? v : undefined;
    },
    { timeoutMs: 90_000, everyMs: 100 },
  );
  expect(view.status).toBe('completed');
  const download = await fetch(`${api.url}${view.outputs![0].url}`);
  expect(download.status).toBe(200);
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of download.body as unknown as AsyncIterable<Uint8Array>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return {
    view,
    contentType: download.headers.get('content-type'),
    size,
    sha256: hash.digest('hex'),
  };
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

it(`streams a ${Math.round(BIG_RAW / 1e6)} MB output through the worker and the API with RSS growth under ${LIMIT_MB} MB each`, async () => {
  await runAndDownload(512, 'warmup'); // loads and compiles the code paths once

  const stopWorkerWatch = watchRss(worker.proc.pid!);
  const stopApiWatch = watchRss(api.proc.pid!);
  const got = await runAndDownload(BIG, 'big');
  const w = stopWorkerWatch();
  const a = stopApiWatch();

  const file = join(outputDir, 'big_00001_.png');
  const size = statSync(file).size;
  expect(size).toBeGreaterThan(BIG_RAW);
  expect(size).toBeLessThan(BIG_RAW * 1.001);
  expect(got.view.outputs).toEqual([
    expect.objectContaining({ filename: 'big_00001_.png', size, contentType: 'image/png' }),
  ]);
  expect(got.contentType).toBe('image/png');
  expect(got.size).toBe(size);
  expect(got.sha256).toBe(await sha256Of(file));

  console.log(
    [
      `${mb(size)} MB output, RSS growth (${w.method}):`,
      `worker ${mb(w.growth)} MB (${mb(w.before)} → ${mb(w.peak)} MB),`,
      `api ${mb(a.growth)} MB (${mb(a.before)} → ${mb(a.peak)} MB); limit ${LIMIT_MB} MB`,
    ].join(' '),
  );
  expect(w.growth).toBeLessThan(LIMIT_MB * 1e6);
  expect(a.growth).toBeLessThan(LIMIT_MB * 1e6);
}, 120_000);
