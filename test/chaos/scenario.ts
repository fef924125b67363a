import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import IORedis from 'ioredis';
import { loadConfig } from '../../src/config';
import { createImageQueue, IMAGE_JOB_NAME, type ImageJob, type ImageQueue } from '../../src/queue';
import { createSimulator, type Simulator } from '../../src/simulator/server';
import { startRedis, type RedisServer } from '../helpers/redis-server';
import { FAST_ENV } from '../helpers/system';
import { spawnWorker, type WorkerProcess } from '../helpers/worker-process';
import { startHogs, startPauser, type Pauser } from './starve';
import { createTrace } from './trace';
import { uncachedSleepWorkflow } from './workflows';
import { newJobData } from '../../src/job/data';

/**
 * The chaos scenario shared by `test/chaos.test.ts` (bounded) and `npm run chaos` (longer):
 * real worker processes SIGKILLed at random and restarted, one redis-server (AOF,
 * appendfsync everysec) SIGKILLed and restarted on its data dir, one ComfyUI simulator
 * restarted (losing its queue and history), while jobs of random length run. At the end
 * every job is checked against the invariants below; `violations` lists what broke.
 *
 * What a Redis kill may lose, and why the checks are what they are
 * ----------------------------------------------------------------
 * With `appendfsync everysec` Redis write(2)s each command to the AOF before it replies,
 * unless a background fsync is still running: then it may keep acknowledged writes in its
 * own buffer for up to 2 s. A SIGKILL of the process loses only that buffer (the kernel
 * keeps what was written); an OS crash could lose the last ~1–2 s of acknowledged writes.
 * What such a loss does here, and what the checks therefore demand:
 * - a lost `queue.add`: the job would vanish. Jobs are never added in the 3 s before a
 *   Redis kill, so "every id still exists" is demanded strictly.
 * - a lost progress/state write or a lost completion (`moveToFinished`): the job rolls
 *   back to an earlier state and is recovered through the stalled check; the worker then
 *   finds its prompt (queue or history) or its saved outcome and finishes it without a
 *   second execution. Demanded strictly: executions of a job's prompt ≤ 1 + resubmissions.
 * - a lost `status: submitting` write whose POST /prompt reached ComfyUI: the next worker
 *   sees no prompt id, picks a new one and runs the workflow a second time under an id no
 *   job refers to ("orphan prompt"). That is the one case where everysec durability can
 *   run a job twice; it needs the fsync-postponed window to coincide with a fresh pickup.
 *   The check counts orphans and reports each as a violation with this explanation; a run
 *   that shows one has found real write loss, not flakiness to be retried.
 * - a prompt executes again only after a ComfyUI restart dropped it (the simulator reports
 *   the prompts each restart dropped); demanded strictly: executions ≤ 1 + times dropped.
 * - resubmissions only happen when ComfyUI lost a prompt: only jobs on the restarted
 *   instance may have them, at most once per restart, and the Redis kill and the ComfyUI
 *   restart are kept ≥ 5 s apart so a lost write cannot hide a resubmission.
 */

