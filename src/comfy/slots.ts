import { EventEmitter } from 'node:events';
import type { Cluster, Redis as IORedis } from 'ioredis';
import type { Logger } from '../logger';

/**
 * Job slots on ComfyUI instances, shared by every worker (DESIGN "Placement across ComfyUI
 * instances"). Each instance has a sorted set in Redis: member = job id, score = the
 * lease's expiry (epoch ms). A worker renews the leases it holds as often as BullMQ renews
 * job locks, so a dead worker's slots come back when its leases expire (LOCK_DURATION_MS),
 * at the same time as its jobs stall. Expired members are removed by the acquire script
 * before it counts. Among the least loaded instances, ties go round-robin (one counter for
 * the whole system), so sequential jobs on idle instances spread over all of them.
 */

/**
 * KEYS: the candidates' sets (configured order), the round-robin counter; ARGV: now, expiry,
 * slots per instance, job id, then per candidate the prompts ComfyUI itself reports (its
 * queue length, 0 when unknown). An instance's load is the larger of its leases and that
 * (prompts from outside, or a dead worker's prompt still running after its lease expired).
 * Returns the chosen key's index (1-based) or 0.
 */
const ACQUIRE_LUA = `
local n = #KEYS - 1
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[1])
  redis.call('ZREM', KEYS[i], ARGV[4])
end
local start = redis.call('INCR', KEYS[n + 1]) % n
local best, bestLoad = 0, 0
for k = 0, n - 1 do
  local i = (start + k) % n + 1
  local load = math.max(redis.call('ZCARD', KEYS[i]), tonumber(ARGV[4 + i]))
  if load < tonumber(ARGV[3]) and (best == 0 or load < bestLoad) then
    best, bestLoad = i, load
  end
end
if best > 0 then redis.call('ZADD', KEYS[best], ARGV[2], ARGV[4]) end
return best
`;

/** KEYS: the set to hold a slot in, then the job's other sets; ARGV: expiry, job id. */
const HOLD_LUA = `
for i = 2, #KEYS do redis.call('ZREM', KEYS[i], ARGV[2]) end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
return 1
`;

/** KEYS: the set, the "a slot was freed" channel; ARGV: job id. */
const RELEASE_LUA = `
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if removed == 1 then redis.call('PUBLISH', KEYS[2], KEYS[1]) end
return removed
`;

type Client = (IORedis | Cluster) & {
  comfyqSlotAcquire?: (...args: (string | number)[]) => Promise<number>;
  comfyqSlotHold?: (...args: (string | number)[]) => Promise<number>;
  comfyqSlotRelease?: (...args: (string | number)[]) => Promise<number>;
};

export interface SlotSettings {
  queuePrefix: string;
  queueName: string;
  /** slots per instance, for the whole system (WORKER_CONCURRENCY) */
  slotsPerInstance: number;
  /** a lease lives this long without renewal (LOCK_DURATION_MS) */
  leaseMs: number;
}

/** The channel a release publishes on; workers subscribe and wake their waiting jobs. */
export function slotsFreedChannel(s: Pick<SlotSettings, 'queuePrefix' | 'queueName'>): string {
  return `${s.queuePrefix}:${s.queueName}:slots:freed`;
}

export class SlotLeases {
  /** "url\njobId" → lease held by this process (renewed until released or dropped) */
  private readonly held = new Map<string, { url: string; jobId: string }>();
  private readonly freed = new EventEmitter();
  private readonly timer: NodeJS.Timeout;
  private readonly client: Client;

  constructor(
    redis: IORedis | Cluster,
    private readonly s: SlotSettings,
    private readonly log: Logger,
  ) {
    this.client = redis as Client;
    this.client.defineCommand('comfyqSlotAcquire', { lua: ACQUIRE_LUA });
    this.client.defineCommand('comfyqSlotHold', { lua: HOLD_LUA });
    this.client.defineCommand('comfyqSlotRelease', { numberOfKeys: 2, lua: RELEASE_LUA });
    this.freed.setMaxListeners(0);
    this.timer = setInterval(() => void this.renew(), Math.max(100, Math.floor(s.leaseMs / 3)));
    this.timer.unref();
  }

  key(url: string): string {
    return `${this.s.queuePrefix}:${this.s.queueName}:slots:${url}`;
  }

  /**
   * A slot for the job on the least loaded of `urls` (configured order; ties round-robin),
   * or undefined when every one is full. `reported`: each instance's own queue length when
   * known. The job's older leases on `urls` are dropped (its leases elsewhere are kept).
   * `maxLoad`: only an instance with fewer prompts than this qualifies (default: the slots
   * per instance; 1 = only an idle instance, checked and taken in the one script).
   */
  async acquire(
    jobId: string,
    urls: string[],
    reported: (number | undefined)[] = [],
    maxLoad = this.s.slotsPerInstance,
  ): Promise<string | undefined> {
    if (urls.length === 0) return undefined;
    const now = Date.now();
    const keys = [...urls.map((u) => this.key(u)), `${this.key('')}rr`];
    const i = await this.client.comfyqSlotAcquire!(
      keys.length,
      ...keys,
      now,
      now + this.s.leaseMs,
      Math.min(maxLoad, this.s.slotsPerInstance),
      jobId,
      ...urls.map((_, i) => reported[i] ?? 0),
    );
    if (i === 0) return undefined;
    const url = urls[i - 1];
    this.held.set(`${url}\n${jobId}`, { url, jobId });
    return url;
  }

  /** Holds a slot on `url` whatever its load (the job's prompt is there already). */
  async hold(jobId: string, url: string, others: string[]): Promise<void> {
    const keys = [url, ...others.filter((u) => u !== url)].map((u) => this.key(u));
    this.held.set(`${url}\n${jobId}`, { url, jobId });
    await this.client.comfyqSlotHold!(keys.length, ...keys, Date.now() + this.s.leaseMs, jobId);
  }

  /** Frees the slot at once (the job's prompt is finished or gone) and wakes waiting jobs. */
  async release(jobId: string, url: string): Promise<void> {
    this.held.delete(`${url}\n${jobId}`);
    await this.client.comfyqSlotRelease!(this.key(url), slotsFreedChannel(this.s), jobId);
  }

  /**
   * Stops renewing without freeing: the prompt may still run (a hand-off, a retry, a lost
   * lock); the next worker holds the slot again, or it expires after LOCK_DURATION_MS.
   */
  drop(jobId: string, url: string): void {
    this.held.delete(`${url}\n${jobId}`);
  }

  /** Called when a slot was freed anywhere (the worker's subscriber feeds it). */
  notifyFreed(): void {
    this.freed.emit('freed');
  }

  /** Resolves when a slot is freed, after `ms`, or when `signal` aborts. */
  waitForFree(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.freed.off('freed', done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.freed.on('freed', done);
      signal.addEventListener('abort', done, { once: true });
      if (signal.aborted) done();
    });
  }

  /** Slots in use per instance (expired leases not counted). */
  async load(urls: string[]): Promise<number[]> {
    const now = Date.now();
    return Promise.all(urls.map((u) => this.client.zcount(this.key(u), now, '+inf')));
  }

  private async renew(): Promise<void> {
    if (this.held.size === 0) return;
    const expiry = Date.now() + this.s.leaseMs;
    try {
      await Promise.all(
        [...this.held.values()].map(({ url, jobId }) =>
          this.client.zadd(this.key(url), 'XX', expiry, jobId),
        ),
      );
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not renew ComfyUI slot leases');
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.freed.removeAllListeners();
  }
}
