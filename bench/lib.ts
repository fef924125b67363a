/**
 * Shared pieces of the benchmark: a cleanup scope that owns every process and connection a
 * figure starts, the processes themselves (redis-server, simulator, worker, API, raw BullMQ
 * worker), statistics, workflows of a given size and the machine description.
 *
 * The harness under them is the tests' (test/helpers/): the process scope, redis-server,
 * the node entry command line, the waits and the workflows; what is here only adds the
 * bench's own (a figure's Scope, timeouts, CPU profiles, the simulator in a process).
 *
 * Every wait has a timeout, every child is registered for a synchronous SIGKILL at exit,
 * and node children preload `exit-with-parent`, so nothing outlives the benchmark.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import IORedis from 'ioredis';
import { spawnChild, type ManagedChild } from '../src/run/child';
import { freePort } from '../src/run/ports';
import { createJobStore, type JobStore } from '../src/api/store';
import { loadConfig, type Config } from '../src/config';
import { createImageQueue, type ImageQueue } from '../src/queue';
import { createRedis } from '../src/redis';
import { processScope, SCOPE_VAR } from '../test/helpers/process-scope';
import { startRedis as startRedisServer, type RedisServer } from '../test/helpers/redis-server';
import { nodeEntryArgs, ROOT } from '../test/helpers/worker-process';
import { sleepWorkflow, tinyWorkflow } from '../test/helpers/workflows';

export { ROOT };

// ---------------------------------------------------------------- context and cleanup

export interface BenchContext {
  quick: boolean;
  log(message: string): void;
}

/** One row of the printed table (and of results.json). */
export interface Row {
  id: string;
  figure: string;
  /** what was measured, human readable */
  value: string;
  /** the baseline measured in the same run, when there is one */
  baseline?: string;
  /** value / baseline (or the headline number compared to the target) */
  ratio?: number;
  target: string;
  /** undefined: no target, or not measurable in this run */
  met?: boolean;
  /** numbers for results.json */
  data?: Record<string, unknown>;
  note?: string;
}

export type Figure = (ctx: BenchContext, scope: Scope) => Promise<Row[]>;

export { errorText, Scope, withTimeout } from '../src/lifecycle';
import { errorText, withTimeout, type Scope } from '../src/lifecycle';
import { newJobData, type Workflow } from '../src/job/data';

export { Fatal, sleep } from '../test/helpers/wait';
import { waitFor } from '../test/helpers/wait';

/** `waitFor` (test/helpers/wait.ts) with the bench's argument order and a 20 ms default step. */
export const waitUntil = <T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined | false | null> | T | undefined | false | null,
  everyMs = 20,
): Promise<T> => waitFor(what, check, { timeoutMs, everyMs });

/** Runs `fn` for each item with at most `concurrency` in flight. */
export async function pool<T>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  });
  await Promise.all(lanes);
}

// ---------------------------------------------------------------- statistics

