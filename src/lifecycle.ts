import type { Logger } from './logger';

/**
 * How a process starts and stops, in one place: a bound on any wait (`withTimeout`), the
 * release of what was acquired in reverse order with each step bounded (`Scope`), and the
 * signal handling every entry point shares (`handleSignals`), and periodic housekeeping
 * (`every`).
 */

/** A wait that did not end within its bound. */
export class TimeoutError extends Error {
  override name = 'TimeoutError';
}

/**
 * `work`, or a TimeoutError "<what>: timed out after <ms> ms" once `ms` have passed (the
 * work goes on; a late rejection of it is ignored). The timer does not hold the process.
 */
export function withTimeout<T>(what: string, ms: number, work: PromiseLike<T> | T): Promise<T> {
  const signal = AbortSignal.timeout(ms);
  return new Promise<T>((resolve, reject) => {
    const onTimeout = () => reject(new TimeoutError(`${what}: timed out after ${ms} ms`));
    signal.addEventListener('abort', onTimeout, { once: true });
    Promise.resolve(work)
      .then(resolve, reject)
      .finally(() => signal.removeEventListener('abort', onTimeout));
  });
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Runs `task` now and then every `intervalMs`, never two runs at once (a tick that finds the
 * last run still going is skipped). A failed run is logged as `<what> failed; will retry`
 * and tried again next tick. The timer does not hold the process. Returns a stop function.
 */
export function every(
  intervalMs: number,
  what: string,
  task: () => Promise<void>,
  log: { warn(obj: object, msg: string): void },
): () => void {
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      await task();
    } catch (err) {
      log.warn({ err: errorText(err) }, `${what} failed; will retry`);
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void tick(), intervalMs);
  timer.unref();
  void tick();
  return () => clearInterval(timer);
}

export interface ScopeOptions {
  /** each release step's bound, in ms (with Redis down, a close can wait forever) */
  stepMs: number;
  /** told about a step that failed or timed out; the next steps run anyway */
  onError?: (what: string, err: unknown) => void;
}

/**
 * What a process (or a test, or a bench run) acquired, released in reverse order: each step
 * bounded, each run even if another failed. `close()` is safe to call twice. A step
 * deferred after close runs at once (what is acquired while stopping is released too).
 */
export class Scope {
  private readonly steps: Array<{ what: string; fn: () => unknown }> = [];
  private closing: Promise<void> | undefined;

  constructor(private readonly options: ScopeOptions) {}

  /** true once close() was called */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  defer(what: string, fn: () => unknown): void {
    if (this.closing) void this.release(what, fn);
    else this.steps.push({ what, fn });
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      for (let step = this.steps.pop(); step; step = this.steps.pop())
        await this.release(step.what, step.fn);
    })();
    return this.closing;
  }

  private async release(what: string, fn: () => unknown): Promise<void> {
    try {
      await withTimeout(`closing ${what}`, this.options.stepMs, Promise.resolve().then(fn));
    } catch (err) {
      this.options.onError?.(what, err);
    }
  }
}

export interface SignalHandling {
  /** the first signal's orderly stop; the process exits 0 once it resolves, 1 if it rejects */
  stop(signal: NodeJS.Signals): Promise<void>;
  /** a later signal; by default the process exits 1 at once */
  force?(signal: NodeJS.Signals): void;
  /** the stop's bound: the process exits 1 after it (default: unbounded) */
  timeoutMs?: number;
  /** a repeat within this many ms is the same signal (npm forwards the terminal's Ctrl-C) */
  repeatMs?: number;
  /** default SIGTERM and SIGINT */
  signals?: NodeJS.Signals[];
  /** the exit code after an orderly stop (default 0) */
  exitCode?: () => number;
  say(message: string): void;
}

/**
 * The signal handling of every entry point: the first signal stops in order (bounded by
 * `timeoutMs`), a second one forces. Returns the stop, for a process that stops on its own.
 */
export function handleSignals(h: SignalHandling): (signal: NodeJS.Signals) => void {
  let firstAt: number | undefined;
  const force =
    h.force ??
    ((signal: NodeJS.Signals) => {
      h.say(`second signal (${signal}): exiting now`);
      process.exit(1);
    });
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstAt !== undefined) {
      if (Date.now() - firstAt >= (h.repeatMs ?? 0)) force(signal);
      return;
    }
    firstAt = Date.now();
    if (h.timeoutMs !== undefined) {
      setTimeout(() => {
        h.say(`shutdown took longer than ${h.timeoutMs} ms: exiting`);
        process.exit(1);
      }, h.timeoutMs).unref();
    }
    h.stop(signal).then(
      () => process.exit(h.exitCode?.() ?? 0),
      (err: unknown) => {
        h.say(`shutdown failed: ${errorText(err)}`);
        process.exit(1);
      },
    );
  };
  for (const signal of h.signals ?? ['SIGTERM', 'SIGINT']) process.on(signal, onSignal);
  return onSignal;
}

export interface ProcessScopeOptions {
  log: Logger;
  /** SHUTDOWN_TIMEOUT_MS: bounds the whole stop and each of its steps */
  timeoutMs: number;
  /** logged with the signal when the stop begins, and once it is done */
  stopping: string;
  stopped?: string;
}

/**
 * The scope of a service process (API, worker): what it defers is released in reverse on
 * the first SIGTERM/SIGINT, each step bounded, a failed step logged; a second signal exits.
 */
export function processScope(o: ProcessScopeOptions): Scope {
  const { log } = o;
  const scope = new Scope({
    stepMs: o.timeoutMs,
    onError: (what, err) => log.warn({ err: errorText(err) }, `shutdown: closing ${what} failed`),
  });
  handleSignals({
    timeoutMs: o.timeoutMs,
    say: (message) => log.warn(message),
    async stop(signal) {
      log.info({ signal }, o.stopping);
      await scope.close();
      if (o.stopped) log.info(o.stopped);
    },
  });
  return scope;
}
