/**
 * Latency of one job at a time, with the real processes (API, worker, simulator) and
 * default settings:
 *
 * - overhead per job: POST /v1/jobs → completed (BullMQ `finishedOn`), minus the prompt's own
 *   time in the simulator (execution_start → execution_success of its history entry), with
 *   the breakdown: HTTP answer, pickup, until the prompt starts, after it ends;
 * - completion detection: the simulator's execution_success → the job completed, for a
 *   worker whose WebSocket is healthy and one that only polls (COMFYUI_WEBSOCKET=0), with
 *   prompts of 0.3–1.3 s (the worker is waiting when they end, at a random poll phase).
 *   The polling series runs beside the overhead series, on its own simulator (it mostly
 *   sleeps); the WebSocket series after them.
 */
import { loadConfig } from '../src/config';
import { jobKey } from '../src/queue';
import {
  fmt,
  fmtMs,
  sizedWorkflow,
  sleepingWorkflow,
  startApi,
  startRedis,
  startSimulator,
  startWorker,
  summarize,
  uniqueName,
  waitUntil,
} from './lib';
import type { BenchRedis, Figure, Row, SimProcess, Summary } from './lib';
import type { Workflow } from '../src/job/data';

export interface JobTimes {
  id: string;
  /** just before the POST */
  sent: number;
  /** POST answered */
  answered: number;
  enqueued: number;
  picked: number;
  promptStart: number;
  promptEnd: number;
  finished: number;
}

export const latency: Figure = async (ctx, scope) => {
  const nOverhead = ctx.quick ? 20 : 60;
  const nDetect = ctx.quick ? 10 : 30;
  const nPoll = ctx.quick ? 10 : 25;
  // a series stops early when this has passed (a missed wake-up costs a 5 s poll per job)
  const withinMs = ctx.quick ? 20_000 : 90_000;
  const redis = await startRedis(scope);
  const [simA, simB] = await Promise.all([
    startSimulator(scope, { name: 'simulator-ws' }),
    startSimulator(scope, { name: 'simulator-poll' }),
  ]);
  const wsEnv = redis.env('lat-ws', { COMFYUI_URL: simA.url });
  const pollEnv = redis.env('lat-poll', { COMFYUI_URL: simB.url, COMFYUI_WEBSOCKET: '0' });
  const [apiWs, apiPoll] = await Promise.all([
    startApi(scope, 'api-ws', wsEnv),
    startApi(scope, 'api-poll', pollEnv),
    startWorker(scope, 'lat-worker-ws', wsEnv),
    startWorker(scope, 'lat-worker-poll', pollEnv),
  ]);
  const { queuePrefix, pollIntervalMs } = loadConfig(pollEnv);
  const key = (queue: string, id: string) => jobKey({ queuePrefix, queueName: queue }, id);

  // warm-up: the first job pays for connections and JIT
  await runJob(redis, apiWs.url, simA, key, 'lat-ws', instant());

  ctx.log('  latency: overhead series, and the polling-only series beside it');
  // overhead: instant prompts, one at a time; meanwhile the polling worker's series, which
  // mostly sleeps (one poll a second), on its own simulator
  const [overhead, poll] = await Promise.all([
    series(nOverhead, withinMs, () => runJob(redis, apiWs.url, simA, key, 'lat-ws', instant())),
    series(nPoll, withinMs, () => runJob(redis, apiPoll.url, simB, key, 'lat-poll', sleepy())),
  ]);
  ctx.log('  latency: completion detection series (WebSocket)');
  // completion detection: prompts of 0.3–1.3 s, so the worker is waiting when they end
  const ws = await series(nDetect, withinMs, () =>
    runJob(redis, apiWs.url, simA, key, 'lat-ws', sleepy()),
  );

  const own = (t: JobTimes) => t.finished - t.sent - (t.promptEnd - t.promptStart);
  const ov = summarize(overhead.map(own));
  // the same without the jobs whose end was noticed only by a later poll
  const ovOnTime = summarize(overhead.filter((t) => t.finished - t.promptEnd <= 1_000).map(own));
  const part = (f: (t: JobTimes) => number) => summarize(overhead.map(f));
  const breakdown = {
    httpAnswer: part((t) => t.answered - t.sent),
    pickup: part((t) => t.picked - t.enqueued),
    pickedToPromptStart: part((t) => t.promptStart - t.picked),
    prompt: part((t) => t.promptEnd - t.promptStart),
    promptEndToCompleted: part((t) => t.finished - t.promptEnd),
  };
  const detectWs = summarize(ws.map((t) => t.finished - t.promptEnd));
  const detectPoll = summarize(poll.map((t) => t.finished - t.promptEnd));
  const detectInstant = breakdown.promptEndToCompleted;
  const p = (s: Summary) => `p50 ${fmtMs(s.p50)}, p99 ${fmtMs(s.p99)}`;
  /** jobs whose end was noticed only by the next slow poll (a missed WebSocket wake-up) */
  const missed = (times: JobTimes[]) =>
    `${times.filter((t) => t.finished - t.promptEnd > 1_000).length} of ${times.length}`;
  const rows: Row[] = [
    {
      id: 'overhead',
      figure: 'overhead per job (POST → completed − prompt time)',
      value: `${p(ov)} (n=${ov.n})`,
      target: 'p50 ≤ 15 ms, p99 printed',
      met: ov.p50 <= 15,
      data: { overhead: ov, onTime: ovOnTime, breakdown },
      note: `${missed(overhead)} jobs noticed their end > 1 s late (the others: ${p(ovOnTime)}); p50 breakdown: HTTP answer ${fmtMs(breakdown.httpAnswer.p50)}, pickup ${fmtMs(breakdown.pickup.p50)}, picked → prompt starts ${fmtMs(breakdown.pickedToPromptStart.p50)}, prompt ends → completed ${fmtMs(breakdown.promptEndToCompleted.p50)} (prompt itself ${fmtMs(breakdown.prompt.p50)})`,
    },
    {
      id: 'detect-ws',
      figure: 'completion detection, WebSocket healthy (0.3–1.3 s prompts)',
      value: `${p(detectWs)} (n=${detectWs.n})`,
      target: 'p50 ≤ 10 ms',
      met: detectWs.p50 <= 10,
      data: { detectWs, instantPrompts: detectInstant },
      note: `${missed(ws)} jobs noticed their end > 1 s late; with instant prompts (overhead series): ${p(detectInstant)}`,
    },
    {
      id: 'detect-poll',
      figure: 'completion detection, polling only (0.3–1.3 s prompts)',
      value: `${p(detectPoll)} (n=${detectPoll.n})`,
      target: `p50 ≤ poll interval (${pollIntervalMs} ms)`,
      met: detectPoll.p50 <= pollIntervalMs,
      data: { detectPoll, max: fmt(detectPoll.max) },
    },
  ];
  return rows;

  function instant(): Workflow {
    return sizedWorkflow(0, uniqueName('lat'));
  }
  /** 0.3–1.3 s, so prompts end at a random phase of the worker's poll cycle */
  function sleepy(): Workflow {
    return sleepingWorkflow(Math.round(30 + Math.random() * 100) / 100, 'det');
  }
};

