import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { SimLogger } from '../../src/simulator/instance';

/**
 * What the chaos run keeps to explain a violation after the fact: when each simulator
 * queued each prompt ("got prompt"), every worker's log, and how late this process's event
 * loop (which runs the simulators) ran. A job executed twice is printed with its timeline.
 */
export interface ChaosTrace {
  /** the logger for simulator `i` */
  simLogger(i: number): SimLogger;
  /** a worker's whole output, once it exited or the run ended */
  addWorkerOutput(name: string, output: string): void;
  /** the longest event-loop delay of this process (ms): how late the simulators answered */
  maxLagMs(): number;
  /** the job's timeline: its prompt queued by a simulator, each worker line that names it */
  explain(jobId: string, promptId: string, startedAt: number): string[];
  stop(): void;
}

export function createTrace(): ChaosTrace {
  const lag = monitorEventLoopDelay({ resolution: 20 });
  lag.enable();
  const queued = new Map<string, { at: number; sim: number }[]>();
  const outputs = new Map<string, string>();
  return {
    simLogger: (sim) => ({
      info: (...args) => {
        const m = /^got prompt (\S+)/.exec(String(args[0]));
        if (!m) return;
        const list = queued.get(m[1]) ?? [];
        list.push({ at: Date.now(), sim });
        queued.set(m[1], list);
      },
      warn: () => undefined,
    }),
    addWorkerOutput: (name, output) => outputs.set(name, output),
    maxLagMs: () => Math.round(lag.max / 1e6),
    explain(jobId, promptId, startedAt) {
      const rel = (t: number) => `+${((t - startedAt) / 1000).toFixed(3)}s`;
      const events: { at: number; line: string }[] = [];
      for (const q of queued.get(promptId) ?? [])
        events.push({ at: q.at, line: `simulator ${q.sim} queued it` });
      for (const [name, output] of outputs) {
        for (const raw of output.split('\n')) {
          if (!raw.includes(promptId) && !raw.includes(`"jobId":"${jobId}"`)) continue;
          try {
            const l = JSON.parse(raw) as { time: number; msg: string; err?: unknown };
            const err = l.err ? ` (${JSON.stringify(l.err).slice(0, 160)})` : '';
            events.push({ at: l.time, line: `${name}: ${l.msg}${err}` });
          } catch {
            // a partial line of a killed worker
          }
        }
      }
      return events.sort((a, b) => a.at - b.at).map((e) => `    ${rel(e.at)} ${e.line}`);
    },
    stop: () => lag.disable(),
  };
}
