import {
  describeExit,
  spawnChild,
  StartError,
  type ChildExit,
  type ChildSpec,
  type ManagedChild,
} from './child';

/**
 * Owns the children of `npm start` and stops them in stages: every child of stage 0 at once
 * (API, worker), then stage 1 (simulator), then stage 2 (Redis), so the worker can still
 * hand its jobs back through Redis. Each child gets SIGTERM, then SIGKILL after its timeout.
 * Once `watch()` is called (everything ready), a child that exits while nothing asked it to
 * is reported through `onUnexpectedExit`; before that, readiness waits report failures.
 */
export interface Supervisor {
  /** Spawns and tracks a child; refuses once stopping began, so nothing starts late. */
  spawn(spec: ChildSpec, stage: number, stopTimeoutMs: number): ManagedChild;
  children(): ManagedChild[];
  watch(): void;
  isStopping(): boolean;
  /** Graceful, ordered, idempotent. */
  stop(): Promise<void>;
  /** SIGKILL whatever still runs (second Ctrl-C). */
  killAll(): Promise<void>;
}

export interface SupervisorOptions {
  print: (name: string, line: string) => void;
  say: (message: string) => void;
  onUnexpectedExit: (child: ManagedChild, exit: ChildExit) => void;
}

export function createSupervisor({ print, say, onUnexpectedExit }: SupervisorOptions): Supervisor {
  const entries: { child: ManagedChild; stage: number; stopTimeoutMs: number }[] = [];
  let stopping: Promise<void> | undefined;

  const stopOne = async (child: ManagedChild, stopTimeoutMs: number) => {
    if (!child.isRunning()) return;
    say(`stopping ${child.name} (pid ${child.pid})`);
    const exit = await child.stop('SIGTERM', stopTimeoutMs);
    say(`${child.name} stopped (${describeExit(exit)})`);
  };

  return {
    spawn(spec, stage, stopTimeoutMs) {
      if (stopping) throw new StartError(`not starting ${spec.name}: stopping`);
      const child = spawnChild(spec, print);
      entries.push({ child, stage, stopTimeoutMs });
      say(`started ${child.name} (pid ${child.pid})`);
      return child;
    },
    children: () => entries.map((e) => e.child),
    watch() {
      for (const { child } of entries) {
        void child.exited.then((exit) => {
          if (!stopping) onUnexpectedExit(child, exit);
        });
      }
    },
    isStopping: () => stopping !== undefined,
    stop() {
      stopping ??= (async () => {
        const stages = [...new Set(entries.map((e) => e.stage))].sort((a, b) => a - b);
        for (const stage of stages) {
          await Promise.all(
            entries.filter((e) => e.stage === stage).map((e) => stopOne(e.child, e.stopTimeoutMs)),
          );
        }
      })();
      return stopping;
    },
    async killAll() {
      stopping ??= Promise.resolve();
      await Promise.all(
        entries.map(async ({ child }) => {
          if (!child.isRunning()) return;
          child.kill();
          await child.exited;
        }),
      );
    },
  };
}
