import type { Logger } from '../logger';
import { ComfyClient, type ComfyClientOptions } from './client';
import { ComfySocket } from './socket';

/**
 * The ComfyUI instances one worker process uses (COMFYUI_URL=a,b,c). Each has
 * `slotsPerInstance` job slots; a new job goes to the healthy instance with the most free
 * slots. An instance that fails a request or its `/system_stats` probe gets no new jobs
 * until the probe answers again. Jobs already on an instance keep following it (the
 * normal unreachable/retry rules apply). One client and one WebSocket per instance.
 */

export interface Lease {
  readonly url: string;
  release(): void;
}

export interface ComfyPoolOptions {
  urls: string[];
  slotsPerInstance: number;
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
  busy: number;
  healthy: boolean;
}

export class ComfyPool {
  private readonly instances = new Map<string, Instance>();
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
      i = { url, client, socket, busy: 0, healthy: true };
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

  /** A slot on the healthy configured instance with the most free slots, or undefined. */
  acquire(): Lease | undefined {
    let best: Instance | undefined;
    for (const url of this.opts.urls) {
      const i = this.instance(url);
      if (!i.healthy || i.busy >= this.opts.slotsPerInstance) continue;
      if (!best || i.busy < best.busy) best = i;
    }
    return best ? this.lease(best.url) : undefined;
  }

  /** A slot on a given instance (a resumed job follows its prompt where it is). */
  lease(url: string): Lease {
    const i = this.instance(url);
    i.busy += 1;
    let released = false;
    return {
      url,
      release: () => {
        if (!released) i.busy -= 1;
        released = true;
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
    for (const i of this.instances.values()) i.socket?.close();
    await Promise.all([...this.instances.values()].map((i) => i.client.close()));
  }
}
