import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { Job } from 'bullmq';
import IORedis from 'ioredis';
import { errorFromFailedReason } from '../src/job/view';
import { initialState } from '../src/job/state';
import { IMAGE_JOB_NAME, jobKey } from '../src/queue';
import { startSystem, type TestSystem } from './helpers/system';
import { waitFor } from './helpers/wait';
import { killAll, spawnWorker, type WorkerProcess } from './helpers/worker-process';
import { tinyWorkflow } from './helpers/workflows';
import { newJobData, type JobData, type JobResult, type Workflow } from '../src/job/data';

/**
 * Poison and edge jobs against ONE real worker process: data BullMQ cannot parse, data that
 * passes the schema and breaks later, a ComfyUI answer the worker does not expect, huge
 * outputs, and a job stalled past MAX_STALLED_COUNT. Each must end once with a clear
 * reason (or complete, for huge outputs), and the same worker process must then complete a
 * normal job: nothing crash-loops it.
 *
 * The bugs this suite found are fixed; each keeps its regression test, with a comment
 * saying what was wrong.
 */

const MALFORMED_MARKER = 'poison-malformed-400';
const MALFORMED_400 = {
  error: {
    type: 'prompt_outputs_failed_validation',
    message: 'Prompt outputs failed validation',
    details: '',
    extra_info: {},
  },
  // ComfyUI's shape is `errors: [{type, message, details, extra_info}]`; a proxy, a fork or a
  // custom node can answer anything
  node_errors: { '3': { errors: 'Value not in list', class_type: 'SaveImage' } },
};

/**
 * A ComfyUI in front of the simulator that forwards everything (HTTP and the WebSocket),
 * except a POST /prompt carrying MALFORMED_MARKER, answered with an unexpected 400 shape.
 */
async function faultyComfy(target: number): Promise<{ url: string; close(): Promise<void> }> {
  const upgraded = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.method === 'POST' && req.url === '/prompt' && body.includes(MALFORMED_MARKER)) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify(MALFORMED_400));
        return;
      }
      const up = httpRequest(
        {
          host: '127.0.0.1',
          port: target,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (r) => {
          res.writeHead(r.statusCode!, r.headers);
          r.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      up.end(body);
    });
  });
  server.on('upgrade', (req, socket: Socket, head: Buffer) => {
    const up = connect(target, '127.0.0.1', () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2)
        lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(`${lines.join('\r\n')}\r\n\r\n`);
      up.write(head);
      socket.pipe(up).pipe(socket);
    });
    for (const s of [socket, up]) {
      upgraded.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        upgraded.delete(s);
        (s === socket ? up : socket).destroy();
      });
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    async close() {
      const closed = once(server, 'close');
      server.close();
      server.closeAllConnections();
      for (const s of upgraded) s.destroy();
      await closed;
    },
  };
}

