import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import type { WorkerProcess } from '../helpers/worker-process';

/**
 * Starvation for the chaos run: CPU hogs (busy child processes) and random SIGSTOP pauses
 * of workers, as a loaded machine, a GC pause, a frozen VM or a laptop lid would do. A
 * paused worker's lock expires and another worker takes its jobs over; when it resumes it
 * must neither run anything twice nor overwrite what the new owner saved.
 */

/**
 * A busy loop that also exits when its parent is gone (it checks every 100 ms of spinning),
 * so a hog never outlives the test run, even if the test process is SIGKILLed.
 */
const HOG = `
const parent = process.ppid;
for (;;) {
  const t = Date.now();
  while (Date.now() - t < 100) {}
  if (process.ppid !== parent) process.exit(0);
}
`;

export interface Hogs {
  count: number;
  stop(): Promise<void>;
}

/** `count` busy child processes, each as hungry for CPU as it can be. */
export function startHogs(count: number): Hogs {
  const procs: ChildProcess[] = [];
  for (let i = 0; i < count; i++) {
    procs.push(spawn(process.execPath, ['-e', HOG], { stdio: 'ignore' }));
  }
  return {
    count,
    async stop() {
      await Promise.all(
        procs.map(async (p) => {
          if (p.exitCode !== null || p.signalCode !== null) return;
          const exited = once(p, 'exit');
          p.kill('SIGKILL');
          await exited;
        }),
      );
    },
  };
}

export interface PauserOptions {
  /** the worker currently in each slot (a killed worker is replaced in its slot) */
  slots: () => WorkerProcess[];
  /** a pause starts this often (ms, uniform), unless a worker is still paused; when unset,
   * pauses start only when `pauseOne()` is called (the bounded run paces them by progress) */
  everyMs?: [number, number];
  /** how long a worker stays stopped (ms, uniform) */
  pauseMs: [number, number];
  between: (range: [number, number]) => number;
  pickSlot: (slots: number) => number;
  log: (line: string) => void;
}

export interface Pauser {
  /** stops a random running worker now, unless one is paused already (then: false) */
  pauseOne(): boolean;
  /** ends the pauses: every stopped worker is continued; resolves with what was done */
  stop(): Promise<{ pauses: number; longestMs: number }>;
}

function alive(w: WorkerProcess): boolean {
  return w.proc.exitCode === null && w.proc.signalCode === null;
}

/** Stops a random running worker for `pauseMs` (every `everyMs`, or on `pauseOne()`), then continues it. */
export function startPauser(o: PauserOptions): Pauser {
  const stopping = new AbortController();
  const paused = new Set<WorkerProcess>();
  let pauses = 0;
  let longestMs = 0;
  const wait = (ms: number) =>
    delay(ms, undefined, { signal: stopping.signal }).then(
      () => true,
      () => false,
    );
  const pauseOne = async (w: WorkerProcess) => {
    const ms = Math.round(o.between(o.pauseMs));
    paused.add(w);
    w.proc.kill('SIGSTOP');
    pauses++;
    longestMs = Math.max(longestMs, ms);
    o.log(`worker pid ${w.proc.pid} SIGSTOP for ${ms} ms`);
    await wait(ms);
    paused.delete(w);
    if (alive(w)) w.proc.kill('SIGCONT'); // it may have been SIGKILLed meanwhile
  };
  const running: Promise<void>[] = [];
  const pauseAny = (): boolean => {
    // one worker stopped at a time: with the kills, overlapping pauses left no worker
    // taking jobs for tens of seconds on a loaded machine (a stall, not a test)
    if (paused.size > 0 || stopping.signal.aborted) return false;
    const candidates = o.slots().filter(alive);
    const w = candidates[o.pickSlot(candidates.length)];
    if (!w) return false;
    running.push(pauseOne(w));
    return true;
  };
  const everyMs = o.everyMs;
  const loop = (async () => {
    if (!everyMs) return;
    while (await wait(o.between(everyMs))) pauseAny();
  })();
  return {
    pauseOne: pauseAny,
    async stop() {
      stopping.abort();
      await loop;
      await Promise.all(running);
      return { pauses, longestMs };
    },
  };
}
