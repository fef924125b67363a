import { Job } from 'bullmq';
import type { Simulator } from '../src/simulator/server';
import { startSystem, type TestSystem } from './helpers/system';
import { waitFor } from './helpers/wait';
import { killAll, spawnWorker, type WorkerProcess } from './helpers/worker-process';
import { sleepWorkflow } from './helpers/workflows';
import type { JobData, JobResult } from '../src/job/data';
import type { JobProgress } from '../src/job/progress';

/**
 * A job that changes hands: its instance replaced (resubmitted elsewhere at once), or its
 * prompt followed by another worker after a SIGTERM hand-off or a SIGKILL (progress stays
 * live and never goes backwards; the end is seen from the submitter's events).
 */
let sys: TestSystem;
const procs: WorkerProcess[] = [];
/** polls rarely, so only the WebSocket can make progress and the end prompt */
const LIVE = { POLL_INTERVAL_MS: '3000', PROGRESS_STEP_PERCENT: '5', PROGRESS_INTERVAL_MS: '100' };

beforeAll(async () => {
  sys = await startSystem({}, {}, 3);
});
afterEach(async () => {
  await killAll(procs);
});
afterAll(async () => {
  await sys?.close();
});

async function job(id: string) {
  return (await Job.fromId<JobData, JobResult>(sys.queue, id))!;
}

async function finished(id: string) {
  await (await job(id)).waitUntilFinished(sys.events).catch(() => undefined);
  return job(id);
}

/**
 * The job's progress percent as stored, sampled until the job ends (repeats dropped);
 * `ended` resolves after the last sample (awaited before the test ends: a sample still
 * sleeping when the file's afterAll closes Redis would read a closed connection).
 */
function recordProgress(id: string): { seen: number[]; ended: Promise<void> } {
  const seen: number[] = [];
  const ended = (async () => {
    for (;;) {
      const j = await job(id);
      const p = (j.progress as Partial<JobProgress> | undefined)?.percent;
      if (typeof p === 'number' && p !== seen.at(-1)) seen.push(p);
      if (j.finishedOn) return;
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  return { seen, ended };
}

/** when ComfyUI says the prompt ended (its history's terminal message) */
async function promptEnd(sim: Simulator, promptId: string): Promise<number> {
  const h = (await (await fetch(`${sim.url}/history/${promptId}`)).json()) as Record<
    string,
    { status: { messages: [string, { timestamp?: number }][] } }
  >;
  const end = h[promptId].status.messages.find(([e]) => e === 'execution_success');
  return end![1].timestamp!;
}

test('an instance removed from COMFYUI_URL: the job is resubmitted on another at once', async () => {
  const [a, b, c] = sys.sims;
  const first = await sys.startWorker({ COMFYUI_URL: a.url });
  const id = await sys.enqueue(sleepWorkflow(2, 'replaced'));
  await waitFor('the prompt to run on the old instance', async () => {
    const p = (await job(id)).data.state.promptId;
    return p && a.executions()[p] ? true : undefined;
  });
  // the old instance goes away with its prompt (else, on a slow machine, the first worker
  // could see the 2 s prompt end before it closes)
  await a.pause();
  await first.close();
  const second = await sys.startWorker({ COMFYUI_URL: `${b.url},${c.url}` });
  const done = await finished(id);
  await second.close();
  await a.resume();
  expect(done.data.state).toMatchObject({ status: 'completed', resubmissions: 1 });
  expect([b.url, c.url]).toContain(done.data.state.comfyuiUrl);
  const logs = (await sys.queue.getJobLogs(id)).logs.join('\n');
  expect(logs).toContain(`instance ${a.url} is no longer in COMFYUI_URL`);
});

test.each(['SIGTERM', 'SIGKILL'] as const)(
  '%s hand-off mid-prompt: the next worker keeps the progress rising and sees the end at once',
  async (signal) => {
    const env = { ...LIVE, COMFYUI_URL: sys.sim.url };
    const holder = spawnWorker({ ...sys.env, ...env, WORKER_NAME: `holder-${signal}` });
    procs.push(holder);
    await holder.ready;
    // the EmptyImage is served from ComfyUI's cache (an earlier test ran the same one): the
    // next worker's socket never hears of it, and must still count it as done. TestSleep's
    // seconds differ per test, else the cache would end the second prompt at once
    const seconds = signal === 'SIGTERM' ? 10 : 10.1;
    const id = await sys.enqueue(sleepWorkflow(seconds, `handoff-${signal}`));
    const progress = recordProgress(id);
    await waitFor('the holder to take the job', async () =>
      (await job(id)).processedBy === `holder-${signal}` ? true : undefined,
    );
    const next = await sys.startWorker({ ...env, WORKER_NAME: `next-${signal}` });
    try {
      await handOff(id, progress, holder, signal);
    } finally {
      await next.close();
    }
  },
  90_000,
);

async function handOff(
  id: string,
  { seen, ended }: ReturnType<typeof recordProgress>,
  holder: WorkerProcess,
  signal: 'SIGTERM' | 'SIGKILL',
) {
  await waitFor('the holder to report progress', async () =>
    seen.some((p) => p >= 40) ? true : undefined,
  );
  holder.proc.kill(signal);
  await holder.exited;
  // the holder's last progress (it writes none after its hand-off or death); progress
  // events lag, so this is read from the job, and later percents are the new worker's
  const atHandoff = ((await job(id)).progress as JobProgress).percent;
  const done = await finished(id);
  await ended;
  expect(done.data.state).toMatchObject({ status: 'completed', recoveries: 1, resubmissions: 0 });
  expect(done.processedBy).toBe(`next-${signal}`);
  expect(seen).toEqual([...seen].sort((x, y) => x - y)); // never backwards
  const after = seen.filter((p) => p > atHandoff && p < 100);
  expect(after.length).toBeGreaterThanOrEqual(2); // live, and rising, under the new worker
  const end = await promptEnd(sys.sim, done.data.state.promptId!);
  const lag = done.finishedOn! - end;
  console.log(
    `${signal}: completion seen ${lag} ms after ComfyUI finished (POLL_INTERVAL_MS=${LIVE.POLL_INTERVAL_MS}); progress ${seen.join(',')}`,
  );
  expect(lag).toBeLessThanOrEqual(Number(LIVE.POLL_INTERVAL_MS));
}