describe('poison jobs against one worker process', () => {
  let sys: TestSystem;
  let comfy: Awaited<ReturnType<typeof faultyComfy>>;
  let redis: IORedis;
  let worker: WorkerProcess;
  const WORKER = 'poison-worker';

  beforeAll(async () => {
    // few attempts with short backoff: a job that is retried (instead of failing once)
    // shows it within seconds
    sys = await startSystem({ JOB_ATTEMPTS: '3', RETRY_BACKOFF_MS: '100' });
    comfy = await faultyComfy(sys.sim.port);
    redis = new IORedis(sys.redis.url);
    worker = spawnWorker({ ...sys.env, COMFYUI_URL: comfy.url, WORKER_NAME: WORKER });
    await worker.ready;
  });
  afterAll(async () => {
    if (worker && worker.proc.exitCode === null) worker.proc.kill('SIGKILL');
    await worker?.exited;
    redis?.disconnect();
    await comfy?.close();
    await sys?.close();
  });

  const job = async (id: string) =>
    (await Job.fromId<JobData, JobResult>(sys.queue, id)) as Job<JobData, JobResult>;
  /** the job's BullMQ state once it is completed or failed (polled: it may never emit) */
  const settled = (id: string, timeoutMs = 15_000) =>
    waitFor(
      `job ${id} to complete or fail`,
      async () => {
        const state = await sys.queue.getJobState(id);
        return state === 'completed' || state === 'failed' ? state : undefined;
      },
      { timeoutMs, everyMs: 50 },
    );

  /**
   * A job whose hash fields are then overwritten with raw values (as a corrupted write, a
   * manual HSET or an older/newer deploy would leave them): added delayed so no worker takes
   * it before the overwrite, then promoted.
   */
  async function rawJob(fields: Record<string, string>): Promise<string> {
    const added = await sys.queue.add(
      IMAGE_JOB_NAME,
      newJobData(tinyWorkflow('raw'), { jobType: 'poison' }, Date.now()),
      { delay: 3_600_000 },
    );
    await redis.hset(jobKey(sys.config, added.id!), fields);
    await added.promote();
    return added.id!;
  }

  /** nothing crash-looped the worker: the same process completes a normal job */
  async function sameWorkerCompletesANormalJob() {
    expect(worker.proc.exitCode).toBeNull();
    expect(worker.proc.signalCode).toBeNull();
    const id = await sys.enqueue(tinyWorkflow('after-poison'));
    expect(await settled(id)).toBe('completed');
    const done = await job(id);
    expect(done.processedBy).toBe(WORKER);
    expect(done.returnvalue.outputs).toHaveLength(1);
  }

  it('valid JSON of an unknown data version: fails once with invalid_job_data', async () => {
    const data = { ...newJobData(tinyWorkflow('v99'), { jobType: 'poison' }, Date.now()), v: 99 };
    const id = await rawJob({ data: JSON.stringify(data) });
    expect(await settled(id)).toBe('failed');
    const failed = await job(id);
    expect(failed.failedReason).toMatch(/^invalid_job_data: job data version 99 is not supported/);
    expect(failed.attemptsMade).toBe(1);
    expect(failed.data).toEqual(data); // left as it was: nothing lost
    await sameWorkerCompletesANormalJob();
  });

  it('huge outputs (SaveImage of a 4096-image batch): completes with every file listed', async () => {
    // ComfyUI's batch_size maximum is 4096, so this is the most one SaveImage node can list.
    // Outputs are metadata (filename, subfolder, type; ~80 bytes each): they are kept, in the
    // JobState and the return value, not truncated: the client needs every file.
    const workflow: Workflow = {
      '1': {
        class_type: 'EmptyImage',
        inputs: { width: 8, height: 8, batch_size: 4096, color: 1 },
      },
      '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'huge' } },
    };
    const t0 = Date.now();
    const id = await sys.enqueue(workflow);
    const state = await settled(id, 60_000);
    // a failure shows its reason
    expect({ state, reason: (await job(id)).failedReason }).toEqual({
      state: 'completed',
      reason: undefined,
    });
    const ms = Date.now() - t0;
    const done = await job(id);
    expect(done.returnvalue.outputs).toHaveLength(4096);
    expect(done.returnvalue.outputs[4095]).toMatchObject({ nodeId: '2', type: 'output' });
    expect(done.data.state).not.toHaveProperty('outputs'); // stored once, as the return value
    expect(done.data.workflow).toBeNull();
    const bytes = (await redis.call(
      'MEMORY',
      'USAGE',
      jobKey(sys.config, id),
      'SAMPLES',
      '0',
    )) as number;
    console.log(
      `huge outputs: 4096 files completed in ${ms} ms; the job hash takes ${Math.round(bytes / 1024)} KB in Redis`,
    );
    expect(bytes).toBeLessThan(2 * 1024 * 1024);
    await sameWorkerCompletesANormalJob();
  }, 90_000);

  /*
   * Fixed (regression test). Was: (src/worker/processor.ts `onError`, src/comfy/protocol.ts `describeValidationError`):
   * a 400 whose node_errors entry has `errors` that is not an array makes
   * `describeValidationError` throw `TypeError: (n.errors ?? []).map is not a function`;
   * `onError` rethrows any non-ComfyUI error as is, so BullMQ retries the job JOB_ATTEMPTS
   * times (with backoff) and it finally fails with an unclassified reason (API:
   * `internal_error`). Fix: make describeValidationError total (`Array.isArray(n?.errors)`,
   * `typeof n === 'object'`) so the job fails once with `workflow_invalid`; and in onError
   * fail unknown non-connection errors once (`UnrecoverableError`) instead of retrying them.
   */
  test('a ComfyUI 400 of an unexpected shape: fails once with workflow_invalid', async () => {
    const workflow = tinyWorkflow(MALFORMED_MARKER);
    const id = await sys.enqueue(workflow);
    expect(await settled(id)).toBe('failed');
    const failed = await job(id);
    console.log(
      `malformed 400: failedReason "${failed.failedReason}", attemptsMade ${failed.attemptsMade}`,
    );
    expect(worker.proc.exitCode).toBeNull();
    expect(failed.attemptsMade).toBe(1);
    expect(failed.failedReason).toMatch(/^workflow_invalid: /);
    await sameWorkerCompletesANormalJob();
  });

  /*
   * Fixed (regression test). Was: (src/worker/processor.ts `JobDataSchema` and `onError`): a stored comfyuiUrl that is
   * not a URL passes the schema; on resume `pool.lease(url)` builds a ComfySocket whose
   * `new WebSocket(url)` throws `SyntaxError: Invalid URL` synchronously, and `onError`
   * rethrows it, so the job is retried JOB_ATTEMPTS times and fails unclassified. Fix:
   * validate `state.comfyuiUrl` (an http(s) URL) and `state.promptId` (a string) in
   * JobDataSchema → `invalid_job_data` at once; and the onError change above.
   */
  test('a stored comfyuiUrl that is not a URL: fails once with invalid_job_data', async () => {
    const data: JobData = {
      ...newJobData(tinyWorkflow('bad-url'), { jobType: 'poison' }, Date.now()),
      state: {
        ...initialState(Date.now()),
        status: 'submitted',
        promptId: randomUUID(),
        comfyuiUrl: 'http://not a host',
        startedAt: Date.now(),
        attempts: 1,
      },
    };
    const id = await rawJob({ data: JSON.stringify(data) });
    expect(await settled(id)).toBe('failed');
    const failed = await job(id);
    console.log(
      `bad comfyuiUrl: failedReason "${failed.failedReason}", attemptsMade ${failed.attemptsMade}`,
    );
    expect(failed.attemptsMade).toBe(1);
    expect(failed.failedReason).toMatch(/^invalid_job_data: /);
    await sameWorkerCompletesANormalJob();
  });

  /*
   * Fixed (regression test). Was: (src/worker/worker.ts; BullMQ's Worker calls `Job.fromJSON`, i.e. JSON.parse(data),
   * before our processor runs): `data "not json"` makes the fetch throw a SyntaxError, which
   * BullMQ only emits as a worker 'error'. The job stays active without a lock renewal,
   * stalls, goes back to wait, is taken again, throws again… for ever: even BullMQ's
   * stalled-limit failure (`deferredFailure`) is applied after that parse, so it never
   * fails. Fix: subclass Worker in worker.ts and override `createJob(data, jobId)`: on a
   * parse error build the Job with `{ ...data, data: '{"unparseable":true}' }` so the
   * processor's schema check fails it once with `invalid_job_data` (the stored hash is left
   * untouched by that path: nothing is overwritten).
   */
  test('data that is not JSON: fails once with invalid_job_data', async () => {
    const id = await rawJob({ data: 'not json' });
    try {
      expect(await settled(id, 6_000)).toBe('failed');
      // read raw: BullMQ's own getters cannot parse this job (nor can the API: see the report)
      const [reason, made] = await redis.hmget(jobKey(sys.config, id), 'failedReason', 'atm');
      expect(reason).toMatch(/^invalid_job_data: /);
      expect(made).toBe('1');
      expect(await redis.hget(jobKey(sys.config, id), 'data')).toBe('not json'); // untouched
    } finally {
      const state = await sys.queue.getJobState(id);
      const stalls = await redis.hget(jobKey(sys.config, id), 'stc');
      console.log(`data "not json": after 6 s the job is ${state}, stalled ${stalls ?? 0} times`);
      await removeRaw(id);
    }
    await sameWorkerCompletesANormalJob();
  });

  /** takes a job out whatever its hash holds (BullMQ's own remove needs a parseable job) */
  async function removeRaw(id: string) {
    const k = (s: string) => `${sys.config.queuePrefix}:${sys.config.queueName}:${s}`;
    await redis
      .multi()
      .lrem(k('active'), 0, id)
      .lrem(k('wait'), 0, id)
      .srem(k('stalled'), id)
      .zrem(k('delayed'), id)
      .del(k(id), k(`${id}:lock`), k(`${id}:logs`))
      .exec();
  }
});