export interface ChaosOptions {
  /** fixed mode: this many jobs, all enqueued at the start. @defaultValue 200 */
  jobs?: number;
  /**
   * continuous mode (`npm run chaos -- --minutes N`): keep `backlog` jobs unfinished for
   * this long, with a Redis kill and a ComfyUI restart every `disruptEveryMs`, then drain.
   */
  durationMs?: number;
  /** continuous mode: unfinished jobs kept in the queue. @defaultValue 60 */
  backlog?: number;
  /** continuous mode. @defaultValue 90_000 */
  disruptEveryMs?: number;
  /** @defaultValue 3 */
  workers?: number;
  /** @defaultValue 2 */
  simulators?: number;
  /**
   * TestSleep seconds, drawn log-uniformly (many short jobs, some long: mean ≈ 1.03 s for
   * 0.2–3 s; the simulator runs one prompt at a time, so uniform would need ≥ 160 s of pure
   * execution for 200 jobs on 2 instances). @defaultValue [0.2, 3]
   */
  sleepSeconds?: [number, number];
  /** continuous mode: a random worker is SIGKILLed (and restarted) every this many ms. @defaultValue [2000, 5000] */
  killEveryMs?: [number, number];
  /**
   * fixed mode: this many worker SIGKILLs (and restarts), paced by progress: the k-th when
   * k/(kills+1) of the jobs are finished. @defaultValue jobs / 8
   */
  kills?: number;
  /**
   * fixed mode: this many worker SIGSTOPs, paced by progress like the kills (one worker
   * stopped at a time: a pause waits for the one before to end). @defaultValue 0
   */
  pauses?: number;
  /** busy child processes competing for the CPU (test/chaos/starve.ts). @defaultValue 0 */
  hogs?: number;
  /** continuous mode: a random worker is SIGSTOPped this often, unless one is; none when unset */
  pauseEveryMs?: [number, number];
  /** how long a paused worker stays stopped. @defaultValue [1000, 15000] */
  pauseMs?: [number, number];
  /** how long redis-server stays down. @defaultValue [1000, 3000] */
  redisDownMs?: [number, number];
  /** ComfyUI execution_error probability, so real failures flow through the chaos too. @defaultValue 0.02 */
  failureRate?: number;
  /** WORKER_CONCURRENCY (per ComfyUI instance, per worker process). @defaultValue 10 */
  workerConcurrency?: number;
  /** failure codes a job may legitimately end with. @defaultValue ['execution_error'] */
  legitimateCodes?: string[];
  /** @defaultValue random */
  seed?: number;
  /** the run stops and reports what is unfinished after this long. @defaultValue 170_000 */
  deadlineMs?: number;
  log?: (line: string) => void;
}

export interface JobRecord {
  id: string;
  bullState: string;
  status?: string;
  code?: string;
  promptId?: string;
  comfyuiUrl?: string;
  executions: number;
  attempts: number;
  recoveries: number;
  resubmissions: number;
  /** pending prompts moved to an idle instance (a resubmission may precede a move) */
  moves: number;
  stalledCounter: number;
  attemptsMade: number;
  outputs: number;
  /** first line of each failed attempt's error (BullMQ's stacktrace list) */
  attemptErrors: string[];
}

export interface ChaosReport {
  seed: number;
  mode: 'fixed' | 'continuous';
  elapsedMs: number;
  workers: number;
  simulators: number;
  enqueued: number;
  jobs: JobRecord[];
  workerKills: number;
  workerPauses: number;
  longestPauseMs: number;
  /** the longest event-loop delay of the process running the simulators (ms) */
  maxLagMs: number;
  hogs: number;
  workerStarts: number;
  redisRestarts: { atMs: number; downMs: number; delayedFsync: string; pendingFsync: string }[];
  /** each ComfyUI restart, with the ids of the prompts it dropped (queue and history) */
  simRestarts: { atMs: number; url: string; promptsLost: number; lost: string[] }[];
  orphanPrompts: { promptId: string; executions: number }[];
  /** the workers' warn/error lines (and any non-JSON output) by message, over every process */
  workerWarnings: Record<string, number>;
  counts: Record<string, number>;
  violations: string[];
}

/** mulberry32: a small seeded PRNG, so a run's choices can be replayed with its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const STALLED_REASON = /stalled more than allowable limit/i;

/**
 * The errors a retried attempt may fail with under this chaos (each is transient, and its
 * retry must keep the prompt): ComfyUI unreachable while it restarts (also while outputs are
 * copied from it), Redis gone while it
 * restarts, a lock lost to a worker that took the job over, a starved worker that could not
 * prove a fresh lock before its POST (nothing was sent). Any other attempt error (a
 * TypeError, an unclassified reply…) is a bug that retries would otherwise hide.
 */
const TRANSIENT_ATTEMPT_ERROR =
  /^(ComfyUnreachableError: |MediaError: could not copy output .*: ComfyUI \S+ (is unreachable|did not answer)|FenceError: .* proofs of its lock in a row were stale|ComfyHttpError: .* answered 5\d\d |Error: stopped following job .*lock was lost|Error: Connection is closed|Error: .*(ECONNREFUSED|ECONNRESET|EPIPE)|Error: Missing lock for job)/;