export interface Summary {
  n: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  min: number;
  max: number;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export function summarize(values: readonly number[]): Summary {
  const s = [...values].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
  return {
    n: s.length,
    mean,
    p50: percentile(s, 50),
    p90: percentile(s, 90),
    p99: percentile(s, 99),
    min: s[0] ?? NaN,
    max: s[s.length - 1] ?? NaN,
  };
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export const fmt = (n: number, digits = 1) =>
  Number.isFinite(n) ? n.toFixed(digits).replace(/\.0+$/, '') : 'n/a';
export const fmtMs = (n: number) => `${fmt(n, n < 10 ? 1 : 0)} ms`;
export const fmtBytes = (n: number) =>
  Math.abs(n) >= 10_240 ? `${fmt(n / 1024, 0)} KB` : `${fmt(n / 1024, 2)} KB`;

// ---------------------------------------------------------------- processes

/** The environment of a child: only what node needs, plus `env` (nothing of ours leaks in). */
export function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const keep = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ', 'SYSTEMROOT', SCOPE_VAR];
  const base: NodeJS.ProcessEnv = {};
  for (const k of keep) if (process.env[k] !== undefined) base[k] = process.env[k];
  return { ...base, ...env };
}

/**
 * Spawns a process owned by `scope`: stopped (SIGTERM, then SIGKILL) at cleanup; in the
 * process scope of the tests (test/helpers/process-scope.ts), so it dies with the benchmark
 * whatever happens, SIGKILL included.
 */
export function spawnOwned(
  scope: Scope,
  name: string,
  command: string,
  args: string[],
  env: Record<string, string>,
  cwd = ROOT,
): ManagedChild {
  const child = spawnChild(
    {
      name,
      command,
      args,
      env: { ...childEnv(env), [SCOPE_VAR]: processScope().token },
      cwd,
      echo: () => false,
    },
    () => undefined,
  );
  processScope().adopt(child.pid, child.exited);
  scope.defer(`${name} (pid ${child.pid})`, () => child.stop('SIGTERM', 5_000));
  return child;
}

/** `node --import tsx --import exit-with-parent <file>` (file relative to the repo root). */
export function spawnNode(
  scope: Scope,
  name: string,
  file: string,
  env: Record<string, string>,
): ManagedChild {
  // BENCH_PROFILE_DIR=dir: every node child writes a CPU profile there (open in Chrome DevTools)
  const profile = process.env.BENCH_PROFILE_DIR
    ? ['--cpu-prof', `--cpu-prof-dir=${join(process.env.BENCH_PROFILE_DIR, name)}`]
    : [];
  return spawnOwned(scope, name, process.execPath, [...profile, ...nodeEntryArgs(file)], env);
}

export async function ready(child: ManagedChild, match: RegExp, timeoutMs = 60_000) {
  try {
    return await withTimeout(`${child.name} readiness`, timeoutMs, child.waitForLine(match));
  } catch (err) {
    throw new Error(`${errorText(err)}\n--- ${child.name} output ---\n${child.tail()}`);
  }
}

export interface BenchRedis {
  url: string;
  port: number;
  /** the benchmark's own connection (reads, INFO, polling); excluded from command counts */
  client: IORedis;
  /** `ip:port` of `client`, as MONITOR and CLIENT LIST show it */
  clientAddr: string;
  info(section: string): Promise<Record<string, string>>;
  usedMemory(): Promise<number>;
  /** the settings of a worker or API child on this Redis and `queueName` (`serviceEnv`) */
  env(queueName: string, extra?: Record<string, string>): Record<string, string>;
  server: RedisServer;
}

/**
 * A redis-server of the benchmark's own (test/helpers/redis-server.ts): free port, temporary
 * data dir, no persistence (AOF rewrites and RDB forks would only add noise), noeviction as
 * BullMQ requires; stopped with the scope.
 */
export async function startRedis(scope: Scope, name = 'redis'): Promise<BenchRedis> {
  const server = await withTimeout(`${name} start`, 10_000, startRedisServer([], { aof: false }));
  scope.defer(`${name} (pid ${server.pid()})`, () => server.stop());
  const { url, port } = server;
  const client = new IORedis(url, { maxRetriesPerRequest: 1, connectionName: 'bench' });
  client.on('error', () => undefined);
  scope.defer(`${name} bench client`, () => client.disconnect());
  const me = String(await client.call('CLIENT', 'INFO'));
  const clientAddr = /addr=(\S+)/.exec(me)?.[1] ?? '';
  const info = async (section: string) => parseInfo(String(await client.info(section)));
  return {
    url,
    port,
    client,
    clientAddr,
    info,
    usedMemory: async () => Number((await info('memory')).used_memory),
    env: (queueName, extra) => serviceEnv(url, queueName, extra),
    server,
  };
}

/** A redis-server and a simulator of a figure's own, and the settings of a child on both. */
export async function startBackend(
  scope: Scope,
  names: { redis?: string; simulator?: string } = {},
): Promise<{
  redis: BenchRedis;
  sim: SimProcess;
  env(queueName: string, extra?: Record<string, string>): Record<string, string>;
}> {
  const redis = await startRedis(scope, names.redis);
  const sim = await startSimulator(scope, { name: names.simulator });
  return {
    redis,
    sim,
    env: (queueName, extra) => redis.env(queueName, { COMFYUI_URL: sim.url, ...extra }),
  };
}

export function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

export interface SimProcess {
  url: string;
  child: ManagedChild;
  executions(): Promise<Record<string, number>>;
  /** the history entry of a prompt (its status.messages carry epoch-ms timestamps) */
  timing(promptId: string): Promise<PromptTiming | undefined>;
}

export interface PromptTiming {
  /** execution_start, epoch ms */
  start: number;
  /** execution_success (or the error event), epoch ms */
  end: number;
}

/** The ComfyUI simulator in its own process (bench/sim-process.ts), so it has its own event loop. */
export async function startSimulator(
  scope: Scope,
  opts: { progressIntervalMs?: number; name?: string } = {},
): Promise<SimProcess> {
  const child = spawnNode(scope, opts.name ?? 'simulator', 'bench/sim-process.ts', {
    SIM_PROGRESS_INTERVAL_MS: String(opts.progressIntervalMs ?? 50),
  });
  const line = await ready(child, /simulator listening on (\S+)/);
  const url = /listening on (\S+)/.exec(line)![1];
  return {
    url,
    child,
    async executions() {
      const r = await fetch(`${url}/_sim/executions`, { signal: AbortSignal.timeout(5_000) });
      return (await r.json()) as Record<string, number>;
    },
    async timing(promptId) {
      const r = await fetch(`${url}/history/${promptId}`, { signal: AbortSignal.timeout(5_000) });
      const body = (await r.json()) as Record<
        string,
        { status?: { messages?: [string, { timestamp?: number }][] } }
      >;
      const messages = body[promptId]?.status?.messages ?? [];
      const at = (name: string) => messages.find(([n]) => n === name)?.[1].timestamp;
      const start = at('execution_start');
      const end = at('execution_success') ?? at('execution_error') ?? at('execution_interrupted');
      return start !== undefined && end !== undefined ? { start, end } : undefined;
    },
  };
}

/** storage folder per Redis (one system each), removed when the benchmark exits */
const filesByRedis = new Map<string, string>();

/**
 * The default storage of the system on `redisUrl`: a temporary folder of its own, never the
 * checkout's ./.data/files (`npm start`'s), because an API's retention sweep removes the
 * old files of jobs its Redis does not know.
 */
function filesFor(redisUrl: string): string {
  let dir = filesByRedis.get(redisUrl);
  if (!dir) {
    if (filesByRedis.size === 0) {
      process.once('exit', () => {
        for (const d of filesByRedis.values()) rmSync(d, { recursive: true, force: true });
      });
    }
    dir = mkdtempSync(join(tmpdir(), 'cq-bench-files-'));
    filesByRedis.set(redisUrl, dir);
  }
  return `file://${dir}`;
}

/** Settings every worker and API child of the benchmark gets (defaults otherwise). */
export function serviceEnv(
  redisUrl: string,
  queueName: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    REDIS_URL: redisUrl,
    QUEUE_NAME: queueName,
    METRICS_PORT: '0',
    LOG_LEVEL: 'info',
    STORAGE_URL: filesFor(redisUrl),
    ...extra,
  };
}