/** `n` runs one after the other, or fewer if `withinMs` has passed (at least 5). */
async function series<T>(n: number, withinMs: number, fn: () => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  const deadline = Date.now() + withinMs;
  for (let i = 0; i < n && (i < 5 || Date.now() < deadline); i++) out.push(await fn());
  return out;
}

/** POSTs one job, waits until BullMQ marks it finished, reads every instant of its life. */
export async function runJob(
  redis: BenchRedis,
  apiUrl: string,
  sim: SimProcess,
  key: (queue: string, id: string) => string,
  queue: string,
  workflow: Workflow,
  /** more fields of the request body (e.g. `inputs`) */
  extra: Record<string, unknown> = {},
): Promise<JobTimes> {
  const sent = Date.now();
  const res = await fetch(`${apiUrl}/v1/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ workflow, jobType: 'bench', ...extra }),
    signal: AbortSignal.timeout(10_000),
  });
  const answered = Date.now();
  const body = (await res.json()) as { id?: string };
  if (res.status !== 202 || !body.id) throw new Error(`POST /v1/jobs answered ${res.status}`);
  const k = key(queue, body.id);
  const finished = await waitUntil(
    `job ${body.id} finished`,
    30_000,
    async () => {
      const v = await redis.client.hget(k, 'finishedOn');
      return v ? Number(v) : undefined;
    },
    2,
  );
  const [timestamp, processedOn, failedReason, data] = await redis.client.hmget(
    k,
    'timestamp',
    'processedOn',
    'failedReason',
    'data',
  );
  if (failedReason) throw new Error(`job ${body.id} failed: ${failedReason}`);
  const promptId = (JSON.parse(data ?? '{}') as { state?: { promptId?: string } }).state?.promptId;
  const timing = promptId
    ? await waitUntil(`history of ${promptId}`, 5_000, () => sim.timing(promptId))
    : undefined;
  if (!timing) throw new Error(`job ${body.id} has no prompt in the simulator`);
  return {
    id: body.id,
    sent,
    answered,
    enqueued: Number(timestamp),
    picked: Number(processedOn),
    promptStart: timing.start,
    promptEnd: timing.end,
    finished,
  };
}
