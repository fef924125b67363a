import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Job } from 'bullmq';
import { jobKey } from '../src/queue';
import { startSystem, type TestSystem } from './helpers/system';
import { waitFor } from './helpers/wait';
import { killAll, spawnWorker, type WorkerProcess } from './helpers/worker-process';
import { sleepWorkflow } from './helpers/workflows';
import type { JobData, JobResult } from '../src/job/data';

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
  /** Redis connections that commands were held for */
  const heldFor = new Set<Socket>();
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
          if (from === client) {
            heldBytes += chunk.toString('latin1');
            heldFor.add(to);
          }
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
  /**
   * Resolves once Redis answered a `PING <marker>` sent on `upstream` after the commands
   * held for it: Redis runs a connection's commands in order, so those ran.
   */
  const drained = (upstream: Socket) =>
    new Promise<void>((resolve) => {
      const marker = `healed-${randomUUID()}`;
      let seen = '';
      const onData = (b: Buffer) => {
        seen += b.toString('latin1');
        if (seen.includes(marker)) done();
      };
      const done = () => {
        upstream.off('data', onData);
        upstream.off('close', done);
        resolve();
      };
      upstream.on('data', onData);
      upstream.once('close', done);
      upstream.write(`*2\r\n$4\r\nPING\r\n$${marker.length}\r\n${marker}\r\n`);
    });
  return {
    url: `redis://127.0.0.1:${(server.address() as { port: number }).port}`,
    hold() {
      held = true;
    },
    /** whether a held client → Redis write contains `text` */
    holds(text: string) {
      return heldBytes.includes(text);
    },
    /** lets the held bytes through; resolves once Redis has executed every held command */
    async heal() {
      held = false;
      heldBytes = '';
      for (const write of queued.splice(0)) write();
      const connections = [...heldFor];
      heldFor.clear();
      await Promise.all(connections.map(drained));
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
 * Fixed (regression test). Was: (src/worker/persist.ts' persist script, now src/scripts/persist-5.lua, + the processor's `save`): a JobState
 * write does not check that the writer still holds the job (BullMQ's lock), so a stale
 * copy of the job, whose write waited in its connection (partition, or ioredis' offline
 * queue during a Redis restart), overwrites the state saved by the worker that owns and
 * finished the job: BullMQ says completed, the JobState says running. The same write can
 * roll back a prompt id or a resubmission count. Fix: pass BullMQ's `token` (the
 * processor's 2nd argument) to persist, add KEYS[3] = `<job key>:lock` and
 * `if redis.call("GET", KEYS[3]) ~= ARGV[token] then return -2 end` first in that script;
 * on -2 the processor stops following (like ABORT.lockLost) without writing anything.
 * Progress has the same hole (BullMQ's `job.updateProgress` checks no lock either, so a
 * late write can also reset a finished job's progress): send it through the same
 * lock-checked script.
 */
test('a partitioned worker’s late write does not roll back a finished job', async () => {
  const a = spawnWorker({ ...sys.env, REDIS_URL: proxy.url, WORKER_NAME: 'partitioned' });
  procs.push(a);
  await a.ready;
  // keep ComfyUI busy so the job's prompt waits until the first worker is cut off
  const blocker = (await fetch(`${sys.sim.url}/prompt`, {
    method: 'POST',
    body: JSON.stringify({ prompt: sleepWorkflow(120, 'partition-blocker') }),
  }).then((r) => r.json())) as { prompt_id: string };
  const id = await sys.enqueue(sleepWorkflow(3, 'partition'));
  const job = async () => (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
  await waitFor('the first worker to submit the prompt and show its queue position', async () => {
    const j = await job();
    const queued = (j.progress as { queuePosition?: number }).queuePosition !== undefined;
    return j.data.state.status === 'submitted' && queued ? true : undefined;
  });

  proxy.hold(); // the first worker keeps following ComfyUI, but nothing it writes arrives
  // only now may the job's prompt run: its start is something the cut-off worker must write
  await fetch(`${sys.sim.url}/interrupt`, {
    method: 'POST',
    body: JSON.stringify({ prompt_id: blocker.prompt_id }),
  });
  // Its next write of the job (lock-checked, src/worker/persist.ts, the only commands that
  // name the job's `:logs` key) is held. Usually `running`; a worker starved through the
  // whole prompt may skip to its outcome, or first write a new queue position: each would
  // roll the finished job back, and the assertions below see each of them.
  await waitFor('the cut-off worker’s next write of the job (held by the partition)', () =>
    proxy.holds(`${jobKey(sys.config, id)}:logs`),
  );
  const b = spawnWorker({ ...sys.env, WORKER_NAME: 'owner' });
  procs.push(b);
  await waitFor('the second worker to take the job over and finish it', async () =>
    (await sys.queue.getJobState(id)) === 'completed' ? true : undefined,
  );
  const finished = await job();
  expect(finished.processedBy).toBe('owner');
  expect(finished.data.state.status).toBe('completed');

  // freeze the first worker, then let what it wrote while cut off reach Redis: a frozen
  // process cannot write anything newer afterwards, so Redis ends with that late write
  a.proc.kill('SIGSTOP');
  await proxy.heal();
  const progressOf = (j: Job<JobData, JobResult>) => (j.progress as { percent?: number }).percent;
  const after = await job();
  const rolledBack =
    after.data.state.status !== 'completed' || progressOf(after) !== 100 ? after : undefined;
  a.proc.kill('SIGKILL');
  console.log(
    `partition healed: BullMQ ${await sys.queue.getJobState(id)}, JobState ${after.data.state.status}, progress ${JSON.stringify(after.progress)}`,
  );
  expect(await sys.queue.getJobState(id)).toBe('completed');
  expect(rolledBack).toBeUndefined();
  expect(after.data.state.status).toBe('completed');
  expect(progressOf(after)).toBe(100);
  // nothing of the late write landed (its state, even a `completed` one, has other times)
  expect(after.data).toEqual(finished.data);
  expect(sys.sim.executions()[after.data.state.promptId!]).toBe(1);
}, 60_000);
