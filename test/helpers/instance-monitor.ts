/**
 * Samples every ComfyUI instance's `GET /queue` (and optionally the BullMQ backlog) while a
 * placement run goes on, and measures what placement promises: no instance holds a pending
 * prompt while another healthy one is idle, and no instance idles while jobs wait.
 */

/** `n` durations (s) between `min` and `max` from a fixed seed: every run places the same work */
export function durations(n: number, min: number, max: number, seed: number): number[] {
  let x = seed;
  return Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return Math.round((min + ((max - min) * x) / 2 ** 31) * 100) / 100;
  });
}

export interface InstanceMonitorResult {
  samples: number;
  /** the longest stretch (ms) one instance had a pending prompt while another was idle */
  worstPendingWhileIdleMs: number;
  /** total time (ms) an instance was idle while jobs waited for a slot (summed per instance) */
  idleWhileBacklogMs: number;
  /** the most prompts seen at once on one instance */
  maxPerInstance: number;
}

interface Queue {
  queue_running: unknown[];
  queue_pending: unknown[];
}

export function monitorInstances(
  urls: string[],
  opts: { everyMs?: number; backlog?: () => Promise<number> } = {},
): { stop(): Promise<InstanceMonitorResult> } {
  const everyMs = opts.everyMs ?? 50;
  const result: InstanceMonitorResult = {
    samples: 0,
    worstPendingWhileIdleMs: 0,
    idleWhileBacklogMs: 0,
    maxPerInstance: 0,
  };
  const since = new Map<number, number>(); // instance → start of its pending-while-idle stretch
  let last = Date.now();
  let stopped = false;

  const sample = async () => {
    const [queues, backlog] = await Promise.all([
      Promise.all(urls.map(async (u) => (await (await fetch(`${u}/queue`)).json()) as Queue)),
      opts.backlog?.() ?? Promise.resolve(0),
    ]);
    const now = Date.now();
    const loads = queues.map((q) => q.queue_running.length + q.queue_pending.length);
    const anyIdle = (except: number) => loads.some((l, j) => j !== except && l === 0);
    result.samples += 1;
    result.maxPerInstance = Math.max(result.maxPerInstance, ...loads);
    if (backlog > 0)
      result.idleWhileBacklogMs += (now - last) * loads.filter((l) => l === 0).length;
    last = now;
    queues.forEach((q, i) => {
      if (q.queue_pending.length > 0 && anyIdle(i)) {
        const start = since.get(i) ?? now;
        since.set(i, start);
        result.worstPendingWhileIdleMs = Math.max(result.worstPendingWhileIdleMs, now - start);
      } else since.delete(i);
    });
  };

  const loop = (async () => {
    while (!stopped) {
      await sample().catch(() => undefined); // an instance paused on purpose: skip the sample
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();

  return {
    async stop() {
      stopped = true;
      await loop;
      return result;
    },
  };
}
