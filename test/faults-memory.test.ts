import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import IORedis from 'ioredis';
import request from 'supertest';
import { createApp } from '../src/api/app';
import { createApiServices, type ApiServices } from '../src/api/services';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/logger';
import { bareAppDeps } from './helpers/api-harness';
import { freePort, startRedis, type RedisServer } from './helpers/redis-server';
import { spawnWorker } from './helpers/worker-process';
import { tinyWorkflow } from './helpers/workflows';

/**
 * Redis memory pressure. With `maxmemory` reached and `noeviction` (the only policy BullMQ
 * tolerates), Redis refuses writes with `OOM command not allowed…`: the API must answer a
 * clear 503 at once (not hang, not 500) and recover by itself when space returns. And a
 * process pointed at a Redis that may evict keys must say so at startup.
 */

const workflow = tinyWorkflow('mem');
// its own files, as the test environment gives every process a test file spawns: an API's
// retention sweep removes files of jobs its Redis does not know
const files = mkdtempSync(join(tmpdir(), 'cq-files-'));
afterAll(() => rmSync(files, { recursive: true, force: true }));

describe('Redis at maxmemory (noeviction)', () => {
  let redis: RedisServer;
  let admin: IORedis;
  let services: ApiServices;
  let app: ReturnType<typeof createApp>;

  beforeAll(async () => {
    redis = await startRedis(['--maxmemory', '8mb', '--maxmemory-policy', 'noeviction']);
    admin = new IORedis(redis.url);
    const config = loadConfig({
      REDIS_URL: redis.url,
      QUEUE_NAME: `mem-${randomBytes(4).toString('hex')}`,
      STORAGE_URL: `file://${files}`,
    });
    const log = createLogger({ logLevel: 'silent' });
    services = await createApiServices(config, log);
    app = createApp(bareAppDeps(services, log));
  });
  afterAll(async () => {
    await services?.close();
    admin?.disconnect();
    await redis?.stop();
  });

  /**
   * Fills Redis until even a small write is refused: 256 KB values until one is refused
   * (its own query buffer counts), then 16 KB, then 512 B ones, so that used memory ends
   * above maxmemory and every write is refused. Then maxmemory is lowered 1 MB below the
   * memory in use, so that Redis freeing a few buffers (its cron shrinks the filler's query
   * buffer) cannot make room again. Returns the filler keys.
   */
  async function fill(): Promise<string[]> {
    await admin.config('SET', 'maxmemory', '8mb');
    const keys: string[] = [];
    for (const size of [256 * 1024, 16 * 1024, 512]) {
      const value = 'x'.repeat(size);
      for (;;) {
        const key = `filler:${keys.length}`;
        try {
          await admin.set(key, value);
          keys.push(key);
        } catch (err) {
          expect(String(err)).toMatch(/^ReplyError: OOM command not allowed/);
          break;
        }
      }
    }
    const used = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))![1]);
    await admin.config('SET', 'maxmemory', String(used - 1024 * 1024));
    return keys;
  }

  /** Redis's count of writes it refused with OOM (INFO errorstats) */
  const oomRefusals = async () =>
    Number(/errorstat_OOM:count=(\d+)/.exec(await admin.info('errorstats'))?.[1] ?? 0);

  /**
   * POST /v1/jobs, and how many writes Redis refused meanwhile: the 503 must come from
   * Redis's OOM reply, mapped at once, not from the API's budget running out (how fast it
   * answers: `npm run bench -- --only=outage`)
   */
  const post = async () => {
    const before = await oomRefusals();
    const res = await request(app).post('/v1/jobs').send({ workflow });
    return { res, refused: (await oomRefusals()) - before };
  };

  /*
   * Fixed (regression test). Was: (src/api/store.ts `isConnectionError` / `guard`): Redis's OOM reply is not a
   * connection error, so the enqueue fails with a 500 internal_error. Fix: map
   * `/^OOM /` (ReplyError "OOM command not allowed when used memory > 'maxmemory'") to
   * QueueUnavailableError too — e.g. add `|^OOM ` to CONNECTION_ERROR, or better a
   * dedicated message: "Redis is out of memory (maxmemory reached): the queue cannot
   * accept jobs; retry later", keeping 503 queue_unavailable with Retry-After.
   */
  test('full: POST /v1/jobs answers 503 queue_unavailable, from Redis’s OOM reply', async () => {
    const id = (await post()).res.body.id as string; // accepted while there is room
    const fillers = await fill();
    const { res, refused } = await post();
    console.log(
      `maxmemory reached (${fillers.length} filler keys): POST /v1/jobs → ${res.status} ${res.body?.error?.code}`,
    );
    try {
      expect(refused).toBeGreaterThan(0);
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe('queue_unavailable');
      // reads still work on a full Redis
      expect((await request(app).get(`/v1/jobs/${id}`)).status).toBe(200);
      expect((await request(app).get('/readyz')).status).toBe(200);
    } finally {
      await admin.flushall(); // for the next test, whatever happened here
    }
  });

  it('full: POST /v1/jobs answers from the OOM reply (never hangs), and recovers when space returns', async () => {
    const fillers = await fill();
    const { res, refused } = await post();
    // store.ts maps Redis's OOM reply to 503 queue_unavailable (see the test above)
    expect(refused).toBeGreaterThan(0);
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('queue_unavailable');
    expect((await request(app).get('/healthz')).status).toBe(200);

    await admin.del(fillers);
    const again = await post();
    expect(again.res.status).toBe(202);
    expect(again.res.body.status).toBe('queued');
    const view = await request(app).get(`/v1/jobs/${again.res.body.id}`);
    expect(view.body).toMatchObject({ status: 'queued' });
  });
});

