import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import IORedis from 'ioredis';
import { loadConfig } from '../../src/config';
import { createImageQueue, IMAGE_JOB_NAME, type ImageJob } from '../../src/queue';
import { createSimulator, type Simulator } from '../../src/simulator/server';
import { startRedis } from '../helpers/redis-server';
import { spawnWorker, type WorkerProcess } from '../helpers/worker-process';
import { uncachedSleepWorkflow } from './workflows';
import { newJobData } from '../../src/job/data';

/**
 * Many jobs in flight at once on ONE worker process: `jobs` long jobs across `instances`
 * ComfyUI simulators with WORKER_CONCURRENCY = jobs / instances, so every job is taken at
 * once and sits in a ComfyUI queue while the simulators (one prompt at a time each) work
 * through them. Production timing settings (poll 1 s, lock 15 s, …). Measures the worker's
 * RSS and the commands Redis processed per minute; checks that every job completes, each
 * prompt ran once, and that no job waited for a worker slot (nothing starves).
 */

export interface ManyOptions {
  /** @defaultValue 1000 */
  jobs?: number;
  /** @defaultValue 10 */
  instances?: number;
  /** TestSleep seconds of each job. @defaultValue 0.4 */
  sleepSeconds?: number;
  /** @defaultValue 150_000 */
  deadlineMs?: number;
  log?: (line: string) => void;
}

export interface ManyReport {
  jobs: number;
  instances: number;
  concurrency: number;
  elapsedMs: number;
  /** from the first add until every job was active (taken by the worker) */
  allTakenMs?: number;
  /** jobs already completed when every job had been taken (a count, not a time) */
  completedWhenAllTaken?: number;
  completed: number;
  failed: number;
  /** pickup wait (processedOn − timestamp) */
  maxPickupWaitMs: number;
  /** longest job, first add to finish */
  maxJobMs: number;
  rssMb: { start: number; max: number; end: number };
  redisCommands: number;
  redisCommandsPerMin: number;
  /** per command, calls per minute (top ones) */
  topCommands: [string, number][];
  executionsPerInstance: number[];
  violations: string[];
}

function rssMbOf(pid: number | undefined): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

function parseInfo(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split(/\r?\n/)
      .filter((l) => l.includes(':') && !l.startsWith('#'))
      .map((l) => {
        const i = l.indexOf(':');
        return [l.slice(0, i), l.slice(i + 1)] as [string, string];
      }),
  );
}