/** The real worker process (workers/worker.ts), ready once it logged `worker ready`. */
export async function startWorker(
  scope: Scope,
  name: string,
  env: Record<string, string>,
): Promise<ManagedChild> {
  const child = spawnNode(scope, name, 'workers/worker.ts', { WORKER_NAME: name, ...env });
  await ready(child, /worker ready/);
  return child;
}

/** A plain BullMQ worker with a no-op processor and our worker's options (bench/raw-worker.ts). */
export async function startRawWorker(
  scope: Scope,
  name: string,
  env: Record<string, string>,
): Promise<ManagedChild> {
  const child = spawnNode(scope, name, 'bench/raw-worker.ts', env);
  await ready(child, /raw worker ready/);
  return child;
}

/** The real API process (src/bin/api.ts) on a free port. */
export async function startApi(
  scope: Scope,
  name: string,
  env: Record<string, string>,
): Promise<{ url: string; child: ManagedChild }> {
  const port = await freePort();
  const child = spawnNode(scope, name, 'src/bin/api.ts', { PORT: String(port), ...env });
  await ready(child, /api listening/);
  return { url: `http://127.0.0.1:${port}`, child };
}

/** CPU time (user + system, ms) a process has used so far, from /proc; NaN elsewhere. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[11], fields[12]: utime, stime in clock ticks (USER_HZ, 100 on Linux)
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return NaN;
  }
}

/** Redis' own CPU time so far (ms), from INFO cpu. */
export async function redisCpuMs(redis: BenchRedis): Promise<number> {
  const cpu = await redis.info('cpu');
  return (Number(cpu.used_cpu_user) + Number(cpu.used_cpu_sys)) * 1000;
}