export function errorCodeOf(failedReason: string | undefined): string | undefined {
  if (!failedReason) return undefined;
  if (STALLED_REASON.test(failedReason)) return 'stalled';
  return /^([a-z_]+): /.exec(failedReason)?.[1] ?? `unclassified (${failedReason.slice(0, 120)})`;
}

function parseInfo(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split(/\r?\n/)
      .filter((l) => l.includes(':') && !l.startsWith('#'))
      .map((l) => l.split(':', 2) as [string, string]),
  );
}

export async function runChaos(options: ChaosOptions = {}): Promise<ChaosReport> {
  const o = {
    jobs: 200,
    backlog: 60,
    disruptEveryMs: 90_000,
    workers: 3,
    simulators: 2,
    sleepSeconds: [0.2, 3] as [number, number],
    killEveryMs: [2_000, 5_000] as [number, number],
    kills: Math.round((options.jobs ?? 200) / 8),
    pauses: 0,
    hogs: 0,
    pauseMs: [1_000, 15_000] as [number, number],
    redisDownMs: [1_000, 3_000] as [number, number],
    failureRate: 0.02,
    workerConcurrency: 10,
    legitimateCodes: ['execution_error'],
    seed: Math.floor(Math.random() * 2 ** 31),
    deadlineMs: 170_000,
    log: (line: string) => console.log(line),
    ...(Object.fromEntries(
      Object.entries(options).filter(([, v]) => v !== undefined),
    ) as ChaosOptions),
  };
  const continuous = o.durationMs !== undefined;
  const rand = prng(o.seed);
  const between = ([lo, hi]: [number, number]) => lo + rand() * (hi - lo);
  const logUniform = ([lo, hi]: [number, number]) => lo * Math.exp(rand() * Math.log(hi / lo));
  const started = Date.now();
  const since = () => Date.now() - started;
  const log = (line: string) => o.log(`[chaos +${(since() / 1000).toFixed(1)}s] ${line}`);
  const violations: string[] = [];

  const closers: Array<() => Promise<unknown>> = [];
  const closeAll = async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
  };

  const report: ChaosReport = {
    seed: o.seed,
    mode: continuous ? 'continuous' : 'fixed',
    elapsedMs: 0,
    workers: o.workers,
    simulators: o.simulators,
    enqueued: 0,
    jobs: [],
    workerKills: 0,
    workerPauses: 0,
    longestPauseMs: 0,
    maxLagMs: 0,
    hogs: o.hogs,
    workerStarts: 0,
    redisRestarts: [],
    simRestarts: [],
    orphanPrompts: [],
    workerWarnings: {},
    counts: {},
    violations,
  };

  const trace = createTrace();
  closers.push(async () => trace.stop());
  try {
    const redis: RedisServer = await startRedis();
    closers.push(() => redis.stop());
    const sims: Simulator[] = [];
    for (let i = 0; i < o.simulators; i++) {
      const sim = await createSimulator({
        progressIntervalMs: 100,
        failureRate: o.failureRate,
        logger: trace.simLogger(i),
      });
      sims.push(sim);
      closers.push(() => sim.close());
    }
    const env: Record<string, string> = {
      ...FAST_ENV,
      LOG_LEVEL: 'info',
      REDIS_URL: redis.url,
      COMFYUI_URL: sims.map((s) => s.url).join(','),
      QUEUE_NAME: `chaos-${randomBytes(4).toString('hex')}`,
      WORKER_CONCURRENCY: String(o.workerConcurrency),
      POLL_INTERVAL_MS: '250',
      // generous, so that nothing legitimate fails: the chaos must be survived, not reported
      MAX_STALLED_COUNT: '1000',
      JOB_ATTEMPTS: '50',
      RETRY_BACKOFF_MS: '100',
      // The simulators share this process, and the workers share the cores with the hogs:
      // under starvation FAST_ENV's 2 s lock and 2 s ComfyUI timeout turn every scheduling
      // delay into a take-over or a retry (measured at load 20: 2 of 40 jobs finished in
      // 55 s, 106 recoveries, 108 failed attempts), a livelock, not a test of fencing.
      // The SIGSTOP pauses (1-15 s) still outlast these locks. Production: 10 s and 10 s.
      LOCK_DURATION_MS: '4000',
      COMFYUI_TIMEOUT_MS: '5000',
      RECOVERY_CUTOFF_MS: '3600000',
      SHUTDOWN_TIMEOUT_MS: '5000',
    };
    const config = loadConfig(env);
    const queue: ImageQueue = createImageQueue(config);
    queue.on('error', () => undefined); // Redis is killed on purpose
    closers.push(() => queue.close().catch(() => queue.disconnect()));
    await queue.waitUntilReady();
    const admin = new IORedis(redis.url, { maxRetriesPerRequest: 1, lazyConnect: true });
    admin.on('error', () => undefined);
    closers.push(async () => admin.disconnect());
    log(
      `seed ${o.seed}: ${continuous ? `${Math.round(o.durationMs! / 1000)} s continuous` : `${o.jobs} jobs`}, ` +
        `${o.workers} workers × concurrency ${o.workerConcurrency}/instance, ${o.simulators} ComfyUI, redis ${redis.url}`,
    );

    const collectWarnings = (output: string) => {
      for (const line of output.split('\n')) {
        if (!line.trim()) continue;
        let key: string;
        try {
          const l = JSON.parse(line) as { level: number; msg: string; err?: unknown };
          if (l.level < 40) continue;
          // pino serializes an Error as an object with its message
          const err = typeof l.err === 'object' ? (l.err as { message?: unknown })?.message : l.err;
          key = `${l.level >= 50 ? 'error' : 'warn'}: ${l.msg}${err ? ` (${String(err).slice(0, 80)})` : ''}`;
        } catch {
          key = `output: ${line.slice(0, 120)}`; // a partial line of a killed process, a stack, a console.warn
        }
        report.workerWarnings[key] = (report.workerWarnings[key] ?? 0) + 1;
      }
    };

    // ---- workers, and the killer that SIGKILLs one (every 2–5 s, or paced by progress) and restarts it
    const slots: WorkerProcess[] = [];
    /** workers that logged ready: only they are killed or paused (a booting one holds no job) */
    const isReady = new WeakSet<WorkerProcess>();
    const workerNames = new Map<WorkerProcess, string>();
    const generation: number[] = [];
    const spawn = (slot: number) => {
      generation[slot] = (generation[slot] ?? 0) + 1;
      const w = spawnWorker({ ...env, WORKER_NAME: `w${slot}.${generation[slot]}` });
      // killed before it was ready: expected here
      w.ready.then(
        () => isReady.add(w),
        () => undefined,
      );
      const name = `w${slot}.${generation[slot]}`;
      void w.exited.then(() => {
        collectWarnings(w.output());
        trace.addWorkerOutput(name, w.output());
      });
      workerNames.set(w, name);
      slots[slot] = w;
      report.workerStarts++;
    };
    closers.push(async () => {
      await Promise.all(
        slots.map(async (w) => {
          if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGKILL');
          await w.exited;
        }),
      );
    });
    for (let i = 0; i < o.workers; i++) spawn(i);
    await Promise.all(slots.map((w) => w.ready));
    log('workers ready');

    // ---- starvation: CPU hogs, and workers SIGSTOPped for seconds (test/chaos/starve.ts)
    const hogs = startHogs(o.hogs);
    closers.push(() => hogs.stop());
    const pauser: Pauser | undefined = (continuous ? o.pauseEveryMs : o.pauses > 0)
      ? startPauser({
          slots: () => slots.filter((w) => isReady.has(w)),
          everyMs: continuous ? o.pauseEveryMs : undefined,
          pauseMs: o.pauseMs,
          between,
          pickSlot: (n) => Math.floor(rand() * n),
          log,
        })
      : undefined;
    closers.push(async () => pauser?.stop());

    const stop = new AbortController();
    const pause = (ms: number) =>
      delay(ms, undefined, { signal: stop.signal }).then(
        () => true,
        () => false,
      );
    /** SIGKILLs a random ready worker (a paused one too) and starts its successor */
    const killOne = async (): Promise<boolean> => {
      const ready = slots.map((w, slot) => ({ w, slot })).filter(({ w }) => isReady.has(w));
      const victim = ready[Math.floor(rand() * ready.length)];
      if (!victim) return false; // all are starting: the next tick or interval tries again
      victim.w.proc.kill('SIGKILL');
      await victim.w.exited;
      report.workerKills++;
      spawn(victim.slot);
      return true;
    };
    const killer = (async () => {
      if (!continuous) return; // the bounded run paces its kills by progress, below
      while (await pause(between(o.killEveryMs))) await killOne();
    })();

    // ---- jobs
    const ids: string[] = [];
    let lastAddAt = 0;
    let n = 0;
    const enqueue = async (count: number) => {
      const batch = Array.from({ length: count }, () => {
        n += 1;
        const seconds = Math.round(logUniform(o.sleepSeconds) * 100) / 100;
        return {
          name: IMAGE_JOB_NAME,
          data: newJobData(
            uncachedSleepWorkflow(seconds, `chaos-${n}`, n),
            { jobType: 'chaos' },
            Date.now(),
          ),
        };
      });
      const added = await queue.addBulk(batch);
      ids.push(...added.map((j) => j.id!));
      lastAddAt = Date.now();
      report.enqueued = ids.length;
    };

    // ---- disruptions
    let redisBackAt = 0;
    let simRestartedAt = 0;
    const restartRedis = async () => {
      const info = parseInfo(await admin.info('persistence').catch(() => ''));
      const downMs = Math.round(between(o.redisDownMs));
      log(`redis-server SIGKILL (down ${downMs} ms; aof_delayed_fsync=${info.aof_delayed_fsync})`);
      const atMs = since();
      await redis.kill();
      await delay(downMs);
      await redis.start();
      redisBackAt = Date.now();
      log('redis-server restarted on its data dir (AOF replayed)');
      report.redisRestarts.push({
        atMs,
        downMs,
        delayedFsync: info.aof_delayed_fsync ?? '?',
        pendingFsync: info.aof_pending_bio_fsync ?? '?',
      });
    };
    let nextSim = Math.floor(rand() * o.simulators);
    const restartSim = async () => {
      const sim = sims[nextSim];
      nextSim = (nextSim + 1) % o.simulators;
      const atMs = since();
      const lost = await sim.restart();
      simRestartedAt = Date.now();
      log(`ComfyUI ${sim.url} restart: lost ${lost.length} prompts (queue and history)`);
      report.simRestarts.push({ atMs, url: sim.url, promptsLost: lost.length, lost });
    };

    // ---- the run: fixed (all jobs up front, disruptions by progress) or continuous
    // from the moment the workers are ready: starting them (tsx) is not under test
    const deadline = Date.now() + o.deadlineMs;
    const produceUntil = continuous ? started + o.durationMs! : 0;
    // The bounded run holds its last jobs back until every planned disruption has started,
    // so that it cannot end before them (a fast machine once finished with 4 of 5 kills
    // done) and each one meets jobs in flight.
    const heldBack = continuous ? 0 : Math.min(4, Math.floor(o.jobs / 4));
    if (!continuous) await enqueue(o.jobs - heldBack);
    let pausesStarted = 0;
    let finished = 0;
    let unfinished = ids.length;
    let nextDisruption = started + o.disruptEveryMs / 2;
    let disruptRedisNext = true;
    let lastLog = 0;
    for (;;) {
      const counts = await queue.getJobCounts().catch(() => undefined);
      if (counts) {
        finished = counts.completed + counts.failed;
        unfinished = ids.length - finished;
      }
      const now = Date.now();
      if (now - lastLog >= 10_000) {
        lastLog = now;
        log(
          `finished ${finished}/${ids.length}, active ${counts?.active ?? '?'}, ` +
            `waiting ${counts?.waiting ?? '?'}, kills ${report.workerKills}`,
        );
      }
      if (continuous) {
        const producing = now < produceUntil;
        // never add jobs in the 3 s before a Redis kill (see the note at the top)
        if (producing && unfinished < o.backlog && nextDisruption - now > 3_000 && counts) {
          await enqueue(o.backlog - unfinished).catch(() => undefined);
        }
        if (producing && now >= nextDisruption && now - lastAddAt >= 3_000) {
          if (disruptRedisNext && now - simRestartedAt >= 5_000) await restartRedis();
          else if (!disruptRedisNext && now - redisBackAt >= 5_000) await restartSim();
          disruptRedisNext = !disruptRedisNext;
          nextDisruption = Date.now() + o.disruptEveryMs / 2;
        }
        if (!producing && counts && finished >= ids.length) break;
      } else {
        const total = o.jobs;
        if (
          report.workerKills < o.kills &&
          finished >= ((report.workerKills + 1) * total) / (o.kills + 1)
        )
          await killOne();
        if (
          pausesStarted < o.pauses &&
          finished >= ((pausesStarted + 0.5) * total) / (o.pauses + 1)
        )
          if (pauser?.pauseOne()) pausesStarted++;
        const disruptionsDone =
          report.workerKills >= o.kills &&
          pausesStarted >= o.pauses &&
          report.redisRestarts.length > 0 &&
          report.simRestarts.length > 0;
        if (ids.length < total && disruptionsDone) {
          await enqueue(total - ids.length);
        }
        if (
          report.redisRestarts.length === 0 &&
          finished >= 0.3 * total &&
          now - lastAddAt >= 3_000
        )
          await restartRedis();
        else if (
          report.simRestarts.length === 0 &&
          report.redisRestarts.length > 0 &&
          finished >= 0.6 * total &&
          now - redisBackAt >= 5_000
        )
          await restartSim();
        if (counts && finished >= total && disruptionsDone) break;
      }
      if (now > deadline) {
        violations.push(
          `not finished within ${o.deadlineMs} ms: ${finished}/${ids.length} jobs terminal`,
        );
        break;
      }
      await delay(250);
    }
    stop.abort();
    await killer;
    if (pauser) {
      const p = await pauser.stop();
      report.workerPauses = p.pauses;
      report.longestPauseMs = p.longestMs;
    }
    log(`done: ${finished}/${ids.length} terminal; checking every job`);
    report.maxLagMs = trace.maxLagMs();
    for (const w of slots) trace.addWorkerOutput(workerNames.get(w)!, w.output());

    // ---- the checks
    const executions: Record<string, number> = {};
    for (const sim of sims) Object.assign(executions, sim.executions());
    const executionsOf = (promptId: string) =>
      sims.reduce((n, sim) => n + (sim.executions()[promptId] ?? 0), 0);
    const restartsOf = (url: string | undefined) =>
      report.simRestarts.filter((r) => r.url === url).length;
    /** how many times a ComfyUI restart dropped this prompt (the simulator's own record) */
    const timesLost = (promptId: string) =>
      report.simRestarts.filter((r) => r.lost.includes(promptId)).length;
    const referenced = new Set<string>();
    for (const id of ids) {
      const job = (await queue.getJob(id)) as ImageJob | undefined;
      if (!job) {
        violations.push(`job ${id} was lost: it no longer exists in Redis`);
        continue;
      }
      const bullState = await job.getState();
      const s = job.data.state;
      const code = bullState === 'failed' ? errorCodeOf(job.failedReason) : undefined;
      const rec: JobRecord = {
        id,
        bullState,
        status: s?.status,
        code,
        promptId: s?.promptId,
        comfyuiUrl: s?.comfyuiUrl,
        // read after the job: a job seen finished was executed before this read
        executions: s?.promptId ? executionsOf(s.promptId) : 0,
        attempts: s?.attempts ?? 0,
        recoveries: s?.recoveries ?? 0,
        resubmissions: s?.resubmissions ?? 0,
        moves: s?.moves ?? 0,
        stalledCounter: job.stalledCounter ?? 0,
        attemptsMade: job.attemptsMade,
        outputs: job.returnvalue?.outputs?.length ?? 0,
        attemptErrors: (job.stacktrace ?? []).map((t) => String(t).split('\n')[0]),
      };
      report.jobs.push(rec);
      if (rec.promptId) referenced.add(rec.promptId);
      const where = `job ${id} (prompt ${rec.promptId ?? '-'})`;
      if (bullState !== 'completed' && bullState !== 'failed') {
        violations.push(
          `${where} is not terminal: BullMQ state ${bullState}, status ${rec.status}`,
        );
        continue;
      }
      const settledAs = bullState === 'completed' ? ['completed'] : ['failed', 'cancelled'];
      if (!settledAs.includes(rec.status ?? '')) {
        // e.g. a stale worker's late write rolled it back (test/faults-partition.test.ts)
        violations.push(`${where} is ${bullState} in BullMQ but its JobState says ${rec.status}`);
      }
      if (bullState === 'completed') {
        if (rec.outputs < 1) violations.push(`${where} completed without outputs`);
      } else if (!o.legitimateCodes.includes(code ?? '')) {
        violations.push(`${where} failed with an illegitimate reason: ${job.failedReason}`);
      }
      for (const e of rec.attemptErrors) {
        // the final attempt's error is the job's failure (its stack is its reason)
        const final =
          bullState === 'failed' &&
          (e.startsWith(`${code}: `) || e.startsWith(`JobFailure: ${code}: `));
        if (!final && !TRANSIENT_ATTEMPT_ERROR.test(e))
          violations.push(`${where}: an attempt failed with an unexpected error: ${e}`);
      }
      if (rec.executions < 1)
        violations.push(`${where} ended ${bullState} but ComfyUI never executed its prompt`);
      // a second execution is right only after ComfyUI dropped the prompt (a restart). The
      // simulator's record of what it dropped is the measure, not the job's `resubmissions`:
      // a worker that takes over a `submitting` job whose holder's POST was accepted, then
      // dropped by a restart before the holder saw it queued, cannot tell that prompt from
      // one that never arrived, and submits it without counting a resubmission
      const lost = rec.promptId ? timesLost(rec.promptId) : 0;
      if (rec.executions > 1 + lost)
        violations.push(
          [
            `${where} executed ${rec.executions} times; ComfyUI dropped it ${lost} time(s) (resubmissions ${rec.resubmissions}):`,
            ...trace.explain(id, rec.promptId!, started),
          ].join('\n'),
        );
      // a prompt resubmitted after its instance restarted may then have moved to another
      // (it waited there while this one idled): then any instance's restart counts
      const restarts = rec.moves > 0 ? report.simRestarts.length : restartsOf(rec.comfyuiUrl);
      if (rec.resubmissions > restarts)
        violations.push(
          `${where} was resubmitted ${rec.resubmissions} time(s), but its instance ${rec.comfyuiUrl} restarted ${restartsOf(rec.comfyuiUrl)} time(s) (moves: ${rec.moves})`,
        );
    }
    for (const [promptId, count] of Object.entries(executions)) {
      if (referenced.has(promptId)) continue;
      report.orphanPrompts.push({ promptId, executions: count });
      violations.push(
        `orphan prompt ${promptId} (executed ${count}×) belongs to no job: a job ran under a second prompt id, i.e. its "submitting" write was lost (Redis write loss; see the note in test/chaos/scenario.ts)`,
      );
    }
    report.counts = (await queue.getJobCounts()) as Record<string, number>;
    for (const state of ['active', 'waiting', 'delayed', 'prioritized', 'waiting-children']) {
      if (report.counts[state]) violations.push(`${report.counts[state]} job(s) left ${state}`);
    }
    await queue.obliterate({ force: true }).catch(() => undefined);
  } finally {
    report.elapsedMs = since();
    await closeAll();
  }
  return report;
}

