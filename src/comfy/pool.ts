import type { Logger } from '../logger';
import { ComfyClient, type ComfyClientOptions } from './client';
import type { SlotLeases } from './slots';
import { ComfySocket } from './socket';

/**
 * The ComfyUI instances one worker process uses (COMFYUI_URL=a,b,c). Their job slots are
 * shared by every worker (`SlotLeases` in Redis): a new job goes to the healthy instance
 * with the fewest prompts of the whole system, ties round-robin. An instance that fails a
 * request or its `/system_stats` probe gets no new jobs until the probe answers again. Jobs
 * already on an instance keep following it (the normal unreachable/retry rules apply). One
 * client and one WebSocket per instance.
 */

/** A job's slot on an instance: release() when its prompt is done, drop() when handed on. */
export interface Lease {
  readonly url: string;
  /** frees the slot at once (the prompt finished, failed or was removed) */
  release(): void;
  /** stops renewing and keeps the slot until it expires or the job's next worker holds it */
  drop(): void;
}

export interface ComfyPoolOptions {
  urls: string[];
  slots: SlotLeases;
  timeoutMs: number;
  healthIntervalMs: number;
  clientId: string;
  websocket: boolean;
  log: Logger;
  observe?: (url: string) => ComfyClientOptions['observe'];
}

interface Instance {
  url: string;
  client: ComfyClient;
  socket?: ComfySocket;
  healthy: boolean;
}

export class ComfyPool {
  private readonly instances = new Map<string, Instance>();
  private readonly adopted = new Map<string, { socket: ComfySocket; users: number }>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly opts: ComfyPoolOptions) {
    for (const url of opts.urls) this.instance(url);
    this.timer = setInterval(() => void this.probeAll(), opts.healthIntervalMs);
    this.timer.unref();
  }

  /** The instance for a URL; URLs outside COMFYUI_URL (a recovered job's) are added on demand. */
  private instance(url: string): Instance {
    let i = this.instances.get(url);
    if (!i) {
      const observe = this.opts.observe?.(url);
      const client = new ComfyClient(url, {
        timeoutMs: this.opts.timeoutMs,
        observe: (route, ms, outcome) => {
          observe?.(route, ms, outcome);
          if (outcome === 'unreachable') this.markUnhealthy(url);
        },
      });
      const socket = this.opts.websocket
        ? new ComfySocket({ baseUrl: url, clientId: this.opts.clientId, log: this.opts.log })
        : undefined;
      i = { url, client, socket, healthy: true };
      this.instances.set(url, i);
    }
    return i;
  }

  client(url: string): ComfyClient {
    return this.instance(url).client;
  }

  socket(url: string): ComfySocket | undefined {
    return this.instance(url).socket;
  }

  /** The configured instances that answer their health probe. */
  healthyUrls(): string[] {
    return this.opts.urls.filter((url) => this.instance(url).healthy);
  }

  /**
   * A socket that hears the events of prompts submitted with `clientId` by another process
   * (ComfyUI sends a prompt's events only to the client id that submitted it); one per
   * instance and client id, shared, closed when its last user releases it. Undefined when
   * WebSockets are off.
   */
  adopt(url: string, clientId: string): { socket: ComfySocket; release(): void } | undefined {
    if (!this.opts.websocket || this.closed) return undefined;
    const key = `${url}\n${clientId}`;
    let a = this.adopted.get(key);
    if (!a) {
      a = { socket: new ComfySocket({ baseUrl: url, clientId, log: this.opts.log }), users: 0 };
      this.adopted.set(key, a);
    }
    a.users += 1;
    const entry = a;
    let released = false;
    return {
      socket: entry.socket,
      release: () => {
        if (released) return;
        released = true;
        entry.users -= 1;
        if (entry.users > 0) return;
        entry.socket.close();
        this.adopted.delete(key);
      },
    };
  }

  /**
   * Closes every WebSocket before jobs are handed back on shutdown: on 0.3.64 a socket that
   * closes after the next worker opened one under the same client id would unregister it.
   */
  closeSockets(): void {
    for (const i of this.instances.values()) i.socket?.close();
    for (const a of this.adopted.values()) a.socket.close();
    this.adopted.clear();
  }

  /** Whether `url` is one of COMFYUI_URL (a job's recorded instance may have been replaced). */
  configured(url: string): boolean {
    return this.opts.urls.includes(url);
  }

  /**
   * A slot on the healthy configured instance with the fewest prompts system-wide, or
   * undefined when every healthy one is full (or none is healthy).
   */
  async acquire(jobId: string): Promise<Lease | undefined> {
    const urls = this.healthyUrls();
    const reported = urls.map((u) => this.instance(u).socket?.queueRemaining());
    const url = await this.opts.slots.acquire(jobId, urls, reported);
    return url ? this.leaseOf(jobId, url) : undefined;
  }

  /**
   * A slot on a healthy configured instance other than `except` that is idle (no lease and
   * no prompt reported by its socket), checked and taken in one script, or undefined. The
   * job's lease on `except` is kept (a pending prompt being moved from there).
   */
  async acquireIdle(jobId: string, except: string): Promise<Lease | undefined> {
    const urls = this.healthyUrls().filter((u) => u !== except);
    if (urls.length === 0) return undefined;
    const reported = urls.map((u) => this.instance(u).socket?.queueRemaining());
    const url = await this.opts.slots.acquire(jobId, urls, reported, 1);
    return url ? this.leaseOf(jobId, url) : undefined;
  }

  /** A slot on a given instance whatever its load (a resumed job follows its prompt there). */
  async lease(jobId: string, url: string): Promise<Lease> {
    await this.opts.slots.hold(jobId, url, this.opts.urls);
    return this.leaseOf(jobId, url);
  }

  /** Resolves when a slot may have come free somewhere, after `ms`, or when `signal` aborts. */
  waitForSlot(ms: number, signal: AbortSignal): Promise<void> {
    return this.opts.slots.waitForFree(ms, signal);
  }

  private leaseOf(jobId: string, url: string): Lease {
    let done = false;
    return {
      url,
      release: () => {
        if (done) return;
        done = true;
        this.opts.slots
          .release(jobId, url)
          .catch((err: unknown) =>
            this.opts.log.warn(
              { err: (err as Error).message, comfyui: url, jobId },
              'could not free the ComfyUI slot (it expires with LOCK_DURATION_MS)',
            ),
          );
      },
      drop: () => {
        if (done) return;
        done = true;
        this.opts.slots.drop(jobId, url);
      },
    };
  }

  private markUnhealthy(url: string): void {
    if (this.closed) return; // requests aborted by close() say nothing about the instance
    const i = this.instance(url);
    if (i.healthy)
      this.opts.log.warn(
        { comfyui: url },
        'ComfyUI instance unreachable: no new jobs go to it until it answers',
      );
    i.healthy = false;
  }

  private async probeAll(): Promise<void> {
    await Promise.all(
      [...this.instances.values()].map(async (i) => {
        try {
          await i.client.systemStats();
          if (!i.healthy && !this.closed)
            this.opts.log.info({ comfyui: i.url }, 'ComfyUI instance answers again');
          i.healthy = true;
        } catch {
          this.markUnhealthy(i.url);
        }
      }),
    );
  }

  /** Stops probing and closes every instance's WebSocket and HTTP connections. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.opts.slots.close();
    this.closeSockets();
    await Promise.all([...this.instances.values()].map((i) => i.client.close()));
  }
}
