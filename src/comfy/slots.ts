import { EventEmitter } from 'node:events';
import type { Cluster, Redis as IORedis } from 'ioredis';
import type { Logger } from '../logger';
import { defineScripts, redisScript, type ScriptCall } from '../scripts';

/**
 * Job slots on ComfyUI instances, shared by every worker (DESIGN "Placement across ComfyUI
 * instances"). Each instance has a sorted set in Redis: member = job id, score = the
 * lease's expiry (epoch ms). A worker renews the leases it holds as often as BullMQ renews
 * job locks, so a dead worker's slots come back when its leases expire (LOCK_DURATION_MS),
 * at the same time as its jobs stall. Expired members are removed by the acquire script
 * before it counts. Among the least loaded instances, ties go round-robin (one counter for
 * the whole system), so sequential jobs on idle instances spread over all of them.
 */

/** The scripts, in src/scripts/: slotAcquire.lua, slotHold.lua, slotRelease-2.lua. */
const SCRIPTS = {
  acquire: redisScript('slotAcquire'),
  hold: redisScript('slotHold'),
  release: redisScript('slotRelease-2'),
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
  private readonly client: IORedis | Cluster;
  private readonly scripts: Record<keyof typeof SCRIPTS, ScriptCall>;

  constructor(
    redis: IORedis | Cluster,
    private readonly s: SlotSettings,
    private readonly log: Logger,
  ) {
    this.client = redis;
    this.scripts = defineScripts(redis, SCRIPTS);
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
    const i = (await this.scripts.acquire(
      keys.length,
      ...keys,
      now,
      now + this.s.leaseMs,
      Math.min(maxLoad, this.s.slotsPerInstance),
      jobId,
      ...urls.map((_, i) => reported[i] ?? 0),
    )) as number;
    if (i === 0) return undefined;
    const url = urls[i - 1];
    this.held.set(`${url}\n${jobId}`, { url, jobId });
    return url;
  }

  /** Holds a slot on `url` whatever its load (the job's prompt is there already). */
  async hold(jobId: string, url: string, others: string[]): Promise<void> {
    const keys = [url, ...others.filter((u) => u !== url)].map((u) => this.key(u));
    this.held.set(`${url}\n${jobId}`, { url, jobId });
    await this.scripts.hold(keys.length, ...keys, Date.now() + this.s.leaseMs, jobId);
  }

  /** Frees the slot at once (the job's prompt is finished or gone) and wakes waiting jobs. */
  async release(jobId: string, url: string): Promise<void> {
    this.held.delete(`${url}\n${jobId}`);
    await this.scripts.release(this.key(url), slotsFreedChannel(this.s), jobId);
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