/** The end-of-run table. */
export function formatSummary(r: ChaosReport): string {
  const completed = r.jobs.filter((j) => j.bullState === 'completed').length;
  const failed = r.jobs.filter((j) => j.bullState === 'failed');
  const byCode = new Map<string, number>();
  for (const j of failed) byCode.set(j.code ?? '?', (byCode.get(j.code ?? '?') ?? 0) + 1);
  const execHist = new Map<number, number>();
  for (const j of r.jobs) execHist.set(j.executions, (execHist.get(j.executions) ?? 0) + 1);
  const sum = (f: (j: JobRecord) => number) => r.jobs.reduce((a, j) => a + f(j), 0);
  const max = (f: (j: JobRecord) => number) => r.jobs.reduce((a, j) => Math.max(a, f(j)), 0);
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const rows: [string, string][] = [
    ['seed / mode', `${r.seed} / ${r.mode}`],
    ['elapsed', s(r.elapsedMs)],
    ['jobs enqueued', String(r.enqueued)],
    ['jobs checked', String(r.jobs.length)],
    ['completed', String(completed)],
    [
      'failed',
      `${failed.length}${byCode.size ? ` (${[...byCode].map(([c, k]) => `${c} ${k}`).join(', ')})` : ''}`,
    ],
    [
      'executions per job',
      [...execHist]
        .sort(([a], [b]) => a - b)
        .map(([e, k]) => `${e}×: ${k}`)
        .join(', '),
    ],
    [
      'resubmissions',
      `${sum((j) => j.resubmissions)} (jobs: ${r.jobs.filter((j) => j.resubmissions > 0).length})`,
    ],
    ['recoveries', `${sum((j) => j.recoveries)} (max per job ${max((j) => j.recoveries)})`],
    [
      'BullMQ stalls',
      `${sum((j) => j.stalledCounter)} (max per job ${max((j) => j.stalledCounter)})`,
    ],
    // attemptsMade counts every finished attempt, the last one included
    ['attempts failed and retried', String(sum((j) => Math.max(0, j.attemptsMade - 1)))],
    [
      'failed attempt errors',
      [...new Set(r.jobs.flatMap((j) => j.attemptErrors))]
        .map(
          (e) =>
            `"${e.slice(0, 160)}" ×${r.jobs.filter((j) => j.attemptErrors.includes(e)).length}`,
        )
        .join('; ') || '-',
    ],
    ['worker SIGKILLs', `${r.workerKills} (${r.workerStarts} worker processes started)`],
    [
      'starvation',
      `${r.hogs} CPU hogs; ${r.workerPauses} worker SIGSTOPs (longest ${s(r.longestPauseMs)}); simulators' event loop up to ${r.maxLagMs} ms late`,
    ],
    [
      'redis-server kills',
      r.redisRestarts
        .map(
          (x) =>
            `at ${s(x.atMs)}, down ${x.downMs} ms (aof_delayed_fsync ${x.delayedFsync}, pending fsync ${x.pendingFsync})`,
        )
        .join('; ') || '0',
    ],
    [
      'ComfyUI restarts',
      r.simRestarts.map((x) => `at ${s(x.atMs)}, ${x.promptsLost} prompts lost`).join('; ') || '0',
    ],
    ['orphan prompts', String(r.orphanPrompts.length)],
    [
      'worker warn/error lines',
      Object.entries(r.workerWarnings)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 8)
        .map(([m, k], i) => `${i ? '\n' + ' '.repeat(31) : ''}${String(k).padStart(5)}  ${m}`)
        .join('') || '-',
    ],
    [
      'left unfinished',
      String(r.jobs.filter((j) => !['completed', 'failed'].includes(j.bullState)).length),
    ],
    ['violations', r.violations.length ? String(r.violations.length) : 'none'],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`);
  const shown = [...r.violations.slice(0, 20).map((v) => `  ! ${v}`)];
  if (r.violations.length > 20) shown.push(`  ! … and ${r.violations.length - 20} more`);
  return ['chaos summary', ...lines, ...shown].join('\n');
}