export async function runMany(options: ManyOptions = {}): Promise<ManyReport> {
  const jobs = options.jobs ?? 1000;
  const instances = options.instances ?? 10;
  const sleepSeconds = options.sleepSeconds ?? 0.4;
  const deadlineMs = options.deadlineMs ?? 150_000;
  const log = options.log ?? ((l: string) => console.log(l));
  const concurrency = Math.ceil(jobs / instances);
  const violations: string[] = [];
  const closers: Array<() => Promise<unknown>> = [];
  const started = Date.now();
  const since = () => Date.now() - started;
  let worker: WorkerProcess | undefined;
  const report: ManyReport = {
    jobs,
    instances,
    concurrency,
    elapsedMs: 0,
    completed: 0,
    failed: 0,
    maxPickupWaitMs: 0,
    maxJobMs: 0,
    rssMb: { start: 0, max: 0, end: 0 },
    redisCommands: 0,
    redisCommandsPerMin: 0,
    topCommands: [],
    executionsPerInstance: [],
    violations,
  };
  try {
    const redis = await startRedis();
    closers.push(() => redis.stop());
    const sims: Simulator[] = [];
    for (let i = 0; i < instances; i++) {
      const sim = await createSimulator({ progressIntervalMs: 200 });
      sims.push(sim);
      closers.push(() => sim.close());
    }
    const env: Record<string, string> = {
      REDIS_URL: redis.url,
      COMFYUI_URL: sims.map((s) => s.url).join(','),
      QUEUE_NAME: `many-${randomBytes(4).toString('hex')}`,
      WORKER_CONCURRENCY: String(concurrency),
      METRICS_PORT: '0',
      LOG_LEVEL: 'info',
      WORKER_NAME: 'many',
    };
    const config = loadConfig(env);
    const queue = createImageQueue(config);
    closers.push(() => queue.close());
    await queue.waitUntilReady();
    const admin = new IORedis(redis.url, { maxRetriesPerRequest: 1 });
    closers.push(() => admin.quit());

    worker = spawnWorker(env);
    closers.push(async () => {
      if (worker!.proc.exitCode === null) worker!.proc.kill('SIGTERM');
      await worker!.exited;
    });
    await worker.ready;
    report.rssMb.start = rssMbOf(worker.proc.pid);
    log(
      `[many] worker ready (RSS ${report.rssMb.start.toFixed(0)} MB): ${jobs} jobs of ${sleepSeconds} s on ${instances} instances, concurrency ${concurrency}/instance`,
    );
    await admin.config('RESETSTAT');
    const t0 = Date.now();
    const ids: string[] = [];
    for (let i = 0; i < jobs; i += 250) {
      const added = await queue.addBulk(
        Array.from({ length: Math.min(250, jobs - i) }, (_, k) => ({
          name: IMAGE_JOB_NAME,
          data: newJobData(
            uncachedSleepWorkflow(sleepSeconds, `many-${i + k}`, i + k),
            { jobType: 'many' },
            Date.now(),
          ),
        })),
      );
      ids.push(...added.map((j) => j.id!));
    }

    let lastLog = 0;
    for (;;) {
      const counts = await queue.getJobCounts();
      const rss = rssMbOf(worker.proc.pid);
      report.rssMb.max = Math.max(report.rssMb.max, rss);
      const waiting = counts.waiting + counts.delayed + counts.prioritized;
      if (report.allTakenMs === undefined && waiting === 0) {
        report.allTakenMs = Date.now() - t0;
        report.completedWhenAllTaken = counts.completed;
      }
      report.completed = counts.completed;
      report.failed = counts.failed;
      if (Date.now() - lastLog >= 10_000) {
        lastLog = Date.now();
        log(
          `[many +${(since() / 1000).toFixed(0)}s] completed ${counts.completed}, active ${counts.active}, waiting ${waiting}, RSS ${rss.toFixed(0)} MB`,
        );
      }
      if (counts.completed + counts.failed >= jobs) break;
      if (since() > deadlineMs) {
        violations.push(
          `not finished within ${deadlineMs} ms: ${counts.completed} completed, ${counts.active} active, ${waiting} waiting`,
        );
        break;
      }
      await delay(500);
    }
    const elapsedMin = (Date.now() - t0) / 60_000;
    const stats = parseInfo(await admin.info('stats'));
    report.redisCommands = Number(stats.total_commands_processed);
    report.redisCommandsPerMin = Math.round(report.redisCommands / elapsedMin);
    const commandstats = parseInfo(await admin.info('commandstats'));
    report.topCommands = Object.entries(commandstats)
      .map(
        ([k, v]) => [k.replace(/^cmdstat_/, ''), Number(/calls=(\d+)/.exec(v)?.[1] ?? 0)] as const,
      )
      .sort((a, b) => b[1] - a[1])
      .slice(0, 6)
      .map(([k, calls]) => [k, Math.round(calls / elapsedMin)] as [string, number]);
    report.rssMb.end = rssMbOf(worker.proc.pid);

    // every job: completed, once; no job waited for a worker slot
    const executions = sims.map((s) => s.executions());
    report.executionsPerInstance = executions.map((e) => Object.keys(e).length);
    const all: Record<string, number> = Object.assign({}, ...executions);
    for (const id of ids) {
      const job = (await queue.getJob(id)) as ImageJob | undefined;
      if (!job) {
        violations.push(`job ${id} is gone`);
        continue;
      }
      const state = await job.getState();
      if (state !== 'completed') {
        violations.push(`job ${id} is ${state}: ${job.failedReason ?? ''}`);
        continue;
      }
      const runs = all[job.data.state.promptId ?? ''] ?? 0;
      if (runs !== 1) violations.push(`job ${id} executed ${runs} times`);
      report.maxPickupWaitMs = Math.max(
        report.maxPickupWaitMs,
        (job.processedOn ?? 0) - job.timestamp,
      );
      report.maxJobMs = Math.max(report.maxJobMs, (job.finishedOn ?? 0) - job.timestamp);
    }
    await queue.obliterate({ force: true }).catch(() => undefined);
  } finally {
    report.elapsedMs = since();
    for (const close of closers.reverse()) await close().catch(() => undefined);
  }
  return report;
}

export function formatManySummary(r: ManyReport): string {
  const s = (ms: number | undefined) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`);
  const rows: [string, string][] = [
    [
      'jobs / instances',
      `${r.jobs} on ${r.instances} (concurrency ${r.concurrency}/instance, one worker process)`,
    ],
    ['completed / failed', `${r.completed} / ${r.failed}`],
    ['elapsed', s(r.elapsedMs)],
    [
      'all jobs taken by the worker',
      `after ${s(r.allTakenMs)}, ${r.completedWhenAllTaken ?? '?'} completed by then (max pickup wait ${s(r.maxPickupWaitMs)})`,
    ],
    ['longest job (add → finish)', s(r.maxJobMs)],
    [
      'worker RSS',
      `start ${r.rssMb.start.toFixed(0)} MB, max ${r.rssMb.max.toFixed(0)} MB, end ${r.rssMb.end.toFixed(0)} MB`,
    ],
    ['Redis commands', `${r.redisCommands} in all, ${r.redisCommandsPerMin}/min`],
    ['top commands (/min)', r.topCommands.map(([c, n]) => `${c} ${n}`).join(', ')],
    ['prompts per instance', r.executionsPerInstance.join(' ')],
    ['violations', r.violations.length ? String(r.violations.length) : 'none'],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return [
    'many-in-flight summary',
    ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`),
    ...r.violations.slice(0, 20).map((v) => `  ! ${v}`),
  ].join('\n');
}