export function killHard(child: ManagedChild): void {
  child.kill();
}

// ---------------------------------------------------------------- workflows

/**
 * EmptyImage → ImageInvert → SaveImage (an instant prompt in the simulator), padded to about
 * `bytes` of JSON with a `_meta.title`, the way real workflows carry titles and notes.
 */
export function sizedWorkflow(bytes: number, prefix: string): Workflow {
  const wf = tinyWorkflow(prefix, 0);
  const pad = bytes - JSON.stringify(wf).length - 40;
  if (pad > 0) wf['1']._meta = { title: 'x'.repeat(pad) };
  return wf;
}

/**
 * EmptyImage → TestSleep{seconds} (progress ticks) → SaveImage: the tests' workflow, its
 * prefix `what` made unique (a prompt is never served from ComfyUI's cache).
 */
export const sleepingWorkflow = (seconds: number, what: string): Workflow =>
  sleepWorkflow(seconds, uniqueName(what));

/** The data of a bench job (job type `bench`) running `workflow`, enqueued at `at`. */
export const benchJob = (workflow: Workflow, at = Date.now()) =>
  newJobData(workflow, { jobType: 'bench' }, at);

let seq = 0;
export const uniqueName = (what: string) =>
  `${what}-${process.pid.toString(36)}-${(seq++).toString(36)}`;

// ---------------------------------------------------------------- machine

export function machineInfo(): Record<string, string | number> {
  const cpu = cpus();
  let redis = 'unknown';
  try {
    redis = /v=(\S+)/.exec(execFileSync('redis-server', ['--version']).toString())?.[1] ?? redis;
  } catch {
    // not on PATH: the run fails later with a clear message
  }
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  let load = '';
  try {
    load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    // not Linux
  }
  let commit = 'unknown';
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'workers'], {
      cwd: ROOT,
    }).toString();
    commit = `${head.trim()}${dirty.trim() ? ' (+ uncommitted changes in src/ or workers/)' : ''}`;
  } catch {
    // not a git checkout
  }
  return {
    commit,
    nproc: cpu.length,
    cpu: cpu[0]?.model ?? 'unknown',
    node: process.version,
    redis,
    bullmq: pkg.dependencies.bullmq,
    ioredis: pkg.dependencies.ioredis,
    platform: `${process.platform} ${process.arch}`,
    loadavgAtStart: load,
  };
}

/** A producer queue on `env`'s Redis and queue; closed with the scope. */
export function producer(scope: Scope, env: Record<string, string>, name: string): ImageQueue {
  const q = createImageQueue(loadConfig(env));
  q.on('error', () => undefined);
  scope.defer(`${name} queue`, () => q.close());
  return q;
}

/** how many users the jobs `enqueueMany` makes belong to */
export const BENCH_USERS = 50;
const emptyWorkflowJson = JSON.stringify({ '1': { class_type: 'EmptyImage', inputs: {} } });

/** Jobs numbered `indices` of BENCH_USERS users through the store's enqueue (a POST's MULTI), 50 in flight. */
export async function enqueueMany(store: JobStore, indices: number[]): Promise<void> {
  await pool(indices, 50, async (i) => {
    await store.enqueue({
      fields: { userId: `user-${i % BENCH_USERS}`, jobType: 'bench' },
      workflowJson: emptyWorkflowJson,
      fingerprint: `fp-${i}`,
      nodes: 1,
    });
  });
}

/**
 * A job store on `config`'s queue as the API builds it, with a generous budget (a figure
 * measures, it does not time out); its connections close with the scope.
 */
export async function benchStore(scope: Scope, config: Config, name: string) {
  const queue = createImageQueue(config);
  const redis = createRedis(config, 'producer');
  for (const c of [queue, redis]) c.on('error', () => undefined);
  scope.defer(`${name} queue`, () => queue.close());
  scope.defer(`${name} redis`, () => redis.quit().then(() => undefined));
  await queue.waitUntilReady();
  const store = createJobStore({ queue, redis, settings: { ...config, redisTimeoutMs: 10_000 } });
  return { queue, redis, store };
}