describe('an eviction policy other than noeviction', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis(['--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru']);
  });
  afterAll(async () => {
    await redis?.stop();
  });

  /** a log line of ours: pino JSON, level warn or higher */
  const ourWarning = (output: string) =>
    output
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string })
      .find((l) => l.level >= 40 && /evict|maxmemory-policy/i.test(JSON.stringify(l)));

  async function startApi(): Promise<string> {
    const port = await freePort();
    const proc = spawn(process.execPath, ['--import', 'tsx', join('src', 'bin', 'api.ts')], {
      cwd: join(__dirname, '..'),
      env: {
        ...process.env,
        REDIS_URL: redis.url,
        PORT: String(port),
        QUEUE_NAME: `evict-${randomBytes(4).toString('hex')}`,
        LOG_LEVEL: 'info',
        LOG_PRETTY: '',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    proc.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    const exited = once(proc, 'exit');
    try {
      await new Promise<void>((resolve, reject) => {
        const check = setInterval(() => {
          if (out.includes('api listening')) {
            clearInterval(check);
            resolve();
          }
        }, 25);
        void exited.then(() => {
          clearInterval(check);
          reject(new Error(`api exited:\n${out}`));
        });
      });
    } finally {
      proc.kill('SIGTERM');
      await exited;
    }
    return out;
  }

  let workerOutput = '';
  let apiOutput = '';
  beforeAll(async () => {
    const w = spawnWorker({
      REDIS_URL: redis.url,
      QUEUE_NAME: `evict-${randomBytes(4).toString('hex')}`,
      COMFYUI_URL: 'http://127.0.0.1:1',
      METRICS_PORT: '0',
      LOG_LEVEL: 'info',
    });
    await w.ready;
    w.proc.kill('SIGTERM');
    await w.exited;
    workerOutput = w.output();
    apiOutput = await startApi();
  }, 60_000);

  it('the worker and the API print BullMQ’s warning at startup', () => {
    const bullmq = /IMPORTANT! Eviction policy is allkeys-lru\. It should be "noeviction"/;
    expect(workerOutput).toMatch(bullmq);
    expect(apiOutput).toMatch(bullmq);
  });

  /*
   * Fixed (regression test). Was: (src/worker/worker.ts and src/api/services.ts, or src/bin/api.ts): BullMQ's warning
   * is a bare console.warn on stderr, not one of our JSON log lines, so log pipelines that
   * parse JSON (Fly, Loki) drop or mis-level it. Fix: after connecting, read
   * `CONFIG GET maxmemory-policy` (or INFO memory's maxmemory_policy; CONFIG may be
   * disabled on managed Redis) and `log.warn({ policy }, 'Redis maxmemory-policy is
   * <policy>: keys (jobs) can be evicted; set it to noeviction')`; on a cluster, on every
   * master (`cluster.nodes('master')`).
   */
  test('…and a warn line of our own (JSON, with the policy)', () => {
    expect(ourWarning(workerOutput)).toBeDefined();
    expect(ourWarning(apiOutput)).toBeDefined();
  });
});
