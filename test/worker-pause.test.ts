import { Job, QueueEvents } from 'bullmq';
import IORedis from 'ioredis';
import { loadConfig } from '../src/config';
import { createImageQueue, IMAGE_JOB_NAME, jobKey, type ImageQueue } from '../src/queue';
import { redisOptions } from '../src/redis';
import { redisScript } from '../src/scripts';
import type { FaultPoint } from '../src/worker/processor';
import { startSystem, type TestSystem } from './helpers/system';
import { killAll, spawnWorker, type WorkerProcess } from './helpers/worker-process';
import { sleepWorkflow } from './helpers/workflows';
import { newJobData, type JobData, type JobResult } from '../src/job/data';

/**
 * Paused workers (SIGSTOP, as a GC pause, a frozen VM or a starved process would do): the
 * worker stops itself at a fault point (COMFYQ_PAUSE_AT) and stays stopped until another
 * worker has taken the job over (its lock expired) and finished it, which takes longer
 * than the lock and the take-over grace. Then it resumes (SIGCONT) and carries on from
 * where it stood. Whatever it tries then, ComfyUI ran the prompt once, nothing is left in
 * ComfyUI's queue, and the finished job is exactly as the second worker left it.
 *
 * Each fault point has its own queue and its own frozen-to-be worker process, all started
 * at once (a worker's start is most of such a test's time); the worker that takes over
 * runs in this process.
 */

// where the frozen worker stands, and what its log must show on resume: at `before-post`
// the fence finds the lock lost (without the fence the prompt runs twice); at `fence-sent`
// the proof's answer (the lock is still this worker's) arrives late, so it is stale and
// refused, and the next proof finds the lock lost (an ownership check without freshness
// runs the prompt twice). At `after-prompt-stored` the look-up that ran beside the write
// may time out in the pause (its timer fires on resume): the worker may retry instead.
const STALE = 'fence: the lock proof went stale before the request was written; nothing was sent';
const LOST = 'fence: the job is no longer this worker’s: nothing is written to ComfyUI';
const POINTS: [FaultPoint, string[]][] = [
  ['after-prompt-stored', []],
  ['before-post', [LOST]],
  ['fence-sent', [STALE, LOST]],
  ['after-post', []],
  ['following', []],
  ['after-outcome-saved', []],
];

let sys: TestSystem;
let redis: IORedis;
const procs: WorkerProcess[] = [];
const frozen = new Map<FaultPoint, WorkerProcess>();

const queueName = (point: FaultPoint) => `${sys.env.QUEUE_NAME}-${point}`;

beforeAll(async () => {
  sys = await startSystem();
  redis = new IORedis(sys.redis.url);
  // the proof's script is in Redis' cache (as after any worker's first proof), so the
  // frozen worker's proof at `fence-sent` is answered by Redis while it is stopped
  await redis.script('LOAD', redisScript('proveLock-1').lua);
  for (const [point] of POINTS) {
    const w = spawnWorker({ ...sys.env, QUEUE_NAME: queueName(point), COMFYQ_PAUSE_AT: point });
    procs.push(w);
    frozen.set(point, w);
  }
  await Promise.all(procs.map((w) => w.ready));
}, 180_000);
afterAll(async () => {
  await killAll(procs);
  redis?.disconnect();
  await sys?.close();
});

async function comfyQueueLength() {
  const q = (await (await fetch(`${sys.sim.url}/queue`)).json()) as {
    queue_running: unknown[];
    queue_pending: unknown[];
  };
  return q.queue_running.length + q.queue_pending.length;
}

test.each(POINTS)(
  'frozen at %s past its lock: one execution, the finished job untouched, no stray write',
  async (point, lines) => {
    const config = loadConfig({ ...sys.env, QUEUE_NAME: queueName(point) });
    const queue: ImageQueue = createImageQueue(config);
    const events = new QueueEvents(config.queueName, {
      connection: redisOptions(config, 'worker'),
      prefix: config.queuePrefix,
    });
    try {
      await events.waitUntilReady();
      const a = frozen.get(point)!;
      const added = await queue.add(
        IMAGE_JOB_NAME,
        newJobData(sleepWorkflow(0.3, `pause-${point}`), { jobType: 'test' }, Date.now()),
      );
      const id = added.id!;
      await a.waitForLog('fault injection: SIGSTOP');

      // another worker takes the job over once the frozen one's lock expired, and finishes it
      const b = await sys.startWorker({ QUEUE_NAME: config.queueName, WORKER_NAME: 'taker' });
      await added.waitUntilFinished(events);
      const finished = (await Job.fromId<JobData, JobResult>(queue, id))!;
      expect(await finished.getState()).toBe('completed');
      expect(finished.processedBy).toBe(b.name);
      const promptId = finished.data.state.promptId!;
      expect(sys.sim.executions()[promptId]).toBe(1);
      const before = await redis.hgetall(jobKey(config, id));

      a.proc.kill('SIGCONT');
      // the resumed worker's last act for the job: BullMQ refuses its move (the lock is gone)
      await a.waitForLog(`Missing lock for job ${id}`);

      expect(sys.sim.executions()[promptId]).toBe(1);
      expect(await comfyQueueLength()).toBe(0);
      for (const line of lines) expect(a.output()).toContain(line);
      expect(await redis.hgetall(jobKey(config, id))).toEqual(before);
      const after = (await Job.fromId<JobData, JobResult>(queue, id))!;
      expect(await after.getState()).toBe('completed');
      expect(after.data.state).toMatchObject({ status: 'completed', promptId, resubmissions: 0 });
    } finally {
      await events.close();
      await queue.close();
    }
  },
  120_000,
);