describe('a job stalled past MAX_STALLED_COUNT', () => {
  let sys: TestSystem;
  const procs: WorkerProcess[] = [];
  beforeAll(async () => {
    sys = await startSystem({ MAX_STALLED_COUNT: '1' });
  });
  afterAll(async () => {
    await killAll(procs);
    await sys?.close();
  });

  const livePrompts = async () => {
    const q = (await (await fetch(`${sys.sim.url}/queue`)).json()) as {
      queue_running: unknown[][];
      queue_pending: unknown[][];
    };
    return [...q.queue_running, ...q.queue_pending].map((e) => String(e[1]));
  };

  /*
   * Fixed (regression test). Was: (src/worker/worker.ts / processor.ts): BullMQ fails a job stalled past
   * MAX_STALLED_COUNT before our processor runs, so nothing removes its prompt from ComfyUI
   * (it keeps running or waiting there for a job that is already `failed`, unlike
   * recovery_cutoff, timeout and cancelled, which remove it) and its JobState still says
   * `submitted`/`running`. Fix (preferred): let the processor own this failure: give
   * BullMQ `maxStalledCount: MAX_STALLED_COUNT + 1` as a safety net, and at pickup, when
   * `job.stalledCounter > MAX_STALLED_COUNT`, `removePrompt()` then `fail({ code: 'stalled',
   * message: 'the job's worker died N times…' })`. Or: in startImageWorker,
   * `worker.on('failed')` with /stalled more than allowable limit/ and
   * hasLivePrompt(job.data.state) → `pool.client(url).cancel(promptId)` and save
   * `onFailed(state, { code: 'stalled', … })`.
   */
  it('fails with the `stalled` reason, its prompt removed from ComfyUI and its JobState failed; the worker that fails it then completes a normal job', async () => {
    // TestSleep 120 s: the prompt is still running in ComfyUI when the job fails
    const id = await sys.enqueue({
      '1': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 7 } },
      '2': { class_type: 'TestSleep', inputs: { value: ['1', 0], seconds: 120 } },
      '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'stall' } },
    });
    // two workers in a row die while following it (stall 1, then stall 2 > MAX_STALLED_COUNT)
    const t0 = Date.now();
    for (let i = 1; i <= 2; i++) {
      const w = spawnWorker({
        ...sys.env,
        COMFYQ_CRASH_AT: 'following',
        WORKER_NAME: `crash-${i}`,
      });
      procs.push(w);
      w.ready.catch(() => undefined);
      expect((await w.exited).signal).toBe('SIGKILL');
    }
    const survivor = spawnWorker({ ...sys.env, WORKER_NAME: 'survivor' });
    procs.push(survivor);
    await survivor.ready;
    const failed = await waitFor(
      'the job to fail',
      async () =>
        (await sys.queue.getJobState(id)) === 'failed' ? await sys.queue.getJob(id) : undefined,
      { timeoutMs: 20_000 },
    );
    console.log(`stalled twice (MAX_STALLED_COUNT=1): failed ${Date.now() - t0} ms after enqueue`);
    // the processor fails it `stalled: …` (BullMQ's own limit is one higher)
    expect(failed.failedReason).toMatch(/^stalled: |stalled more than allowable limit/);
    expect(failed.stalledCounter).toBe(2);
    expect(errorFromFailedReason(failed.failedReason)).toMatchObject({ code: 'stalled' });
    const promptId = (failed.data as JobData).state.promptId!;
    expect(sys.sim.executions()[promptId]).toBe(1);

    // the worker that failed it removed its prompt: interrupted, long before its 120 s were
    // up (a worker that left it behind would hold the only ComfyUI, and this test's time)
    await waitFor(
      'the prompt to leave ComfyUI',
      async () => !(await livePrompts()).includes(promptId),
    );
    const history = (await (await fetch(`${sys.sim.url}/history/${promptId}`)).json()) as Record<
      string,
      { status: { status_str: string; messages: [string, unknown][] } }
    >;
    expect(history[promptId].status.status_str).toBe('error');
    expect(history[promptId].status.messages.map(([type]) => type)).toContain(
      'execution_interrupted',
    );
    const status = ((await sys.queue.getJob(id))!.data as JobData).state.status;
    expect(status).toBe('failed');

    const normal = await sys.enqueue(tinyWorkflow('after-stall'));
    await waitFor('the normal job to complete', async () =>
      (await sys.queue.getJobState(normal)) === 'completed' ? true : undefined,
    );
    expect((await sys.queue.getJob(normal))!.processedBy).toBe('survivor');
    expect(survivor.proc.exitCode).toBeNull();
  }, 60_000);
});
