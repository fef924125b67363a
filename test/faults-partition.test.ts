import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Job } from 'bullmq';
import type { JobData, JobResult } from '../src/queue';
import { startSystem, type TestSystem } from './helpers/system';
import { waitFor } from './helpers/wait';
import { killAll, spawnWorker, type WorkerProcess } from './helpers/worker-process';
import { sleepWorkflow } from './helpers/workflows';

/**
 * A worker cut off from Redis (network partition) while it follows a job: its lock
 * expires, another worker takes the job over and finishes it; when the partition heals,
 * the first worker's writes that were waiting in its connection land. Found by the chaos
 * test (test/chaos.test.ts: "completed in BullMQ but its JobState says running", after the
 * Redis restart, where the same thing happens through ioredis' offline queue).
 */

/** A TCP proxy to Redis that can hold every byte in both directions (a partition). */
async function partitionableProxy(targetPort: number) {
  let held = false;
  const queued: Array<() => void> = [];
  let heldBytes = '';
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(from);
      from.on('data', (chunk: Buffer) => {
        if (held) {
          queued.push(() => to.write(chunk));
          if (from === client) heldBytes += chunk.toString('latin1');
        } else to.write(chunk);
      });
      from.on('error', () => undefined);
      from.on('close', () => {
        sockets.delete(from);
        to.destroy();
      });
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `redis://127.0.0.1:${(server.address() as { port: number }).port}`,
    hold() {
      held = true;
    },
    /** whether a held client → Redis write contains `text` */
    holds(text: string) {
      return heldBytes.includes(text);
    },
    heal() {
      held = false;
      heldBytes = '';
      for (const write of queued.splice(0)) write();
    },
    async close() {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

let sys: TestSystem;
let proxy: Awaited<ReturnType<typeof partitionableProxy>>;
const procs: WorkerProcess[] = [];

beforeAll(async () => {
  sys = await startSystem();
  proxy = await partitionableProxy(sys.redis.port);
});
afterAll(async () => {
  await killAll(procs);
  await proxy?.close();
  await sys?.close();
});

/*
 * Fixed (regression test). Was: (src/worker/persist.ts PERSIST_LUA + src/worker/processor.ts `save`): a JobState
 * write does not check that the writer still holds the job (BullMQ's lock), so a stale
 * copy of the job, whose write waited in its connection (partition, or ioredis' offline
 * queue during a Redis restart), overwrites the state saved by the worker that owns and
 * finished the job: BullMQ says completed, the JobState says running. The same write can
 * roll back a prompt id or a resubmission count. Fix: pass BullMQ's `token` (the
 * processor's 2nd argument) to persist, add KEYS[3] = `<job key>:lock` and
 * `if redis.call("GET", KEYS[3]) ~= ARGV[token] then return -2 end` first in PERSIST_LUA;
 * on -2 the processor stops following (like ABORT.lockLost) without writing anything.
 * Progress has the same hole (BullMQ's `job.updateProgress` checks no lock either, so a
 * late write can also reset a finished job's progress): send it through the same
 * lock-checked script.
 */
test('a partitioned worker’s late write does not roll back a finished job', async () => {
  const a = spawnWorker({ ...sys.env, REDIS_URL: proxy.url, WORKER_NAME: 'partitioned' });
  procs.push(a);
  await a.ready;
  // keep ComfyUI busy so the job's prompt waits, then runs while its first worker is cut off
  await fetch(`${sys.sim.url}/prompt`, {
    method: 'POST',
    body: JSON.stringify({ prompt: sleepWorkflow(4, 'partition-blocker') }),
  });
  const id = await sys.enqueue(sleepWorkflow(1, 'partition'));
  const job = async () => (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
  await waitFor('the first worker to submit the prompt and show its queue position', async () => {
    const j = await job();
    const queued = (j.progress as { queuePosition?: number }).queuePosition !== undefined;
    return j.data.state.status === 'submitted' && queued ? true : undefined;
  });

  proxy.hold(); // the first worker keeps following ComfyUI, but nothing it writes arrives
  await waitFor(
    'the cut-off worker to save "running" (held by the partition)',
    () => proxy.holds('"status":"running"'),
    { timeoutMs: 15_000 },
  );
  const b = spawnWorker({ ...sys.env, WORKER_NAME: 'owner' });
  procs.push(b);
  await waitFor(
    'the second worker to take the job over and finish it',
    async () => ((await sys.queue.getJobState(id)) === 'completed' ? true : undefined),
    { timeoutMs: 20_000 },
  );
  const finished = await job();
  expect(finished.processedBy).toBe('owner');
  expect(finished.data.state.status).toBe('completed');

  // freeze the first worker, then let what it wrote while cut off reach Redis: a frozen
  // process cannot write anything newer afterwards, so Redis ends with that late write
  a.proc.kill('SIGSTOP');
  proxy.heal();
  const progressOf = (j: Job<JobData, JobResult>) => (j.progress as { percent?: number }).percent;
  const rolledBack = await waitFor(
    'a late write to roll the job back',
    async () => {
      const j = await job();
      return j.data.state.status !== 'completed' || progressOf(j) !== 100 ? j : undefined;
    },
    { timeoutMs: 2_000 },
  ).catch(() => undefined);
  a.proc.kill('SIGKILL');
  const after = await job();
  console.log(
    `partition healed: BullMQ ${await sys.queue.getJobState(id)}, JobState ${after.data.state.status}, progress ${JSON.stringify(after.progress)}`,
  );
  expect(await sys.queue.getJobState(id)).toBe('completed');
  expect(rolledBack).toBeUndefined();
  expect(after.data.state.status).toBe('completed');
  expect(progressOf(after)).toBe(100);
  expect(sys.sim.executions()[after.data.state.promptId!]).toBe(1);
}, 45_000);
